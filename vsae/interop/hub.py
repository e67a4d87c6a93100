"""``hf://owner/repo[/subfolder][@revision]``: download with huggingface_hub into its cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vsae.interop.common import InteropError

_URI = re.compile(
    r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?P<sub>(/[^@/]+)*)/?(@(?P<rev>[\w./-]+))?$"
)


def parse(uri: str) -> tuple[str, str, str | None]:
    """Split a hub URI into ``(repo_id, subfolder, revision)``.

    Raises
    ------
    InteropError
        The URI is not ``hf://owner/repo[/subfolder][@revision]``.
    """
    m = _URI.match(uri)
    if m is None:
        raise InteropError(
            f"{uri!r}: malformed Hub URI; expected hf://owner/repo[/subfolder][@revision]"
        )
    return m["repo"], m["sub"].strip("/"), m["rev"]


def _cache_dir() -> str | None:
    # Read at call time: huggingface_hub reads these variables once, at import.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def fetch(uri: str) -> Path:
    """The local folder of a hub URI, downloading it unless offline (then the cache only).

    Parameters
    ----------
    uri : str
        ``hf://owner/repo[/subfolder][@revision]``.

    Returns
    -------
    Path
        The snapshot folder, or its subfolder.

    Raises
    ------
    InteropError
        Malformed URI, or the files are not cached and cannot be downloaded.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, sub, rev = parse(uri)
    patterns = [f"{sub}/*"] if sub else None
    kwargs = {"revision": rev, "allow_patterns": patterns, "cache_dir": _cache_dir()}
    try:
        root = snapshot_download(repo, local_files_only=_offline(), **kwargs)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        if not _offline():
            try:  # no network: fall back to the cache
                root = snapshot_download(repo, local_files_only=True, **kwargs)
            except (LocalEntryNotFoundError, OSError):
                root = None
        else:
            root = None
        if root is None:
            fetch_cmd = f"hf download {repo}" + (f" --revision {rev}" if rev else "")
            raise InteropError(
                f"{uri}: not cached (cache {kwargs['cache_dir'] or 'default'}) and not "
                f"downloadable ({type(err).__name__}); fetch it on a machine with network "
                f"with `{fetch_cmd}` and copy the cache, or unset HF_HUB_OFFLINE"
            ) from None
    folder = Path(root) / sub if sub else Path(root)
    if not folder.is_dir():
        raise InteropError(f"{uri}: subfolder {sub!r} is not in the cached snapshot {root}")
    return folder
