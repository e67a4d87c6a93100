"""``vsae bench bias``: the bias analysis on the biased tiny world, against the targets of
issue 19 §3.

A TopK SAE (256 latents, k = 6) on unbiased tiny-CLIP embeddings is named text-side. For each
planted correlation (``P(circle | red) = p``, and ``P(square | stripes) = p``) a logistic
probe is trained on a biased render set and the same probe on an unbiased one; both are
analysed on an unbiased test set. The analysis is told the target and the group attribute
only; the planted concept scores it. Targets per correlation: the planted concept ranks first
among the non-target concepts and ahead of every other value of the target's attribute;
switching it off halves the false-positive rate of its non-target group; the bias is real
(worst-group gap >= 15 points) and removing the top spurious concept closes at least half of
it without lowering overall accuracy; the unbiased probe's analysis flags no concept of the
group attribute. ``--quick`` shrinks everything to test the benchmark in about 30 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vsae.bench.harness import add_common_arguments, make_report, target

FULL = {
    "n_sae": 6000,
    "sae_steps": 1500,
    "n_name": 3000,
    "n_test": 3000,
    "n_train": 300,
    "p": 0.95,
    "l2": 0.5,
    "n_boot": 200,
}
QUICK = {
    "n_sae": 1500,
    "sae_steps": 400,
    "n_name": 600,
    "n_test": 600,
    "n_train": 300,
    "p": 0.95,
    "l2": 0.5,
    "n_boot": 20,
}
SENSITIVITY = tuple((p, n, l2) for p in (0.8, 0.95) for n in (300, 1000) for l2 in (0.05, 0.5))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--out``, ``--report-dir``, ``--skip-sensitivity`` and the settings.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    add_common_arguments(parser)
    parser.add_argument(
        "--report-dir",
        default="",
        help="also write each analysis' report (report.md, bias.json, figures) here",
    )
    parser.add_argument(
        "--skip-sensitivity",
        action="store_true",
        help="skip the grid over strength, training size and L2 (full runs only)",
    )
    parser.add_argument("--p", type=float, default=None, help="correlation strength (0.95)")
    parser.add_argument("--n-train", type=int, default=None, help="probe training images (300)")
    parser.add_argument("--l2", type=float, default=None, help="probe L2 penalty (0.5)")
    parser.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates (200)")


def _targets(runs: dict) -> list[dict]:
    out = []
    for name, r in runs.items():
        rk, so, db, fa = r["ranking"], r["switch_off"], r["debias"], r["no_false_alarm"]
        rank = rk["planted_rank_among_non_target"]
        out += [
            target(
                f"{name}_ranking",
                f"'{r['planted']}' is flagged and ranks first among non-target concepts by "
                "causal effect, ahead of every other value of the target's attribute "
                "(value: its rank)",
                [rank if rank is not None else float("nan")],
                lambda v, ok=rk["planted_flagged"] and rk["ahead_of_every_rival"]: v == 1 and ok,
            ),
            target(
                f"{name}_switch_off_false_positives",
                f"switching '{r['planted']}' off at least halves the false-positive rate on "
                f"{so['group']} (value: after / before)",
                [so["ratio"]],
                lambda v: v <= 0.5,
                before=so["false_positive_rate_before"],
                after=so["false_positive_rate_after"],
            ),
            target(
                f"{name}_bias_is_real",
                "the biased probe's worst-group accuracy is >= 15 points below the "
                "unbiased-trained probe's (value: the gap)",
                [db["gap"]],
                lambda v: v >= 0.15,
                biased=db["biased_worst"],
                unbiased=db["unbiased_worst"],
            ),
            target(
                f"{name}_debias_closes_gap",
                "removing the top spurious concept closes >= half of the worst-group gap "
                "(value: fraction closed)",
                [db["gap_closed_fraction"]],
                lambda v: v >= 0.5,
                removed=db["removed"],
            ),
            target(
                f"{name}_debias_overall_not_lower",
                "overall accuracy on the unbiased test set after removal >= before "
                "(value: after - before)",
                [db["overall_after"] - db["overall_before"]],
                lambda v: v >= 0.0,
            ),
            target(
                f"{name}_no_false_alarm",
                f"the unbiased-trained probe's analysis flags no {r['group']} concept "
                "(value: how many it flags)",
                [len(fa["flagged_group_concepts"])],
                lambda v: v == 0,
                flagged=fa["flagged_unbiased"],
            ),
        ]
    return out


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark and return its report.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    dict
    """
    import time

    from vsae.analysis.bias import BiasConfig
    from vsae.analysis.bias_probe import ProbeConfig
    from vsae.analysis.models import ClipModel
    from vsae.bench.bias_world import (
        BIASED_SEED,
        NAME_SEED,
        PLANTS,
        SAE_SEED,
        TEST_SEED,
        UNBIASED_SEED,
        embed,
        measure_plant,
        sensitivity,
        train_and_name,
    )

    s = dict(QUICK if args.quick else FULL)
    for key in ("p", "n_train", "l2", "n_boot"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    t0 = time.perf_counter()
    clip = ClipModel("world:clip")
    report_dir = Path(args.report_dir) if args.report_dir else None
    cfg = BiasConfig(n_boot=s["n_boot"], probe=ProbeConfig(l2=s["l2"]))
    with tempfile.TemporaryDirectory(prefix="vsae-bench-bias-") as tmp:
        sae, metrics, table = train_and_name(
            clip, s["n_sae"], s["sae_steps"], s["n_name"], Path(tmp) / "sae"
        )
    names = sorted({c.name for c in table.valid})
    test = embed(clip, s["n_test"], TEST_SEED)
    train_u = embed(clip, s["n_train"], UNBIASED_SEED)
    runs, sens = {}, {}
    for plant in PLANTS:
        train_b = embed(clip, s["n_train"], BIASED_SEED, [plant.correlation.format(p=s["p"])])
        runs[plant.name] = measure_plant(
            sae, table, plant, s["p"], train_b, train_u, test, cfg, report_dir
        )
        if not args.quick and not args.skip_sensitivity:
            sens[plant.name] = sensitivity(sae, table, clip, plant, test, SENSITIVITY, n_boot=50)
    return make_report(
        "bias",
        settings={
            "quick": args.quick,
            **s,
            "seeds": {
                "sae": SAE_SEED,
                "naming": NAME_SEED,
                "biased_train": BIASED_SEED,
                "unbiased_train": UNBIASED_SEED,
                "test": TEST_SEED,
            },
            "sae": "topk, 256 latents, k=6, tiny-CLIP image embedding",
            "naming": "text-side, world vocabulary, default thresholds",
            "probe": "logistic regression, standardised features, balanced classes",
            "sensitivity_grid": [] if args.quick or args.skip_sensitivity else SENSITIVITY,
        },
        results={
            "sae": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "concept_names": names,
            "runs": runs,
            "sensitivity": sens,
            "seconds": time.perf_counter() - t0,
        },
        targets=_targets(runs),
    )
