"""diffusers sources: small U-Nets (SDXL-style text_time, SD-style) and whole tiny pipelines.

The pipelines are real diffusers/transformers components with random weights, saved to tmp_path
and loaded back through ``diffusers:<path>``: no downloads, no mocks.
"""

import json

import pytest
import torch
from pipeline_helpers import tiny_sd_pipeline, tiny_unet

from vsae.data.images import InputItem
from vsae.encoders import SourceError, from_spec

pytestmark = pytest.mark.slow

BLOCKS = ["down_blocks.1.attentions.0", "mid_block.attentions.0"]


def prompts(*texts):
    return [InputItem(i, f"p{i}", None, t) for i, t in enumerate(texts)]


@pytest.mark.parametrize("sdxl", [True, False], ids=["sdxl", "sd"])
def test_unet_blocks_timesteps_cfg(tmp_path, sdxl):
    tiny_unet(sdxl).save_pretrained(tmp_path / "unet")  # loaded back through from_pretrained
    spec = f"diffusers:{tmp_path / 'unet'}"
    opts = dict(hookpoints=BLOCKS, prompt_encoder="hash", num_steps=4)
    cfg = from_spec(spec, timesteps=[0, 2], guidance=5.0, **opts)
    assert cfg.sdxl is sdxl
    assert cfg.d_out == {BLOCKS[0]: 64, BLOCKS[1]: 64}
    assert cfg.samples_per_input == 2
    assert [cfg.sample_info(j)["step"] for j in range(2)] == [0, 2]
    assert cfg.sample_info(1)["timestep"] == cfg.timestep_values[2]
    items = prompts("a red cube", "a blue ball")
    out = cfg(cfg.prepare(items))
    # input-major rows: (prompt 0, step 0), (prompt 0, step 2), (prompt 1, step 0), ...
    assert out[BLOCKS[0]].shape == (4, 16, 64)  # 8x8 latent -> 4x4 after one downsample
    assert out[BLOCKS[1]].shape == (4, 16, 64)

    # the conditional half under CFG equals a run without CFG at the first step (same latents)
    plain = from_spec(spec, timesteps=[0], guidance=1.0, **opts)
    first = plain(plain.prepare(items))
    torch.testing.assert_close(out[BLOCKS[1]][0::2], first[BLOCKS[1]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out[BLOCKS[1]][0], out[BLOCKS[1]][1])  # step 2 differs

    # block update = output - input: output mode minus update mode equals the block input
    outputs = from_spec(spec, timesteps=[0], output="output", **opts)
    seen = {}

    def grab(_m, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    h = plain.blocks[BLOCKS[1]].register_forward_pre_hook(grab, with_kwargs=True)
    plain(plain.prepare(items))
    h.remove()
    x_in = seen["x"].flatten(2).transpose(1, 2)
    got = outputs(outputs.prepare(items))[BLOCKS[1]] - first[BLOCKS[1]]
    torch.testing.assert_close(got, x_in, rtol=1e-4, atol=1e-4)


def test_bad_diffusers_options(tmp_path):
    tiny_unet(False).save_pretrained(tmp_path / "unet")
    spec = f"diffusers:{tmp_path / 'unet'}"
    with pytest.raises(SourceError, match="not a Transformer2DModel block; valid:"):
        from_spec(spec, hookpoints=["mid_block"], prompt_encoder="hash")
    with pytest.raises(SourceError, match="no model_index.json"):
        from_spec(spec)
    with pytest.raises(SourceError, match=r"0\.\.3"):
        from_spec(spec, prompt_encoder="hash", num_steps=4, timesteps=[4])
    missing = tmp_path / "missing"
    with pytest.raises(SourceError, match=f"no such directory '{missing}'"):
        from_spec(f"diffusers:{missing}", prompt_encoder="hash")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="neither model_index.json .* nor config.json"):
        from_spec(f"diffusers:{tmp_path / 'empty'}", prompt_encoder="hash")
    with pytest.raises(SourceError, match="prompt_encoder='clip'"):
        from_spec(spec, prompt_encoder="clip")


def _reference_run(root, prompts_, latents_BCHW, guidance, num_steps):
    """Run the saved pipeline itself (its __call__, VAE included) with hooks on BLOCKS.

    Returns {block: [per denoising step: (block output - block input) over the whole U-Net
    batch, [U*B, H*W, C] with U = 2 under guidance]}.
    """
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(root)
    pipe.set_progress_bar_config(disable=True)
    seen = {hp: [] for hp in BLOCKS}
    modules = dict(pipe.unet.named_modules())
    handles = []
    for hp in BLOCKS:

        def hook(_m, args, kwargs, out, hp=hp):
            x_in = args[0] if args else kwargs["hidden_states"]
            x_out = out.sample if hasattr(out, "sample") else out[0]  # blocks may return tuples
            seen[hp].append((x_out - x_in).flatten(2).transpose(1, 2))

        handles.append(modules[hp].register_forward_hook(hook, with_kwargs=True))
    px = latents_BCHW.shape[-1] * pipe.vae_scale_factor
    with torch.no_grad():
        pipe(
            prompt=list(prompts_),
            num_inference_steps=num_steps,
            guidance_scale=guidance,
            latents=latents_BCHW.clone(),
            height=px,
            width=px,
            output_type="latent",
        )
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("sdxl", [True, False], ids=["sdxl", "sd"])
def test_pipeline_conditions_the_unet_as_the_pipeline_does(tmp_path, sdxl):
    root = tiny_sd_pipeline(tmp_path / "pipe", sdxl)
    steps, guidance = [0, 2], 5.0
    src = from_spec(
        f"diffusers:{root}", hookpoints=BLOCKS, num_steps=4, timesteps=steps, guidance=guidance
    )
    assert src.pipe is not None and src.sdxl is sdxl
    assert src.pipe.vae is None  # the VAE plays no part: not loaded
    assert type(src.pipe.text_encoder).__name__ == "CLIPTextModel"
    if sdxl:
        assert type(src.pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
        assert src.pooled_dim == 16
    assert src.vae_scale_factor == 2  # from the saved VAE config (SDXL time ids use it)
    assert src.d_out == {BLOCKS[0]: 64, BLOCKS[1]: 64}
    texts = ["a red cube", "a blue ball"]
    batch = src.prepare(prompts(*texts))
    cond, uncond = batch["cond"], batch["uncond"]
    assert cond["emb"].shape == (2, 12, 64 if sdxl else 32)
    assert uncond["emb"].shape == cond["emb"].shape
    if sdxl:  # force_zeros_for_empty_prompt: the SDXL negative embeddings are zeros
        assert cond["pooled"].shape == (2, 16)
        assert (
            torch.count_nonzero(uncond["emb"]) == 0 and torch.count_nonzero(uncond["pooled"]) == 0
        )
    else:
        assert cond["pooled"] is None and torch.count_nonzero(uncond["emb"]) > 0
    out = src(batch)
    for hp in BLOCKS:
        assert out[hp].shape == (2 * len(steps), 16, 64)  # rows: (prompt, step), input-major

    # the pipeline's own denoising loop, from the same initial latents
    ref = _reference_run(root, texts, batch["latents"], guidance, num_steps=4)
    for hp in BLOCKS:
        assert len(ref[hp]) == 4  # one U-Net call per step
        got_BSLC = out[hp].view(2, len(steps), 16, 64)
        for j, step in enumerate(steps):
            uncond_half, cond_half = ref[hp][step].chunk(2)
            torch.testing.assert_close(got_BSLC[:, j], cond_half, rtol=1e-4, atol=1e-5)
            assert not torch.allclose(got_BSLC[:, j], uncond_half, atol=1e-3)


@pytest.mark.parametrize("sdxl", [True, False], ids=["sdxl", "sd"])
def test_pipeline_activations_depend_on_the_prompt(tmp_path, sdxl):
    root = tiny_sd_pipeline(tmp_path / "pipe", sdxl)
    src = from_spec(
        f"diffusers:{root}", hookpoints=BLOCKS[1:], num_steps=2, timesteps=[1], output="output"
    )
    assert src.guidance == 1.0  # no guidance: a single U-Net batch
    one = InputItem(0, "p0", None, "a red cube")
    same = src(src.prepare([one]))[BLOCKS[1]]
    again = src(src.prepare([InputItem(0, "p0", None, "a red cube")]))[BLOCKS[1]]
    other = src(src.prepare([InputItem(0, "p0", None, "a blue ball")]))[BLOCKS[1]]
    assert same.shape == (1, 16, 64)
    torch.testing.assert_close(same, again)  # deterministic: same prompt, same input index
    assert (same - other).abs().max() > 1e-3  # same latents, different prompt

    # the unconditioned U-Net on the pipeline's own encode_prompt gives the same first step
    first = from_spec(
        f"diffusers:{root}", hookpoints=BLOCKS[1:], num_steps=2, timesteps=[0], output="output"
    )
    batch = first.prepare([one])
    emb = src.pipe.encode_prompt(
        prompt=["a red cube"],
        device="cpu",
        num_images_per_prompt=1,
        do_classifier_free_guidance=False,
    )
    torch.testing.assert_close(batch["cond"]["emb"], emb[0])
    captured = {}
    block = dict(src.unet.named_modules())[BLOCKS[1]]
    h = block.register_forward_hook(lambda _m, _i, o: captured.update(x=o[0]))
    added = None
    if sdxl:
        time_ids = torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]])
        added = {"text_embeds": emb[2], "time_ids": time_ids}
    sched = src.pipe.scheduler
    sched.set_timesteps(2)
    t0 = sched.timesteps[0]
    with torch.no_grad():
        src.unet(
            sched.scale_model_input(batch["latents"] * sched.init_noise_sigma, t0),
            t0,
            encoder_hidden_states=emb[0],
            added_cond_kwargs=added,
        )
    h.remove()
    want = captured["x"].flatten(2).transpose(1, 2)
    torch.testing.assert_close(first(batch)[BLOCKS[1]], want, rtol=1e-4, atol=1e-5)


