"""A reference image collection with its SAE codes: a latent's top images and statistics.

Codes are pooled per image (mean over tokens: an embedding SAE has one token, a block SAE one
per patch, as the SDXL-Turbo study ranks features by spatial mean) and stored as a
``scipy.sparse`` CSC matrix, so a latent's column (the images where it fires) is one slice.
Thumbnails are kept so results can be shown without reading any file again. A gallery can be
saved to one ``.npz`` (``allow_pickle=False``) and loaded back when its fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from PIL import Image

from vsae.analysis.image_codes import ImageCoder, ImageCodesError
from vsae.data.images import iter_inputs

THUMB = 96  # longest side of a stored thumbnail, in pixels
FORMAT_VERSION = 2


@dataclass(frozen=True)
class GalleryStats:
    """How often and how strongly one latent fires over a gallery.

    Attributes
    ----------
    latent : int
    freq : float
        Fraction of images where its pooled code is > 0.
    mean_act : float
        Mean pooled code over the images where it fires (0 if it never does).
    max_act : float
        Largest pooled code.
    """

    latent: int
    freq: float
    mean_act: float
    max_act: float


class LatentGallery:
    """Thumbnails, keys and pooled SAE codes of a fixed image collection.

    Parameters
    ----------
    thumbs_MHW3 : ndarray uint8 [M, H, W, 3]
        Thumbnails (images scaled down to at most ``THUMB`` pixels a side, never up), padded
        to a common size (black).
    keys : list of str
        One key per image (file path relative to its folder, or the world render's name).
    codes_MN : scipy.sparse matrix [M, N]
        Pooled codes per image and latent.
    fingerprint : str
        What the codes were computed from (SAE weights hash, model, hookpoint, data spec).
    """

    def __init__(
        self, thumbs_MHW3: np.ndarray, keys: list[str], codes_MN: sp.spmatrix, fingerprint: str
    ) -> None:
        M = len(keys)
        if thumbs_MHW3.shape[0] != M or codes_MN.shape[0] != M:
            raise ValueError(
                f"gallery: {thumbs_MHW3.shape[0]} thumbnails, {codes_MN.shape[0]} code rows "
                f"and {M} keys; expected one of each per image"
            )
        self.thumbs_MHW3 = thumbs_MHW3
        self.keys = list(keys)
        self.codes_MN = sp.csc_matrix(codes_MN, dtype=np.float32)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def n_latents(self) -> int:
        """Number of SAE latents ``N``."""
        return int(self.codes_MN.shape[1])

    def _check(self, latent: int) -> int:
        if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
            raise ValueError(f"latent id must be an integer, got {latent!r}")
        if not 0 <= latent < self.n_latents:
            raise ValueError(
                f"latent id {latent} out of range; this SAE has latents 0..{self.n_latents - 1}"
            )
        return int(latent)

    def stats(self, latent: int) -> GalleryStats:
        """Firing frequency, mean and max pooled activation of ``latent`` over the gallery.

        Parameters
        ----------
        latent
            Latent id.

        Returns
        -------
        GalleryStats

        Raises
        ------
        ValueError
            ``latent`` is not an id in ``0..N-1``.
        """
        f = self._check(latent)
        col = self.codes_MN[:, f]
        vals = col.data[col.data > 0]
        if vals.size == 0:
            return GalleryStats(f, 0.0, 0.0, 0.0)
        return GalleryStats(f, vals.size / len(self), float(vals.mean()), float(vals.max()))

    def top_images(self, latent: int, k: int = 16) -> list[tuple[int, float]]:
        """The gallery images where ``latent`` fires most, highest first.

        Parameters
        ----------
        latent
            Latent id.
        k
            At most this many (fewer when it fires on fewer images).

        Returns
        -------
        list of (image index, pooled activation)
            Only images where it fires (activation > 0); ties broken by index.
        """
        f = self._check(latent)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        col = self.codes_MN[:, f]
        rows, vals = col.indices, col.data
        keep = vals > 0
        rows, vals = rows[keep], vals[keep]
        order = np.lexsort((rows, -vals))[:k]
        return [(int(rows[i]), float(vals[i])) for i in order]

    def thumbnail(self, i: int) -> Image.Image:
        """Image ``i`` of the gallery.

        Parameters
        ----------
        i
            Image index ``0..M-1``.

        Returns
        -------
        PIL.Image.Image
            Its stored thumbnail (RGB, at most ``THUMB`` pixels a side, padded to the
            gallery's common size).
        """
        if not 0 <= i < len(self):
            raise ValueError(f"image index {i} out of range 0..{len(self) - 1}")
        return Image.fromarray(self.thumbs_MHW3[i])

    def save(self, path: str | Path) -> Path:
        """Write the gallery to one ``.npz`` (atomically; no pickled objects).

        Parameters
        ----------
        path
            The file (its folder is created).

        Returns
        -------
        Path
            The file written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        c = sp.csr_matrix(self.codes_MN)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            thumbs=self.thumbs_MHW3,
            keys=np.array(self.keys, dtype=str),
            data=c.data,
            indices=c.indices,
            indptr=c.indptr,
            shape=np.array(c.shape),
            meta=np.array(json.dumps({"version": FORMAT_VERSION, "fp": self.fingerprint})),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> LatentGallery | None:
        """Read a saved gallery; None when the file is missing, unreadable or stale.

        Parameters
        ----------
        path
            A file written by :meth:`save`.
        fingerprint
            When given, a gallery computed from anything else counts as stale.

        Returns
        -------
        LatentGallery or None
        """
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != FORMAT_VERSION:
                    return None
                if fingerprint is not None and meta.get("fp") != fingerprint:
                    return None
                codes = sp.csr_matrix(
                    (z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])
                )
                return cls(z["thumbs"], [str(k) for k in z["keys"]], codes, meta["fp"])
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # a truncated or foreign file is rebuilt, never trusted


def fingerprint_of(coder: ImageCoder, data: str, n_images: int) -> str:
    """A hash of what a gallery's codes depend on: SAE weights, model, hookpoint, data.

    Parameters
    ----------
    coder
        The SAE and its model.
    data, n_images
        The gallery's images, as for :func:`build_gallery`.

    Returns
    -------
    str
        Hex sha256.
    """
    h = hashlib.sha256()
    for name, t in sorted(coder.sae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    src = coder.source
    h.update(json.dumps([src.spec, src.pretrained, coder.hookpoint, src.options()]).encode())
    h.update(json.dumps([str(data), int(n_images)]).encode())
    return h.hexdigest()


def _thumb(img: Image.Image) -> Image.Image:
    """The image scaled down so its longest side is at most THUMB (never up: a small render is
    kept pixel for pixel, so a picked gallery image encodes to the codes stored for it)."""
    img = img.convert("RGB")
    scale = THUMB / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _pad(thumbs: list[Image.Image]) -> np.ndarray:
    """Thumbnails centred on black canvases of their largest size: uint8 [M, H, W, 3]."""
    H = max(t.height for t in thumbs)
    W = max(t.width for t in thumbs)
    out = np.zeros((len(thumbs), H, W, 3), np.uint8)
    for i, t in enumerate(thumbs):
        top, left = (H - t.height) // 2, (W - t.width) // 2
        out[i, top : top + t.height, left : left + t.width] = np.asarray(t)
    return out


def build_gallery(
    coder: ImageCoder, data: str, n_images: int, batch_size: int = 128
) -> LatentGallery:
    """Encode up to ``n_images`` images of ``data`` and pool their codes per image.

    Parameters
    ----------
    coder
        The SAE and its model.
    data
        ``world:N:SEED``, a folder of images or WebDataset shards (``vsae.data.iter_inputs``).
        Unreadable images are skipped.
    n_images
        At most this many images.
    batch_size
        Images per model call.

    Returns
    -------
    LatentGallery

    Raises
    ------
    ImageCodesError
        No readable image in ``data``.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    thumbs, keys, blocks = [], [], []
    batch = []

    def flush() -> None:
        codes_BTN = coder.codes([it.image for it in batch])
        blocks.append(sp.csr_matrix(codes_BTN.mean(dim=1).numpy()))
        thumbs.extend(_thumb(it.image) for it in batch)
        keys.extend(it.key for it in batch)
        batch.clear()

    with torch.no_grad():
        for item in iter_inputs(data):
            if item.image is None:
                continue
            batch.append(item)
            if len(batch) == batch_size:
                flush()
            if len(keys) + len(batch) >= n_images:
                break
        if batch:
            flush()
    if not keys:
        raise ImageCodesError(f"{data}: no readable image to build a gallery from")
    fp = fingerprint_of(coder, data, n_images)
    return LatentGallery(_pad(thumbs), keys, sp.vstack(blocks), fp)


def load_or_build_gallery(
    coder: ImageCoder, data: str, n_images: int, cache: str | Path | None = None
) -> LatentGallery:
    """:func:`build_gallery`, reusing ``cache`` (an ``.npz``) when it matches and writing it.

    Parameters
    ----------
    coder, data, n_images
        As for :func:`build_gallery`.
    cache
        The ``.npz`` file; None: always build, write nothing.

    Returns
    -------
    LatentGallery
    """
    fp = fingerprint_of(coder, data, n_images)
    if cache is not None:
        found = LatentGallery.load(cache, fp)
        if found is not None:
            return found
    gallery = build_gallery(coder, data, n_images)
    if cache is not None:
        gallery.save(cache)
    return gallery
