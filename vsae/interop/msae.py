"""MSAE checkpoints (Zaigrajew et al. 2025, "Interpreting CLIP with Hierarchical SAEs").

Read from the MSAE repository's ``sae.py`` (``Autoencoder``, ``MatryoshkaAutoencoder``,
``load_model``, ``SAE``) and ``train.py``: one ``.pth`` file,
``torch.save({"model": state_dict, "mean_center": [D], "scaling_factor": float,
"target_norm": ...})``, whose file name carries the config:
``{n_latents}_{n_inputs}_{activation}[_{k}][_{UW|RW}]_{tied}_{normalize}_{soft_cap}_{data}``
(e.g. ``6144_768_TopKReLU_64_RW_False_False_0.0_cc3m_ViT-L~14_train_image_2905936_768.pth``;
a ``ReLU`` activation is followed by its L1 weight's digits). State dict: ``pre_bias`` [D],
``encoder`` [D, N], ``latent_bias`` [N], ``decoder`` [N, D] (absent when tied: ``encoder^T``),
``latents_activation_frequency`` [N]. The ``SAE`` wrapper computes
``x' = (x - mean_center) * scaling_factor``, ``pre = (x' - pre_bias) encoder + latent_bias``,
``recon = (codes decoder + pre_bias) / scaling_factor + mean_center``; its default codes are
the dense ``relu(pre)`` path, or TopK at a chosen ``topk``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vsae.interop.common import (
    InteropError,
    SAEFormat,
    as_state_dict,
    assemble,
    base_provenance,
    check_names,
    check_shape,
    no_options,
    read_torch,
)
from vsae.sae.base import BaseSAE

SUFFIXES = (".pth", ".pt")
_CLIP_MODEL = re.compile(r"(ViT-[A-Za-z0-9]+~\d+(?:@\d+px)?|RN\d+(?:x\d+)?)")


class MSAEName(NamedTuple):
    """The config an MSAE file name carries."""

    n_latents: int
    n_inputs: int
    activation: str
    k: int
    weighting: str  # "" (not Matryoshka), "uw" or "rw"
    tied: bool
    normalize: bool
    soft_cap: float
    data: str


def parse_name(path: Path) -> MSAEName:
    """The config in an MSAE checkpoint's file name, parsed as MSAE's ``load_model`` does.

    Raises
    ------
    InteropError
        The name does not follow MSAE's pattern.

    Parameters
    ----------
    path : Path
        The checkpoint file.

    Returns
    -------
    MSAEName
        Sizes, activation, k, weighting, tied, normalize, soft cap, data name.
    """
    parts = path.stem.split("_")
    try:
        n_latents, n_inputs, act = int(parts[0]), int(parts[1]), parts[2]
        rest = parts[3:]
        k = 0
        if "TopK" in act:
            k = int(rest.pop(0))
        elif act == "ReLU" and rest and rest[0].isdigit():
            rest.pop(0)  # the L1 weight's digits
        weighting = rest.pop(0).lower() if rest[0] in ("UW", "RW") else ""
        tied, normalize = _bool(rest.pop(0)), _bool(rest.pop(0))
        soft_cap = float(rest.pop(0))
    except (IndexError, ValueError):
        raise InteropError(
            f"{path}: not an MSAE checkpoint name; expected "
            "{n_latents}_{n_inputs}_{activation}[_{k}][_UW|_RW]_{tied}_{normalize}_{soft_cap}"
            "_{data}.pth (MSAE keeps its config in the file name)"
        ) from None
    return MSAEName(
        n_latents, n_inputs, act, k, weighting, tied, normalize, soft_cap, "_".join(rest)
    )


def _bool(s: str) -> bool:
    if s not in ("True", "False"):
        raise ValueError(s)
    return s == "True"


class MSAEFormat(SAEFormat):
    """Read MSAE ``.pth`` checkpoints."""

    name = "msae"

    def matches(self, path: Path) -> bool:
        """A ``.pth``/``.pt`` file whose name parses as an MSAE config.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        if not (path.is_file() and path.suffix in SUFFIXES):
            return False
        try:
            parse_name(path)
        except InteropError:
            return False
        return True

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """Load an MSAE checkpoint file.

        Parameters
        ----------
        path : Path
            The ``.pth`` file, named as MSAE's ``train.py`` names it (or a folder holding one).
        **options
            None are accepted.

        Returns
        -------
        BaseSAE
            ReLU (``ReLU``), TopK (``TopKReLU``), BatchTopK (``BatchTopKReLU``, batch
            selection at inference as MSAE) or nested-k Matryoshka (``_UW``/``_RW``; levels
            k, 2k, ... n, dense ReLU inference as MSAE's ``SAE`` wrapper; ``set_infer_k``
            gives its ``topk``), with the mean and scaling factor kept as normalisation.

        Raises
        ------
        InteropError
            Soft-capped codes, per-sample normalisation, activations without ReLU, a file
            needing pickle of code, missing/extra tensors, shapes against the name.
        """
        no_options(options, self.name)
        if path.is_dir():
            files = [p for p in sorted(path.iterdir()) if self.matches(p)]
            if len(files) != 1:
                names = [p.name for p in files]
                raise InteropError(f"{path}: expected one MSAE .pth file, found {names}")
            path = files[0]
        cfg = parse_name(path)
        where = str(path)
        if cfg.soft_cap > 0:
            raise InteropError(
                f"{where}: latent_soft_cap={cfg.soft_cap} squashes codes with a tanh; vsae codes "
                "are piecewise linear (only soft_cap 0.0 is supported)"
            )
        if cfg.normalize:
            raise InteropError(f"{where}: normalize=True standardises each sample; not supported")
        arch = _arch(cfg, where)
        obj = read_torch(path, where)
        if not isinstance(obj, dict) or "model" not in obj:
            raise InteropError(f"{where}: expected MSAE's {{'model': state_dict, ...}} checkpoint")
        t = as_state_dict(obj["model"], f"{where} ['model']")
        N, D = cfg.n_latents, cfg.n_inputs
        need = {"pre_bias", "encoder", "latent_bias"} | (set() if cfg.tied else {"decoder"})
        check_names(t, need, where, frozenset({"latents_activation_frequency"}))
        shapes = {"pre_bias": (D,), "encoder": (D, N), "latent_bias": (N,), "decoder": (N, D)}
        shapes["latents_activation_frequency"] = (N,)
        for name in t:
            check_shape(t[name], shapes[name], name, where)
        mean_D, scale = _normalisation(obj, D, where)
        model = _CLIP_MODEL.search(cfg.data)
        prov = base_provenance(
            self.name,
            path,
            model=model[1].replace("~", "/") if model else None,
            data=cfg.data or None,
            source_architecture=cfg.activation
            + (f"_{cfg.weighting.upper()}" if cfg.weighting else ""),
        )
        prov["modality"] = next((m for m in ("image", "text") if m in cfg.data.split("_")), None)
        W_enc_ND = t["encoder"].t().contiguous()
        W_dec_ND = W_enc_ND.clone() if cfg.tied else t["decoder"]
        pre_D = t["pre_bias"]
        return assemble(
            arch,
            W_enc_ND,
            t["latent_bias"],
            W_dec_ND,
            pre_D,
            pre_D,
            prov,
            k=cfg.k or 1,
            weighting=cfg.weighting or "uw",
            mean_D=mean_D,
            scale=scale,
        )


