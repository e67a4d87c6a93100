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


def tiny_unet(sdxl: bool, cross_attention_dim: int = 32, pooled_dim: int = 16):
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
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
    )
    if sdxl:
        common.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=pooled_dim + 6 * 8,
        )
    import torch

    torch.manual_seed(0)
    return UNet2DConditionModel(**common)


def tiny_clip_tokenizer(max_length: int = 12):
    """A CLIPTokenizer over single letters (a-z, word-final or not), merges for "red"; offline."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    merges = [("r", "e"), ("re", "d</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def tiny_sd_pipeline(root: Path, sdxl: bool) -> Path:
    """Save a random-weight SD 1.x-style or SDXL-style pipeline (real components) under root.

    SD: CLIPTextModel (width 32) + U-Net with cross-attention width 32. SDXL: CLIPTextModel and
    CLIPTextModelWithProjection (width 32 each, projection 16) -> cross-attention width 64,
    pooled 16 and text_time conditioning. Both: 2-level AutoencoderKL (VAE scale factor 2) and
    a DDIMScheduler.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tok = tiny_clip_tokenizer()
    text_cfg = CLIPTextConfig(
        vocab_size=len(tok.get_vocab()),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=tok.model_max_length,
        projection_dim=16,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(text_cfg)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        norm_num_groups=8,
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=16,
    )
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    if sdxl:
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=CLIPTextModelWithProjection(text_cfg),
            tokenizer=tok,
            tokenizer_2=tok,
            unet=tiny_unet(True, cross_attention_dim=64, pooled_dim=16),
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tok,
            unet=tiny_unet(False, cross_attention_dim=32),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.save_pretrained(root)
    return root
