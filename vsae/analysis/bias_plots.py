"""Figures of a bias analysis: ranked concept effects with their intervals, and per-group
accuracy before and after debiasing. Both return matplotlib figures (Agg backend safe).
"""

from __future__ import annotations

import numpy as np


def _finite_err(value: float, ci: tuple[float, float], cap: float) -> tuple[float, float]:
    lo, hi = ci
    lo = value - cap if not np.isfinite(lo) else lo
    hi = value + cap if not np.isfinite(hi) else hi
    return max(value - lo, 0.0), max(hi - value, 0.0)


def effects_figure(result, top: int = 15):
    """The ranked concept effects with bootstrap intervals: left, the ranking key (the
    balanced-accuracy gain of switching the concept off); right, the mean logit change of
    switching it off (where it fires) and on (at its mean value, where it does not).
    Spurious (flagged) concepts in red, the target in grey.

    Parameters
    ----------
    result : BiasResult
    top : int
        The first ``top`` concepts of the ranking.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    effs = result.effects[:top]
    fig = Figure(figsize=(10.0, 0.38 * max(len(effs), 3) + 1.6))
    ax_g, ax_l = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(effs))[::-1]
    colours = ["0.6" if e.is_target else ("tab:red" if e.flagged else "tab:blue") for e in effs]
    gains = [e.off.gain for e in effs]
    g_cap = max([abs(v) for v in gains if np.isfinite(v)] + [0.01])
    g_err = np.array([_finite_err(e.off.gain, e.off.gain_ci, g_cap) for e in effs]).T
    ax_g.barh(y, gains, height=0.6, color=colours, xerr=g_err if len(effs) else None, capsize=2)
    ax_g.set_yticks(y)
    ax_g.set_yticklabels([e.name + (" (target)" if e.is_target else "") for e in effs])
    ax_g.axvline(0.0, color="k", lw=0.8)
    ax_g.set_xlabel("balanced-accuracy gain of switching it off")
    ax_g.set_title("ranking key (red: spurious, flagged)", fontsize=10)
    vals = [e.off.logit for e in effs]
    cap = max([abs(v) for v in vals if np.isfinite(v)] + [1.0])
    errs = np.array([_finite_err(e.off.logit, e.off.logit_ci, cap) for e in effs]).T
    ax_l.barh(
        y + 0.18,
        vals,
        height=0.36,
        color=colours,
        xerr=errs if len(effs) else None,
        capsize=2,
        label="off (where it fires)",
    )
    on_vals = [e.on.logit for e in effs]
    on_errs = np.array([_finite_err(e.on.logit, e.on.logit_ci, cap) for e in effs]).T
    ax_l.barh(
        y - 0.18,
        on_vals,
        height=0.36,
        color=colours,
        alpha=0.4,
        xerr=on_errs if len(effs) else None,
        capsize=2,
        label="on (at its mean value)",
    )
    ax_l.axvline(0.0, color="k", lw=0.8)
    ax_l.set_xlabel(f"mean change of the {result.target} logit")
    ax_l.set_title("logit change (95% bootstrap intervals)", fontsize=10)
    ax_l.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Concepts ranked by causal effect on the {result.target} probe", fontsize=11)
    fig.tight_layout()
    return fig


def accuracy_figure(result):
    """Bars of the probe's accuracy per group before and after removing concepts.

    Parameters
    ----------
    result : BiasResult

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    groups = sorted(result.before.by_group)
    fig = Figure(figsize=(max(6.0, 0.45 * len(groups) + 2.0), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    for off, acc, label in (
        (-0.2, result.before, "before"),
        (0.2, result.after, "after removing " + (", ".join(result.removed) or "nothing")),
    ):
        v = [acc.by_group[g]["accuracy"] for g in groups]
        err = np.array(
            [
                [v[i] - acc.by_group[g]["ci"][0], acc.by_group[g]["ci"][1] - v[i]]
                for i, g in enumerate(groups)
            ]
        ).T.clip(min=0)
        ax.bar(x + off, v, width=0.4, yerr=err if groups else None, capsize=2, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"worst group: {result.before.worst:.3f} ({result.before.worst_group}) before, "
        f"{result.after.worst:.3f} ({result.after.worst_group}) after",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
