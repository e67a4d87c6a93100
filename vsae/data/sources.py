"""One way in for data: ``open_source(x)`` for an array, a ``.npy`` file, a shard folder or an
iterable of batches.

Every consumer of activations (the trainer, ``vsae train``/``eval``/``quickstart``, the demo's
world data, the benchmarks, the analysis layer) opens its data here and gets a batch source
with one interface (:class:`BatchSource`):

============================  ===============================================================
``x``                         source
============================  ===============================================================
ndarray or Tensor [N, D]      :class:`~vsae.data.array_source.ArraySource` (random held-out
                              rows, batch ``s`` a pure function of (seed, s))
``FILE.npy``                  the same, memory-mapped (never unpickled)
shard folder (``meta.json``)  :class:`~vsae.data.iterable_source.IterableSource` over
                              ``vsae.data.shards.open_batches`` (split across DDP ranks)
iterable of [b, D] batches    :class:`~vsae.data.iterable_source.IterableSource` (first rows
                              held out, read lazily)
an open source                returned as it is
============================  ===============================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from vsae.data.array_source import ArraySource
from vsae.data.checks import DataError, check_array, check_batch, open_npy
from vsae.data.iterable_source import IterableSource
from vsae.data.shard_format import ShardError
from vsae.data.shard_reader import open_batches


@runtime_checkable
class BatchSource(Protocol):
    """What every source of ``open_source`` offers (ArraySource, IterableSource).

    A protocol: it is not constructed, ``ArraySource`` and ``IterableSource`` implement it.

    Parameters
    ----------
    None

    Attributes
    ----------
    d : int
        Width D of the data.
    steps_per_epoch : int or None
        Steps of one pass over the training rows; None for an iterable (no fixed length).
    """

    d: int
    steps_per_epoch: int | None

    def prepare(self) -> None:
        """Read what the source reads up front (an iterable's held-out prefix)."""

    def batch(self, step: int) -> Tensor:
        """The training batch of optimiser step ``step``.

        Parameters
        ----------
        step : int
            The step (an iterable's steps must come in order).

        Returns
        -------
        Tensor
            float32 [batch_size, D].
        """

    def start_at(self, step: int) -> None:
        """Resume at ``step``: skip the batches already trained.

        Parameters
        ----------
        step : int
            The first step still to train.
        """

    def sample(self, n: int) -> Tensor:
        """Up to ``n`` rows for normalisation and data-dependent init.

        Parameters
        ----------
        n : int
            Rows wanted.

        Returns
        -------
        Tensor
            float32 [<= n, D].
        """

    def eval_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """The held-out evaluation rows, in batches.

        Parameters
        ----------
        batch_size : int
            Rows per batch.

        Returns
        -------
        iterator of Tensor
            float32 [<= batch_size, D].
        """

    def all_batches(self, batch_size: int = 4096) -> Iterator[Tensor]:
        """Every row once, in batches.

        Parameters
        ----------
        batch_size : int
            Rows per batch.

        Returns
        -------
        iterator of Tensor
            float32 [<= batch_size, D].
        """


@dataclass(frozen=True)
class SourceConfig:
    """How ``open_source`` cuts its data.

    Attributes
    ----------
    batch_size : int
        Rows per training batch (per process).
    seed : int
        Seed of the held-out split and the batch order (a shard folder's shuffle too).
    eval_samples : int
        Held-out rows for evaluation (an array holds out at most 10% of its rows).
    hold : int
        Rows an iterable holds out: ``max(eval_samples, hold)`` (an archetypal SAE's k-means
        needs its candidate count).
    rank, world_size : int, optional
        Data-parallel position. Arrays default to rank 0 of 1; a shard folder to
        torch.distributed's (or ``RANK``/``WORLD_SIZE``).
    hookpoint : str, optional
        Which hookpoint of a shard folder; required when it holds several.
    num_workers : int
        Reader processes of a shard folder (0 reads in the calling process).
    skip_nonfinite : bool
        Drop rows holding NaN or inf (an array's once when opened, a stream's batch by
        batch) instead of refusing an array that has them (``vsae.data.checks``). The
        source's ``skipped`` counts them.
    skip_corrupt : bool
        A shard folder's corrupt or truncated shards are skipped (named on stderr, listed by
        the source's ``skipped``) instead of stopping with ``ShardError``.
    """

    batch_size: int = 4096
    seed: int = 0
    eval_samples: int = 4096
    hold: int = 0
    rank: int | None = None
    world_size: int | None = None
    hookpoint: str | None = None
    num_workers: int = 0
    skip_nonfinite: bool = False
    skip_corrupt: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.eval_samples < 0 or self.hold < 0:
            raise ValueError(
                f"eval_samples and hold must be >= 0, got {self.eval_samples} and {self.hold}"
            )


def open_source(x: object, cfg: SourceConfig | None = None, **fields: object) -> BatchSource:
    """Open training data of any supported kind as a batch source.

    Parameters
    ----------
    x : ndarray, Tensor, str, Path, iterable or BatchSource
        An [N, D] array, a ``.npy`` file [N, D] (memory-mapped), a shard folder written by
        ``vsae extract`` (``meta.json`` + shards), an iterable of [b, D] batches, or an open
        source (returned unchanged).
    cfg : SourceConfig, optional
        Batch size, seed, held-out rows, DDP position, hookpoint, reader workers.
    **fields
        ``SourceConfig`` fields overriding ``cfg``'s (or the defaults).

    Returns
    -------
    BatchSource
        An ``ArraySource`` (arrays, ``.npy``) or an ``IterableSource`` (shard folders,
        iterables); nothing of an iterable is read yet.

    Raises
    ------
    DataError
        A missing path, a file that is not ``.npy``, an unreadable array or shard folder, an
        array that is not [N, D], fewer training rows than one batch, or an object that is
        neither an array nor an iterable. Each message names the file or object.
    ValueError
        An unknown ``SourceConfig`` field or a bad value.
    """
    cfg = _config(cfg, fields)
    if isinstance(x, (ArraySource, IterableSource)):
        return x
    skipped = Skipped()
    if isinstance(x, (str, Path)) and Path(x).is_dir():
        source = _shard_source(Path(x), cfg, skipped)
        source.skipped = skipped
        return source
    arr = as_array(x, cfg.skip_nonfinite)
    if arr is not None:
        rank = 0 if cfg.rank is None else cfg.rank
        world = 1 if cfg.world_size is None else cfg.world_size
        rows = open_npy(x).shape[0] if isinstance(x, (str, Path)) else x.shape[0]
        skipped.nonfinite_rows = int(rows) - int(arr.shape[0])
        source = ArraySource(arr, cfg.batch_size, cfg.seed, cfg.eval_samples, rank, world)
        source.skipped = skipped
        return source
    if isinstance(x, (str, Path)):
        raise DataError(f"{x}: expected a .npy file or a shard folder")
    if not isinstance(x, Iterable):
        raise DataError(
            f"cannot read batches from {type(x).__name__}: expected an array, a .npy file, "
            "a shard folder or an iterable of [B, D] batches"
        )
    source = _iterable_source(x, cfg, skipped)
    source.skipped = skipped
    return source


@dataclass
class Skipped:
    """What a source opened by :func:`open_source` has left out so far (its ``skipped``).

    Attributes
    ----------
    nonfinite_rows : int
        Rows dropped for NaN or inf (``skip_nonfinite``): an array's once, a stream's as its
        batches are read (a second pass over a stream counts its rows again).
    loader : object, optional
        A shard folder's loader, whose ``corrupt_shards()`` lists the shards skipped.
    """

    nonfinite_rows: int = 0
    loader: object | None = None

    def corrupt_shards(self) -> list[str]:
        """The shards skipped as corrupt (``skip_corrupt``), in the folder's order.

        Returns
        -------
        list of str
        """
        return [] if self.loader is None else list(self.loader.corrupt_shards())


def source_width(x: object, hookpoint: str | None = None) -> int:
    """The width D of data ``open_source`` accepts, reading neither its rows nor its batches.

    For a ``.npy`` file its header, for a shard folder its ``meta.json``, for an array its
    shape; an iterable is opened (its first batches are read). The data is checked when it
    is opened for use.

    Parameters
    ----------
    x : ndarray, Tensor, str, Path, iterable or BatchSource
        As for :func:`open_source`.
    hookpoint : str, optional
        Which hookpoint of a shard folder.

    Returns
    -------
    int

    Raises
    ------
    DataError
        As :func:`open_source` (for a ``.npy`` file: its header checks).
    """
    if isinstance(x, (str, Path)) and Path(x).suffix == ".npy" and not Path(x).is_dir():
        return int(open_npy(x).shape[1])
    if isinstance(x, (np.ndarray, Tensor)) and x.ndim == 2:
        return int(x.shape[1])
    return open_source(x, hookpoint=hookpoint).d


def as_array(data: object, skip_nonfinite: bool = False) -> np.ndarray | Tensor | None:
    """The data as a 2-D array (a ``.npy`` path is memory-mapped), or None when it is not one.

    Parameters
    ----------
    data : object
        A ``.npy`` path, an ndarray or a Tensor; anything else gives None.
    skip_nonfinite : bool
        Drop the rows holding NaN or inf instead of refusing the array.

    Returns
    -------
    ndarray, Tensor or None
        The checked [N, D] array (a read-only memmap for a file; an in-memory copy of the
        finite rows when some were dropped).

    Raises
    ------
    DataError
        A missing ``.npy`` file or one that is not a numeric array, an array that is not a
        non-empty [N, D] float array, or non-finite rows (without ``skip_nonfinite``).
    """
    if isinstance(data, (str, Path)):
        if Path(data).suffix != ".npy":
            return None
        return checked_array(open_npy(data), str(data), skip_nonfinite)
    if isinstance(data, (np.ndarray, Tensor)):
        return checked_array(data, "data", skip_nonfinite)
    return None


def checked_array(
    arr: np.ndarray | Tensor, where: str, skip_nonfinite: bool = False
) -> np.ndarray | Tensor:
    """The one place every array (in memory or a ``.npy`` file) is checked before use.

    ``vsae.data.checks.check_array``: a non-empty [N, D] array of a float dtype, every value
    finite (one chunked scan; a memmap is read once).

    Parameters
    ----------
    arr : ndarray or Tensor
        The array.
    where : str
        The file or object named in messages.
    skip_nonfinite : bool
        Keep only the finite rows instead of refusing the array.

    Returns
    -------
    ndarray or Tensor
        ``arr``, or its finite rows.

    Raises
    ------
    DataError
        From ``check_array``: bad shape or dtype, or non-finite rows without
        ``skip_nonfinite``.
    """
    if arr.ndim != 2:  # before check_array: its message names the shape the same way
        raise DataError(f"{where}: array has shape {tuple(arr.shape)}; expected [N, D]")
    result = check_array(arr, where, skip_nonfinite)
    if result.keep_rows is None:
        return arr
    keep = result.keep_rows
    return arr[torch.from_numpy(keep)] if isinstance(arr, Tensor) else np.asarray(arr[keep])


def _shard_source(path: Path, cfg: SourceConfig, skipped: Skipped) -> IterableSource:
    """An IterableSource over a shard folder's shuffled batches (split across DDP ranks)."""
    ddp = {} if cfg.rank is None else {"rank": cfg.rank}
    if cfg.world_size is not None:
        ddp["world_size"] = cfg.world_size
    try:
        loader = open_batches(
            path,
            cfg.batch_size,
            hookpoint=cfg.hookpoint,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            # the reader names the shard of a non-finite row; with skip_nonfinite the rows
            # pass on to be dropped (and counted) below
            check_finite=not cfg.skip_nonfinite,
            skip_corrupt=cfg.skip_corrupt,
            **ddp,
        )
    except (ShardError, ValueError, KeyError) as err:
        raise DataError(f"{path}: {err}") from None
    skipped.loader = loader
    return _iterable_source(loader, cfg, skipped)


def _iterable_source(batches: Iterable, cfg: SourceConfig, skipped: Skipped) -> IterableSource:
    """An IterableSource of checked batches: a non-finite row is an error naming the batch,
    or with ``skip_nonfinite`` it is dropped (and counted) first; so the held-out rows, and the
    normalisation statistics taken from them, are checked too."""
    one_shot = iter(batches) is batches
    skip = cfg.skip_nonfinite
    batches = (
        _finite_rows(batches, skipped, skip) if one_shot else _FiniteRows(batches, skipped, skip)
    )
    hold = max(cfg.eval_samples, cfg.hold)
    return IterableSource(batches, cfg.batch_size, cfg.eval_samples, hold)


def _finite_rows(batches: Iterable, skipped: Skipped, skip: bool = True) -> Iterator[Tensor]:
    for i, x_BD in enumerate(batches):
        kept_BD = check_batch(x_BD, f"batch {i}", skip_nonfinite=skip)
        skipped.nonfinite_rows += int(x_BD.shape[0] - kept_BD.shape[0])
        yield kept_BD


class _FiniteRows:
    """A re-iterable view of batches without their non-finite rows (``check_batch``)."""

    def __init__(self, batches: Iterable, skipped: Skipped, skip: bool = True) -> None:
        self.batches = batches
        self.skipped = skipped
        self.skip = skip
        self.d = getattr(batches, "d", None)

    def set_epoch(self, epoch: int) -> None:
        """Pass the pass number on to the batches when they take one."""
        set_epoch = getattr(self.batches, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __iter__(self) -> Iterator[Tensor]:
        return _finite_rows(self.batches, self.skipped, self.skip)


def _config(cfg: SourceConfig | None, fields: dict[str, object]) -> SourceConfig:
    base = cfg if cfg is not None else SourceConfig()
    names = {f.name for f in dataclasses.fields(SourceConfig)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"unknown source option(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(base, **fields)
