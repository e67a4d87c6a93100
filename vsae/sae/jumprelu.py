"""JumpReLU SAE: learned per-latent thresholds trained with a straight-through estimator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vsae.config import SAEConfig
from vsae.sae.base import BaseSAE, LossOutput
from vsae.sae.losses import nmse


def _kernel(u: Tensor) -> Tensor:
    """Rectangle kernel: 1 on |u| <= 1/2."""
    return (u.abs() <= 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre_BN, theta_N, bandwidth):
        ctx.save_for_backward(pre_BN, theta_N)
        ctx.bandwidth = bandwidth
        return pre_BN * (pre_BN > theta_N)

    @staticmethod
    def backward(ctx, grad_BN):
        pre_BN, theta_N = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad_BN * (pre_BN > theta_N)
        grad_theta = (-(theta_N / bw) * _kernel((pre_BN - theta_N) / bw) * grad_BN).sum(0)
        return grad_pre, grad_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre_BN, theta_N, bandwidth):
        ctx.save_for_backward(pre_BN, theta_N)
        ctx.bandwidth = bandwidth
        return (pre_BN > theta_N).to(pre_BN.dtype)

    @staticmethod
    def backward(ctx, grad_BN):
        pre_BN, theta_N = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_theta = (-(1.0 / bw) * _kernel((pre_BN - theta_N) / bw) * grad_BN).sum(0)
        return None, grad_theta, None


def jumprelu(pre_BN: Tensor, theta_N: Tensor, bandwidth: float) -> Tensor:
    """``pre * H(pre - theta)`` with the straight-through gradient for ``theta``.

    The pseudo-derivative uses a rectangle kernel of width ``bandwidth`` (Rajamanoharan et
    al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU Sparse
    Autoencoders").

    Parameters
    ----------
    pre_BN : Tensor
        Pre-activations [B, N].
    theta_N : Tensor
        Positive thresholds [N].
    bandwidth : float
        Kernel width, in normalised units (~1e-3 .. 1e-2).

    Returns
    -------
    Tensor
        Codes [B, N].
    """
    return _JumpReLU.apply(pre_BN, theta_N, bandwidth)


def step(pre_BN: Tensor, theta_N: Tensor, bandwidth: float) -> Tensor:
    """``H(pre - theta)`` with the straight-through gradient for ``theta``.

    Summed over latents it is the L0 count that the JumpReLU SAE penalises.

    Parameters
    ----------
    pre_BN : Tensor
        Pre-activations [B, N].
    theta_N : Tensor
        Positive thresholds [N].
    bandwidth : float
        Kernel width, in normalised units.

    Returns
    -------
    Tensor
        0/1 values [B, N] in ``pre_BN``'s dtype.
    """
    return _Step.apply(pre_BN, theta_N, bandwidth)


class JumpReLUSAE(BaseSAE):
    """JumpReLU codes with an L0 penalty (Rajamanoharan et al. 2024).

    Each latent has a learned threshold ``theta = exp(log_threshold_N)``.

    Parameters
    ----------
    cfg : SAEConfig
        ``arch="jumprelu"``; uses ``l0_coef``, ``jump_bandwidth`` and
        ``jump_init_threshold``.
    """

    arch = "jumprelu"
    dense_codes = True

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        init = math.log(cfg.jump_init_threshold)
        self.log_threshold_N = nn.Parameter(torch.full((self.n_latents,), init))

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Pre-activations where they exceed their latent's threshold, zero elsewhere.

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
        return pre_BN * (pre_BN > self.log_threshold_N.exp())

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Batch FVU plus ``l0_coef`` times the L0 count (straight-through gradients).

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        dead_N : Tensor, optional
            Ignored; accepted for the shared interface.

        Returns
        -------
        LossOutput
            Terms ``recon`` and ``l0_penalty``.
        """
        pre_BN = self.pre_acts(x_BD)
        theta_N = self.log_threshold_N.exp()
        bw = self.cfg.jump_bandwidth
        codes_BN = jumprelu(pre_BN, theta_N, bw)
        recon_BD = self.decode_normalized(codes_BN)
        rec = nmse(x_BD, recon_BD)
        l0 = step(pre_BN, theta_N, bw).sum(-1).mean()
        active_BN = codes_BN.detach() != 0
        terms = {"recon": rec.detach(), "l0_penalty": l0.detach()}
        return LossOutput(
            rec + self.cfg.l0_coef * l0,
            terms,
            recon_BD,
            active_BN.any(0),
            active_BN.sum(-1).float().mean(),
        )
