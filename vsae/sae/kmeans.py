"""Deterministic k-means (k-means++ seeding, Lloyd iterations) in torch, chunked for memory."""

from __future__ import annotations

import torch
from torch import Tensor


def _sq_dists(x_SD: Tensor, c_KD: Tensor, chunk: int = 8192) -> Tensor:
    """Squared distances [S, K], computed in row chunks."""
    c_sq_K = c_KD.pow(2).sum(-1)
    out = []
    for start in range(0, x_SD.shape[0], chunk):
        x = x_SD[start : start + chunk]
        d = x.pow(2).sum(-1, keepdim=True) - 2 * x @ c_KD.t() + c_sq_K
        out.append(d.clamp_min_(0))
    return torch.cat(out)


def nearest(x_SD: Tensor, c_KD: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Index and squared distance of the nearest centroid of every row.

    Parameters
    ----------
    x_SD : Tensor
        Points [S, D].
    c_KD : Tensor
        Centroids [K, D].
    chunk : int
        Rows per distance block (bounds memory at chunk * K floats).

    Returns
    -------
    tuple of Tensor
        Long indices [S] and squared distances [S].
    """
    idx, dist = [], []
    c_sq_K = c_KD.pow(2).sum(-1)
    for start in range(0, x_SD.shape[0], chunk):
        x = x_SD[start : start + chunk]
        d = (x.pow(2).sum(-1, keepdim=True) - 2 * x @ c_KD.t() + c_sq_K).clamp_min_(0)
        m = d.min(-1)
        idx.append(m.indices)
        dist.append(m.values)
    return torch.cat(idx), torch.cat(dist)


def kmeans(
    x_SD: Tensor, k: int, iters: int = 25, seed: int = 0, seed_sample: int = 20_000
) -> Tensor:
    """Centroids [k, D] of ``x_SD``.

    Parameters
    ----------
    x_SD : Tensor
        Points, at least k of them.
    k : int
        Number of centroids.
    iters : int
        Lloyd iterations.
    seed : int
        Seed of the k-means++ seeding; the result is deterministic given it.
    seed_sample : int
        k-means++ runs on at most this many points (greedy seeding is O(S k D)).

    Returns
    -------
    Tensor
        Centroids ordered by cluster size, largest first (a stable, meaningful order).
    """
    S, D = x_SD.shape
    if S < k:
        raise ValueError(f"k-means needs at least k={k} points; got {S}")
    gen = torch.Generator().manual_seed(seed)
    x_SD = x_SD.float()
    pool = x_SD
    if S > max(seed_sample, k):
        pool = x_SD[torch.randperm(S, generator=gen)[: max(seed_sample, k)]]
    centroids = torch.empty(k, D)
    centroids[0] = pool[torch.randint(pool.shape[0], (1,), generator=gen)]
    best_P = (pool - centroids[0]).pow(2).sum(-1)
    for i in range(1, k):
        total = best_P.sum()
        if total <= 0:  # fewer distinct points than k: take any unused point
            pick = torch.randint(pool.shape[0], (1,), generator=gen)
        else:
            pick = torch.multinomial(best_P / total, 1, generator=gen)
        centroids[i] = pool[pick]
        best_P = torch.minimum(best_P, (pool - centroids[i]).pow(2).sum(-1))
    for _ in range(iters):
        assign_S, _ = nearest(x_SD, centroids)
        counts_K = torch.bincount(assign_S, minlength=k)
        sums_KD = torch.zeros(k, D).index_add_(0, assign_S, x_SD)
        alive = counts_K > 0
        new = centroids.clone()
        new[alive] = sums_KD[alive] / counts_K[alive, None]
        if torch.allclose(new, centroids, atol=1e-6):
            centroids = new
            break
        centroids = new
    assign_S, _ = nearest(x_SD, centroids)
    counts_K = torch.bincount(assign_S, minlength=k)
    order = torch.sort(counts_K, descending=True, stable=True).indices
    return centroids[order].contiguous()
