"""The default demo's diffusion SAE: built once on the tiny world's U-Net and cached.

On first start, with the library's own functions: extract the block update of
``up_blocks.1.attentions.0`` (the block ``vsae bench interventions`` measures steering on) over
every colour x shape prompt, train a TopK SAE on it and compute its latent statistics (the
unit of steering strengths).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BLOCK = "up_blocks.1.attentions.0"
UNLEARN = ("red", "circle")  # one SAeUron recipe each, shown as toggles on the Generate tab
RECIPE = {
    "steps": 10,
    "train_steps": 800,
    "batch_size": 1024,
    "expansion": 8,
    "k": 8,
    "seed": 0,
}


def prepare_world_diffusion(root: Path, progress: bool = True, recipe: dict | None = None) -> str:
    """Build (once) the tiny-world diffusion SAE; return it as ``DIR@BLOCK``.

    Parameters
    ----------
    root : Path
        The demo's versioned cache folder; ``root/diffusion_sae`` is written.
    progress : bool
        Show progress bars (stderr).
    recipe : dict, optional
        Other settings than ``RECIPE`` (tests use a smaller one); same keys.

    Returns
    -------
    str
        ``DIR@BLOCK`` of the SAE (with ``cfg.json`` provenance and
        ``latent_stats.safetensors``).
    """
    from vsae.config import SAEConfig, TrainConfig
    from vsae.extract import extract
    from vsae.interventions import load_block_sae, load_or_compute_stats
    from vsae.sae.io import write_provenance
    from vsae.training import train
    from vsae.world import COLOURS, SHAPES

    sae_dir, shards = root / "diffusion_sae", root / "diffusion_shards"
    stamp = root / "diffusion.json"
    if stamp.is_file() and all((p / "recipe.json").is_file() for p in recipe_dirs(root)):
        return f"{sae_dir}@{BLOCK}"
    r, t0 = {**RECIPE, **(recipe or {})}, time.perf_counter()
    print(
        f"vsae demo: first start, building the tiny-world diffusion SAE in {root}", file=sys.stderr
    )
    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(f"a {c} {s}" for c in COLOURS for s in SHAPES) + "\n")
    meta = extract(
        "world:diffusion",
        prompts,
        shards,
        batch_size=16,
        progress=progress,
        hookpoints=[BLOCK],
        source_opts={"output": "update", "num_steps": r["steps"]},
    )
    d = meta["hookpoints"][BLOCK]["d"]
    sae_cfg = SAEConfig(arch="topk", d_in=d, expansion=r["expansion"], k=r["k"], seed=r["seed"])
    train_cfg = TrainConfig(
        batch_size=r["batch_size"],
        steps=r["train_steps"],
        lr=2e-3,
        warmup_steps=r["train_steps"] // 10,
        eval_every=r["train_steps"],
        eval_samples=1024,
        seed=r["seed"],
        progress=progress,
    )
    train(sae_cfg, shards, train_cfg, out_dir=sae_dir, hookpoint=BLOCK)
    write_provenance(
        sae_dir,
        {
            "source": "world:diffusion",
            "pretrained": None,
            "hookpoint": BLOCK,
            "output": "update",
            "data": str(shards.resolve()),
            "options": {"num_steps": r["steps"]},
        },
    )
    load_or_compute_stats(sae_dir, load_block_sae(sae_dir, BLOCK).sae)
    fit_world_recipes(root, sae_dir, r["steps"])
    record = {"recipe": r, "block": BLOCK, "seconds": round(time.perf_counter() - t0, 1)}
    stamp.write_text(json.dumps(record, indent=2))
    return f"{sae_dir}@{BLOCK}"


def recipe_dirs(root: Path) -> list[Path]:
    """The default demo's unlearning recipe folders, one per concept of ``UNLEARN``.

    Parameters
    ----------
    root : Path
        The demo's versioned cache folder.

    Returns
    -------
    list of Path
    """
    return [root / "recipes" / c for c in UNLEARN]


def fit_world_recipes(root: Path, sae_dir: Path, steps: int) -> list[Path]:
    """Fit one unlearning recipe per ``UNLEARN`` concept on the colour x shape prompts.

    Parameters
    ----------
    root : Path
        The demo's versioned cache folder.
    sae_dir : Path
        The diffusion SAE.
    steps : int
        Denoising steps the recipes are for.

    Returns
    -------
    list of Path
        The recipe folders (``recipe.json``, ``latents.safetensors``).
    """
    from vsae.interventions import fit_recipe, load_block_sae, load_generator
    from vsae.interventions.unlearn import concept_prompts
    from vsae.world import COLOURS, SHAPES

    gen, bsae = load_generator("world"), load_block_sae(sae_dir, BLOCK)
    prompts = concept_prompts(list(UNLEARN), {"colour": COLOURS, "shape": SHAPES})
    out = []
    for concept, folder in zip(UNLEARN, recipe_dirs(root), strict=True):
        recipe = fit_recipe(gen, bsae, [concept], prompts, steps, sae_path=str(sae_dir))
        out.append(recipe.save(folder))
    return out
