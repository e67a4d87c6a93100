"""EleutherAI sparsify folders (and SAeUron's fork): ``cfg.json`` + ``sae.safetensors``.

Read from ``sparsify/sparse_coder.py`` and ``sparsify/config.py``: tensors
``encoder.weight`` [N, D], ``encoder.bias`` [N], ``W_dec`` [N, D], ``b_dec`` [D]
(``W_skip`` [D, D] with ``skip_connection``); cfg keys ``d_in``, ``num_latents``
(0: ``expansion_factor * d_in``), ``k``, ``activation`` (``topk``), ``transcode``.
Encode: ``topk(relu(encoder(x - b_dec)))``; decode: ``sum acts * W_dec[idx] + b_dec``.
SAeUron (``SAE/sae.py``) adds ``batch_topk``, ``sample_topk`` and ``input_unit_norm``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

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

WEIGHTS = "sae.safetensors"
CFG = "cfg.json"


def read(path: Path) -> BaseSAE:
    """Load a sparsify (or SAeUron) SAE folder.

    Parameters
    ----------
    path : Path
        Folder with ``cfg.json`` and ``sae.safetensors``.

    Returns
    -------
    BaseSAE
        TopK SAE, or BatchTopK for SAeUron's ``batch_topk`` (batch selection at inference,
        as SAeUron does).

    Raises
    ------
    InteropError
        Transcoders, skip connections, groupmax, per-sample or per-image normalisation.
    """
    cfg_path, w_path = path / CFG, path / WEIGHTS
    cfg = json.loads(cfg_path.read_text())
    for key, bad in (
        ("transcode", True),
        ("skip_connection", True),
        ("sample_topk", True),
        ("input_unit_norm", True),
        ("activation", "groupmax"),
    ):
        if cfg.get(key) == bad:
            raise InteropError(
                f"{cfg_path}: {key}={bad!r} is not supported (vsae SAEs reconstruct their own "
                "input with a shared shift and scalar scale, per-token TopK or BatchTopK)"
            )
    D = int(cfg["d_in"])
    N = int(cfg.get("num_latents") or 0) or D * int(cfg.get("expansion_factor", 32))
    t = read_safetensors(w_path)
    check_names(t, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}, str(w_path), set())
    for name, shape in (
        ("encoder.weight", (N, D)),
        ("encoder.bias", (N,)),
        ("W_dec", (N, D)),
        ("b_dec", (D,)),
    ):
        check_shape(t[name], shape, name, str(w_path))
    prov = {
        "source_format": "sparsify",
        "source_file": str(w_path),
        "sha256": file_sha256(w_path),
        "model": cfg.get("model"),
        "hookpoint": cfg.get("hookpoint") or path.name,
    }
    arch = "batchtopk" if cfg.get("batch_topk") else "topk"
    return assemble(
        arch,
        t["encoder.weight"],
        t["encoder.bias"],
        t["W_dec"],
        t["b_dec"],
        t["b_dec"],
        k=int(cfg.get("k", 32)),
        provenance=prov,
    )


def write(sae: BaseSAE, path: Path) -> Path:
    """Write a sparsify folder (normalisation folded into the weights).

    Parameters
    ----------
    sae : BaseSAE
        TopK, or nested-k MSAE at ``infer_k`` > 0 (levels dropped, with a warning).
    path : Path
        Output folder (name it after the hookpoint, as sparsify does).

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InteropError
        Architectures sparsify (per-sample TopK only) cannot represent exactly.
    """
    arch = sae.cfg.arch
    k = sae.cfg.k
    if arch == "matryoshka_k" and 0 < sae.infer_k < sae.n_latents:
        k = sae.infer_k
        warnings.warn(
            f"sparsify has no nested-k levels: exported as TopK at k={k} (infer_k), "
            f"levels {sae.levels} dropped",
            stacklevel=2,
        )
    elif arch != "topk":
        raise InteropError(
            f"sparsify holds per-sample TopK SAEs only; a {arch!r} SAE cannot be written exactly "
            "(export it to SAELens instead)"
        )
    W_enc_ND, b_enc_N, W_dec_ND, b_dec_D = raw_affine(sae)
    tensors = {
        "encoder.weight": W_enc_ND,
        "encoder.bias": b_enc_N,
        "W_dec": W_dec_ND,
        "b_dec": b_dec_D,
    }
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, sae.n_latents // sae.d_in),
        "normalize_decoder": True,
        "num_latents": sae.n_latents,
        "k": int(k),
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
    }
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (WEIGHTS + ".tmp")
    save_file({name: v.contiguous() for name, v in tensors.items()}, str(tmp))
    os.replace(tmp, path / WEIGHTS)
    (path / CFG).write_text(json.dumps(cfg) + "\n")
    return path


def looks_like(path: Path, cfg: dict | None) -> bool:
    """``sae.safetensors`` beside a cfg with ``d_in`` and ``k`` or ``expansion_factor``."""
    keys = {"k", "expansion_factor", "num_latents"}
    return (path / WEIGHTS).is_file() and cfg is not None and bool(keys & set(cfg))
