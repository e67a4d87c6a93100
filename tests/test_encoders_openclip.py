"""open_clip sources on real architectures with random weights (ViT-B-32, a SigLIP tower)."""

import pytest
import torch
from pipeline_helpers import make_image

from vsae.data.images import InputItem
from vsae.encoders import SourceError, from_spec

pytestmark = pytest.mark.slow


def items(n):
    return [InputItem(i, f"k{i}", make_image(i), f"a photo of thing {i}") for i in range(n)]


def test_vit_b_32_image_text_blocks_and_local_weights(tmp_path):
    torch.manual_seed(0)
    src = from_spec(
        "open_clip:ViT-B-32",
        pretrained="none",
        hookpoints=["image", "text", "blocks.3", "blocks.-1"],
        tokens="all",
    )
    assert src.d_out == {"image": 512, "text": 512, "blocks.3": 768, "blocks.-1": 768}
    batch = src.prepare(items(2))
    out = src(batch)
    assert out["image"].shape == (2, 1, 512) and out["text"].shape == (2, 1, 512)
    assert out["blocks.3"].shape == (2, 50, 768)  # CLS + 7x7 patches
    model = src.model
    with torch.no_grad():
        ref_img = model.encode_image(batch["pixels"])
        ref_txt = model.encode_text(src.tokenizer(["a photo of thing 0", "a photo of thing 1"]))
        # the last block's CLS token, through ln_post and the projection, is the image embedding
        cls = out["blocks.-1"][:, 0]
        via_blocks = model.visual.ln_post(cls) @ model.visual.proj
    torch.testing.assert_close(out["image"][:, 0], ref_img)
    torch.testing.assert_close(out["text"][:, 0], ref_txt)
    torch.testing.assert_close(via_blocks, ref_img, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out["blocks.3"], out["blocks.-1"])

    # the real loading path: a local checkpoint (safetensors) loaded back gives equal outputs
    from safetensors.torch import save_file

    ckpt = tmp_path / "vit_b_32.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    src2 = from_spec("open_clip:ViT-B-32", pretrained=str(ckpt), hookpoints=["image"])
    torch.testing.assert_close(src2(src2.prepare(items(2)))["image"], out["image"])
    src.tokens = "cls"
    torch.testing.assert_close(src(batch)["blocks.3"], out["blocks.3"][:, :1])


def test_siglip_image_tower():
    src = from_spec("open_clip:ViT-B-16-SigLIP", hookpoints=["image", "blocks.2"], tokens="patches")
    assert src.d_out == {"image": 768, "blocks.2": 768}
    batch = src.prepare(items(1))
    out = src(batch)
    assert out["image"].shape == (1, 1, 768)
    assert out["blocks.2"].shape == (1, 196, 768)  # no class token: 14x14 patches
    with torch.no_grad():
        torch.testing.assert_close(out["image"][:, 0], src.model.encode_image(batch["pixels"]))
    with pytest.raises(SourceError, match="no class token"):
        src.tokens = "cls"
        src(batch)


def test_bad_specs_name_the_value():
    with pytest.raises(SourceError, match="unknown family 'clip'"):
        from_spec("clip:ViT-B-32")
    with pytest.raises(SourceError, match="no architecture 'ViT-X-99'"):
        from_spec("open_clip:ViT-X-99")
    with pytest.raises(SourceError, match=r"blocks.12.*12 blocks"):
        from_spec("open_clip:ViT-B-32", hookpoints=["blocks.12"])
    with pytest.raises(SourceError, match="expected one of"):
        from_spec("world:clap")
