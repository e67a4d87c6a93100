"""The demo's command line, settings and upload checks (no browser)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from apps.demo import DemoConfig, DemoSources, UploadError, load_upload
from apps.demo.uploads import upload_root
from tests.conftest import run_cli


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    """Gradio's upload cache, pointed at a temp folder as Gradio itself would honour."""
    root = tmp_path / "gradio"
    root.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    return root


def _png(w: int, h: int, noise: bool = False) -> bytes:
    buf = io.BytesIO()
    img = Image.effect_noise((w, h), 64).convert("RGB") if noise else Image.new("RGB", (w, h))
    if not noise:
        img.paste((200, 30, 30), (0, 0, w, h))
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_valid_upload_decodes_rgb(uploads):
    f = uploads / "a.png"
    f.write_bytes(_png(40, 30))
    img = load_upload(str(f), max_bytes=10**6, max_pixels=10**6)
    assert img.size == (40, 30) and img.mode == "RGB"
    assert img.getpixel((5, 5)) == (200, 30, 30)


def test_upload_outside_cache_refused(uploads, tmp_path):
    f = tmp_path / "elsewhere.png"
    f.write_bytes(_png(8, 8))
    with pytest.raises(UploadError, match="not uploaded through this page"):
        load_upload(str(f), 10**6, 10**6)
    with pytest.raises(UploadError, match="not uploaded"):
        load_upload(str(uploads / ".." / "elsewhere.png"), 10**6, 10**6)
    assert upload_root() == uploads.resolve()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"hello, not an image", "not an image"),
        (_png(64, 64, noise=True)[:2000], "truncated or corrupt"),
    ],
)
def test_bad_uploads_give_user_messages(uploads, content, match):
    assert len(content) < 5000
    f = uploads / "bad.png"
    f.write_bytes(content)
    with pytest.raises(UploadError, match=match):
        load_upload(str(f), 10**6, 10**6)


def test_upload_limits(uploads):
    f = uploads / "big.png"
    f.write_bytes(_png(300, 200))
    with pytest.raises(UploadError, match="300x200 = 60000 pixels; the limit is 50000"):
        load_upload(str(f), 10**6, 50_000)
    with pytest.raises(UploadError, match="limit is 0.0 MB"):
        load_upload(str(f), 100, 10**6)
    with pytest.raises(UploadError, match="No image"):
        load_upload(None, 100, 100)


def test_config_and_sources_validate(tmp_path):
    assert DemoConfig().host == "127.0.0.1" and DemoConfig().share is False
    with pytest.raises(ValueError, match="port"):
        DemoConfig(port=70000)
    with pytest.raises(ValueError, match="concurrency_per_model"):
        DemoConfig(concurrency_per_model=0)
    with pytest.raises(ValueError, match="clip_sae: .* is not a folder"):
        DemoSources(clip_sae=tmp_path / "missing")
    with pytest.raises(ValueError, match="DIR@BLOCK"):
        DemoSources(diffusion_sae=str(tmp_path))
    with pytest.raises(ValueError, match="images: .*no-such is not a folder or shard file"):
        DemoSources(images=str(tmp_path / "no-such"))
    with pytest.raises(ValueError, match="n_images: expected >= 1, got 0"):
        DemoSources(n_images=0)


def test_cli_help_and_bad_arguments(tmp_path):
    r = run_cli("demo", "--help", timeout=120)
    assert r.returncode == 0
    for opt in ("--port", "--host", "--clip-sae", "--index", "--diffusion-sae", "--pipeline"):
        assert opt in r.stdout
    r = run_cli("demo", "--clip-sae", str(tmp_path / "nope"), timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"vsae demo: error: clip_sae: {tmp_path / 'nope'} is not a folder"
    ]
    r = run_cli("demo", "--model", "open_clip:ViT-B-32", timeout=120)
    assert r.returncode == 2 and "--model needs --clip-sae" in r.stderr


def test_cli_real_model_needs_a_gallery(tmp_path):
    from vsae import SAEConfig, build
    from vsae.sae.io import write_provenance

    build(SAEConfig(arch="topk", d_in=512, n_latents=64, k=4)).save(tmp_path / "sae")
    write_provenance(tmp_path / "sae", {"source": "open_clip:ViT-B-32", "hookpoint": "image"})
    r = run_cli("demo", "--clip-sae", str(tmp_path / "sae"), "--no-progress", timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"vsae demo: error: --clip-sae {tmp_path / 'sae'} is on open_clip:ViT-B-32: pass "
        "--images DIR, the images the Explore tab shows (and --model if cfg.json records none)"
    ]


