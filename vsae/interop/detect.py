"""``format="auto"``: look at the files (cfg keys, tensor names, headers) and say which format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vsae.interop.common import InteropError, SAEFormat, read_json, read_torch
from vsae.interop.sparsify import hookpoint_folders

log = logging.getLogger("vsae.interop")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _found(path: Path) -> str:
    """What a folder or file holds, for error messages: file names and cfg keys."""
    if path.is_file():
        return f"a file of {path.stat().st_size} bytes"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = names[:20] + ([f"... {len(names) - 20} more"] if len(names) > 20 else [])
    keys: dict[str, list[str]] = {}
    for cfg in ("cfg.json", "config.json"):
        try:
            data = json.loads((path / cfg).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict):
            keys[cfg] = sorted(data)[:30]
    return f"files {shown}" + "".join(f", {n} keys {k}" for n, k in keys.items())


def detect(path: Path, formats: dict[str, SAEFormat]) -> tuple[str, Path]:
    """The format of the checkpoint at ``path``, and the path to read.

    A folder that matches no format itself but holds exactly one checkpoint (a file of a file
    format: MSAE, saev, overcomplete; or one subfolder, such as sdxl-unbox's ``final/``)
    resolves to it.

    Parameters
    ----------
    path : Path
        A folder or a file.
    formats : dict
        Name -> format, in the order they are tried (the costly overcomplete look last).

    Returns
    -------
    tuple
        ``(format name, path to read)``; the choice is logged on ``vsae.interop``.

    Raises
    ------
    InteropError
        No such path; no format or several formats match (the message lists the files and cfg
        keys found); a sparsify run folder holding several hookpoints.
    """
    if not path.exists():
        raise InteropError(f"{path}: no such file or folder")
    found = [name for name, fmt in formats.items() if fmt.matches(path)]
    if not found and path.is_dir():
        inner = [p for p in sorted(path.iterdir()) if p.is_file()]
        hits = [(n, p) for p in inner for n, f in formats.items() if f.matches(p)]
        if len(hits) == 1:
            log.info("%s: detected format %r in %s", path, hits[0][0], hits[0][1].name)
            return hits[0]
        subs = [p for p in sorted(path.iterdir()) if p.is_dir()]
        sub_hits = [(n, p) for p in subs for n, f in formats.items() if f.matches(p)]
        if len(sub_hits) == 1:  # e.g. sdxl-unbox's <run>/final, a one-hookpoint sparsify run
            log.info("%s: detected format %r in %s/", path, sub_hits[0][0], sub_hits[0][1].name)
            return sub_hits[0]
        hooks = hookpoint_folders(path)
        if hooks:
            raise InteropError(
                f"{path}: a run folder with one SAE per hookpoint {hooks}; load one of them, "
                f"e.g. {path / hooks[0]} (or hf://owner/repo/{hooks[0]})"
            )
    if len(found) == 1:
        log.info("%s: detected format %r", path, found[0])
        return found[0], path
    if not found and path.is_file() and path.suffix in TORCH_SUFFIXES:
        read_torch(path, str(path))  # a refused (pickled) or truncated file says so itself
    for cfg in ("cfg.json", "config.json"):
        if not found and path.is_dir() and (path / cfg).is_file():
            read_json(path / cfg)  # an unreadable config says so itself
    what = "ambiguous layout, matches " + " and ".join(found) if found else "unknown layout"
    raise InteropError(
        f"{path}: {what}; found {_found(path)}; pass format= one of {', '.join(formats)}"
    )
