"""vsae.analysis Explore pieces: image codes, the latent gallery, heatmaps, the Explorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vsae import SAEConfig, build
from vsae.analysis import (
    Concept,
    ConceptError,
    ConceptTable,
    Explorer,
    ImageCoder,
    ImageCodesError,
    LatentGallery,
    build_gallery,
    latent_heatmap,
    load_or_build_gallery,
    overlay,
    top_latents,
)
from vsae.sae.io import write_provenance

GALLERY = "world:300:77"


@pytest.fixture(scope="module")
def coder(world_sae_dir):
    return ImageCoder.from_folder(world_sae_dir, spec="world:clip")


@pytest.fixture(scope="module")
def gallery(coder):
    return build_gallery(coder, GALLERY, 300)


def _world_images(n: int, seed: int) -> list[Image.Image]:
    from vsae import world

    images_NHW3, _ = world.render(n, seed)
    return [Image.fromarray(im) for im in images_NHW3]


def test_codes_match_model_then_sae(coder, world_sae_dir):
    from vsae import load, world
    from vsae.world.clip import images_to_tensor

    images_NHW3, _ = world.render(5, 3)
    model, _, _ = world.load_clip()
    with torch.no_grad():
        want_BN = load(world_sae_dir).encode(model.encode_image(images_to_tensor(images_NHW3)))
    got_BTN = coder.codes([Image.fromarray(im) for im in images_NHW3])
    assert got_BTN.shape == (5, 1, coder.n_latents)
    torch.testing.assert_close(got_BTN[:, 0], want_BN.float(), atol=1e-5, rtol=1e-5)
    assert coder.grid(1) is None


def test_gallery_top_images_and_stats(coder, gallery):
    dense_MN = coder.codes(_world_images(300, 77))[:, 0].numpy()
    assert len(gallery) == 300 and gallery.keys[0] == "world-77-000000000"
    np.testing.assert_allclose(gallery.codes_MN.toarray(), dense_MN, atol=1e-5)
    f = int(np.argmax((dense_MN > 0).sum(0)))  # the most frequent latent
    top = gallery.top_images(f, k=10)
    assert [i for i, _ in top] == list(np.argsort(-dense_MN[:, f], kind="stable")[:10])
    assert all(a >= b for (_, a), (_, b) in zip(top, top[1:], strict=False))
    s = gallery.stats(f)
    fires = dense_MN[:, f] > 0
    assert s.freq == pytest.approx(fires.mean())
    assert s.mean_act == pytest.approx(dense_MN[fires, f].mean(), rel=1e-5)
    assert s.max_act == pytest.approx(dense_MN[:, f].max(), rel=1e-5)
    dead = np.flatnonzero(~(dense_MN > 0).any(0))
    if dead.size:
        assert gallery.top_images(int(dead[0])) == [] and gallery.stats(int(dead[0])).freq == 0
    first = _world_images(1, 77)[0]  # a 64x64 render is kept as it is, pixel for pixel
    np.testing.assert_array_equal(np.asarray(gallery.thumbnail(0)), np.asarray(first))
    np.testing.assert_allclose(coder.codes([gallery.thumbnail(5)])[0, 0], dense_MN[5], atol=1e-5)
    with pytest.raises(ValueError, match=f"out of range; this SAE has latents 0..{256 - 1}"):
        gallery.top_images(256)


def test_gallery_cache_round_trip_and_stale(coder, gallery, tmp_path):
    file = tmp_path / "g.npz"
    gallery.save(file)
    back = LatentGallery.load(file, gallery.fingerprint)
    assert back is not None and back.keys == gallery.keys
    assert (back.codes_MN != gallery.codes_MN).nnz == 0
    np.testing.assert_array_equal(back.thumbs_MHW3, gallery.thumbs_MHW3)
    assert LatentGallery.load(file, "another fingerprint") is None
    file.write_bytes(file.read_bytes()[:500])  # truncated: rebuilt, never trusted
    assert LatentGallery.load(file, gallery.fingerprint) is None
    rebuilt = load_or_build_gallery(coder, "world:40:77", 40, file)
    assert len(rebuilt) == 40 and LatentGallery.load(file, rebuilt.fingerprint) is not None


@pytest.fixture(scope="module")
def patch_sae_dir(tmp_path_factory):
    """An SAE (random weights) on the tiny CLIP's block 2 patch tokens (4x4 grid)."""
    out = tmp_path_factory.mktemp("patch_sae")
    sae = build(SAEConfig(arch="topk", d_in=128, n_latents=64, k=4, seed=1))
    sae.save(out)
    write_provenance(
        out, {"source": "world:clip", "hookpoint": "blocks.2", "token_mode": "patches"}
    )
    return out