def test_world_diffusion_sae_is_built_once_with_what_generate_needs(demo_block_sae):
    from pathlib import Path

    from tests.demo_world import world_block_sae
    from vsae.interventions import load_block_sae, load_or_compute_stats
    from vsae.sae.io import read_provenance

    path, block = demo_block_sae.rsplit("@", 1)
    prov = read_provenance(path)
    assert block == "up_blocks.1.attentions.0" == prov["hookpoint"]
    assert prov["source"] == "world:diffusion" and prov["output"] == "update"
    bsae = load_block_sae(path, block)
    assert bsae.output == "update" and bsae.sae.d_in == 64 and bsae.sae.n_latents == 512
    stats_file = Path(path) / "latent_stats.safetensors"
    stamp = stats_file.stat().st_mtime_ns
    stats = load_or_compute_stats(path, bsae.sae)
    assert 0 < float(stats.firing_rate_N.max()) <= 1 and float(stats.mean_act_N.max()) > 0
    assert world_block_sae(Path(path).parent) == demo_block_sae  # reused, not rebuilt
    assert stats_file.stat().st_mtime_ns == stamp


def test_an_index_of_other_images_is_refused_at_start(demo_world_sae):
    from apps.demo import build_app
    from tests.demo_world import GALLERY

    sae_dir, cache, index = demo_world_sae
    sources = DemoSources(clip_sae=sae_dir, model=None, images=GALLERY, n_images=100, index=index)
    with pytest.raises(ValueError, match="holds 200 images that are not in the Explore gallery"):
        build_app(DemoConfig(), sources, cache)


def test_bias_set_round_trip_and_bad_folders(tmp_path):
    import json

    import torch

    from vsae.analysis.bias_set import BiasSet, BiasSetError

    labels = [{"shape": s, "colour": c} for s, c in (("circle", "red"), ("square", "blue"))] * 3
    x_ND = torch.arange(6 * 4, dtype=torch.float32).reshape(6, 4)
    data = BiasSet(x_ND, labels, x_ND[:4] + 0.5, labels[:4], meta={"target": "shape=circle"})
    back = BiasSet.load(data.save(tmp_path / "set"))
    assert torch.equal(back.train_x_ND, x_ND) and torch.equal(back.test_x_MD, x_ND[:4] + 0.5)
    assert back.test_labels == labels[:4] and back.meta == {"target": "shape=circle"}
    assert back.attributes() == {"shape": ["circle", "square"], "colour": ["blue", "red"]}
    with pytest.raises(BiasSetError, match="5 label records for embeddings of shape \\(6, 4\\)"):
        BiasSet(x_ND, labels[:5], x_ND, labels)
    emb = tmp_path / "set" / "embeddings.safetensors"
    emb.write_bytes(emb.read_bytes()[:100])
    with pytest.raises(BiasSetError, match="cannot read it"):
        BiasSet.load(tmp_path / "set")
    data.save(tmp_path / "set")
    info = json.loads((tmp_path / "set" / "bias_set.json").read_text())
    (tmp_path / "set" / "bias_set.json").write_text(json.dumps({**info, "n_test": 9}))
    with pytest.raises(BiasSetError, match="4 test records, bias_set.json says n_test=9"):
        BiasSet.load(tmp_path / "set")
    with pytest.raises(ValueError, match="bias_set: .* is not a folder"):
        DemoSources(bias_set=tmp_path / "missing")


def test_a_bias_set_of_another_width_is_refused_at_start(demo_world_sae, tmp_path):
    import torch

    from apps.demo import build_app
    from tests.demo_world import GALLERY, GALLERY_N
    from vsae.analysis.bias_set import BiasSet

    labels = [{"shape": "circle"}, {"shape": "square"}]
    BiasSet(torch.zeros(2, 7), labels, torch.zeros(2, 7), labels).save(tmp_path / "set")
    sae_dir, cache, _ = demo_world_sae
    sources = DemoSources(
        clip_sae=sae_dir, model=None, images=GALLERY, n_images=GALLERY_N, bias_set=tmp_path / "set"
    )
    with pytest.raises(ValueError, match="embeddings of width 7, but the image SAE .* d_in=128"):
        build_app(DemoConfig(), sources, cache)
