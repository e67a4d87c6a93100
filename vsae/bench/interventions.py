"""Diffusion interventions measured on the tiny world (issue 17 §4).

1. Extract one U-Net block of the tiny diffusion model over colour x shape prompts and train a
   TopK SAE on it, with the ``vsae extract`` and ``vsae train`` commands.
2. Find each colour's and shape's latent (Cohen's d on judged selection images).
3. Steer prompts of colour A with colour B's latent (strength chosen on a held-out seed among a
   grid, in units of the latent's mean activation), judge colour B and the kept shape; the same
   for shapes. Spatial steering inside / outside the object's quadrant. Feature icons.
4. Reconstruct-only: the pixel difference against the bare pipeline, and generation time with
   one SAE and with four attached, as ratios to the bare pipeline in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vsae.bench.harness import add_common_arguments, make_report, target
from vsae.bench.interventions_eval import (
    Setup,
    choose_strength,
    find_concept_latents,
    icon_rates,
    spatial_steering,
    steer_pairs,
)
from vsae.world import COLOURS, SHAPES

BLOCK = "up_blocks.1.attentions.0"
# four 64-channel blocks of the world U-Net, for the timing with four SAEs attached
TIMING_BLOCKS = (
    BLOCK,
    "mid_block.attentions.0",
    "down_blocks.2.attentions.0",
    "up_blocks.0.attentions.0",
)
FULL = {
    "colours": list(COLOURS),
    "shapes": list(SHAPES),
    "extract_repeats": 1,
    # 10 DDIM steps (the world model's default is 20) keep the full run within ~40 minutes on
    # a loaded 2-core CPU; bare accuracies are measured at the same steps in the same run
    "steps": 10,
    "train_steps": 600,
    "batch_size": 1024,
    "expansion": 8,
    "k": 8,
    "select_seeds": [101, 102],
    "heldout_seed": 4242,
    "eval_seeds": [7, 8],
    "grid": [8.0, 16.0, 32.0, 64.0],
    "icon_grid": [2.0, 4.0, 8.0, 16.0],
    "timing_repeats": 2,
}
QUICK = {
    **FULL,
    "colours": ["red", "blue", "green"],
    "shapes": ["circle", "square"],
    "extract_repeats": 4,
    "steps": 4,
    "train_steps": 100,
    "batch_size": 256,
    "select_seeds": [101],
    "eval_seeds": [7],
    "grid": [16.0],
    "icon_grid": [4.0],
    "timing_repeats": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--out`` and the work folder."""
    add_common_arguments(parser)
    parser.add_argument(
        "--workdir",
        default="runs/bench-interventions",
        help="where the shards and the SAE are written (default: %(default)s; reused if there)",
    )


