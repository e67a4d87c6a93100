"""Archetypal SAEs (Fel et al. 2025): atoms are convex mixtures of data candidates.

A-SAE (``delta = 0``): D = W C with W row-stochastic and C fixed k-means
centroids of the training activations. RA-SAE (``delta > 0``): D = W C + Lambda
with ||Lambda_i|| <= delta. Each atom may mix only its ``n_neighbors`` nearest
candidates (a sparse W), which keeps the dictionary at O(N m D) per step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vsae.sae import sparse
from vsae.sae.kmeans import _sq_dists, kmeans
from vsae.sae.topk import BatchTopKSAE, topk_codes


class ArchetypalSAE(BatchTopKSAE):
    """A-SAE / RA-SAE with a TopK or BatchTopK encoder."""

    arch = "archetypal"

    def __init__(self, cfg) -> None:  # noqa: ANN001 - SAEConfig
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

    def dictionary(self) -> Tensor:
        """Atoms: convex mixtures of each atom's candidate neighbours, plus the relaxation."""
        mixed_ND = torch.nn.functional.embedding_bag(
            self.neighbors_NM, self.candidates_CD, mode="sum", per_sample_weights=self.mix_NM
        )
        return mixed_ND + self.relax_ND if self.cfg.delta > 0 else mixed_ND

    def select(self, pre_BN: Tensor) -> sparse.Selection:
        """TopK or BatchTopK, as ``encoder_act`` says."""
        if self.cfg.encoder_act == "topk":
            return sparse.topk_select(pre_BN, self.cfg.k)
        return sparse.batchtopk_select(pre_BN, self.cfg.k)

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """TopK codes, or BatchTopK threshold codes."""
        if self.cfg.encoder_act == "batchtopk":
            return super().codes_normalized(x_BD)
        return topk_codes(self.pre_acts(x_BD), self.cfg.k)

    @torch.no_grad()
    def observe(self, sel: sparse.Selection, vals_M: Tensor) -> None:
        """Track the inference threshold only for the BatchTopK encoder."""
        if self.cfg.encoder_act == "batchtopk":
            super().observe(sel, vals_M)

    @torch.no_grad()
    def init_from_data(self, sample_BD: Tensor) -> None:
        """Normalisation, then k-means candidates; atom i starts on candidate i."""
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
