"""The real-model path end to end: open_clip ViT-B-32 with random weights (its real tokenizer
and text tower), for text-side and image-side naming, an index and a text query."""

from __future__ import annotations

import pytest

import vsae
from vsae.analysis import ConceptError, ModelSpec, Query, Searcher, build_index, name_sae
from vsae.analysis.text_cache import cache_root

pytestmark = pytest.mark.slow
B32 = "open_clip:ViT-B-32"


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("red\nblue\ncircle\nsquare\ndog\n")
    return path


def test_text_side_naming_and_text_search(tmp_path, words, monkeypatch):
    monkeypatch.setenv("VSAE_CACHE", str(tmp_path / "cache"))
    sae_dir = tmp_path / "sae"
    vsae.build(vsae.SAEConfig(arch="topk", d_in=512, n_latents=64, k=4, seed=0)).save(sae_dir)
    table = name_sae(sae_dir, str(words), "world:6:0", method="text", model=B32)
    assert len(table) == 64 and table.method == "text"
    assert {c.name for c in table.concepts if c.name} <= {"red", "blue", "circle", "square", "dog"}
    assert all(len(c.top_words) == 5 for c in table.concepts)
    # random weights differ per load: their embeddings must not be cached
    assert not cache_root().exists() or not any(cache_root().iterdir())
    index = build_index(sae_dir, "world:6:0", tmp_path / "idx", ModelSpec(B32, None, "image"))
    hits = Searcher(index).run(Query(text="a photo of a red circle", k=3))
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    with pytest.raises(ConceptError, match="image-side"):
        name_sae(sae_dir, str(words), "world:6:0", method="text", model=B32, hookpoint="blocks.5")


def test_image_side_naming_of_a_vit_block(tmp_path, words):
    sae_dir = tmp_path / "sae"
    vsae.build(vsae.SAEConfig(arch="topk", d_in=768, n_latents=32, k=4, seed=0)).save(sae_dir)
    table = name_sae(
        sae_dir, str(words), "world:8:1", method="image", model=B32, hookpoint="blocks.5"
    )
    assert table.method == "image" and table.meta["naming_clip"]["spec"] == "world:clip"
    fired = [c for c in table.concepts if c.freq > 0]
    assert fired and all(c.name and c.label for c in fired)


def test_example_runs_offline(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "concepts_and_search.py"),
            "--out",
            str(tmp_path),
            "--n-train",
            "800",
            "--steps",
            "150",
            "--n-images",
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "valid concepts" in res.stdout and (tmp_path / "last-query.png").is_file()
    assert (tmp_path / "index" / "index.json").is_file()
