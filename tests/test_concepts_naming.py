"""Concept naming on the tiny world (semantics, measured precision) and its error paths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import vsae
from tests.conftest import run_cli
from tests.world_sae import EVAL_SEED
from vsae.analysis import ConceptError, load_concepts
from vsae.analysis.labels import share_with
from vsae.analysis.latent_stats import latent_stats
from vsae.analysis.models import ClipModel
from vsae.analysis.name import name_sae
from vsae.analysis.text_cache import cache_path, embed_vocab
from vsae.analysis.vocab import english_vocab, file_vocab, imagenet_vocab, world_vocab
from vsae.analysis.word_match import top_words

EVAL_IMAGES = f"world:1500:{EVAL_SEED}"
WORLD_VALUES = world_vocab().words


def _precision_coverage(table, labels):
    valid = [c for c in table.valid if c.name in WORLD_VALUES]
    pure = [share_with(np.array(c.top_ids), labels, c.name) >= 0.9 for c in valid]
    return float(np.mean(pure)), len({c.name for c in valid}) / len(WORLD_VALUES)


@pytest.fixture(scope="module")
def eval_labels():
    from vsae import world

    scenes = world.sample_scenes(1500, EVAL_SEED)
    return [{a: s[a] for a in world.ATTRIBUTES} for s in scenes]


@pytest.fixture(scope="module")
def text_named(world_sae_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("named_text")
    table = name_sae(world_sae_dir, "world", EVAL_IMAGES, model="world:clip", out=out)
    return table, out


def test_text_naming_is_precise_on_held_out_renders(text_named, eval_labels):
    table, out = text_named
    assert table.method == "text" and len(table) == 256
    precision, coverage = _precision_coverage(table, eval_labels)
    # Measured 0.50 / 0.58 on this split with the shipped defaults (text-side names are
    # broad: many latents fire on conjunctions); the thresholds were chosen on seed 777.
    assert precision >= 0.4, precision
    assert coverage >= 0.5, coverage
    back = load_concepts(out)
    assert [c.name for c in back.concepts] == [c.name for c in table.concepts]
    assert (out / "concepts.csv").read_text().count("\n") == 257
    assert back.thresholds.min_agreement == pytest.approx(0.99)


def test_image_side_naming_is_precise(world_sae_dir, tmp_path, eval_labels):
    table = name_sae(
        world_sae_dir, "world", EVAL_IMAGES, method="image", model="world:clip", out=tmp_path
    )
    assert table.method == "image"
    precision, coverage = _precision_coverage(table, eval_labels)
    # Measured 0.76 / 0.75 with the shipped defaults: image-side names are the more precise.
    assert precision >= 0.6, precision
    assert coverage >= 0.7, coverage
    # labels give the majority label and its purity for every latent that fired
    fired = [c for c in table.concepts if c.freq > 0]
    assert all(c.label in WORLD_VALUES and 0 < c.purity <= 1 for c in fired)


def test_load_still_works_next_to_concepts(text_named, world_sae_dir, tmp_path):
    _, out = text_named
    sae_dir = tmp_path / "sae"
    shutil.copytree(world_sae_dir, sae_dir)
    for name in ("concepts.json", "concepts.csv", "latent_stats.safetensors"):
        shutil.copy(out / name, sae_dir / name)
    sae = vsae.load(sae_dir)
    assert sae.n_latents == 256


def test_provenance_names_the_model(world_sae_dir, tmp_path):
    from vsae.analysis.models import sae_model_spec
    from vsae.sae.io import write_provenance

    sae_dir = tmp_path / "sae"
    shutil.copytree(world_sae_dir, sae_dir)
    with pytest.raises(ConceptError, match="--model"):
        sae_model_spec(sae_dir)
    write_provenance(sae_dir, {"source": "world:clip", "hookpoint": "image", "token_mode": "cls"})
    spec = sae_model_spec(sae_dir)
    assert (spec.source, spec.hookpoint, spec.is_clip_embedding) == ("world:clip", "image", True)
    assert sae_model_spec(sae_dir, hookpoint="blocks.1").is_clip_embedding is False


def test_text_side_on_a_block_hookpoint_points_to_image_side(world_sae_dir):
    with pytest.raises(ConceptError, match="image-side naming"):
        name_sae(world_sae_dir, model="world:clip", hookpoint="blocks.1", method="text")


def test_d_in_mismatch_is_named(tmp_path):
    vsae.build(vsae.SAEConfig(arch="topk", d_in=64, n_latents=32, k=4)).save(tmp_path)
    with pytest.raises(ConceptError, match="d_in=64"):
        name_sae(tmp_path, model="world:clip", images="world:8:0")


def test_vocabularies():
    assert len(world_vocab()) == 24
    assert (
        world_vocab()
        .prompts[world_vocab().words.index("stripes")][0]
        .endswith("striped background")
    )
    eng = english_vocab()
    assert len(eng) == 20_000 and all(w.isalpha() and len(w) >= 3 for w in eng.words)
    imnet = imagenet_vocab()
    assert 990 <= len(imnet) <= 1000 and len(imnet.prompts[0]) == 80


def test_file_vocab_errors(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# colours\nred\n\nblue\nred\n")
    assert file_vocab(path).words == ("red", "blue")
    path.write_text("red\n")
    with pytest.raises(ConceptError, match="1 words; expected at least 2"):
        file_vocab(path)
    with pytest.raises(ConceptError, match="no such file"):
        file_vocab(tmp_path / "missing.txt")


def test_vocab_embeddings_are_cached(tmp_path):
    clip, voc = ClipModel("world:clip"), world_vocab()
    first = embed_vocab(clip, voc, root=tmp_path)
    path = cache_path(clip.cache_key, voc, tmp_path)
    assert path.is_file()
    with np.load(path, allow_pickle=False) as z:
        z_emb = z["emb"]
    np.testing.assert_array_equal(z_emb, first)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # a second call reads the cache: a doctored entry comes back as stored
    np.savez(path, emb=first * 0 + 0.5, words=np.array(voc.words))
    assert float(embed_vocab(clip, voc, root=tmp_path)[0, 0]) == 0.5


def test_chunked_top_words_match_dense():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(300, 16, generator=gen).numpy()
    w = torch.nn.functional.normalize(torch.randn(50, 16, generator=gen), dim=1).numpy()
    s, i = top_words(q, w, k=3, chunk=7)
    dense = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ w.T
    np.testing.assert_array_equal(i, np.argsort(-dense, axis=1)[:, :3])
    np.testing.assert_allclose(s, np.sort(dense, axis=1)[:, ::-1][:, :3], atol=1e-5)


def test_latent_stats_match_brute_force():
    sae = vsae.build(vsae.SAEConfig(arch="topk", d_in=8, n_latents=16, k=3, seed=1))
    x = torch.randn(97, 8, generator=torch.Generator().manual_seed(2))
    st = latent_stats(sae, x.split(10), top=5)
    codes = sae.encode(x).detach().numpy()
    np.testing.assert_allclose(st.freq_N, (codes > 0).mean(0), atol=1e-6)
    for j in range(16):
        fired = np.flatnonzero(codes[:, j] > 0)
        best = fired[np.argsort(-codes[fired, j])][:5]
        assert list(st.top_ids_NM[j][st.top_ids_NM[j] >= 0]) == list(best)


def test_unreadable_image_is_skipped_and_empty_folder_refused(world_sae_dir, tmp_path):
    from vsae.world.export import export_folder

    folder = export_folder(tmp_path / "imgs", 6, seed=3)
    (folder / "broken.png").write_bytes(b"not a png")
    table = name_sae(world_sae_dir, "world", folder, model="world:clip", out=tmp_path / "o")
    assert table.meta["n_images"] == 6
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConceptError, match="no images"):
        name_sae(world_sae_dir, "world", empty, model="world:clip", out=tmp_path / "o2")


def test_cli_concepts_name(world_sae_dir, tmp_path):
    res = run_cli(
        "concepts",
        "name",
        str(world_sae_dir),
        "--model",
        "world:clip",
        "--images",
        "world:300:5",
        "--out",
        str(tmp_path),
        "--json",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n_latents"] == 256 and summary["n_valid"] > 0
    assert (tmp_path / "concepts_run.json").is_file()
    assert (tmp_path / "latent_stats.safetensors").is_file()
    bad = run_cli(
        "concepts",
        "name",
        str(world_sae_dir),
        "--vocab",
        "klingon",
        "--model",
        "world:clip",
        "--out",
        str(tmp_path),
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "klingon" in bad.stderr
