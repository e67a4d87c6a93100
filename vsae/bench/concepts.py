"""``vsae bench concepts``: concept naming and concept search, measured against the targets of
issue 16 §4.

Tiny world (``vsae.bench.concepts_world``): a TopK SAE (256 latents, k = 6) on tiny-CLIP image
embeddings of world seed 11; thresholds chosen on seed 777; everything reported on seed 4242.
Scale (``vsae.bench.concepts_scale``): 1M synthetic clustered embeddings (d = 768) with a
16k-latent TopK SAE (k = 32). ``--quick`` shrinks both to check the benchmark in minutes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vsae.bench.concepts_scale import run_scale
from vsae.bench.concepts_world import run_world
from vsae.bench.harness import add_common_arguments, make_report, target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--out``, ``--n-scale``, ``--skip-scale``, ``--skip-world``."""
    add_common_arguments(parser)
    parser.add_argument(
        "--n-scale", type=int, default=None, help="images of the synthetic collection (1M)"
    )
    parser.add_argument(
        "--n-build", type=int, default=None, help="images indexed for the build throughput (20k)"
    )
    parser.add_argument("--skip-scale", action="store_true", help="only the tiny-world part")
    parser.add_argument("--skip-world", action="store_true", help="only the scale part")


def _targets(world: dict | None, scale: dict | None) -> list[dict]:
    out = []
    if world is not None:
        for m in ("text", "image"):
            nm = world["naming"][m]
            out.append(
                target(
                    f"naming_precision_{m}",
                    "every valid latent named after a world value has >= 90% of its top-100 "
                    "eval images carrying it (value: fraction of such latents that do)",
                    [nm["eval_precision"]],
                    lambda v: v >= 1.0,
                )
            )
            out.append(
                target(
                    f"naming_coverage_{m}",
                    ">= 80% of the world's values get a valid latent named after them",
                    [nm["eval_coverage"]],
                    lambda v: v >= 0.8,
                )
            )
        s = world["search"]
        if "error" not in s:
            out.append(
                target(
                    "concept_search_precision_at_50",
                    ">= 0.95 for every colour and shape",
                    list(s["precision_at_50"].values()),
                    lambda v: v >= 0.95,
                    labels=list(s["precision_at_50"]),
                )
            )
            out.append(
                target(
                    "suppress_colour",
                    ">= 90% same-shape other-colour images in the top 10 (mean, worst)",
                    [s["suppress_mean"], s["suppress_worst"]],
                    lambda v: v >= 0.9,
                )
            )
            out.append(
                target(
                    "suppress_and_boost_colour",
                    ">= 90% images of the boosted colour and the query's shape in the top 10 "
                    "(mean, worst)",
                    [s["suppress_boost_mean"], s["suppress_boost_worst"]],
                    lambda v: v >= 0.9,
                )
            )
            out.append(
                target(
                    "empty_edit_same_ranking",
                    "an empty edit returns the plain query's ranking (fraction of queries)",
                    [s["empty_edit_same_ranking"]],
                    lambda v: v == 1.0,
                )
            )
    if scale is not None:
        out += _scale_targets(scale)
    return out


def _scale_targets(s: dict) -> list[dict]:
    ratio32 = s["exact_fp32"]["median_ms"] / s["exact_fp32"]["floor_ms"]
    ratio16 = s["exact_fp16"]["median_ms"] / s["exact_fp16"]["floor_ms"]
    return [
        target(
            "index_memory_gb",
            "the index of the collection fits in 6 GB (fp16 embeddings + CSR codes + norms)",
            [s["index_bytes"]["total_fp16"] / 1e9],
            lambda v: v <= 6.0,
        ),
        target(
            "exact_median_vs_bandwidth_floor",
            "exact top-10 median within 1.5x of index bytes / streaming bandwidth (fp32, fp16)",
            [ratio32, ratio16],
            lambda v: v <= 1.5,
        ),
        target(
            "ivf_median_ms",
            "approximate (IVF) top-10 median <= 5 ms",
            [s["ivf"]["median_ms"]],
            lambda v: v <= 5.0,
        ),
        target(
            "ivf_recall_at_10",
            "recall@10 >= 0.95 against exact",
            [s["ivf"]["recall_at_10"]],
            lambda v: v >= 0.95,
        ),
    ]


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark and return its report."""
    world = scale = None
    with tempfile.TemporaryDirectory(prefix="vsae-bench-concepts-") as tmp:
        if not args.skip_world:
            world = run_world(Path(tmp), args.quick)
    if not args.skip_scale:
        scale = run_scale(args.quick, args.n_scale, args.n_build)
    return make_report(
        "concepts",
        settings={
            "quick": args.quick,
            "world_seeds": {"train": 11, "selection": 777, "eval": 4242},
            "n_scale": scale["n_images"] if scale else None,
            "n_build": scale["build"]["n_images"] if scale else None,
        },
        results={"world": world, "scale": scale},
        targets=_targets(world, scale),
    )
