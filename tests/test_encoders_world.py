"""world:* shortcuts: the tiny world's CLIP / SigLIP / diffusion, or a clear error without it."""

import importlib.util

import pytest

from vsae.encoders import SourceError, from_spec

HAS_WORLD = importlib.util.find_spec("vsae.world") is not None


@pytest.mark.skipif(HAS_WORLD, reason="the tiny world is installed")
def test_world_missing_gives_clear_error():
    with pytest.raises(SourceError, match="tiny world .*not installed"):
        from_spec("world:clip")
    from vsae.data.images import iter_inputs

    with pytest.raises(ValueError, match="tiny world"):
        next(iter_inputs("world:3"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WORLD, reason="needs vsae.world")
def test_world_clip_extracts_world_scenes(tmp_path):
    from vsae.data.shards import load_all, read_meta
    from vsae.extract import extract

    try:
        src = from_spec("world:clip", hookpoints=["image", "text", "blocks.0"], tokens="all")
    except FileNotFoundError as exn:
        pytest.skip(f"world weights not built: {exn}")
    meta = extract(src, "world:5", tmp_path / "out", progress=False)
    assert meta["source"] == "world:clip" and meta["n_samples"] == 5
    d = src.d_out["image"]
    assert load_all(tmp_path / "out", "image").shape == (5, d)
    assert read_meta(tmp_path / "out")["hookpoints"]["text"]["n_vectors"] == 5
    import json

    import webdataset as wds

    shard = tmp_path / "out" / meta["shards"][0]["name"]
    first = json.loads(next(iter(wds.WebDataset(str(shard), shardshuffle=False)))["json"])
    assert first["caption"] and first["labels"]
