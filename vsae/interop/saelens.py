"""SAELens folders: ``cfg.json`` + ``sae_weights.safetensors``.

Read from SAELens's ``sae_lens/saes`` and ``sae_lens/loading/pretrained_sae_loaders.py`` (v6):
tensors ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in],
and ``threshold`` [d_sae] for ``jumprelu``. ``architecture`` is ``standard`` (ReLU), ``topk``
(key ``k``; ``rescale_acts_by_decoder_norm`` multiplies the pre-activations by the decoder
row norms) or ``jumprelu`` (``relu(pre) * (pre > threshold)``; BatchTopK SAEs are saved as
this). A training checkpoint of ``batchtopk`` holds a scalar ``topk_threshold``. Encoding
subtracts ``b_dec`` first when ``apply_b_dec_to_input`` (default true). Configs before 6.0
give ``activation_fn_str``/``activation_fn`` with ``activation_fn_kwargs.k``, and
``model_name``/``hook_name`` (or ``hook_point``) at the top level instead of under
``metadata``; a ``scaling_factor`` tensor multiplies the codes before decoding.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
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

WEIGHTS = "sae_weights.safetensors"
CFG = "cfg.json"
ARCHS = ("standard", "topk", "jumprelu", "batchtopk")
# Runtime normalisations that rescale each sample: not an affine map vsae can hold.
PER_SAMPLE_NORMS = ("constant_norm_rescale", "layer_norm")
# What a SAELens folder of this version range records; the v6 loaders read it as v6.
LAYOUT_VERSION = "6.0.0"


def _architecture(cfg: dict, cfg_path: Path) -> tuple[str, int | None]:
    """SAELens architecture name and k, for v6 and pre-6.0 configs."""
    act = cfg.get("activation_fn_str", cfg.get("activation_fn", "relu"))
    kwargs = cfg.get("activation_fn_kwargs") or {}
    arch = cfg.get("architecture") or "standard"
    k = cfg.get("k", kwargs.get("k"))
    if arch == "standard" and act == "topk":
        arch = "topk"
    if arch not in ARCHS:
        raise InteropError(
            f"{cfg_path}: architecture={arch!r} is not supported; expected one of "
            f"{', '.join(ARCHS)} (gated SAEs and transcoders have no vsae equivalent)"
        )
    if arch == "standard" and act != "relu":
        raise InteropError(f"{cfg_path}: activation_fn={act!r} is not supported; expected relu")
    return arch, k


def _check_norm(cfg: dict, cfg_path: Path) -> list[str]:
    """Refuse per-sample normalisations; note what SAELens itself does with the others."""
    norm = cfg.get("normalize_activations", "none")
    if norm is False or norm is None:
        norm = "none"
    if norm is True:
        norm = "expected_average_only_in"
    if norm in PER_SAMPLE_NORMS:
        raise InteropError(
            f"{cfg_path}: normalize_activations={norm!r} rescales each sample; vsae keeps only "
            "a shift and a scalar scale (expected 'none' or 'expected_average_only_in')"
        )
    if norm == "expected_average_only_in":
        msg = (
            f"{cfg_path}: normalize_activations='expected_average_only_in': the scaling factor "
            "is not stored in the folder, and SAELens's load_from_disk does not apply one "
            "either; scale inputs as the release documents"
        )
        warnings.warn(msg, stacklevel=4)
        return [msg]
    return []


class SAELensFormat(SAEFormat):
    """Read and write SAELens folders."""

    name = "saelens"

    def matches(self, path: Path) -> bool:
        """A folder with ``sae_weights.safetensors``.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        return path.is_dir() and (path / WEIGHTS).is_file()

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """Load a SAELens SAE folder.

        Parameters
        ----------
        path : Path
            Folder with ``cfg.json`` and ``sae_weights.safetensors``.
        **options
            None are accepted.

        Returns
        -------
        BaseSAE
            ReLU (``standard``), TopK, JumpReLU, or BatchTopK (a ``batchtopk`` training
            checkpoint, at its threshold).

        Raises
        ------
        InteropError
            Unsupported architecture or normalisation, missing/extra tensors, bad shapes.
        """
        no_options(options, self.name)
        cfg_path, w_path = path / CFG, path / WEIGHTS
        cfg = read_json(cfg_path)
        arch, k = _architecture(cfg, cfg_path)
        notes = _check_norm(cfg, cfg_path)
        D, N = need_key(cfg, "d_in", cfg_path), need_key(cfg, "d_sae", cfg_path)
        t = read_safetensors(w_path)
        need = {"W_enc", "b_enc", "W_dec", "b_dec"}
        need |= {"threshold"} if arch == "jumprelu" else set()
        need |= {"topk_threshold"} if arch == "batchtopk" else set()
        check_names(t, need, str(w_path), frozenset({"scaling_factor"}))
        shapes = {"W_enc": (D, N), "b_enc": (N,), "W_dec": (N, D), "b_dec": (D,)}
        shapes.update({"threshold": (N,), "scaling_factor": (N,), "topk_threshold": ()})
        for name in t:
            check_shape(t[name], shapes[name], name, str(w_path))
        W_enc_ND, b_enc_N, W_dec_ND = t["W_enc"].t().contiguous(), t["b_enc"], t["W_dec"]
        if "scaling_factor" in t:  # pre-6.0 fine-tuning factor: codes * s before decoding
            W_dec_ND = W_dec_ND * t["scaling_factor"][:, None]
        if cfg.get("rescale_acts_by_decoder_norm"):  # pre * |W_dec_i|, codes / |W_dec_i|
            norm_N = W_dec_ND.norm(dim=-1)
            W_enc_ND, b_enc_N = W_enc_ND * norm_N[:, None], b_enc_N * norm_N
            W_dec_ND = W_dec_ND / norm_N[:, None]
        meta = {**cfg, **(cfg.get("metadata") or {})}
        prov = base_provenance(
            self.name,
            w_path,
            model=meta.get("model_name"),
            hookpoint=meta.get("hook_name") or meta.get("hook_point"),
            source_architecture=arch,
        )
        if notes:
            prov["notes"] = notes
        pre = t["b_dec"] if cfg.get("apply_b_dec_to_input", True) else None
        args = (W_enc_ND, b_enc_N, W_dec_ND, t["b_dec"], pre, prov)
        if arch == "standard":
            return assemble("relu", *args)
        if arch == "topk":
            if not isinstance(k, int) or k < 1:
                raise InteropError(f"{cfg_path}: a topk SAE needs an integer 'k' >= 1, got {k!r}")
            return assemble("topk", *args, k=k)
        if arch == "batchtopk":
            thr = float(t["topk_threshold"])
            return assemble("batchtopk", *args, k=int(k or 1), batch_threshold=thr)
        return assemble("jumprelu", *args, threshold_N=t["threshold"])

    def write(self, sae: BaseSAE, path: Path) -> Path:
        """Write a SAELens v6 folder for ``sae`` (normalisation folded into the weights).

        Parameters
        ----------
        sae : BaseSAE
            ReLU, TopK and JumpReLU map one to one; BatchTopK and prefix Matryoshka (after
            training: their threshold) become ``jumprelu`` with that threshold; nested-k MSAE
            becomes TopK at ``infer_k`` (ReLU when it is 0); archetypal becomes TopK or
            JumpReLU with the materialised dictionary. The last two warn what is dropped.
        path : Path
            Output folder.

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InteropError
            A BatchTopK-family SAE without a trained threshold (its codes depend on the batch).
        """
        W_enc_ND, b_enc_N, W_dec_ND, b_dec_D = raw_affine(sae)
        tensors = {"W_enc": W_enc_ND.t().contiguous(), "b_enc": b_enc_N}
        tensors.update({"W_dec": W_dec_ND, "b_dec": b_dec_D})
        out_arch, extra, thr = _export_arch(sae)
        if thr is not None:
            tensors["threshold"] = thr
        prov = getattr(sae, "provenance", None) or {}
        cfg = {
            "architecture": out_arch,
            "d_in": sae.d_in,
            "d_sae": sae.n_latents,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            **extra,
            "metadata": {
                "sae_lens_version": LAYOUT_VERSION,
                "sae_lens_training_version": LAYOUT_VERSION,
                "model_name": prov.get("model"),
                "hook_name": prov.get("hookpoint"),
                "exported_by": "vsae",
            },
        }
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (WEIGHTS + ".tmp")
        save_file({name: v.contiguous() for name, v in tensors.items()}, str(tmp))
        os.replace(tmp, path / WEIGHTS)
        (path / CFG).write_text(json.dumps(cfg, indent=2) + "\n")
        return path


