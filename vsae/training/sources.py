"""Where training batches come from: arrays (in memory or memory-mapped) or iterables.

An array source draws batch ``s`` as a pure function of (seed, s), so a resumed
run sees exactly the batches an uninterrupted one would. An iterable source is
re-batched to the training batch size; resuming skips the batches already used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class DataError(ValueError):
    """Training data of the wrong shape, type or content."""


def as_array(data: object) -> np.ndarray | Tensor | None:
    """The data as a 2-D array (a .npy path is memory-mapped), or None for an iterable."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.suffix != ".npy":
            return None
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        if arr.ndim != 2:
            raise DataError(f"{path}: array has shape {arr.shape}; expected [N, D]")
        return arr
    if isinstance(data, (np.ndarray, Tensor)):
        if data.ndim != 2:
            raise DataError(f"data has shape {tuple(data.shape)}; expected [N, D]")
        return data
    return None


def _rows(arr: np.ndarray | Tensor, idx: np.ndarray) -> Tensor:
    if isinstance(arr, Tensor):
        return arr[torch.from_numpy(idx)].float()
    order = np.argsort(idx)  # sorted reads are much faster on a memmap
    out = np.empty((len(idx), arr.shape[1]), dtype=np.float32)
    out[order] = arr[idx[order]]
    return torch.from_numpy(out)


class ArraySource:
    """Shuffled mini-batches of an [N, D] array with a held-out evaluation split.

    Parameters
    ----------
    arr : ndarray or Tensor
        The data; a memmap is read row-wise on demand.
    batch_size : int
        Rows per batch (per process).
    seed : int
        Seed of the split and of every epoch's order.
    eval_samples : int
        Rows held out for evaluation (at most 10% of the data).
    rank, world_size : int
        Data-parallel position; each process reads a disjoint slice of each global batch.
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
        """The batch of optimiser step ``step`` for this process."""
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch + 1])
            self._order, self._epoch = rng.permutation(self.train_idx), epoch
        start = j * self.global_batch + self.rank * self.batch_size
        return _rows(self.arr, self._order[start : start + self.batch_size])

    def sample(self, n: int) -> Tensor:
        """Up to n training rows for normalisation and data-dependent init."""
        return _rows(self.arr, self.train_idx[:n])

    def eval_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """The held-out rows, in batches."""
        for start in range(0, len(self.eval_idx), batch_size):
            yield _rows(self.arr, self.eval_idx[start : start + batch_size])


def rebatch(batches: Iterable, batch_size: int) -> Iterator[Tensor]:
    """Re-cut a stream of [b, D] batches into [batch_size, D] float32 batches."""
    buf: list[Tensor] = []
    have = 0
    for i, b in enumerate(batches):
        b = torch.as_tensor(b)
        if b.ndim != 2:
            raise DataError(f"batch {i} has shape {tuple(b.shape)}; expected [B, D]")
        buf.append(b.float())
        have += b.shape[0]
        while have >= batch_size:
            cat = torch.cat(buf)
            yield cat[:batch_size]
            rest = cat[batch_size:]
            buf, have = ([rest] if len(rest) else []), len(rest)


class IterableSource:
    """Training batches from an iterable; its first ``hold`` rows are held out.

    The held-out prefix gives the evaluation set (first ``eval_samples`` rows)
    and the sample for normalisation and data-dependent init. When the iterable
    ends it is iterated again (a new epoch), so it must be re-iterable for runs
    longer than one pass.
    """

    def __init__(self, data: Iterable, batch_size: int, eval_samples: int, hold: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.one_shot = iter(data) is data
        stream = rebatch(iter(data), batch_size)
        held: list[Tensor] = []
        have = 0
        for b in stream:
            held.append(b)
            have += b.shape[0]
            if have >= hold:
                break
        if not held:
            raise DataError("the data iterable yielded no batches")
        self.held = torch.cat(held)
        self.d = self.held.shape[1]
        self.n_eval = min(eval_samples, len(self.held))
        self._stream = stream
        self._held_batches = len(held)
        self._next_step = 0

    def start_at(self, step: int) -> None:
        """Skip the batches of steps already trained (resume)."""
        if step == 0:
            return
        if self.one_shot:
            raise DataError("cannot resume from a one-shot iterator; pass a re-iterable")
        for _ in range(step):
            self._next()
        self._next_step = step

    def _next(self) -> Tensor:
        try:
            return next(self._stream)
        except StopIteration:
            if self.one_shot:
                raise DataError(
                    "the data iterator ran out; pass a re-iterable or fewer steps"
                ) from None
            self._stream = rebatch(iter(self.data), self.batch_size)
            for _ in range(self._held_batches):  # the held-out prefix is never trained on
                next(self._stream, None)
            return next(self._stream)

    def batch(self, step: int) -> Tensor:
        """The next batch; steps must be consecutive."""
        assert step == self._next_step, f"step {step} requested, next is {self._next_step}"
        self._next_step += 1
        return self._next()

    def sample(self, n: int) -> Tensor:
        """The held-out prefix (up to n rows) for normalisation and init."""
        return self.held[:n]

    def eval_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """The evaluation rows, in batches."""
        ev = self.held[: self.n_eval]
        for start in range(0, len(ev), batch_size):
            yield ev[start : start + batch_size]
