"""The demo in a real headless Chromium: each tab driven as a user would, screenshots saved.

Screenshots go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.browser import message, screenshot, serve
from tests.demo_world import GALLERY, GALLERY_N

LIMITS = {"max_pixels": 200_000, "max_file_size": 1_000_000}


@pytest.fixture(scope="module")
def explorer(demo_world_sae):
    from apps.demo import DemoSources
    from apps.demo.models import load_explorer

    sae_dir, cache, index = demo_world_sae
    return load_explorer(DemoSources(clip_sae=sae_dir, images=GALLERY, n_images=GALLERY_N), cache)


@pytest.fixture(scope="module")
def demo_url(demo_world_sae):
    from apps.demo import DemoSources

    sae_dir, cache, index = demo_world_sae
    sources = DemoSources(
        clip_sae=sae_dir, model=None, images=GALLERY, n_images=GALLERY_N, index=index
    )
    with serve(LIMITS, sources, cache) as url:
        yield url


def _explore(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Explore").click()
    page.locator("#latent-ref input").wait_for()


def _shown_ids(page) -> list[int]:
    cells = page.locator("#image-latents table tbody tr td:first-child")
    return [int(t.strip()) for t in cells.all_inner_texts()]


def test_instructions_tab_shows_sources_and_limits(demo_url, page):
    page.goto(demo_url)
    sources = page.locator("#sources")
    sources.wait_for()
    assert "world:77" not in sources.inner_text() and GALLERY in sources.inner_text()
    assert "1 MB" in page.locator("#limits").inner_text()
    assert "Explore" in page.get_by_text("Tabs:").inner_text()
    assert page.title() == "vsae demo"
    assert screenshot(page, "instructions").stat().st_size > 10_000


def test_explore_latent_by_name_autocomplete(demo_url, page, explorer):
    name = next(c.name for c in explorer.concepts.concepts if c.valid and c.name == "red")
    f = explorer.resolve(name)
    _explore(page, demo_url)
    page.locator("#latent-ref input").fill("re")
    page.get_by_role("option", name=f"red (#{f})").click()  # the autocomplete's choice
    info = page.locator("#latent-info")
    info.get_by_text(f"Latent #{f}").wait_for()
    assert "red" in info.inner_text() and "valid concept" in info.inner_text()
    card = explorer.latent(f)
    assert f"{100 * card.stats.freq:.1f}%" in info.inner_text()
    grid = page.locator("#latent-grid img")
    grid.nth(len(card.top) - 1).wait_for()
    assert grid.count() == len(card.top) == 16
    captions = page.locator("#latent-grid .caption-label").all_inner_texts()
    assert captions[:3] == [f"{a:.3f}" for _, a, _ in card.top[:3]]
    screenshot(page, "explore-latent")


def test_explore_latent_by_id(demo_url, page, explorer):
    _explore(page, demo_url)
    page.locator("#latent-ref input").fill("#7")
    page.locator("#latent-show").click()
    page.locator("#latent-info").get_by_text("Latent #7").wait_for()
    want = len(explorer.latent(7).top)
    if want:
        page.locator("#latent-grid img").nth(want - 1).wait_for()
    assert page.locator("#latent-grid img").count() == want


def test_explore_pick_and_upload_image(demo_url, page, explorer, tmp_path):
    _explore(page, demo_url)
    page.locator("#image-pick img").nth(1).click()
    page.locator("#image-latents table tbody tr").first.wait_for()
    step = max(1, len(explorer.gallery) // 12)
    want = [t.latent for t in explorer.image(explorer.gallery.thumbnail(step))]
    assert _shown_ids(page) == want
    stored_N = explorer.gallery.codes_MN[step].toarray()[0]  # the codes its latent cards rank
    assert want[0] == int(stored_N.argmax())
    from vsae import world

    scene = {**world.sample_scenes(1, 5)[0]}
    png = tmp_path / "mine.png"
    Image.fromarray(world.render_scenes([scene])[0]).resize((128, 128)).save(png)
    page.locator("#upload input[type=file]").set_input_files(str(png))
    want = [t.latent for t in explorer.image(Image.open(png).convert("RGB"))]
    page.wait_for_function(
        "ids => [...document.querySelectorAll('#image-latents table tbody tr td:first-child')]"
        ".map(td => parseInt(td.innerText)).join() === ids.join()",
        arg=want,
    )
    names = page.locator("#image-latents table tbody tr td:nth-child(2)").all_inner_texts()
    assert [n.strip() for n in names] == [explorer.concepts[f].name or "-" for f in want]
    screenshot(page, "explore-image")


def _png_bytes(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((w, h), 80).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def test_explore_error_messages_in_page(demo_url, page, tmp_path):
    _explore(page, demo_url)
    ref, show = page.locator("#latent-ref input"), page.locator("#latent-show")
    ref.fill("4096")
    show.click()
    assert "out of range: this SAE has latents 0..255" in message(page, "latent-msg", "4096")
    ref.fill("purpel")
    show.click()
    text = message(page, "latent-msg", "purpel")
    assert "unknown concept 'purpel'; closest names: purple" in text
    ref.fill("#3")
    show.click()
    page.locator("#latent-info").get_by_text("Latent #3").wait_for()
    assert not page.locator("#latent-msg").is_visible()  # a good value clears the message
    files = {
        "notes.png": (b"this is not an image", "not an image this demo can read"),
        "cut.png": (_png_bytes(64, 64)[:1500], "truncated or corrupt"),
        "huge.png": (_png_bytes(600, 400), "600x400 = 240000 pixels; the limit is 200000"),
    }
    upload = page.locator("#upload input[type=file]")
    for name, (content, expected) in files.items():
        f = tmp_path / name
        f.write_bytes(content)
        upload.set_input_files(str(f))
        assert expected in message(page, "image-msg", expected[:20])
        page.locator("#upload button[aria-label='Clear']").click()
    big = tmp_path / "big.png"
    big.write_bytes(_png_bytes(900, 900))
    assert big.stat().st_size > LIMITS["max_file_size"]
    upload.set_input_files(str(big))  # refused by Gradio itself before any callback
    page.get_by_text("exceed the maximum allowed size", exact=False).first.wait_for()
    screenshot(page, "explore-errors")


@pytest.fixture(scope="module")
def patch_demo_url(tmp_path_factory):
    """The demo on an SAE (random weights) on the tiny CLIP's block-2 patch tokens."""
    from apps.demo import DemoSources
    from vsae import SAEConfig, build
    from vsae.sae.io import write_provenance

    root = tmp_path_factory.mktemp("patch_demo")
    sae = build(SAEConfig(arch="topk", d_in=128, n_latents=64, k=4, seed=1))
    sae.save(root / "sae")
    prov = {"source": "world:clip", "hookpoint": "blocks.2", "token_mode": "patches"}
    write_provenance(root / "sae", prov)
    sources = DemoSources(clip_sae=root / "sae", model=None, images="world:48:77", n_images=48)
    with serve({}, sources, root / "cache") as url:
        yield url


