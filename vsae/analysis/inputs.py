"""An image collection as what the analysis needs: SAE inputs, keys, labels and (on demand)
CLIP embeddings, read in chunks.

``data`` is ``world:N:SEED`` (renders), a folder of images (labels from ``labels.jsonl`` of
``vsae world export``, sidecar JSON, or class subfolders), ``.tar`` image shards, or an
activation-shard folder of ``vsae extract`` (its stored vectors are the SAE inputs).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.concepts import ConceptError
from vsae.analysis.models import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """A chunk of a collection.

    Attributes
    ----------
    acts : Tensor
        SAE inputs ``[B, D]`` or ``[B, T, D]``.
    keys : list of str
        Image path or key per row.
    labels : list of dict
        Labels per row (empty dicts when none).
    images : list or None
        PIL images (None for activation shards).
    """

    acts: torch.Tensor
    keys: list[str]
    labels: list[dict]
    images: list | None


def is_shard_folder(data) -> bool:
    """Whether ``data`` is an activation-shard folder (``meta.json`` of ``vsae extract``).

    Parameters
    ----------
    data : object

    Returns
    -------
    bool
    """
    return isinstance(data, (str, Path)) and (Path(data) / "meta.json").is_file()


def _folder_labels(folder: Path) -> dict[str, dict]:
    path = folder / "labels.jsonl"
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            key = str(rec.get("key", ""))
            out[key] = {
                k: v for k, v in rec.items() if isinstance(v, str) and k not in ("key", "caption")
            }
    return out


def _item_labels(item, folder_labels: dict[str, dict]) -> dict:
    if item.labels:
        return {k: v for k, v in item.labels.items() if isinstance(v, str)}
    stem = Path(item.key).stem
    if stem in folder_labels:
        return folder_labels[stem]
    parent = Path(item.key).parent.name
    return {"class": parent} if parent else {}


def iter_image_chunks(
    data, spec: ModelSpec, batch: int = 256, progress: bool = False
) -> Iterator[Chunk]:
    """Run the SAE's model over images and yield its activations with keys and labels.

    Unreadable images are skipped and named in a warning (not fatal).

    Parameters
    ----------
    data : str or Path
        ``world:N:SEED``, an image folder or ``.tar`` image shards.
    spec : ModelSpec
        The SAE's source and hookpoint.
    batch : int
    progress : bool

    Returns
    -------
    Iterator[Chunk]
        Chunks with images.

    Raises
    ------
    ConceptError
        If the folder holds no images.
    """
    from tqdm import tqdm

    from vsae.data.images import iter_inputs
    from vsae.encoders import from_spec

    folder_labels: dict[str, dict] = {}
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        from vsae.data.images import list_image_files

        if not list_image_files(data):
            raise ConceptError(f"image folder {data}: no images (expected .png/.jpg/... files)")
        folder_labels = _folder_labels(Path(data))
    family = spec.source.split(":", 1)[0]
    opts = {"tokens": spec.tokens} if family in ("open_clip", "timm", "world") else {}
    source = from_spec(spec.source, pretrained=spec.pretrained, hookpoints=[spec.hookpoint], **opts)
    bar = tqdm(desc="images", unit="img", file=sys.stderr, disable=not progress)
    pending = []

    def flush():
        good = [it for it in pending if it.error is None]
        for it in pending:
            if it.error is not None:
                # one line on stderr per skipped image (logging's last-resort handler)
                log.warning("skipped unreadable image %s: %s", it.key, it.error)
        pending.clear()
        if not good:
            return None
        x = source(source.prepare(good))[spec.hookpoint]
        acts = x[:, 0] if x.shape[1] == 1 else x
        bar.update(len(good))
        return Chunk(
            acts,
            [it.key for it in good],
            [_item_labels(it, folder_labels) for it in good],
            [it.image for it in good],
        )

    for item in iter_inputs(str(data) if isinstance(data, Path) else data):
        pending.append(item)
        if len(pending) == batch:
            out = flush()
            if out is not None:
                yield out
    out = flush()
    if out is not None:
        yield out
    bar.close()


def iter_shard_chunks(folder, hookpoint: str | None = None, batch: int = 4096) -> Iterator[Chunk]:
    """Activation vectors of a ``vsae extract`` folder with their source keys and labels.

    Parameters
    ----------
    folder : str or Path
    hookpoint : str, optional
        Needed when the folder holds several.
    batch : int

    Returns
    -------
    Iterator[Chunk]
        Chunks without images (``images`` is None).
    """
    from vsae.data.shard_format import decode_array, read_meta
    from vsae.data.shard_reader import iter_shard_samples

    meta = read_meta(folder)
    hps = list(meta["hookpoints"])
    hp = hookpoint if hookpoint in hps else (hps[0] if len(hps) == 1 else None)
    if hp is None:
        raise ConceptError(f"{folder}: choose a hookpoint among {hps}, got {hookpoint!r}")
    fld = meta["hookpoints"][hp]["field"]
    urls = [str(Path(folder) / s["name"]) for s in meta["shards"]]
    expected = {u: int(s["n_samples"]) for u, s in zip(urls, meta["shards"], strict=True)}
    xs, keys, labels = [], [], []
    for sample in iter_shard_samples(urls, expected):
        where = f"{sample['__url__']} sample {sample['__key__']}"
        x = decode_array(sample[fld], where).astype(np.float32)
        info = json.loads(sample["json"]) if "json" in sample else {}
        xs.append(x[0] if x.shape[0] == 1 else x)
        keys.append(str(info.get("source_key", sample["__key__"])))
        labels.append({k: v for k, v in info.get("labels", {}).items() if isinstance(v, str)})
        if len(xs) == batch:
            yield Chunk(torch.from_numpy(np.stack(xs)), keys, labels, None)
            xs, keys, labels = [], [], []
    if xs:
        yield Chunk(torch.from_numpy(np.stack(xs)), keys, labels, None)


def world_images_of_keys(keys: list[str]) -> list:
    """Re-render tiny-world images from their keys (``world-SEED-INDEX``), for shards of
    world renders, where the images themselves are not stored.

    Parameters
    ----------
    keys : list of str

    Returns
    -------
    list of PIL.Image.Image

    Raises
    ------
    ConceptError
        If a key is not a world key.
    """
    from PIL import Image

    from vsae import world

    out = []
    for k in keys:
        parts = k.split("-")
        if len(parts) != 3 or parts[0] != "world":
            raise ConceptError(
                f"image key {k!r} is not a tiny-world render; image-side naming from "
                f"activation shards needs the images: pass --images FOLDER"
            )
        scene = world.sample_scene(int(parts[1]), int(parts[2]))
        out.append(Image.fromarray(world.render_scenes([scene])[0]))
    return out
