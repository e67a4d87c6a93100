"""Activation sources named by spec strings.

==========================  =====================================================
``open_clip:<arch>``        CLIP / SigLIP: ``image``, ``text``, ``blocks.<i>``
``timm:<model>``            ViT: ``blocks.<i>``, ``pooled``
``diffusers:<repo|path>``   U-Net ``Transformer2DModel`` blocks by module name
``world:clip|siglip|diffusion``  the tiny world's models (``vsae.world``)
==========================  =====================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .base import ActivationSource, SourceError

FAMILIES = ("open_clip", "timm", "diffusers", "world")


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a source spec into its family and model name.

    Parameters
    ----------
    spec : str
        ``<family>:<name>`` with family one of ``FAMILIES``.

    Returns
    -------
    (str, str)
        The family and the name (which may contain further colons).

    Raises
    ------
    SourceError
        Naming the spec and the valid families.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise SourceError(
            f"source spec {spec!r}: expected '<family>:<name>' with family in {FAMILIES}"
        )
    family, name = spec.split(":", 1)
    if family not in FAMILIES:
        raise SourceError(
            f"source spec {spec!r}: unknown family {family!r}; expected one of {FAMILIES}"
        )
    if not name:
        raise SourceError(f"source spec {spec!r}: empty model name")
    return family, name


def from_spec(
    spec: str,
    pretrained: str | os.PathLike | None = None,
    hookpoints: Sequence[str] | None = None,
    **opts,
) -> ActivationSource:
    """Build an activation source from a spec string.

    Parameters
    ----------
    spec : str
        ``open_clip:<arch>``, ``timm:<model>``, ``diffusers:<repo id or path>`` or
        ``world:<clip|siglip|diffusion>``.
    pretrained : str, optional
        Weights tag, local path, or None / "none" for random weights.
    hookpoints : list of str, optional
        Hookpoints to return (family default when None).
    **opts
        Family options: ``tokens`` (open_clip, timm); ``output``, ``num_steps``, ``timesteps``,
        ``guidance``, ``latent_size``, ``prompt_encoder``, ``seed``, ``dtype`` (diffusers);
        ``device``.

    Returns
    -------
    ActivationSource

    Raises
    ------
    SourceError
        A bad spec, hookpoint or option (the message names it and what is valid), or
        pretrained weights that are neither cached nor downloadable.
    """
    family, name = parse_spec(spec)
    hps = list(hookpoints) if hookpoints else None
    if family == "open_clip":
        from .openclip_source import OpenClipSource

        return OpenClipSource(name, pretrained=pretrained, hookpoints=hps, **opts)
    if family == "timm":
        from .timm_source import TimmSource

        return TimmSource(name, pretrained=pretrained, hookpoints=hps, **opts)
    if family == "diffusers":
        from .diffusers_source import DiffusersSource

        return DiffusersSource(name, pretrained=pretrained, hookpoints=hps, **opts)
    from .world_source import world_source

    return world_source(name, pretrained=pretrained, hookpoints=hps, **opts)


__all__ = ["ActivationSource", "SourceError", "from_spec", "parse_spec"]
