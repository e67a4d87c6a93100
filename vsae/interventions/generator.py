"""One interface over the pipelines that edits run on: the tiny world's and diffusers' own.

``load_generator("world")`` gives the shipped tiny text-to-image model; a diffusers pipeline
folder or Hub repo id (SD 1.x, SDXL, SDXL-Turbo) gives that pipeline with its VAE. Both expose
``unet`` and ``scheduler`` (what :func:`vsae.interventions.attach` hooks) and turn prompts into
uint8 images ``[N, H, W, 3]``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vsae.encoders.base import SourceError
from vsae.encoders.diffusers_pipeline import DTYPES, load_pipeline

from .errors import InterventionError

WORLD = "world"


@dataclass
class Generator:
    """A text-to-image pipeline behind one call.

    Attributes
    ----------
    pipe : WorldDiffusionPipeline or diffusers DiffusionPipeline
    spec : str
        ``world`` or the diffusers folder / repo id it was loaded from.
    image_hw : (int, int)
        Output size in pixels (masks are given at this size).
    default_guidance : float
        The pipeline's guidance scale when none is given.
    """

    pipe: Any
    spec: str
    image_hw: tuple[int, int]
    default_guidance: float

    @property
    def unet(self) -> torch.nn.Module:
        """The U-Net whose ``Transformer2DModel`` blocks SAEs attach to."""
        return self.pipe.unet

    @property
    def scheduler(self) -> Any:
        """The pipeline's scheduler (its ``timesteps`` number the denoising steps)."""
        return self.pipe.scheduler

    def guided(self, guidance: float | None) -> bool:
        """True when a run at ``guidance`` batches [unconditional; conditional] through the U-Net.

        Parameters
        ----------
        guidance : float or None
            The scale (None: the pipeline's default).

        Returns
        -------
        bool
        """
        g = self.default_guidance if guidance is None else float(guidance)
        # diffusers skips guidance for guidance-distilled U-Nets (time_cond_proj_dim set)
        distilled = getattr(self.unet.config, "time_cond_proj_dim", None) is not None
        return g > 1.0 and not (self.spec != WORLD and distilled)

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        steps: int,
        seed: int = 0,
        guidance: float | None = None,
        as_float: bool = False,
        negative_prompts: list[str] | None = None,
    ) -> np.ndarray:
        """Generate one image per prompt.

        Parameters
        ----------
        prompts : list of str
            ``""`` is the empty prompt (feature icons).
        steps : int
            Denoising steps.
        seed : int
            Seed of the initial noise (the same seed gives the same image, with or without
            an attached SAE that does not edit).
        guidance : float, optional
            Classifier-free guidance scale (default: the pipeline's).
        as_float : bool
            Return float32 pixels in [0, 1] instead of uint8 (exact comparisons).
        negative_prompts : list of str, optional
            One per prompt: guidance pushes away from it (the unconditional half is
            conditioned on it); None: the empty prompt.

        Returns
        -------
        np.ndarray
            uint8 (or float32) ``[N, H, W, 3]``.
        """
        if not prompts:
            raise InterventionError("no prompt given")
        if steps < 1:
            raise InterventionError(f"steps must be >= 1, got {steps}")
        g = self.default_guidance if guidance is None else float(guidance)
        if negative_prompts is not None and len(negative_prompts) != len(prompts):
            raise InterventionError(
                f"{len(negative_prompts)} negative prompts for {len(prompts)} prompts"
            )
        if self.spec == WORLD:
            img = self.pipe(
                list(prompts),
                steps=steps,
                guidance=g,
                seed=seed,
                output_type="pt",
                negative_prompts=negative_prompts,
            )
            img_NHW3 = img.permute(0, 2, 3, 1).numpy().astype(np.float32)
            return img_NHW3 if as_float else (img_NHW3 * 255).round().astype(np.uint8)
        gen = torch.Generator(device=self.unet.device).manual_seed(int(seed))
        out = self.pipe(
            prompt=list(prompts),
            num_inference_steps=steps,
            guidance_scale=g,
            generator=gen,
            negative_prompt=list(negative_prompts) if negative_prompts is not None else None,
            height=self.image_hw[0],
            width=self.image_hw[1],
            output_type="np",
        )
        img_NHW3 = np.clip(np.asarray(out.images, dtype=np.float32), 0.0, 1.0)
        return img_NHW3 if as_float else (img_NHW3 * 255).round().astype(np.uint8)


def load_generator(pipeline: str, dtype: str = "float32", device: str = "cpu") -> Generator:
    """Load ``world`` (the shipped tiny model) or a diffusers text-to-image pipeline.

    Parameters
    ----------
    pipeline : str
        ``world``, ``world:DIR`` (other world weights), a diffusers pipeline folder, or a Hub
        repo id such as ``stabilityai/sdxl-turbo`` (downloaded by diffusers where online).
    dtype : str
        ``float32``, ``float16`` or ``bfloat16`` weights (diffusers pipelines).
    device : str
        Torch device.

    Returns
    -------
    Generator

    Raises
    ------
    InterventionError
        An unknown dtype, an unreadable pipeline, or one without a U-Net and a VAE.
    """
    if pipeline == WORLD or pipeline.startswith(WORLD + ":"):
        from vsae import world
        from vsae.world.diffusion import RESOLUTION

        weights = pipeline.partition(":")[2] or None
        pipe = world.load_diffusion(weights)
        pipe.unet.to(device)
        size = RESOLUTION
        return Generator(pipe, WORLD, (size, size), float(pipe.default_guidance))
    if dtype not in DTYPES:
        raise InterventionError(f"dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    try:
        pipe, factor = load_pipeline(pipeline, pipeline, DTYPES[dtype], skip=("safety_checker",))
    except SourceError as exn:
        raise InterventionError(str(exn)) from None
    if getattr(pipe, "vae", None) is None:
        raise InterventionError(f"{pipeline}: the pipeline has no VAE; cannot decode images")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    side = int(pipe.unet.config.sample_size) * factor
    default = inspect.signature(pipe.__call__).parameters["guidance_scale"].default
    return Generator(pipe, pipeline, (side, side), float(default))
