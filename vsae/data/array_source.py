"""Shuffled mini-batches of an [N, D] array (in memory or memory-mapped), with a held-out split.

Batch ``s`` is a pure function of (seed, s), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from vsae.data.checks import DataError


def rows_of(arr_ND: np.ndarray | Tensor, idx_B: np.ndarray) -> Tensor:
    """Rows ``idx_B`` of an array as a float32 tensor [B, D].

    Parameters
    ----------
    arr_ND : ndarray or Tensor
        The data [N, D]; a memmap is read in sorted row order (much faster than random order).
    idx_B : ndarray of int
        Row indices, any order; the result keeps it.

    Returns
    -------
    Tensor
        float32 [B, D].
    """
    if isinstance(arr_ND, Tensor):
        return arr_ND[torch.from_numpy(idx_B)].float()
    order = np.argsort(idx_B)
    out_BD = np.empty((len(idx_B), arr_ND.shape[1]), dtype=np.float32)
    out_BD[order] = arr_ND[idx_B[order]]
    return torch.from_numpy(out_BD)


class ArraySource:
    """Shuffled mini-batches of an [N, D] array with a held-out evaluation split.

    Parameters
    ----------
    arr : ndarray or Tensor
        The data [N, D]; a memmap is read row-wise on demand.
    batch_size : int
        Rows per batch (per process).
    seed : int
        Seed of the split and of every epoch's order.
    eval_samples : int
        Rows held out for evaluation (at most 10% of the data).
    rank, world_size : int
        Data-parallel position; each process reads a disjoint slice of each global batch.

    Raises
    ------
    DataError
        When the training rows are fewer than one global batch.
    """

    def __init__(
        self,
        arr: np.ndarray | Tensor,
        batch_size: int,
        seed: int,
        eval_samples: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.arr = arr
        self.d = arr.shape[1]
        n = arr.shape[0]
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        perm = np.random.default_rng(seed).permutation(n)
        n_eval = min(eval_samples, n // 10)
        self.eval_idx, self.train_idx = perm[:n_eval], perm[n_eval:]
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = len(self.train_idx) // self.global_batch
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{len(self.train_idx)} training rows are fewer than one global batch of "
                f"{self.global_batch}; lower batch_size"
            )
        self.seed = seed
        self._epoch, self._order = -1, perm

    def batch(self, step: int) -> Tensor:
        """The batch of optimiser step ``step`` for this process.

        Parameters
        ----------
        step : int
            Any step, in any order (epoch ``step // steps_per_epoch`` has its own order).

        Returns
        -------
        Tensor
            float32 [batch_size, D].
        """
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch + 1])
            self._order, self._epoch = rng.permutation(self.train_idx), epoch
        start = j * self.global_batch + self.rank * self.batch_size
        return rows_of(self.arr, self._order[start : start + self.batch_size])

    def prepare(self) -> None:
        """Nothing to read up front: rows are read when a batch asks for them."""

    def start_at(self, step: int) -> None:
        """Resume at ``step``: nothing to skip, batches are a function of the step.

        Parameters
        ----------
        step : int
            The first step still to train.
        """

    def sample(self, n: int) -> Tensor:
        """Up to ``n`` training rows [n, D] for normalisation and data-dependent init.

        Parameters
        ----------
        n : int
            Rows wanted.

        Returns
        -------
        Tensor
            float32 [min(n, training rows), D].
        """
        return rows_of(self.arr, self.train_idx[:n])

    def eval_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """The held-out rows, in float32 batches of at most ``batch_size`` rows.

        Parameters
        ----------
        batch_size : int
            Rows per batch.

        Yields
        ------
        Tensor
            float32 [<= batch_size, D].
        """
        for start in range(0, len(self.eval_idx), batch_size):
            yield rows_of(self.arr, self.eval_idx[start : start + batch_size])

    def all_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """Every row in storage order (training and held-out), in float32 batches.

        Parameters
        ----------
        batch_size : int
            Rows per batch.

        Yields
        ------
        Tensor
            float32 [<= batch_size, D].
        """
        arr = self.arr
        for start in range(0, arr.shape[0], batch_size):
            rows = arr[start : start + batch_size]
            # a copy: a memmap's rows are read-only
            yield (
                rows.float()
                if isinstance(rows, Tensor)
                else torch.from_numpy(np.array(rows, dtype=np.float32))
            )
