"""The demo's settings: one frozen dataclass, fixed when the app starts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "VSAE_DEMO_CACHE"


def default_cache_dir() -> Path:
    """Where first-start builds are cached: ``$VSAE_DEMO_CACHE`` or ``~/.cache/vsae/demo``.

    Returns
    -------
    Path
        The cache folder (not created here).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vsae" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    """How the demo is served and what it accepts.

    Parameters
    ----------
    host, port
        Address to bind; 127.0.0.1 by default so nothing outside this machine can reach it.
    max_file_size
        Largest upload Gradio accepts, in bytes (checked by Gradio before any callback).
    max_pixels
        Largest image (width * height) a callback decodes; bigger ones get a message.
    concurrency_per_model
        Requests that may run at once on one model (the queue's concurrency limit per
        ``concurrency_id``); the others wait in the queue.
    share
        A public Gradio share link; off by default and never turned on implicitly.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    max_file_size: int = 8 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    concurrency_per_model: int = 2
    share: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535, got {self.port}")
        if self.max_file_size <= 0 or self.max_pixels <= 0:
            raise ValueError(
                f"max_file_size and max_pixels must be positive, got "
                f"{self.max_file_size} and {self.max_pixels}"
            )
        if self.concurrency_per_model < 1:
            raise ValueError(
                f"concurrency_per_model: expected >= 1, got {self.concurrency_per_model}"
            )
