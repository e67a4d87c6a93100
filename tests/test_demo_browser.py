"""The demo in a real headless Chromium: each tab driven as a user would, screenshots saved."""

from __future__ import annotations

import pytest

from tests.browser import CHROMIUM, browser_page, screenshot, serve


@pytest.fixture(scope="module")
def demo_url():
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def page():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    with browser_page() as p:
        yield p


def test_instructions_tab_shows_sources_and_limits(demo_url, page):
    page.goto(demo_url)
    sources = page.locator("#sources")
    sources.wait_for()
    assert "world:clip" in sources.inner_text()
    assert "8 MB" in page.locator("#limits").inner_text()
    assert page.title() == "vsae demo"
    shot = screenshot(page, "instructions")
    assert shot.stat().st_size > 10_000
