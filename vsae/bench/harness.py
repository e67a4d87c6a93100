"""Shared pieces of every ``vsae bench NAME``: timing against a baseline, targets, the JSON.

Every benchmark prints one JSON object (``/work/shared/CONTRACTS.md``, "Benchmarks")::

    {"benchmark": NAME, "date_utc": ..., "command": ..., "machine": {...},
     "settings": {..., "quick": bool}, "results": ..., "targets": [
         {"name": ..., "target": "human-readable rule", "values": [...], "passed": bool|None}]}

Timings are ratios against a baseline measured in the same run (:func:`time_against`), so a
loaded or slow machine moves both sides alike.

Adding a benchmark
------------------
1. Write ``vsae/bench/NAME.py`` with::

       def add_arguments(parser: argparse.ArgumentParser) -> None:
           add_common_arguments(parser)      # --quick and --out
           parser.add_argument(...)

       def run(args: argparse.Namespace) -> dict:
           timing = time_against(candidate_fn, baseline_fn, repeats=3 if args.quick else 7)
           return make_report("NAME", settings={"quick": args.quick, ...},
                              results={"ratio": timing.ratio, ...},
                              targets=[target("ratio", "<= 1.1x baseline", [timing.ratio],
                                              lambda v: v <= 1.1)])

2. Add one line ``"NAME": "one-line help"`` to ``BENCHMARKS`` in ``vsae/commands/bench.py``.

``vsae bench NAME`` then prints the returned report and writes it to ``--out`` when given
(:func:`emit`). A ``run`` that returns an ``int`` instead has printed its own output (the
older ``speed`` and ``quality`` benchmarks do).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPORT_KEYS = ("benchmark", "date_utc", "command", "machine", "settings", "results", "targets")


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of a candidate and its baseline, measured alternately.

    Attributes
    ----------
    candidate_s, baseline_s : tuple of float
        Seconds of each timed repeat (warm-up repeats excluded).
    """

    candidate_s: tuple[float, ...]
    baseline_s: tuple[float, ...]

    @property
    def candidate_median_s(self) -> float:
        """Median seconds of the candidate."""
        return statistics.median(self.candidate_s)

    @property
    def baseline_median_s(self) -> float:
        """Median seconds of the baseline."""
        return statistics.median(self.baseline_s)

    @property
    def ratio(self) -> float:
        """Candidate median over baseline median: below 1 means the candidate is faster."""
        return self.candidate_median_s / self.baseline_median_s

    def as_dict(self) -> dict[str, Any]:
        """The medians, the ratio and every repeat, for a report's ``results``."""
        return {
            "candidate_s_median": self.candidate_median_s,
            "baseline_s_median": self.baseline_median_s,
            "ratio": self.ratio,
            "candidate_s": list(self.candidate_s),
            "baseline_s": list(self.baseline_s),
        }


def time_against(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
) -> Timing:
    """Time ``candidate`` and ``baseline`` alternately in this process.

    The two alternate (and swap which goes first each repeat) so that both see the same
    machine load; the medians of the repeats are compared.

    Parameters
    ----------
    candidate, baseline : callable
        Functions of no arguments; each call is one measured unit of work.
    repeats : int
        Timed calls of each (>= 1).
    warmup : int
        Untimed calls of each first (>= 0): allocator warm-up, lazy initialisation.

    Returns
    -------
    Timing
        Seconds per call of both; ``Timing.ratio`` is candidate / baseline.

    Raises
    ------
    ValueError
        If ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1:
        raise ValueError(f"time_against: repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"time_against: warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        baseline()
        candidate()
    cand: list[float] = []
    base: list[float] = []
    for i in range(repeats):
        pairs = ((candidate, cand), (baseline, base))
        for fn, times in pairs if i % 2 == 0 else pairs[::-1]:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return Timing(tuple(cand), tuple(base))


def target(
    name: str,
    rule: str,
    values: Sequence[float],
    ok: Callable[[float], bool],
    **extra: Any,
) -> dict[str, Any]:
    """One entry of a report's ``targets``: passed when every value meets ``ok``.

    Parameters
    ----------
    name : str
        Short machine-readable name, e.g. ``"extraction_overhead"``.
    rule : str
        The target as a person reads it, e.g. ``"<= 10% over the bare forward"``.
    values : sequence of float
        Every measured value the target applies to (one per configuration).
    ok : callable
        Predicate on one value.
    **extra
        More keys for this entry (kept after the four standard ones).

    Returns
    -------
    dict
        ``{name, target, values, passed, **extra}``; ``passed`` is None when ``values`` is
        empty (not measured), never a silent pass.
    """
    vals = [float(v) for v in values]
    passed = all(ok(v) for v in vals) if vals else None
    return {"name": name, "target": rule, "values": vals, "passed": passed, **extra}


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Python, torch, platform, CPU count, torch threads and device (with the GPU's name).

    Parameters
    ----------
    device : str
        The torch device the benchmark ran on, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns
    -------
    dict
        The report's ``machine`` object.
    """
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def date_utc() -> str:
    """The current UTC time as ``YYYY-MM-DD HH:MM``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def command_line() -> str:
    """The command line of this process, as the report's ``command``."""
    return " ".join(sys.argv)


def make_report(
    benchmark: str,
    settings: dict[str, Any],
    results: Any,
    targets: list[dict[str, Any]],
    machine: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A benchmark's JSON object with the standard keys in the standard order.

    Parameters
    ----------
    benchmark : str
        The name after ``vsae bench``.
    settings : dict
        Every setting that changes the numbers; must hold ``quick``.
    results : object
        The measurements (JSON-serialisable).
    targets : list of dict
        Entries made by :func:`target`.
    machine : dict, optional
        Defaults to :func:`machine_info` on CPU.
    **extra
        More top-level keys, placed after ``settings`` and before ``results``.

    Returns
    -------
    dict
        ``{benchmark, date_utc, command, machine, settings, **extra, results, targets}``.

    Raises
    ------
    ValueError
        If ``settings`` lacks ``quick`` or a target lacks one of its four keys.
    """
    if "quick" not in settings:
        raise ValueError(f"make_report({benchmark!r}): settings must hold 'quick'")
    for t in targets:
        missing = [k for k in ("name", "target", "values", "passed") if k not in t]
        if missing:
            raise ValueError(f"make_report({benchmark!r}): target {t!r} lacks {missing}")
    return {
        "benchmark": benchmark,
        "date_utc": date_utc(),
        "command": command_line(),
        "machine": machine if machine is not None else machine_info(),
        "settings": settings,
        **extra,
        "results": results,
        "targets": targets,
    }


def emit(report: dict[str, Any], out: str | Path | None = None) -> str:
    """Print ``report`` as JSON on stdout and write it to ``out`` when given.

    Parameters
    ----------
    report : dict
        A benchmark's JSON object (see :func:`make_report`).
    out : str or Path, optional
        File to write as well; its parent folders are created. Empty or None: stdout only.

    Returns
    -------
    str
        The JSON text.
    """
    text = json.dumps(report, indent=1, default=float)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    print(text, flush=True)
    return text


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--quick`` and ``--out FILE``, the two options every benchmark has.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The benchmark's sub-command parser.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes that test the whole benchmark in about a minute; timings mean little",
    )
    parser.add_argument("--out", default="", help="also write the JSON to this file")
