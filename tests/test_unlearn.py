"""SAeUron-style unlearning: scores, recipes, the error-preserving edit, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vsae
from tests.pipeline_helpers import tiny_sd_pipeline
from vsae import SAEConfig
from vsae.interventions import (
    BlockSAE,
    InterventionError,
    Recipe,
    combine_recipes,
    fit_from_means,
    fit_recipe,
    generate,
    load_generator,
    load_recipe,
    sae_hash,
    sequential_recipes,
)
from vsae.interventions.unlearn import mentions, scores, step_means
from vsae.interventions.unlearn_eval import (
    Judged,
    Row,
    frechet_distance,
    kind_of,
    negative_prompt,
    recipe_metrics,
    robustness_prompts,
    run_rows,
    split_pairs,
)
from vsae.world import COLOURS, SHAPES

BLOCK = "up_blocks.1.attentions.0"
STEPS = 3
PROMPTS = ["a red circle", "a red square", "a blue circle", "a blue square", "a green star"]


def block_sae(d: int = 64, n: int = 96, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    sae = vsae.build(SAEConfig(arch="topk", d_in=d, n_latents=n, k=6))
    sae.init_from_data(torch.randn(512, d) * 3 + 1)
    return sae.eval()


@pytest.fixture(scope="module")
def world():
    gen = load_generator("world")
    bsae = BlockSAE(block_sae(), BLOCK, output="update")
    recipe = fit_recipe(gen, bsae, ["red"], PROMPTS, STEPS, seeds=(0,), percentile=95, gamma=-2)
    return gen, bsae, recipe


def test_score_is_the_difference_of_normalised_means():
    mu_c = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]])
    mu_not = torch.tensor([[2.0, 2.0, 0.0], [1.0, 1.0, 2.0]])
    want = torch.tensor([[0.25 - 0.5, 0.75 - 0.5, 0.0], [0.25 - 0.25, 0.25 - 0.25, 0.5 - 0.5]])
    assert torch.allclose(scores(mu_c, mu_not), want, atol=1e-9)
    assert mentions("A Red circle", "red") and not mentions("a reddish circle", "red")


def test_sae_hash_follows_the_weights_not_the_file(tmp_path):
    sae = block_sae()
    sae.save(tmp_path / "a")
    sae.save(tmp_path / "b", format="sparsify")
    assert sae_hash(vsae.load(tmp_path / "a")) == sae_hash(sae)
    assert sae_hash(block_sae(seed=1)) != sae_hash(sae)


def test_recipe_selects_per_step_and_edits_only_when_selected(world, tmp_path):
    gen, bsae, recipe = world
    assert recipe.selected_TN.shape == (STEPS, 96)
    per_step = recipe.selected_TN.sum(1)
    assert (per_step >= 1).all() and (per_step <= 6).all()  # ~5% of 96, by the percentile
    assert (recipe.multiplier_TN[recipe.selected_TN] < 0).all()
    assert recipe.info["per_concept"]["red"]["prompts"] == 2
    p = ["a red circle"]
    bare = gen(p, STEPS, seed=1, as_float=True)
    empty = Recipe(
        torch.zeros_like(recipe.selected_TN),
        recipe.multiplier_TN,
        recipe.threshold_TN,
        recipe.info,
    )
    none = generate(gen, p, STEPS, 1, saes=[bsae], edits=[empty.edit(bsae)], as_float=True)
    assert np.abs(none.images - bare).max() <= 1e-4  # x + (x_hat' - x_hat): nothing changes
    edited = generate(gen, p, STEPS, 1, saes=[bsae], edits=[recipe.edit(bsae)], as_float=True)
    assert np.abs(edited.images - bare).max() > 1e-3 and edited.attached.edited == [STEPS]
    recipe.save(tmp_path / "r")
    again = load_recipe(tmp_path / "r")
    assert torch.equal(again.selected_TN, recipe.selected_TN)
    assert torch.equal(again.multiplier_TN, recipe.multiplier_TN)
    assert again.info["prompts"] == PROMPTS and again.info["sae_hash"] == sae_hash(bsae.sae)
    with pytest.raises(InterventionError, match="fitted for 3 denoising steps; this run has 4"):
        generate(gen, p, 4, 1, saes=[bsae], edits=[again.edit(bsae)])


def test_recipe_refuses_another_sae_or_block_and_bad_files(world, tmp_path):
    _, bsae, recipe = world
    with pytest.raises(InterventionError, match="refit"):
        recipe.edit(BlockSAE(block_sae(seed=3), BLOCK))
    with pytest.raises(InterventionError, match="for block 'up_blocks.1.attentions.0'"):
        recipe.edit(BlockSAE(bsae.sae, "mid_block.attentions.0"))
    out = recipe.save(tmp_path / "r")
    data = (out / "latents.safetensors").read_bytes()
    (out / "latents.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InterventionError, match="unreadable"):
        load_recipe(out)
    with pytest.raises(InterventionError, match="no such file"):
        load_recipe(tmp_path / "nothing")
    recipe.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "recipe.json").read_text())
    meta["num_steps"] = 7
    (tmp_path / "s" / "recipe.json").write_text(json.dumps(meta))
    with pytest.raises(InterventionError, match="disagree with the recipe's 7 steps"):
        load_recipe(tmp_path / "s")


def test_fit_refuses_bad_hyperparameters(world):
    gen, bsae, _ = world
    for kw, msg in (
        ({"percentile": 100.0}, r"percentile 100.0: expected a value in \(0, 100\)"),
        ({"gamma": 0.5}, "expected gamma < 0"),
        ({"concepts": ["purple"]}, "'purple' appears in no statistics prompt"),
        ({"concepts": []}, "at least one concept"),
    ):
        args = {"concepts": ["red"], **kw}
        with pytest.raises(InterventionError, match=msg):
            fit_recipe(gen, bsae, args.pop("concepts"), PROMPTS, STEPS, **args)


def test_random_sd_pipeline_fits_and_applies_a_saved_recipe(tmp_path):
    gen = load_generator(str(tiny_sd_pipeline(tmp_path / "pipe", sdxl=False)))
    bsae = BlockSAE(block_sae(d=64), "mid_block.attentions.0", output="output")
    prompts = ["red", "red a", "a b c", "b c"]
    recipe = fit_recipe(gen, bsae, ["red"], prompts, 2, percentile=90, gamma=-5, guidance=5.0)
    loaded = load_recipe(recipe.save(tmp_path / "recipe"))
    bare = gen(["red"], 2, seed=0, guidance=5.0, as_float=True)
    empty = Recipe(torch.zeros_like(loaded.selected_TN), loaded.multiplier_TN,
                   loaded.threshold_TN, loaded.info)  # fmt: skip
    same = generate(gen, ["red"], 2, 0, 5.0, [bsae], [empty.edit(bsae)], as_float=True)
    assert np.abs(same.images - bare).max() <= 1e-4
    run = generate(gen, ["red"], 2, 0, 5.0, [bsae], [loaded.edit(bsae)], as_float=True)
    assert np.abs(run.images - bare).max() > 0


def test_sequential_removal_is_the_union_of_single_recipes(world):
    gen, bsae, _ = world
    mu = step_means(gen, bsae, PROMPTS, STEPS, [0])
    seq = sequential_recipes(bsae, ["red", "blue"], PROMPTS, mu, percentile=95, gamma=-2)
    red = fit_from_means(bsae, ["red"], PROMPTS, mu, 95, -2)
    blue = fit_from_means(bsae, ["blue"], PROMPTS, mu, 95, -2)
    assert [r.info["concepts"] for r in seq] == [["red"], ["red", "blue"]]
    assert torch.equal(seq[0].selected_TN, red.selected_TN)
    assert torch.equal(seq[1].selected_TN, red.selected_TN | blue.selected_TN)
    assert seq[1].selected_TN.sum() > red.selected_TN.sum()  # blue adds latents
    both = red.selected_TN & blue.selected_TN
    want = torch.minimum(red.multiplier_TN, blue.multiplier_TN)[both]
    assert torch.equal(seq[1].multiplier_TN[both], want)  # the stronger suppression wins
    # the same as fitting both at once (the statistics are shared)
    at_once = fit_from_means(bsae, ["red", "blue"], PROMPTS, mu, 95, -2)
    assert torch.equal(at_once.selected_TN, seq[1].selected_TN)
    other = Recipe(red.selected_TN, red.multiplier_TN, red.threshold_TN,
                   {**red.info, "block": "mid_block.attentions.0"})  # fmt: skip
    with pytest.raises(InterventionError, match="cannot combine"):
        combine_recipes([red, other])
    with pytest.raises(InterventionError, match=r"expected \[5 prompts, steps, 96 latents\]"):
        fit_from_means(bsae, ["red"], PROMPTS, mu[:3], 95, -2)


def test_gamma_error_explains_and_negative_percentiles_are_refused(world):
    gen, bsae, _ = world
    with pytest.raises(InterventionError, match="gamma >= 0 keeps or amplifies the concept"):
        fit_recipe(gen, bsae, ["red"], PROMPTS, STEPS, gamma=0.0)
    with pytest.raises(InterventionError, match=r"percentile 0.0: expected a value in \(0, 100\)"):
        fit_recipe(gen, bsae, ["red"], PROMPTS, STEPS, percentile=0.0)
    with pytest.raises(InterventionError, match="appears in every prompt"):
        fit_recipe(gen, bsae, ["a"], PROMPTS, STEPS)


def test_a_pipeline_without_the_recipes_block_is_refused(world, tmp_path):
    _, bsae, recipe = world
    gen = load_generator(str(tiny_sd_pipeline(tmp_path / "pipe", sdxl=False)))
    with pytest.raises(InterventionError, match="up_blocks.1.attentions.0"):
        generate(gen, ["red"], STEPS, 0, saes=[bsae], edits=[recipe.edit(bsae)])


def test_negative_prompt_guides_away_and_empty_negatives_change_nothing():
    gen = load_generator("world")
    p = ["a red circle", "a blue square"]
    bare = gen(p, STEPS, seed=2, as_float=True)
    same = gen(p, STEPS, seed=2, as_float=True, negative_prompts=["", ""])
    assert np.array_equal(bare, same)
    away = gen(p, STEPS, seed=2, as_float=True, negative_prompts=["a red object", ""])
    assert np.abs(away[0] - bare[0]).max() > 1e-2  # the first image is pushed
    assert np.abs(away[1] - bare[1]).max() <= 1e-5  # the second row is untouched
    with pytest.raises(InterventionError, match="1 negative prompts for 2 prompts"):
        gen(p, STEPS, negative_prompts=["x"])


def test_run_rows_applies_each_recipe_to_its_rows_only(world):
    gen, bsae, recipe = world
    rows = [Row("a red circle", 0), Row("a red circle"), Row("a red square", 0)]
    cache = {}
    got = run_rows(gen, bsae, rows, [recipe], STEPS, 3, chunk=2, cache=cache)
    bare = run_rows(gen, bsae, [Row(r.prompt) for r in rows], [recipe], STEPS, 3, chunk=2)
    full = generate(gen, ["a red circle", "a red circle"], STEPS, 3, saes=[bsae],
                    edits=[recipe.edit(bsae)]).images  # fmt: skip
    assert np.array_equal(got[0], full[0])  # row 0: the recipe, same noise position
    assert np.array_equal(got[1], bare[1])  # row 1: no recipe = bare
    assert np.abs(got[2].astype(int) - bare[2]).max() > 2  # row 2 (next chunk): edited
    assert len(cache) == 2
    again = run_rows(gen, bsae, rows, [recipe], STEPS, 3, chunk=2, cache=cache)
    assert np.array_equal(again, got) and len(cache) == 2  # served from the cache


def judged(prompts, colours, shapes):
    n = len(prompts)
    return Judged(list(prompts), {"colour": colours, "shape": shapes},
                  {"colour": np.full(n, 0.5), "shape": np.full(n, 0.5)},
                  np.zeros((n, 4)))  # fmt: skip


def test_ua_ira_cra_arithmetic():
    ps = ["a red circle", "a red square", "a blue circle", "a blue square", "a green star"]
    bare = judged(ps, ["red", "red", "blue", "blue", "green"],
                  ["circle", "circle", "circle", "square", "star"])  # fmt: skip
    edited = judged(ps, ["red", "pink", "blue", "purple", "green"],
                    ["circle", "square", "square", "square", "star"])  # fmt: skip
    m = recipe_metrics(["red"], edited, bare)
    assert m["ua"] == {"red": 0.5} and m["n_target"] == 2 and m["n_other"] == 3
    assert m["ira"]["edited"] == pytest.approx(2 / 3) and m["ira"]["bare"] == 1.0
    assert m["cra"]["edited"] == pytest.approx(2 / 3) and m["cra"]["bare"] == pytest.approx(1.0)
    assert m["ira"]["relative"] == pytest.approx(2 / 3)
    assert m["target_other_kind_kept"]["edited"] == 1.0  # square kept on "a red square"
    assert m["target_other_kind_kept"]["bare"] == 0.5
    mixed = recipe_metrics(["red", "star"], edited, bare)
    assert "ira" not in mixed and mixed["ua"]["star"] == 0.0


def test_frechet_distance_and_splits():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = frechet_distance(a, a + np.array([2.0, 0, 0]))
    assert shifted == pytest.approx(4.0, abs=1e-6)
    wider = frechet_distance(a, 3 * a)  # tr(S + 9S - 2*3S) = 4 tr(S), about 12
    assert 10 < wider < 14
    sel, ev = split_pairs()
    assert len(sel) == len(ev) == 24 and not set(sel) & set(ev)
    for c in COLOURS + SHAPES:
        assert any(mentions(p, c) for p in sel) and any(mentions(p, c) for p in ev)
    fams = robustness_prompts("red", ["circle", "star"], n=2)
    assert fams["other_frames"] == ["a photo of a red circle", "there is a red star"]
    assert fams["word_order"] == ["a circle in red", "red star"]
    assert fams["alone"] == ["a red object", "a red thing"]
    assert all(" and " in p and p.count("red") == 1 for p in fams["two_objects"])
    assert negative_prompt(["red", "circle"]) == "a red object and a circle"
    with pytest.raises(InterventionError, match="tiny world's judge knows"):
        kind_of("teal")
