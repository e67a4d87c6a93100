"""What an extraction's inputs are, as JSON: part of a shard folder's stored identity.

A resumed extraction continues after the last committed input index, so it must read the same
inputs in the same order; a complete folder answers only for the data it was made from. The
identity of a folder or tar list is a fingerprint of its sorted file list (names and sizes), not
of the bytes, so that checking it costs one directory walk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .images import expand_shards, is_webdataset, list_image_files, parse_world


def _sha256(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def data_identity(data: Any) -> dict | None:
    """A JSON description of ``data`` that changes when the inputs (or their order) change.

    Parameters
    ----------
    data : str, path, list or iterable
        What :func:`vsae.data.images.iter_inputs` accepts.

    Returns
    -------
    dict or None
        ``{"kind": "world", "n", "seed"}``; ``{"kind": "folder" | "webdataset", "n_files",
        "files_sha256"}`` (sorted relative names and sizes); ``{"kind": "prompts", "n_bytes",
        "sha256"}`` (the prompt file's content); None for an in-memory iterable, which cannot
        be identified (its resume is not checked).

    Raises
    ------
    FileNotFoundError
        A named folder, tar shard or prompt file does not exist.
    """
    world = parse_world(data)
    if world is not None:
        return {"kind": "world", "n": world[0], "seed": world[1]}
    if is_webdataset(data):
        urls = expand_shards(data)
        lines = [f"{os.path.basename(u)}\t{os.path.getsize(u)}" for u in urls]
        return {"kind": "webdataset", "n_files": len(urls), "files_sha256": _sha256(lines)}
    if not isinstance(data, (str, os.PathLike)):
        return None
    path = Path(data)
    if path.is_dir():
        files = list_image_files(path)
        lines = [f"{p.relative_to(path).as_posix()}\t{p.stat().st_size}" for p in files]
        return {"kind": "folder", "n_files": len(files), "files_sha256": _sha256(lines)}
    if path.suffix == ".txt" and path.is_file():
        raw = path.read_bytes()
        return {"kind": "prompts", "n_bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    return None


def data_label(data: Any) -> str | None:
    """How the user named ``data`` (for messages).

    Parameters
    ----------
    data : object
        A path, a list of WebDataset shard URLs, or an in-memory iterable.

    Returns
    -------
    str or None
        The path or the comma-joined URLs; None for an in-memory iterable.
    """
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (list, tuple)) and is_webdataset(data):
        return ",".join(str(u) for u in data)
    return None
