"""Tiny CLIP / SigLIP: open_clip ``CLIP`` models from custom configs, with compact weights.

The model is a plain ``open_clip.model.CLIP`` built by ``open_clip.create_model``
from a ``local-dir:`` folder holding ``open_clip_config.json`` (model and
preprocess config), so ``encode_image``, ``encode_text``, the tokenizer and the
preprocess transforms are open_clip's own.

Storage: the 49408-row token embedding is mostly never trained (the world uses
~60 BPE tokens). Those rows keep their initial values, which are re-created from
a seed at load time; only the used rows are stored. Everything is fp16 on disk.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import load_file, save_file

from .tokens import WorldTokenizer

EMBED_INIT_SEED = 1234
EMBED_INIT_STD = 0.02

# mean/std of the world's renders (computed once from 4096 renders, seed 0)
WORLD_MEAN = (0.46, 0.45, 0.45)
WORLD_STD = (0.25, 0.24, 0.25)


def model_config(kind: str = "clip") -> dict:
    """The open_clip model config of the tiny CLIP or SigLIP.

    A ViT with 16x16 patches on 64x64 images (4 layers, width 128) and a 3-layer text
    tower, embedding width 128; SigLIP adds the sigmoid loss's logit scale and bias init.

    Parameters
    ----------
    kind : str
        ``clip`` or ``siglip``.

    Returns
    -------
    dict
        open_clip's ``model_cfg``.

    Raises
    ------
    ValueError
        Another kind.
    """
    if kind not in ("clip", "siglip"):
        raise ValueError(f"kind must be 'clip' or 'siglip', got {kind!r}")
    cfg = {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 64,
            "patch_size": 16,
            "layers": 4,
            "width": 128,
            "head_width": 32,
            "mlp_ratio": 2.0,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 128,
            "heads": 4,
            "layers": 3,
            "mlp_ratio": 2.0,
        },
    }
    if kind == "siglip":
        cfg["init_logit_scale"] = float(np.log(10.0))
        cfg["init_logit_bias"] = -10.0
    return cfg


def write_config_dir(directory: str | Path, kind: str) -> Path:
    """Write ``open_clip_config.json`` (model_cfg + preprocess_cfg) into ``directory``.

    Parameters
    ----------
    directory : str or Path
        Created if needed.
    kind : str
        ``clip`` or ``siglip``.

    Returns
    -------
    Path
        The config file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_cfg": model_config(kind),
        "preprocess_cfg": {
            "size": 64,
            "mean": list(WORLD_MEAN),
            "std": list(WORLD_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
        "vsae": {
            "kind": kind,
            "tokenizer": "open_clip SimpleTokenizer (bundled CLIP BPE), context_length 32",
            "embed_init_seed": EMBED_INIT_SEED,
        },
    }
    path = directory / "open_clip_config.json"
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def init_token_embedding(weight_VW: torch.Tensor) -> None:
    """Re-create the initial token embedding from a fixed seed, in place.

    Parameters
    ----------
    weight_VW : Tensor
        The token embedding [V, W] (V = 49408 BPE tokens).
    """
    gen = torch.Generator().manual_seed(EMBED_INIT_SEED)
    with torch.no_grad():
        weight_VW.copy_(torch.randn(weight_VW.shape, generator=gen) * EMBED_INIT_STD)


class _QuietOpenClip(logging.Filter):
    """Drop open_clip's 'no pretrained weights' warnings: vsae loads the weights itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not msg.startswith(("No pretrained weights", "Multiple checkpoints"))


def _create(directory: str | Path):
    quiet = _QuietOpenClip()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        return open_clip.create_model_and_transforms(
            f"local-dir:{Path(directory).resolve()}", load_weights=False
        )
    finally:
        root.removeFilter(quiet)


def build(directory: str | Path, seed: int = 0):
    """A freshly initialised tiny model from a config folder.

    The token embedding starts at ``init_token_embedding`` values (so unused rows
    can be re-created at load time).

    Parameters
    ----------
    directory : str or Path
        A folder written by ``write_config_dir``.
    seed : int
        Seed of the initialisation (sets torch's global seed).

    Returns
    -------
    (open_clip.model.CLIP, callable, callable)
        The model and open_clip's train and eval transforms.
    """
    torch.manual_seed(seed)
    model, train_tf, eval_tf = _create(directory)
    init_token_embedding(model.token_embedding.weight)
    return model, train_tf, eval_tf


def save_compact(model: torch.nn.Module, path: str | Path, used_token_ids: torch.Tensor) -> None:
    """Save fp16 weights with only the ``used_token_ids`` rows of the token embedding.

    Parameters
    ----------
    model : torch.nn.Module
        A tiny CLIP or SigLIP.
    path : str or Path
        The ``.safetensors`` file to write.
    used_token_ids : Tensor
        Long ids of the tokens the world uses (the other rows are re-created from the seed).
    """
    sd = {}
    for k, v in model.state_dict().items():
        if k == "token_embedding.weight":
            continue
        sd[k] = v.detach().to(torch.float16).contiguous()
    ids = torch.as_tensor(used_token_ids, dtype=torch.int64).unique()
    sd["vsae.token_ids"] = ids
    sd["vsae.token_rows"] = (
        model.token_embedding.weight.detach()[ids].to(torch.float16).contiguous()
    )
    save_file(sd, str(path))


def load_compact(model: torch.nn.Module, path: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Load weights written by ``save_compact`` into ``model`` (fp32), in place.

    Parameters
    ----------
    model : torch.nn.Module
        A tiny CLIP or SigLIP built from the same config.
    path : str or Path
        The ``.safetensors`` file.
    skip : tuple of str
        Keys that keep the model's current values.

    Raises
    ------
    ValueError
        When the keys do not match the model.
    """
    sd = load_file(str(path))
    for k in skip:
        sd.pop(k, None)
    ids = sd.pop("vsae.token_ids")
    rows = sd.pop("vsae.token_rows")
    weight = model.token_embedding.weight
    init_token_embedding(weight)
    with torch.no_grad():
        weight[ids] = rows.to(weight.dtype)
    own = model.state_dict()
    sd = {k: v.to(own[k].dtype) for k, v in sd.items()}
    sd["token_embedding.weight"] = weight.detach().clone()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "attn_mask" and m not in skip]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model: missing {missing}, unexpected {unexpected}"
        )


