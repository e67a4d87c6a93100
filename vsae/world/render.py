"""Vectorised numpy rendering of scenes (see ``scenes.py``) to 64x64 RGB images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .scenes import sample_scenes
from .vocab import SHAPES

CANVAS = 64
SUPERSAMPLE = 2


def _hsv_to_rgb_np(h_deg: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; inputs (N,), output (N, 3) in [0, 1]."""
    h = (h_deg % 360.0) / 60.0
    c = v * s
    x = c * (1 - np.abs(h % 2 - 1))
    z = np.zeros_like(h)
    sector = np.floor(h).astype(int) % 6
    table = [(c, x, z), (x, c, z), (z, c, x), (z, x, c), (x, z, c), (c, z, x)]
    rgb = np.zeros((len(h), 3))
    for k, (r, g, b) in enumerate(table):
        m = sector == k
        rgb[m] = np.stack([r[m], g[m], b[m]], axis=1)
    return rgb + (v - c)[:, None]


def _inside(shape: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in local coordinates (u right, v up), radius r (N,1,1)."""
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.88 * r
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.22 * r
    if shape == "cross":
        w, arm = 0.36 * r, 1.08 * r
        return ((np.abs(u) <= w) & (np.abs(v) <= arm)) | ((np.abs(v) <= w) & (np.abs(u) <= arm))
    if shape == "triangle":
        big = 1.3 * r
        v = v + 0.2 * r  # sit the triangle's mass nearer the centre
        inside = v >= -big / 2
        for deg in (30.0, 150.0):
            a = np.deg2rad(deg)
            inside &= u * np.cos(a) + v * np.sin(a) <= big / 2
        return inside
    if shape == "star":
        outer = 1.3 * r
        inner = 0.48 * outer
        sector = 2 * np.pi / 5
        theta = (np.arctan2(v, u) - np.pi / 2) % sector
        a = np.minimum(theta, sector - theta)
        rho = np.sqrt(u * u + v * v)
        qx, qy = rho * np.cos(a), rho * np.sin(a)
        p2x, p2y = inner * np.cos(sector / 2), inner * np.sin(sector / 2)
        dx, dy = p2x - outer, p2y
        return dx * qy - dy * (qx - outer) >= 0
    raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")


def _object_layer(objs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (N, 64, 64) and colour (N, 3) of one object per scene."""
    n = len(objs)
    size = CANVAS * SUPERSAMPLE
    grid = (np.arange(size) + 0.5) / SUPERSAMPLE
    gx, gy = np.meshgrid(grid, grid)  # x to the right, y down
    alpha = np.zeros((n, size, size), dtype=np.float32)
    shapes = np.array([o["shape"] for o in objs])
    for shape in set(shapes.tolist()):
        idx = np.nonzero(shapes == shape)[0]
        cx = np.array([objs[i]["cx"] for i in idx])[:, None, None]
        cy = np.array([objs[i]["cy"] for i in idx])[:, None, None]
        r = np.array([objs[i]["radius"] for i in idx])[:, None, None]
        ang = np.deg2rad(np.array([objs[i]["angle"] for i in idx]))[:, None, None]
        dx, dy = gx[None] - cx, cy - gy[None]  # dy points up
        u = dx * np.cos(ang) + dy * np.sin(ang)
        v = -dx * np.sin(ang) + dy * np.cos(ang)
        alpha[idx] = _inside(shape, u, v, r)
    alpha = alpha.reshape(n, CANVAS, SUPERSAMPLE, CANVAS, SUPERSAMPLE).mean(axis=(2, 4))
    colour = _hsv_to_rgb_np(
        np.array([o["hue"] for o in objs]),
        np.array([o["sat"] for o in objs]),
        np.array([o["val"] for o in objs]),
    )
    return alpha, colour


def _backgrounds(scenes: Sequence[dict]) -> np.ndarray:
    """Background images (N, 64, 64, 3) in [0, 1]."""
    n = len(scenes)
    grid = np.arange(CANVAS) + 0.5
    gx, gy = np.meshgrid(grid, grid)
    c1 = np.array([s["bg"]["c1"] for s in scenes])[:, None, None, :]
    c2 = np.array([s["bg"]["c2"] for s in scenes])[:, None, None, :]
    ang = np.array([s["bg"]["angle"] for s in scenes])[:, None, None]
    period = np.array([s["bg"]["period"] for s in scenes])[:, None, None]
    proj = gx[None] * np.cos(ang) + gy[None] * np.sin(ang)  # (N, 64, 64)
    kind = np.array([s["background"] for s in scenes])
    t = np.zeros((n, CANVAS, CANVAS))
    grad = kind == "gradient"
    # normalise the projection to [0, 1] over the canvas for gradients
    lo = np.minimum(0, CANVAS * np.cos(ang)) + np.minimum(0, CANVAS * np.sin(ang))
    hi = np.maximum(0, CANVAS * np.cos(ang)) + np.maximum(0, CANVAS * np.sin(ang))
    t[grad] = ((proj - lo) / (hi - lo))[grad]
    stripes = kind == "stripes"
    t[stripes] = (np.sin(2 * np.pi * proj / period) > 0)[stripes]
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    for i in np.nonzero(kind == "noise")[0]:
        rng = np.random.default_rng(scenes[i]["bg"]["seed"])
        coarse = rng.normal(0.0, 0.15, size=(9, 9))
        # bilinear upsampling of the coarse noise to the canvas
        pos = np.linspace(0, 8, CANVAS)
        i0 = np.minimum(pos.astype(int), 7)
        f = pos - i0
        rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
        smooth = rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None]
        fine = rng.normal(0.0, 0.08, size=(CANVAS, CANVAS))
        img[i] = img[i] + (smooth + fine)[..., None]
    return np.clip(img, 0.0, 1.0)


