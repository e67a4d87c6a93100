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


def _dir(weights_dir: str | Path | None) -> Path:
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def load_clip(weights_dir: str | Path | None = None, strict_vocab: bool = False):
    """The tiny CLIP (softmax contrastive loss, Radford et al. 2021), in eval mode.

    Parameters
    ----------
    weights_dir : str or Path, optional
        A world weights folder holding ``clip/``; default the shipped ``WEIGHTS_DIR``.
    strict_vocab : bool
        The tokenizer also refuses words the world never uses.

    Returns
    -------
    (open_clip.model.CLIP, callable, WorldTokenizer)
        The model; open_clip's eval transform for 64x64 PIL images; a ``WorldTokenizer``
        (open_clip's bundled CLIP BPE, context length 32) that raises ``PromptError`` on
        prompts too long for the context.

    Raises
    ------
    FileNotFoundError
        When the folder has no CLIP weights.
    """
    from . import clip

    return clip.load(_dir(weights_dir) / "clip", strict_vocab=strict_vocab)


def load_siglip(weights_dir: str | Path | None = None, strict_vocab: bool = False):
    """The tiny SigLIP (sigmoid loss, Zhai et al. 2023), same interface as ``load_clip``.

    It uses open_clip's bundled CLIP tokenizer: SigLIP's own tokenizers need a download.

    Parameters
    ----------
    weights_dir : str or Path, optional
        A world weights folder holding ``siglip/``; default the shipped one.
    strict_vocab : bool
        The tokenizer also refuses words the world never uses.

    Returns
    -------
    (open_clip.model.CLIP, callable, WorldTokenizer)
        As ``load_clip``.

    Raises
    ------
    FileNotFoundError
        When the folder has no SigLIP weights.
    """
    from . import clip

    return clip.load(_dir(weights_dir) / "siglip", strict_vocab=strict_vocab)


def load_diffusion(weights_dir: str | Path | None = None, strict_vocab: bool = False):
    """The tiny text-to-image pipeline: ``pipe(prompts, steps=20, guidance=..., seed=...)``.

    A diffusers ``UNet2DConditionModel`` with ``Transformer2DModel`` blocks (the blocks
    vsae's diffusion SAEs hook), conditioned on the tiny CLIP's text tower.

    Parameters
    ----------
    weights_dir : str or Path, optional
        A world weights folder holding ``diffusion/``; default the shipped one.
    strict_vocab : bool
        Its tokenizer also refuses words the world never uses.

    Returns
    -------
    vsae.world.diffusion.WorldDiffusionPipeline
        With ``unet``, ``scheduler``, ``encode_prompt`` and ``default_guidance`` (the
        guidance scale recorded with the weights).

    Raises
    ------
    FileNotFoundError
        When the folder has no diffusion weights.
    """
    from . import diffusion

    d = _dir(weights_dir)
    model, _, tok = diffusion.load_text_encoder(d / "diffusion", strict_vocab=strict_vocab)
    pipe = diffusion.load(d / "diffusion", model, tok)
    pipe.default_guidance = default_guidance(d)
    return pipe


def load_judge(weights_dir: str | Path | None = None):
    """The attribute judge, a classifier of the world's attributes from images.

    Parameters
    ----------
    weights_dir : str or Path, optional
        A world weights folder holding ``judge/``; default the shipped one.

    Returns
    -------
    vsae.world.judge.Judge
        ``.predict(images) -> {attribute: [value, ...]}``, ``.score(images, requests)``,
        ``.score_prompts(images, prompts)``.

    Raises
    ------
    FileNotFoundError
        When the folder has no judge weights.
    """
    from . import judge

    return judge.load(_dir(weights_dir) / "judge")


def default_guidance(weights_dir: str | Path | None = None) -> float:
    """The classifier-free guidance scale recorded for a diffusion model.

    Parameters
    ----------
    weights_dir : str or Path, optional
        A world weights folder; default the shipped one.

    Returns
    -------
    float
        ``diffusion/pipeline_config.json``'s ``guidance``, or 3.0 when there is none.
    """
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
