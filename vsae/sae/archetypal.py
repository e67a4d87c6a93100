"""Archetypal SAEs (Fel et al. 2025): atoms are convex mixtures of data candidates.

A-SAE (``delta = 0``): D = W C with W row-stochastic and C fixed k-means
centroids of the training activations. RA-SAE (``delta > 0``): D = W C + Lambda
with ||Lambda_i|| <= delta. Each atom may mix only its ``n_neighbors`` nearest
candidates (a sparse W), which keeps the dictionary at O(N m D) per step.

Training mixes only the atoms that a batch selects (O(U m D) for U distinct
selected latents, forward and backward) unless most are selected, from a "bank"
that stores each atom's m candidates next to each other when that costs no more
memory than the candidate table itself (N m <= C): the gather then streams
contiguous blocks instead of jumping across a table of up to 8 N candidates.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from vsae.config import SAEConfig
from vsae.sae import sparse
from vsae.sae.kmeans import _sq_dists, kmeans
from vsae.sae.topk import BatchTopKSAE, topk_codes


class ArchetypalSAE(BatchTopKSAE):
    """A-SAE / RA-SAE with a TopK or BatchTopK encoder (Fel et al. 2025, "Archetypal SAE").

    Atom i is ``sum_j W[i, j] C[nbr[i, j]]`` (+ ``Lambda_i`` when ``delta > 0``) with W
    row-stochastic and C fixed k-means centroids; only W (and Lambda) train.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="archetypal"``; uses ``num_candidates`` (C), ``n_neighbors`` (m), ``delta``,
        ``encoder_act``, ``archetype_init``, ``k`` and the AuxK settings.
    """

    arch = "archetypal"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        N, D, C = self.n_latents, self.d_in, cfg.num_candidates
        m = cfg.n_neighbors if 0 < cfg.n_neighbors < C else C
        del self.W_dec_ND  # the dictionary is derived, not a free parameter
        self.register_buffer("candidates_CD", torch.zeros(C, D))
        # Until init_from_data runs, atom i is candidate i and its neighbours are i, i+1, ...
        nbr_NM = (torch.arange(N)[:, None] + torch.arange(m)[None, :]) % C
        self.register_buffer("neighbors_NM", nbr_NM)
        mix_NM = torch.zeros(N, m)
        mix_NM[:, 0] = 1.0
        self.mix_NM = nn.Parameter(mix_NM)
        self.relax_ND = nn.Parameter(torch.zeros(N, D), requires_grad=cfg.delta > 0)
        self._bank_key: tuple | None = None
        self._bank: tuple[Tensor, Tensor] | None = None

    def candidate_bank(self) -> tuple[Tensor, Tensor]:
        """``(table_RD, index_NM)`` with ``table_RD[index_NM[i, j]]`` = candidate ``j`` of atom i.

        Either the candidate table and the neighbour lists, or (when ``N * m <= C``) a
        neighbour-ordered copy ``candidates[neighbors]`` whose rows for atom i are
        ``i*m .. i*m+m-1``. The copy is derived, never saved, and rebuilt whenever the
        candidates or neighbour lists change (in place, on load, or on a device move).

        Returns
        -------
        tuple of Tensor
            ``table_RD`` [R, d_in] (R = C or N * m) and ``index_NM`` [N, m] (long).
        """
        cands_CD, nbr_NM = self.candidates_CD, self.neighbors_NM
        N, m = nbr_NM.shape
        if N * m > cands_CD.shape[0]:
            return cands_CD, nbr_NM
        key = (cands_CD._version, nbr_NM._version, cands_CD.data_ptr(), nbr_NM.data_ptr())
        if self._bank_key != key or self._bank is None:
            table_RD = cands_CD[nbr_NM.reshape(-1)]
            index_NM = torch.arange(N * m, device=nbr_NM.device).view(N, m)
            self._bank, self._bank_key = (table_RD, index_NM), key
        return self._bank

    def mixtures(self, idx_U: Tensor | None = None) -> Tensor:
        """Convex mixtures W C of some atoms, without the relaxation.

        Parameters
        ----------
        idx_U : Tensor, optional
            Long [U]: the atoms to build; all N when None.

        Returns
        -------
        Tensor
            Atoms [U, d_in] (or [N, d_in]) in normalised space.
        """
        table_RD, index_NM = self.candidate_bank()
        mix_NM = self.mix_NM
        if idx_U is not None:
            index_NM, mix_NM = index_NM[idx_U], mix_NM[idx_U]
        return torch.nn.functional.embedding_bag(
            index_NM, table_RD, mode="sum", per_sample_weights=mix_NM
        )

    def dictionary(self) -> Tensor:
        """All atoms: convex mixtures of each atom's candidate neighbours, plus the
        relaxation.

        Returns
        -------
        Tensor
            [n_latents, d_in] in normalised space; not unit norm.
        """
        mixed_ND = self.mixtures()
        return mixed_ND + self.relax_ND if self.cfg.delta > 0 else mixed_ND

    # Above this share of distinct selected atoms, mixing all N is cheaper than indexing.
    SUBSET_MAX_SHARE = 0.75

    def decode_selection(self, sel: sparse.Selection, vals_M: Tensor) -> Tensor:
        """Sparse decode that mixes only the distinct atoms the selection uses.

        The relaxation is decoded straight from ``relax_ND`` by the selection (like a TopK
        decoder), so only the mixtures need the per-batch subset.

        Parameters
        ----------
        sel : sparse.Selection
            The M selected (row, latent) entries.
        vals_M : Tensor
            Their code values [M].

        Returns
        -------
        Tensor
            Reconstruction without ``b_dec``, [B, d_in].
        """
        used_U, slot_M = torch.unique(sel.cols_M, return_inverse=True)
        if used_U.numel() > self.SUBSET_MAX_SHARE * self.n_latents:
            out_BD = sparse.sparse_decode(sel, vals_M, self.mixtures())
        else:
            local = dataclasses.replace(sel, cols_M=slot_M, n_cols=used_U.numel())
            out_BD = sparse.sparse_decode(local, vals_M, self.mixtures(used_U))
        if self.cfg.delta == 0:
            return out_BD
        return out_BD + sparse.sparse_decode(sel, vals_M, self.relax_ND)

    def select(self, pre_BN: Tensor) -> sparse.Selection:
        """TopK or BatchTopK, as ``encoder_act`` says.

        Parameters
        ----------
        pre_BN : Tensor
            Pre-activations [B, n_latents].

        Returns
        -------
        sparse.Selection
        """
        if self.cfg.encoder_act == "topk":
            return sparse.topk_select(pre_BN, self.cfg.k)
        return sparse.batchtopk_select(pre_BN, self.cfg.k)

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """TopK codes, or BatchTopK threshold codes.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Codes [B, n_latents].
        """
        if self.cfg.encoder_act == "batchtopk":
            return super().codes_normalized(x_BD)
        return topk_codes(self.pre_acts(x_BD), self.cfg.k)

    @torch.no_grad()
    def observe(self, sel: sparse.Selection, vals_M: Tensor) -> None:
        """Track the inference threshold only for the BatchTopK encoder.

        Parameters
        ----------
        sel : sparse.Selection
            The entries kept in this training step.
        vals_M : Tensor
            Their code values [M].
        """
        if self.cfg.encoder_act == "batchtopk":
            super().observe(sel, vals_M)

    @classmethod
    def min_hold(cls, cfg: SAEConfig) -> int:
        """The k-means of :meth:`init_from_data` needs one sample row per candidate point.

        Parameters
        ----------
        cfg : SAEConfig
            The SAE's config.

        Returns
        -------
        int
            ``cfg.num_candidates``.
        """
        return cfg.num_candidates

    @torch.no_grad()
    def init_from_data(self, sample_BD: Tensor) -> None:
        """Normalisation, then k-means candidates; atom i starts on candidate i.

        Each atom's ``n_neighbors`` nearest candidates (itself first) become its mixing
        set. ``archetype_init`` picks the k-means seed and the starting mixtures (see
        ``SAEConfig``), the question raised by "Ablating Archetypes".

        Parameters
        ----------
        sample_BD : Tensor
            Raw activations [S, d_in], S >= ``num_candidates``.

        Raises
        ------
        ValueError
            When the sample is not [S, d_in].
        """
        super().init_from_data(sample_BD)
        x_BD = self.normalize(sample_BD.to(self.candidates_CD.device, torch.float32))
        C = self.candidates_CD.shape[0]
        shared = self.cfg.archetype_init in ("shared", "random")
        cands_CD = kmeans(x_BD, C, seed=0 if shared else self.cfg.seed)
        self.candidates_CD.copy_(cands_CD)
        m = self.neighbors_NM.shape[1]
        N = self.n_latents
        dist_NC = _sq_dists(cands_CD[:N], cands_CD)
        dist_NC[torch.arange(N), torch.arange(N)] = -1.0  # itself first
        self.neighbors_NM.copy_(dist_NC.topk(m, dim=-1, largest=False).indices)
        self.mix_NM.zero_()
        self.mix_NM[:, 0] = 1.0
        if self.cfg.archetype_init == "random":  # a uniform draw from each atom's simplex
            gen = torch.Generator().manual_seed(self.cfg.seed)
            expo_NM = -torch.log(torch.rand(self.mix_NM.shape, generator=gen).clamp_min(1e-12))
            self.mix_NM.copy_(expo_NM / expo_NM.sum(-1, keepdim=True))
        self.relax_ND.zero_()
        # Codes start as projection coefficients onto the atom, shared among the k active
        # latents, so the first reconstructions have the data's scale (atoms are not unit norm).
        atoms_ND = self.dictionary()
        sq_N1 = atoms_ND.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
        self.W_enc_ND.copy_(atoms_ND / (sq_N1 * self.cfg.k))

    @torch.no_grad()
    def before_step(self) -> None:
        """No decoder-row constraint to respect: atoms live in the candidates' hull."""

    @torch.no_grad()
    def after_step(self) -> None:
        """W back to row-stochastic; Lambda rows back inside the delta ball (no 0/0)."""
        mix = self.mix_NM.clamp_min_(0)
        sums_N1 = mix.sum(-1, keepdim=True)
        empty_N = sums_N1.squeeze(-1) <= 0
        mix /= sums_N1.clamp_min(1e-12)
        if empty_N.any():  # a row lost all its mass: put the atom back on its own candidate
            mix[empty_N] = 0.0
            mix[empty_N, 0] = 1.0
        if self.cfg.delta == 0:
            self.relax_ND.zero_()
            return
        norms_N1 = self.relax_ND.norm(dim=-1, keepdim=True)
        factor_N1 = torch.where(
            norms_N1 > self.cfg.delta, self.cfg.delta / norms_N1.clamp_min(1e-12), 1.0
        )
        self.relax_ND.mul_(factor_N1)
