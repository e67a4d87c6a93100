"""Training-speed benchmark: vsae's sparse SAE paths against dense reference implementations.

For every configuration of the grid (d in {512, 768}, n in {8192, 32768}, k in {32, 64}) it
times a full training step (forward, backward, decoder-gradient projection, gradient
clipping, AdamW, constraint projection) of vsae's TopK, BatchTopK, nested-k MSAE (8 levels:
k, 2k, ..., 64k and the dense ReLU level n) and RA-SAE (8 n candidate points, each atom mixing
its 8 nearest), and of a dense reference of each (vsae.sae.reference_model: dense codes
and decode, every Matryoshka level recomputed, the RA-SAE dictionary as the dense W[N, C] @ C).
Each measurement runs in a fresh process, so its peak memory is that configuration's alone;
vsae and reference runs alternate, so both see the same machine load. Before timing, each
reference run checks that loss and gradients of both paths agree (float32, relative L2).
A float64 check on odd shapes (k = 1, k = n, batch 1, n = 37) covers every architecture.
It also reports the share of vsae TopK's step spent in the encoder matmul, and whether an
n = 65536, d = 768 TopK SAE trains within 8 GB. For the nested-k MSAE (issue 14,
``vsae.bench.speed_msae``) it times, at every grid point and at n = 16384, d = 768, k0 = 32,
the MSAE step against its FLOP roofline (a bare GEMM of the encoder's shape timed alongside
gives the machine's rate) and against TopK, at init and after 300 training steps on synthetic
data (reporting the dense level's positive fraction). Every measurement is written to
``--out`` as it arrives (``"partial": true`` until the run ends). Prints one JSON object,
with targets as pass/fail. ``benchmarks/speed.py`` is a script entry point to the same code.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from vsae.bench.harness import command_line, date_utc, emit, machine_info
from vsae.bench.speed_targets import targets

ARCHS = ("topk", "batchtopk", "matryoshka_k", "archetypal")
FULL_GRID = {"d": (512, 768), "n": (8192, 32768), "k": (32, 64)}
QUICK_GRID = {"d": (32,), "n": (256,), "k": (4,)}
# Extra MSAE configurations beyond the grid (issue 14): n = 16384, k0 = 32, d = 768, 8 levels.
EXTRA_POINTS = ({"d": 768, "n": 16384, "k": 32},)
TRAINED_POINT = {"d": 768, "n": 16384, "k": 32}
QUICK_TRAINED_POINT = {"d": 32, "n": 256, "k": 4}
EQUIV_SHAPES = ((16, 8, 37, 3), (1, 8, 37, 4), (9, 5, 37, 1), (6, 4, 37, 37))  # B, d, n, k
EQUIV_TOL_F64 = 1e-9
CHECK_TOL_F32 = 1e-4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vsae bench speed`` (also ``python benchmarks/speed.py``)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    a = parser.add_argument
    a(
        "--quick",
        action="store_true",
        help="tiny grid (d=32, n=256, k=4, batch 64, 2 steps; memory check at n=1024): "
        "tests the whole pipeline in well under a minute; its timings mean nothing",
    )
    a("--device", default="cpu", help="torch device to benchmark: cpu (default) or cuda")
    a(
        "--batch",
        type=int,
        default=0,
        help="samples per step; 0 picks 1024 on CPU (the largest for which the full grid with "
        "its dense references finishes in ~30 min on 2 cores) and 4096 on CUDA",
    )
    a("--steps", type=int, default=3, help="timed steps per measurement (median reported)")
    a(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps first (allocator warm-up; compilation with --compile)",
    )
    a("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    a("--archs", default=",".join(ARCHS), help="comma-separated subset of " + ",".join(ARCHS))
    a("--d", default="", help="comma-separated input widths overriding the grid's")
    a("--n", default="", help="comma-separated latent counts overriding the grid's")
    a("--k", default="", help="comma-separated k values overriding the grid's")
    a(
        "--dead-frac",
        type=float,
        default=0.0,
        help="fraction of latents marked dead so AuxK runs every step (default 0: no AuxK, "
        "as early in training)",
    )
    a(
        "--candidates-per-atom",
        type=int,
        default=8,
        help="RA-SAE candidate points per atom (the paper uses ~8x as many as atoms)",
    )
    a(
        "--n-neighbors",
        type=int,
        default=8,
        help="RA-SAE: candidates each atom mixes (vsae's sparse W); the reference trains all",
    )
    a(
        "--ref-max-gb",
        type=float,
        default=6.0,
        help="skip a dense reference whose estimated memory exceeds this many GB (the "
        "RA-SAE's dense W[N, C] as parameter, gradient, two AdamW moments and matmul "
        "gradient is 5 * 4 * N * C bytes: 10.7 GB at N=8192, C=8N)",
    )
    a("--no-reference", action="store_true", help="time only vsae (no speedups, no checks)")
    a(
        "--share-batch",
        type=int,
        default=4096,
        help="also time vsae TopK alone at this batch over the grid, for the encoder-matmul "
        "share at the training recipe's batch (4096 in the Matryoshka-CLIP recipe); "
        "0 skips it",
    )
    a(
        "--steps-interleaved",
        type=int,
        default=5,
        help="timed steps of each of RA-SAE and TopK when they alternate in one process "
        "(the RA-SAE / TopK ratio; needs both archs)",
    )
    a("--no-memory-check", action="store_true", help="skip the n=65536, d=768 memory check")
    a(
        "--compile",
        action="store_true",
        help="wrap both losses in torch.compile (CPU needs a C++ compiler: gcc is present "
        "here); raise --warmup so compilation is not timed",
    )
    a(
        "--no-autocast",
        action="store_true",
        help="on CUDA, run in float32 instead of bf16 autocast (CPU always runs float32)",
    )
    a(
        "--no-msae-roofline",
        action="store_true",
        help="skip the MSAE roofline measurements (MSAE, TopK and a bare GEMM alternating in "
        "one process, at every grid point and n=16384, d=768, k0=32)",
    )
    a(
        "--trained-steps",
        type=int,
        default=300,
        help="MSAE training steps on synthetic data before the trained-state timing "
        "(0 skips it); at d=768, n=16384, k0=32",
    )
    a(
        "--trained-batch",
        type=int,
        default=64,
        help="batch of those training steps (small so that 300 steps fit the run; the timing "
        "uses --batch)",
    )
    a(
        "--trained-features",
        type=int,
        default=4096,
        help="true features of the synthetic training data",
    )
    a(
        "--trained-active",
        type=float,
        default=32.0,
        help="true features firing per synthetic sample (its known sparsity)",
    )
    a("--trained-samples", type=int, default=20000, help="synthetic samples to train on")
    a("--seed", type=int, default=0, help="seed of parameters and data")
    a("--out", default="", help="also write the JSON to this file")


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    # the timed workers run at --threads (0: torch's default, which this process also has)
    info = machine_info(args.device)
    if args.threads:
        info["torch_threads"] = args.threads
    return info


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print one JSON object (and write it to ``--out``)."""
    grid = dict(QUICK_GRID if args.quick else FULL_GRID)
    for key in ("d", "n", "k"):
        if getattr(args, key):
            grid[key] = tuple(int(v) for v in getattr(args, key).split(","))
    archs = tuple(a for a in args.archs.split(",") if a)
    bad = [a for a in archs if a not in ARCHS]
    if bad:
        raise SystemExit(f"--archs: unknown {bad}; expected a subset of {','.join(ARCHS)}")
    cuda = args.device.startswith("cuda")
    batch = args.batch or (64 if args.quick else 4096 if cuda else 1024)
    base = {
        "batch": batch,
        "steps": 2 if args.quick else args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "threads": args.threads,
        "compile": args.compile,
        "autocast": cuda and not args.no_autocast,
        "dead_frac": args.dead_frac,
        "msae_levels": 8,
        "candidates_per_atom": args.candidates_per_atom,
        "n_neighbors": args.n_neighbors,
        "seed": args.seed,
    }
    report: dict[str, Any] = {
        "benchmark": "speed",
        "date_utc": date_utc(),
        "command": command_line(),
        "machine": _machine(args),
        "settings": {**base, "grid": grid, "archs": list(archs), "quick": args.quick},
        "equivalence": equivalence_checks(archs),
    }
    points = [
        {"d": d, "n": n, "k": k} for d, n, k in itertools.product(grid["d"], grid["n"], grid["k"])
    ]
    extra = (
        []
        if args.quick or any(getattr(args, key) for key in ("d", "n", "k"))
        else [p for p in EXTRA_POINTS if p not in points]
    )
    report["settings"]["msae_extra_points"] = extra
    report["results"] = rows = []
    msae = "matryoshka_k" in archs
    report["msae_roofline"] = []
    # The new configuration and the trained state first: on a shared machine a run
    # may be cut short, and every measurement so far is in --out (``_checkpoint``).
    if msae and not args.no_msae_roofline:
        _msae_roofline(report, base, extra, grid, args)
    if msae and args.trained_steps > 0:
        _msae_trained(report, base, batch, grid, args)
    if msae and not args.no_msae_roofline:
        _msae_roofline(report, base, points, grid, args)
    for point in [*extra, *points]:
        for i, arch in enumerate(archs):
            if point in extra and arch not in ("topk", "matryoshka_k"):
                continue
            spec = {**base, "arch": arch, **point}
            rows.append(measure_pair(spec, args, reference_first=i % 2 == 1))
            _progress(rows[-1])
            _checkpoint(report, grid, args.out)
    if "topk" in archs and "archetypal" in archs:
        report["ra_vs_topk"] = []
        for point in points:
            spec = {
                **base,
                "impl": "ra_vs_topk",
                **point,
                "steps": 2 if args.quick else args.steps_interleaved,
            }
            res = run_measurement(spec)
            report["ra_vs_topk"].append({**point, **res})
            print(
                f"[speed] RA-SAE / TopK {point}: {res.get('ratio', res)}",
                file=sys.stderr,
                flush=True,
            )
    if "topk" in archs and args.share_batch:
        share_batch = 256 if args.quick else args.share_batch
        report["encoder_share_at_recipe_batch"] = []
        for point in points:
            spec = {
                **base,
                "arch": "topk",
                "impl": "vsae",
                "check": False,
                "batch": share_batch,
                **point,
            }
            res = run_measurement(spec)
            report["encoder_share_at_recipe_batch"].append({**point, "batch": share_batch, **res})
            print(
                f"[speed] TopK batch {share_batch} {point}: encoder share "
                f"{res.get('encoder_share', res)}",
                file=sys.stderr,
                flush=True,
            )
    if not args.no_memory_check:
        spec = {
            **base,
            "arch": "topk",
            "d": 32 if args.quick else 768,
            "n": 1024 if args.quick else 65536,
            "k": 4 if args.quick else 32,
            "impl": "vsae",
            "check": False,
        }
        report["memory_check"] = {"spec": spec, **run_measurement(spec)}
    report["targets"] = targets(report, grid)
    emit(report, args.out)
    return 0


