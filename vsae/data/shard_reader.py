"""Streaming reader of activation shards: shuffled [B, D] batches for training."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import DataError, find_nonfinite
from .shard_format import STORE_DTYPE, ShardError, decode_array, read_meta
from .shard_samples import iter_shard_samples


class _ShuffleBuffer:
    """Vector-level shuffle buffer: vectorised reservoir replacement, then batching."""

    def __init__(self, d: int, capacity: int, rng: np.random.Generator):
        self.buf = np.empty((max(capacity, 1), d), dtype=STORE_DTYPE)
        self.n = 0
        self.rng = rng

    def push(self, x_TD: np.ndarray) -> np.ndarray | None:
        """Insert vectors; return the vectors displaced (None while filling)."""
        cap = self.buf.shape[0]
        free = cap - self.n
        if free > 0:
            take = min(free, x_TD.shape[0])
            self.buf[self.n : self.n + take] = x_TD[:take]
            self.n += take
            x_TD = x_TD[take:]
            if x_TD.shape[0] == 0:
                return None
        out = []
        while x_TD.shape[0] > 0:
            m = min(cap, x_TD.shape[0])
            idx = (
                self.rng.choice(cap, size=m, replace=False)
                if m > 1
                else self.rng.integers(0, cap, size=1)
            )
            out.append(self.buf[idx].copy())
            self.buf[idx] = x_TD[:m]
            x_TD = x_TD[m:]
        return np.concatenate(out) if len(out) > 1 else out[0]

    def drain(self) -> np.ndarray:
        rest = self.buf[: self.n][self.rng.permutation(self.n)]
        self.n = 0
        return rest


@dataclass(frozen=True)
class ShardConfig:
    """How a shard folder is streamed (see :func:`open_batches` for each field's meaning).

    Attributes
    ----------
    batch_size : int
        Vectors per batch on this rank (>= 1).
    hookpoint : str, optional
        Which hookpoint; required when the folder holds several.
    shuffle : bool
        Shuffle the shard order each epoch and pass vectors through the shuffle buffer.
    seed : int
        Seed of the shard order and the buffer.
    epoch_vectors : int, optional
        Fixed epoch length in vectors over all ranks (default: one pass when distributed).
    shuffle_buffer : int
        Capacity of the vector-level shuffle buffer.
    num_workers : int
        DataLoader worker processes (0 reads in the calling process).
    normalize : bool
        Return ``(x - mean) * scale`` with meta.json's statistics.
    drop_last : bool
        Drop a final partial batch.
    rank, world_size : int, optional
        Override the rank / world size (default: torch.distributed or RANK/WORLD_SIZE env).
    device : str or torch.device, optional
        Move every batch there.
    skip_corrupt : bool
        Skip a shard found corrupt or truncated (a warning on stderr names it; the samples
        read from it before the damage showed are kept) instead of raising ``ShardError``.
    check_finite : bool
        Raise ``DataError`` naming the shard, sample, row and column when a sample holds NaN
        or inf (False: pass them on, for a consumer that drops them).
    """

    batch_size: int
    hookpoint: str | None = None
    shuffle: bool = True
    seed: int = 0
    epoch_vectors: int | None = None
    shuffle_buffer: int = 65536
    num_workers: int = 0
    normalize: bool = False
    drop_last: bool = True
    rank: int | None = None
    world_size: int | None = None
    device: str | torch.device | None = None
    skip_corrupt: bool = False
    check_finite: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def of(cls, batch_size: int, **fields: object) -> ShardConfig:
        """The config of ``batch_size`` and keyword fields; an unknown field names the valid ones.

        Parameters
        ----------
        batch_size : int
            Vectors per batch on this rank.
        **fields
            Other :class:`ShardConfig` fields.

        Returns
        -------
        ShardConfig

        Raises
        ------
        ValueError
            An unknown field, or ``batch_size < 1``.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise ValueError(f"unknown shard reader option(s) {unknown}; valid: {names}")
        return cls(batch_size=batch_size, **fields)


class ShardBatches(torch.utils.data.IterableDataset):
    """Iterable of float32 batches [B, D] streamed from activation shards.

    Each ``iter()`` is one epoch. See :func:`open_batches` for the options.

    Parameters
    ----------
    directory : str or Path
        Dataset directory (meta.json + shards).
    cfg : ShardConfig
        Batch size, hookpoint, shuffling, epoch length, workers, normalisation, rank, device.

    Raises
    ------
    ShardError
        No readable meta.json, or no complete shard.
    ValueError
        A hookpoint that is missing or needed.
    """

    def __init__(self, directory: str | Path, cfg: ShardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.directory = Path(directory)
        self.meta = read_meta(self.directory)
        hps = list(self.meta["hookpoints"])
        hookpoint = cfg.hookpoint
        if hookpoint is None:
            if len(hps) != 1:
                raise ValueError(f"{self.directory}: several hookpoints {hps}; pass hookpoint=")
            hookpoint = hps[0]
        if hookpoint not in self.meta["hookpoints"]:
            raise ValueError(f"hookpoint {hookpoint!r} not in {self.directory} (has {hps})")
        if not self.meta["shards"]:
            raise ShardError(f"{self.directory}: meta.json lists no complete shards")
        self.hookpoint = hookpoint
        hmeta = self.meta["hookpoints"][hookpoint]
        self.d = int(hmeta["d"])
        self.field = hmeta["field"]
        self.batch_size = int(cfg.batch_size)
        self.shuffle = cfg.shuffle
        self.seed = int(cfg.seed)
        self.shuffle_buffer = int(cfg.shuffle_buffer) if cfg.shuffle else 0
        self.num_workers = int(cfg.num_workers)
        self.normalize = cfg.normalize
        self.drop_last = cfg.drop_last
        self.device = cfg.device
        self.mean = np.asarray(hmeta["mean"], dtype=np.float32)
        self.scale = float(hmeta["scale"])
        self.urls = [str(self.directory / s["name"]) for s in self.meta["shards"]]
        self.expected = {
            str(self.directory / s["name"]): int(s["n_samples"]) for s in self.meta["shards"]
        }
        self.total_vectors = int(hmeta["n_vectors"])
        rank, world_size = cfg.rank, cfg.world_size
        if rank is None or world_size is None:
            import webdataset as wds

            r, w, _, _ = wds.utils.pytorch_worker_info()
            rank = r if rank is None else rank
            world_size = w if world_size is None else world_size
        self.rank, self.world_size = int(rank), int(world_size)
        epoch_vectors = cfg.epoch_vectors
        if epoch_vectors is None and self.world_size > 1:
            epoch_vectors = self.total_vectors  # ranks must see equal batch counts
        self.epoch_vectors = epoch_vectors
        self.epoch = 0
        self.skip_corrupt = cfg.skip_corrupt
        self.check_finite = cfg.check_finite
        # one flag per shard, shared with DataLoader workers: which shards were skipped
        self._corrupt = multiprocessing.Array("b", len(self.urls)) if cfg.skip_corrupt else None

    def corrupt_shards(self) -> list[str]:
        """The shards skipped as corrupt so far (``skip_corrupt``), in meta.json order.

        Returns
        -------
        list of str
        """
        if self._corrupt is None:
            return []
        return [u for u, flag in zip(self.urls, self._corrupt[:], strict=True) if flag]

    # -- sizes ---------------------------------------------------------------------------------

    def batches_per_rank(self) -> int | None:
        """Batches one rank yields per epoch.

        Returns
        -------
        int or None
            None when unknown (no fixed epoch length and a partial last batch kept).
        """
        if self.epoch_vectors is not None:
            return int(self.epoch_vectors) // (self.batch_size * self.world_size)
        if self.drop_last:
            return self.total_vectors // self.batch_size
        return math.ceil(self.total_vectors / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_rank()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (the shard order and buffer seeds derive from seed and epoch).

        Parameters
        ----------
        epoch : int
            The epoch the next ``iter()`` reads.
        """
        self.epoch = int(epoch)

    # -- iteration --------------------------------------------------------------------------

    def _shard_stream(self, epoch: int, infinite: bool) -> Iterator[str]:
        e = epoch
        while True:
            urls = list(self.urls)
            if self.shuffle:
                order = np.random.default_rng([self.seed, e]).permutation(len(urls))
                urls = [urls[i] for i in order]
            yield from urls
            if not infinite:
                return
            e += 1_000_003  # later cycles of a fixed-length epoch: fresh, distinct orders

    def _vectors(self, epoch: int, slot: int, n_slots: int, infinite: bool) -> Iterator[np.ndarray]:
        stream = self._shard_stream(epoch, infinite)
        sample_split = len(self.urls) < n_slots
        if not sample_split and n_slots > 1:
            # split_by_node then split_by_worker, as one slot index (rank * workers + worker)
            stream = (u for i, u in enumerate(stream) if i % n_slots == slot)
        i = -1
        for url in stream:
            try:
                for sample in iter_shard_samples([url], self.expected):
                    i += 1
                    if sample_split and i % n_slots != slot:
                        continue
                    yield self._decode(sample)
            except ShardError as err:
                if not self.skip_corrupt:
                    raise
                index = self.urls.index(url)
                if not self._corrupt[index]:
                    self._corrupt[index] = 1
                    print(f"vsae: skipping corrupt shard: {err}", file=sys.stderr, flush=True)

    def _decode(self, sample: dict) -> np.ndarray:
        where = f"{sample.get('__url__')} sample {sample.get('__key__')}"
        if self.field not in sample:
            raise ShardError(f"{where}: member {self.field!r} missing")
        x = decode_array(sample[self.field], where)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ShardError(f"{where}: array shape {x.shape}, expected [T, {self.d}]")
        if self.check_finite and not np.isfinite(x).all():
            found = find_nonfinite(x)
            raise DataError(found.message(where))
        return x

    def _batches(self, slot: int, n_slots: int, n_batches: int | None) -> Iterator[torch.Tensor]:
        epoch = self.epoch
        rng = np.random.default_rng([self.seed, epoch, slot, 7])
        infinite = n_batches is not None
        if n_batches == 0:
            return
        # a buffer larger than this slot's share of the data would only re-read shards to fill
        cap = min(self.shuffle_buffer, max(self.batch_size, self.total_vectors // n_slots))
        buf = _ShuffleBuffer(self.d, cap, rng) if self.shuffle_buffer else None
        pending: list[np.ndarray] = []
        n_pending = 0
        produced = 0
        bsz = self.batch_size

        def emit(chunks):
            x = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
            t = torch.from_numpy(x.astype(np.float32))
            if self.normalize:
                t = (t - torch.from_numpy(self.mean)) * self.scale
            return t

        def flush(out_arrays):
            nonlocal pending, n_pending, produced
            for x in out_arrays:
                pending.append(x)
                n_pending += x.shape[0]
            while n_pending >= bsz:
                allx = np.concatenate(pending) if len(pending) > 1 else pending[0]
                batch, rest = allx[:bsz], allx[bsz:]
                pending = [rest] if rest.shape[0] else []
                n_pending = rest.shape[0]
                yield emit([batch])
                produced += 1
                if n_batches is not None and produced >= n_batches:
                    return

        def done():
            return n_batches is not None and produced >= n_batches

        chunk: list[np.ndarray] = []
        n_chunk = 0
        for x in self._vectors(epoch, slot, n_slots, infinite):
            chunk.append(x)
            n_chunk += x.shape[0]
            if n_chunk < bsz:  # push to the buffer in batch-sized chunks (vectorised)
                continue
            x = np.concatenate(chunk) if len(chunk) > 1 else chunk[0]
            chunk, n_chunk = [], 0
            out = buf.push(x) if buf is not None else x
            if out is not None:
                yield from flush([out])
                if done():
                    return
        if chunk:
            x = np.concatenate(chunk)
            out = buf.push(x) if buf is not None else x
            if out is not None:
                yield from flush([out])
                if done():
                    return
        if buf is not None:
            yield from flush([buf.drain()])
        if not done() and n_pending and not self.drop_last and n_batches is None:
            yield emit(pending)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot = self.rank * n_workers + worker
        n_slots = self.world_size * n_workers
        total = self.batches_per_rank() if self.epoch_vectors is not None else None
        if total is not None:
            total = total // n_workers + (1 if worker < total % n_workers else 0)
        for batch in self._batches(slot, n_slots, total):
            yield batch.to(self.device) if self.device is not None else batch


class _Loader:
    """An epoch-counting iterable over a :class:`ShardBatches`, with optional worker processes."""

    def __init__(self, dataset: ShardBatches, num_workers: int):
        self.dataset = dataset
        self.num_workers = num_workers
        self.epoch = 0
        self.meta = dataset.meta
        self.d = dataset.d

    def __len__(self) -> int:
        return len(self.dataset)

    def corrupt_shards(self) -> list[str]:
        """The shards skipped as corrupt so far (with ``skip_corrupt``; workers' too).

        Returns
        -------
        list of str
        """
        return self.dataset.corrupt_shards()

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` epoch ``epoch`` (later ones count on from it).

        An epoch's shard order and shuffle-buffer draws are a pure function of (seed, epoch,
        rank slot), whatever was iterated before; without calls, iterations count 0, 1, ...
        """
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        if self.num_workers <= 0:
            yield from self.dataset
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, num_workers=self.num_workers, persistent_workers=False
        )
        yield from loader


def open_batches(directory: str | Path, batch_size: int, **fields: object) -> _Loader:
    """Stream an activation dataset as float32 batches [B, D] for training.

    Parameters
    ----------
    directory : path
        Dataset directory (meta.json + shards).
    batch_size : int
        Vectors per batch on this rank.
    **fields
        The other :class:`ShardConfig` fields:

    hookpoint : str, optional
        Which hookpoint; required when the dataset has several.
    shuffle : bool
        Shuffle the shard order each epoch (same order on every rank) and pass vectors through a
        shuffle buffer of ``shuffle_buffer`` vectors.
    seed : int
        Seed of the shard order and the buffer.
    epoch_vectors : int, optional
        Fixed epoch length in vectors over all ranks: each rank yields exactly
        ``epoch_vectors // (batch_size * world_size)`` batches, re-reading shards as needed, so
        DDP ranks stay in step. Defaults to one pass over the data when ``world_size > 1``.
    shuffle_buffer : int
        Capacity of the vector-level shuffle buffer.
    num_workers : int
        DataLoader worker processes (0 reads in the calling process).
    normalize : bool
        Return ``(x - mean) * scale`` with meta.json's statistics.
    drop_last : bool
        Drop a final partial batch (always dropped under fixed-length epochs).
    rank, world_size : int, optional
        Override the rank / world size (default: torch.distributed or RANK/WORLD_SIZE env).
    device : str or torch.device, optional
        Move every batch there.
    skip_corrupt : bool
        Skip corrupt or truncated shards (each named once on stderr; ``corrupt_shards()``
        lists them) instead of raising ``ShardError``.
    check_finite : bool
        Refuse a sample holding NaN or inf (``DataError`` naming the shard, sample, row and
        column); False passes such rows on.

    Returns
    -------
    iterable
        Each ``iter()`` is one epoch yielding float32 tensors [batch_size, D]; ``len()`` gives the
        number of batches per rank and epoch when it is known; ``.meta`` holds meta.json.

    Notes
    -----
    Shards are split between ranks (``split_by_node``-style) and DataLoader workers when there are
    at least as many shards as rank x worker slots; otherwise every slot reads all shards and keeps
    every n-th sample.

    Raises
    ------
    ShardError
        No readable meta.json, or no complete shard.
    ValueError
        An unknown option, ``batch_size < 1``, or a hookpoint that is missing or needed.
    """
    cfg = ShardConfig.of(batch_size, **fields)
    return _Loader(ShardBatches(directory, cfg), cfg.num_workers)
