"""SAELens folders: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [D, N], W_dec [N, D]).

Read from SAELens's ``sae_lens/saes`` (v6): ``architecture`` is ``standard`` (ReLU),
``topk`` (key ``k``), ``batchtopk`` (inference threshold), ``jumprelu`` (tensor
``threshold``); older configs give ``activation_fn_str``/``activation_fn_kwargs.k`` and
``model_name``/``hook_name`` at the top level instead of under ``metadata``. The encoder
subtracts ``b_dec`` first when ``apply_b_dec_to_input`` is true.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from vsae.interop.common import (
    InteropError,
    assemble,
    check_names,
    check_shape,
    file_sha256,
    raw_affine,
    read_safetensors,
)
from vsae.sae.base import BaseSAE

WEIGHTS = "sae_weights.safetensors"
CFG = "cfg.json"
# Runtime normalisations that are per-sample (not an affine map vsae can hold).
_PER_SAMPLE = ("constant_norm_rescale", "layer_norm")


def read(path: Path) -> BaseSAE:
    """Load a SAELens SAE folder.

    Parameters
    ----------
    path : Path
        Folder with ``cfg.json`` and ``sae_weights.safetensors``.

    Returns
    -------
    BaseSAE
        ReLU, TopK or JumpReLU SAE (SAELens BatchTopK infers with a threshold: JumpReLU).

    Raises
    ------
    InteropError
        Unsupported architecture or normalisation, missing/extra tensors, bad shapes.
    """
    cfg_path, w_path = path / CFG, path / WEIGHTS
    cfg = json.loads(cfg_path.read_text())
    arch = cfg.get("architecture") or "standard"
    act = cfg.get("activation_fn_str", "relu")
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if arch == "standard" and act == "topk":
        arch = "topk"
    if arch not in ("standard", "topk", "jumprelu", "batchtopk"):
        raise InteropError(
            f"{cfg_path}: architecture={arch!r} is not supported; expected standard, topk, "
            "batchtopk or jumprelu"
        )
    norm = cfg.get("normalize_activations", "none")
    if norm in _PER_SAMPLE:
        raise InteropError(
            f"{cfg_path}: normalize_activations={norm!r} rescales each sample; vsae keeps only "
            "a shift and a scalar scale (expected 'none' or 'expected_average_only_in')"
        )
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise InteropError(f"{cfg_path}: rescale_acts_by_decoder_norm=true is not supported")
    D, N = int(cfg["d_in"]), int(cfg["d_sae"])
    t = read_safetensors(w_path)
    need = {"W_enc", "b_enc", "W_dec", "b_dec"}
    if arch in ("jumprelu",):
        need.add("threshold")
    allow = {"threshold"} if arch == "batchtopk" else set()
    check_names(t, need, str(w_path), allow)
    for name, shape in (("W_enc", (D, N)), ("b_enc", (N,)), ("W_dec", (N, D)), ("b_dec", (D,))):
        check_shape(t[name], shape, name, str(w_path))
    meta = {**cfg, **(cfg.get("metadata") or {})}
    prov = {
        "source_format": "saelens",
        "source_file": str(w_path),
        "sha256": file_sha256(w_path),
        "model": meta.get("model_name"),
        "hookpoint": meta.get("hook_name"),
        "source_architecture": arch,
    }
    pre = t["b_dec"] if cfg.get("apply_b_dec_to_input", True) else None
    args = (t["W_enc"].t().contiguous(), t["b_enc"], t["W_dec"], t["b_dec"], pre)
    if arch == "standard":
        return assemble("relu", *args, provenance=prov)
    if arch == "topk":
        if not k:
            raise InteropError(f"{cfg_path}: a topk SAE needs 'k' in its config")
        return assemble("topk", *args, k=int(k), provenance=prov)
    if arch == "batchtopk":
        if "threshold" not in t:
            raise InteropError(f"{w_path}: batchtopk needs its inference 'threshold' tensor")
        thr = t["threshold"].reshape(-1).expand(N).clone()
        return assemble("jumprelu", *args, threshold_N=thr, provenance=prov)
    check_shape(t["threshold"], (N,), "threshold", str(w_path))
    return assemble("jumprelu", *args, threshold_N=t["threshold"], provenance=prov)


def write(sae: BaseSAE, path: Path, model: str | None = None, hook: str | None = None) -> Path:
    """Write a SAELens v6 folder for ``sae`` (normalisation folded into the weights).

    Parameters
    ----------
    sae : BaseSAE
        ReLU, TopK, JumpReLU, BatchTopK (as JumpReLU at its threshold) or nested-k MSAE
        (as TopK at ``infer_k``, or ReLU when it is 0; the nested levels are dropped).
    path : Path
        Output folder.
    model, hook : str, optional
        ``metadata.model_name`` / ``metadata.hook_name``.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InteropError
        An architecture SAELens cannot represent exactly (prefix Matryoshka, archetypal).
    """
    arch = sae.cfg.arch
    W_enc_ND, b_enc_N, W_dec_ND, b_dec_D = raw_affine(sae)
    N = sae.n_latents
    tensors = {
        "W_enc": W_enc_ND.t().contiguous(),
        "b_enc": b_enc_N,
        "W_dec": W_dec_ND,
        "b_dec": b_dec_D,
    }
    extra: dict = {}
    if arch == "relu":
        out_arch = "standard"
    elif arch == "topk":
        out_arch, extra = "topk", {"k": sae.cfg.k}
    elif arch == "jumprelu":
        out_arch = "jumprelu"
        tensors["threshold"] = sae.log_threshold_N.detach().exp().float()
    elif arch == "batchtopk":
        if int(sae.threshold_updates) == 0:
            raise InteropError("batchtopk SAE has no inference threshold yet (never trained)")
        out_arch = "jumprelu"
        tensors["threshold"] = sae.threshold.detach().float().clamp_min(0).expand(N).clone()
    elif arch == "matryoshka_k":
        k = sae.infer_k
        warnings.warn(
            f"SAELens has no nested-k levels: exported as {'TopK at k=' + str(k) if k else 'ReLU'}"
            f" (infer_k), levels {sae.levels} dropped",
            stacklevel=2,
        )
        out_arch, extra = ("topk", {"k": k}) if 0 < k < N else ("standard", {})
    else:
        raise InteropError(
            f"SAELens cannot represent a {arch!r} SAE exactly; export relu, topk, batchtopk, "
            "jumprelu or matryoshka_k"
        )
    prov = getattr(sae, "provenance", {}) or {}
    cfg = {
        "architecture": out_arch,
        "d_in": sae.d_in,
        "d_sae": N,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **extra,
        "metadata": {
            "model_name": model or prov.get("model"),
            "hook_name": hook or prov.get("hookpoint"),
            "sae_lens_training_version": None,
            "exported_by": "vsae",
        },
    }
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (WEIGHTS + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path / WEIGHTS)
    (path / CFG).write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def looks_like(path: Path, cfg: dict | None) -> bool:
    """A folder with ``sae_weights.safetensors`` or a cfg naming ``d_sae``."""
    return (path / WEIGHTS).is_file() or (cfg is not None and "d_sae" in cfg and "d_in" in cfg)


__all__ = ["read", "write", "looks_like", "torch"]