def _msae_roofline(
    report: dict[str, Any], base: dict, points: list[dict], grid: dict, args: argparse.Namespace
) -> None:
    """MSAE, TopK and a bare GEMM alternating in one process, at each of ``points``."""
    for point in points:
        res = run_measurement({**base, "impl": "msae_roofline", **point}, MSAE_MODULE)
        report["msae_roofline"].append({**point, **res})
        print(
            f"[speed] MSAE roofline {point}: {res.get('ratio_to_roofline', res)}",
            file=sys.stderr,
            flush=True,
        )
        _checkpoint(report, grid, args.out)


def _msae_trained(
    report: dict[str, Any], base: dict, batch: int, grid: dict, args: argparse.Namespace
) -> None:
    """The trained-state MSAE against TopK (``vsae.bench.speed_msae.measure_trained``)."""
    tp = QUICK_TRAINED_POINT if args.quick else TRAINED_POINT
    spec = {
        **base,
        "impl": "msae_trained",
        **tp,
        "trained_steps": 20 if args.quick else args.trained_steps,
        "trained_batch": args.trained_batch,
        "trained_features": 64 if args.quick else args.trained_features,
        "trained_active": 4.0 if args.quick else args.trained_active,
        "trained_samples": 2000 if args.quick else args.trained_samples,
    }
    res = run_measurement(spec, MSAE_MODULE)
    report["msae_trained"] = {
        **tp,
        "batch": batch,
        **{k: spec[k] for k in spec if k.startswith("trained_")},
        **res,
    }
    print(
        f"[speed] MSAE trained: {res.get('msae_over_topk', res)} x TopK, positive "
        f"fraction {res.get('positive_fraction')}",
        file=sys.stderr,
        flush=True,
    )
    _checkpoint(report, grid, args.out)


