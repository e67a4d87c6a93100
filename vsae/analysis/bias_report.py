"""The report of a bias analysis: ``report.md`` with the figures, ``bias.json``, and the probe
(``probe.safetensors`` + ``probe.json``) in one folder.
"""

from __future__ import annotations

import json
from pathlib import Path


def _ci(ci) -> str:
    lo, hi = ci
    return f"[{lo:.3g}, {hi:.3g}]"


def markdown(result, top: int = 15) -> str:
    """The report's Markdown text (figures referenced as ``effects.png``, ``accuracy.png``).

    Parameters
    ----------
    result : BiasResult
    top : int
        Rows of the effect and association tables.

    Returns
    -------
    str
    """
    r = result
    lines = [
        f"# Bias analysis: {r.target}" + (f", groups by {r.group}" if r.group else ""),
        "",
        f"{r.n_images} images analysed; probe: "
        + (
            f"trained by vsae on {r.n_train} images ({r.probe.settings})"
            if r.n_train
            else f"given ({r.probe.settings.get('file', 'weights')})"
        ),
        "",
        "Spurious concepts (switch-off interval excludes zero, not the target): "
        + (", ".join(r.spurious) or "none"),
        "",
    ]
    for w in r.warnings:
        lines.append(f"- warning: {w}")
    lines += [
        "",
        "## Concepts ranked by causal effect",
        "",
        "Switched off where they fire and on at their mean firing value where they do not, "
        "decoded with the SAE's error term kept; the probe re-run.",
        "",
        "![effects](effects.png)",
        "",
        "Ranked by the gain: the change of the balanced accuracy of all analysed images when "
        "the concept is switched off where it fires (positive: the probe leaned on it where "
        "the labels say it should not).",
        "",
        "| rank | concept | latents | fires on | gain | interval | off: logit change | "
        "interval | flips | on: logit change | interval | flips | flagged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, e in enumerate(r.effects[:top], 1):
        name = e.name + (" (target)" if e.is_target else "")
        lines.append(
            f"| {i} | {name} | {', '.join(map(str, e.latents))} | {e.fire_rate:.3f} | "
            f"{e.off.gain:+.4f} | {_ci(e.off.gain_ci)} | {e.off.logit:.3f} | "
            f"{_ci(e.off.logit_ci)} | {e.off.flip:.3f} | "
            f"{e.on.logit:.3f} | {_ci(e.on.logit_ci)} | {e.on.flip:.3f} | "
            f"{'yes' if e.flagged else ''} |"
        )
    shown = [e for e in r.effects if not e.is_target][:3]
    if shown:
        lines += [
            "",
            "Per group, switching off (mean logit change / fraction of predictions that flip "
            "on the group's images where the concept fires / the group's accuracy gain):",
            "",
            "| group | " + " | ".join(e.name for e in shown) + " |",
            "| --- |" + " --- |" * len(shown),
        ]
        for g in sorted(r.before.by_group):
            cells = []
            for e in shown:
                c = e.off_by_group.get(g)
                if c is None or c.n == 0:
                    cells.append("-")
                else:
                    few = " (few)" if c.few else ""
                    cells.append(f"{c.logit:+.2f} / {c.flip:.2f} / {c.gain:+.2f}, n={c.n}{few}")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Accuracy per group, before and after removing " + (", ".join(r.removed) or "nothing"),
        "",
        "![accuracy](accuracy.png)",
        "",
        f"Overall {r.before.overall:.3f} {_ci(r.before.overall_ci)} -> "
        f"{r.after.overall:.3f} {_ci(r.after.overall_ci)}; worst group "
        f"{r.before.worst_group} {r.before.worst:.3f} -> {r.after.worst_group} "
        f"{r.after.worst:.3f}.",
        "",
        "| group | n | before | interval | after | interval |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in sorted(r.before.by_group):
        b, a = r.before.by_group[g], r.after.by_group[g]
        few = " (few)" if b["few"] else ""
        lines.append(
            f"| {g}{few} | {b['n']} | {b['accuracy']:.3f} | {_ci(b['ci'])} | "
            f"{a['accuracy']:.3f} | {_ci(a['ci'])} |"
        )
    lines += [
        "",
        "## Concept-group association",
        "",
        "On the probe's training data. Firing rate and mean activation inside the group vs "
        "outside, difference and ratio with bootstrap intervals.",
        "",
        "| concept | split | group | rate in | rate out | rate diff | interval | rate ratio | "
        "mean diff | interval |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in r.associations[:top]:
        lines.append(
            f"| {a.concept} | {a.split} | {a.group} | {a.rate_in:.3f} | {a.rate_out:.3f} | "
            f"{a.rate_diff:.3f} | {_ci(a.rate_diff_ci)} | {a.rate_ratio:.3g} | "
            f"{a.mean_diff:.3g} | {_ci(a.mean_diff_ci)} |"
        )
    return "\n".join(lines) + "\n"


def write_report(result, out: str | Path) -> Path:
    """Write ``report.md``, ``bias.json``, ``effects.png``, ``accuracy.png`` and the probe.

    Parameters
    ----------
    result : BiasResult
    out : str or Path
        Folder, created if needed.

    Returns
    -------
    Path
        ``out / "report.md"``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.effects_figure().savefig(out / "effects.png", dpi=110)
    result.accuracy_figure().savefig(out / "accuracy.png", dpi=110)
    result.probe.save(out)
    (out / "bias.json").write_text(json.dumps(result.to_dict(), indent=1, default=float) + "\n")
    path = out / "report.md"
    path.write_text(markdown(result))
    return path
