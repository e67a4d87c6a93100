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
    fit_recipe,
    generate,
    load_generator,
    load_recipe,
    sae_hash,
)
from vsae.interventions.unlearn import mentions, scores

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
