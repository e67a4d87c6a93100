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

from vsae.data.checks import DataError


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


class HeldOutRows:
    """Recognises held-out rows when they come round again (exact float32 bit match).

    Rows are keyed by a wrapping 64-bit linear hash of the bit patterns of their first (up to)
    32 values; a key hit is confirmed by comparing the whole row, so a collision never drops a
    row that is not held out. Rows equal to a held-out row (duplicates) are dropped with it.

    Parameters
    ----------
    held_ND : Tensor
        The held-out rows [N, D].
    """

    def __init__(self, held_ND: Tensor) -> None:
        assert held_ND.ndim == 2, held_ND.shape
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
        """``x_BD`` without its held-out rows (the same tensor when there are none)."""
        assert x_BD.ndim == 2 and x_BD.shape[1] == self.held_ND.shape[1], x_BD.shape
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


class IterableSource:
    """Training batches from an iterable; its first ``hold`` rows are held out.

    The held-out prefix gives the evaluation set (first ``eval_samples`` rows)
    and the sample for normalisation and data-dependent init. When the iterable
    ends it is iterated again (a new pass), so it must be re-iterable for runs
    longer than one pass.

    Passes are numbered 0, 1, ...; before each ``iter()`` an iterable with a
    ``set_epoch(epoch)`` method (the shard loaders of ``vsae.data.shards``) is
    told the pass number, so each pass has its own order, a pure function of
    the loader's seed and the pass (and a resumed run replays the same passes).
    From the second pass on, the held-out rows are recognised by value and
    left out (see :class:`HeldOutRows`), whatever order the pass has.
    """

    def __init__(self, data: Iterable, batch_size: int, eval_samples: int, hold: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.one_shot = iter(data) is data
        self.passes = 0
        stream = rebatch(self._open_pass(), batch_size)
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
        self._held_out = HeldOutRows(self.held)
        self._stream = stream
        self._next_step = 0

    def _open_pass(self) -> Iterator:
        """Iterate the data again, first telling it which pass this is (``set_epoch``)."""
        set_epoch = getattr(self.data, "set_epoch", None)
        if callable(set_epoch) and not self.one_shot:
            set_epoch(self.passes)
        return iter(self.data)

    def _without_held(self, batches: Iterator) -> Iterator:
        for b in batches:
            b = torch.as_tensor(b)
            yield self._held_out.drop(b) if b.ndim == 2 and b.shape[1] == self.d else b

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
        self.passes += 1
        # the held-out prefix is never trained on: dropped by value, as later passes may
        # bring its rows in another order
        self._stream = rebatch(self._without_held(self._open_pass()), self.batch_size)
        try:
            return next(self._stream)
        except StopIteration:
            raise DataError(
                f"pass {self.passes} over the data gave no full batch of {self.batch_size} rows "
                f"besides the {len(self.held)} held-out rows; lower eval_samples or batch_size"
            ) from None

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