def _arch(cfg: MSAEName, where: str) -> str:
    if cfg.activation == "ReLU":
        return "relu"
    if cfg.activation == "TopKReLU":
        return "matryoshka_k" if cfg.weighting else "topk"
    if cfg.activation == "BatchTopKReLU" and not cfg.weighting:
        return "batchtopk"
    raise InteropError(
        f"{where}: activation {cfg.activation!r} is not supported; expected ReLU, TopKReLU or "
        "BatchTopKReLU (the variants without ReLU keep negative codes)"
    )


def _normalisation(obj: dict, D: int, where: str) -> tuple[torch.Tensor | None, float]:
    """MSAE's ``mean_center`` [D] and ``scaling_factor`` (None and 1.0 when absent)."""
    mean = obj.get("mean_center")
    scale = obj.get("scaling_factor", 1.0)
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = float(scale)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        raise InteropError(f"{where}: scaling_factor={scale!r}; expected a positive number")
    if mean is None:
        return None, float(scale)
    if not isinstance(mean, torch.Tensor) or tuple(mean.shape) != (D,):
        shape = tuple(mean.shape) if isinstance(mean, torch.Tensor) else type(mean).__name__
        raise InteropError(f"{where}: mean_center has shape {shape}; expected ({D},)")
    return mean.float(), float(scale)
