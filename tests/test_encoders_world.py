"""world:* shortcuts: the tiny world's CLIP / SigLIP / diffusion, shipped with vsae."""

import pytest

from vsae.encoders import SourceError, from_spec


def test_an_unknown_world_model_names_the_valid_ones():
    with pytest.raises(SourceError, match=r"world:dino: expected one of \['world:clip'"):
        from_spec("world:dino")


@pytest.mark.slow
def test_world_clip_extracts_world_scenes(tmp_path):
    from vsae.data.shards import load_all, read_meta
    from vsae.extract import extract

    src = from_spec("world:clip", hookpoints=["image", "text", "blocks.0"], tokens="all")
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
