"""Activation shards: WebDataset tars of half-precision arrays, a writer and a streaming reader.

Layout of a dataset directory::

    meta.json              model, hookpoints/dims/fields, dtype, counts, normalisation stats
    shard-000000.tar       complete shards only (written as ``.tar.partial`` then renamed);
                           ``.tar.gz`` when gzip-compressed (small samples, see ``compress``)
    writer_state.json      the writer's resume state (running sums, committed shards)

Each sample in a tar is one input (an image, or a prompt at one timestep)::

    000000042.json         {"source_key": ..., "input_index": ..., "caption": ..., "labels": ...}
    000000042.<field>.npy  float16 array [T, D] per hookpoint (T tokens, T = 1 for embeddings)

Arrays are ``.npy`` bytes, read with ``allow_pickle=False``; see docs/activations.md.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
STORE_DTYPE = np.float16
FP16_MAX = float(np.finfo(np.float16).max)
META_NAME = "meta.json"
STATE_NAME = "writer_state.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{6})\.tar(\.gz)?$")
# a sample smaller than this pays >= ~15% tar header overhead: gzip removes it (compress=None)
AUTO_COMPRESS_BELOW = 16384


class ShardError(RuntimeError):
    """A shard is missing, truncated or corrupt; the message names the shard."""


def shard_name(index: int, compress: bool = False) -> str:
    """Return the file name of shard number ``index`` (``.tar.gz`` when compressed)."""
    return f"shard-{index:06d}.tar" + (".gz" if compress else "")


def field_name(hookpoint: str) -> str:
    """Return the tar member suffix (without ``.npy``) used for a hookpoint.

    Dots would split the WebDataset key, so every character outside ``[A-Za-z0-9_]`` becomes ``_``.
    """
    return re.sub(r"[^A-Za-z0-9_]", "_", hookpoint)


def encode_array(arr: np.ndarray) -> bytes:
    """Serialise an array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple, int]] = {}


def decode_array(data: bytes, where: str) -> np.ndarray:
    """Parse ``.npy`` bytes without pickle; ``where`` names the shard and member.

    The header of every array of a hookpoint is the same, so parsed headers are cached and the
    payload is wrapped with ``np.frombuffer`` (the first parse goes through ``np.load`` with
    ``allow_pickle=False``, which rejects object arrays).
    """
    try:
        if data[:6] == b"\x93NUMPY" and data[6] == 1:
            hlen = int.from_bytes(data[8:10], "little")
            header = bytes(data[:10 + hlen])
            cached = _NPY_HEADERS.get(header)
            if cached is None:
                arr = np.load(io.BytesIO(data), allow_pickle=False)
                if arr.dtype.hasobject or np.isfortran(arr):
                    return arr
                if len(_NPY_HEADERS) < 4096:
                    _NPY_HEADERS[header] = (arr.dtype, arr.shape, 10 + hlen)
                return arr
            dtype, shape, offset = cached
            return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exn:  # noqa: BLE001 - re-raised with the location
        raise ShardError(f"cannot parse array {where}: {exn}") from exn


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(directory: str | os.PathLike) -> dict:
    """Read ``meta.json`` of an activation dataset.

    Parameters
    ----------
    directory : path
        Dataset directory written by :class:`ActivationWriter` / ``vsae extract``.

    Returns
    -------
    dict
        Keys: ``format_version``, ``source``, ``pretrained``, ``dtype``, ``hookpoints``
        (name -> {"d", "field", "n_vectors", "mean", "scale", ...}), ``shards`` (list of
        {"name", "n_samples", ...}), ``n_samples``, ``complete``, ``skipped``, ``extra``.
    """
    path = Path(directory) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no meta.json; is this an activation dataset directory?")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exn:
        raise ShardError(f"{path}: not valid JSON ({exn})") from exn
    for key in ("format_version", "hookpoints", "shards", "dtype"):
        if key not in meta:
            raise ShardError(f"{path}: missing field {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ShardError(
            f"{path}: format_version {meta['format_version']!r}, expected {FORMAT_VERSION}"
        )
    return meta


# ----------------------------------------------------------------------------------------------
# Streaming statistics
# ----------------------------------------------------------------------------------------------


