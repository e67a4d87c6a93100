"""TopK (per sample) and BatchTopK (per batch, with an inference threshold) SAEs."""

from __future__ import annotations

import torch
from torch import Tensor

from vsae.config import SAEConfig
from vsae.sae import sparse
from vsae.sae.base import LossOutput, TopKFamilySAE
from vsae.sae.losses import nmse


def topk_codes(pre_BN: Tensor, k: int) -> Tensor:
    """Dense inference codes: ReLU of each row's k largest pre-activations, zeros elsewhere.

    Parameters
    ----------
    pre_BN : Tensor
        Pre-activations [B, N].
    k : int
        Codes kept per row, 1 <= k <= N.

    Returns
    -------
    Tensor
        Codes [B, N] with at most k non-zeros per row.
    """
    vals_BK, idx_BK = pre_BN.topk(k, dim=-1)
    return torch.zeros_like(pre_BN).scatter_(-1, idx_BK, torch.relu(vals_BK))


class TopKSAE(TopKFamilySAE):
    """Keeps the k largest pre-activations of each sample, then ReLU; sparse decode.

    The TopK SAE of Makhzani & Frey (2013) as trained by Gao et al. (2024), "Scaling and
    evaluating sparse autoencoders": no sparsity penalty, AuxK for dead latents.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="topk"``; uses ``k``, ``num_aux_k`` and ``aux_coef``.
    """

    arch = "topk"

    def select(self, pre_BN: Tensor) -> sparse.Selection:
        """Which codes are kept in training: each row's ``k`` largest.

        Parameters
        ----------
        pre_BN : Tensor
            Pre-activations [B, n_latents].

        Returns
        -------
        sparse.Selection
            B * k entries, grouped by row.
        """
        return sparse.topk_select(pre_BN, self.cfg.k)

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Dense TopK codes of normalised inputs.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Codes [B, n_latents], k non-zeros at most per row.
        """
        return topk_codes(self.pre_acts(x_BD), self.cfg.k)

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Batch FVU of the sparse reconstruction, plus ``aux_coef`` times AuxK.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        dead_N : Tensor, optional
            Bool [n_latents] of dead latents; enables AuxK.

        Returns
        -------
        LossOutput
        """
        with torch.no_grad():
            pre_BN = self.pre_acts(x_BD)
        sel = self.select(pre_BN)
        vals_M = self.sparse_codes(x_BD, pre_BN, sel)
        recon_BD = self.decode_selection(sel, vals_M) + self.b_dec_D
        main = nmse(x_BD, recon_BD)
        self.observe(sel, vals_M)
        return self.finish_loss(x_BD, main, recon_BD, pre_BN, sel, vals_M, dead_N)

    def observe(self, sel: sparse.Selection, vals_M: Tensor) -> None:
        """Hook for running statistics of the kept codes (the BatchTopK threshold).

        Parameters
        ----------
        sel : sparse.Selection
            The entries kept in this training step.
        vals_M : Tensor
            Their code values [M].
        """


class BatchTopKSAE(TopKSAE):
    """Keeps the B*k largest pre-activations over the batch (Bussmann et al. 2024,
    "BatchTopK Sparse Autoencoders").

    At inference a per-model threshold, the running average of the smallest kept
    positive activation, replaces the batch selection so codes do not depend on
    the other samples in a batch.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="batchtopk"``; ``k`` is the mean number of codes per sample.
    """

    arch = "batchtopk"
    threshold_momentum = 0.99

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long))

    def select(self, pre_BN: Tensor) -> sparse.Selection:
        """The B*k largest pre-activations over the whole batch.

        Parameters
        ----------
        pre_BN : Tensor
            Pre-activations [B, n_latents].

        Returns
        -------
        sparse.Selection
            B * k entries, any number per row, grouped by row.
        """
        return sparse.batchtopk_select(pre_BN, self.cfg.k)

    @torch.no_grad()
    def observe(self, sel: sparse.Selection, vals_M: Tensor) -> None:
        """Update the inference threshold: an exponential moving average (momentum 0.99)
        of the smallest positive kept code; the first step sets it.

        Parameters
        ----------
        sel : sparse.Selection
            The entries kept in this training step.
        vals_M : Tensor
            Their code values [M].
        """
        pos_M = vals_M[vals_M > 0]
        if pos_M.numel() == 0:
            return
        smallest = pos_M.min()
        if self.threshold_updates == 0:
            self.threshold.copy_(smallest)
        else:
            m = self.threshold_momentum
            self.threshold.mul_(m).add_((1 - m) * smallest)
        self.threshold_updates += 1

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Codes above the learned threshold (BatchTopK over the given batch before any
        training step has set a threshold).

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Codes [B, n_latents].
        """
        pre_BN = self.pre_acts(x_BD)
        if self.threshold_updates == 0:
            sel = sparse.batchtopk_select(pre_BN, self.cfg.k)
            return torch.relu(sparse.to_dense(sel, pre_BN[sel.rows_M, sel.cols_M]))
        return torch.where(pre_BN > self.threshold, pre_BN, torch.zeros_like(pre_BN)).relu()
