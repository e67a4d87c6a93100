"""Loss terms as plain functions. Reconstruction losses share one signature: (x_BD, recon_BD)."""

from __future__ import annotations

import torch
from torch import Tensor


def nmse(x_BD: Tensor, recon_BD: Tensor) -> Tensor:
    """Batch FVU: squared error over the batch's total variance.

    Parameters
    ----------
    x_BD : Tensor
        Targets [B, D].
    recon_BD : Tensor
        Reconstructions, same shape.

    Returns
    -------
    Tensor
        Scalar ``sum ||x - recon||^2 / sum ||x - mean(x)||^2`` (the batch's FVU).

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    _same_shape(x_BD, recon_BD)
    var = (x_BD - x_BD.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return (x_BD - recon_BD).pow(2).sum() / var


def mse(x_BD: Tensor, recon_BD: Tensor) -> Tensor:
    """Mean over samples of the squared error ``||x - recon||^2``.

    Parameters
    ----------
    x_BD : Tensor
        Targets [B, D].
    recon_BD : Tensor
        Reconstructions, same shape.

    Returns
    -------
    Tensor
        Scalar.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    _same_shape(x_BD, recon_BD)
    return (x_BD - recon_BD).pow(2).sum(-1).mean()


def l1_penalty(codes_BN: Tensor) -> Tensor:
    """Mean over samples of the L1 norm of the codes (decoder rows are unit norm, so it
    needs no decoder-norm weighting).

    Parameters
    ----------
    codes_BN : Tensor
        Codes [B, N].

    Returns
    -------
    Tensor
        Scalar.
    """
    return codes_BN.abs().sum(-1).mean()


def level_weights(n_levels: int, weighting: str) -> Tensor:
    """Matryoshka level weights (Zaigrajew et al. 2025, "Interpreting CLIP with
    Hierarchical Sparse Autoencoders").

    Parameters
    ----------
    n_levels : int
        Number of levels h.
    weighting : str
        ``uw``: every level weighs 1. ``rw``: level i (1-based) weighs h - i + 1, so the
        smallest k weighs most.

    Returns
    -------
    Tensor
        Float32 weights [h], not normalised.

    Raises
    ------
    ValueError
        When ``weighting`` is neither ``uw`` nor ``rw``.
    """
    if weighting == "uw":
        return torch.ones(n_levels)
    if weighting == "rw":
        return torch.arange(n_levels, 0, -1, dtype=torch.float32)
    raise ValueError(f"weighting={weighting!r}: expected 'uw' or 'rw'")


def _same_shape(x_BD: Tensor, recon_BD: Tensor) -> None:
    if x_BD.shape != recon_BD.shape:
        raise ValueError(
            f"reconstruction has shape {tuple(recon_BD.shape)}; expected the targets' "
            f"{tuple(x_BD.shape)}"
        )
