"""Decode an uploaded image safely: size, pixel and format limits, clear messages.

Gradio hands callbacks the path of a file *it* stored in its own upload cache
(``gr.Image(type="filepath")``); the callback refuses any path outside that cache, so no
path typed or forged in the UI reaches the file system. Decoding happens here rather than in
Gradio so that a non-image, a truncated file or a decompression bomb becomes one readable
``UploadError`` (shown with ``gr.Error``) instead of a stack trace.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


class UploadError(ValueError):
    """An upload the demo refuses; its message is meant for the user."""


def upload_root() -> Path:
    """Gradio's upload cache (``$GRADIO_TEMP_DIR`` or the system temp folder's ``gradio``).

    Returns
    -------
    Path
        The resolved folder every accepted upload must lie in.
    """
    import os

    root = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(root).resolve()


def load_upload(path: str | None, max_bytes: int, max_pixels: int) -> Image.Image:
    """Open an uploaded image as RGB after checking where it is, its size and its pixels.

    Parameters
    ----------
    path
        The path Gradio passed for the upload (``None`` when nothing was uploaded).
    max_bytes
        Largest file accepted.
    max_pixels
        Largest ``width * height`` accepted; checked from the header, before decoding.

    Returns
    -------
    PIL.Image.Image
        The decoded image, mode RGB.

    Raises
    ------
    UploadError
        Nothing uploaded, a path outside Gradio's upload cache, a file too large, not an
        image in an allowed format, too many pixels, or a truncated/corrupt file.
    """
    if not path:
        raise UploadError("No image: upload one first.")
    file = Path(path).resolve()
    if not file.is_relative_to(upload_root()) or not file.is_file():
        raise UploadError("That file was not uploaded through this page.")
    size = file.stat().st_size
    if size > max_bytes:
        mb, limit = size / 1e6, max_bytes / 1e6
        raise UploadError(f"The file is {mb:.1f} MB; the limit is {limit:.1f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                if img.format not in ALLOWED_FORMATS:
                    raise UploadError(
                        f"Unsupported image format {img.format}; use one of "
                        f"{', '.join(ALLOWED_FORMATS)}."
                    )
                w, h = img.size
                if w * h > max_pixels:
                    raise UploadError(
                        f"The image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}."
                    )
                img.load()
                return img.convert("RGB")
    except UploadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadError("That file is not an image this demo can read.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(f"The image could not be decoded (truncated or corrupt): {e}") from None
