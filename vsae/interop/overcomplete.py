"""overcomplete (KempnerInstitute/overcomplete) SAE state dicts.

Read from overcomplete's ``overcomplete/sae`` (``base.py``, ``dictionary.py``, ``modules.py``,
``factory.py``, ``topk_sae.py``, ``jump_sae.py``, ``archetypal_dictionary.py``). overcomplete
saves nothing but ``torch.save(model.state_dict())``: the model class, ``top_k`` and the
dictionary normalisation are constructor arguments, so they are options here. Tensors:

- encoder ``linear`` (the default): ``encoder.final_block.0.weight`` [N, D] and ``.bias`` [N];
  ``mlp_bn_1`` adds a BatchNorm1d ``encoder.final_block.1.*`` (folded: it is affine in eval
  mode, eps 1e-5); ``tied``/``untied`` encoders: ``encoder.weight`` [N, D] (absent when tied to
  the dictionary) and ``encoder.bias``. Codes start as ``relu(pre)``; there is no pre-encoder
  bias and no decoder bias.
- ``dictionary._weights`` [N, D] and ``dictionary.multiplier`` (a log scale): the dictionary
  is ``normalise(_weights) * exp(multiplier)`` (normalisation ``l2`` by default); the relaxed
  archetypal dictionary holds ``C`` [C, D], ``W`` [N, C], ``Relax`` [N, D]: ``(relu(W) row-
  normalised) C + Relax`` (Relax rows capped at norm ``delta`` when given), times the scale.
- ``TopKSAE``: the ``top_k`` largest codes; ``JumpSAE``: ``thresholds`` [N], codes below
  ``exp(thresholds)`` set to 0; ``SAE``: ReLU codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from vsae.interop.common import (
    InteropError,
    SAEFormat,
    as_state_dict,
    assemble,
    base_provenance,
    check_names,
    check_shape,
    read_safetensors,
    read_torch,
)
from vsae.sae.base import BaseSAE

SUFFIXES = (".pt", ".pth", ".safetensors")
BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default; not stored in a state dict
NORMALISATIONS = {
    "l2": lambda w: w / (w.norm(dim=1, keepdim=True) + 1e-8),
    "max_l2": lambda w: w / w.norm(dim=1, keepdim=True).amax(dim=0, keepdim=True),
    "l1": lambda w: w / (w.norm(p=1, dim=1, keepdim=True) + 1e-8),
    "max_l1": lambda w: w / w.norm(p=1, dim=1, keepdim=True).amax(dim=0, keepdim=True),
    "identity": lambda w: w,
}
_LINEAR = ("encoder.final_block.0.weight", "encoder.final_block.0.bias")
_BN = tuple(f"encoder.final_block.1.{n}" for n in ("weight", "bias", "running_mean", "running_var"))
_DICT = ("dictionary._weights", "dictionary.multiplier")
_ARCHETYPAL = ("dictionary.C", "dictionary.W", "dictionary.Relax", "dictionary.multiplier")


def load_tensors(path: Path) -> dict[str, Tensor]:
    """A state dict file: safetensors, or a torch file read with ``weights_only=True``.

    Parameters
    ----------
    path : Path
        ``.safetensors``, ``.pt`` or ``.pth`` file.

    Returns
    -------
    dict
        Name -> tensor.
    """
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return as_state_dict(read_torch(path, str(path)), str(path))


def _dictionary(t: dict[str, Tensor], normalization: str, delta: float | None) -> Tensor:
    """The eval-mode dictionary [N, D] overcomplete fuses from its parameters."""
    scale = torch.exp(t["dictionary.multiplier"])
    if "dictionary._weights" in t:
        return NORMALISATIONS[normalization](t["dictionary._weights"]) * scale
    W_NC = torch.relu(t["dictionary.W"])
    W_NC = W_NC / (W_NC.sum(dim=-1, keepdim=True) + 1e-8)
    relax_ND = t["dictionary.Relax"]
    if delta is not None:
        relax_ND = relax_ND * torch.clamp(delta / relax_ND.norm(dim=-1, keepdim=True), max=1)
    return (W_NC @ t["dictionary.C"] + relax_ND) * scale


def _encoder(t: dict[str, Tensor], dict_ND: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """Encoder rows [N, D] and bias [N], with a BatchNorm folded in."""
    N = dict_ND.shape[0]
    if _LINEAR[0] in t:
        W_ND, b_N = t[_LINEAR[0]], t[_LINEAR[1]]
        if _BN[0] in t:
            g_N = t[_BN[0]] / torch.sqrt(t[_BN[3]] + BN_EPS)
            W_ND, b_N = W_ND * g_N[:, None], (b_N - t[_BN[2]]) * g_N + t[_BN[1]]
        return W_ND, b_N
    W_ND = t.get("encoder.weight", dict_ND)  # tied: x D^T
    return W_ND, t.get("encoder.bias", torch.zeros(N))


def _expected_names(t: dict[str, Tensor], where: str) -> tuple[set[str], frozenset[str]]:
    """The tensor names this state dict must have, from the encoder and dictionary it holds."""
    if any(n.startswith("encoder.mlp_blocks.") for n in t) or any(
        n.startswith("encoder.attention_blocks.") or n.startswith("encoder.resnet_blocks.")
        for n in t
    ):
        raise InteropError(
            f"{where}: a multi-layer overcomplete encoder (MLP/attention/ResNet blocks) is not "
            "a linear SAE encoder; vsae reads the linear, mlp_bn_1 and tied/untied encoders"
        )
    if "encoder.final_block.1.weight" in t and _BN[2] not in t:
        raise InteropError(
            f"{where}: a LayerNorm on the codes (mlp_ln_1) normalises each sample; not supported"
        )
    need = set(_DICT if "dictionary._weights" in t else _ARCHETYPAL)
    allow: set[str] = {"thresholds"}
    if _LINEAR[0] in t:
        need |= set(_LINEAR) | (set(_BN) if _BN[2] in t else set())
        allow.add("encoder.final_block.1.num_batches_tracked")
    else:
        allow |= {"encoder.weight", "encoder.bias"}
    return need, frozenset(allow)


class OvercompleteFormat(SAEFormat):
    """Read overcomplete SAE state dicts."""

    name = "overcomplete"

    def matches(self, path: Path) -> bool:
        """A state dict file (or a folder's only one) with overcomplete's dictionary tensors.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        path = _only_file(path) if path.is_dir() else path
        if path is None or not path.is_file() or path.suffix not in SUFFIXES:
            return False
        return "dictionary.multiplier" in _tensor_names(path)

    def read(
        self,
        path: Path,
        top_k: int | None = None,
        normalization: str = "l2",
        delta: float | None = None,
        **options: Any,
    ) -> BaseSAE:
        """Load an overcomplete state dict.

        Parameters
        ----------
        path : Path
            The ``.pt``/``.pth``/``.safetensors`` file, or a folder holding only one.
        top_k : int, optional
            ``TopKSAE``'s ``top_k``; 0 for a plain ``SAE`` (ReLU codes). Required unless the
            state dict is a ``JumpSAE``'s (it has ``thresholds``).
        normalization : str
            The ``DictionaryLayer`` normalisation it was built with (``l2``, the default,
            ``max_l2``, ``l1``, ``max_l1`` or ``identity``).
        delta : float, optional
            Relaxed archetypal dictionary: cap the ``Relax`` rows at this norm (training
            already keeps them there; by default they are used as saved).

        Returns
        -------
        BaseSAE
            ReLU, TopK or JumpReLU, with the fused (materialised) dictionary.

        Raises
        ------
        InteropError
            Missing ``top_k``, unknown options, encoders that are not linear, a file needing
            pickle of code, missing/extra tensors, inconsistent shapes.
        """
        if options:
            raise InteropError(
                f"format 'overcomplete' takes top_k, normalization and delta; got {sorted(options)}"
            )
        if normalization not in NORMALISATIONS:
            raise InteropError(
                f"normalization={normalization!r}; expected one of {list(NORMALISATIONS)}"
            )
        file = _only_file(path) if path.is_dir() else path
        if file is None:
            raise InteropError(f"{path}: expected exactly one {'/'.join(SUFFIXES)} state dict file")
        where = str(file)
        t = load_tensors(file)
        need, allow = _expected_names(t, where)
        check_names(t, need, where, allow)
        dict_ND = _dictionary(t, normalization, delta)
        N, D = dict_ND.shape
        W_enc_ND, b_enc_N = _encoder(t, dict_ND, where)
        check_shape(W_enc_ND, (N, D), "encoder weight", where)
        check_shape(b_enc_N, (N,), "encoder bias", where)
        if "thresholds" in t:
            check_shape(t["thresholds"], (N,), "thresholds", where)
        cls = "JumpSAE" if "thresholds" in t else ("TopKSAE" if top_k else "SAE")
        if "thresholds" not in t and top_k is None:
            raise InteropError(
                f"{where}: an overcomplete state dict does not record its model class or top_k; "
                "pass top_k=K for a TopKSAE or top_k=0 for a plain SAE (CLI: --top-k)"
            )
        prov = base_provenance(self.name, file, source_architecture=cls)
        prov["dictionary"] = "archetypal (materialised)" if "dictionary.C" in t else normalization
        zero_D = torch.zeros(D)
        args = (W_enc_ND, b_enc_N, dict_ND, zero_D, None, prov)
        if cls == "JumpSAE":
            return assemble("jumprelu", *args, threshold_N=torch.exp(t["thresholds"]))
        if cls == "TopKSAE":
            return assemble("topk", *args, k=int(top_k))
        return assemble("relu", *args)


def _tensor_names(path: Path) -> set[str]:
    """The tensor names of a state dict file without reading its data (empty if unreadable)."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                return set(fh.keys())
        # a zip-format torch file is memory-mapped: only the pickled index is read
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def _only_file(folder: Path) -> Path | None:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES]
    return files[0] if len(files) == 1 else None
