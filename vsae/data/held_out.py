"""Recognise an iterable's held-out rows when a later pass brings them round again."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class HeldOutRows:
    """Recognises held-out rows when they come round again (exact float32 bit match).

    Rows are keyed by a wrapping 64-bit linear hash of the bit patterns of their first (up to)
    32 values; a key hit is confirmed by comparing the whole row, so a collision never drops a
    row that is not held out. Rows equal to a held-out row (duplicates) are dropped with it.

    Parameters
    ----------
    held_ND : Tensor
        The held-out rows [N, D].

    Raises
    ------
    ValueError
        When ``held_ND`` is not 2-D.
    """

    def __init__(self, held_ND: Tensor) -> None:
        if held_ND.ndim != 2:
            raise ValueError(f"held_ND has shape {tuple(held_ND.shape)}; expected [N, D]")
        self.held_ND = held_ND.detach().to("cpu", torch.float32).contiguous()
        self.cols = min(32, self.held_ND.shape[1])
        rng = np.random.default_rng(0x5EED)
        self.mult_C = rng.integers(1, 2**63, size=self.cols, dtype=np.uint64) | np.uint64(1)
        keys_N = self._keys(self.held_ND)
        self.rows_of: dict[int, list[int]] = {}
        for i, k in enumerate(keys_N.tolist()):
            self.rows_of.setdefault(k, []).append(i)
        self.keys = np.unique(keys_N)

    def _keys(self, x_BD: Tensor) -> np.ndarray:
        bits_BC = x_BD[:, : self.cols].contiguous().numpy().view(np.uint32).astype(np.uint64)
        return (bits_BC * self.mult_C).sum(axis=1, dtype=np.uint64)  # wraps modulo 2**64

    def drop(self, x_BD: Tensor) -> Tensor:
        """``x_BD`` without its held-out rows.

        Parameters
        ----------
        x_BD : Tensor
            A batch [B, D] of the same width as the held-out rows.

        Returns
        -------
        Tensor
            [B', D], B' <= B, on ``x_BD``'s device; the same tensor when no row is held out.

        Raises
        ------
        ValueError
            When ``x_BD`` is not [B, D] with the held-out rows' D.
        """
        if x_BD.ndim != 2 or x_BD.shape[1] != self.held_ND.shape[1]:
            raise ValueError(
                f"batch has shape {tuple(x_BD.shape)}; expected [B, {self.held_ND.shape[1]}]"
            )
        x_cpu = x_BD.detach().to("cpu", torch.float32).contiguous()
        keys_B = self._keys(x_cpu)
        pos_B = np.minimum(np.searchsorted(self.keys, keys_B), len(self.keys) - 1)
        hits = np.nonzero(self.keys[pos_B] == keys_B)[0]
        if len(hits) == 0:
            return x_BD
        keep_B = torch.ones(len(x_cpu), dtype=torch.bool)
        for i in hits.tolist():
            for j in self.rows_of[int(keys_B[i])]:
                if torch.equal(x_cpu[i], self.held_ND[j]):
                    keep_B[i] = False
                    break
        return x_BD[keep_B.to(x_BD.device)]
