"""Pretrained weights that are neither cached nor downloadable: one clear message."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from .base import SourceError

# Loggers that report each failed download attempt (the caller raises one message instead).
_NOISY = ("huggingface_hub", "open_clip", "timm")


class _DropDownloadErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "download" not in record.getMessage().lower()


@contextlib.contextmanager
def quiet_download_logs() -> Iterator[None]:
    """Silence download-retry logs of the hub clients (open_clip logs its error on root).

    Yields
    ------
    None
        While the context is open, huggingface_hub, open_clip and timm log only critical
        records and the root logger drops records about downloads; levels are restored on
        exit.
    """
    saved = {name: logging.getLogger(name).level for name in _NOISY}
    drop = _DropDownloadErrors()
    root = logging.getLogger()
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def is_missing_weights(err: BaseException) -> bool:
    """Whether an error says that weights could not be downloaded nor found cached.

    Parameters
    ----------
    err : BaseException
        The error raised by a loader; its ``__cause__`` / ``__context__`` chain is searched.

    Returns
    -------
    bool
    """
    seen: BaseException | None = err
    while seen is not None:
        text = str(seen).lower()
        if type(seen).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            return True
        if "failed to download" in text or "local cache" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def missing_weights_error(spec: str, tag: str, hub_name: str) -> SourceError:
    """The one-line error for pretrained weights absent from the local cache.

    Parameters
    ----------
    spec : str
        The source spec, e.g. ``open_clip:ViT-B-32``.
    tag : str
        The pretrained tag asked for, e.g. ``laion2b_s34b_b79k``.
    hub_name : str
        What to fetch on a machine with network access (a Hugging Face repo or timm name).

    Returns
    -------
    SourceError
        To be raised by the caller.
    """
    return SourceError(
        f"{spec}: pretrained weights {tag!r} are not in the local cache and cannot be "
        f"downloaded (offline?); fetch them where there is network access (run the same "
        f"command once, or `huggingface-cli download {hub_name}`) and copy the Hugging Face "
        "cache (~/.cache/huggingface) here, or pass a local checkpoint file with "
        "--pretrained PATH (--pretrained none: random weights)"
    )
