"""Training batches from an iterable of [b, D] batches (a shard loader, a list, a generator).

The iterable is re-batched to the training batch size; its first ``hold`` rows are held out
(evaluation set, normalisation and init sample), read lazily on first use. Resuming skips the
batches already trained.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from vsae.data.checks import DataError
from vsae.data.held_out import HeldOutRows


def rebatch(batches: Iterable, batch_size: int) -> Iterator[Tensor]:
    """Re-cut a stream of [b, D] batches into [batch_size, D] float32 batches.

    Parameters
    ----------
    batches : iterable of array-like
        Batches [b, D] of any b.
    batch_size : int
        Rows per output batch; a last partial batch is dropped.

    Yields
    ------
    Tensor
        float32 [batch_size, D].

    Raises
    ------
    DataError
        When a batch is not 2-D (names the batch's position).
    """
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

    The held-out prefix gives the evaluation set (first ``eval_samples`` rows) and the sample
    for normalisation and data-dependent init. It is read on first use (:meth:`hold_rows`,
    called by ``d`` when the iterable does not say its width, ``batch``, ``sample``,
    ``eval_batches`` and ``start_at``), so opening a source reads nothing. When the iterable
    ends it is iterated again (a new pass), so it must be re-iterable for runs longer than one
    pass.

    Passes are numbered 0, 1, ...; before each ``iter()`` an iterable with a ``set_epoch(epoch)``
    method (the shard loaders of ``vsae.data.shards``) is told the pass number, so each pass has
    its own order, a pure function of the loader's seed and the pass (and a resumed run replays
    the same passes). From the second pass on, the held-out rows are recognised by value and
    left out (see :class:`~vsae.data.held_out.HeldOutRows`), whatever order the pass has.

    Parameters
    ----------
    data : iterable of array-like [b, D]
        The batches; a one-shot iterator works for runs of at most one pass without resume.
    batch_size : int
        Rows per training batch.
    eval_samples : int
        Rows of the held-out prefix used for evaluation.
    hold : int
        Rows held out (at least ``eval_samples``; archetypal SAEs need their candidate count).
    """

    def __init__(self, data: Iterable, batch_size: int, eval_samples: int, hold: int) -> None:
        self.data = data
        self.batch_size = batch_size
        self.eval_samples = eval_samples
        self.hold = hold
        self.one_shot = iter(data) is data
        self.passes = 0
        self.steps_per_epoch: int | None = None  # unknown: an iterable has no fixed length
        self._held: Tensor | None = None
        self._held_out: HeldOutRows | None = None
        self._stream: Iterator[Tensor] | None = None
        self._next_step = 0

    def hold_rows(self) -> Tensor:
        """Read the held-out prefix now if it is not read yet (idempotent).

        Returns
        -------
        Tensor
            The held-out rows, float32 [>= hold, D] (whole batches of ``batch_size``).

        Raises
        ------
        DataError
            When the iterable yields no batch.
        """
        if self._held is not None:
            return self._held
        stream = rebatch(self._open_pass(), self.batch_size)
        held: list[Tensor] = []
        have = 0
        for b in stream:
            held.append(b)
            have += b.shape[0]
            if have >= self.hold:
                break
        if not held:
            raise DataError("the data iterable yielded no batches")
        self._held = torch.cat(held)
        self._held_out = HeldOutRows(self._held)
        self._stream = stream
        return self._held

    def prepare(self) -> None:
        """Read what the source reads up front: the held-out prefix (see :meth:`hold_rows`)."""
        self.hold_rows()

    @property
    def held(self) -> Tensor:
        """The held-out rows [>= hold, D] (read on first use)."""
        return self.hold_rows()

    @property
    def d(self) -> int:
        """The data's width D: the iterable's own ``d`` when it has one, else the held rows'."""
        width = getattr(self.data, "d", None)
        return int(width) if isinstance(width, int) else int(self.hold_rows().shape[1])

    @property
    def n_eval(self) -> int:
        """Rows of the evaluation set: ``eval_samples``, at most the held-out rows."""
        return min(self.eval_samples, len(self.hold_rows()))

    def _open_pass(self) -> Iterator:
        """Iterate the data again, first telling it which pass this is (``set_epoch``)."""
        set_epoch = getattr(self.data, "set_epoch", None)
        if callable(set_epoch) and not self.one_shot:
            set_epoch(self.passes)
        return iter(self.data)

    def _without_held(self, batches: Iterator) -> Iterator:
        d = self.hold_rows().shape[1]
        for b in batches:
            b = torch.as_tensor(b)
            yield self._held_out.drop(b) if b.ndim == 2 and b.shape[1] == d else b

    def start_at(self, step: int) -> None:
        """Skip the batches of steps already trained (resume).

        Parameters
        ----------
        step : int
            The first step still to train.

        Raises
        ------
        DataError
            When resuming (``step > 0``) a one-shot iterator.
        """
        self.hold_rows()
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
                f"besides the {len(self._held)} held-out rows; lower eval_samples or batch_size"
            ) from None

    def batch(self, step: int) -> Tensor:
        """The next training batch; steps must be consecutive.

        Parameters
        ----------
        step : int
            The step asked for: the one after the previous call's (or ``start_at``'s).

        Returns
        -------
        Tensor
            float32 [batch_size, D].

        Raises
        ------
        ValueError
            When ``step`` is not the next step.
        DataError
            When the data runs out (one-shot) or a pass gives no full batch.
        """
        self.hold_rows()
        if step != self._next_step:
            raise ValueError(f"step {step} requested, the next is {self._next_step}")
        self._next_step += 1
        return self._next()

    def sample(self, n: int) -> Tensor:
        """The held-out prefix (up to ``n`` rows) for normalisation and init.

        Parameters
        ----------
        n : int
            Rows wanted.

        Returns
        -------
        Tensor
            float32 [min(n, held rows), D].
        """
        return self.hold_rows()[:n]

    def eval_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """The evaluation rows (the first ``n_eval`` held-out rows), in batches.

        Parameters
        ----------
        batch_size : int
            Rows per batch.

        Yields
        ------
        Tensor
            float32 [<= batch_size, D].
        """
        ev = self.hold_rows()[: self.n_eval]
        for start in range(0, len(ev), batch_size):
            yield ev[start : start + batch_size]

    def all_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """One pass over the data (held-out rows included), re-cut to ``batch_size`` rows.

        Parameters
        ----------
        batch_size : int
            Rows per batch; a last partial batch is dropped.

        Yields
        ------
        Tensor
            float32 [batch_size, D].
        """
        yield from rebatch(iter(self.data), batch_size)