def render_scenes(scenes: Sequence[dict], chunk: int = 256) -> np.ndarray:
    """Render scenes to 64x64 RGB images, ``chunk`` at a time.

    Parameters
    ----------
    scenes : sequence of dict
        Scenes from ``sample_scenes``.
    chunk : int
        Scenes rendered per vectorised pass (bounds memory).

    Returns
    -------
    ndarray
        uint8 [N, 64, 64, 3]; deterministic in the scenes.
    """
    if len(scenes) == 0:
        return np.zeros((0, CANVAS, CANVAS, 3), dtype=np.uint8)
    if len(scenes) > chunk:
        return np.concatenate(
            [_render_chunk(scenes[i : i + chunk]) for i in range(0, len(scenes), chunk)]
        )
    return _render_chunk(scenes)


def _render_chunk(scenes: Sequence[dict]) -> np.ndarray:
    img = _backgrounds(scenes)
    n_layers = max(len(s["objects"]) for s in scenes)
    for k in range(n_layers):
        idx = [i for i, s in enumerate(scenes) if len(s["objects"]) > k]
        alpha, colour = _object_layer([scenes[i]["objects"][k] for i in idx])
        a = alpha[..., None]
        img[idx] = img[idx] * (1 - a) + colour[:, None, None, :] * a
    return np.round(img * 255.0).astype(np.uint8)


def render(n: int, seed: int, **kwargs) -> tuple[np.ndarray, list[dict]]:
    """Sample ``n`` scenes from ``seed`` and render them.

    Parameters
    ----------
    n : int
        Number of scenes.
    seed : int
        The data set's seed.
    **kwargs
        Passed to ``sample_scenes`` (``start``, ``two_objects``, ``correlations``, ``fixed``).

    Returns
    -------
    (ndarray, list of dict)
        uint8 images [n, 64, 64, 3] and their scenes (the ground truth).
    """
    scenes = sample_scenes(n, seed, **kwargs)
    return render_scenes(scenes), scenes


def downsample(images_NHW3: np.ndarray, factor: int = 2) -> np.ndarray:
    """Area-average downsampling of uint8 images by an integer factor.

    Parameters
    ----------
    images_NHW3 : ndarray
        uint8 [N, H, W, 3].
    factor : int
        Divides H and W.

    Returns
    -------
    ndarray
        uint8 [N, H / factor, W / factor, 3].

    Raises
    ------
    ValueError
        When the size is not divisible by ``factor``.
    """
    n, h, w, c = images_NHW3.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by {factor}")
    x = images_NHW3.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.round(x.mean(axis=(2, 4))).astype(np.uint8)
