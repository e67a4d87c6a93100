"""Spatial masks for edits: an image-space ``[H, W]`` array in [0, 1], from an array or a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InterventionError


def check_mask(mask_HW: np.ndarray, image_hw: tuple[int, int] | None, where: str = "mask") -> None:
    """Refuse a mask that is not 2-D, not of the image's size, outside [0, 1] or empty.

    Parameters
    ----------
    mask_HW : np.ndarray
        Weights per pixel; 1 = edit fully, 0 = leave as is.
    image_hw : (int, int) or None
        The generated image's size (None: not checked).
    where : str
        The mask's name in messages (a file path).

    Raises
    ------
    InterventionError
        Naming the shape or values found and what was expected.
    """
    arr = np.asarray(mask_HW)
    if arr.ndim != 2:
        raise InterventionError(f"{where}: a mask is 2-D [H, W], got shape {arr.shape}")
    if image_hw is not None and arr.shape != tuple(image_hw):
        raise InterventionError(
            f"{where}: mask of shape {arr.shape}; expected the image's {tuple(image_hw)} (H, W)"
        )
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise InterventionError(f"{where}: mask values must be finite and in [0, 1]")
    if not arr.any():
        raise InterventionError(f"{where}: the mask is empty (nothing drawn)")


def load_mask(path: str | Path, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask image: its alpha channel where it has one, else its grey level, in [0, 1].

    Parameters
    ----------
    path : str or Path
        A PNG (or any image PIL reads).
    image_hw : (int, int), optional
        The size it must have.

    Returns
    -------
    np.ndarray
        float32 ``[H, W]``.

    Raises
    ------
    InterventionError
        A missing or unreadable file, or a mask that :func:`check_mask` refuses.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            band = img.getchannel("A") if "A" in img.getbands() else img.convert("L")
    except FileNotFoundError:
        raise InterventionError(f"{path}: no such mask file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exn:
        raise InterventionError(f"{path}: not a readable mask image ({exn})") from None
    mask = np.asarray(band, dtype=np.float32) / 255.0
    check_mask(mask, image_hw, str(path))
    return mask