def load(directory: str | Path, strict_vocab: bool = False):
    """Load a tiny CLIP/SigLIP folder.

    Parameters
    ----------
    directory : str or Path
        Holds ``open_clip_config.json`` and ``weights.safetensors``.
    strict_vocab : bool
        The tokenizer also refuses words the world never uses.

    Returns
    -------
    (open_clip.model.CLIP, callable, WorldTokenizer)
        The model in eval mode, its eval transform and its tokenizer.

    Raises
    ------
    FileNotFoundError
        A missing file (the message says to run ``vsae world build``).
    """
    directory = Path(directory)
    cfg_path = directory / "open_clip_config.json"
    weights = directory / "weights.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"tiny-world model file missing: {p} (run `vsae world build`)")
    model, _, preprocess = _create(directory)
    load_compact(model, weights)
    model.eval()
    ctx = json.loads(cfg_path.read_text())["model_cfg"]["text_cfg"]["context_length"]
    return model, preprocess, WorldTokenizer(context_length=ctx, strict=strict_vocab)


def export_open_clip(model: torch.nn.Module, config_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a dense fp32 checkpoint folder that plain open_clip loads with
    ``open_clip.create_model_and_transforms('local-dir:' + out_dir)``.

    Parameters
    ----------
    model : torch.nn.Module
        A tiny CLIP or SigLIP.
    config_dir : str or Path
        Its config folder.
    out_dir : str or Path
        Created if needed.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((Path(config_dir) / "open_clip_config.json").read_text())
    (out_dir / "open_clip_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out_dir / "open_clip_model.safetensors"))
    return out_dir


def images_to_tensor(images_NHW3: np.ndarray) -> torch.Tensor:
    """Renders to the model's input, the same as open_clip's eval preprocess on a 64x64
    PIL image.

    Parameters
    ----------
    images_NHW3 : ndarray
        uint8 [N, 64, 64, 3].

    Returns
    -------
    Tensor
        float32 [N, 3, 64, 64], normalised by the world's mean and std.
    """
    x = torch.from_numpy(np.ascontiguousarray(images_NHW3)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_renders(
    model: torch.nn.Module, images_NHW3: np.ndarray, batch: int = 500, normalize: bool = False
) -> torch.Tensor:
    """Image embeddings of uint8 renders, a batch at a time.

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP (or any open_clip model that takes 64x64 inputs).
    images_NHW3 : ndarray
        uint8 [N, 64, 64, 3].
    batch : int
        Images per forward pass.
    normalize : bool
        L2-normalise each embedding (the zero-shot classifier's input); raw otherwise (what
        an SAE is trained on).

    Returns
    -------
    Tensor
        float32 [N, E].
    """
    assert images_NHW3.ndim == 4 and images_NHW3.shape[-1] == 3, images_NHW3.shape
    out_NE = [
        model.encode_image(images_to_tensor(images_NHW3[i : i + batch]), normalize=normalize)
        for i in range(0, len(images_NHW3), batch)
    ]
    return torch.cat(out_NE).float()


def text_token_states(model: torch.nn.Module, tokens_BT: torch.Tensor) -> torch.Tensor:
    """Per-token text states after the final LayerNorm: the conditioning that Stable
    Diffusion takes from its CLIP text encoder.

    Parameters
    ----------
    model : torch.nn.Module
        A tiny CLIP.
    tokens_BT : Tensor
        Long token ids [B, T].

    Returns
    -------
    Tensor
        [B, T, width].
    """
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens_BT).to(cast_dtype)
    x = x + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    return model.ln_final(x)
