"""SAEs attached to U-Net blocks: no-op reconstruction, edits, schedules, CFG halves, errors.

Runs on the shipped tiny diffusion model and on small random-weight SD 1.x and SDXL pipelines
built from real diffusers components (tests/pipeline_helpers.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vsae
from tests.pipeline_helpers import tiny_sd_pipeline
from vsae import SAEConfig
from vsae.encoders.hooks import ReadHook
from vsae.interventions import (
    Ablate,
    AblateBlock,
    BlockSAE,
    Clamp,
    Icon,
    InterventionError,
    LatentStats,
    Steer,
    attach,
    compute_latent_stats,
    generate,
    latent_maps,
    load_block_sae,
    load_generator,
    load_mask,
    load_or_compute_stats,
    save_heatmaps,
)
from vsae.sae.io import write_provenance

BLOCK = "mid_block.attentions.0"  # 64 channels, 4x4 grid in the tiny world's U-Net
UP = "up_blocks.1.attentions.0"  # 64 channels, 8x8 grid
STEPS = 4


def block_sae(d: int = 64, n: int = 96, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    sae = vsae.build(SAEConfig(arch="topk", d_in=d, n_latents=n, k=6))
    sae.init_from_data(torch.randn(512, d) * 3 + 1)
    return sae.eval()


def uniform_stats(n: int, mean: float = 1.0) -> LatentStats:
    ones = torch.ones(n)
    return LatentStats(
        ones * 0.1, ones * mean, ones * 2, torch.tensor([-1]), ones[None], ones[None]
    )


def unhooked(unet: torch.nn.Module) -> bool:
    return not unet._forward_pre_hooks and not any(m._forward_hooks for m in unet.modules())


@pytest.fixture(scope="module")
def world_gen():
    return load_generator("world")


def test_reconstruct_only_leaves_the_world_image_unchanged(world_gen):
    prompts = ["a red circle", "a blue star"]
    bare = world_gen(prompts, STEPS, seed=3, as_float=True)
    saes = [BlockSAE(block_sae(), BLOCK), BlockSAE(block_sae(seed=1), UP, output="output")]
    run = generate(world_gen, prompts, STEPS, seed=3, saes=saes, as_float=True)
    assert np.abs(run.images - bare).max() <= 1e-4
    # every U-Net call went through both hooks: STEPS calls ([uncond; cond] batched)
    assert run.attached.calls == STEPS and run.attached.steps == list(range(STEPS))
    assert run.attached.edited == [0, 0] and unhooked(world_gen.unet)


def test_edits_change_the_image_compose_and_follow_the_schedule(world_gen):
    p, sae = ["a green square"], BlockSAE(block_sae(), BLOCK)
    stats = [uniform_stats(sae.sae.n_latents, 4.0)]
    bare = world_gen(p, STEPS, seed=0, as_float=True)

    def img(*edits):
        run = generate(world_gen, p, STEPS, 0, saes=[sae], edits=edits, stats=stats, as_float=True)
        return run.images, run.attached

    steered, seen = img(Steer(feature=5, strength=8.0))
    assert np.abs(steered - bare).max() > 0.05 and seen.edited == [STEPS]
    late, seen = img(Steer(feature=5, strength=8.0, steps=(2, 4)))
    assert seen.edited == [2] and not np.allclose(late, steered)
    both, _ = img(Steer(feature=5, strength=8.0), Steer(feature=7, strength=8.0))
    assert not np.allclose(both, steered)
    assert np.abs(img(AblateBlock())[0] - bare).max() > 0.01
    assert np.abs(img(Clamp(feature=2, value=50.0))[0] - bare).max() > 0.01


def _block_io(unet, scheduler, saes, edits, cfg, guided, stats):
    """One U-Net call on [uncond; cond]; the edited block's (input, output)."""
    scheduler.set_timesteps(STEPS)
    torch.manual_seed(0)
    x = torch.randn(2, 12, 16, 16)
    cond = torch.randn(2, 5, 128)
    got = {}
    block = dict(unet.named_modules())[BLOCK]
    with attach(unet, scheduler, saes, edits, stats, cfg=cfg, guided=guided):
        with ReadHook(block, lambda i, o: got.update(x_in=i.clone(), x_out=o.clone())):
            unet(x, scheduler.timesteps[0], encoder_hidden_states=cond)
    return got["x_in"], got["x_out"]


