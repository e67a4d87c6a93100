"""The default demo's biased tiny-world set: built once on the tiny CLIP and cached.

On first start, with the library's own functions: render a *training* split in which red
things are mostly circles (``shape=circle|colour=red:0.95``, a planted shortcut) and an
unbiased *test* split of another seed, embed both with the tiny CLIP (``world:clip``,
hookpoint ``image``: the input of the demo's image SAE) and write them as a bias set folder
(:mod:`vsae.analysis.bias_set`), which the demo's Bias tab analyses.

The shortcut's direction, the 300 probe images and the probe's L2 of 0.5 are the setting
``vsae bench bias`` measured the bias to be real at (benchmarks/results/bias-2026-12-02-cpu.md):
with many images or a weak penalty the probe learns the shapes well enough that the shortcut
hardly matters, and the tab would show nothing worth seeing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BIAS_RECIPE = {
    "correlations": ["shape=circle|colour=red:0.95"],
    "n_train": 300,
    "n_test": 3000,
    "seed_train": 101,
    "seed_test": 102,
    "target": "shape=circle",
    "group": "colour",
    "probe": {"l2": 0.5},  # the ProbeConfig the tab trains with
}
BATCH = 100


def _embed(source, images_NHW3, progress: bool, desc: str):
    """Tiny-CLIP image embeddings [N, D] of rendered images, in batches."""
    import torch
    from PIL import Image
    from tqdm import tqdm

    from vsae.data.images import InputItem

    out = []
    for start in tqdm(
        range(0, len(images_NHW3), BATCH), desc=desc, file=sys.stderr, disable=not progress
    ):
        batch = images_NHW3[start : start + BATCH]
        items = [
            InputItem(start + i, f"{desc}-{start + i}", Image.fromarray(img))
            for i, img in enumerate(batch)
        ]
        with torch.no_grad():
            acts_BTD = source(source.prepare(items))["image"]
        out.append(acts_BTD[:, 0].float().cpu())
    return torch.cat(out)


def prepare_world_bias(root: Path, progress: bool = True, recipe: dict | None = None) -> Path:
    """Build (once) the biased tiny-world set of the default Bias tab; return its folder.

    Parameters
    ----------
    root : Path
        The demo's versioned cache folder; ``root/bias_set`` is written.
    progress : bool
        Show progress bars (stderr).
    recipe : dict, optional
        Other settings than ``BIAS_RECIPE`` (tests use smaller splits); same keys.

    Returns
    -------
    Path
        The bias set folder (``bias_set.json``, ``embeddings.safetensors``, ``labels.json``).
    """
    from vsae import world
    from vsae.analysis.bias_set import BiasSet, BiasSetError
    from vsae.encoders import from_spec

    folder = root / "bias_set"
    r = {**BIAS_RECIPE, **(recipe or {})}
    try:
        if BiasSet.load(folder).meta.get("recipe") == r:
            return folder
    except BiasSetError:
        pass  # missing, stale or truncated: rebuilt
    t0 = time.perf_counter()
    print(
        f"vsae demo: first start, building the biased tiny-world set in {folder}", file=sys.stderr
    )
    source = from_spec("world:clip", hookpoints=["image"])
    shortcut = [world.Correlation.parse(c) for c in r["correlations"]]
    splits = {}
    for split, n, seed, corr in (
        ("train", r["n_train"], r["seed_train"], shortcut),
        ("test", r["n_test"], r["seed_test"], None),
    ):
        images_NHW3, scenes = world.render(n, seed, correlations=corr)
        labels = [{a: str(s[a]) for a in world.ATTRIBUTES} for s in scenes]
        splits[split] = (_embed(source, images_NHW3, progress, split), labels)
    meta = {
        "recipe": r,
        "model": "world:clip",
        "hookpoint": "image",
        "target": r["target"],
        "group": r["group"],
        "probe": r["probe"],
        "note": f"train: {' and '.join(r['correlations'])} (a planted shortcut); test: "
        "unbiased renders",
    }
    bias_set = BiasSet(*splits["train"], *splits["test"], meta=meta)
    bias_set.save(folder)
    seconds = round(time.perf_counter() - t0, 1)
    (root / "bias.json").write_text(json.dumps({"recipe": r, "seconds": seconds}, indent=2))
    return folder
