"""diffusers sources on small UNet2DConditionModels (SDXL-style text_time and SD-style)."""

import pytest
import torch
from pipeline_helpers import tiny_unet

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
    with pytest.raises(SourceError, match="cannot load"):
        from_spec(f"diffusers:{tmp_path / 'missing'}", prompt_encoder="hash")
