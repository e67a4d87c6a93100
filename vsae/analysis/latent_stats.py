"""Per-latent statistics of an SAE over a stream of inputs: firing frequency, mean activation
when firing, maximum, and the ids of the top-activating inputs.

Streams in chunks: memory is ``[n_latents, top + chunk]`` for the running top list, never
``[n_inputs, n_latents]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

POOLS = ("max", "mean")


@dataclass(frozen=True)
class LatentStats:
    """What each latent does on a set of inputs.

    Attributes
    ----------
    freq_N : np.ndarray
        Fraction of inputs on which the latent fires (code > 0).
    mean_act_N : np.ndarray
        Mean code over the inputs where it fires (0 if never).
    max_act_N : np.ndarray
        Largest code.
    top_ids_NM : np.ndarray
        Input ids of the ``M`` largest codes, highest first (-1 where fewer inputs fired).
    top_vals_NM : np.ndarray
        Those codes.
    n_inputs : int
    """

    freq_N: np.ndarray
    mean_act_N: np.ndarray
    max_act_N: np.ndarray
    top_ids_NM: np.ndarray
    top_vals_NM: np.ndarray
    n_inputs: int


@torch.no_grad()
def latent_stats(
    sae, chunks: Iterable[torch.Tensor], top: int = 100, pool: str = "max"
) -> LatentStats:
    """Stream SAE inputs and collect per-latent statistics.

    Parameters
    ----------
    sae : BaseSAE
        The SAE (``encode`` gives dense codes ``[B, N]``).
    chunks : iterable of Tensor
        SAE inputs in input order, ``[B, d_in]`` or ``[B, T, d_in]`` (tokens of one image);
        ids count up from 0 across chunks.
    top : int
        How many top-activating inputs to keep per latent.
    pool : str
        ``max`` or ``mean``: how the codes of an image's tokens become one code per image.

    Returns
    -------
    LatentStats

    Raises
    ------
    ValueError
        If ``top < 1`` or no input was given.
    """
    if top < 1:
        raise ValueError(f"top={top}; expected >= 1")
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}; expected one of {POOLS}")
    n = sae.n_latents
    fires_N = torch.zeros(n, dtype=torch.float64)
    sums_N = torch.zeros(n, dtype=torch.float64)
    max_N = torch.zeros(n)
    top_vals_NM = torch.full((n, 0), -1.0)
    top_ids_NM = torch.zeros((n, 0), dtype=torch.int64)
    seen = 0
    for x_BD in chunks:
        codes_BN = pooled_codes(sae, x_BD, pool)
        b = codes_BN.shape[0]
        fires_N += (codes_BN > 0).sum(0)
        sums_N += codes_BN.clamp_min(0).sum(0, dtype=torch.float64)
        max_N = torch.maximum(max_N, codes_BN.max(0).values)
        vals_NC = torch.cat([top_vals_NM, codes_BN.t()], dim=1)
        ids_NC = torch.cat([top_ids_NM, torch.arange(seen, seen + b).expand(n, b)], dim=1)
        m = min(top, vals_NC.shape[1])
        top_vals_NM, pos_NM = vals_NC.topk(m, dim=1)
        top_ids_NM = ids_NC.gather(1, pos_NM)
        seen += b
    if seen == 0:
        raise ValueError("latent_stats: no inputs")
    ids = top_ids_NM.numpy().copy()
    ids[top_vals_NM.numpy() <= 0] = -1
    mean = (sums_N / fires_N.clamp_min(1)).float().numpy()
    return LatentStats(
        freq_N=(fires_N / seen).float().numpy(),
        mean_act_N=mean,
        max_act_N=max_N.numpy(),
        top_ids_NM=ids,
        top_vals_NM=top_vals_NM.numpy(),
        n_inputs=seen,
    )


def pooled_codes(sae, x: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """Dense codes of inputs, or of an image's tokens pooled per image.

    Parameters
    ----------
    sae : BaseSAE
    x : Tensor
        ``[B, d_in]``, or tokens ``[B, T, d_in]``.
    pool : str
        ``max`` or ``mean`` over ``T``.

    Returns
    -------
    Tensor
        ``[B, n_latents]``.

    Raises
    ------
    ValueError
        If ``x`` is neither 2-d nor 3-d.
    """
    if x.ndim == 2:
        return sae.encode(x.float())
    if x.ndim != 3:
        raise ValueError(f"SAE inputs of shape {tuple(x.shape)}; expected [B, D] or [B, T, D]")
    b, t, d = x.shape
    codes_BTN = sae.encode(x.reshape(b * t, d).float()).reshape(b, t, -1)
    return codes_BTN.amax(1) if pool == "max" else codes_BTN.mean(1)


def fired_top_ids(stats: LatentStats, latent: int) -> np.ndarray:
    """The latent's top input ids where it actually fired.

    Parameters
    ----------
    stats : LatentStats
    latent : int

    Returns
    -------
    np.ndarray
        Ids, highest code first.
    """
    ids = stats.top_ids_NM[latent]
    return ids[ids >= 0]
