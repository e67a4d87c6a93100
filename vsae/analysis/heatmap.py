"""An image's top latents and where each fires: per-token codes to a ranking and a heatmap.

Latents are ranked by their spatial mean over tokens (the SDXL-Turbo study's "top features by
spatial mean"); a heatmap is one latent's code per patch on the patch grid, upsampled onto the
image as a jet overlay at alpha 0.6 (as in that study's app).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image


def top_latents(codes_TN: torch.Tensor, k: int = 8) -> list[tuple[int, float]]:
    """The latents with the largest mean code over the tokens of one image.

    Parameters
    ----------
    codes_TN
        Codes of one image: ``T`` tokens (1 for an embedding SAE), ``N`` latents.
    k
        At most this many; latents whose mean is 0 are left out.

    Returns
    -------
    list of (latent id, mean code)
        Highest first; ties broken by the lower id.
    """
    if codes_TN.ndim != 2:
        raise ValueError(f"codes_TN: expected [T, N], got shape {tuple(codes_TN.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mean_N = codes_TN.float().mean(dim=0).numpy()
    nz = np.flatnonzero(mean_N > 0)
    order = nz[np.lexsort((nz, -mean_N[nz]))][:k]
    return [(int(i), float(mean_N[i])) for i in order]


def latent_heatmap(codes_TN: torch.Tensor, latent: int, grid: tuple[int, int]) -> np.ndarray:
    """One latent's code at each patch, on the patch grid.

    Parameters
    ----------
    codes_TN
        Per-patch codes of one image, ``T = rows * cols`` in row-major order.
    latent
        Latent id.
    grid
        ``(rows, cols)``.

    Returns
    -------
    ndarray float32 [rows, cols]
    """
    rows, cols = grid
    T, N = codes_TN.shape
    if rows * cols != T:
        raise ValueError(f"grid {grid} has {rows * cols} cells; the codes have {T} tokens")
    if not 0 <= latent < N:
        raise ValueError(f"latent id {latent} out of range 0..{N - 1}")
    return codes_TN[:, latent].float().reshape(rows, cols).numpy()


def overlay(
    image: Image.Image, heat_HW: np.ndarray, alpha: float = 0.6, vmax: float | None = None
) -> Image.Image:
    """Draw a heatmap over an image as jet colours (nearest-patch upsampling).

    Parameters
    ----------
    image
        The image the heatmap belongs to.
    heat_HW
        Non-negative values on any grid; scaled by ``vmax`` (its own max by default).
    alpha
        Weight of the colours (0: the image alone, 1: the heatmap alone).
    vmax
        Value drawn at full colour; a heatmap of zeros is drawn at the colour of 0.

    Returns
    -------
    PIL.Image.Image
        RGB, the size of ``image``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    top = float(heat_HW.max()) if vmax is None else float(vmax)
    scaled = np.clip(heat_HW / top, 0.0, 1.0) if top > 0 else np.zeros_like(heat_HW)
    rgb = (colormaps["jet"](scaled)[..., :3] * 255).astype(np.uint8)
    heat = Image.fromarray(rgb).resize(image.size, Image.Resampling.NEAREST)
    return Image.blend(image.convert("RGB"), heat, alpha)