def test_cfg_modes_edit_the_right_halves(world_gen):
    unet, sched = world_gen.unet, world_gen.scheduler
    sae = [BlockSAE(block_sae(), BLOCK)]
    stats = [uniform_stats(96, 2.0)]
    steer = [Steer(feature=1, strength=5.0)]
    _, bare = _block_io(unet, sched, sae, [], "both", True, stats)
    deltas = {}
    for mode in ("both", "cond", "signed"):
        _, out = _block_io(unet, sched, sae, steer, mode, True, stats)
        deltas[mode] = out - bare
    d = deltas["both"]
    assert d.abs().max() > 0.1 and torch.allclose(d[0], d[1], atol=1e-5)
    assert deltas["cond"][0].abs().max() == 0 and torch.allclose(deltas["cond"][1], d[1])
    assert torch.allclose(deltas["signed"][0], -d[0], atol=1e-5)
    assert torch.allclose(deltas["signed"][1], d[1], atol=1e-5)
    with pytest.raises(InterventionError, match="cfg='half'"):
        _block_io(unet, sched, sae, steer, "half", True, stats)


def test_icon_and_block_ablation_replace_the_update(world_gen):
    unet, sched = world_gen.unet, world_gen.scheduler
    sae = block_sae()
    stats = [uniform_stats(96, 3.0)]
    x_in, x_out = _block_io(unet, sched, [BlockSAE(sae, BLOCK)], [AblateBlock()], "both", 1, stats)
    assert torch.equal(x_out, x_in)
    x_in, x_out = _block_io(
        unet, sched, [BlockSAE(sae, BLOCK)], [Icon(feature=4)], "both", 1, stats
    )
    atom_D = (sae.decode(torch.eye(96)[4:5] * 3.0) - sae.decode(torch.zeros(1, 96)))[0]
    update = (x_out - x_in).permute(0, 2, 3, 1).reshape(-1, 64)
    assert torch.allclose(update, atom_D.expand_as(update), atol=1e-4)


def test_masked_steering_changes_only_the_masked_positions(world_gen, tmp_path):
    unet, sched = world_gen.unet, world_gen.scheduler
    sae, stats = [BlockSAE(block_sae(), UP)], [uniform_stats(96, 2.0)]
    mask = np.zeros((32, 32), np.float32)
    mask[:16, :16] = 1.0  # the top-left quadrant: the top-left 4x4 of the 8x8 grid
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "m.png")
    loaded = load_mask(tmp_path / "m.png", (32, 32))
    assert np.array_equal(loaded, mask)
    scheduler_steps = []
    got = {}
    block = dict(unet.named_modules())[UP]
    for edits in ([], [Steer(feature=3, strength=6.0, mask=loaded)]):
        sched.set_timesteps(STEPS)
        torch.manual_seed(0)
        x, cond = torch.randn(1, 12, 16, 16), torch.randn(1, 5, 128)
        with attach(unet, sched, sae, edits, stats, image_hw=(32, 32)) as seen:
            key = len(edits)
            with ReadHook(block, lambda i, o, e=key: got.update({e: o.clone()})):
                unet(x, sched.timesteps[1], encoder_hidden_states=cond)
        scheduler_steps.append(seen.steps)
    delta = (got[1] - got[0])[0].abs().amax(0)  # [8, 8]
    assert delta[:4, :4].min() > 1e-3 and delta[4:, :].max() == 0 and delta[:, 4:].max() == 0
    assert scheduler_steps == [[1], [1]]


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
def test_random_sd_and_sdxl_pipelines_run_edit_and_noop(tmp_path, sdxl):
    gen = load_generator(str(tiny_sd_pipeline(tmp_path / "pipe", sdxl)))
    assert gen.image_hw == (16, 16)
    block = "mid_block.attentions.0"
    saes = [BlockSAE(block_sae(d=64), block)]
    p = ["red", "a b c"]
    bare = gen(p, 3, seed=1, guidance=5.0, as_float=True)
    noop = generate(gen, p, 3, 1, 5.0, saes, as_float=True)
    assert np.abs(noop.images - bare).max() <= 1e-4 and noop.attached.calls == 3
    stats = [uniform_stats(96, 5.0)]
    steer = [Steer(feature=0, strength=20.0)]
    edited = generate(gen, p, 3, 1, 5.0, saes, steer, stats, as_float=True)
    assert np.abs(edited.images - bare).max() > 1e-3 and unhooked(gen.unet)


