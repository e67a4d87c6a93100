"""Nested-k Matryoshka SAE (MSAE, Zaigrajew et al. 2025).

One dictionary and one pre-activation. Level i keeps the top k_i codes; its
loss is the batch FVU of that reconstruction; the total is a weighted mean over
levels. All TopK levels share one sort: level i+1 adds only the codes ranked
k_i+1..k_{i+1} to level i's reconstruction. A last level k = n is the dense
ReLU path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vsae.sae import sparse
from vsae.sae.base import LossOutput, TopKFamilySAE
from vsae.sae.losses import level_weights, nmse
from vsae.sae.topk import topk_codes


def default_levels(k0: int, n: int) -> tuple[int, ...]:
    """k0, 2 k0, 4 k0, ... below n, then n (the dense ReLU level)."""
    levels = []
    k = k0
    while k < n:
        levels.append(k)
        k *= 2
    return (*levels, n)


class MatryoshkaKSAE(TopKFamilySAE):
    """Nested-k MSAE with ``uw`` or ``rw`` level weighting."""

    arch = "matryoshka_k"
    # A level chunk wider than N / DENSE_CHUNK_DIVISOR codes per row is decoded densely.
    DENSE_CHUNK_DIVISOR = 16

    def __init__(self, cfg) -> None:  # noqa: ANN001 - SAEConfig
        super().__init__(cfg)
        self.levels = cfg.levels or default_levels(cfg.k, self.n_latents)
        if self.levels[-1] == self.n_latents:  # the dense ReLU level: shrink the encoder init
            with torch.no_grad():
                self.W_enc_ND.mul_(min(1.0, 2.0 * self.d_in / self.n_latents))
        self.register_buffer("level_weights", level_weights(len(self.levels), cfg.weighting))
        self.infer_k = cfg.infer_k

    def set_infer_k(self, k: int) -> None:
        """Choose the inference path: TopK at ``k``, or 0 for dense ReLU codes."""
        if not 0 <= k <= self.n_latents:
            raise ValueError(f"infer_k={k}: expected 0 (dense) or 1..{self.n_latents}")
        self.infer_k = k

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """TopK codes at ``infer_k``, or ReLU codes when it is 0."""
        pre_BN = self.pre_acts(x_BD)
        if self.infer_k == 0 or self.infer_k == self.n_latents:
            return torch.relu(pre_BN)
        return topk_codes(pre_BN, self.infer_k)

    def _decode_chunk(
        self, rows_BK: Tensor, cols_BK: Tensor, vals_BK: Tensor, atoms_ND: Tensor
    ) -> Tensor:
        """sum_k vals[b, k] * atoms[cols[b, k]] of the codes ranked start..k of each row.

        Gathering one atom row per code reads B * K * D floats; a dense matmul reads the
        dictionary once and runs at GEMM speed. Past ~1/16 of N codes per row (measured on
        CPU) the dense product of the scattered chunk is faster, so wide chunks take it.
        """
        B, K = vals_BK.shape
        N = self.n_latents
        if K * self.DENSE_CHUNK_DIVISOR > N:
            codes_BN = vals_BK.new_zeros(B, N).scatter(1, cols_BK, vals_BK)
            return codes_BN @ atoms_ND
        chunk = sparse.Selection(
            rows_BK.reshape(-1),
            cols_BK.reshape(-1),
            torch.arange(B, device=vals_BK.device) * K,
            B,
            N,
        )
        return sparse.sparse_decode(chunk, vals_BK.reshape(-1), atoms_ND)

    def _sorted_prefix(self, sparse_levels: tuple[int, ...]) -> int:
        """End rank of the narrow chunks (decoded sparsely from one sort); 0 if none."""
        start, end = 0, 0
        for k in sparse_levels:
            if (k - start) * self.DENSE_CHUNK_DIVISOR > self.n_latents:
                break
            start = end = k
        return end

    @staticmethod
    def _rank_chunks(
        pre_BN: Tensor, wide: list[int], n_sorted: int
    ) -> tuple[dict[int, Tensor], Tensor | None, Tensor | None]:
        """Columns of the wide chunks, the sorted narrow top, and the widest top set, from a
        cascade of top-k calls.

        Unsorted top-k calls, each on the previous (smaller) top set: the top-4096 of
        8192, then the top-2048 of those 4096, ... so the sets are nested and each holds
        exactly b entries per row (ties broken once, consistently). The chunk ranked
        b_next..b-1 is the top-b set minus the positions its top-b_next took. A last
        sorted top-``n_sorted`` gives the ranked codes of the narrow chunks. Far cheaper on
        CPU than one sorted top-k as wide as the widest level.

        Returns ``({stop: columns ranked start..stop-1, [B, stop - start]} for each wide
        level ``stop``, cols_BK of the n_sorted largest in descending order or None, the
        columns of the widest sparse level's top set, [B, max(wide)] or without wide levels
        cols_BK itself; None only when there is no level at all)``.
        """
        bounds = sorted(wide, reverse=True)
        vals_BK, idx_BK, top_BT = pre_BN.detach(), None, None
        chunks: dict[int, Tensor] = {}
        for i, b in enumerate([*bounds, n_sorted]):
            if b == 0:  # no narrow prefix: the smallest wide chunk is its whole top set
                chunks[bounds[-1]] = idx_BK
                break
            vals_BK, j_BK = vals_BK.topk(b, dim=1, sorted=i == len(bounds))
            if i > 0:  # the previous set minus this one: the chunk ranked b..bounds[i-1]-1
                keep_BW = torch.ones_like(idx_BK, dtype=torch.bool).scatter_(1, j_BK, False)
                rest_BC = keep_BW.nonzero()[:, 1].view(idx_BK.shape[0], -1)
                chunks[bounds[i - 1]] = idx_BK.gather(1, rest_BC)
            idx_BK = j_BK if idx_BK is None else idx_BK.gather(1, j_BK)
            top_BT = idx_BK if top_BT is None else top_BT
        return chunks, (idx_BK if n_sorted else None), top_BT

    def _decode_relu(self, relu_BN: Tensor, cols_BC: Tensor, atoms_ND: Tensor) -> Tensor:
        """``codes @ atoms`` of the ReLU codes at ``cols_BC`` of each row, without ``b_dec``.

        Only positive codes add anything, and past the top ranks few are positive (in a trained
        SAE most pre-activations are negative). So the positive entries are decoded sparsely
        when there are at most B * N / DENSE_CHUNK_DIVISOR of them, else the chunk (scattered
        into zeros) takes one dense product. Differentiable w.r.t. ``relu_BN`` and ``atoms``.
        """
        B, N = relu_BN.shape
        pos_BC = relu_BN.detach().gather(1, cols_BC) > 0
        if int(pos_BC.sum()) * self.DENSE_CHUNK_DIVISOR > B * N:
            codes_BN = relu_BN.new_zeros(B, N).scatter_(1, cols_BC, relu_BN.gather(1, cols_BC))
            return codes_BN @ atoms_ND
        rows_M, j_M = pos_BC.nonzero(as_tuple=True)
        return self._decode_entries(relu_BN, rows_M, cols_BC[rows_M, j_M], atoms_ND)

    @staticmethod
    def _decode_entries(
        relu_BN: Tensor, rows_M: Tensor, cols_M: Tensor, atoms_ND: Tensor
    ) -> Tensor:
        """Sparse decode of ``relu_BN`` at row-ordered entries (differentiable w.r.t. both)."""
        sel = sparse.row_grouped(rows_M, cols_M, *relu_BN.shape)
        return sparse.sparse_decode(sel, relu_BN[rows_M, cols_M], atoms_ND)

    def _dense_level(
        self, recon_BD: Tensor, relu_BN: Tensor, top_BT: Tensor | None, atoms_ND: Tensor
    ) -> Tensor:
        """Reconstruction of the dense ReLU level: the last sparse level's (``recon_BD``, with
        ``b_dec``) plus the positive codes outside its top set ``top_BT`` (None: no sparse
        level). Where those are too many for a sparse decode, one dense product of all codes."""
        B, N = relu_BN.shape
        rest_BN = relu_BN.detach() > 0
        if top_BT is not None:
            rest_BN.scatter_(1, top_BT, False)
        if int(rest_BN.sum()) * self.DENSE_CHUNK_DIVISOR > B * N:
            return torch.addmm(self.b_dec_D, relu_BN, atoms_ND)
        rows_M, cols_M = rest_BN.nonzero(as_tuple=True)
        return recon_BD + self._decode_entries(relu_BN, rows_M, cols_M, atoms_ND)

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Weighted mean of the per-level batch FVUs, plus AuxK."""
        B = x_BD.shape[0]
        N = self.n_latents
        dense = self.levels[-1] == N
        sparse_levels = self.levels[:-1] if dense else self.levels
        atoms_ND = self.dictionary()
        if dense:  # the dense level needs the full encoder gradient anyway
            pre_BN = self.pre_acts(x_BD)
            relu_BN = torch.relu(pre_BN)  # shared by the dense level and the wide chunks
        else:
            with torch.no_grad():
                pre_BN = self.pre_acts(x_BD)
        losses = []
        recon_BD = self.b_dec_D.expand(B, -1)
        first_recon_BD = None
        rows_BK = cols_BK = vals_BK = top_BT = None
        if sparse_levels:
            # With a dense level, pre_BN carries gradients, so chunks wider than
            # N / DENSE_CHUNK_DIVISOR are gathers of its ReLU (the difference of two nested
            # top sets) and only the narrow chunks need a sort.
            chunks: dict[int, Tensor] = {}
            if dense:
                n_sorted = self._sorted_prefix(sparse_levels)
                wide = [k for k in sparse_levels if k > n_sorted]
                chunks, cols_BK, top_BT = self._rank_chunks(pre_BN, wide, n_sorted)
                if n_sorted:
                    vals_BK = torch.relu(pre_BN.gather(1, cols_BK))
                    rows_BK = torch.arange(B, device=x_BD.device)[:, None].expand_as(cols_BK)
            else:
                n_sorted = sparse_levels[-1]
                sel = sparse.topk_select(pre_BN, n_sorted)
                vals_BK = self.sparse_codes(x_BD, pre_BN, sel).view(B, -1)
                rows_BK = sel.rows_M.view(B, -1)
                cols_BK = sel.cols_M.view(B, -1)
            start = 0
            for k in sparse_levels:
                if k <= n_sorted:
                    part_BD = self._decode_chunk(
                        rows_BK[:, start:k], cols_BK[:, start:k], vals_BK[:, start:k], atoms_ND
                    )
                else:
                    part_BD = self._decode_relu(relu_BN, chunks[k], atoms_ND)
                recon_BD = recon_BD + part_BD
                losses.append(nmse(x_BD, recon_BD))
                first_recon_BD = recon_BD if first_recon_BD is None else first_recon_BD
                start = k
        if dense:
            recon_BD = self._dense_level(recon_BD, relu_BN, top_BT, atoms_ND)
            losses.append(nmse(x_BD, recon_BD))
            first_recon_BD = recon_BD if first_recon_BD is None else first_recon_BD
        per_level = torch.stack(losses)
        w = self.level_weights
        main = (w * per_level).sum() / w.sum()
        terms = {f"fvu_k{k}": v.detach() for k, v in zip(self.levels, per_level, strict=True)}
        # Dead-latent tracking, L0 and AuxK refer to the smallest level (k0).
        k0 = self.levels[0]
        if rows_BK is not None and rows_BK.shape[1] >= k0:  # the shared sort ranked them
            first_sel = sparse.Selection(
                rows_BK[:, :k0].reshape(-1),
                cols_BK[:, :k0].reshape(-1),
                torch.arange(B, device=x_BD.device) * k0,
                B,
                N,
            )
            first_vals = vals_BK[:, :k0].detach().reshape(-1)
        else:
            first_sel = sparse.topk_select(pre_BN, k0)
            first_vals = torch.relu(pre_BN.detach()[first_sel.rows_M, first_sel.cols_M])
        return self.finish_loss(
            x_BD, main, first_recon_BD, pre_BN, first_sel, first_vals, dead_N, terms, atoms_ND
        )
