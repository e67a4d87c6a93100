"""``world:clip``, ``world:siglip``, ``world:diffusion``: the tiny world's models as sources.

The models and their weights ship with vsae (``vsae/world/weights``), so these work offline.
``pretrained`` is a world weights directory (default: the shipped one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vsae import world

from .base import ActivationSource, SourceError

WORLD_MODELS = ("clip", "siglip", "diffusion")


def world_source(
    name: str,
    pretrained: str | Path | None = None,
    hookpoints: Sequence[str] | None = None,
    **opts,
) -> ActivationSource:
    """Build ``world:<name>`` from the world's loaders.

    ``clip`` and ``siglip`` become an ``OpenClipSource`` around ``world.load_clip`` /
    ``world.load_siglip`` (hookpoints ``image``, ``text``, ``blocks.<i>``); ``diffusion``
    becomes a ``DiffusersSource`` around ``world.load_diffusion``'s U-Net, scheduler and
    prompt encoder, with the shipped guidance scale and 20 steps unless ``opts`` say otherwise.

    Parameters
    ----------
    name : str
        ``clip``, ``siglip`` or ``diffusion``.
    pretrained : str or Path, optional
        A world weights directory; None, "", "none" or "default" mean the shipped weights.
    hookpoints : sequence of str, optional
        Hookpoints to return (the family's default when None).
    **opts
        Options of ``OpenClipSource`` (``tokens``, ``device``) or ``DiffusersSource``
        (``num_steps``, ``timesteps``, ``guidance``, ``output``, ...).

    Returns
    -------
    ActivationSource
        With ``spec`` ``world:<name>``.

    Raises
    ------
    SourceError
        When ``name`` is not a world model, or a hookpoint or option is invalid.
    """
    if name not in WORLD_MODELS:
        raise SourceError(f"world:{name}: expected one of {['world:' + m for m in WORLD_MODELS]}")
    weights = None if pretrained in (None, "", "none", "default") else pretrained
    if name in ("clip", "siglip"):
        from .openclip_source import OpenClipSource

        loader = world.load_clip if name == "clip" else world.load_siglip
        model, preprocess, tokenizer = loader(weights)
        return OpenClipSource(
            f"world-{name}",
            pretrained=weights,
            hookpoints=hookpoints,
            model=model,
            preprocess=preprocess,
            tokenizer=tokenizer,
            spec=f"world:{name}",
            **opts,
        )
    from .diffusers_source import DiffusersSource

    pipe = world.load_diffusion(weights)
    opts.setdefault("guidance", float(pipe.default_guidance))
    opts.setdefault("num_steps", 20)

    def encode(prompts):
        return pipe.encode_prompt(prompts), None

    src = DiffusersSource(
        "world-diffusion",
        pretrained=weights,
        hookpoints=hookpoints,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        prompt_encoder=encode,
        **opts,
    )
    src.spec = "world:diffusion"
    return src
