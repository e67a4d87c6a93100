"""Shared pieces of the format readers: errors, safe file reading, assembling a vsae SAE."""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import torch
from torch import Tensor

from vsae.config import SAEConfig
from vsae.sae import build
from vsae.sae.base import BaseSAE
from vsae.sae.io import CheckpointError, read_tensors


class InteropError(CheckpointError):
    """A foreign checkpoint cannot be read, or a vsae SAE cannot be written in a format."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (the provenance hash recorded for an import)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """A safetensors file as float32 tensors; a truncated file is a clear error."""
    return {k: v.float() for k, v in read_tensors(path).items()}


def read_torch(path: Path | io.BytesIO, where: str) -> dict[str, Tensor]:
    """A torch file loaded with ``weights_only=True``; files needing pickled code are refused.

    Raises
    ------
    InteropError
        The file needs pickle of code, or does not hold a flat dict of tensors.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as err:
        raise InteropError(
            f"{where}: refused, loading it needs pickle of code ({str(err).splitlines()[0]}). "
            'If you trust the file, convert it once with: python -c "import torch, '
            "safetensors.torch as st; m = torch.load('FILE', weights_only=False); "
            "st.save_file({k: v.contiguous() for k, v in getattr(m, 'state_dict', "
            "lambda: m)().items()}, 'FILE.safetensors')\" and load the .safetensors file"
        ) from None
    except (EOFError, OSError) as err:
        raise InteropError(f"{where}: unreadable torch file (truncated?): {err}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InteropError(f"{where}: expected a dict of tensors (a state_dict)")
    return {k: v.float() for k, v in obj.items()}


def check_names(tensors: dict[str, Tensor], need: set[str], where: str, allow: set[str]) -> None:
    """Missing or unexpected tensor names are an error naming both lists."""
    missing = sorted(need - set(tensors))
    extra = sorted(set(tensors) - need - allow)
    if missing or extra:
        raise InteropError(
            f"{where}: missing tensors {missing}, unexpected tensors {extra}; "
            f"expected {sorted(need)}"
        )


def check_shape(t: Tensor, shape: tuple[int, ...], name: str, where: str) -> None:
    """A tensor whose shape disagrees with the config is an error naming both shapes."""
    if tuple(t.shape) != shape:
        raise InteropError(
            f"{where}: tensor {name!r} has shape {tuple(t.shape)}; the config expects {shape}"
        )


def assemble(
    arch: str,
    W_enc_ND: Tensor,
    b_enc_N: Tensor,
    W_dec_ND: Tensor,
    b_dec_D: Tensor,
    pre_bias_D: Tensor | None = None,
    *,
    k: int = 1,
    threshold_N: Tensor | None = None,
    levels: tuple[int, ...] = (),
    infer_k: int = 0,
    mean_D: Tensor | None = None,
    scale: float = 1.0,
    provenance: dict | None = None,
) -> BaseSAE:
    """A vsae SAE computing ``act((s (x - mean) - pre_bias) W_enc^T + b_enc)`` and
    ``codes W_dec + b_dec`` (then ``/ s + mean``) exactly as the source does.

    vsae subtracts its decoder bias before encoding; a source whose pre-encoder bias
    differs from its output bias has the difference folded into the encoder bias:
    ``b_enc' = b_enc - W_enc (pre_bias - b_dec)``.

    Parameters
    ----------
    arch : str
        vsae architecture (``relu``, ``topk``, ``batchtopk``, ``jumprelu``, ``matryoshka_k``).
    W_enc_ND, b_enc_N, W_dec_ND, b_dec_D : Tensor
        Encoder rows [N, D], encoder bias [N], decoder rows [N, D], output bias [D].
    pre_bias_D : Tensor, optional
        Bias subtracted before encoding; ``None`` means none is subtracted.
    k, threshold_N, levels, infer_k : optional
        TopK size, JumpReLU thresholds [N], MSAE levels and inference k.
    mean_D, scale : optional
        Input normalisation ``(x - mean) * scale`` kept as vsae's normalisation buffers.
    provenance : dict, optional
        Where the checkpoint came from; kept as ``sae.provenance``.

    Returns
    -------
    BaseSAE
        The model in eval mode.
    """
    N, D = W_enc_ND.shape
    pre_D = torch.zeros(D) if pre_bias_D is None else pre_bias_D
    b_enc_N = b_enc_N - W_enc_ND @ (pre_D - b_dec_D)
    cfg = SAEConfig(
        arch=arch,
        d_in=D,
        n_latents=N,
        k=max(1, min(k, N)),
        levels=levels,
        infer_k=infer_k,
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
        sae.norm_scale.fill_(scale)
        if threshold_N is not None:
            sae.log_threshold_N.copy_(threshold_N.clamp_min(0).log())
    sae.provenance = dict(provenance or {})
    return sae.eval()


def raw_affine(sae: BaseSAE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The SAE as raw-space tensors with its normalisation folded in.

    ``pre = (x - b_dec) W_enc^T + b_enc`` and ``recon = codes W_dec + b_dec`` in raw space:
    with ``x_n = (x - m) s``, ``W_enc = s W``, ``W_dec = W / s``, ``b_dec = b / s + m``.

    Returns
    -------
    tuple of Tensor
        ``W_enc_ND, b_enc_N, W_dec_ND, b_dec_D`` (float32, detached).
    """
    s = float(sae.norm_scale)
    m_D = sae.norm_mean_D.detach().float()
    W_enc_ND = sae.W_enc_ND.detach().float() * s
    W_dec_ND = sae.dictionary().detach().float() / s
    b_dec_D = sae.b_dec_D.detach().float() / s + m_D
    return W_enc_ND, sae.b_enc_N.detach().float().clone(), W_dec_ND, b_dec_D
