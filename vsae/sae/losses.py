"""Loss terms as plain functions. Reconstruction losses share one signature: (x_BD, recon_BD)."""

from __future__ import annotations

import torch
from torch import Tensor


def nmse(x_BD: Tensor, recon_BD: Tensor) -> Tensor:
    """Batch FVU: squared error over the batch's total variance.

    Parameters
    ----------
    x_BD : Tensor
        Targets.
    recon_BD : Tensor
        Reconstructions, same shape.

    Returns
    -------
    Tensor
        Scalar ``sum ||x - recon||^2 / sum ||x - mean(x)||^2``.
    """
    assert x_BD.shape == recon_BD.shape, f"{tuple(x_BD.shape)} != {tuple(recon_BD.shape)}"
    var = (x_BD - x_BD.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return (x_BD - recon_BD).pow(2).sum() / var


def mse(x_BD: Tensor, recon_BD: Tensor) -> Tensor:
    """Mean over samples of the squared error ``||x - recon||^2``."""
    assert x_BD.shape == recon_BD.shape, f"{tuple(x_BD.shape)} != {tuple(recon_BD.shape)}"
    return (x_BD - recon_BD).pow(2).sum(-1).mean()


def l1_penalty(codes_BN: Tensor) -> Tensor:
    """Mean over samples of the L1 norm of the codes (decoder rows are unit norm)."""
    return codes_BN.abs().sum(-1).mean()


def level_weights(n_levels: int, weighting: str) -> Tensor:
    """Matryoshka level weights: ``uw`` gives 1 each, ``rw`` gives h - i + 1 (smallest k most)."""
    if weighting == "uw":
        return torch.ones(n_levels)
    if weighting == "rw":
        return torch.arange(n_levels, 0, -1, dtype=torch.float32)
    raise ValueError(f"weighting={weighting!r}: expected 'uw' or 'rw'")
