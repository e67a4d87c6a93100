"""Concept editing of a query embedding (MSAE concept search, Zaigrajew et al. 2025).

``x' = x + dec(z') - dec(z)`` with ``z = enc(x)``: the SAE's reconstruction error is kept, so
an empty edit returns ``x`` exactly. Boosting latent ``c`` by ``F`` sets
``z_c = F * max(z_c, mean_act_c)`` (a concept absent from the query is switched on at ``F``
times its typical strength); suppressing sets ``z_c = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Edit:
    """Scale one latent: ``factor == 0`` suppresses it, ``factor > 0`` boosts it.

    Parameters
    ----------
    latent : int
    factor : float
    """

    latent: int
    factor: float


@torch.no_grad()
def edit_query(
    sae, x_D: np.ndarray | torch.Tensor, edits: tuple[Edit, ...], mean_act_N: np.ndarray
) -> np.ndarray:
    """Apply concept edits to one SAE input.

    Parameters
    ----------
    sae : BaseSAE
    x_D : array or Tensor
        The query in the SAE's input space ``[d_in]`` (raw, not normalised).
    edits : tuple of Edit
        Applied in order; empty: ``x_D`` is returned unchanged.
    mean_act_N : np.ndarray
        Mean activation of each latent when it fires.

    Returns
    -------
    np.ndarray
        The edited query ``[d_in]`` float32.

    Raises
    ------
    ValueError
        If a latent id is out of range or a factor is negative.
    """
    x = torch.as_tensor(np.asarray(x_D, dtype=np.float32)).reshape(1, -1)
    if not edits:
        return x[0].numpy()
    for e in edits:
        if not 0 <= e.latent < sae.n_latents:
            raise ValueError(f"edit latent {e.latent}: expected 0..{sae.n_latents - 1}")
        if e.factor < 0:
            raise ValueError(f"edit factor {e.factor} for latent {e.latent}: expected >= 0")
    z = sae.encode(x)
    z_new = z.clone()
    for e in edits:
        if e.factor == 0:
            z_new[0, e.latent] = 0.0
        else:
            base = max(float(z[0, e.latent]), float(mean_act_N[e.latent]))
            z_new[0, e.latent] = e.factor * base
    x_new = x + (sae.decode(z_new) - sae.decode(z))
    return x_new[0].numpy()