def train_block_sae(cfg: dict, work: Path) -> tuple[Path, dict]:
    """Extract the block over colour x shape prompts and train a TopK SAE, with the CLI.

    Parameters
    ----------
    cfg : dict
        ``colours``, ``shapes``, ``extract_repeats``, ``steps`` (denoising), ``train_steps``,
        ``batch_size``, ``k``, ``expansion`` (see ``FULL``), and optionally ``block`` (default
        ``BLOCK``).
    work : Path
        Folder for ``prompts.txt``, ``shards/`` and ``sae/``; the shards are reused when the
        settings are unchanged.

    Returns
    -------
    (Path, dict)
        The SAE folder, and the two command lines with the final metrics.
    """

    def main(argv: list[str]) -> int:  # the vsae command line, as a user runs it
        return subprocess.run([sys.executable, "-m", "vsae", *argv], check=False).returncode

    block = cfg.get("block", BLOCK)
    prompts = [f"a {c} {s}" for c in cfg["colours"] for s in cfg["shapes"]]
    text = "\n".join(prompts * cfg["extract_repeats"]) + "\n"
    shards, sae = work / "shards", work / "sae"
    keys = ("colours", "shapes", "extract_repeats", "steps")  # what the shards depend on
    now = json.dumps({**{k: cfg[k] for k in keys}, "block": block}, sort_keys=True)
    stamp = work / "settings.json"
    if not stamp.is_file() or stamp.read_text() != now:  # other settings: start afresh
        shutil.rmtree(shards, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "prompts.txt").write_text(text)
    extract = ["extract", "--source", "world:diffusion", "--data", str(work / "prompts.txt")]
    extract += ["--hookpoints", block, "--num-steps", str(cfg["steps"]), "--output", "update"]
    extract += ["--out", str(shards), "--quiet"]
    if main(extract) != 0:
        raise RuntimeError("vsae extract failed")
    stamp.write_text(now)
    train = ["train", str(Path(__file__).parents[2] / "configs" / "topk.yaml")]
    train += ["--data", str(shards), "--out", str(sae), "--overwrite"]  # retrain each run
    for key, value in (
        ("train.steps", cfg["train_steps"]),
        ("train.batch_size", cfg["batch_size"]),
        ("train.eval_samples", cfg["batch_size"]),
        ("train.eval_every", 0),
        ("train.ckpt_every", 0),
        ("sae.k", cfg["k"]),
        ("sae.expansion", cfg["expansion"]),
    ):
        train += ["--set", f"{key}={value}"]
    if main(train) != 0:
        raise RuntimeError("vsae train failed")
    metrics = json.loads((sae / "metrics.json").read_text())
    return sae, {"extract": extract, "train": train, "metrics": metrics}


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def _steering(s: Setup, cfg: dict, attr: str, feats: dict) -> dict:
    values, others = (
        (cfg["colours"], cfg["shapes"]) if attr == "colour" else (cfg["shapes"], cfg["colours"])
    )
    strength, grid_rows = choose_strength(
        s, attr, values, others, feats, cfg["grid"], cfg["heldout_seed"]
    )
    hit, kept, bare_kept, per_pair = [], [], [], {}
    for seed in cfg["eval_seeds"]:
        r = steer_pairs(s, attr, values, others, feats, strength, seed)
        b = steer_pairs(s, attr, values, others, feats, None, seed)
        hit += r["hit"]
        kept += r["kept"]
        bare_kept += b["kept"]
        for pair, h in zip(r["pairs"], r["hit"], strict=True):
            per_pair.setdefault(f"{pair[0]}->{pair[1]}", []).append(h)
    rates = {k: _mean(v) for k, v in per_pair.items()}
    worst = min(rates, key=rates.get) if rates else None
    return {
        "strength": strength,
        "selection": grid_rows,
        "hit_rate": _mean(hit),
        "kept_rate": _mean(kept),
        "bare_kept_rate": _mean(bare_kept),
        "kept_ratio": _mean(kept) / max(_mean(bare_kept), 1e-9),
        "worst_pair": worst,
        "worst_pair_rate": rates.get(worst),
        "n_images": len(hit),
        "per_pair": rates,
    }


def _reconstruct_and_timing(s: Setup, cfg: dict, sae_dir: Path) -> dict:
    from vsae.interventions import BlockSAE, generate, load_block_sae

    ps = [f"a {c} {sh}" for c, sh in zip(cfg["colours"], cfg["shapes"] * 4, strict=False)][:8]
    bare = generate(s.gen, ps, s.steps, 0, as_float=True)
    one = generate(s.gen, ps, s.steps, 0, saes=[s.bsae], as_float=True)
    diff = float(np.abs(one.images - bare.images).max())
    four_saes = [BlockSAE(load_block_sae(sae_dir, b).sae, b) for b in TIMING_BLOCKS]
    times: dict[str, list[float]] = {"bare": [], "one": [], "four": []}
    for _ in range(cfg["timing_repeats"]):  # interleaved, so all three see the same load
        for name, saes in (("bare", []), ("one", [s.bsae]), ("four", four_saes)):
            t0 = time.perf_counter()
            generate(s.gen, ps, s.steps, 0, saes=saes)
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "max_abs_pixel_diff": diff,
        "images": len(ps),
        "seconds_median": med,
        "ratio_one_sae": med["one"] / med["bare"],
        "ratio_four_saes": med["four"] / med["bare"],
        "four_sae_blocks": list(TIMING_BLOCKS),
    }


