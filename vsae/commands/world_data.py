"""The tiny world's CLIP image embeddings as activation shards, shared by quickstart and demo."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BATCH_SIZE = 256


def world_clip_batches(
    shards: Path, n_images: int, seed: int, progress: bool = True
) -> tuple[int, Iterable]:
    """Extract the tiny CLIP's image embeddings of ``n_images`` renders and open them.

    Parameters
    ----------
    shards : Path
        Folder the activation shards are written to (an extraction resumes there).
    n_images : int
        Number of tiny-world renders (``world:N:SEED``).
    seed : int
        World seed of the renders and of the batch shuffle.
    progress : bool
        Show progress bars on stderr.

    Returns
    -------
    tuple[int, Iterable]
        The embedding width ``d`` and the shuffled ``[BATCH_SIZE, d]`` batches.
    """
    from vsae.data.shards import open_batches
    from vsae.encoders import from_spec
    from vsae.extract import extract

    meta = extract(
        from_spec("world:clip", hookpoints=["image"]),
        f"world:{n_images}:{seed}",
        shards,
        batch_size=64,
        shard_size=1000,
        progress=progress,
    )
    d = meta["hookpoints"]["image"]["d"]
    return d, open_batches(shards, BATCH_SIZE, hookpoint="image", seed=seed)
