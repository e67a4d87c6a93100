"""``vsae bench``: the speed and quality benchmarks (code in ``vsae.bench``)."""

from __future__ import annotations

import argparse
import importlib

# Each benchmark module exposes add_arguments(parser) and run(args) -> int.
BENCHMARKS = {
    "speed": "train-step throughput of the fast SAE paths against dense references",
    "quality": "reconstruction, stability and identifiability of every architecture",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` and one sub-command per benchmark."""
    p = sub.add_parser(
        "bench",
        help="run a benchmark; prints JSON",
        description="Run one of vsae's benchmarks. Each prints a JSON object of its results.",
    )
    bench_sub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, help_text in BENCHMARKS.items():
        module = importlib.import_module(f"vsae.bench.{name}")
        bp = bench_sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(bp)
        bp.set_defaults(run=module.run)
