"""``vsae bench NAME``: the benchmarks (code in ``vsae.bench``).

To add a benchmark, write ``vsae/bench/NAME.py`` with ``add_arguments(parser)`` and
``run(args) -> dict`` (see ``vsae.bench.harness``) and add one line to ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from vsae.bench.harness import emit

# name -> help; the code is vsae.bench.<name>: add_arguments(parser) and run(args), where
# run returns the report (printed and written to --out here) or an exit code (printed itself).
BENCHMARKS = {
    "speed": "train-step throughput of the fast SAE paths against dense references",
    "quality": "reconstruction, stability and identifiability of every architecture",
    "interventions": "steering, icons and reconstruct-only cost of SAEs in the tiny U-Net",
    "pipeline": "extraction overhead, shard reader throughput and bytes on disk",
    "concepts": "concept naming precision, concept search and index scale (issue 16)",
    "unlearning": "concept unlearning (SAeUron) on the tiny world: UA / IRA / CRA, baseline, cost",
    "bias": "bias analysis on a biased tiny world: ranking, switch-off, debiasing (issue 19)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` and one sub-command per benchmark.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``vsae`` command's sub-parsers.
    """
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
        bp.set_defaults(run=_runner(module.run))


def _runner(run: Callable[[argparse.Namespace], dict | int]) -> Callable[[argparse.Namespace], int]:
    """``run`` as a command: a returned report is printed and written to ``--out``."""

    def go(args: argparse.Namespace) -> int:
        result = run(args)
        if isinstance(result, dict):
            emit(result, getattr(args, "out", None))
            return 0
        return int(result or 0)

    return go
