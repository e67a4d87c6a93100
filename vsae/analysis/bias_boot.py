"""Bootstrap resampling for the bias analysis: resample counts as a weight matrix, weighted
means of several masks at once, and percentile intervals.

A replicate ``b`` resamples the ``N`` images with replacement; ``counts_BN[b, i]`` is how often
image ``i`` was drawn. A weighted mean over a mask is then one matrix product for every
replicate and every mask together.
"""

from __future__ import annotations

import numpy as np
import torch


def resample_counts(n: int, n_boot: int, seed: int) -> torch.Tensor:
    """How often each of ``n`` items is drawn in each of ``n_boot`` bootstrap resamples.

    Parameters
    ----------
    n : int
        Items (images).
    n_boot : int
        Replicates.
    seed : int

    Returns
    -------
    Tensor [n_boot, n] float32
        Each row sums to ``n``.
    """
    g = torch.Generator().manual_seed(int(seed))
    idx_BN = torch.randint(0, n, (n_boot, n), generator=g)
    counts_BN = torch.zeros(n_boot, n)
    counts_BN.scatter_add_(1, idx_BN, torch.ones(n_boot, n))
    return counts_BN


def masked_means(
    values_BN: torch.Tensor, counts_BN: torch.Tensor, masks_NG: torch.Tensor
) -> torch.Tensor:
    """Weighted mean of ``values`` over each mask, per replicate.

    Parameters
    ----------
    values_BN : Tensor [B, N] or [N]
        Values per replicate (or the same for all).
    counts_BN : Tensor [B, N]
        Resample counts (a row of ones is the plain sample).
    masks_NG : Tensor [N, G] float
        One column per subset.

    Returns
    -------
    Tensor [B, G]
        nan where a replicate drew no item of a subset.
    """
    if values_BN.ndim == 1:
        values_BN = values_BN.expand_as(counts_BN)
    num_BG = (counts_BN * values_BN) @ masks_NG
    den_BG = counts_BN @ masks_NG
    return torch.where(den_BG > 0, num_BG / den_BG.clamp_min(1e-12), torch.nan)


def interval(samples: np.ndarray | torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (nan replicates dropped).

    Parameters
    ----------
    samples : array [B]
    level : float
        Coverage, e.g. 0.95.

    Returns
    -------
    (float, float)
        ``(nan, nan)`` when no replicate is finite.
    """
    a = np.asarray(samples, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(a, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
