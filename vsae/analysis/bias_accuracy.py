"""Accuracy of a probe overall, per evaluation group and in its worst group, with bootstrap
intervals; used before and after removing concepts (debiasing at test time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vsae.analysis.bias_boot import interval


@dataclass(frozen=True)
class GroupAccuracy:
    """Accuracy of one set of predictions.

    Attributes
    ----------
    overall : float
        Fraction correct over all images.
    overall_ci : (float, float)
        Bootstrap interval.
    by_group : dict of str to dict
        Group -> ``{"n", "accuracy", "ci", "few"}``; a group with fewer images than the
        analysis' minimum has ``few`` set and the interval (0, 1).
    worst_group : str
        The group with the lowest accuracy (among groups that are not ``few``, when any is).
    worst : float
        Its accuracy.
    """

    overall: float
    overall_ci: tuple[float, float]
    by_group: dict
    worst_group: str
    worst: float

    def to_dict(self) -> dict:
        """JSON form.

        Returns
        -------
        dict
        """
        return {
            "overall": self.overall,
            "overall_ci": list(self.overall_ci),
            "worst_group": self.worst_group,
            "worst": self.worst,
            "by_group": {g: {**v, "ci": list(v["ci"])} for g, v in sorted(self.by_group.items())},
        }


def group_accuracy(
    pred_N: torch.Tensor,
    y_N: torch.Tensor,
    groups: Sequence[str],
    counts_BN: torch.Tensor,
    min_group: int = 30,
    level: float = 0.95,
) -> GroupAccuracy:
    """Accuracy overall and per group, with bootstrap intervals.

    Parameters
    ----------
    pred_N, y_N : Tensor [N] bool
        Predictions and truth.
    groups : sequence of str
        Each image's group.
    counts_BN : Tensor [B, N]
        Bootstrap resample counts.
    min_group : int
        Smaller groups are marked ``few`` with the interval (0, 1).
    level : float

    Returns
    -------
    GroupAccuracy
    """
    correct_N = (pred_N == y_N).float()
    overall_B = (counts_BN @ correct_N) / counts_BN.sum(1)
    g_arr = np.asarray(groups)
    by_group = {}
    for g in sorted(set(groups)):
        m = torch.from_numpy(g_arr == g).float()
        n = int(m.sum())
        acc = float((correct_N * m).sum() / n)
        few = n < min_group
        if few:
            ci = (0.0, 1.0)
        else:
            acc_B = (counts_BN @ (correct_N * m)) / (counts_BN @ m).clamp_min(1e-12)
            ci = interval(acc_B, level)
        by_group[g] = {"n": n, "accuracy": acc, "ci": ci, "few": few}
    pool = {g: v for g, v in by_group.items() if not v["few"]} or by_group
    worst = min(pool, key=lambda g: pool[g]["accuracy"])
    return GroupAccuracy(
        float(correct_N.mean()),
        interval(overall_B, level),
        by_group,
        worst,
        pool[worst]["accuracy"],
    )