def test_patch_sae_heatmaps(patch_sae_dir):
    coder = ImageCoder.from_folder(patch_sae_dir)
    assert coder.hookpoint == "blocks.2"
    images = _world_images(2, 9)
    codes_BTN = coder.codes(images)
    assert codes_BTN.shape == (2, 16, 64) and coder.grid(16) == (4, 4)
    assert ((codes_BTN > 0).sum(-1) <= 4).all()  # TopK k=4 per token
    top = top_latents(codes_BTN[0], k=3)
    mean_N = codes_BTN[0].mean(0)
    assert top[0][0] == int(mean_N.argmax()) and top[0][1] == pytest.approx(float(mean_N.max()))
    heat_HW = latent_heatmap(codes_BTN[0], top[0][0], (4, 4))
    np.testing.assert_array_equal(heat_HW[1], codes_BTN[0, 4:8, top[0][0]].numpy())
    shown = overlay(images[0].resize((64, 64)), heat_HW)
    assert shown.size == (64, 64) and shown.mode == "RGB"
    hottest = np.unravel_index(heat_HW.argmax(), heat_HW.shape)
    px = np.asarray(shown)[hottest[0] * 16 + 8, hottest[1] * 16 + 8]
    base = np.asarray(images[0].resize((64, 64)))[hottest[0] * 16 + 8, hottest[1] * 16 + 8]
    jet_max = np.array([127, 0, 0])  # jet(1.0) is dark red
    np.testing.assert_allclose(px, 0.4 * base + 0.6 * jet_max, atol=2)
    with pytest.raises(ImageCodesError, match="do not form a square patch grid"):
        coder.grid(17)


def test_coder_refuses_mismatch(tmp_path):
    sae = build(SAEConfig(arch="topk", d_in=64, n_latents=32, k=2))
    sae.save(tmp_path)
    with pytest.raises(ImageCodesError, match="records no source model"):
        ImageCoder.from_folder(tmp_path)
    with pytest.raises(ImageCodesError, match="width 128; the SAE expects d_in=64"):
        ImageCoder.from_folder(tmp_path, spec="world:clip")


def _named(n: int, names: dict[int, str]) -> ConceptTable:
    return ConceptTable(
        tuple(
            Concept(
                i, names.get(i, ""), 0.3 if i in names else 0.0, 0.05, (), 0.1, 1.0, (), i in names
            )
            for i in range(n)
        )
    )


def test_explorer_resolve_and_cards(coder, gallery):
    bare = Explorer(coder, gallery)
    assert bare.resolve("#5") == 5 and bare.resolve(" 7 ") == 7 and bare.names() == []
    for ref, match in [
        ("256", "out of range: this SAE has latents 0..255"),
        ("-1", "out of range"),
        ("", "Type a latent id"),
        ("red", "not named \\(no concepts.json\\)"),
    ]:
        with pytest.raises(ConceptError, match=match):
            bare.resolve(ref)
    named = Explorer(coder, gallery, _named(256, {3: "red", 9: "circle"}))
    assert named.names() == ["red (#3)", "circle (#9)"]
    assert named.resolve("red") == 3 and named.resolve("circle (#9)") == 9
    with pytest.raises(ConceptError, match="unknown concept 'rde'; closest names: red"):
        named.resolve("rde")
    card = named.latent("red", k=4)
    assert card.latent == 3 and card.name == "red" and card.score == pytest.approx(0.3)
    assert [key for _, _, key in card.top] == [gallery.keys[i] for i, _ in gallery.top_images(3, 4)]
    with pytest.raises(ValueError, match="concepts.json has 10 records"):
        Explorer(coder, gallery, _named(10, {}))


def test_explorer_image_top_latents(coder, gallery):
    ex = Explorer(coder, gallery, _named(256, {}))
    img = _world_images(1, 21)[0]
    found = ex.image(img, k=4)
    codes_N = coder.codes([img])[0, 0]
    want = torch.argsort(-codes_N, stable=True)[: len(found)].tolist()
    assert [t.latent for t in found] == want and 1 <= len(found) <= 4
    assert all(t.heatmap is None for t in found)  # one token per image: no heatmap
