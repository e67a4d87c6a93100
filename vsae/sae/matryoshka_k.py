"""Nested-k Matryoshka SAE (MSAE, Zaigrajew et al. 2025).

One dictionary and one pre-activation. Level i keeps the top k_i codes; its loss is the
batch FVU of that reconstruction; the total is a weighted mean over levels. A last level
k = n is the dense ReLU path.

Training (``loss``) makes one selection for every level: the sorted top-K of each row, K the
widest sparse level. The top-k_i set of every level is its first k_i ranks, so level i adds
only the "chunk" ranked k_{i-1}..k_i - 1 to level i-1's reconstruction. Only positive codes
contribute anything, so only they are decoded. Each chunk, the dense level's codes beyond the
top K (the "tail") and the encoder gradient then take the sparse or the dense path, whichever
is cheaper by a cost model calibrated on this machine (``vsae.sae.sparse_cost``): see
``MatryoshkaKSAE.plan``. Every sparse chunk and the sparse tail are decoded by one call
(``sparse.sparse_decode`` with one bag per row and chunk), so their forward, sampled-dot and
scatter kernels run once per step, not once per level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vsae.sae import sparse
from vsae.sae.base import LossOutput, TopKFamilySAE
from vsae.sae.losses import level_weights, nmse
from vsae.sae.sparse_cost import sparse_cost_ratio
from vsae.sae.topk import topk_codes


def default_levels(k0: int, n: int) -> tuple[int, ...]:
    """k0, 2 k0, 4 k0, ... below n, then n (the dense ReLU level).

    Parameters
    ----------
    k0 : int
        The smallest level.
    n : int
        Number of latents.

    Returns
    -------
    tuple of int
        Increasing levels ending at ``n``.
    """
    levels = []
    k = k0
    while k < n:
        levels.append(k)
        k *= 2
    return (*levels, n)


@dataclass(frozen=True)
class LevelPlan:
    """Which parts of one MSAE training step run sparse, and the positive codes they hold.

    Attributes
    ----------
    sparse_chunks : tuple of bool
        One per sparse level: its chunk (ranks k_{i-1}..k_i - 1) decoded sparsely (True) or
        scattered into a dense [B, N] matrix and multiplied (False).
    sparse_tail : bool or None
        The dense level's positive codes beyond the top K decoded sparsely; None without a
        dense level.
    sparse_encoder : bool
        The encoder gradient from the positive codes only (``sparse.gather_pre``) rather than
        one dense [B, N] x [B, D] product.
    chunk_positive : tuple of int
        Positive codes in each chunk over the batch.
    tail_positive : int
        Positive codes beyond the top K (0 without a dense level).
    ratio : float
        The sparse / dense cost per code the decisions used.
    """

    sparse_chunks: tuple[bool, ...]
    sparse_tail: bool | None
    sparse_encoder: bool
    chunk_positive: tuple[int, ...]
    tail_positive: int
    ratio: float


class MatryoshkaKSAE(TopKFamilySAE):
    """Nested-k MSAE with ``uw`` or ``rw`` level weighting.

    ``sparse_cost_ratio`` (None: calibrated on first use) is the cost of one sparse code over
    one dense code entry that ``plan`` uses; set it on an instance to force a path
    (0: everything sparse, ``float('inf')``: everything dense). ``last_plan`` is the plan of
    the latest training step.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="matryoshka_k"``; ``levels`` (empty: k, 2k, ... and n), ``weighting`` and
        ``infer_k`` are read besides the common fields.
    """

    arch = "matryoshka_k"
    sparse_cost_ratio: float | None = None

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.levels = cfg.levels or default_levels(cfg.k, self.n_latents)
        if self.levels[-1] == self.n_latents:  # the dense ReLU level: shrink the encoder init
            with torch.no_grad():
                self.W_enc_ND.mul_(min(1.0, 2.0 * self.d_in / self.n_latents))
        self.register_buffer("level_weights", level_weights(len(self.levels), cfg.weighting))
        self.infer_k = cfg.infer_k
        self.last_plan: LevelPlan | None = None

    def set_infer_k(self, k: int) -> None:
        """Choose the inference path: TopK at ``k``, or 0 for dense ReLU codes.

        Parameters
        ----------
        k : int
            0 (or n) for the dense ReLU codes, else the TopK level used by ``encode``.

        Raises
        ------
        ValueError
            When ``k`` is not in 0..n_latents.
        """
        if not 0 <= k <= self.n_latents:
            raise ValueError(f"infer_k={k}: expected 0 (dense) or 1..{self.n_latents}")
        self.infer_k = k

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """TopK codes at ``infer_k``, or ReLU codes when it is 0.

        Parameters
        ----------
        x_BD : Tensor
            Normalised inputs [B, D].

        Returns
        -------
        Tensor
            Dense codes [B, N].
        """
        pre_BN = self.pre_acts(x_BD)
        if self.infer_k == 0 or self.infer_k == self.n_latents:
            return torch.relu(pre_BN)
        return topk_codes(pre_BN, self.infer_k)

    # ----- the training step --------------------------------------------------------
    def _ratio(self, atoms_ND: Tensor) -> float:
        if self.sparse_cost_ratio is not None:
            return float(self.sparse_cost_ratio)
        return sparse_cost_ratio(atoms_ND.detach())

    def plan(
        self, B: int, chunk_positive: list[int], tail_positive: int | None, ratio: float
    ) -> LevelPlan:
        """Sparse or dense for every chunk, the tail and the encoder gradient.

        A sparse decode of M codes costs about ``ratio * M`` dense code entries; its dense
        alternative (three GEMMs) costs ``B * N``. The encoder gradient compares one sparse
        scatter over all positive codes with one GEMM at the same ratio. A dense tail means
        the dense level is one product of all ReLU codes, so the encoder gradient is dense too.

        Parameters
        ----------
        B : int
            Batch rows.
        chunk_positive : list of int
            Positive codes of each chunk over the batch.
        tail_positive : int or None
            Positive codes beyond the top K; None without a dense level.
        ratio : float
            Sparse / dense cost per code (``vsae.sae.sparse_cost``).

        Returns
        -------
        LevelPlan
        """
        full = B * self.n_latents
        chunks = tuple(ratio * m < full for m in chunk_positive)
        tail = None if tail_positive is None else ratio * tail_positive < full
        total = sum(chunk_positive) + (tail_positive or 0)
        encoder = tail is not False and ratio * total < full
        return LevelPlan(chunks, tail, encoder, tuple(chunk_positive), tail_positive or 0, ratio)

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Weighted mean of the per-level batch FVUs, plus AuxK.

        Parameters
        ----------
        x_BD : Tensor
            Normalised inputs [B, D].
        dead_N : Tensor, optional
            Boolean [N] dead-latent mask (AuxK).

        Returns
        -------
        LossOutput
            ``terms`` holds ``fvu_k{level}`` of every level; recon, L0, fired latents and
            AuxK refer to the smallest level.
        """
        B, N = x_BD.shape[0], self.n_latents
        atoms_ND = self.dictionary()
        has_dense = self.levels[-1] == N
        bounds = list(self.levels[:-1] if has_dense else self.levels)
        J, K = len(bounds), (bounds[-1] if bounds else 0)
        # With autograd on, the dense-encoder plans use this graph; sparse ones never reach it.
        pre_BN = self.pre_acts(x_BD)
        pre_d = pre_BN.detach()
        starts = [0, *bounds[:-1]]
        cols_BK = top_BK = pos_BK = None
        chunk_pos: list[int] = []
        if K:
            top_BK, cols_BK = pre_d.topk(K, dim=1, sorted=True)  # one selection, every level
            pos_BK = top_BK > 0  # sorted: each row's positive codes are a prefix
            p_B1 = pos_BK.sum(1, dtype=torch.int64, keepdim=True)
            s_J = torch.tensor(starts, device=x_BD.device)
            w_J = torch.tensor(bounds, device=x_BD.device) - s_J
            chunk_pos = (p_B1 - s_J).clamp(min=0).minimum(w_J).sum(0).tolist()
        tail_pos = None
        if has_dense:
            tail_pos = int(torch.count_nonzero(pre_d > 0)) - sum(chunk_pos)
        plan = self.plan(B, chunk_pos, tail_pos, self._ratio(atoms_ND))
        self.last_plan = plan
        relu_BN = None if plan.sparse_encoder else torch.relu(pre_BN)
        dev = x_BD.device

        # Positive codes of the top K, row-major in rank order (each row's chunks in turn).
        if K:
            chunk_K = torch.repeat_interleave(
                torch.arange(J, device=dev),
                torch.tensor([e - s for s, e in zip(starts, bounds, strict=True)], device=dev),
            )
            if sum(chunk_pos) == B * K:  # every one positive (an SAE at init): no compaction
                rows_T = torch.arange(B, device=dev).repeat_interleave(K)
                cols_T = cols_BK.reshape(-1)
                chunk_T = chunk_K.repeat(B)
            else:
                rows_T, rank_T = pos_BK.nonzero(as_tuple=True)
                cols_T = cols_BK[rows_T, rank_T]
                chunk_T = chunk_K[rank_T]
            vals_T = self._values(x_BD, pre_d, relu_BN, rows_T, cols_T)
        # The dense level's positive codes beyond the top K, when they are decoded sparsely.
        if plan.sparse_tail:
            rest_BN = pre_d > 0
            if K:
                rest_BN.scatter_(1, cols_BK, False)
            rows_L, cols_L = rest_BN.nonzero(as_tuple=True)
            vals_L = self._values(x_BD, pre_d, relu_BN, rows_L, cols_L)

        # One sparse decode: a bag per (row, chunk) (empty for dense chunks), then one per row
        # for the tail. Chunk bags are consecutive, so levels are one cumulative sum.
        bag_cols, bag_ids, bag_vals = [], [], []
        if K and any(plan.sparse_chunks):
            take = lambda t: t  # noqa: E731
            if not all(plan.sparse_chunks):
                keep_T = torch.tensor(plan.sparse_chunks, device=dev)[chunk_T]
                take = lambda t: t[keep_T]  # noqa: E731
            bag_cols.append(take(cols_T))
            bag_ids.append(take(rows_T * J + chunk_T))
            bag_vals.append(take(vals_T))
        n_bags = B * J
        if plan.sparse_tail:
            bag_cols.append(cols_L)
            bag_ids.append(rows_L + n_bags)
            bag_vals.append(vals_L)
            n_bags += B
        out_XD = None
        if bag_cols:
            cat = (lambda ts: ts[0]) if len(bag_cols) == 1 else torch.cat
            sel = sparse.row_grouped(cat(bag_ids), cat(bag_cols), n_bags, N)
            out_XD = sparse.sparse_decode(sel, cat(bag_vals), atoms_ND)

        D = x_BD.shape[1]
        var = (x_BD - x_BD.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
        losses = []
        recon_last_BD = self.b_dec_D.expand(B, -1)
        first_recon_BD = None
        if J:
            parts_BJD = out_XD[: B * J].view(B, J, D) if any(plan.sparse_chunks) else None
            if not all(plan.sparse_chunks):  # dense chunks: their codes scattered into zeros
                dense = [
                    self._dense_chunk(B, j, rows_T, cols_T, chunk_T, vals_T, atoms_ND)
                    if not plan.sparse_chunks[j]
                    else x_BD.new_zeros(B, D)
                    for j in range(J)
                ]
                stacked_BJD = torch.stack(dense, 1)
                parts_BJD = stacked_BJD if parts_BJD is None else parts_BJD + stacked_BJD
            recon_BJD = torch.cumsum(parts_BJD, 1) + self.b_dec_D
            err_J = (recon_BJD - x_BD[:, None, :]).pow(2).sum((0, 2))
            losses.append(err_J / var)
            first_recon_BD = recon_BJD[:, 0]
            recon_last_BD = parts_BJD.sum(1) + self.b_dec_D
        if has_dense:
            if plan.sparse_tail:
                recon_BD = recon_last_BD + out_XD[B * J :]
            else:  # every ReLU code at once (relu_BN exists: a dense tail means a dense encoder)
                recon_BD = torch.addmm(self.b_dec_D, relu_BN, atoms_ND)
            losses.append(nmse(x_BD, recon_BD)[None])
            first_recon_BD = recon_BD if first_recon_BD is None else first_recon_BD

        per_level = torch.cat(losses)
        w = self.level_weights
        main = (w * per_level).sum() / w.sum()
        terms = {f"fvu_k{k}": v.detach() for k, v in zip(self.levels, per_level, strict=True)}
        # Dead-latent tracking, L0 and AuxK refer to the smallest level (k0).
        k0 = self.levels[0]
        if K:  # the shared selection ranked them
            first_sel = sparse.Selection(
                torch.arange(B, device=x_BD.device).repeat_interleave(k0),
                cols_BK[:, :k0].reshape(-1),
                torch.arange(B, device=x_BD.device) * k0,
                B,
                N,
            )
            first_vals = torch.relu(top_BK[:, :k0]).reshape(-1)
        else:
            first_sel = sparse.topk_select(pre_d, k0)
            first_vals = torch.relu(pre_d[first_sel.rows_M, first_sel.cols_M])
        return self.finish_loss(
            x_BD, main, first_recon_BD, pre_BN, first_sel, first_vals, dead_N, terms, atoms_ND
        )

    @staticmethod
    def _dense_chunk(
        B: int,
        j: int,
        rows_T: Tensor,
        cols_T: Tensor,
        chunk_T: Tensor,
        vals_T: Tensor,
        atoms_ND: Tensor,
    ) -> Tensor:
        """Decode of chunk ``j``'s codes scattered into a dense [B, N] matrix (one product)."""
        N = atoms_ND.shape[0]
        in_j = chunk_T == j
        flat = rows_T[in_j] * N + cols_T[in_j]
        return vals_T.new_zeros(B * N).scatter(0, flat, vals_T[in_j]).view(B, N) @ atoms_ND

    def _values(
        self, x_BD: Tensor, pre_d: Tensor, relu_BN: Tensor | None, rows_M: Tensor, cols_M: Tensor
    ) -> Tensor:
        """ReLU codes at row-ordered entries: from the sparse gather (``relu_BN`` None) or
        gathered from the dense ReLU codes; both differentiable w.r.t. the encoder."""
        if relu_BN is None:
            return self.sparse_codes(x_BD, pre_d, sparse.row_grouped(rows_M, cols_M, *pre_d.shape))
        return relu_BN.reshape(-1).gather(0, rows_M * relu_BN.shape[1] + cols_M)
