"""Quality benchmark: every architecture on ground truth and on tiny-world CLIP embeddings.

Suites: flat ground truth at matched L0 (MMCS, FVU, L0), hierarchy (feature
absorption), stability over seeds (Hungarian stability, shared fraction, RA-SAE
shared vs random init), identifiability (best latent and threshold per concept)
and the tiny world (FVU and cosine against sparsity, zero-shot accuracy kept).
Writes quality.json, quality.md and plots into --out and prints the JSON's targets.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vsae.bench.harness import emit, make_report
from vsae.bench.quality_report import write_markdown, write_plots
from vsae.bench.quality_synthetic import (
    SyntheticSizes,
    flat_suite,
    hierarchy_suite,
    identifiability_suite,
    stability_suite,
)
from vsae.bench.quality_targets import all_targets
from vsae.bench.quality_variants import CONFIGS_DIR, VARIANTS, TrainSizes
from vsae.bench.quality_world import WorldSizes, world_suite

SUITES = ("flat", "hierarchy", "identifiability", "stability", "world")
WORLD_VARIANTS = ("relu", "topk", "batchtopk", "msae_uw", "msae_rw", "prefix", "ra_sae")

QUICK = {
    "synthetic": SyntheticSizes(
        n_train=6000,
        n_eval=2000,
        train=TrainSizes(steps=150, batch_size=512),
        seeds=(0, 1, 2),
        relu_l1=(3e-3,),
        jump_l0=(1e-3,),
        expansion=4,
    ),
    "world": WorldSizes(
        n_train=3000,
        n_eval=1000,
        train=TrainSizes(steps=150, batch_size=512),
        ks=(8, 32),
        relu_l1=(3e-3,),
        expansion=4,
    ),
}
FULL = {
    "synthetic": SyntheticSizes(
        n_train=40_000,
        n_eval=8000,
        train=TrainSizes(steps=800, batch_size=512),
        seeds=(0, 1, 2),
        relu_l1=(1e-3, 3e-3, 1e-2),
        jump_l0=(3e-4, 1e-3, 3e-3),
    ),
    "world": WorldSizes(
        n_train=16_000,
        n_eval=2000,
        train=TrainSizes(steps=800, batch_size=512),
        ks=(8, 32, 128),
        relu_l1=(1e-3, 3e-3, 1e-2),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vsae bench quality``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``quality`` sub-command's parser.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the same suites at small sizes (a few minutes on 2 CPU cores); CI runs this",
    )
    parser.add_argument(
        "--out",
        default="quality-bench",
        help="folder for quality.json, quality.md and the plots (default: ./quality-bench)",
    )
    parser.add_argument(
        "--suites",
        default=",".join(SUITES),
        help=f"comma-separated suites to run (default: all of {','.join(SUITES)})",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated architectures of the synthetic suites "
        f"(default: all of {','.join(VARIANTS)}); the world suite uses those of them in "
        f"{','.join(WORLD_VARIANTS)}",
    )
    parser.add_argument(
        "--configs", default=str(CONFIGS_DIR), help="folder of the per-architecture YAML configs"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _pick(text: str, allowed, what: str) -> list[str]:
    names = [s for s in text.split(",") if s]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(
            f"vsae bench quality: unknown {what} {bad}; expected some of {list(allowed)}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    """Run the chosen suites, write the outputs and print the benchmark's JSON.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments`.

    Returns
    -------
    int
        0; the report (``benchmark, date_utc, command, machine, settings, out, run, results,
        targets``) is printed here and ``quality.json``, ``quality.md`` and the plots are
        written into ``--out``.
    """
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    suites = _pick(args.suites, SUITES, "suite")
    names = _pick(args.variants, VARIANTS, "variant")
    variants = [VARIANTS[n] for n in names]
    sizes = QUICK if args.quick else FULL
    configs = Path(args.configs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(desc="quality", unit="run", disable=args.no_progress, file=sys.stderr)

    def tick(msg: str) -> None:
        bar.set_postfix_str(msg)
        bar.update(1)

    t0 = time.time()
    syn = sizes["synthetic"]
    results: dict[str, Any] = {"suites": {}}
    timings: dict[str, float] = {}
    chosen: dict[str, float | None] = {}
    seed0: dict = {}
    for suite in suites:
        ts = time.time()
        if suite == "flat":
            res, seed0, chosen = flat_suite(variants, syn, configs, tick)
        elif suite == "hierarchy":
            res = hierarchy_suite(variants, syn, chosen, configs, tick)
        elif suite == "identifiability":
            res = identifiability_suite(variants, syn, chosen, configs, tick)
        elif suite == "stability":
            res = stability_suite(variants, syn, seed0, chosen, configs, tick)
        else:
            world_variants = [VARIANTS[n] for n in names if n in WORLD_VARIANTS]
            res = world_suite(world_variants, sizes["world"], configs, tick)
        results["suites"][suite] = res
        timings[suite] = round(time.time() - ts, 1)
    bar.close()
    results["targets"] = all_targets(results)
    results["run"] = {
        "command": "vsae " + " ".join(sys.argv[1:]),
        "quick": bool(args.quick),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
        + f", {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "device": "cpu",
        "seconds": round(time.time() - t0, 1),
        "suite_seconds": timings,
    }
    settings = {
        "quick": bool(args.quick),
        "suites": suites,
        "variants": names,
        "configs": str(configs),
        "threads": torch.get_num_threads(),
    }
    summary = {
        "out": str(out),
        "quality_json": str(out / "quality.json"),
        "seconds": results["run"]["seconds"],
        "suite_seconds": timings,
    }
    report = make_report(
        "quality", settings, summary, results["targets"], out=str(out), run=results["run"]
    )
    # quality.json: every number (suites, targets, run, as before) under the contract's header
    header = {k: report[k] for k in ("benchmark", "date_utc", "command", "machine", "settings")}
    full = {**header, **results, "results": summary}
    (out / "quality.json").write_text(json.dumps(full, indent=2, default=float) + "\n")
    plots = write_plots(results, out)
    write_markdown(results, out / "quality.md", plots)
    emit(report)  # the contract's JSON on stdout; --out is the folder above
    return 0
