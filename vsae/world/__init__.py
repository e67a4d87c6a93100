"""The tiny world: rendered images with ground truth, a tiny CLIP and SigLIP, a tiny
text-to-image diffusion model and an attribute judge, shipped as safetensors.

Loaders return ready-to-use objects; nothing trains at import time::

    from vsae import world
    model, preprocess, tokenizer = world.load_clip()
    pipe = world.load_diffusion()
    images = pipe(["a red circle"], steps=20, seed=0)
    world.load_judge().predict(images)
"""

from __future__ import annotations

import json
from pathlib import Path

from .captions import full_caption, random_captions, zero_shot_prompts
from .render import downsample, render, render_scenes
from .scenes import Correlation, labels_of, sample_scene, sample_scenes
from .tokens import PromptError, WorldTokenizer
from .vocab import ATTRIBUTES, BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

WEIGHTS_DIR = Path(__file__).parent / "weights"


def _dir(weights_dir) -> Path:
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def load_clip(weights_dir=None, strict_vocab: bool = False):
    """The tiny CLIP (softmax contrastive loss): ``(model, preprocess, tokenizer)``, eval mode.

    ``model`` is an ``open_clip.model.CLIP``; ``preprocess`` is open_clip's eval
    transform for 64x64 PIL images; ``tokenizer`` is a ``WorldTokenizer`` (open_clip's
    bundled CLIP BPE, context length 32) that raises ``PromptError`` on prompts too
    long for the context (and, with ``strict_vocab``, on words the world never uses).
    """
    from . import clip

    return clip.load(_dir(weights_dir) / "clip", strict_vocab=strict_vocab)


def load_siglip(weights_dir=None, strict_vocab: bool = False):
    """The tiny SigLIP (sigmoid loss), same interface as ``load_clip``. It uses
    open_clip's bundled CLIP tokenizer: SigLIP's own tokenizers need a download."""
    from . import clip

    return clip.load(_dir(weights_dir) / "siglip", strict_vocab=strict_vocab)


def load_diffusion(weights_dir=None, strict_vocab: bool = False):
    """The tiny text-to-image pipeline: ``pipe(prompts, steps=20, guidance=..., seed=...)``."""
    from . import diffusion

    d = _dir(weights_dir)
    model, _, tok = diffusion.load_text_encoder(d / "diffusion", strict_vocab=strict_vocab)
    pipe = diffusion.load(d / "diffusion", model, tok)
    pipe.default_guidance = default_guidance(d)
    return pipe


def load_judge(weights_dir=None):
    """The attribute judge: ``.predict(images) -> {attribute: [value, ...]}``,
    ``.score(images, requests)``, ``.score_prompts(images, prompts)``."""
    from . import judge

    return judge.load(_dir(weights_dir) / "judge")


def default_guidance(weights_dir=None) -> float:
    """The guidance scale recorded for the shipped diffusion model (3.0 if none)."""
    path = _dir(weights_dir) / "diffusion" / "pipeline_config.json"
    if path.is_file():
        return float(json.loads(path.read_text())["guidance"])
    return 3.0


__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "COLOURS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "WEIGHTS_DIR",
    "Correlation",
    "PromptError",
    "WorldTokenizer",
    "default_guidance",
    "downsample",
    "full_caption",
    "labels_of",
    "load_clip",
    "load_diffusion",
    "load_judge",
    "load_siglip",
    "random_captions",
    "render",
    "render_scenes",
    "sample_scene",
    "sample_scenes",
    "zero_shot_prompts",
]
