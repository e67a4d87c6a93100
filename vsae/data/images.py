"""Image inputs for extraction: a folder, a WebDataset of images, or any iterable of images.

Every input gets a deterministic position (``index``) so an interrupted extraction can resume
after its last complete shard. Unreadable or corrupt images are yielded with ``error`` set (and
``image`` None) so that the caller can skip and report them; ``strict=True`` raises instead.
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


class ImageReadError(RuntimeError):
    """An input image could not be decoded (raised only with ``strict=True``)."""


@dataclass
class InputItem:
    """One input of an extraction run.

    Attributes
    ----------
    index : int
        Position in the deterministic input order.
    key : str
        Source key (relative file path, ``shard.tar/key``, or a generated name).
    image : PIL.Image.Image or None
        RGB image (None for text-only inputs and for unreadable images).
    text : str or None
        Caption or prompt.
    labels : dict
        Known labels (from a sidecar/member json), JSON-serialisable.
    error : str or None
        Why the image could not be read.
    """

    index: int
    key: str
    image: Any = None
    text: str | None = None
    labels: dict = field(default_factory=dict)
    error: str | None = None


def decode_image(data: bytes | str | os.PathLike, name: str) -> Any:
    """Decode image bytes or a file into an RGB PIL image.

    Parameters
    ----------
    data : bytes, str or PathLike
        Encoded image bytes or an image file.
    name : str
        The input named in the error.

    Returns
    -------
    PIL.Image.Image
        RGB.

    Raises
    ------
    ImageReadError
        When the data is not a readable image.
    """
    from PIL import Image

    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        with Image.open(src) as img:
            img.load()
            return img.convert("RGB")
    except Exception as exn:
        raise ImageReadError(f"cannot read image {name}: {type(exn).__name__}: {exn}") from exn


def _split_json(obj: Any) -> tuple[str | None, dict]:
    if not isinstance(obj, dict):
        return None, {"value": obj}
    caption = obj.get("caption")
    labels = {k: v for k, v in obj.items() if k != "caption"}
    return (str(caption) if caption is not None else None), labels


def is_webdataset(data: Any) -> bool:
    """True when ``data`` names tar shards (a .tar path, a glob, a brace pattern or a list).

    Parameters
    ----------
    data : object
        What was given as input data.

    Returns
    -------
    bool
    """
    if isinstance(data, (list, tuple)):
        return bool(data) and all(
            isinstance(u, (str, os.PathLike)) and str(u).endswith(".tar") for u in data
        )
    if isinstance(data, (str, os.PathLike)):
        s = str(data)
        return s.endswith(".tar") or (("{" in s or "*" in s) and ".tar" in s)
    return False


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted by relative path.

    Parameters
    ----------
    folder : str or PathLike
        The image folder.

    Returns
    -------
    list of Path

    Raises
    ------
    FileNotFoundError
        When the folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def in_part(index: int, part: tuple[int, int] | None) -> bool:
    """True when input ``index`` belongs to part ``part = (i, n)`` (every n-th input from i).

    Parameters
    ----------
    index : int
        Position of the input in the deterministic input order.
    part : (int, int) or None
        ``(i, n)`` with ``0 <= i < n``; None: every input (one process).

    Returns
    -------
    bool
    """
    return part is None or index % part[1] == part[0]


def iter_folder(
    folder, start: int = 0, strict: bool = False, part: tuple[int, int] | None = None
) -> Iterator[InputItem]:
    """Images of a folder in sorted order; ``name.txt`` / ``name.json`` sidecars give captions.

    With ``part = (i, n)`` only every n-th image from i is read (see :func:`in_part`).

    Parameters
    ----------
    folder : str or PathLike
        The image folder.
    start : int
        Skip the first ``start`` images (resume).
    strict : bool
        Raise :class:`ImageReadError` on an unreadable image instead of yielding it with
        ``error`` set.
    part : (int, int), optional
        ``(i, n)``: only every n-th input from i (:func:`in_part`).

    Returns
    -------
    iterator of InputItem
    """
    root = Path(folder)
    files = list_image_files(root)
    for i in range(start, len(files)):
        if not in_part(i, part):
            continue
        path = files[i]
        key = path.relative_to(root).as_posix()
        text, labels = None, {}
        txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
        if txt.is_file():
            text = txt.read_text().strip()
        if js.is_file():
            try:
                cap, labels = _split_json(json.loads(js.read_text()))
                text = text if text is not None else cap
            except json.JSONDecodeError as exn:
                if strict:
                    raise ImageReadError(f"{js}: invalid JSON ({exn})") from exn
        try:
            img = decode_image(path, str(path))
            yield InputItem(i, key, img, text, labels)
        except ImageReadError as exn:
            if strict:
                raise
            yield InputItem(i, key, None, text, labels, error=str(exn))


def expand_shards(data) -> list[str]:
    """Expand a tar path / glob / brace pattern / list into a sorted list of existing shards.

    Parameters
    ----------
    data : str, PathLike or list
        Shard paths, globs or brace patterns.

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        When a pattern matches no file.
    """
    import braceexpand

    items = list(data) if isinstance(data, (list, tuple)) else [data]
    urls: list[str] = []
    for item in items:
        for pat in braceexpand.braceexpand(str(item)):
            hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
            urls.extend(hits)
    missing = [u for u in urls if not os.path.isfile(u)]
    if not urls or missing:
        raise FileNotFoundError(f"WebDataset shard(s) not found: {missing or data}")
    return urls


def iter_webdataset(
    data, start: int = 0, strict: bool = False, part: tuple[int, int] | None = None
) -> Iterator[InputItem]:
    """Samples of WebDataset image shards (jpg/jpeg/png/webp, optional txt/json), in order.

    A sample without an image member, or whose image cannot be decoded, is yielded with
    ``error`` set; a truncated or corrupt tar yields one error item naming the shard and
    continues with the next shard (``strict=True`` raises instead). With ``part = (i, n)``
    only every n-th sample from i is decoded (the tars are still read through, to number
    the samples).

    Parameters
    ----------
    data : str, PathLike or list
        Shard paths, globs or brace patterns (:func:`expand_shards`).
    start : int
        Skip the first ``start`` samples (resume).
    strict : bool
        Raise instead of yielding error items.
    part : (int, int), optional
        ``(i, n)``: only every n-th input from i (:func:`in_part`).

    Returns
    -------
    iterator of InputItem
    """
    import webdataset as wds

    index = 0

    def handler(exn):
        raise exn

    for url in expand_shards(data):
        stream = wds.tarfile_samples([{"url": url}], handler=handler)
        try:
            for sample in stream:
                i, index = index, index + 1
                if i < start or not in_part(i, part):
                    continue
                key = f"{os.path.basename(url)}/{sample['__key__']}"
                text, labels = None, {}
                if "json" in sample:
                    try:
                        text, labels = _split_json(json.loads(sample["json"]))
                    except (json.JSONDecodeError, UnicodeDecodeError) as exn:
                        if strict:
                            raise ImageReadError(f"{key}.json: invalid JSON ({exn})") from exn
                if "txt" in sample:
                    text = sample["txt"].decode("utf-8", errors="replace").strip()
                ext = next((e for e in WDS_IMAGE_KEYS if e in sample), None)
                try:
                    if ext is None:
                        raise ImageReadError(
                            f"sample {key} has no image member (looked for {WDS_IMAGE_KEYS}; "
                            f"found {sorted(k for k in sample if not k.startswith('__'))})"
                        )
                    img = decode_image(sample[ext], f"{key}.{ext}")
                    yield InputItem(i, key, img, text, labels)
                except ImageReadError as exn:
                    if strict:
                        raise
                    yield InputItem(i, key, None, text, labels, error=str(exn))
        except ImageReadError:
            raise
        except Exception as exn:
            msg = f"corrupt or truncated input shard {url}: {type(exn).__name__}: {exn}"
            if strict:
                raise ImageReadError(msg) from exn
            i, index = index, index + 1
            if i >= start and in_part(i, part):
                yield InputItem(i, url, None, error=msg)


def iter_iterable(
    items: Iterable[Any], start: int = 0, part: tuple[int, int] | None = None
) -> Iterator[InputItem]:
    """Wrap PIL images, strings (prompts) or dicts {image, text|caption, labels, key}.

    Parameters
    ----------
    items : iterable
        PIL images, prompt strings or dicts.
    start : int
        Skip the first ``start`` items (resume).
    part : (int, int), optional
        ``(i, n)``: only every n-th input from i (:func:`in_part`).

    Returns
    -------
    iterator of InputItem
    """
    for i, obj in enumerate(items):
        if i < start or not in_part(i, part):
            continue
        if isinstance(obj, InputItem):
            yield obj
        elif isinstance(obj, str):
            yield InputItem(i, f"text-{i:09d}", None, obj)
        elif isinstance(obj, dict):
            yield InputItem(
                i,
                str(obj.get("key", f"item-{i:09d}")),
                obj.get("image"),
                obj.get("text", obj.get("caption")),
                dict(obj.get("labels") or {}),
            )
        else:
            yield InputItem(i, f"item-{i:09d}", obj)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts from a text file, one a line (blank lines and ``#`` comments skipped).

    Parameters
    ----------
    path : str or PathLike
        The prompt file.

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompt file {p} does not exist")
    lines = [ln.strip() for ln in p.read_text().splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {p} holds no prompts")
    return prompts


def parse_world(data: Any) -> tuple[int, int] | None:
    """Parse ``world``, ``world:N`` or ``world:N:SEED``.

    Parameters
    ----------
    data : object
        What was given as input data.

    Returns
    -------
    (int, int) or None
        (N, seed) (defaults 1000 and 0); None for anything else.

    Raises
    ------
    ValueError
        A ``world:`` spec with bad numbers.
    """
    if not isinstance(data, str) or not (data == "world" or data.startswith("world:")):
        return None
    parts = data.split(":")[1:]
    try:
        n = int(parts[0]) if parts else 1000
        seed = int(parts[1]) if len(parts) > 1 else 0
    except ValueError as exn:
        raise ValueError(f"--data {data!r}: expected world, world:N or world:N:SEED") from exn
    if n < 1 or len(parts) > 2:
        raise ValueError(f"--data {data!r}: expected world, world:N or world:N:SEED (N >= 1)")
    return n, seed


def iter_world(
    n: int, seed: int = 0, start: int = 0, chunk: int = 256, part: tuple[int, int] | None = None
) -> Iterator[InputItem]:
    """Scenes of the tiny world rendered on the fly (64x64), with full captions and labels.

    With ``part = (i, n)`` only every n-th scene from i is rendered (a scene's pixels depend
    on its own seed only).

    Parameters
    ----------
    n : int
        Scenes in all.
    seed : int
        World seed.
    start : int
        Skip the first ``start`` scenes (resume).
    chunk : int
        Scenes rendered at a time.
    part : (int, int), optional
        ``(i, n)``: only every n-th input from i (:func:`in_part`).

    Returns
    -------
    iterator of InputItem
    """
    from PIL import Image

    from vsae import world  # here, not at the top: only world inputs need its models

    for lo in range(start, n, chunk):
        scenes = world.sample_scenes(min(chunk, n - lo), seed, start=lo)
        mine = [j for j in range(len(scenes)) if in_part(lo + j, part)]
        images = world.render_scenes([scenes[j] for j in mine])
        for j, img in zip(mine, images, strict=True):
            scene = scenes[j]
            labels = {a: scene[a] for a in world.ATTRIBUTES if a in scene}
            yield InputItem(
                lo + j,
                f"world-{seed}-{lo + j:09d}",
                Image.fromarray(img),
                world.full_caption(scene),
                labels,
            )


def iter_inputs(
    data: Any, start: int = 0, strict: bool = False, part: tuple[int, int] | None = None
) -> Iterator[InputItem]:
    """Dispatch on ``data``: image folder, WebDataset shards, prompt file (.txt) or iterable.

    Parameters
    ----------
    data : str, path, list or iterable
        A folder of images; a ``.tar`` path / glob / brace pattern / list of tars; a ``.txt``
        file of prompts; ``world[:N[:SEED]]`` (the tiny world's rendered scenes with captions
        and labels; default N = 1000); or an iterable of PIL images, prompt strings or dicts.
    start : int
        Skip the first ``start`` inputs (resume).
    strict : bool
        Raise :class:`ImageReadError` on the first unreadable image instead of reporting it.
    part : (int, int), optional
        ``(i, n)``: only the inputs of part i of n (every n-th from i, see :func:`in_part`),
        for rank-split extraction; the indices stay those of the whole input order.

    Returns
    -------
    iterator of InputItem

    Raises
    ------
    ValueError
        A bad ``part``.
    """
    if part is not None and not (part[1] >= 1 and 0 <= part[0] < part[1]):
        raise ValueError(f"part {part[0]}/{part[1]}: expected i/N with 0 <= i < N")
    world_args = parse_world(data)
    if world_args is not None:
        return iter_world(world_args[0], world_args[1], start, part=part)
    if is_webdataset(data):
        return iter_webdataset(data, start, strict, part)
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_dir():
            return iter_folder(p, start, strict, part)
        if p.suffix == ".txt" and p.is_file():
            return iter_iterable(read_prompts(p), start, part)
        raise FileNotFoundError(
            f"--data {data}: not a folder, a .tar shard pattern or a .txt prompt file"
        )
    return iter_iterable(data, start, part)
