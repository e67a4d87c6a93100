"""Markdown tables of a ``vsae bench speed`` JSON file (as in benchmarks/results/speed.md).

Usage: ``python -m vsae.bench.speed_table benchmarks/results/speed-DATE-cpu.json``
"""

from __future__ import annotations

import json
import sys


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _plan(plan: dict | None) -> str:
    """Which chunks (S sparse, D dense), tail and encoder ran sparse, and the cost ratio."""
    if not plan:
        return "-"
    chunks = "".join("S" if c else "D" for c in plan["sparse_chunks"])
    tail = {True: "S", False: "D", None: "-"}[plan["sparse_tail"]]
    enc = "S" if plan["sparse_encoder"] else "D"
    return f"{chunks} / {tail} / {enc} (r={plan['ratio']:.0f})"


def msae_tables(report: dict) -> list[str]:
    """The MSAE roofline rows (at init) and the trained-state row as Markdown lines."""
    rows = list(report.get("msae_roofline", []))
    trained = report.get("msae_trained")
    if not rows and not trained:
        return []
    out = [
        "",
        "| state | d | n | k0 | MSAE s/step | TopK s/step | GEMM s | GFLOP/s | roofline GFLOP "
        "| roofline s | MSAE / roofline | MSAE / TopK | positive fraction "
        "| chunks / tail / encoder |",
        "|" + "---|" * 14,
    ]
    for state, r in [*(("init", r) for r in rows), *([("trained", trained)] if trained else [])]:
        if "error" in r:
            out.append(f"| {state} | {r['d']} | {r['n']} | {r['k']} | error | | | | | | | | | |")
            continue
        out.append(
            f"| {state} | {r['d']} | {r['n']} | {r['k']} | {_fmt(r['msae_step_s_median'])} "
            f"| {_fmt(r['topk_step_s_median'])} | {_fmt(r['gemm_s_median'])} "
            f"| {r['gemm_flops_per_s'] / 1e9:.0f} | {r['roofline']['total_flops'] / 1e9:.1f} "
            f"| {_fmt(r['roofline_s'])} | **{r['ratio_to_roofline']:.2f}** "
            f"| **{r['msae_over_topk']:.2f}** | {r['positive_fraction']:.3f} "
            f"| {_plan(r.get('plan'))} |"
        )
    return out


def tables(report: dict) -> str:
    """The grid, the RA-SAE / TopK pairs, the encoder shares and the targets as Markdown.

    Parameters
    ----------
    report : dict
        A ``vsae bench speed`` JSON object.

    Returns
    -------
    str
        Markdown tables.
    """
    out = [
        "| arch | d | n | k | vsae s/step | vsae samples/s | reference s/step | speedup "
        "| vsae peak GiB | encoder share | fp32 check |",
        "|" + "---|" * 11,
    ]
    for r in report["results"]:
        v, ref = r["vsae"], r.get("reference", {})
        check = r.get("check")
        speedup = f"**{r['speedup']:.2f}x**" if "speedup" in r else "skipped*"
        share = f"{100 * v['encoder_share']:.0f}%" if "encoder_share" in v else "-"
        verdict = "-"
        if check:
            verdict = f"{check['max_rel_diff']:.1e} {'pass' if check['passed'] else 'FAIL'}"
            if check.get("tie"):
                f64 = check["recheck"]["float64"]["max"]
                verdict += f" (float32 tie; float64 {f64:.0e})"
        out.append(
            f"| {r['arch']} | {r['d']} | {r['n']} | {r['k']} | {_fmt(v.get('step_s_median'))} "
            f"| {v.get('samples_per_s', 0):.0f} | {_fmt(ref.get('step_s_median'))} | {speedup} "
            f"| {v.get('peak_mem_mb', 0) / 1024:.2f} | {share} | {verdict} |"
        )
    if report.get("ra_vs_topk"):
        out += ["", "| d | n | k | TopK s/step | RA-SAE s/step | RA-SAE / TopK |", "|" + "---|" * 6]
        for r in report["ra_vs_topk"]:
            out.append(
                f"| {r['d']} | {r['n']} | {r['k']} | {_fmt(r.get('topk_step_s_median'))} "
                f"| {_fmt(r.get('archetypal_step_s_median'))} "
                f"| **{r.get('ratio', 0):.2f}** |"
            )
    if report.get("encoder_share_at_recipe_batch"):
        out += [
            "",
            "| d | n | k | batch | TopK s/step | encoder s | encoder share |",
            "|" + "---|" * 7,
        ]
        for r in report["encoder_share_at_recipe_batch"]:
            out.append(
                f"| {r['d']} | {r['n']} | {r['k']} | {r['batch']} "
                f"| {_fmt(r.get('step_s_median'))} | {_fmt(r.get('encoder_s_median'))} "
                f"| {100 * r.get('encoder_share', 0):.0f}% |"
            )
    out += msae_tables(report)
    out += ["", "| target | values | result |", "|---|---|---|"]
    for t in report["targets"]:
        vals = ", ".join(f"{v:.2f}" for v in t["values"])
        verdict = {True: "pass", False: "**fail**", None: "not measured"}[t["passed"]]
        out.append(f"| {t['target']} | {vals} | {verdict} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the tables of the JSON file named by the first argument.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``): one path.

    Returns
    -------
    int
        0, or 2 with a usage line on stderr when no single path is given.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vsae.bench.speed_table SPEED_JSON", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        print(tables(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
