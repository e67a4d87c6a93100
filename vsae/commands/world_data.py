"""The tiny world's CLIP image embeddings as activation shards, shared by quickstart and demo.

Training opens the folder with ``vsae.data.open_source`` (hookpoint ``image``, the training
batch size ``BATCH_SIZE`` and seed).
"""

from __future__ import annotations

from pathlib import Path

BATCH_SIZE = 256
HOOKPOINT = "image"


def world_clip_shards(
    shards: Path, n_images: int, seed: int, progress: bool = True
) -> tuple[int, Path]:
    """Extract the tiny CLIP's image embeddings of ``n_images`` renders into a shard folder.

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
    tuple[int, Path]
        The embedding width ``d`` and the shard folder (hookpoint ``HOOKPOINT``).
    """
    from vsae.encoders import from_spec
    from vsae.extract import extract

    meta = extract(
        from_spec("world:clip", hookpoints=[HOOKPOINT]),
        f"world:{n_images}:{seed}",
        shards,
        batch_size=64,
        shard_size=1000,
        progress=progress,
    )
    return int(meta["hookpoints"][HOOKPOINT]["d"]), Path(shards)
