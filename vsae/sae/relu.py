"""The vanilla SAE: ReLU codes with an L1 penalty."""

from __future__ import annotations

import torch
from torch import Tensor

from vsae.sae.base import BaseSAE, LossOutput
from vsae.sae.losses import l1_penalty, nmse


class ReLUSAE(BaseSAE):
    """ReLU + L1 sparse autoencoder (dense codes, dense decode): the "vanilla" SAE of
    Bricken et al. (2023), "Towards Monosemanticity".

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="relu"``; ``l1_coef`` weighs the penalty.
    """

    arch = "relu"
    dense_codes = True

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """ReLU of the pre-activations.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Codes [B, n_latents].
        """
        return torch.relu(self.pre_acts(x_BD))

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Batch FVU plus ``l1_coef`` times the codes' L1 norm.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        dead_N : Tensor, optional
            Ignored (no AuxK for dense codes); accepted for the shared interface.

        Returns
        -------
        LossOutput
            Terms ``recon`` and ``l1``.
        """
        codes_BN = self.codes_normalized(x_BD)
        recon_BD = self.decode_normalized(codes_BN)
        rec = nmse(x_BD, recon_BD)
        l1 = l1_penalty(codes_BN)
        active_BN = codes_BN.detach() > 0
        terms = {"recon": rec.detach(), "l1": l1.detach()}
        return LossOutput(
            rec + self.cfg.l1_coef * l1,
            terms,
            recon_BD,
            active_BN.any(0),
            active_BN.sum(-1).float().mean(),
        )