@dataclass
class RunningStats:
    """Exact one-pass mean and mean squared distance to the mean, in float64.

    Sums are taken around a fixed shift ``c`` (the first batch's mean) for numerical stability:
    ``mean = c + S1/n`` and ``E||x - mean||^2 = S2/n - ||S1/n||^2``.
    """

    d: int
    n: int = 0
    shift: np.ndarray | None = None
    s1: np.ndarray | None = None
    s2: float = 0.0

    def update(self, x_ND: np.ndarray) -> None:
        """Add vectors ``x_ND`` (any float dtype) to the sums."""
        if x_ND.shape[0] == 0:
            return
        assert x_ND.ndim == 2 and x_ND.shape[1] == self.d, (x_ND.shape, self.d)
        x = x_ND.astype(np.float64)
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.s1 = np.zeros(self.d)
        y = x - self.shift
        self.s1 += y.sum(axis=0)
        self.s2 += float(np.einsum("nd,nd->", y, y))
        self.n += x.shape[0]

    def merge(self, other: RunningStats) -> None:
        """Add another accumulator's sums (re-centred onto this shift)."""
        if other.n == 0:
            return
        if self.shift is None:
            self.shift, self.s1, self.s2, self.n = (
                other.shift.copy(), other.s1.copy(), other.s2, other.n)
            return
        delta = other.shift - self.shift
        # sum ||y + delta||^2 = s2 + 2 delta.s1 + n ||delta||^2
        self.s2 += other.s2 + 2.0 * float(delta @ other.s1) + other.n * float(delta @ delta)
        self.s1 += other.s1 + other.n * delta
        self.n += other.n

    def mean(self) -> np.ndarray:
        """Dataset mean, shape [D]."""
        if self.n == 0:
            return np.zeros(self.d)
        return self.shift + self.s1 / self.n

    def mean_sq_dist(self) -> float:
        """E ||x - mean||^2."""
        if self.n == 0:
            return 0.0
        m = self.s1 / self.n
        return max(self.s2 / self.n - float(m @ m), 0.0)

    def scale(self) -> float:
        """Scalar s with E ||s (x - mean)||^2 = d (1.0 when undefined)."""
        msd = self.mean_sq_dist()
        return math.sqrt(self.d / msd) if msd > 0 else 1.0

    def to_json(self) -> dict:
        return {
            "d": self.d, "n": self.n, "s2": self.s2,
            "shift": None if self.shift is None else self.shift.tolist(),
            "s1": None if self.s1 is None else self.s1.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> RunningStats:
        st = cls(d=int(obj["d"]), n=int(obj["n"]), s2=float(obj["s2"]))
        if obj["shift"] is not None:
            st.shift = np.asarray(obj["shift"], dtype=np.float64)
            st.s1 = np.asarray(obj["s1"], dtype=np.float64)
        return st


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """Counters of the shard being written (not yet committed)."""

    n_samples: int = 0
    last_input: int = -1
    stats: dict = field(default_factory=dict)
    n_vectors: dict = field(default_factory=dict)
    n_clamped: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


class ActivationWriter:
    """Write activation samples to resumable WebDataset shards.

    A shard is written to ``shard-NNNNNN.tar.partial`` and renamed to ``.tar`` only when complete;
    ``writer_state.json`` is then updated atomically and is the source of truth on resume. A shard
    closes at the first input boundary after ``shard_size`` samples, so the samples of one input
    (e.g. several timesteps of one prompt) never straddle two shards.

    Parameters
    ----------
    out_dir : path
        Output directory (created).
    hookpoints : dict
        Hookpoint name -> dimension D.
    shard_size : int
        Samples per shard (a shard may exceed it by fewer than samples-per-input).
    info : dict
        Recorded in meta.json: ``source``, ``pretrained``, ``options`` and anything else.
    resume : bool
        Continue an existing dataset in ``out_dir`` (its hookpoints/source must match). If False
        and ``out_dir`` already holds shards, a ``FileExistsError`` is raised.
    compress : bool or None
        gzip the tars (``.tar.gz``; any tar reader opens them). None: decided on the first sample,
        compressing when its arrays total < 16 KiB, where the 512-byte tar headers and padding of
        each member would otherwise cost more than the half-precision saving.
    """

    def __init__(self, out_dir, hookpoints: dict[str, int], shard_size: int = 1000,
                 info: dict | None = None, resume: bool = True, compress: bool | None = None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if not hookpoints:
            raise ValueError("hookpoints is empty")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.hookpoints = {str(k): int(v) for k, v in hookpoints.items()}
        self.fields = {hp: field_name(hp) for hp in self.hookpoints}
        if len(set(self.fields.values())) != len(self.fields):
            raise ValueError(f"hookpoint names collide after sanitising: {self.fields}")
        self.shard_size = int(shard_size)
        self.info = dict(info or {})
        self._tar = None
        self._file = None
        self._pending = _Pending()
        self._compress_arg = compress
        self.state = self._load_or_init_state(resume)

    # -- state ------------------------------------------------------------------------------

    def _fresh_state(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "hookpoints": self.hookpoints,
            "identity": self._identity(),
            "shards": [],
            "compress": None,
            "input_next": 0,
            "n_samples": 0,
            "stats": {hp: RunningStats(d).to_json() for hp, d in self.hookpoints.items()},
            "n_vectors": {hp: 0 for hp in self.hookpoints},
            "n_clamped": {hp: 0 for hp in self.hookpoints},
            "skipped": [],
            "complete": False,
        }

    def _identity(self) -> dict:
        keys = ("source", "pretrained", "options")
        return {k: self.info.get(k) for k in keys}

    def _load_or_init_state(self, resume: bool) -> dict:
        state_path = self.out_dir / STATE_NAME
        existing = sorted(p.name for p in self.out_dir.iterdir() if SHARD_PATTERN.match(p.name))
        for p in self.out_dir.glob("*.partial"):
            p.unlink()  # a partial shard is never complete
        if not state_path.is_file():
            if existing:
                raise FileExistsError(
                    f"{self.out_dir} holds shards ({existing[0]}, ...) but no {STATE_NAME}; "
                    "choose an empty directory")
            return self._fresh_state()
        if not resume:
            raise FileExistsError(
                f"{self.out_dir} already holds an activation dataset; pass resume=True "
                "(--resume) to continue it or choose another directory")
        state = json.loads(state_path.read_text())
        if state.get("hookpoints") != self.hookpoints:
            raise ValueError(
                f"{state_path}: hookpoints {state.get('hookpoints')} differ from this run's "
                f"{self.hookpoints}; cannot resume")
        if state.get("identity") != json.loads(json.dumps(self._identity())):
            raise ValueError(
                f"{state_path}: source {state.get('identity')} differs from this run's "
                f"{self._identity()}; cannot resume")
        committed = {s["name"] for s in state["shards"]}
        for name in existing:  # renamed but never committed: killed between rename and state
            if name not in committed:
                (self.out_dir / name).unlink()
        for name in committed:
            if not (self.out_dir / name).is_file():
                raise ShardError(f"{self.out_dir / name}: listed in {STATE_NAME} but missing")
        return state

    @property
    def input_next(self) -> int:
        """Index of the first input not yet covered by a committed shard."""
        return int(self.state["input_next"])

    @property
    def complete(self) -> bool:
        return bool(self.state["complete"])

    # -- writing ----------------------------------------------------------------------------

    def _open_shard(self) -> None:
        import webdataset as wds

        name = shard_name(len(self.state["shards"]), bool(self.state["compress"]))
        self._file = open(self.out_dir / (name + ".partial"), "wb")
        # integer mtime: a float one makes tarfile add a 1 KiB PAX header to every member
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0,
                                  compress=bool(self.state["compress"]))
        old = self._pending  # skips recorded before the shard opened stay with it
        self._pending = _Pending(
            last_input=old.last_input, skipped=old.skipped,
            stats={hp: RunningStats(d) for hp, d in self.hookpoints.items()},
            n_vectors={hp: 0 for hp in self.hookpoints},
            n_clamped={hp: 0 for hp in self.hookpoints},
        )

    def skip(self, input_index: int, key: str, error: str) -> None:
        """Record an input that could not be read (reported in meta.json)."""
        self._pending.skipped.append({"input_index": int(input_index), "key": key,
                                      "error": error})
        self._pending.last_input = max(self._pending.last_input, int(input_index))

    def add(self, input_index: int, arrays: dict[str, np.ndarray | torch.Tensor],
            info: dict | None = None) -> None:
        """Append one sample.

        Parameters
        ----------
        input_index : int
            Position of the input in the (deterministic) input order; used for resume.
        arrays : dict
            Hookpoint -> array [T, D] (or [D]); stored as float16 (values beyond +-65504 are
            clamped and counted in meta.json ``n_clamped``).
        info : dict
            JSON-serialisable per-sample metadata (source key, caption, labels, timestep ...).
        """
        if set(arrays) != set(self.hookpoints):
            raise ValueError(f"sample has hookpoints {sorted(arrays)}, expected "
                             f"{sorted(self.hookpoints)}")
        p = self._pending
        if (self._tar is not None and p.n_samples >= self.shard_size
                and input_index != p.last_input):
            self._commit(input_next=p.last_input + 1)
        if self.state["compress"] is None:
            if self._compress_arg is None:
                size = sum(np.asarray(a).size for a in arrays.values()) * 2
                self.state["compress"] = size < AUTO_COMPRESS_BELOW
            else:
                self.state["compress"] = bool(self._compress_arg)
        if self._tar is None:
            self._open_shard()
            p = self._pending
        sample = {"__key__": f"{self.state['n_samples'] + p.n_samples:09d}"}
        meta = {"input_index": int(input_index), **(info or {})}
        sample["json"] = json.dumps(meta).encode()
        for hp, arr in arrays.items():
            if isinstance(arr, torch.Tensor):
                arr = arr.detach().float().cpu().numpy()
            arr = np.asarray(arr)
            if arr.ndim == 1:
                arr = arr[None]
            d = self.hookpoints[hp]
            if arr.ndim != 2 or arr.shape[1] != d:
                raise ValueError(f"hookpoint {hp!r}: array shape {arr.shape}, expected [T, {d}]")
            over = np.abs(arr) > FP16_MAX
            if over.any():
                p.n_clamped[hp] += int(over.sum())
                arr = np.clip(arr, -FP16_MAX, FP16_MAX)
            half = arr.astype(STORE_DTYPE)
            p.stats[hp].update(half)
            p.n_vectors[hp] += half.shape[0]
            sample[self.fields[hp] + ".npy"] = encode_array(half)
        self._tar.write(sample)
        p.n_samples += 1
        p.last_input = max(p.last_input, int(input_index))

    def _commit(self, input_next: int) -> None:
        p = self._pending
        name = shard_name(len(self.state["shards"]), bool(self.state["compress"]))
        if self._tar is not None:
            self._tar.close()  # closes self._file too
            self._tar = None
            self._file = None
        partial = self.out_dir / (name + ".partial")
        state = self.state
        if p.n_samples > 0:
            with open(partial, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(partial, self.out_dir / name)
            state["shards"].append({
                "name": name, "n_samples": p.n_samples, "n_vectors": dict(p.n_vectors),
                "input_start": state["input_next"], "input_end": int(input_next)})
        elif partial.exists():
            partial.unlink()
        for hp in self.hookpoints:
            if hp not in p.stats:  # only skips since the last commit
                continue
            st = RunningStats.from_json(state["stats"][hp])
            st.merge(p.stats[hp])
            state["stats"][hp] = st.to_json()
            state["n_vectors"][hp] += p.n_vectors[hp]
            state["n_clamped"][hp] += p.n_clamped[hp]
        state["n_samples"] += p.n_samples
        state["skipped"].extend(p.skipped)
        state["input_next"] = int(input_next)
        _write_json_atomic(self.out_dir / STATE_NAME, state)
        _write_json_atomic(self.out_dir / META_NAME, self.meta())
        self._pending = _Pending()

    def finish(self, input_next: int | None = None) -> dict:
        """Commit the last shard, mark the dataset complete and return meta.json's content."""
        p = self._pending
        end = input_next if input_next is not None else max(p.last_input + 1, self.input_next)
        if self._tar is not None or p.skipped or end != self.input_next:
            self._commit(input_next=end)
        self.state["complete"] = True
        _write_json_atomic(self.out_dir / STATE_NAME, self.state)
        meta = self.meta()
        _write_json_atomic(self.out_dir / META_NAME, meta)
        return meta

    def abort(self) -> None:
        """Close and delete the shard in progress (committed shards stay)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        for p in self.out_dir.glob("*.partial"):
            p.unlink()

    def meta(self) -> dict:
        """The public dataset description (what meta.json holds)."""
        st = self.state
        hps = {}
        for hp, d in self.hookpoints.items():
            rs = RunningStats.from_json(st["stats"][hp])
            hps[hp] = {
                "d": d, "field": self.fields[hp] + ".npy", "n_vectors": st["n_vectors"][hp],
                "mean": rs.mean().tolist(), "scale": rs.scale(),
                "mean_sq_dist": rs.mean_sq_dist(), "n_clamped": st["n_clamped"][hp],
            }
        return {
            "format_version": FORMAT_VERSION,
            "source": self.info.get("source"),
            "pretrained": self.info.get("pretrained"),
            "options": self.info.get("options"),
            "dtype": np.dtype(STORE_DTYPE).name,
            "compression": "gzip" if st["compress"] else None,
            "normalisation": "x_norm = (x - mean) * scale, with E||x_norm||^2 = d",
            "hookpoints": hps,
            "n_samples": st["n_samples"],
            "n_inputs": st["input_next"],
            "shard_size": self.shard_size,
            "shards": st["shards"],
            "n_skipped": len(st["skipped"]),
            "skipped": st["skipped"],
            "complete": st["complete"],
            "extra": {k: v for k, v in self.info.items()
                      if k not in ("source", "pretrained", "options")},
        }


# ----------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------


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
            key, ext = name[:dot], name[dot + 1:].lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            sample[ext] = data
        if sample is not None:
            yield sample
    except (OSError, EOFError, UnicodeDecodeError) as exn:
        raise ShardError(f"corrupt or truncated shard {url}: {type(exn).__name__}: {exn}") \
            from exn
    finally:
        raw.close()


def iter_shard_samples(urls: Iterable[str], expected: dict[str, int] | None = None
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
            raise ShardError(f"corrupt or truncated shard {url}: {n} samples, "
                             f"meta.json records {expected[url]}")


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
            self.buf[self.n:self.n + take] = x_TD[:take]
            self.n += take
            x_TD = x_TD[take:]
            if x_TD.shape[0] == 0:
                return None
        out = []
        while x_TD.shape[0] > 0:
            m = min(cap, x_TD.shape[0])
            idx = self.rng.choice(cap, size=m, replace=False) if m > 1 else \
                self.rng.integers(0, cap, size=1)
            out.append(self.buf[idx].copy())
            self.buf[idx] = x_TD[:m]
            x_TD = x_TD[m:]
        return np.concatenate(out) if len(out) > 1 else out[0]

    def drain(self) -> np.ndarray:
        rest = self.buf[:self.n][self.rng.permutation(self.n)]
        self.n = 0
        return rest


class ShardBatches(torch.utils.data.IterableDataset):
    """Iterable of float32 batches [B, D] streamed from activation shards.

    Each ``iter()`` is one epoch. See :func:`open_batches` for the parameters.
    """

    def __init__(self, directory, batch_size: int, hookpoint: str | None = None,
                 shuffle: bool = True, seed: int = 0, epoch_vectors: int | None = None,
                 shuffle_buffer: int = 65536, num_workers: int = 0, normalize: bool = False,
                 drop_last: bool = True, rank: int | None = None,
                 world_size: int | None = None, device: str | torch.device | None = None):
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
        self.expected = {str(self.directory / s["name"]): int(s["n_samples"])
                         for s in self.meta["shards"]}
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

    def _vectors(self, epoch: int, slot: int, n_slots: int, infinite: bool
                 ) -> Iterator[np.ndarray]:
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
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        if self.num_workers <= 0:
            yield from self.dataset
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=None, num_workers=self.num_workers,
            persistent_workers=False)
        yield from loader


def open_batches(directory, batch_size: int, hookpoint: str | None = None, shuffle: bool = True,
                 seed: int = 0, epoch_vectors: int | None = None, shuffle_buffer: int = 65536,
                 num_workers: int = 0, normalize: bool = False, drop_last: bool = True,
                 rank: int | None = None, world_size: int | None = None) -> _Loader:
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
    ds = ShardBatches(directory, batch_size, hookpoint=hookpoint, shuffle=shuffle, seed=seed,
                      epoch_vectors=epoch_vectors, shuffle_buffer=shuffle_buffer,
                      num_workers=num_workers, normalize=normalize, drop_last=drop_last,
                      rank=rank, world_size=world_size)
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
