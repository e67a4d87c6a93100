"""Markdown table and plots of the quality benchmark's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4f}"
    return str(x)


def write_plots(results: dict[str, Any], out: Path) -> list[str]:
    """FVU and cosine against L0 (tiny world), stability bars, identifiability bars.

    Returns
    -------
    list of str
        File names of the written PNGs, relative to ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = results["suites"]
    written = []
    world = suites.get("world")
    if world:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for v in world["variants"].values():
            pts = sorted((p for p in v["points"] if p.get("k", 1) != 0), key=lambda p: p["l0"])
            l0 = [p["l0"] for p in pts]
            axes[0].plot(l0, [p["fvu"] for p in pts], marker="o", label=v["label"])
            axes[1].plot(l0, [p["cos"] for p in pts], marker="o", label=v["label"])
        names = ("FVU (lower is better)", "cosine (higher is better)")
        for ax, metric in zip(axes, names, strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("L0 (active latents per embedding)")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Tiny-world CLIP image embeddings: reconstruction against sparsity")
        fig.tight_layout()
        fig.savefig(out / "pareto.png", dpi=110)
        plt.close(fig)
        written.append("pareto.png")
    for suite, key, title in (
        ("stability", "stability", "Dictionary stability over 3 seeds (Hungarian, mean pairwise)"),
        ("identifiability", "identifiability", "Identifiability (best latent + threshold)"),
    ):
        res = suites.get(suite)
        if not res:
            continue
        labels = [v["label"] for v in res["variants"].values()]
        values = [v[key] for v in res["variants"].values()]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.barh(labels, values, color="tab:blue")
        if suite == "identifiability":
            ax.axvline(res["chance"], color="k", ls="--", lw=1, label="chance")
            ax.legend()
        ax.set_xlim(0, 1)
        ax.set_xlabel(key)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out / f"{suite}.png", dpi=110)
        plt.close(fig)
        written.append(f"{suite}.png")
    return written


def _table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def write_markdown(results: dict[str, Any], path: Path, plots: list[str]) -> None:
    """Every number of the run as Markdown tables, the targets first."""
    run = results["run"]
    lines = [
        "# vsae quality benchmark",
        "",
        f"- command: `{run['command']}`",
        f"- date: {run['date']}; machine: {run['machine']}; device: {run['device']}",
        f"- wall time: {run['seconds']} s ({run['suite_seconds']})",
        "",
        "## Targets",
        "",
    ]
    rows = [
        {
            "target": t["name"],
            "claim": t["claim"],
            "pass": {True: "pass", False: "FAIL", None: "not run"}[t["pass"]],
            "measured / reason": t["reason"]
            or ", ".join(
                f"{k}={_fmt(v)}" for k, v in t["measured"].items() if not isinstance(v, list)
            ),
        }
        for t in results["targets"]
    ]
    lines += _table(rows, ["target", "claim", "pass", "measured / reason"])
    suites = results["suites"]
    for suite, cols in (
        ("flat", ["label", "mmcs", "fvu", "cos", "l0", "dead_frac"]),
        ("hierarchy", ["label", "absorption", "mmcs_parents", "mmcs_children", "fvu", "l0"]),
        ("identifiability", ["label", "identifiability", "identifiability_min", "mmcs", "l0"]),
        ("stability", ["label", "stability", "shared_fraction"]),
    ):
        if suite in suites:
            lines += ["", f"## {suite}", ""]
            lines += _table(list(suites[suite]["variants"].values()), cols)
    if "identifiability" in suites:
        lines += ["", f"Identifiability chance level: {suites['identifiability']['chance']:.4f}"]
    if "world" in suites:
        w = suites["world"]
        zs = ", ".join(f"{k} {v:.3f}" for k, v in w["zero_shot_original"].items())
        lines += [
            "",
            "## tiny world (CLIP image embeddings)",
            "",
            f"Data: {w['data']}; target-sparsity k = {w['k_target']}; original zero-shot "
            f"accuracy {zs}",
            "",
        ]
        rows = []
        for v in w["variants"].values():
            for p in v["points"]:
                rows.append({"variant": v["label"], "k / l1": p.get("k", p.get("l1_coef")), **p})
        lines += _table(
            rows, ["variant", "k / l1", "l0", "sparsity", "fvu", "cos", "zero_shot_kept"]
        )
        lines += ["", "k = 0 is the MSAE's dense ReLU path."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    path.write_text("\n".join(lines) + "\n")