def _export_arch(sae: BaseSAE) -> tuple[str, dict, torch.Tensor | None]:
    """SAELens architecture, extra cfg keys and threshold tensor [N] for a vsae SAE."""
    arch, N = sae.cfg.arch, sae.n_latents
    if arch == "relu":
        return "standard", {}, None
    if arch == "jumprelu":
        return "jumprelu", {}, sae.log_threshold_N.detach().exp().float().cpu()
    if arch == "matryoshka_k":
        k = sae.infer_k
        dense = k in (0, N)
        what = "ReLU (the dense path, infer_k=0)" if dense else f"TopK at k={k} (infer_k)"
        warnings.warn(
            f"SAELens has no nested-k levels: exported as {what}; levels {sae.levels} dropped",
            stacklevel=4,
        )
        return ("standard", {}, None) if dense else ("topk", _topk_keys(k), None)
    if arch == "archetypal":
        warnings.warn(
            "SAELens has no archetypal dictionary: exported with the materialised dictionary "
            "W C + Lambda; the candidates, mixing weights and delta are dropped",
            stacklevel=4,
        )
        if sae.cfg.encoder_act == "topk":
            return "topk", _topk_keys(sae.cfg.k), None
    if arch == "topk":
        return "topk", _topk_keys(sae.cfg.k), None
    # batchtopk, matryoshka_prefix, archetypal with a batchtopk encoder: the threshold path
    if int(sae.threshold_updates) == 0:
        raise InteropError(
            f"this {arch} SAE has no inference threshold yet (never trained): its codes depend "
            "on the whole batch, which SAELens cannot represent"
        )
    thr = float(sae.threshold.clamp_min(0))
    return "jumprelu", {}, torch.full((N,), thr)


def _topk_keys(k: int) -> dict:
    return {"k": int(k), "rescale_acts_by_decoder_norm": False}
