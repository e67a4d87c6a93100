"""Raw samples of activation shards: a fast tar reader, per-shard sample counts, ``load_all``."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

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

    Parameters
    ----------
    url : str
        Path of a ``.tar`` or ``.tar.gz`` shard.

    Returns
    -------
    iterator of dict
        WebDataset samples: ``__key__``, ``__url__`` and one bytes entry per member suffix.

    Raises
    ------
    ShardError
        A corrupt or truncated shard (named in the message).
    """
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

    Returns
    -------
    iterator of dict
        The samples of every shard, in order.

    Raises
    ------
    ShardError
        A missing, corrupt or short shard.
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


def load_all(directory: str | Path, hookpoint: str | None = None) -> np.ndarray:
    """Read every vector of a hookpoint in storage order (small data).

    Parameters
    ----------
    directory : str or Path
        A shard folder.
    hookpoint : str, optional
        Which hookpoint; needed when the folder holds several.

    Returns
    -------
    ndarray
        float16 [N, D].

    Raises
    ------
    ValueError
        No such hookpoint, or one needed.
    ShardError
        A missing, corrupt or short shard, or a sample without the hookpoint's member.
    """
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