def test_bad_input_names_the_thing_and_hooks_are_always_removed(world_gen, tmp_path):
    sae = BlockSAE(block_sae(), BLOCK)
    stats = [uniform_stats(96)]
    p = ["a red circle"]

    def run(saes=(sae,), edits=(), st=stats, prompts=p):
        return generate(world_gen, prompts, STEPS, 0, saes=saes, edits=edits, stats=st)

    with pytest.raises(InterventionError, match=r"'mid_block' is not a Transformer2DModel.*valid"):
        run(saes=[BlockSAE(block_sae(), "mid_block")])
    with pytest.raises(InterventionError, match="d_in 32; block mid_block.attentions.0 has 64"):
        run(saes=[BlockSAE(block_sae(d=32), BLOCK)])
    with pytest.raises(InterventionError, match=r"latent id 96 out of range.*0\.\.95"):
        run(edits=[Steer(feature=96)])
    with pytest.raises(InterventionError, match=r"shape \(8, 8\); expected the image's \(32, 32\)"):
        run(edits=[Steer(feature=1, mask=np.ones((8, 8)))])
    with pytest.raises(InterventionError, match="empty"):
        run(edits=[Steer(feature=1, mask=np.zeros((32, 32)))])
    with pytest.raises(InterventionError, match="steps 2:9 outside the schedule"):
        run(edits=[Ablate(1, steps=(2, 9))])
    with pytest.raises(InterventionError, match="needs the latent statistics"):
        run(edits=[Steer(feature=1)], st=None)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InterventionError, match="bad.png: not a readable mask image"):
        load_mask(tmp_path / "bad.png")
    with pytest.raises(InterventionError, match="no such mask file"):
        load_mask(tmp_path / "missing.png")
    # generation itself fails (a prompt over the context length): the pipeline is left as it was
    with pytest.raises(ValueError, match="token"):
        run(edits=[Steer(feature=1)], prompts=["red " * 40])
    assert unhooked(world_gen.unet)
    after = world_gen(p, STEPS, seed=0, as_float=True)
    assert np.array_equal(after, world_gen(p, STEPS, seed=0, as_float=True))


def test_stats_from_training_shards_and_the_output_mode_from_metadata(tmp_path):
    from vsae.extract import extract

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue star\na green square\n")
    shards = tmp_path / "shards"
    extract(
        "world:diffusion",
        str(prompts),
        shards,
        hookpoints=[BLOCK],
        source_opts={"num_steps": 3, "output": "update"},
        progress=False,
    )
    sae = block_sae()
    stats = compute_latent_stats(sae, shards)
    assert stats.mean_act_N.shape == (96,) and stats.steps_T.tolist() == [0, 1, 2]
    fired = stats.firing_rate_N > 0
    assert fired.any() and (stats.mean_act_N[fired] > 0).all()
    # 6 of 96 latents fire per position (TopK k=6): the rates sum to k
    assert float(stats.firing_rate_N.sum()) == pytest.approx(6.0, abs=1e-4)
    with pytest.raises(InterventionError, match="width 64, the SAE d_in 16"):
        compute_latent_stats(block_sae(d=16), shards)
    sae_dir = tmp_path / "sae"
    sae.save(sae_dir)
    with pytest.raises(InterventionError, match="neither its metadata"):
        load_block_sae(sae_dir, BLOCK)
    with pytest.raises(InterventionError, match="no latent statistics yet"):
        load_or_compute_stats(sae_dir, sae)
    write_provenance(sae_dir, {"data": str(shards), "output": "update", "hookpoint": BLOCK})
    bsae = load_block_sae(sae_dir, BLOCK)
    assert bsae.output == "update"
    with pytest.raises(InterventionError, match="trained on the block 'update'"):
        load_block_sae(sae_dir, BLOCK, output="output")
    first = load_or_compute_stats(sae_dir, sae)  # from the shards its provenance names
    assert torch.equal(first.mean_act_N, stats.mean_act_N)
    (shards / "meta.json").unlink()  # now read from latent_stats.safetensors alone
    again = load_or_compute_stats(sae_dir, sae)
    assert torch.equal(first.mean_act_N, again.mean_act_N)
    with pytest.raises(InterventionError, match="statistics of 96 latents; the SAE has 32"):
        load_or_compute_stats(sae_dir, block_sae(n=32))


