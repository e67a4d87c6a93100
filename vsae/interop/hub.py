"""``hf://owner/repo[/subfolder][@revision]``: download with huggingface_hub into its cache.

Offline (``HF_HUB_OFFLINE=1``) only the cache is read; without a network,
``snapshot_download`` itself falls back to a cached snapshot. Otherwise the error says the
files are not cached and how to fetch them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vsae.interop.common import InteropError

PREFIX = "hf://"
_URI = re.compile(
    r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"
    r"(?P<sub>(?:/[^@/\s]+)*)/?(?:@(?P<rev>[\w.][\w./-]*))?$"
)


def is_uri(path: object) -> bool:
    """Whether ``path`` is an ``hf://`` URI.

    Parameters
    ----------
    path : object
        A path or string.

    Returns
    -------
    bool
    """
    return isinstance(path, str) and path.startswith(PREFIX)


def parse(uri: str) -> tuple[str, str, str | None]:
    """Split a hub URI into ``(repo_id, subfolder, revision)``.

    Parameters
    ----------
    uri : str
        ``hf://owner/repo[/subfolder][@revision]``.

    Returns
    -------
    tuple
        ``repo_id`` (``owner/repo``), ``subfolder`` (``""`` when none), ``revision`` (or None).

    Raises
    ------
    InteropError
        The URI is not of that form.
    """
    m = _URI.match(uri)
    if m is None or ".." in m["sub"].split("/"):
        raise InteropError(
            f"{uri!r}: malformed Hub URI; expected hf://owner/repo[/subfolder][@revision], "
            "e.g. hf://bcywinski/SAeUron/unet.up_blocks.1.attentions.1@main"
        )
    return m["repo"], m["sub"].strip("/"), m["rev"]


def _offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def fetch(uri: str) -> Path:
    """The local path of a hub URI: its cached snapshot, downloaded unless offline.

    Parameters
    ----------
    uri : str
        ``hf://owner/repo[/subfolder][@revision]``; the subfolder may also name one file.

    Returns
    -------
    Path
        The snapshot folder, or its subfolder or file.

    Raises
    ------
    InteropError
        Malformed URI; files neither cached nor downloadable; a subfolder not in the repo.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, sub, rev = parse(uri)
    cache = _cache_dir()
    offline = _offline()
    try:
        root = snapshot_download(
            repo,
            revision=rev,
            allow_patterns=[sub, f"{sub}/*"] if sub else None,
            cache_dir=cache,
            local_files_only=offline,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        fetch_cmd = f"hf download {repo}" + (f" --revision {rev}" if rev else "")
        fetch_cmd += f" --include '{sub}/*'" if sub else ""
        where = cache or "the default huggingface cache"
        why = "HF_HUB_OFFLINE is set" if offline else f"download failed: {type(err).__name__}"
        raise InteropError(
            f"{uri}: not in the cache ({where}) and {why}; on a machine with network run "
            f"`{fetch_cmd}` (same HF_HOME/HF_HUB_CACHE) and copy the cache here"
        ) from None
    local = Path(root) / sub if sub else Path(root)
    if not local.exists():
        raise InteropError(f"{uri}: {sub!r} is not in the snapshot {root}")
    return local
