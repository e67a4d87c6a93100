"""Concept-group association: per concept and group, the mean activation and the firing rate
inside the group and outside it, their difference and ratio, with bootstrap intervals.

A concept's activation on an image is the sum of its latents' codes; it fires when any of
them does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vsae.analysis.bias_boot import interval


@dataclass(frozen=True)
class Association:
    """How one concept's activity differs between a group and the other images.

    Attributes
    ----------
    concept : str
        Concept name.
    split : str
        What the group is a value of: ``"target"`` or the group attribute.
    group : str
        The group (``circle`` / ``not circle`` for the target, or a value such as ``red``).
    n_in, n_out : int
        Images in the group and outside it.
    mean_in, mean_out : float
        Mean activation inside and outside.
    mean_diff, mean_ratio : float
        ``mean_in - mean_out`` and ``mean_in / mean_out`` (inf when ``mean_out`` is 0).
    mean_diff_ci, mean_ratio_ci : (float, float)
        Bootstrap intervals.
    rate_in, rate_out : float
        Firing rates inside and outside.
    rate_diff, rate_ratio : float
        Their difference and ratio.
    rate_diff_ci, rate_ratio_ci : (float, float)
        Bootstrap intervals.
    few : bool
        The group has fewer images than the analysis' minimum: its intervals are reported as
        the whole range.
    """

    concept: str
    split: str
    group: str
    n_in: int
    n_out: int
    mean_in: float
    mean_out: float
    mean_diff: float
    mean_diff_ci: tuple[float, float]
    mean_ratio: float
    mean_ratio_ci: tuple[float, float]
    rate_in: float
    rate_out: float
    rate_diff: float
    rate_diff_ci: tuple[float, float]
    rate_ratio: float
    rate_ratio_ci: tuple[float, float]
    few: bool = False


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(1e-12), torch.where(a > 0, torch.inf, torch.nan))


def _group_means(counts_BN: torch.Tensor, v_NC: torch.Tensor, m_N: torch.Tensor) -> torch.Tensor:
    den_B1 = (counts_BN @ m_N).unsqueeze(1)
    return (counts_BN @ (v_NC * m_N[:, None])) / den_B1.clamp_min(1e-12)


def associations(
    codes_NL: torch.Tensor,
    concepts: Mapping[str, Sequence[int]],
    splits: Mapping[str, Sequence[str]],
    counts_BN: torch.Tensor,
    min_group: int = 30,
    level: float = 0.95,
) -> list[Association]:
    """Association of every concept with every group of every split, ranked.

    Parameters
    ----------
    codes_NL : Tensor [N, L]
        SAE codes of the images.
    concepts : mapping
        Concept name -> latents.
    splits : mapping
        Split name -> each image's group (e.g. ``{"target": ["circle", "not circle", ...],
        "colour": ["red", ...]}``).
    counts_BN : Tensor [B, N]
        Bootstrap resample counts.
    min_group : int
        Groups smaller than this get the whole range as intervals (``few``).
    level : float
        Interval coverage.

    Returns
    -------
    list of Association
        Ranked by the absolute firing-rate difference, largest first.
    """
    names = list(concepts)
    act_NC = torch.stack([codes_NL[:, list(concepts[c])].sum(1) for c in names], 1).float()
    fire_NC = torch.stack([(codes_NL[:, list(concepts[c])] > 0).any(1) for c in names], 1).float()
    ones_1N = torch.ones(1, codes_NL.shape[0])
    out = []
    for split, groups in splits.items():
        g_arr = np.asarray(groups)
        for g in sorted(set(groups)):
            m = torch.from_numpy(g_arr == g).float()
            n_in, n_out = int(m.sum()), int((1 - m).sum())
            if n_in == 0 or n_out == 0:
                continue
            masks_N2 = torch.stack([m, 1 - m], 1)
            few = n_in < min_group or n_out < min_group
            stats = {}
            for key, v_NC in (("mean", act_NC), ("rate", fire_NC)):
                # [B, C, 2]: per replicate and concept, the weighted mean inside / outside
                point = torch.stack(
                    [_group_means(ones_1N, v_NC, masks_N2[:, j]) for j in (0, 1)], -1
                )
                boot = torch.stack(
                    [_group_means(counts_BN, v_NC, masks_N2[:, j]) for j in (0, 1)], -1
                )
                stats[key] = (point[0], boot.transpose(0, 1))
            for c, name in enumerate(names):
                rec = {}
                for key in ("mean", "rate"):
                    p, b = stats[key][0][c], stats[key][1][c]
                    diff, ratio = p[0] - p[1], _ratio(p[0], p[1])
                    if few:
                        lo_hi = (-np.inf, np.inf) if key == "mean" else (-1.0, 1.0)
                        rec[key] = (p, diff, lo_hi, ratio, (0.0, np.inf))
                    else:
                        d_ci = interval(b[:, 0] - b[:, 1], level)
                        r_ci = interval(_ratio(b[:, 0], b[:, 1]), level)
                        rec[key] = (p, diff, d_ci, ratio, r_ci)
                mp, md, mdci, mr, mrci = rec["mean"]
                rp, rd, rdci, rr, rrci = rec["rate"]
                out.append(
                    Association(
                        name,
                        split,
                        str(g),
                        n_in,
                        n_out,
                        float(mp[0]),
                        float(mp[1]),
                        float(md),
                        mdci,
                        float(mr),
                        mrci,
                        float(rp[0]),
                        float(rp[1]),
                        float(rd),
                        rdci,
                        float(rr),
                        rrci,
                        few,
                    )
                )
    return sorted(out, key=lambda a: -abs(a.rate_diff))