def test_heatmaps_locate_a_latent_and_are_written(world_gen, tmp_path):
    sae = BlockSAE(block_sae(), UP)
    maps = latent_maps(world_gen, sae, ["a red circle", "a pink star"], STEPS, seed=2)
    assert maps.maps_BNhw.shape == (2, 96, 8, 8) and maps.step is None
    top = maps.top_latents(0, 5)
    assert len(top) >= 1 and all(a[1] >= b[1] for a, b in zip(top, top[1:], strict=False))
    one = latent_maps(world_gen, sae, ["a red circle"], STEPS, seed=2, step=3)
    assert not torch.allclose(one.maps_BNhw[0], maps.maps_BNhw[0])
    summary = save_heatmaps(maps, None, 3, tmp_path, names={top[0][0]: "red"})
    first = summary["images"][0]
    assert first["top"][0]["name"] == "red" and len(first["heatmaps"]) == len(top[:3])
    png = Image.open(tmp_path / next(iter(first["heatmaps"].values())))
    assert png.size == (256, 256)
    assert json.loads((tmp_path / "heatmaps.json").read_text())["grid"] == [8, 8]
    with pytest.raises(InterventionError, match="step 4 outside"):
        latent_maps(world_gen, sae, ["a red circle"], STEPS, step=4)
    with pytest.raises(InterventionError, match=r"latent ids \[500\] out of range"):
        save_heatmaps(maps, [500], 3, tmp_path)


def test_edits_on_rows_apply_to_their_prompts_only(world_gen):
    sae, stats = [BlockSAE(block_sae(), BLOCK)], [uniform_stats(96, 4.0)]
    p = ["a red circle", "a blue star"]
    bare = world_gen(p, STEPS, seed=5, as_float=True)
    alone = generate(
        world_gen, p[:1], STEPS, 5, saes=sae, edits=[Steer(feature=5, strength=8.0)],
        stats=stats, as_float=True,
    ).images  # fmt: skip
    rows = [Steer(feature=5, strength=8.0, rows=(0,)), AblateBlock(rows=(1,))]
    both = generate(world_gen, p, STEPS, 5, saes=sae, edits=rows, stats=stats, as_float=True)
    assert np.abs(both.images[0] - alone[0]).max() <= 1e-4  # the same edit as run alone
    assert np.abs(both.images[0] - bare[0]).max() > 0.05
    ablated = generate(world_gen, p, STEPS, 5, saes=sae, edits=[AblateBlock()], as_float=True)
    assert np.abs(both.images[1] - ablated.images[1]).max() <= 1e-4
    icons = [Icon(feature=f, rows=(i,)) for i, f in enumerate((4, 9))]
    batched = generate(world_gen, ["", ""], STEPS, 5, saes=sae, edits=icons, stats=stats)
    single = generate(world_gen, [""], STEPS, 5, saes=sae, edits=[Icon(feature=4)], stats=stats)
    assert np.abs(batched.images[0].astype(int) - single.images[0]).max() <= 1
    assert not np.array_equal(batched.images[0], batched.images[1])
    with pytest.raises(InterventionError, match=r"rows \[2\] out of range for 2 prompts"):
        generate(world_gen, p, STEPS, 5, saes=sae, edits=[AblateBlock(rows=(2,))])


def test_another_tools_checkpoint_attaches_through_vsae_load(world_gen, tmp_path):
    """A sparsify (SAeUron layout) export attaches like a vsae folder; the mode is given."""
    sae = block_sae()
    sae.save(tmp_path / "sparsify", format="sparsify")
    with pytest.raises(InterventionError, match="give it"):
        load_block_sae(tmp_path / "sparsify", BLOCK)
    bsae = load_block_sae(tmp_path / "sparsify", BLOCK, output="output")
    x = torch.randn(7, 64) * 3
    assert torch.allclose(bsae.sae.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    bare = world_gen(["a red circle"], 2, seed=0, as_float=True)
    run = generate(world_gen, ["a red circle"], 2, 0, saes=[bsae], as_float=True)
    assert np.abs(run.images - bare).max() <= 1e-4


@pytest.mark.slow
def test_steering_example_runs_offline(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "diffusion_steering.py"), "--out", str(tmp_path)]
        + ["--steps", "4"],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "blue latent: #" in res.stdout
    judged = [line for line in res.stdout.splitlines() if ": judged " in line]
    assert [line.split(":")[0].strip() for line in judged] == [
        "bare",
        "steered",
        "left half",
        "top-left only",
        "icon",
    ]
    assert (tmp_path / "steering.png").is_file()
