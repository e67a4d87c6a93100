"""How much one sparse code costs against one dense one, measured once per shape on this machine.

A sparse decode (``sparse.sparse_decode``: ``embedding_bag`` forward, sampled dots and a
column-grouped scatter backward) touches only the M kept codes but runs far below GEMM speed:
it reads one atom row per code. A dense decode of the same codes scattered into a [B, N]
matrix does three GEMMs (forward, code and dictionary gradients) over all B * N entries. The
sparse path is the cheaper one when ``ratio * M < B * N``, with ``ratio`` the cost of one
sparse entry over one dense entry. The ratio depends on the CPU, its caches, its load and the
dictionary's size (an [N, D] table that fits in cache is gathered much faster), so it is
measured, once per process and dictionary shape, on a small sample (:func:`sparse_cost_ratio`).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from vsae.sae import sparse

_CACHE: dict[tuple, float] = {}
SAMPLE_ROWS = 64  # rows of the calibration sample
SAMPLE_PER_ROW = 512  # sparse codes per row of the sample (at most N)


def _best_seconds(fn, repeats: int) -> float:
    fn()  # allocator and lazy-init warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_ratio(
    n_latents: int, d_in: int, dtype: torch.dtype, device: torch.device, repeats: int = 2
) -> float:
    """Measure the sparse / dense cost ratio per code on random data of this shape.

    Parameters
    ----------
    n_latents, d_in : int
        The dictionary's shape [N, D].
    dtype, device
        Of the dictionary.
    repeats : int
        Timed repeats of each side (the fastest counts: load only ever slows a run down).

    Returns
    -------
    float
        ``(seconds per sparse code, decode forward + both gradients) /
        (seconds per dense code entry, the three GEMMs of a dense decode)``.
    """
    gen = torch.Generator().manual_seed(0)
    rows, per_row = SAMPLE_ROWS, min(SAMPLE_PER_ROW, n_latents)
    kw = dict(dtype=dtype, device=device)
    W_ND = torch.randn(n_latents, d_in, generator=gen).to(**kw)
    codes_BN = torch.randn(rows, n_latents, generator=gen).to(**kw)
    g_BD = torch.randn(rows, d_in, generator=gen).to(**kw)

    def dense() -> None:
        codes_BN @ W_ND
        g_BD @ W_ND.T
        codes_BN.T @ g_BD

    cols_M = torch.randint(0, n_latents, (rows * per_row,), generator=gen).to(device)
    rows_M = torch.arange(rows, device=device).repeat_interleave(per_row)
    vals_M = torch.rand(rows * per_row, generator=gen).to(**kw).requires_grad_(True)
    W_leaf_ND = W_ND.clone().requires_grad_(True)

    def sparse_pass() -> None:
        sel = sparse.row_grouped(rows_M, cols_M, rows, n_latents)  # fresh: its column sort counts
        out_BD = sparse.sparse_decode(sel, vals_M, W_leaf_ND)
        vals_M.grad = W_leaf_ND.grad = None
        out_BD.backward(g_BD)

    with torch.enable_grad():
        t_sparse = _best_seconds(sparse_pass, repeats)
    t_dense = _best_seconds(dense, repeats)
    per_sparse = t_sparse / (rows * per_row)
    per_dense = max(t_dense, 1e-9) / (rows * n_latents)
    return per_sparse / per_dense


def sparse_cost_ratio(atoms_ND: Tensor) -> float:
    """The calibrated ratio for ``atoms_ND``'s shape, dtype and device (measured on first use).

    Parameters
    ----------
    atoms_ND : Tensor
        The dictionary [N, D] that codes are decoded with.

    Returns
    -------
    float
        See :func:`measure_ratio`; cached for the process.
    """
    N, D = atoms_ND.shape
    key = (N, D, atoms_ND.dtype, atoms_ND.device.type)
    if key not in _CACHE:
        _CACHE[key] = measure_ratio(N, D, atoms_ND.dtype, atoms_ND.device)
    return _CACHE[key]