def measure_pair(spec: dict[str, Any], args: argparse.Namespace, reference_first: bool) -> dict:
    """vsae and (unless too large) the dense reference of one configuration, alternating order."""
    row: dict[str, Any] = {k: spec[k] for k in ("arch", "d", "n", "k", "batch")}
    ref_gb = reference_memory_gb(spec)
    skip = None
    if args.no_reference:
        skip = "--no-reference"
    elif ref_gb > args.ref_max_gb:
        skip = f"estimated {ref_gb:.1f} GB > --ref-max-gb {args.ref_max_gb}"
    order = (
        ["vsae"] if skip else (["reference", "vsae"] if reference_first else ["vsae", "reference"])
    )
    for impl in order:
        res = run_measurement(
            {**spec, "impl": impl, "check": impl == "reference", "check_tol": CHECK_TOL_F32}
        )
        if impl == "reference" and "check" in res:
            diffs = res.pop("check")
            row["check"] = {
                "max_rel_diff": diffs["max"],
                "tolerance": CHECK_TOL_F32,
                "passed": bool(diffs["max"] < CHECK_TOL_F32),
                "diffs": diffs,
            }
            if "check_recheck" in res:
                row["check"]["recheck"] = recheck = res.pop("check_recheck")
                # same math, a float32 tie at a top-k boundary: still not a pass, but named
                row["check"]["tie"] = bool(
                    recheck["ties_float32"] > 0 and recheck["float64"]["max"] < EQUIV_TOL_F64
                )
        row[impl] = res
    if skip:
        row["reference"] = {"skipped": skip}
    elif "error" not in row["vsae"] and "error" not in row["reference"]:
        row["speedup"] = row["reference"]["step_s_median"] / row["vsae"]["step_s_median"]
    return row