def run(args: argparse.Namespace) -> dict:
    """Train, find, steer, judge; return the report."""
    from vsae import world
    from vsae.interventions import load_block_sae, load_generator, load_or_compute_stats

    cfg = QUICK if args.quick else FULL
    work = Path(args.workdir) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sae_dir, training = train_block_sae(cfg, work)
    bsae = load_block_sae(sae_dir, BLOCK)
    stats = load_or_compute_stats(sae_dir, bsae.sae)
    s = Setup(load_generator("world"), bsae, stats, world.load_judge(), cfg["steps"])
    latents, scores = find_concept_latents(s, cfg["colours"], cfg["shapes"], cfg["select_seeds"])
    colour = _steering(s, cfg, "colour", latents["colour"])
    shape = _steering(s, cfg, "shape", latents["shape"])
    spatial = spatial_steering(
        s,
        cfg["colours"],
        cfg["shapes"],
        latents["colour"],
        colour["strength"],
        cfg["eval_seeds"][0],
    )
    icon_pick = {
        g: _mean(list(icon_rates(s, latents["colour"], g, cfg["heldout_seed"]).values()))
        for g in cfg["icon_grid"]
    }
    icon_strength = max(icon_pick, key=icon_pick.get)
    icons = icon_rates(s, latents["colour"], icon_strength, cfg["eval_seeds"][0])
    recon = _reconstruct_and_timing(s, cfg, sae_dir)
    results = {
        "block": BLOCK,
        "training": {**training, "fvu": training["metrics"].get("fvu")},
        "latents": latents,
        "latent_scores": scores,
        "how_latents_are_found": "per selection image (seeds select_seeds, never evaluated), "
        "the SAE code averaged over the block's positions and the denoising steps; per colour "
        "/ shape value, the latent with the largest Cohen's d between images the judge gives "
        "that value and the others",
        "colour_steering": colour,
        "shape_steering": shape,
        "spatial_steering": {
            "inside_hit_rate": _mean(spatial["inside_hit"]),
            "outside_kept_rate": _mean(spatial["outside_kept"]),
            "n_images": len(spatial["inside_hit"]),
            "note": "the tiny model draws one object; the mask covers the object's quadrant "
            "(judged on the bare image) or the opposite, empty quadrant",
        },
        "icons": {"strength": icon_strength, "selection": icon_pick, "hits": icons},
        "reconstruct_only": recon,
        "seconds": time.perf_counter() - t0,
    }
    sp = results["spatial_steering"]
    rows = (  # name, rule, value, threshold, higher is better
        ("colour_steering", ">= 0.80 judged colour B", colour["hit_rate"], 0.8, True),
        ("colour_steering_keeps_shape", ">= 0.90 of the bare shape accuracy",
         colour["kept_ratio"], 0.9, True),
        ("shape_steering", ">= 0.80 judged shape B", shape["hit_rate"], 0.8, True),
        ("shape_steering_keeps_colour", ">= 0.90 of the bare colour accuracy",
         shape["kept_ratio"], 0.9, True),
        ("spatial_inside_changes", ">= 0.80 judged colour B, mask on the object",
         sp["inside_hit_rate"], 0.8, True),
        ("spatial_outside_keeps", ">= 0.90 colour kept, mask elsewhere",
         sp["outside_kept_rate"], 0.9, True),
        ("icons", ">= 0.70 of colour icons judged their colour", _mean(list(icons.values())),
         0.7, True),
        ("reconstruct_only_pixels", "max abs diff <= 1e-4 (float32)", recon["max_abs_pixel_diff"],
         1e-4, False),
        ("reconstruct_only_time", "<= 1.3x the bare pipeline with one SAE",
         recon["ratio_one_sae"], 1.3, False),
    )  # fmt: skip
    targets = [
        target(name, rule, [v], (lambda x, t=t: x >= t) if up else (lambda x, t=t: x <= t))
        for name, rule, v, t, up in rows
    ]
    settings = {"quick": bool(args.quick), **cfg, "block": BLOCK, "workdir": str(work)}
    return make_report("interventions", settings, results, targets)
