"""Learning-rate schedule: linear warm-up, constant, then linear decay to zero."""

from __future__ import annotations


def lr_factor(step: int, total: int, warmup: int, decay_frac: float) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total``.

    Parameters
    ----------
    step : int
        Current optimiser step.
    total : int
        Total steps.
    warmup : int
        Warm-up steps (linear from 1/warmup to 1).
    decay_frac : float
        Final fraction of ``total`` over which the rate falls linearly to 0.

    Returns
    -------
    float
        The factor in [0, 1].
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_start = int(total * (1 - decay_frac))
    if step < decay_start or total <= decay_start:
        return 1.0
    return max(0.0, (total - step) / (total - decay_start))
