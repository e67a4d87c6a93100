"""Where a latent fires: its activation at each position of a block's grid, drawn on the image.

A run records the SAE codes of every block call. The map of latent f for image b is its code at
each grid position, at one denoising step or averaged over all of them; under classifier-free
guidance only the conditional half is used (the one the prompt drives).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vsae.analysis.concepts import CONCEPTS_JSON, load_concepts

from .block_sae import BlockSAE
from .errors import InterventionError
from .generator import Generator
from .run import generate


@dataclass(frozen=True)
class LatentMaps:
    """Spatial codes of one SAE over a run.

    Attributes
    ----------
    images : np.ndarray
        uint8 ``[B, H, W, 3]``, the generated images.
    maps_BNhw : torch.Tensor
        float32 codes ``[B, N, h, w]`` on the block's grid (averaged over steps, or at one).
    step : int or None
        The denoising step the maps are from (None: the mean over all steps).
    """

    images: np.ndarray
    maps_BNhw: torch.Tensor
    step: int | None

    def top_latents(self, b: int, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` latents with the largest spatial mean on image ``b``: ``[(id, mean)]``.

        Parameters
        ----------
        b : int
            Image index.
        k : int
            How many.

        Returns
        -------
        list of (int, float)
            Latents with a positive mean only, largest first.
        """
        mean_N = self.maps_BNhw[b].mean(dim=(1, 2))
        vals, ids = torch.topk(mean_N, min(k, mean_N.numel()))
        return [(int(i), float(v)) for i, v in zip(ids, vals, strict=True) if v > 0]


def latent_maps(
    gen: Generator,
    bsae: BlockSAE,
    prompts: Sequence[str],
    steps: int,
    seed: int = 0,
    guidance: float | None = None,
    step: int | None = None,
) -> LatentMaps:
    """Generate and record one SAE's codes at every grid position of its block.

    Parameters
    ----------
    gen : Generator
    bsae : BlockSAE
        The SAE and its block (reconstruct-only: the images are the bare pipeline's).
    prompts : list of str
    steps : int
        Denoising steps.
    seed : int
    guidance : float, optional
    step : int, optional
        Keep the codes of this denoising step (0 = the first); default: average over steps.

    Returns
    -------
    LatentMaps

    Raises
    ------
    InterventionError
        A step outside ``0..steps-1``, or the errors of :func:`generate`.
    """
    if step is not None and not 0 <= step < steps:
        raise InterventionError(f"step {step} outside the schedule: need 0 <= step < {steps}")
    n = len(prompts)
    acc: dict[str, torch.Tensor | int] = {"sum": 0, "calls": 0}
    grid: list[tuple[int, int]] = []

    def record(_i: int, at: int, codes_BPN: torch.Tensor) -> None:
        if step is not None and at != step:
            return
        cond_BPN = codes_BPN[-n:]  # [uncond; cond] under guidance: the prompt's half
        acc["sum"] = acc["sum"] + cond_BPN.float()
        acc["calls"] = int(acc["calls"]) + 1

    block = dict(gen.unet.named_modules()).get(bsae.block)
    if block is not None:  # the grid size: read once from the block's output
        handle = block.register_forward_hook(lambda _m, _a, o: grid.append(_hw(o)))
    try:
        run = generate(gen, prompts, steps, seed, guidance, [bsae], record=record)
    finally:
        if block is not None:
            handle.remove()
    if not acc["calls"]:
        raise InterventionError(f"{bsae.block}: no block call recorded at step {step}")
    h, w = grid[0]
    mean_BPN = acc["sum"] / acc["calls"]
    maps = mean_BPN.view(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
    return LatentMaps(run.images, maps, step)


def _hw(out) -> tuple[int, int]:
    t = out.sample if hasattr(out, "sample") else out[0]
    return int(t.shape[-2]), int(t.shape[-1])


def overlay(image_HW3: np.ndarray, map_hw: torch.Tensor, vmax: float | None = None) -> Image.Image:
    """The map upsampled onto the image as a colour overlay (inferno, alpha by activation).

    Parameters
    ----------
    image_HW3 : np.ndarray
        uint8 image.
    map_hw : torch.Tensor
        One latent's map on the block grid.
    vmax : float, optional
        Activation drawn fully opaque (default: the map's max).

    Returns
    -------
    PIL.Image.Image
        RGB, the image's size.
    """
    from matplotlib import colormaps

    H, W = image_HW3.shape[:2]
    m = map_hw.detach().float()[None, None]
    up = torch.nn.functional.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)
    top = float(vmax if vmax is not None else up.max())
    a_HW = (up[0, 0] / top).clamp(0, 1).numpy() if top > 0 else np.zeros((H, W), np.float32)
    rgb_HW3 = colormaps["inferno"](a_HW)[..., :3]
    alpha = 0.65 * a_HW[..., None]
    out = image_HW3.astype(np.float32) / 255 * (1 - alpha) + rgb_HW3 * alpha
    return Image.fromarray((out * 255).round().astype(np.uint8))


def latent_names(sae_dir: str | Path | None) -> dict[int, str]:
    """Names of the SAE's valid concepts from its ``concepts.json`` (``{}`` when it has none).

    Parameters
    ----------
    sae_dir : str or Path or None

    Returns
    -------
    dict
        latent id -> name.
    """
    if sae_dir is None or not (Path(sae_dir) / CONCEPTS_JSON).is_file():
        return {}
    return {c.id: c.name for c in load_concepts(sae_dir).valid}


def save_heatmaps(
    maps: LatentMaps,
    latents: Sequence[int] | None,
    top: int,
    out_dir: str | Path,
    names: dict[int, str] | None = None,
    scale: int = 8,
) -> dict:
    """Write ``image-B.png`` and ``heatmap-B-F.png`` overlays; return a JSON-able summary.

    Parameters
    ----------
    maps : LatentMaps
    latents : list of int, optional
        The latents to draw; default: each image's ``top`` latents by spatial mean.
    top : int
    out_dir : str or Path
    names : dict, optional
        latent id -> concept name, shown in the summary.
    scale : int
        Upsampling of small images for viewing (nearest for the image, bilinear for the map).

    Returns
    -------
    dict
        Per image: the top latents with spatial means and names, and the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = names or {}
    n_lat = maps.maps_BNhw.shape[1]
    bad = [f for f in latents or () if not 0 <= f < n_lat]
    if bad:
        raise InterventionError(f"latent ids {bad} out of range: the SAE has 0..{n_lat - 1}")
    images = []
    for b, img in enumerate(maps.images):
        big = np.asarray(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale)))
        Image.fromarray(big).save(out / f"image-{b}.png")
        tops = maps.top_latents(b, top)
        chosen = list(latents) if latents else [f for f, _ in tops]
        files = {}
        for f in chosen:
            path = out / f"heatmap-{b}-{f}.png"
            overlay(big, maps.maps_BNhw[b, f]).save(path)
            files[str(f)] = path.name
        images.append(
            {
                "image": f"image-{b}.png",
                "top": [{"latent": f, "mean": v, "name": names.get(f)} for f, v in tops],
                "heatmaps": files,
            }
        )
    summary = {"step": maps.step, "grid": list(maps.maps_BNhw.shape[2:]), "images": images}
    (out / "heatmaps.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
