"""Streaming reader of activation shards: shuffled [B, D] batches for training."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from .shard_format import STORE_DTYPE, ShardError, decode_array, read_meta


def _read_exact(f, n: int, url: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ShardError(f"corrupt or truncated shard {url}: unexpected end of data in {what}")
    return data


def iter_tar_samples(url: str) -> Iterator[dict]:
    """Fast sequential reader of one (optionally gzipped) tar shard into WebDataset samples.

    Reads the 512-byte ustar headers directly (the shards are written by this module: regular
    files, short names); a sample is the run of members sharing the name up to the first dot.
    Errors raise :class:`ShardError` naming the shard.
    """
    import gzip

    raw = open(url, "rb")
    try:
        magic = raw.read(2)
        raw.seek(0)
        f = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        sample: dict | None = None
        while True:
            header = f.read(512)
            if len(header) == 0:
                break  # no end-of-archive blocks: the sample count check decides
            if len(header) != 512:
                raise ShardError(f"corrupt or truncated shard {url}: partial tar header")
            if header == b"\0" * 512:
                break
            chk = sum(header[:148]) + 256 + sum(header[156:])
            try:
                size = int(header[124:136].strip(b"\0 ") or b"0", 8)
                want = int(header[148:156].strip(b"\0 ") or b"0", 8)
            except ValueError as exn:
                raise ShardError(f"corrupt or truncated shard {url}: bad tar header") from exn
            if chk != want:
                raise ShardError(f"corrupt or truncated shard {url}: tar header checksum")
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
            if prefix:
                name = prefix + "/" + name
            data = _read_exact(f, size, url, name)
            pad = (-size) % 512
            if pad:
                _read_exact(f, pad, url, name)
            if header[156:157] not in (b"0", b"\0"):
                continue  # not a regular file
            base = name.rsplit("/", 1)[-1]
            if "." not in base:
                continue
            dot = len(name) - len(base) + base.index(".")
            key, ext = name[:dot], name[dot + 1 :].lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            sample[ext] = data
        if sample is not None:
            yield sample
    except (OSError, EOFError, UnicodeDecodeError) as exn:
        raise ShardError(f"corrupt or truncated shard {url}: {type(exn).__name__}: {exn}") from exn
    finally:
        raw.close()


def iter_shard_samples(
    urls: Iterable[str], expected: dict[str, int] | None = None
) -> Iterator[dict]:
    """Yield raw WebDataset samples from tars, checking each shard's sample count.

    Same samples as ``webdataset.tarfile_samples`` (``__key__``, ``__url__``, one bytes entry per
    member suffix), read by :func:`iter_tar_samples`.

    Parameters
    ----------
    urls : iterable of str
        Shard paths, read in this order.
    expected : dict
        Shard path -> sample count from meta.json. A shard that ends early (truncated at a member
        boundary, which ``tarfile`` cannot detect) raises :class:`ShardError`.
    """

    for url in urls:
        if not os.path.isfile(url):
            raise ShardError(f"shard {url} is missing")
        n = 0
        for sample in iter_tar_samples(url):
            n += 1
            yield sample
        if expected is not None and url in expected and n != expected[url]:
            raise ShardError(
                f"corrupt or truncated shard {url}: {n} samples, meta.json records {expected[url]}"
            )


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


class ShardBatches(torch.utils.data.IterableDataset):
    """Iterable of float32 batches [B, D] streamed from activation shards.

    Each ``iter()`` is one epoch. See :func:`open_batches` for the parameters.
    """

    def __init__(
        self,
        directory,
        batch_size: int,
        hookpoint: str | None = None,
        shuffle: bool = True,
        seed: int = 0,
        epoch_vectors: int | None = None,
        shuffle_buffer: int = 65536,
        num_workers: int = 0,
        normalize: bool = False,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        self.directory = Path(directory)
        self.meta = read_meta(self.directory)
        hps = list(self.meta["hookpoints"])
        if hookpoint is None:
            if len(hps) != 1:
                raise ValueError(f"{self.directory}: several hookpoints {hps}; pass hookpoint=")
            hookpoint = hps[0]
        if hookpoint not in self.meta["hookpoints"]:
            raise ValueError(f"hookpoint {hookpoint!r} not in {self.directory} (has {hps})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not self.meta["shards"]:
            raise ShardError(f"{self.directory}: meta.json lists no complete shards")
        self.hookpoint = hookpoint
        hmeta = self.meta["hookpoints"][hookpoint]
        self.d = int(hmeta["d"])
        self.field = hmeta["field"]
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer) if shuffle else 0
        self.num_workers = int(num_workers)
        self.normalize = normalize
        self.drop_last = drop_last
        self.device = device
        self.mean = np.asarray(hmeta["mean"], dtype=np.float32)
        self.scale = float(hmeta["scale"])
        self.urls = [str(self.directory / s["name"]) for s in self.meta["shards"]]
        self.expected = {
            str(self.directory / s["name"]): int(s["n_samples"]) for s in self.meta["shards"]
        }
        self.total_vectors = int(hmeta["n_vectors"])
        if rank is None or world_size is None:
            import webdataset as wds

            r, w, _, _ = wds.utils.pytorch_worker_info()
            rank = r if rank is None else rank
            world_size = w if world_size is None else world_size
        self.rank, self.world_size = int(rank), int(world_size)
        if epoch_vectors is None and self.world_size > 1:
            epoch_vectors = self.total_vectors  # ranks must see equal batch counts
        self.epoch_vectors = epoch_vectors
        self.epoch = 0

    # -- sizes ---------------------------------------------------------------------------------

    def batches_per_rank(self) -> int | None:
        """Batches one rank yields per epoch (None when unknown: unsharded partial last batch)."""
        if self.epoch_vectors is not None:
            return int(self.epoch_vectors) // (self.batch_size * self.world_size)
        if self.drop_last:
            return self.total_vectors // self.batch_size
        return math.ceil(self.total_vectors / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_rank()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (the shard order and buffer seeds derive from seed and epoch)."""
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
        for i, sample in enumerate(iter_shard_samples(stream, self.expected)):
            if sample_split and i % n_slots != slot:
                continue
            where = f"{sample.get('__url__')} sample {sample.get('__key__')}"
            if self.field not in sample:
                raise ShardError(f"{where}: member {self.field!r} missing")
            x = decode_array(sample[self.field], where)
            if x.ndim == 1:
                x = x[None]
            if x.ndim != 2 or x.shape[1] != self.d:
                raise ShardError(f"{where}: array shape {x.shape}, expected [T, {self.d}]")
            yield x

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


