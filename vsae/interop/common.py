"""Shared pieces of the format readers and writers: the interface, errors, safe file reading,
and turning a source's tensors into a vsae SAE (and back)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from vsae.config import SAEConfig
from vsae.sae import build
from vsae.sae.base import BaseSAE
from vsae.sae.io import CheckpointError, read_tensors
from vsae.sae.matryoshka_k import default_levels


class InteropError(CheckpointError):
    """A foreign checkpoint cannot be read, or a vsae SAE cannot be written in a format."""


class SAEFormat:
    """One foreign checkpoint layout: how to recognise it and read it into a vsae SAE.

    Subclasses set ``name`` and implement ``matches`` and ``read``; formats that vsae can
    also write implement ``write``.
    """

    name: ClassVar[str] = ""

    def matches(self, path: Path) -> bool:
        """Whether ``path`` (a folder or a file) is laid out in this format (a cheap look).

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
            True when the files look like this format.
        """
        raise NotImplementedError

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """The checkpoint at ``path`` as a vsae SAE in eval mode with ``sae.provenance``.

        Parameters
        ----------
        path : Path
            The checkpoint (a folder or a file).
        **options
            Format options (see each format).

        Returns
        -------
        BaseSAE
            In eval mode, with ``sae.provenance``.
        """
        raise NotImplementedError

    def write(self, sae: BaseSAE, path: Path) -> Path:
        """Write ``sae`` into folder ``path`` in this format.

        Parameters
        ----------
        sae : BaseSAE
            The model.
        path : Path
            Output folder.

        Returns
        -------
        Path
            The folder.
        """
        raise InteropError(f"vsae cannot write the {self.name} format; it can only read it")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (the provenance hash recorded for an import).

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict:
    """A JSON object file; missing, invalid or non-object files are a clear error.

    Parameters
    ----------
    path : Path
        The JSON file.

    Returns
    -------
    dict
        Its object.
    """
    if not path.is_file():
        raise InteropError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InteropError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InteropError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """A safetensors file's tensors (floating ones as float32); a truncated file is an error.

    Parameters
    ----------
    path : Path
        The safetensors file.

    Returns
    -------
    dict
        Name -> tensor.
    """
    try:
        tensors = read_tensors(path)
    except CheckpointError as err:
        raise InteropError(str(err)) from None
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


# Shown when torch.load(weights_only=True) refuses a file: how its owner can convert it.
CONVERT_HINT = (
    "If you trust the file, export its tensors once and load the export instead: "
    "python -c \"import torch; m = torch.load('FILE', map_location='cpu', weights_only=False); "
    "torch.save(m.state_dict() if hasattr(m, 'state_dict') else m, 'FILE.weights.pt')\""
)


def read_torch(source: Path | bytes, where: str) -> Any:
    """A torch file loaded with ``torch.load(weights_only=True)`` only, on the CPU.

    Parameters
    ----------
    source : Path or bytes
        The file, or its bytes (saev files carry a JSON line before the torch payload).
    where : str
        Name used in errors.

    Returns
    -------
    Any
        The loaded object (tensors, dicts, lists and plain numbers only).

    Raises
    ------
    InteropError
        The file needs pickle of code (with the one-line conversion in the message), or it is
        truncated or not a torch file.
    """
    fh = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f"it pickles {found[1]}" if found else "it holds pickled objects"
        raise InteropError(
            f"{where}: refused: {what}, and loading that runs code, which vsae never does. "
            + CONVERT_HINT.replace("FILE", where)
        ) from None
    except (EOFError, RuntimeError, OSError, zipfile.BadZipFile, ValueError) as err:
        msg = " ".join(str(err).split())[:200]
        raise InteropError(
            f"{where}: unreadable torch file (truncated or corrupt?): {msg}"
        ) from None


def as_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    """A loaded object as a flat ``{name: tensor}`` dict (floating tensors as float32).

    Parameters
    ----------
    obj : Any
        What ``read_torch`` returned.
    where : str
        Name used in errors.

    Returns
    -------
    dict
        Name -> tensor.
    """
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        kind = type(obj).__name__
        raise InteropError(f"{where}: expected a state dict (names to tensors), got a {kind}")
    return {str(k): v.float() if v.is_floating_point() else v for k, v in obj.items()}


def check_names(
    tensors: dict[str, Tensor], need: set[str], where: str, allow: frozenset[str] = frozenset()
) -> None:
    """Missing or unexpected tensor names are an error naming both lists.

    Parameters
    ----------
    tensors : dict
        Name -> tensor.
    need : set of str
        Names that must be there.
    where : str
        Name used in errors.
    allow : frozenset of str
        Names that may be there.
    """
    missing = sorted(need - set(tensors))
    extra = sorted(set(tensors) - need - allow)
    if missing or extra:
        raise InteropError(
            f"{where}: missing tensors {missing}, unexpected tensors {extra}; "
            f"expected {sorted(need)}" + (f" (optional {sorted(allow)})" if allow else "")
        )


def check_shape(t: Tensor, shape: tuple[int, ...], name: str, where: str) -> None:
    """A tensor whose shape disagrees with the config is an error naming both shapes.

    Parameters
    ----------
    t : Tensor
        The tensor.
    shape : tuple of int
        The shape the config implies.
    name, where : str
        Tensor and file names used in errors.
    """
    if tuple(t.shape) != shape:
        raise InteropError(
            f"{where}: tensor {name!r} has shape {tuple(t.shape)}; the config expects {shape}"
        )


def need_key(cfg: dict, key: str, where: Path, kind: type = int) -> Any:
    """``cfg[key]`` converted to ``kind``; absent or ill-typed values are a clear error.

    Parameters
    ----------
    cfg : dict
        A parsed config.
    key : str
        The key.
    where : Path
        The config file, named in errors.
    kind : type
        ``int`` checks for an integer; other types are not checked.

    Returns
    -------
    Any
        The value.
    """
    if key not in cfg:
        raise InteropError(f"{where}: missing key {key!r}; found keys {sorted(cfg)}")
    value = cfg[key]
    if kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise InteropError(f"{where}: {key}={value!r}; expected an integer")
    return value


def no_options(options: dict, fmt: str) -> None:
    """Formats without options refuse any, naming them.

    Parameters
    ----------
    options : dict
        Keyword options passed to ``load``.
    fmt : str
        The format name.
    """
    if options:
        raise InteropError(f"format {fmt!r} takes no options; got {sorted(options)}")


def assemble(
    arch: str,
    W_enc_ND: Tensor,
    b_enc_N: Tensor,
    W_dec_ND: Tensor,
    b_dec_D: Tensor,
    pre_bias_D: Tensor | None,
    provenance: dict,
    *,
    k: int = 1,
    threshold_N: Tensor | None = None,
    batch_threshold: float | None = None,
    weighting: str = "uw",
    mean_D: Tensor | None = None,
    scale: float = 1.0,
) -> BaseSAE:
    """A vsae SAE computing a source's ``act((s (x - mean) - pre_bias) W_enc^T + b_enc)`` and
    ``(codes W_dec + b_dec) / s + mean``.

    vsae subtracts its decoder bias before encoding. A source whose pre-encoder bias differs
    from its output bias (none at all, in saev and overcomplete) has the difference folded
    into the encoder bias: ``b_enc' = b_enc - W_enc (pre_bias - b_dec)``, the same affine map.

    Parameters
    ----------
    arch : str
        ``relu``, ``topk``, ``batchtopk``, ``jumprelu`` or ``matryoshka_k``.
    W_enc_ND, b_enc_N, W_dec_ND, b_dec_D : Tensor
        Encoder rows [N, D], encoder bias [N], decoder rows [N, D], output bias [D].
    pre_bias_D : Tensor or None
        Bias subtracted before encoding; ``None`` means none is subtracted.
    provenance : dict
        Where the checkpoint came from; kept as ``sae.provenance``.
    k : int
        TopK size (k0 of ``matryoshka_k``, whose levels are then k0, 2 k0, ... n and whose
        inference is the dense ReLU path, as MSAE's own ``SAE`` wrapper does by default).
    threshold_N : Tensor, optional
        JumpReLU thresholds [N] (``pre * (pre > theta)``; a threshold <= 0 acts as ReLU).
    batch_threshold : float, optional
        BatchTopK inference threshold (codes are ``relu(pre)`` where ``pre > threshold``).
    weighting : str
        ``matryoshka_k`` level weighting (``uw`` or ``rw``).
    mean_D, scale : optional
        Input normalisation ``(x - mean) * scale``, kept as vsae's normalisation buffers.

    Returns
    -------
    BaseSAE
        The model in eval mode, with ``sae.provenance``.
    """
    N, D = W_enc_ND.shape
    pre_D = torch.zeros(D) if pre_bias_D is None else pre_bias_D
    b_enc_N = b_enc_N - W_enc_ND @ (pre_D - b_dec_D)
    k = max(1, min(int(k), N))
    cfg = SAEConfig(
        arch=arch,
        d_in=D,
        n_latents=N,
        k=k,
        levels=default_levels(k, N) if arch == "matryoshka_k" else (),
        weighting=weighting,
        normalize=mean_D is not None or scale != 1.0,
        b_dec_init="zero",
    )
    sae = build(cfg)
    with torch.no_grad():
        sae.W_enc_ND.copy_(W_enc_ND)
        sae.b_enc_N.copy_(b_enc_N)
        sae.W_dec_ND.copy_(W_dec_ND)
        sae.b_dec_D.copy_(b_dec_D)
        if mean_D is not None:
            sae.norm_mean_D.copy_(mean_D)
        sae.norm_scale.fill_(float(scale))
        if threshold_N is not None:  # log(0) = -inf: exp gives back the threshold 0 exactly
            sae.log_threshold_N.copy_(threshold_N.clamp_min(0).log())
        if batch_threshold is not None:
            sae.threshold.fill_(max(float(batch_threshold), 0.0))
            sae.threshold_updates.fill_(1)  # a trained threshold: per-sample inference
    sae.provenance = dict(provenance)
    return sae.eval()


def raw_affine(sae: BaseSAE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The SAE as raw-space tensors with its normalisation folded in.

    With ``x_n = (x - m) s``: ``pre = (x - b) (s W_enc)^T + b_enc`` and
    ``recon = codes (D / s) + b``, where ``b = b_dec / s + m`` is both the input and the output
    bias (the SAELens and sparsify convention).

    Parameters
    ----------
    sae : BaseSAE
        The model.

    Returns
    -------
    tuple of Tensor
        ``W_enc_ND, b_enc_N, W_dec_ND, b_dec_D`` (float32, detached, on the CPU).
    """
    s = float(sae.norm_scale)
    m_D = sae.norm_mean_D.detach().float().cpu()
    W_enc_ND = sae.W_enc_ND.detach().float().cpu() * s
    W_dec_ND = sae.dictionary().detach().float().cpu() / s
    b_dec_D = sae.b_dec_D.detach().float().cpu() / s + m_D
    return W_enc_ND, sae.b_enc_N.detach().float().cpu().clone(), W_dec_ND, b_dec_D


def base_provenance(fmt: str, weights: Path, **known: Any) -> dict:
    """The provenance record every import starts from: format, file, hash, known fields.

    Parameters
    ----------
    fmt : str
        Source format name.
    weights : Path
        The weights file (hashed).
    **known
        Further fields (model, hookpoint, ...); None values are left out.

    Returns
    -------
    dict
        ``format``, ``file``, ``sha256`` and the known fields.
    """
    prov = {"format": fmt, "file": str(weights), "sha256": file_sha256(weights)}
    prov.update({k: v for k, v in known.items() if v is not None})
    return prov
