"""A model loaded in a background thread once the page is served; callbacks wait for it.

Importing and loading a diffusion pipeline is the slowest part of a later start and no layout
needs it, so the demo serves the page first and loads it behind. A click that comes earlier
waits for it; a load that fails gives every later click a message instead of a stack trace.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoadError(RuntimeError):
    """A background load that failed; its message names what and why (shown in the page)."""


class Background(Generic[T]):
    """One value computed by ``load()`` in a daemon thread, at most once.

    Parameters
    ----------
    what
        What is loaded, for the log line and the message of a failure (e.g. ``pipeline world``).
    load
        Builds the value; its exception, if any, is kept and reported by :meth:`get`.
    """

    def __init__(self, what: str, load: Callable[[], T]) -> None:
        self.what = what
        self._load = load
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._value: T | None = None
        self._error: str | None = None
        self.seconds: float | None = None

    def start(self) -> None:
        """Start loading (a no-op when it has started already)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"vsae-load-{self.what}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._value = self._load()
        except Exception as e:  # kept for the callbacks: each shows it as a message
            self._error = f"{type(e).__name__}: {e}"
            print(f"vsae demo: {self.what} could not be loaded: {self._error}", file=sys.stderr)
        else:
            self.seconds = time.perf_counter() - t0
            print(f"vsae demo: {self.what} ready in {self.seconds:.1f} s", file=sys.stderr)
        finally:
            self._done.set()

    @property
    def ready(self) -> bool:
        """Whether loading has finished (successfully or not)."""
        return self._done.is_set()

    def get(self, timeout: float | None = None) -> T:
        """The value, waiting for the load (started here if nobody started it).

        Parameters
        ----------
        timeout
            Seconds to wait at most; None: as long as it takes.

        Returns
        -------
        T

        Raises
        ------
        LoadError
            The load failed (its message says why), or did not finish within ``timeout``.
        """
        self.start()
        if not self._done.wait(timeout):
            raise LoadError(f"{self.what} is still loading; try again in a moment")
        if self._error is not None:
            raise LoadError(f"{self.what} could not be loaded ({self._error})")
        return self._value  # type: ignore[return-value]
