"""Prefix Matryoshka SAE (Bussmann et al. 2025), with an optional random-prefix variant.

Latents are ordered; the i-th loss reconstructs x from the first m_i latents of
one shared BatchTopK selection. Prefix reconstructions are built incrementally:
prefix i+1 adds only the selected latents in [m_i, m_{i+1}).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vsae.config import SAEConfig
from vsae.sae import sparse
from vsae.sae.base import LossOutput
from vsae.sae.losses import nmse
from vsae.sae.topk import BatchTopKSAE


def default_prefixes(n: int, n_levels: int) -> tuple[int, ...]:
    """The default nested prefix sizes: ``n_levels`` halvings of n.

    Parameters
    ----------
    n : int
        Dictionary size.
    n_levels : int
        Number of prefixes L.

    Returns
    -------
    tuple of int
        ``n / 2^(L-1), ..., n / 2, n`` (duplicates removed, at least 1), ascending.
    """
    sizes = {max(1, n >> j) for j in range(n_levels)}
    return tuple(sorted(sizes))


def sample_prefixes(n: int, n_levels: int, low: int, gen: torch.Generator) -> tuple[int, ...]:
    """Random prefix boundaries (Nabeshima's random-prefix variant).

    Parameters
    ----------
    n : int
        Dictionary size.
    n_levels : int
        Number of prefixes.
    low : int
        Smallest prefix size drawn.
    gen : torch.Generator
        Source of randomness (seeded per SAE, so a resumed run draws the same sizes).

    Returns
    -------
    tuple of int
        Ascending sizes, log-uniform in [low, n), always ending at n.
    """
    if n_levels <= 1 or low >= n:
        return (n,)
    u = torch.rand(n_levels - 1, generator=gen)
    sizes = torch.exp(math.log(low) + u * (math.log(n) - math.log(low))).long()
    return (*sorted({int(s) for s in sizes.clamp(1, n - 1)}), n)


class MatryoshkaPrefixSAE(BatchTopKSAE):
    """Matryoshka SAE with nested dictionary prefixes (Bussmann et al. 2025; random variant:
    Nabeshima)    over a BatchTopK selection; at inference the BatchTopK threshold.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="matryoshka_prefix"``; ``prefixes`` (or ``n_levels`` halvings), ``random_prefix``.
    """

    arch = "matryoshka_prefix"

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.prefixes = cfg.prefixes or default_prefixes(self.n_latents, cfg.n_levels)
        self.prefix_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def current_prefixes(self) -> tuple[int, ...]:
        """This step's prefix sizes.

        Returns
        -------
        tuple of int
            The fixed prefixes, or fresh ones when ``random_prefix`` is on.
        """
        if not self.cfg.random_prefix:
            return self.prefixes
        return sample_prefixes(self.n_latents, self.cfg.n_levels, self.cfg.k, self.prefix_gen)

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Mean over prefixes of the prefix reconstruction's batch FVU, plus AuxK.

        Parameters
        ----------
        x_BD : Tensor
            A normalised batch [B, d_in].
        dead_N : Tensor, optional
            bool [n_latents]: dead latents for the AuxK term.

        Returns
        -------
        LossOutput
            ``loss`` (the mean prefix FVU plus ``aux_coef`` * AuxK) and its terms.
        """
        B = x_BD.shape[0]
        with torch.no_grad():
            pre_BN = self.pre_acts(x_BD)
        sel = self.select(pre_BN)
        vals_M = self.sparse_codes(x_BD, pre_BN, sel)
        atoms_ND = self.dictionary()
        prefixes = self.current_prefixes()
        bounds = torch.tensor(prefixes[:-1], device=x_BD.device, dtype=sel.cols_M.dtype)
        bucket_M = torch.bucketize(sel.cols_M, bounds, right=True)
        recon_BD = self.b_dec_D.expand(B, -1)
        losses = []
        for level in range(len(prefixes)):
            keep_M = bucket_M == level
            part = sparse.subset(sel, keep_M)
            recon_BD = recon_BD + sparse.sparse_decode(part, vals_M[keep_M], atoms_ND)
            losses.append(nmse(x_BD, recon_BD))
        per_level = torch.stack(losses)
        main = per_level.mean()
        self.observe(sel, vals_M)
        terms = {"fvu_smallest_prefix": per_level[0].detach()}
        return self.finish_loss(x_BD, main, recon_BD, pre_BN, sel, vals_M, dead_N, terms, atoms_ND)