def test_pipeline_errors_and_hash_mode(tmp_path):
    root = tiny_sd_pipeline(tmp_path / "pipe", sdxl=True)
    with pytest.raises(SourceError, match="'down_blocks.0.attentions.0' is not a Transformer2DM"):
        from_spec(f"diffusers:{root}", hookpoints=["down_blocks.0.attentions.0"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline"}'
    )
    with pytest.raises(SourceError, match="broken"):
        from_spec(f"diffusers:{tmp_path / 'broken'}", num_steps=2)
    # prompt_encoder='hash' on a pipeline directory: the U-Net alone, no text encoders
    src = from_spec(f"diffusers:{root}", prompt_encoder="hash", num_steps=2)
    assert src.pipe is None and src.sdxl and src.vae_scale_factor == 2
    assert src.hookpoints == ["mid_block.attentions.0"]
    out = src(src.prepare(prompts("a red cube")))
    assert out["mid_block.attentions.0"].shape == (2, 16, 64)


def test_stochastic_scheduler_is_seeded_per_input(tmp_path):
    """SDXL-Turbo's kind of scheduler (Euler ancestral) adds noise at every step."""
    root = tiny_sd_pipeline(tmp_path / "pipe", sdxl=True)
    index = json.loads((root / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "EulerAncestralDiscreteScheduler"]
    (root / "model_index.json").write_text(json.dumps(index))
    cfg_file = root / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["_class_name"] = "EulerAncestralDiscreteScheduler"
    cfg_file.write_text(json.dumps(cfg))
    src = from_spec(f"diffusers:{root}", num_steps=3, timesteps=[2])
    assert type(src.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert type(src.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    hp = "mid_block.attentions.0"
    items = prompts("a red cube", "a blue ball")
    both = src(src.prepare(items))[hp]
    torch.testing.assert_close(src(src.prepare(items))[hp], both)  # same noise on a rerun
    alone = src(src.prepare(items[1:]))[hp]  # the step noise of an input does not depend on
    torch.testing.assert_close(alone, both[1:], rtol=1e-4, atol=1e-5)  # its batch
    other = from_spec(f"diffusers:{root}", num_steps=3, timesteps=[2], seed=1)
    assert (other(other.prepare(items))[hp] - both).abs().max() > 1e-3


def test_extract_cli_from_a_pipeline_directory(tmp_path, capsys):
    """``vsae extract --source diffusers:<pipeline dir>``: text encoders from the pipeline."""
    from vsae.commands.extract import main as extract_main
    from vsae.data.shards import load_all, read_meta

    root = tiny_sd_pipeline(tmp_path / "pipe", sdxl=True)
    (tmp_path / "prompts.txt").write_text("a red cube\na blue ball\na green cone\n")
    args = ["--source", f"diffusers:{root}", "--data", str(tmp_path / "prompts.txt")]
    args += ["--hookpoints", ",".join(BLOCKS), "--num-steps", "3", "--timesteps", "1,2"]
    args += ["--guidance", "4", "--out", str(tmp_path / "acts"), "--batch-size", "2", "--quiet"]
    assert extract_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_samples"] == 6  # 3 prompts x 2 steps
    meta = read_meta(tmp_path / "acts")
    assert meta["source"] == f"diffusers:{root}"
    assert meta["options"]["timesteps"] == [1, 2] and meta["options"]["guidance"] == 4.0
    stored = load_all(tmp_path / "acts", BLOCKS[1]).astype("float32")  # [6 * 16, 64]
    src = from_spec(
        f"diffusers:{root}", hookpoints=BLOCKS, num_steps=3, timesteps=[1, 2], guidance=4.0
    )
    direct = src(src.prepare(prompts("a red cube", "a blue ball", "a green cone")))[BLOCKS[1]]
    assert stored.shape == (6 * 16, 64)
    torch.testing.assert_close(  # float16 storage
        torch.from_numpy(stored), direct.reshape(-1, 64), rtol=2e-3, atol=2e-3
    )
