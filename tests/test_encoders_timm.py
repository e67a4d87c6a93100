"""timm ViT source on vit_tiny with random weights; local weight files load without pickle."""

import pytest
import torch
from pipeline_helpers import make_image

from vsae.data.images import InputItem
from vsae.encoders import SourceError, from_spec

pytestmark = pytest.mark.slow


def test_vit_tiny_blocks_pooled_and_weights(tmp_path):
    torch.manual_seed(0)
    src = from_spec(
        "timm:vit_tiny_patch16_224", hookpoints=["blocks.1", "blocks.11", "pooled"], tokens="all"
    )
    assert src.d_out == {"blocks.1": 192, "blocks.11": 192, "pooled": 192}
    batch = src.prepare([InputItem(i, f"k{i}", make_image(i)) for i in range(2)])
    out = src(batch)
    assert out["blocks.1"].shape == (2, 197, 192)
    with torch.no_grad():
        # pooled = final norm of the last block's CLS token (global_pool='token')
        torch.testing.assert_close(out["pooled"][:, 0], src.model.norm(out["blocks.11"])[:, 0])
    src.tokens = "cls"
    assert src(batch)["blocks.1"].shape == (2, 1, 192)
    src.tokens = "patches"
    torch.testing.assert_close(src(batch)["blocks.1"], out["blocks.1"][:, 1:])

    from safetensors.torch import save_file

    st = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(st))
    pth = tmp_path / "vit_tiny.pth"
    torch.save(src.model.state_dict(), pth)
    for path in (st, pth):
        loaded = from_spec("timm:vit_tiny_patch16_224", pretrained=str(path), hookpoints=["pooled"])
        torch.testing.assert_close(loaded(batch)["pooled"], out["pooled"])
    with pytest.raises(SourceError, match="does not exist"):
        from_spec("timm:vit_tiny_patch16_224", pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(SourceError, match="tokens='bogus'"):
        from_spec("timm:vit_tiny_patch16_224", tokens="bogus")
