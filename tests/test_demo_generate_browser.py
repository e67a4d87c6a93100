"""The Generate tab in a real headless Chromium: steer everywhere and in a drawn mask, ablate,
and the messages for bad values; images checked against the library's own generation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.browser import message, screenshot, serve

PROMPT, SEED, STEPS = "a red circle", 3, 10


@pytest.fixture(scope="module")
def gen_url(demo_block_sae, tmp_path_factory):
    from pathlib import Path

    from apps.demo import DemoSources
    from vsae.commands.demo_diffusion import recipe_dirs

    recipes = tuple(str(p) for p in recipe_dirs(Path(demo_block_sae.rsplit("@", 1)[0]).parent))
    sources = DemoSources(diffusion_sae=demo_block_sae, recipes=recipes)
    with serve({}, sources, tmp_path_factory.mktemp("c")) as url:
        yield url


@pytest.fixture(scope="module")
def library(demo_block_sae):
    """The pipeline, SAE and statistics, loaded here once to compute what the page must show."""
    from vsae.interventions import load_block_sae, load_generator, load_or_compute_stats

    path, block = demo_block_sae.rsplit("@", 1)
    bsae = load_block_sae(path, block)
    return load_generator("world"), bsae, load_or_compute_stats(path, bsae.sae)


def _view(img_HW3: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img_HW3).resize((256, 256), Image.Resampling.NEAREST))


@pytest.fixture(scope="module")
def bare(library):
    """The bare pipeline's image for PROMPT, SEED, STEPS, as the page shows it (x8 nearest)."""
    from vsae.interventions import generate

    return _view(generate(library[0], [PROMPT], STEPS, SEED).images[0])


@pytest.fixture(scope="module")
def strongest(library) -> int:
    """The latent that fires most often: steering it changes the image visibly."""
    return int(library[2].firing_rate_N.argmax())


def _steered_everywhere(library, f: int, strength: float) -> np.ndarray:
    from vsae.interventions import Steer, generate

    gen, bsae, stats = library
    edit = Steer(feature=f, strength=strength)
    run = generate(gen, [PROMPT], STEPS, SEED, saes=[bsae], edits=[edit], stats=[stats])
    return _view(run.images[0]).astype(int)


def _pixels(page, elem_id: str) -> np.ndarray:
    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def _fill(page, url, latent="#0", strength="20", prompt=PROMPT, reload=True) -> None:
    if reload:
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()
    page.locator("#gen-prompt textarea").fill(prompt)
    page.locator("#gen-seed input").fill(str(SEED))
    page.locator("#gen-latent input").fill(latent)
    page.locator("#gen-strength input").fill(strength)


def _generate(page, expect: str) -> str:
    page.locator("#gen-go").click()
    summary = page.locator("#gen-summary")
    summary.get_by_text(expect).wait_for()
    return summary.inner_text()


def test_generate_steers_everywhere(gen_url, page, bare, strongest):
    f = strongest
    _fill(page, gen_url, latent=f"#{f}", strength="30")
    text = _generate(page, f"Latent #{f} steered with strength 30, everywhere")
    before, after = _pixels(page, "gen-before"), _pixels(page, "gen-after")
    np.testing.assert_array_equal(before, bare)  # "before" is the bare pipeline's image
    changed = int(np.abs(after.astype(int) - before.astype(int)).max())
    assert changed > 0 and f"Largest pixel change: {changed} / 255" in text
    assert _pixels(page, "gen-icon").shape == (256, 256, 3)
    heat = page.locator("#gen-heat img")
    heat.first.wait_for()
    captions = page.locator("#gen-heat .caption-label").all_inner_texts()
    assert captions[0].strip() == f"#{f}" and 2 <= heat.count() <= 4
    screenshot(page, "generate")