def reference_memory_gb(spec: dict[str, Any]) -> float:
    """Rough memory of the dense reference's largest part, to skip runs that cannot fit.

    RA-SAE: the dense W[N, C] four times (parameter, gradient, two AdamW moments) plus its
    matmul gradient. Others: a handful of dense [B, N] code matrices per level and the
    [N, D] parameters with gradients and moments.
    """
    B, n, d = spec["batch"], spec["n"], spec["d"]
    if spec["arch"] == "archetypal":
        return 5 * n * spec["candidates_per_atom"] * n * 4 / 1e9
    levels = spec["msae_levels"] if spec["arch"] == "matryoshka_k" else 1
    return (4 * levels * B * n + 8 * n * d) * 4 / 1e9


MSAE_MODULE = "vsae.bench.speed_msae"


def _checkpoint(report: dict[str, Any], grid: dict, out: str) -> None:
    """Write what is measured so far to ``--out`` (``"partial": true``), so that a run cut
    short on a loaded machine still leaves its numbers; the final report replaces it."""
    if not out:
        return
    partial = {**report, "partial": True, "targets": targets(report, grid)}
    Path(out).write_text(json.dumps(partial, indent=2) + "\n")


def run_measurement(spec: dict[str, Any], module: str = "vsae.bench.speed_step") -> dict[str, Any]:
    """One measurement in a fresh Python process (``vsae.bench.speed_step`` or ``module``)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    return json.loads(lines[-1])


def equivalence_checks(archs: tuple[str, ...]) -> dict[str, Any]:
    """float64 loss/gradient agreement of vsae and the dense reference on odd shapes.

    Shapes: n = 37 (not a power of two) with k = 3, batch 16; batch 1; k = 1; k = n; each
    with and without dead latents (AuxK). Random parameters so every one of them matters.
    """
    from vsae.bench.speed_step import build_sae
    from vsae.sae.reference_model import DenseReferenceSAE, compare_gradients

    out = {}
    for arch in archs:
        worst, n_cases = 0.0, 0
        for B, d, n, k in EQUIV_SHAPES:
            spec = {
                "arch": arch,
                "d": d,
                "n": n,
                "k": k,
                "seed": 3,
                "msae_levels": 4,
                "candidates_per_atom": 4,
                "n_neighbors": 5,
            }
            sae = build_sae(spec).double()
            gen = torch.Generator().manual_seed(5)
            with torch.no_grad():
                for p in sae.parameters():
                    p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
                if arch == "archetypal":
                    sae.after_step()
            ref = DenseReferenceSAE.from_sae(sae)
            x_BD = torch.randn(B, d, generator=gen, dtype=torch.float64) * 2 + 0.5
            dead_N = torch.arange(n) % 3 == 0
            for dead in (None, dead_N):
                worst = max(worst, compare_gradients(sae, ref, x_BD, dead)["max"])
                n_cases += 1
        out[arch] = {
            "cases": n_cases,
            "max_rel_diff": worst,
            "tolerance": EQUIV_TOL_F64,
            "passed": bool(worst < EQUIV_TOL_F64),
        }
    return out


def _progress(row: dict[str, Any]) -> None:
    """One line per configuration on stderr, so long runs can be followed."""
    v, r = row.get("vsae", {}), row.get("reference", {})
    print(
        f"[speed] {row['arch']:>12} d={row['d']} n={row['n']} k={row['k']}: "
        f"vsae {v.get('step_s_median', v.get('error', '?'))} s, "
        f"ref {r.get('step_s_median', r.get('skipped', r.get('error', '?')))} s",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Script entry point (``benchmarks/speed.py``)."""
    parser = argparse.ArgumentParser(prog="speed", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
