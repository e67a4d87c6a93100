"""EleutherAI sparsify folders, and SAeUron's fork of them: ``cfg.json`` + ``sae.safetensors``.

Read from sparsify's ``sparsify/sparse_coder.py``, ``config.py`` and ``fused_encoder.py``:
tensors ``encoder.weight`` [num_latents, d_in], ``encoder.bias`` [num_latents], ``W_dec``
[num_latents, d_in], ``b_dec`` [d_in] (``W_skip`` [d_in, d_in] with ``skip_connection``);
cfg keys ``d_in``, ``num_latents`` (0: ``expansion_factor * d_in``), ``k``, ``activation``
(``topk`` or ``groupmax``), ``multi_topk`` (a training loss only), ``transcode``. Encode:
``topk(relu(encoder(x - b_dec)))``; decode: ``sum_i acts_i W_dec[idx_i] + b_dec``. A training
run writes one folder per hookpoint beside a ``config.json`` naming the ``model``.

SAeUron (``SAE/sae.py``, ``SAE/config.py``) adds ``batch_topk``, ``sample_topk`` (training
selections: its ``load_from_disk`` turns both off, so inference is per-patch TopK) and
``input_unit_norm`` (a per-token standardisation). Its hookpoints are U-Net blocks such as
``unet.up_blocks.1.attentions.1``, read on the block output.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from vsae.interop.common import (
    InteropError,
    SAEFormat,
    assemble,
    base_provenance,
    check_names,
    check_shape,
    need_key,
    no_options,
    raw_affine,
    read_json,
    read_safetensors,
)
from vsae.sae.base import BaseSAE

WEIGHTS = "sae.safetensors"
CFG = "cfg.json"
RUN_CFG = "config.json"
SAEURON_KEYS = ("batch_topk", "sample_topk", "input_unit_norm")
# cfg values vsae cannot reproduce: what they do instead of a per-token TopK autoencoder.
UNSUPPORTED = (
    ("transcode", True, "a transcoder predicts another module's output"),
    ("skip_connection", True, "a linear skip connection W_skip adds x W_skip^T"),
    ("activation", "groupmax", "groupmax keeps one latent per group"),
    ("signed", True, "signed activations keep negative codes"),
    ("input_unit_norm", True, "SAeUron standardises each token before encoding"),
)


class SparsifyFormat(SAEFormat):
    """Read and write sparsify (and read SAeUron) folders."""

    name = "sparsify"

    def matches(self, path: Path) -> bool:
        """A folder with ``sae.safetensors`` and a ``cfg.json`` with ``d_in`` and ``k``.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        if not (path.is_dir() and (path / WEIGHTS).is_file() and (path / CFG).is_file()):
            return False
        try:
            cfg = json.loads((path / CFG).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        vsae_keys = {"arch", "format_version"}
        return isinstance(cfg, dict) and {"d_in", "k"} <= set(cfg) and not vsae_keys & set(cfg)

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """Load a sparsify or SAeUron SAE folder (one hookpoint).

        Parameters
        ----------
        path : Path
            Folder with ``cfg.json`` and ``sae.safetensors``.
        **options
            None are accepted.

        Returns
        -------
        BaseSAE
            A TopK SAE (SAeUron's BatchTopK-trained SAEs infer per patch, as SAeUron does).

        Raises
        ------
        InteropError
            Transcoders, skip connections, groupmax, signed codes, per-token normalisation,
            missing/extra tensors or bad shapes.
        """
        no_options(options, self.name)
        cfg_path, w_path = path / CFG, path / WEIGHTS
        cfg = read_json(cfg_path)
        for key, bad, why in UNSUPPORTED:
            if cfg.get(key) == bad:
                raise InteropError(
                    f"{cfg_path}: {key}={bad!r} is not supported ({why}); vsae reads per-token "
                    "TopK autoencoders"
                )
        D, k = need_key(cfg, "d_in", cfg_path), need_key(cfg, "k", cfg_path)
        N = int(cfg.get("num_latents") or 0) or D * int(cfg.get("expansion_factor", 32))
        t = read_safetensors(w_path)
        check_names(t, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}, str(w_path))
        shapes = {"encoder.weight": (N, D), "encoder.bias": (N,), "W_dec": (N, D), "b_dec": (D,)}
        for name, shape in shapes.items():
            check_shape(t[name], shape, name, str(w_path))
        saeuron = any(key in cfg for key in SAEURON_KEYS)
        run_cfg = path.parent / RUN_CFG
        model = read_json(run_cfg).get("model") if run_cfg.is_file() else None
        prov = base_provenance(
            self.name,
            w_path,
            variant="saeuron" if saeuron else "sparsify",
            model=model if isinstance(model, str) else None,
            hookpoint=path.name,
        )
        if saeuron:  # U-Net block outputs; the folder is named after the block
            prov["output"] = "output"
            prov["block"] = path.name.removeprefix("unet.")
            if cfg.get("batch_topk") or cfg.get("sample_topk"):
                prov["notes"] = [
                    "trained with a batch/sample TopK; inference per patch, as SAeUron"
                ]
        W_enc_ND, b_dec_D = t["encoder.weight"], t["b_dec"]
        return assemble(
            "topk", W_enc_ND, t["encoder.bias"], t["W_dec"], b_dec_D, b_dec_D, prov, k=k
        )

    def write(self, sae: BaseSAE, path: Path) -> Path:
        """Write a sparsify folder (normalisation folded into the weights).

        Parameters
        ----------
        sae : BaseSAE
            TopK; nested-k MSAE at ``infer_k`` > 0 (levels dropped) and archetypal with a TopK
            encoder (materialised dictionary), both with a warning.
        path : Path
            Output folder (name it after the hookpoint, as sparsify does).

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InteropError
            Architectures sparsify (per-token TopK only) cannot represent exactly.
        """
        k = _export_k(sae)
        W_enc_ND, b_enc_N, W_dec_ND, b_dec_D = raw_affine(sae)
        tensors = {"encoder.weight": W_enc_ND, "encoder.bias": b_enc_N}
        tensors.update({"W_dec": W_dec_ND, "b_dec": b_dec_D})
        cfg = {
            "activation": "topk",
            "expansion_factor": max(1, sae.n_latents // sae.d_in),
            "normalize_decoder": True,
            "num_latents": sae.n_latents,
            "k": k,
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


def _export_k(sae: BaseSAE) -> int:
    """The per-token k of a vsae SAE that sparsify can hold exactly, warning what is dropped."""
    arch = sae.cfg.arch
    if arch == "topk":
        return int(sae.cfg.k)
    if arch == "matryoshka_k" and 0 < sae.infer_k < sae.n_latents:
        warnings.warn(
            f"sparsify has no nested-k levels: exported as TopK at k={sae.infer_k} (infer_k); "
            f"levels {sae.levels} dropped",
            stacklevel=4,
        )
        return int(sae.infer_k)
    if arch == "archetypal" and sae.cfg.encoder_act == "topk":
        warnings.warn(
            "sparsify has no archetypal dictionary: exported with the materialised dictionary "
            "W C + Lambda; the candidates, mixing weights and delta are dropped",
            stacklevel=4,
        )
        return int(sae.cfg.k)
    what = "the dense ReLU path (infer_k=0)" if arch == "matryoshka_k" else f"a {arch!r} SAE"
    raise InteropError(
        f"sparsify holds per-token TopK SAEs only; {what} cannot be written exactly "
        "(set a TopK infer_k, or export to SAELens, which also holds ReLU and JumpReLU)"
    )


def hookpoint_folders(path: Path) -> list[str]:
    """Subfolders of a sparsify run folder that hold one SAE each (sorted).

    Parameters
    ----------
    path : Path
        A run folder.

    Returns
    -------
    list of str
        Folder names, sorted.
    """
    fmt = SparsifyFormat()
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and fmt.matches(p))
