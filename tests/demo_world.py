"""A tiny-world SAE folder ready for the demo's tests: provenance, a gallery cache and names.

The names in its ``concepts.json`` come from the world's ground truth (the majority colour or
shape of each latent's top gallery images), so a test can check that the demo shows a given
name for a given latent. They are test data, not the library's naming method.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

GALLERY_N = 300
GALLERY = f"world:{GALLERY_N}:77"


def named_world_sae(world_sae_dir: Path, out: Path) -> tuple[Path, Path, Path]:
    """Copy the shared world SAE to ``out/sae`` with provenance and a ground-truth
    ``concepts.json``; encode its Explore gallery into the cache ``out/cache``; index the
    gallery's renders into ``out/index`` (``vsae.analysis.build_index``).

    Returns
    -------
    (Path, Path, Path)
        The SAE folder, the demo cache folder and the index folder.
    """
    from apps.demo import DemoSources
    from apps.demo.models import load_explorer
    from vsae import world
    from vsae.analysis import Concept, ConceptTable, build_index, sae_model_spec
    from vsae.sae.io import write_provenance

    sae_dir, cache = out / "sae", out / "cache"
    if not sae_dir.exists():
        shutil.copytree(world_sae_dir, sae_dir)
    write_provenance(sae_dir, {"source": "world:clip", "hookpoint": "image", "token_mode": "cls"})
    sources = DemoSources(clip_sae=sae_dir, model=None, images=GALLERY, n_images=GALLERY_N)
    explorer = load_explorer(sources, cache)
    scenes = world.sample_scenes(GALLERY_N, 77)
    records = []
    for f in range(explorer.n_latents):
        top = [i for i, _ in explorer.gallery.top_images(f, 10)]
        name, purity = "", 0.0
        for attr in ("colour", "shape"):
            if len(top) < 5:
                break
            value, count = Counter(scenes[i][attr] for i in top).most_common(1)[0]
            if count / len(top) > purity:
                name, purity = value, count / len(top)
        stats = explorer.gallery.stats(f)
        valid = purity >= 0.8
        records.append(
            Concept(f, name, purity, 0.1, (name,), stats.freq, stats.mean_act, tuple(top), valid)
        )
    ConceptTable(tuple(records), method="image", meta={"note": "ground truth, tests"}).save(sae_dir)
    index = out / "index"
    if not (index / "index.json").is_file():
        build_index(sae_dir, GALLERY, index, sae_model_spec(sae_dir))
    return sae_dir, cache, index


SMALL_DIFFUSION = {"steps": 4, "train_steps": 150, "batch_size": 512}


def world_block_sae(out: Path) -> str:
    """A small SAE on the tiny U-Net's block, built by the demo's own first-start recipe with
    fewer denoising and training steps; returns ``DIR@BLOCK``."""
    from vsae.commands.demo_diffusion import prepare_world_diffusion

    return prepare_world_diffusion(out, progress=False, recipe=SMALL_DIFFUSION)


SMALL_BIAS = {"n_test": 2400}  # groups of >= 30 test images at every colour


def world_bias_set(out: Path, recipe: dict | None = None) -> Path:
    """The demo's biased tiny-world set, built by its own first-start recipe with smaller splits;
    returns the bias set folder."""
    from vsae.commands.demo_bias import prepare_world_bias

    return prepare_world_bias(out, progress=False, recipe=recipe or SMALL_BIAS)
