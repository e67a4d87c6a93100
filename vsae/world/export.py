"""Export renders as a folder of images or as WebDataset shards.

Folder layout: ``{i:08d}.png`` plus ``labels.jsonl`` (one JSON object per line
with ``key``, ``caption`` and the scene) and ``captions.txt``.
Shards: ``world-{shard:06d}.tar`` with ``{key}.png|jpg``, ``{key}.json`` (scene)
and ``{key}.txt`` (caption) per sample, written with ``webdataset.ShardWriter``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .captions import random_captions
from .render import render_scenes
from .scenes import sample_scenes

CHUNK = 512


def _chunks(n: int, seed: int, two_objects: float, correlations):
    for start in range(0, n, CHUNK):
        scenes = sample_scenes(
            min(CHUNK, n - start),
            seed,
            start=start,
            two_objects=two_objects,
            correlations=correlations,
        )
        caps = random_captions(scenes, seed=seed * 7919 + start)
        yield start, render_scenes(scenes), scenes, caps


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(img).save(buf, format="PNG")
    else:
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def export_folder(
    out: str | Path,
    n: int,
    seed: int = 0,
    fmt: str = "png",
    two_objects: float = 0.0,
    correlations=None,
) -> Path:
    """Write ``n`` renders, ``labels.jsonl`` and ``captions.txt`` into ``out``.

    Parameters
    ----------
    out : str or Path
        The folder, created if needed; images are ``00000000.png`` and so on.
    n : int
        Number of scenes.
    seed : int
        The data set's seed.
    fmt : str
        ``png`` (lossless) or ``jpg`` (quality 95).
    two_objects : float
        Probability of a second object per scene.
    correlations : optional
        ``Correlation`` objects or strings, as for ``sample_scenes``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ValueError
        Another ``fmt``, or an invalid correlation.
    """
    if fmt not in ("png", "jpg"):
        raise ValueError(f"fmt must be 'png' or 'jpg', got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "labels.jsonl", "w") as lab, open(out / "captions.txt", "w") as cap:
        for start, images, scenes, caps in _chunks(n, seed, two_objects, correlations):
            for j, (img, scene, c) in enumerate(zip(images, scenes, caps, strict=True)):
                key = f"{start + j:08d}"
                (out / f"{key}.{fmt}").write_bytes(_encode(img, fmt))
                lab.write(json.dumps({"key": key, "caption": c, **scene}) + "\n")
                cap.write(c + "\n")
    return out


def export_shards(
    out: str | Path,
    n: int,
    seed: int = 0,
    fmt: str = "png",
    per_shard: int = 1000,
    two_objects: float = 0.0,
    correlations=None,
) -> list[str]:
    """Write ``n`` renders as WebDataset tar shards into ``out``.

    Each sample holds the image (``png`` or ``jpg``), its scene (``json``) and a caption
    (``txt``) under the key ``00000000`` and so on.

    Parameters
    ----------
    out : str or Path
        The folder, created if needed; shards are ``world-000000.tar`` and so on.
    n : int
        Number of scenes.
    seed : int
        The data set's seed.
    fmt : str
        ``png`` or ``jpg``.
    per_shard : int
        Samples per shard.
    two_objects : float
        Probability of a second object per scene.
    correlations : optional
        As for ``sample_scenes``.

    Returns
    -------
    list of str
        The shard paths, sorted.

    Raises
    ------
    ValueError
        Another ``fmt``, or an invalid correlation.
    """
    import webdataset as wds

    if fmt not in ("png", "jpg"):
        raise ValueError(f"fmt must be 'png' or 'jpg', got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / "world-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for start, images, scenes, caps in _chunks(n, seed, two_objects, correlations):
            for j, (img, scene, c) in enumerate(zip(images, scenes, caps, strict=True)):
                sink.write(
                    {
                        "__key__": f"{start + j:08d}",
                        fmt: _encode(img, fmt),
                        "json": json.dumps(scene).encode(),
                        "txt": c.encode(),
                    }
                )
    return sorted(str(p) for p in out.glob("world-*.tar"))
