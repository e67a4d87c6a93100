"""Load, once at start, the library objects the tabs share: read-only, used by every session."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vsae.analysis import Explorer, ImageCoder, Searcher, load_or_build_gallery
from vsae.analysis.bias_set import BiasSet, BiasSetError
from vsae.interventions import (
    BlockSAE,
    Generator,
    LatentStats,
    Recipe,
    latent_names,
    load_block_sae,
    load_generator,
    load_or_compute_stats,
    load_recipe,
)
from vsae.interventions.spec import parse_sae_ref

from .background import Background
from .sources import DemoSources


def load_explorer(sources: DemoSources, cache: Path | None) -> Explorer | None:
    """The Explore tab's :class:`~vsae.analysis.Explorer`; None without an image SAE.

    Parameters
    ----------
    sources
        The folders and model specs the demo was started with.
    cache
        Folder for the gallery's codes (reused at the next start while the SAE, model and
        images are the same); None: computed at every start.

    Returns
    -------
    Explorer or None

    Raises
    ------
    ValueError
        An image SAE without a gallery, or an SAE and model that do not fit.
    """
    if sources.clip_sae is None:
        return None
    if sources.images is None:
        raise ValueError("the Explore tab needs a gallery of images (--images DIR)")
    coder = ImageCoder.from_folder(
        sources.clip_sae, spec=sources.model, pretrained=sources.pretrained
    )
    file = None
    if cache is not None:
        key = f"{Path(sources.clip_sae).resolve()}|{sources.images}|{sources.n_images}"
        file = cache / "galleries" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    t0 = time.perf_counter()
    gallery = load_or_build_gallery(coder, sources.images, sources.n_images, file)
    print(
        f"vsae demo: Explore gallery of {len(gallery)} images ready in "
        f"{time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return Explorer(coder, gallery, Explorer.concepts_of(sources.clip_sae))


@dataclass(frozen=True)
class Diffusion:
    """What the Generate tab shares between sessions (read-only).

    Parameters
    ----------
    gen : Background of Generator
        The text-to-image pipeline, loaded in the background once the page is served
        (``gen.get()`` waits for it).
    pipeline : str
        Its spec (``world``, a folder or a repo id), for the page.
    bsae : BlockSAE
        The SAE on its U-Net block.
    stats : LatentStats
        Its per-latent statistics (steering strengths are in units of the mean).
    sae_dir : Path
        Its folder (latent names are looked up in its ``concepts.json``).
    names : dict
        Latent id -> name of its valid concepts.
    recipes : dict
        Label (its concepts) -> unlearning recipe fitted on this SAE and block.
    """

    gen: Background[Generator]
    pipeline: str
    bsae: BlockSAE
    stats: LatentStats
    sae_dir: Path
    names: dict[int, str]
    recipes: dict[str, Recipe]


def load_diffusion(sources: DemoSources) -> Diffusion | None:
    """The Generate tab's pipeline and SAE; None without a diffusion SAE.

    The SAE, its statistics and the recipes are loaded and checked here; the pipeline (the
    slowest import and load of a start, and needed by no layout) only when its
    :class:`~apps.demo.background.Background` is started: :func:`~apps.demo.app.launch` starts
    it once the page is served.

    Parameters
    ----------
    sources
        ``diffusion_sae`` (``DIR@BLOCK``) and ``pipeline``.

    Returns
    -------
    Diffusion or None

    Raises
    ------
    InterventionError
        A bad ``DIR@BLOCK``, or an SAE without statistics and training shards (a bad
        pipeline is reported by ``gen.get()``, in the page).
    """
    if sources.diffusion_sae is None:
        return None
    t0 = time.perf_counter()
    ref = parse_sae_ref(sources.diffusion_sae)
    bsae = load_block_sae(ref.path, ref.block)
    stats = load_or_compute_stats(ref.path, bsae.sae)
    print(
        f"vsae demo: the diffusion SAE on {ref.block} ready in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    pipeline = sources.pipeline
    gen = Background(f"pipeline {pipeline}", lambda: load_generator(pipeline))
    recipes = {}
    for folder in sources.recipes:
        recipe = load_recipe(folder)
        recipe.edit(bsae)  # refused now, not at the first click, when fitted on another SAE
        recipes[" + ".join(recipe.info["concepts"])] = recipe
    return Diffusion(gen, pipeline, bsae, stats, ref.path, latent_names(ref.path), recipes)


def load_searcher(sources: DemoSources) -> Searcher | None:
    """The Search tab's index with its SAE; None without ``--index`` or an image SAE.

    Parameters
    ----------
    sources
        ``index`` and ``clip_sae`` (the index must have been built with that SAE).

    Returns
    -------
    Searcher or None

    Raises
    ------
    ConceptIndexError
        A missing, corrupt or truncated index, or one built with another SAE.
    """
    if sources.index is None or sources.clip_sae is None:
        return None
    return Searcher(sources.index, sae_dir=sources.clip_sae)


def load_bias_set(sources: DemoSources, explorer: Explorer | None) -> BiasSet | None:
    """The Bias tab's data; None without ``--bias-set`` or an image SAE.

    Parameters
    ----------
    sources
        ``bias_set`` (a folder, :mod:`vsae.analysis.bias_set`) and ``clip_sae``.
    explorer
        The image SAE and its concepts (the embeddings must be its input).

    Returns
    -------
    BiasSet or None

    Raises
    ------
    ValueError
        An unreadable bias set, one whose width is not the SAE's input, or an SAE without
        named concepts.
    """
    if sources.bias_set is None or explorer is None:
        return None
    try:
        data = BiasSet.load(sources.bias_set)
    except BiasSetError as e:
        raise ValueError(str(e)) from None
    d_in = int(explorer.coder.sae.d_in)
    if data.d != d_in:
        raise ValueError(
            f"bias set {sources.bias_set}: embeddings of width {data.d}, but the image SAE "
            f"{sources.clip_sae} takes d_in={d_in} (embed the images with its model)"
        )
    if explorer.concepts is None or not any(c.valid for c in explorer.concepts.concepts):
        raise ValueError(
            f"the Bias tab needs named concepts: {sources.clip_sae} has no concepts.json with "
            "valid names (vsae concepts name)"
        )
    return data
