"""Shard format basics: names, constants, array encoding, meta.json, streaming statistics."""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    """The file name of shard number ``index``.

    Parameters
    ----------
    index : int
        Shard number, from 0.
    compress : bool
        A gzip-compressed shard (``.tar.gz``).

    Returns
    -------
    str
        ``shard-000042.tar`` (or ``.tar.gz``).
    """
    return f"shard-{index:06d}.tar" + (".gz" if compress else "")


def field_name(hookpoint: str) -> str:
    """Return the tar member suffix (without ``.npy``) used for a hookpoint.

    Dots would split the WebDataset key, so every character outside ``[A-Za-z0-9_]`` becomes ``_``.

    Parameters
    ----------
    hookpoint : str
        E.g. ``"blocks.6"``.

    Returns
    -------
    str
        E.g. ``"blocks_6"``.
    """
    return re.sub(r"[^A-Za-z0-9_]", "_", hookpoint)


def encode_array(arr: np.ndarray) -> bytes:
    """Serialise an array as ``.npy`` bytes (no pickle).

    Parameters
    ----------
    arr : ndarray
        Any numeric array (made C-contiguous).

    Returns
    -------
    bytes
    """
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


_NPY_HEADERS: dict[bytes, tuple[np.dtype, tuple, int]] = {}


def decode_array(data: bytes, where: str) -> np.ndarray:
    """Parse ``.npy`` bytes without pickle; ``where`` names the shard and member.

    The header of every array of a hookpoint is the same, so parsed headers are cached and the
    payload is wrapped with ``np.frombuffer`` (the first parse goes through ``np.load`` with
    ``allow_pickle=False``, which rejects object arrays).

    Parameters
    ----------
    data : bytes
        A ``.npy`` member's bytes.
    where : str
        The shard and member, named in errors.

    Returns
    -------
    ndarray
        A read-only view of ``data`` (cached header) or a parsed array.

    Raises
    ------
    ShardError
        Bytes that are not a ``.npy`` array (or would need unpickling).
    """
    try:
        if data[:6] == b"\x93NUMPY" and data[6] == 1:
            hlen = int.from_bytes(data[8:10], "little")
            header = bytes(data[: 10 + hlen])
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
    except Exception as exn:
        raise ShardError(f"cannot parse array {where}: {exn}") from exn


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a synced temporary file, then a rename).

    Parameters
    ----------
    path : Path
        The file; a reader sees the old or the new content, never a partial one.
    obj : dict
        JSON-serialisable.
    """
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


@dataclass
class RunningStats:
    """Exact one-pass mean and mean squared distance to the mean, in float64.

    Sums are taken around a fixed shift ``c`` (the first batch's mean) for numerical stability:
    ``mean = c + S1/n`` and ``E||x - mean||^2 = S2/n - ||S1/n||^2``.

    Parameters
    ----------
    d : int
        Width D of the vectors.
    n : int
        Vectors summed so far.
    shift : ndarray, optional
        The shift c [D] (set by the first update).
    s1 : ndarray, optional
        Sum of ``x - c`` [D].
    s2 : float
        Sum of ``||x - c||^2``.
    """

    d: int
    n: int = 0
    shift: np.ndarray | None = None
    s1: np.ndarray | None = None
    s2: float = 0.0

    def update(self, x_ND: np.ndarray) -> None:
        """Add vectors to the sums.

        Parameters
        ----------
        x_ND : ndarray
            Vectors [N, D] of any float dtype (summed in float64).
        """
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
        """Add another accumulator's sums (re-centred onto this shift).

        Parameters
        ----------
        other : RunningStats
            Sums of other vectors of the same width.
        """
        if other.n == 0:
            return
        if self.shift is None:
            self.shift, self.s1, self.s2, self.n = (
                other.shift.copy(),
                other.s1.copy(),
                other.s2,
                other.n,
            )
            return
        delta = other.shift - self.shift
        # sum ||y + delta||^2 = s2 + 2 delta.s1 + n ||delta||^2
        self.s2 += other.s2 + 2.0 * float(delta @ other.s1) + other.n * float(delta @ delta)
        self.s1 += other.s1 + other.n * delta
        self.n += other.n

    def mean(self) -> np.ndarray:
        """The mean of the vectors seen.

        Returns
        -------
        ndarray
            float64 [D] (zeros before any vector).
        """
        if self.n == 0:
            return np.zeros(self.d)
        return self.shift + self.s1 / self.n

    def mean_sq_dist(self) -> float:
        """The mean squared distance to the mean, E ||x - mean||^2.

        Returns
        -------
        float
            0 before any vector.
        """
        if self.n == 0:
            return 0.0
        m = self.s1 / self.n
        return max(self.s2 / self.n - float(m @ m), 0.0)

    def scale(self) -> float:
        """The scalar s with E ||s (x - mean)||^2 = d.

        Returns
        -------
        float
            1.0 when undefined (no spread).
        """
        msd = self.mean_sq_dist()
        return math.sqrt(self.d / msd) if msd > 0 else 1.0

    def to_json(self) -> dict:
        """The sums as a JSON-ready dict (the writer's resume state).

        Returns
        -------
        dict
            ``d``, ``n``, ``s2``, ``shift`` and ``s1`` (lists or None).
        """
        return {
            "d": self.d,
            "n": self.n,
            "s2": self.s2,
            "shift": None if self.shift is None else self.shift.tolist(),
            "s1": None if self.s1 is None else self.s1.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict) -> RunningStats:
        """The accumulator :meth:`to_json` wrote.

        Parameters
        ----------
        obj : dict
            From :meth:`to_json`.

        Returns
        -------
        RunningStats
        """
        st = cls(d=int(obj["d"]), n=int(obj["n"]), s2=float(obj["s2"]))
        if obj["shift"] is not None:
            st.shift = np.asarray(obj["shift"], dtype=np.float64)
            st.s1 = np.asarray(obj["s1"], dtype=np.float64)
        return st
