"""``world:clip``, ``world:siglip``, ``world:diffusion``: the tiny world's models as sources.

``vsae.world`` is imported lazily: until the tiny world is installed these raise a clear error.
``pretrained`` is the world's weights directory (default: the weights shipped with it).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from .base import ActivationSource, SourceError

WORLD_MODELS = ("clip", "siglip", "diffusion")


def import_world():
    """Import ``vsae.world`` or raise SourceError saying it is not there yet."""
    try:
        return importlib.import_module("vsae.world")
    except ImportError as exn:
        raise SourceError(
            f"the tiny world (vsae.world) is not installed in this checkout yet ({exn})"
        ) from exn


def world_source(
    name: str, pretrained=None, hookpoints: Sequence[str] | None = None, **opts
) -> ActivationSource:
    """Build ``world:<name>`` from the world's loaders (``load_clip`` / ``load_siglip`` /
    ``load_diffusion``)."""
    if name not in WORLD_MODELS:
        raise SourceError(f"world:{name}: expected one of {['world:' + m for m in WORLD_MODELS]}")
    world = import_world()
    weights = None if pretrained in (None, "", "none", "default") else pretrained
    if name in ("clip", "siglip"):
        from .openclip_source import OpenClipSource

        loader = getattr(world, f"load_{name}", None)
        if loader is None:
            raise SourceError(f"world:{name}: vsae.world has no load_{name}()")
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

    loader = getattr(world, "load_diffusion", None)
    if loader is None:
        raise SourceError("world:diffusion: vsae.world has no load_diffusion()")
    pipe = loader(weights)
    opts.setdefault("guidance", float(getattr(pipe, "default_guidance", 1.0)))
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
