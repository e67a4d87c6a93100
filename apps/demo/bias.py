"""The Bias tab: choose a target and a group; see which named concepts a linear probe leans on
(ranked by intervention, with bootstrap intervals) and its per-group accuracy before and after
the top spurious concept is removed.

Layout and callbacks only: every number and both figures come from
:func:`vsae.analysis.analyse_bias` on the bias set the demo was started with (a probe trained
on its training split, analysed on its test split). Results are memoised per (target, group):
they are deterministic (seeded) and read-only, so sessions may share them.
"""

from __future__ import annotations

import functools

import gradio as gr

from vsae.analysis import BiasError
from vsae.analysis.bias_set import BiasSet

from .background import Background, LoadError
from .config import DemoConfig
from .messages import message_box, ok, problem

N_BOOT = 50  # bootstrap replicates per analysis: a few seconds on a 2-core CPU
N_EFFECTS = 12  # concepts shown in the effects plot
NO_GROUP = "(none: target / not target)"
CONCURRENCY_ID = "bias"  # CPU-bound (probe refits); the SAE is used read-only


def _cell(acc: dict) -> str:
    lo, hi = acc["ci"]
    few = " (few)" if acc.get("few") else ""
    return f"{acc['accuracy']:.3f} [{lo:.2f}, {hi:.2f}]{few}"


def accuracy_table(res) -> str:
    """The probe's accuracy per group, before and after debiasing, as a Markdown table.

    Parameters
    ----------
    res : BiasResult

    Returns
    -------
    str
    """
    rows = []
    for g in sorted(res.before.by_group):
        b, a = res.before.by_group[g], res.after.by_group[g]
        rows.append(f"| {g.replace('|', ' &#124; ')} | {b['n']} | {_cell(b)} | {_cell(a)} |")
    ob, oa = res.before, res.after
    rows.append(
        f"| **all** | {res.n_images} | {ob.overall:.3f} [{ob.overall_ci[0]:.2f}, "
        f"{ob.overall_ci[1]:.2f}] | {oa.overall:.3f} [{oa.overall_ci[0]:.2f}, "
        f"{oa.overall_ci[1]:.2f}] |"
    )
    removed = ", ".join(res.removed) or "nothing"
    head = (
        f"#### Accuracy per group (95% intervals), before / after removing {removed}\n"
        "| group | images | before | after |\n|---|---|---|---|\n"
    )
    return head + "\n".join(rows)


def _summary(res) -> str:
    top = res.effects[0] if res.effects else None
    flagged = ", ".join(f"**{n}**" for n in res.spurious) or "none"
    lines = [
        f"Probe for **{res.target}** trained on {res.n_train} images, analysed on "
        f"{res.n_images}; groups: {res.group or 'target / not target'}.",
        f"Spurious concepts (switching them off makes the probe more often right, beyond the "
        f"bootstrap noise): {flagged}.",
    ]
    if top is not None:
        lines.append(
            f"Largest effect: **{top.name}** (accuracy gain {top.off.gain:+.3f} when switched "
            f"off where it fires, logit change {top.off.logit:+.3f})."
        )
    lines.append(
        f"Worst group: {res.before.worst_group} at {res.before.worst:.3f} before, "
        f"{res.after.worst_group} at {res.after.worst:.3f} after removing "
        f"{', '.join(res.removed) or 'nothing'}."
    )
    return "\n\n".join(lines)


def build(cfg: DemoConfig, data: BiasSet, sae, concepts) -> Background:
    """Add the Bias tab to the enclosing ``gr.Blocks``.

    Parameters
    ----------
    cfg
        The per-model concurrency.
    data
        The bias set (training and analysed embeddings with attributes; shared, read-only).
    sae
        The image SAE whose input the embeddings are (shared, read-only).
    concepts
        Its ``concepts.json`` table.

    Returns
    -------
    Background
        The analysis of the set's suggested target and group, to run once the page is served
        (so the first click finds it done).
    """
    attrs = data.attributes()
    targets = [f"{a}={v}" for a, values in attrs.items() for v in values]
    target0 = str(data.meta.get("target") or targets[0])
    group0 = str(data.meta.get("group") or NO_GROUP)

    data.probe_config()  # a bad meta["probe"] is refused at start, not at the first click

    @functools.lru_cache(maxsize=32)
    def analysed(target: str, group: str | None):
        return data.analyse(sae, target, group, concepts, n_boot=N_BOOT)

    default_group = None if group0 == NO_GROUP else group0
    first = Background(
        f"bias analysis of {target0} by {default_group or 'target'}",
        lambda: analysed(target0, default_group),
    )

    def run(target, group):
        target = str(target or "").strip()
        if not target:
            return problem("Choose a target: attribute=value, e.g. shape=square.", 4)
        group = None if group in (None, "", NO_GROUP) else str(group)
        try:
            if (target, group) == (target0, default_group):
                res = first.get()  # it may still be running behind the page: wait for it
            else:
                res = analysed(target, group)
        except (BiasError, LoadError) as e:
            return problem(str(e), 4)
        if res.warnings:
            note = gr.update(value="**Note:** " + " ".join(res.warnings), visible=True)
        else:
            note = ok()
        return (
            note,
            _summary(res),
            res.effects_figure(top=N_EFFECTS),
            accuracy_table(res),
            res.accuracy_figure(),
        )

    with gr.Tab("Bias", id="bias"):
        gr.Markdown(
            "Which named concepts does a classifier lean on? A linear probe learns the target "
            f"from the training split ({len(data.train_labels)} images"
            + (f"; {data.meta['note']}" if data.meta.get("note") else "")
            + f"); on the test split ({len(data.test_labels)} images) each concept is switched "
            "off (and on) in the SAE code and the probe re-run. Concepts are ranked by the "
            "accuracy gain of switching them off; then the top spurious one is removed from "
            f"every test embedding (debiasing at test time). Intervals: {N_BOOT} bootstrap "
            "replicates, the probe refitted in each."
        )
        with gr.Row():
            target = gr.Dropdown(
                targets,
                value=target0,
                allow_custom_value=True,
                filterable=True,
                label="target (attribute=value)",
                elem_id="bias-target",
            )
            group = gr.Dropdown(
                [NO_GROUP, *attrs],
                value=group0,
                allow_custom_value=True,
                label="group by",
                elem_id="bias-group",
            )
            go = gr.Button("Analyse", variant="primary", elem_id="bias-go")
        msg = message_box("bias-msg")
        summary = gr.Markdown(elem_id="bias-summary")
        effects = gr.Plot(label="concept effects", format="png", elem_id="bias-effects")
        with gr.Row():
            table = gr.Markdown(elem_id="bias-accuracy")
            accuracy = gr.Plot(label="accuracy per group", format="png", elem_id="bias-acc-plot")
        go.click(
            run,
            [target, group],
            [msg, summary, effects, table, accuracy],
            api_name="bias",
            concurrency_id=CONCURRENCY_ID,
            concurrency_limit=cfg.concurrency_per_model,
        )
    return first
