"""Browser-test helpers: serve the real demo on a free port, drive Debian's chromium.

Playwright's own browser download cannot work on these machines, so tests launch
``/usr/bin/chromium`` (apt package ``chromium``) through ``executable_path``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(cfg_kwargs: dict | None = None, sources=None, cache: Path | None = None) -> Iterator[str]:
    """Build and launch the demo in this process on a free port; yields its URL, then closes."""
    from apps.demo import DemoConfig, DemoSources, build_app, launch

    cfg = DemoConfig(port=free_port(), **(cfg_kwargs or {}))
    app = build_app(cfg, sources or DemoSources(), cache)
    url = launch(app, cfg, prevent_thread_lock=True)
    try:
        yield url
    finally:
        app.close()


@contextlib.contextmanager
def browser_page() -> Iterator:
    """A playwright page in headless Debian chromium (1280x900), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def message(page, elem_id: str, contains: str) -> str:
    """Wait until the message box ``#elem_id`` shows ``contains``; return its text."""
    box = page.locator(f"#{elem_id}")
    box.get_by_text(contains, exact=False).wait_for()
    return box.inner_text()


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG as ``docs/screenshots/NAME.png`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
