"""Renderer, scenes, captions and export of the tiny world (fast, no models)."""

import json

import numpy as np
import pytest

from vsae import world
from vsae.world import (
    ATTRIBUTES,
    COLOURS,
    SHAPES,
    Correlation,
    full_caption,
    random_captions,
    render,
    sample_scenes,
    zero_shot_prompts,
)
from vsae.world.render import _hsv_to_rgb_np
from vsae.world.vocab import COLOUR_HSV, POSITION_CENTRE


def test_render_is_deterministic_and_seeds_differ():
    a, sa = render(16, seed=3)
    b, sb = render(16, seed=3)
    c, _ = render(16, seed=4)
    assert a.shape == (16, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and sa == sb
    assert not np.array_equal(a, c)
    # scene i depends on (seed, i) only: a longer request extends a shorter one
    d, _ = render(4, seed=3)
    assert np.array_equal(a[:4], d)


def _palette():
    return _hsv_to_rgb_np(*(np.array(v) for v in zip(*COLOUR_HSV.values(), strict=True))) * 255


@pytest.mark.parametrize("shape", SHAPES)
def test_pixel_at_object_centre_has_the_requested_colour(shape):
    palette = _palette()
    for i, colour in enumerate(COLOURS):
        images, scenes = render(4, seed=100 + i, fixed={"colour": colour, "shape": shape})
        for img, s in zip(images, scenes, strict=True):
            o = s["objects"][0]
            px = img[int(o["cy"]), int(o["cx"])].astype(float)
            nearest = COLOURS[int(np.argmin(((palette - px) ** 2).sum(1)))]
            assert nearest == colour, (shape, colour, px)


def test_object_sits_in_its_quadrant_and_large_is_larger():
    images, scenes = render(64, seed=7, fixed={"background": "plain"})
    area = {"small": [], "large": []}
    for img, s in zip(images, scenes, strict=True):
        bg = np.array(s["bg"]["c1"]) * 255
        mask = np.abs(img.astype(float) - bg).sum(-1) > 60
        ys, xs = np.nonzero(mask)
        cx, cy = POSITION_CENTRE[s["position"]]
        assert abs(xs.mean() - cx) < 7 and abs(ys.mean() - cy) < 7, s["position"]
        area[s["size"]].append(mask.sum())
    assert min(area["large"]) > max(area["small"])


def test_correlations_bias_the_data():
    corr = Correlation.parse("colour=red|shape=circle:0.9")
    scenes = sample_scenes(3000, seed=1, correlations=[corr])
    circles = [s for s in scenes if s["shape"] == "circle"]
    others = [s for s in scenes if s["shape"] != "circle"]
    p_red_circle = np.mean([s["colour"] == "red" for s in circles])
    p_red_other = np.mean([s["colour"] == "red" for s in others])
    assert 0.85 < p_red_circle < 0.95
    assert 0.08 < p_red_other < 0.17
    with pytest.raises(ValueError, match="expected one of"):
        Correlation.parse("colour=mauve|shape=circle:0.9")
    with pytest.raises(ValueError, match="attribute=value"):
        Correlation.parse("colour red circle")


def test_two_objects_differ_in_position_and_shape():
    scenes = sample_scenes(50, seed=2, two_objects=1.0)
    for s in scenes:
        a, b = s["objects"]
        assert a["position"] != b["position"] and a["shape"] != b["shape"]
    assert " and a " in full_caption(scenes[0])


def test_captions_name_the_true_attributes():
    scenes = sample_scenes(200, seed=5)
    for s, c in zip(scenes, random_captions(scenes, seed=0), strict=True):
        for attr in ("colour", "shape", "size", "position"):
            for v in ATTRIBUTES[attr]:
                if f" {v} " in f" {c} ":
                    assert v == s[attr], (c, s[attr])
        full = full_caption(s)
        assert s["colour"] in full and s["shape"] in full and s["position"] in full
    prompts = zero_shot_prompts("colour")
    assert set(prompts) == set(COLOURS) and all(len(v) >= 2 for v in prompts.values())
    assert "an orange object" in prompts["orange"]


def test_export_folder_and_shards(tmp_path):
    import webdataset as wds

    from vsae.world.export import export_folder, export_shards

    folder = export_folder(tmp_path / "f", 6, seed=0)
    lines = (folder / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 6 and (folder / "00000005.png").is_file()
    assert json.loads(lines[0])["colour"] in COLOURS
    shards = export_shards(tmp_path / "s", 5, seed=0, fmt="jpg", per_shard=2)
    assert len(shards) == 3
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert len(samples) == 5
    assert samples[0]["jpg"].size == (64, 64)
    assert json.loads(json.dumps(samples[0]["json"]))["shape"] in SHAPES
    assert isinstance(samples[0]["txt"], str) and samples[0]["txt"]


def test_minimal_pair_groups_differ_only_in_the_varied_attribute():
    from vsae.world.pairs import minimal_pair_batch

    images, scenes, caps = minimal_pair_batch({"position": 2, "shape": 1}, seed=3, step=5)
    n_pos, n_shape = len(world.POSITIONS), len(world.SHAPES)
    assert images.shape == (2 * n_pos + n_shape, 64, 64, 3)
    groups = [(0, n_pos, "position"), (n_pos, 2 * n_pos, "position")]
    groups.append((2 * n_pos, 2 * n_pos + n_shape, "shape"))
    for start, stop, attr in groups:
        members = scenes[start:stop]
        assert [s[attr] for s in members] == list(world.ATTRIBUTES[attr])
        for other in world.ATTRIBUTES:
            if other != attr:
                assert len({s[other] for s in members}) == 1, (attr, other)
        assert len({s["bg"]["seed"] for s in members}) == 1
        for s, cap in zip(members, caps[start:stop], strict=True):
            assert s[attr] in cap, (attr, cap)
    # the two position groups come from different base scenes
    assert scenes[0]["bg"]["seed"] != scenes[n_pos]["bg"]["seed"]
    again, _, caps2 = minimal_pair_batch({"position": 2, "shape": 1}, seed=3, step=5)
    assert np.array_equal(images, again) and caps == caps2
    other, _, _ = minimal_pair_batch({"position": 2, "shape": 1}, seed=3, step=6)
    assert not np.array_equal(images, other)
