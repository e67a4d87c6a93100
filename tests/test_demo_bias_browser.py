"""The Bias tab in a real headless Chromium: analyse the preloaded biased set, check the
effects plot and the per-group accuracy table against ``vsae.analysis.analyse_bias``, and the
messages for bad values (an unknown target value, a malformed target, groups with too few
images)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from tests.browser import message, screenshot, serve
from tests.demo_world import GALLERY, GALLERY_N

TARGET, GROUP = "shape=circle", "colour"  # the set's suggested analysis (its bias_set.json)


def _sources(demo_world_sae, bias_set):
    from apps.demo import DemoSources

    sae_dir, _, _ = demo_world_sae
    return DemoSources(
        clip_sae=sae_dir, model=None, images=GALLERY, n_images=GALLERY_N, bias_set=bias_set
    )


@pytest.fixture(scope="module")
def bias_url(demo_world_sae, demo_bias_set):
    with serve({}, _sources(demo_world_sae, demo_bias_set), demo_world_sae[1]) as url:
        yield url


@pytest.fixture(scope="module")
def expected(demo_world_sae, demo_bias_set):
    """The library's analysis of the same request, computed here."""
    import vsae
    from apps.demo.bias import N_BOOT
    from vsae.analysis import load_concepts
    from vsae.analysis.bias_set import BiasSet

    sae_dir = demo_world_sae[0]
    data = BiasSet.load(demo_bias_set)
    return data.analyse(vsae.load(sae_dir), TARGET, GROUP, load_concepts(sae_dir), n_boot=N_BOOT)


def _bias_tab(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Bias").click()
    page.locator("#bias-go").wait_for()


def _plot_size(page, elem_id: str) -> tuple[int, int]:
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    assert src.startswith("data:image/png;base64,"), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size


def test_bias_tab_shows_ranked_effects_and_group_accuracy(bias_url, page, expected):
    _bias_tab(page, bias_url)
    assert page.locator("#bias-target input").input_value() == TARGET  # preloaded choice
    page.locator("#bias-go").click()
    groups = sorted(expected.before.by_group)
    rows = page.locator("#bias-accuracy table tbody tr")
    rows.nth(len(groups)).wait_for()
    assert rows.count() == len(groups) + 1  # every group, then all images
    for i, g in enumerate(groups):
        cells = [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        b, a = expected.before.by_group[g], expected.after.by_group[g]
        assert cells[:2] == [g.replace("|", " | "), str(b["n"])]
        assert cells[2].startswith(f"{b['accuracy']:.3f} [") and cells[3].startswith(
            f"{a['accuracy']:.3f} ["
        )
    last = [c.strip() for c in rows.nth(len(groups)).locator("td").all_inner_texts()]
    assert last[:2] == ["all", str(expected.n_images)]
    assert last[2].startswith(f"{expected.before.overall:.3f}")
    page.locator("#bias-effects img").wait_for()
    page.locator("#bias-acc-plot img").wait_for()
    w, h = _plot_size(page, "bias-effects")
    assert w >= 500 and h >= 300  # a figure, not an empty placeholder
    summary = page.locator("#bias-summary").inner_text()
    assert f"Largest effect: {expected.effects[0].name}" in summary
    for name in expected.spurious:
        assert name in summary
    assert not page.locator("#bias-msg").is_visible()  # no group is small in this set
    screenshot(page, "bias")


def test_bias_messages_for_bad_values(bias_url, page):
    _bias_tab(page, bias_url)
    target = page.locator("#bias-target input")
    target.fill("shape=hexagon")
    page.locator("#bias-go").click()
    text = message(page, "bias-msg", "never occurs")
    assert "shape='hexagon'" in text and "square" in text  # it lists the values seen
    target.fill("square")
    page.locator("#bias-go").click()
    assert "expected ATTRIBUTE=VALUE" in message(page, "bias-msg", "ATTRIBUTE=VALUE")
    screenshot(page, "bias-errors")
    target.fill(TARGET)
    page.locator("#bias-go").click()
    page.locator("#bias-msg").wait_for(state="hidden")  # a good value clears the message


def test_bias_note_for_groups_with_too_few_images(demo_world_sae, tmp_path, page):
    from tests.demo_world import world_bias_set

    small = world_bias_set(tmp_path / "small", {"n_train": 400, "n_test": 300})
    with serve({}, _sources(demo_world_sae, small), demo_world_sae[1]) as url:
        _bias_tab(page, url)
        page.locator("#bias-go").click()
        text = message(page, "bias-msg", "fewer than 30")
        assert "Note:" in text and "|circle' has" in text
        page.locator("#bias-accuracy table tbody tr").first.wait_for()  # results still shown
