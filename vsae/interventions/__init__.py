"""SAEs put back into running diffusion U-Nets: hooks, edits, schedules, latent statistics.

``generate(load_generator("world"), prompts, steps, saes=[load_block_sae(DIR, BLOCK)],
edits=[Steer(feature=3, strength=8)], stats=[...])`` runs a pipeline with SAEs attached;
``with attach(unet, scheduler, saes, edits) as seen: pipe(...)`` is the context underneath
(:mod:`.attach`). Heatmaps: :mod:`.heatmap`. Latent statistics: :mod:`.stats`.
"""

from .attach import CFG_MODES, Attached, InterventionError, attach
from .block_sae import BlockSAE, load_block_sae
from .edits import Ablate, AblateBlock, Clamp, Edit, Icon, Steer
from .generator import Generator, load_generator
from .heatmap import LatentMaps, latent_maps, latent_names, overlay, save_heatmaps
from .masks import check_mask, load_mask
from .run import Generation, generate
from .stats import LatentStats, compute_latent_stats, load_or_compute_stats
from .unlearn import (
    Recipe,
    Unlearn,
    combine_recipes,
    fit_from_means,
    fit_recipe,
    load_recipe,
    sae_hash,
    sequential_recipes,
)

__all__ = [
    "CFG_MODES",
    "Ablate",
    "AblateBlock",
    "Attached",
    "BlockSAE",
    "Clamp",
    "Edit",
    "Generation",
    "Generator",
    "Icon",
    "InterventionError",
    "LatentMaps",
    "LatentStats",
    "Recipe",
    "Steer",
    "Unlearn",
    "attach",
    "check_mask",
    "combine_recipes",
    "compute_latent_stats",
    "fit_from_means",
    "fit_recipe",
    "generate",
    "latent_maps",
    "latent_names",
    "load_block_sae",
    "load_generator",
    "load_mask",
    "load_or_compute_stats",
    "load_recipe",
    "overlay",
    "sae_hash",
    "save_heatmaps",
    "sequential_recipes",
]
