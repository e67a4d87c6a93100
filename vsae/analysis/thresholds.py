"""Default validity thresholds of a named concept, and how they were chosen.

The defaults were chosen by :func:`choose_thresholds` on the tiny world's *selection* split
(renders of seed :data:`SELECTION_SEED`), never on the split that ``vsae bench concepts``
reports on (seed 4242) nor the training seed. ``docs/concepts.md`` explains the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from vsae.analysis.concepts import ConceptTable, Thresholds
from vsae.analysis.labels import share_with

SELECTION_SEED = 777
# Chosen by choose_thresholds on the selection split in the committed full run of
# `vsae bench concepts` (benchmarks/results/concepts-2026-12-02-cpu.json, "chosen_on_selection").
DEFAULTS: dict[str, Thresholds] = {
    "text": Thresholds(min_score=0.0, min_margin=0.20, min_freq=0.01, min_agreement=0.99),
    "image": Thresholds(min_score=0.0, min_margin=0.20, min_freq=0.0, min_agreement=0.90),
}
PURE = 0.9  # a latent named v is precise when >= 90% of its top images carry v


def default_thresholds(method: str) -> Thresholds:
    """The default thresholds of a naming method.

    Parameters
    ----------
    method : str
        ``text`` or ``image``.

    Returns
    -------
    Thresholds

    Raises
    ------
    ValueError
        For another method.
    """
    if method not in DEFAULTS:
        raise ValueError(f"naming method {method!r}; expected one of {sorted(DEFAULTS)}")
    return DEFAULTS[method]


def precision_coverage(
    table: ConceptTable, labels: Sequence[dict], values: Sequence[str], th: Thresholds
) -> tuple[float, float, int]:
    """Naming precision and coverage of a table under thresholds ``th``.

    Parameters
    ----------
    table : ConceptTable
        Names with ``top_ids`` on labelled images.
    labels : sequence of dict
        Labels of those images.
    values : sequence of str
        The label values a latent may be named after (e.g. the world's attribute values).
    th : Thresholds

    Returns
    -------
    (float, float, int)
        Fraction of valid value-named latents whose top images carry the value at least
        :data:`PURE` of the time (nan if none), fraction of ``values`` with a valid latent,
        and the number of valid value-named latents.
    """
    vals = set(values)
    valid = [
        c
        for c in table.concepts
        if c.name in vals and th.passes(c.score, c.margin, c.freq, c.agreement)
    ]
    if not valid:
        return float("nan"), 0.0, 0
    pure = [share_with(np.array(c.top_ids), labels, c.name) >= PURE for c in valid]
    covered = {c.name for c in valid}
    return float(np.mean(pure)), len(covered) / len(vals), len(valid)


def choose_thresholds(
    table: ConceptTable,
    labels: Sequence[dict],
    values: Sequence[str],
    min_precision: float = 0.9,
) -> tuple[Thresholds, dict]:
    """Grid-search thresholds: the widest coverage whose precision reaches ``min_precision``.

    Parameters
    ----------
    table : ConceptTable
        Names on the selection split.
    labels : sequence of dict
    values : sequence of str
    min_precision : float
        Precision floor; when no setting reaches it, the highest precision wins.

    Returns
    -------
    (Thresholds, dict)
        The thresholds and ``{precision, coverage, n_valid}`` they give on the split.
    """
    best: tuple | None = None
    grid = itertools.product(
        (0.0, 0.3, 0.5),
        (0.0, 0.04, 0.08, 0.10, 0.12, 0.16, 0.2),
        (0.0, 0.005, 0.01),
        (0.0, 0.9, 0.95, 0.99),
    )
    for score, margin, freq, agree in grid:
        th = Thresholds(min_score=score, min_margin=margin, min_freq=freq, min_agreement=agree)
        prec, cov, n = precision_coverage(table, labels, values, th)
        if n == 0:
            continue
        key = (prec >= min_precision, cov if prec >= min_precision else prec, prec)
        if best is None or key > best[0]:
            best = (key, th, {"precision": prec, "coverage": cov, "n_valid": n})
    if best is None:
        return Thresholds(), {"precision": float("nan"), "coverage": 0.0, "n_valid": 0}
    return best[1], best[2]