def open_batches(
    directory,
    batch_size: int,
    hookpoint: str | None = None,
    shuffle: bool = True,
    seed: int = 0,
    epoch_vectors: int | None = None,
    shuffle_buffer: int = 65536,
    num_workers: int = 0,
    normalize: bool = False,
    drop_last: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> _Loader:
    """Stream an activation dataset as float32 batches [B, D] for training.

    Parameters
    ----------
    directory : path
        Dataset directory (meta.json + shards).
    batch_size : int
        Vectors per batch on this rank.
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
    """
    ds = ShardBatches(
        directory,
        batch_size,
        hookpoint=hookpoint,
        shuffle=shuffle,
        seed=seed,
        epoch_vectors=epoch_vectors,
        shuffle_buffer=shuffle_buffer,
        num_workers=num_workers,
        normalize=normalize,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    return _Loader(ds, num_workers)


def load_all(directory, hookpoint: str | None = None) -> np.ndarray:
    """Read every vector of a hookpoint in storage order as a float16 array [N, D] (small data)."""
    meta = read_meta(directory)
    hps = list(meta["hookpoints"])
    hp = hookpoint if hookpoint is not None else (hps[0] if len(hps) == 1 else None)
    if hp is None or hp not in meta["hookpoints"]:
        raise ValueError(f"choose a hookpoint among {hps}, got {hookpoint!r}")
    fld = meta["hookpoints"][hp]["field"]
    urls = [str(Path(directory) / s["name"]) for s in meta["shards"]]
    expected = {u: int(s["n_samples"]) for u, s in zip(urls, meta["shards"], strict=True)}
    out = []
    for sample in iter_shard_samples(urls, expected):
        where = f"{sample['__url__']} sample {sample['__key__']}"
        if fld not in sample:
            raise ShardError(f"{where}: member {fld!r} missing")
        x = decode_array(sample[fld], where)
        out.append(x[None] if x.ndim == 1 else x)
    d = meta["hookpoints"][hp]["d"]
    return np.concatenate(out) if out else np.zeros((0, d), dtype=STORE_DTYPE)
