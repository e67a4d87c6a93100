"""hf:// URIs resolve through huggingface_hub's snapshot_download; offline they use a cache
folder laid out as the hub client lays it out (models--owner--repo with blobs, refs and
snapshots of symlinks), made by the test. No network is used."""

from __future__ import annotations

import hashlib
import os

import interop_refs as ref
import pytest
import torch

import vsae

D, N = 8, 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache, repo: str, files: dict[str, bytes]) -> None:
    """The hub cache layout: blobs named by content hash, refs/main, snapshot symlinks."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    src = tmp_path / "src"
    t = ref.sparsify_tensors(D, N, seed=3)
    saeuron = {"batch_topk": True, "sample_topk": False, "input_unit_norm": False}
    ref.write_sparsify(
        src / "unet.up_blocks.1.attentions.2", {"d_in": D, "num_latents": N, "k": 4, **saeuron}, t
    )
    ref.write_sparsify(
        src / "unet.up_blocks.1.attentions.1", {"d_in": D, "num_latents": N, "k": 6, **saeuron}, t
    )
    files = {
        f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(src.glob("*/*")) if p.is_file()
    }
    cache = tmp_path / "hub"
    _cache_repo(cache, "someone/sd-saes", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return t


def test_offline_hub_uri_loads_the_cached_subfolder(offline_cache):
    t = offline_cache
    sae = vsae.load("hf://someone/sd-saes/unet.up_blocks.1.attentions.1")
    x = torch.randn(20, D, generator=ref.gen(1))
    codes, recon = ref.sparsify_forward(6, t, x)
    assert ref.rel_err(sae.encode(x), codes) < 1e-5 and ref.rel_err(sae(x).recon, recon) < 1e-5
    prov = sae.provenance
    assert prov["uri"] == "hf://someone/sd-saes/unet.up_blocks.1.attentions.1"
    assert prov["block"] == "up_blocks.1.attentions.1" and prov["format"] == "sparsify"
    # a revision that is the cached commit, and the other hookpoint
    other = vsae.load(f"hf://someone/sd-saes/unet.up_blocks.1.attentions.2@{COMMIT}")
    assert other.cfg.k == 4


def test_offline_hub_errors_say_how_to_fetch(offline_cache):
    with pytest.raises(
        vsae.InteropError, match=r"not in the cache .*HF_HUB_OFFLINE.*hf download someone/other"
    ):
        vsae.load("hf://someone/other/layer")
    with pytest.raises(vsae.InteropError, match="'unet.mid_block' is not in the snapshot"):
        vsae.load("hf://someone/sd-saes/unet.mid_block")
    with pytest.raises(
        vsae.InteropError, match=r"one SAE per hookpoint \['unet.up_blocks.1.attentions.1'"
    ):
        vsae.load("hf://someone/sd-saes")


def test_offline_hub_uri_can_name_one_file(tmp_path, monkeypatch):
    name = f"{N}_{D}_TopKReLU_4_False_False_0.0_cc3m_ViT-B~16_train_image_10_{D}.pth"
    s = ref.msae_state(D, N, seed=5)
    torch.save({"model": s, "mean_center": torch.zeros(D), "scaling_factor": 2.0}, tmp_path / name)
    cache = tmp_path / "hub"
    _cache_repo(cache, "someone/msae", {name: (tmp_path / name).read_bytes(), "README.md": b"x"})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sae = vsae.load(f"hf://someone/msae/{name}")
    x = torch.randn(10, D, generator=ref.gen(2))
    codes = ref.msae_encode(s, torch.zeros(D), 2.0, x, topk=4)
    assert ref.rel_err(sae.encode(x), codes) < 1e-5
    assert sae.source_format == "msae" and sae.provenance["model"] == "ViT-B/16"
