"""Loading diffusers pipelines and U-Nets (a pipeline folder, a U-Net folder or a Hub repo id).

The components that play no part in the U-Net's forward pass (VAE, safety checker, feature
extractor, image encoder) are never loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .base import SourceError

UNUSED_COMPONENTS = ("vae", "safety_checker", "feature_extractor", "image_encoder")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def looks_like_repo_id(model: str) -> bool:
    """Whether ``model`` is a Hugging Face Hub repo id: ``owner/name`` and no existing path.

    Parameters
    ----------
    model : str
        A path or a repo id.

    Returns
    -------
    bool
    """
    return bool(REPO_ID_RE.match(model)) and not Path(model).expanduser().exists()


def vae_scale_factor(model: str) -> int:
    """Pixels per latent position, as the pipeline computes it from its VAE config.

    Parameters
    ----------
    model : str
        Pipeline directory or repo id.

    Returns
    -------
    int
        ``2 ** (len(vae.block_out_channels) - 1)``, or 8 when there is no readable VAE config.
    """
    from diffusers import AutoencoderKL

    try:
        cfg = AutoencoderKL.load_config(model, subfolder="vae")
    except (OSError, ValueError):
        return 8
    return 2 ** (len(cfg.get("block_out_channels", (0,) * 4)) - 1)


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """The ``from_pretrained`` dtype argument; none for float32, the default of every version.

    Parameters
    ----------
    dtype : torch.dtype
        float32, float16 or bfloat16.

    Returns
    -------
    dict
        ``{}`` or ``{"torch_dtype": dtype}``.
    """
    return {} if dtype == torch.float32 else {"torch_dtype": dtype}


def load_pipeline(
    model: str, spec: str, dtype: torch.dtype = torch.float32, skip: tuple = UNUSED_COMPONENTS
) -> tuple[Any, int]:
    """Load a diffusers pipeline without the components the U-Net does not use.

    Parameters
    ----------
    model : str
        Pipeline directory with ``model_index.json``, or a Hub repo id.
    spec : str
        The source spec, for error messages.
    dtype : torch.dtype
        Weights dtype.
    skip : tuple of str
        Components not loaded (default: everything but the U-Net, text side and scheduler;
        pass ``()`` to load the VAE too, for generating images).

    Returns
    -------
    (DiffusionPipeline, int)
        The pipeline and its VAE scale factor.

    Raises
    ------
    SourceError
        Unreadable index, a pipeline without a ``UNet2DConditionModel`` or ``encode_prompt``, or
        an SDXL refiner.
    """
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    try:
        index = DiffusionPipeline.load_config(model)
    except (OSError, ValueError) as exn:
        raise SourceError(f"{spec}: cannot read the pipeline's model_index.json ({exn})") from exn
    skipped = {name: None for name in skip if name in index}
    try:
        pipe = DiffusionPipeline.from_pretrained(model, **dtype_kwargs(dtype), **skipped)
    except (OSError, ValueError, TypeError, ImportError) as exn:
        raise SourceError(f"{spec}: cannot load the diffusers pipeline ({exn})") from exn
    name = type(pipe).__name__
    if not isinstance(getattr(pipe, "unet", None), UNet2DConditionModel):
        raise SourceError(f"{spec}: {name} has no UNet2DConditionModel 'unet' component")
    if not callable(getattr(pipe, "encode_prompt", None)):
        raise SourceError(f"{spec}: {name} has no encode_prompt; cannot condition on prompts")
    if getattr(pipe.config, "requires_aesthetics_score", False):
        raise SourceError(
            f"{spec}: {name} conditions on an aesthetic score (an SDXL refiner); only "
            "text-to-image pipelines (SD 1.x, SDXL, SDXL-Turbo) are supported"
        )
    return pipe, vae_scale_factor(model)


@dataclass(frozen=True)
class LoadedUNet:
    """What :func:`load_unet` found.

    Attributes
    ----------
    pipe : DiffusionPipeline or None
        The pipeline when one was loaded.
    unet : UNet2DConditionModel
        The U-Net, in eval mode.
    scheduler : diffusers scheduler
        The pipeline's, the given one, or a default.
    vae_scale_factor : int
        Pixels per latent position.
    is_pipeline : bool
        Whether ``model`` was a pipeline (rather than a U-Net folder).
    """

    pipe: Any
    unet: Any
    scheduler: Any
    vae_scale_factor: int
    is_pipeline: bool


def load_unet(
    model: str, spec: str, dtype: str, with_pipeline: bool, scheduler: Any = None
) -> LoadedUNet:
    """Load a U-Net from a pipeline folder, a U-Net folder or a Hub pipeline repo id.

    Parameters
    ----------
    model : str
        Path or repo id.
    spec : str
        For error messages.
    dtype : str
        A key of ``DTYPES``.
    with_pipeline : bool
        Load the whole pipeline (text encoders, tokenizers) when ``model`` is one.
    scheduler : diffusers scheduler, optional
        Kept when given; else the pipeline's, else its saved config's.

    Returns
    -------
    LoadedUNet

    Raises
    ------
    SourceError
        Missing paths, folders with neither ``model_index.json`` nor ``config.json``, load errors.
    """
    import diffusers
    from diffusers import DDIMScheduler, UNet2DConditionModel

    path = Path(model).expanduser()
    local = path.exists()
    where = str(path) if local else model  # what from_pretrained is given
    if not local and not looks_like_repo_id(model):
        raise SourceError(
            f"{spec}: no such directory {str(path)!r} (nor a Hub repo id 'owner/name')"
        )
    if local and not path.is_dir():
        raise SourceError(f"{spec}: {str(path)!r} is not a directory")
    is_pipeline = (path / "model_index.json").is_file() or not local
    if local and not is_pipeline and not (path / "config.json").is_file():
        raise SourceError(
            f"{spec}: {str(path)!r} holds neither model_index.json (a pipeline) "
            "nor config.json (a U-Net)"
        )
    if is_pipeline and with_pipeline:
        pipe, factor = load_pipeline(where, spec, DTYPES[dtype])
        sched = pipe.scheduler if scheduler is None else scheduler
        return LoadedUNet(pipe, pipe.unet, sched, factor, True)
    sub = "unet" if is_pipeline else None
    try:
        unet = UNet2DConditionModel.from_pretrained(
            where, subfolder=sub, **dtype_kwargs(DTYPES[dtype])
        )
    except (OSError, ValueError) as exn:
        raise SourceError(f"{spec}: cannot load a UNet2DConditionModel ({exn})") from exn
    factor = vae_scale_factor(where) if is_pipeline else 8
    if scheduler is None and is_pipeline:
        try:
            sched_cfg = DDIMScheduler.load_config(where, subfolder="scheduler")
        except (OSError, ValueError) as exn:
            raise SourceError(f"{spec}: cannot read the scheduler config ({exn})") from exn
        cls = getattr(diffusers, sched_cfg.get("_class_name", "DDIMScheduler"), DDIMScheduler)
        scheduler = cls.from_config(sched_cfg)
    return LoadedUNet(None, unet, scheduler, factor, is_pipeline)
