"""Small fixtures shared by the pipeline tests (tiny images, tiny U-Nets, synthetic shards)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(seed: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def image_folder(root: Path, n: int, corrupt: tuple[str, ...] = ()) -> Path:
    """n PNGs named 000.png..; each name in ``corrupt`` is written as garbage bytes."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make_image(i).save(root / f"{i:03d}.png")
        (root / f"{i:03d}.txt").write_text(f"caption {i}")
    for name in corrupt:
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def image_tar(path: Path, n: int, corrupt_keys: tuple[int, ...] = (), fmt: str = "png") -> Path:
    """A WebDataset tar of n images with json labels; keys in corrupt_keys hold garbage."""
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            buf = io.BytesIO()
            make_image(100 + i).save(buf, format="PNG" if fmt == "png" else "JPEG")
            data = b"garbage" if i in corrupt_keys else buf.getvalue()
            for ext, payload in (
                (fmt, data),
                ("json", f'{{"caption": "img {i}", "label": {i % 3}}}'.encode()),
            ):
                info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def tiny_unet(sdxl: bool):
    """A small UNet2DConditionModel: SDXL-style text_time conditioning or SD-style."""
    from diffusers import UNet2DConditionModel

    common = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    if sdxl:
        common.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=16 + 6 * 8,
        )
    import torch

    torch.manual_seed(0)
    return UNet2DConditionModel(**common)