@pytest.mark.slow
def test_generate_steers_only_in_the_drawn_mask(gen_url, page, bare, library, strongest):
    f = strongest
    _fill(page, gen_url, latent=f"#{f}", strength="40")
    page.locator("#gen-mask button[aria-label='Brush']").first.click()
    box = page.locator("#gen-mask canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # the canvas (256 px) is centred in its box: draw over its top-left quarter
    page.mouse.move(cx - 110, cy - 110)
    page.mouse.down()
    for k in range(24):
        page.mouse.move(cx - 110 + (k % 6) * 18, cy - 110 + (k // 6) * 22)
    page.mouse.up()
    page.locator("#gen-use input").check()
    _generate(page, "inside your mask")
    masked = np.abs(_pixels(page, "gen-after").astype(int) - bare.astype(int)).sum(-1)
    everywhere = np.abs(_steered_everywhere(library, f, 40.0) - bare.astype(int)).sum(-1)
    # far from the strokes (bottom-right quarter) the masked edit changes much less than the
    # same edit everywhere; near them it changes the image
    assert masked[128:, 128:].mean() < 0.5 * everywhere[128:, 128:].mean()
    assert masked[:128, :128].mean() > 0.5 * everywhere[:128, :128].mean() > 0
    screenshot(page, "generate-mask")


def test_generate_error_messages_in_page(gen_url, page):
    _fill(page, gen_url, prompt="   ")
    page.locator("#gen-go").click()
    assert "Type a prompt first" in message(page, "gen-msg", "Type a prompt")
    _fill(page, gen_url, strength="55", reload=False)
    page.locator("#gen-go").click()
    assert "use -40..40" in message(page, "gen-msg", "Strength 55 is out of range")
    _fill(page, gen_url, latent="#9999", reload=False)
    page.locator("#gen-go").click()
    assert "out of range; expected 0..511" in message(page, "gen-msg", "latent id 9999")
    _fill(page, gen_url, latent="bluish", reload=False)
    page.locator("#gen-go").click()
    message(page, "gen-msg", "not a latent id")
    _fill(page, gen_url, reload=False)
    page.locator("#gen-use input").check()  # nothing drawn on the sketchpad
    page.locator("#gen-go").click()
    assert "the mask is empty (nothing drawn)" in message(page, "gen-msg", "mask is empty")
    page.locator("#gen-use input").uncheck()
    _generate(page, "Largest pixel change")
    assert not page.locator("#gen-msg").is_visible()
    screenshot(page, "generate-errors")


def test_generate_unlearning_toggle(gen_url, page, library, demo_block_sae):
    from pathlib import Path

    from vsae.commands.demo_diffusion import recipe_dirs
    from vsae.interventions import generate, load_recipe

    gen, bsae, stats = library
    red = load_recipe(recipe_dirs(Path(demo_block_sae.rsplit("@", 1)[0]).parent)[0])
    assert red.info["concepts"] == ["red"]
    _fill(page, gen_url)
    page.get_by_role("radio", name="none").check()
    page.locator("#gen-unlearn").get_by_label("red").check()
    page.locator("#gen-go").click()  # the slider is at 10 steps; the recipe is for 4
    assert "fitted for 4 steps" in message(page, "gen-msg", "unlearning recipe for red")
    steps = page.get_by_label("number input for steps")
    steps.fill("4")
    steps.press("Enter")
    text = _generate(page, "unlearned red")
    run = generate(gen, [PROMPT], 4, SEED, saes=[bsae], edits=[red.edit(bsae)], stats=[stats])
    np.testing.assert_array_equal(_pixels(page, "gen-after"), _view(run.images[0]))
    bare4 = _view(generate(gen, [PROMPT], 4, SEED).images[0])
    np.testing.assert_array_equal(_pixels(page, "gen-before"), bare4)
    changed = int(np.abs(_view(run.images[0]).astype(int) - bare4.astype(int)).max())
    assert f"Largest pixel change: {changed} / 255" in text and changed > 0
    screenshot(page, "generate-unlearn")
