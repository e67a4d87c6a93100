"""``format="auto"``: look at a folder's files and cfg keys, say which format was chosen."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vsae.interop import saelens, sparsify
from vsae.interop.common import InteropError

log = logging.getLogger("vsae.interop")
FORMATS = ("vsae", "saelens", "sparsify")


def _cfg(path: Path) -> dict | None:
    cfg_path = path / "cfg.json"
    if not cfg_path.is_file():
        return None
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise InteropError(f"{cfg_path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else None


def detect(path: Path) -> str:
    """The format of the SAE folder ``path``.

    Parameters
    ----------
    path : Path
        A folder.

    Returns
    -------
    str
        One of ``FORMATS``; the choice is logged on ``vsae.interop``.

    Raises
    ------
    InteropError
        No format or several formats match; the message lists the files and cfg keys found.
    """
    if not path.is_dir():
        raise InteropError(f"{path}: not a folder; an SAE checkpoint is a folder of files")
    cfg = _cfg(path)
    found = []
    if cfg is not None and "format_version" in cfg and "arch" in cfg:
        found.append("vsae")
    elif saelens.looks_like(path, cfg) or sparsify.looks_like(path, cfg):
        found += [
            n for n, m in (("saelens", saelens), ("sparsify", sparsify)) if m.looks_like(path, cfg)
        ]
    if len(found) == 1:
        log.info("%s: detected format %r", path, found[0])
        return found[0]
    files = sorted(p.name for p in path.iterdir())
    keys = sorted(cfg) if cfg else []
    what = "ambiguous layout, matches " + ", ".join(found) if found else "unknown layout"
    raise InteropError(
        f"{path}: {what}; found files {files}, cfg.json keys {keys}; pass format= one of "
        f"{', '.join(FORMATS)}"
    )
