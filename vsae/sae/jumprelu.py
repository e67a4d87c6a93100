"""JumpReLU SAE: learned per-latent thresholds trained with a straight-through estimator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vsae.sae.base import BaseSAE, LossOutput
from vsae.sae.losses import nmse


def _kernel(u: Tensor) -> Tensor:
    """Rectangle kernel: 1 on |u| <= 1/2."""
    return (u.abs() <= 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre_BN, theta_N, bandwidth):  # noqa: D102
        ctx.save_for_backward(pre_BN, theta_N)
        ctx.bandwidth = bandwidth
        return pre_BN * (pre_BN > theta_N)

    @staticmethod
    def backward(ctx, grad_BN):  # noqa: D102
        pre_BN, theta_N = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad_BN * (pre_BN > theta_N)
        grad_theta = (-(theta_N / bw) * _kernel((pre_BN - theta_N) / bw) * grad_BN).sum(0)
        return grad_pre, grad_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre_BN, theta_N, bandwidth):  # noqa: D102
        ctx.save_for_backward(pre_BN, theta_N)
        ctx.bandwidth = bandwidth
        return (pre_BN > theta_N).to(pre_BN.dtype)

    @staticmethod
    def backward(ctx, grad_BN):  # noqa: D102
        pre_BN, theta_N = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_theta = (-(1.0 / bw) * _kernel((pre_BN - theta_N) / bw) * grad_BN).sum(0)
        return None, grad_theta, None


def jumprelu(pre_BN: Tensor, theta_N: Tensor, bandwidth: float) -> Tensor:
    """``pre * H(pre - theta)`` with the STE gradient for ``theta``."""
    return _JumpReLU.apply(pre_BN, theta_N, bandwidth)


def step(pre_BN: Tensor, theta_N: Tensor, bandwidth: float) -> Tensor:
    """``H(pre - theta)`` with the STE gradient for ``theta`` (an L0 count when summed)."""
    return _Step.apply(pre_BN, theta_N, bandwidth)


class JumpReLUSAE(BaseSAE):
    """JumpReLU codes with an L0 penalty (Rajamanoharan et al. 2024)."""

    arch = "jumprelu"
    dense_codes = True

    def __init__(self, cfg) -> None:  # noqa: ANN001 - SAEConfig
        super().__init__(cfg)
        init = math.log(cfg.jump_init_threshold)
        self.log_threshold_N = nn.Parameter(torch.full((self.n_latents,), init))

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Pre-activations where they exceed their latent's threshold."""
        pre_BN = self.pre_acts(x_BD)
        return pre_BN * (pre_BN > self.log_threshold_N.exp())

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Batch FVU plus ``l0_coef`` times the L0 count."""
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
