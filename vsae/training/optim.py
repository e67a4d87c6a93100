"""The optimiser every vsae training loop (and the speed benchmark) uses."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from vsae.config import TrainConfig


def adamw(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with ``cfg``'s settings, using the fused kernel where torch has one.

    The fused kernel does the same update in one pass over each tensor; on CPU it is about
    5-20x faster than the default per-tensor loop for SAE-sized parameters (measured by
    ``vsae bench speed``), which matters because the sparse SAE step is otherwise cheap.

    Parameters
    ----------
    params : iterable of Parameter
        Trainable parameters, all on one device.
    cfg : TrainConfig
        ``lr``, ``betas``, ``eps`` and ``weight_decay`` are used.

    Returns
    -------
    torch.optim.AdamW
    """
    params = list(params)
    kwargs = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(params, **kwargs)