def test_explore_heatmaps_on_a_patch_sae(patch_demo_url, page):
    _explore(page, patch_demo_url)
    page.locator("#image-pick img").nth(0).click()
    page.locator("#image-latents table tbody tr").first.wait_for()
    n = page.locator("#image-latents table tbody tr").count()
    heat = page.locator("#image-heat img")
    heat.nth(n - 1).wait_for()
    assert heat.count() == n >= 1
    captions = page.locator("#image-heat .caption-label").all_inner_texts()
    assert [c.strip() for c in captions] == [f"#{i}" for i in _shown_ids(page)]
    # the first heatmap is a jet overlay: not the greyscale/colour of the plain thumbnail
    src = heat.first.get_attribute("src")
    data = page.request.get(src).body()
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert rgb.shape[:2] == (224, 224) and rgb.std() > 5
    screenshot(page, "explore-heatmaps")


@pytest.fixture(scope="module")
def searcher(demo_world_sae):
    from vsae.analysis import Searcher

    sae_dir, _, index = demo_world_sae
    return Searcher(index, sae_dir=sae_dir)


def _captions(hits) -> list[str]:
    return [f"{h.rank}. {h.score:.3f}" for h in hits]


def _results(page, want: list[str]) -> None:
    """Wait until the results gallery shows exactly these captions."""
    page.wait_for_function(
        "want => [...document.querySelectorAll('#search-results .caption-label')]"
        ".map(e => e.innerText.trim()).join('|') === want.join('|')",
        arg=want,
    )


def test_search_text_edits_filters_and_concepts(demo_url, page, searcher):
    from vsae.analysis import Query

    page.goto(demo_url)
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-text textarea").fill("a red circle")
    page.locator("#search-go").click()
    plain = searcher.run(Query(text="a red circle", k=12))
    assert len(plain) == 12
    _results(page, _captions(plain))
    assert page.locator("#search-results img").count() == 12
    top = page.locator("#search-edit-0 input").input_value()
    assert top in {c.name for c in searcher.table.valid}  # the query's top concept, named
    # drag the first concept's slider to 0: that concept is suppressed, the results update
    bar = page.locator("#search-factor-0 input[type=range]").bounding_box()
    page.mouse.move(bar["x"] + bar["width"] / 4, bar["y"] + bar["height"] / 2)
    page.mouse.down()
    page.mouse.move(bar["x"] - 20, bar["y"] + bar["height"] / 2, steps=5)
    page.mouse.up()
    edited = searcher.run(Query(text="a red circle", suppress=(top,), k=12))
    _results(page, _captions(edited))
    assert [h.id for h in edited] != [h.id for h in plain]
    screenshot(page, "search")
    page.locator("#search-must-not input").fill("red")
    page.get_by_role("option", name="red", exact=True).click()
    page.locator("#search-go").click()
    filtered = searcher.run(Query(text="a red circle", where_not=("red",), k=12))
    _results(page, _captions(filtered))
    red = set(searcher.index.fires(int(searcher.table.by_name("red")[0].id)))
    assert not red & {h.id for h in filtered}
    page.get_by_role("radio", name="concept").check()
    page.locator("#search-concept input").fill("circle")
    page.locator("#search-go").click()
    _results(page, _captions(searcher.run(Query(concept="circle", where_not=("red",), k=12))))


def test_search_error_messages(demo_url, page):
    page.goto(demo_url)
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-text textarea").fill("  ")
    page.locator("#search-go").click()
    assert "Type a text query first" in message(page, "search-msg", "Type a text query")
    page.get_by_role("radio", name="concept").check()
    page.locator("#search-concept input").fill("purpel")
    page.locator("#search-go").click()
    assert "closest names: purple" in message(page, "search-msg", "unknown concept 'purpel'")
