"""Rank-split extraction: part folders, and merging them into one shard folder.

A rank-split extraction (``torchrun ... -m vsae extract`` or ``vsae extract --part i/N``)
writes part i of N into ``OUT/part-i-of-N/``, an ordinary resumable shard folder holding the
inputs whose index is i modulo N. :func:`merge_parts` turns the N complete parts into one
folder that reads exactly like a single-process extraction of the same inputs: the shards are
moved up (renumbered part by part), and one ``meta.json`` / ``writer_state.json`` holds the
combined counts and statistics. The statistics combine exactly: each part keeps its count n,
its shift c, the sums S1 = sum (x - c) and S2 = sum ||x - c||^2 (float64), and the merge
re-centres them onto one shift, which is Chan, Golub & LeVeque's (1979) pairwise update of
the mean and the second moment written for shifted sums.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .shard_format import (
    META_NAME,
    SHARD_PATTERN,
    STATE_NAME,
    RunningStats,
    ShardError,
    shard_name,
    write_json_atomic,
)

PART_PATTERN = re.compile(r"^part-(\d+)-of-(\d+)$")


def part_dir(out_dir: str | os.PathLike, part: tuple[int, int]) -> Path:
    """The folder of part ``part = (i, n)`` inside ``out_dir``: ``out_dir/part-i-of-n``.

    Parameters
    ----------
    out_dir : path
        The extraction's output folder.
    part : (int, int)
        ``(i, n)`` with ``0 <= i < n``.

    Returns
    -------
    Path
    """
    i, n = part
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"part {i}/{n}: expected i/N with 0 <= i < N")
    return Path(out_dir) / f"part-{i}-of-{n}"


def parse_part(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)``.

    Parameters
    ----------
    text : str
        As given to ``--part``, e.g. ``"0/8"``.

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        Unless it is two integers ``i/N`` with ``0 <= i < N``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"--part {text!r}: expected i/N with 0 <= i < N, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def _read_state(folder: Path) -> dict:
    path = folder / STATE_NAME
    if not path.is_file():
        raise ShardError(f"{folder}: no {STATE_NAME}; this part has not started")
    return json.loads(path.read_text())


def find_parts(out_dir: str | os.PathLike) -> list[Path]:
    """The part folders of a rank-split extraction, in part order, all present.

    Parameters
    ----------
    out_dir : path

    Returns
    -------
    list of Path
        ``[out_dir/part-0-of-N, ..., out_dir/part-(N-1)-of-N]``.

    Raises
    ------
    ShardError
        No part folders, parts of different N, or missing parts (named).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such folder")
    found = {}
    for p in out.iterdir():
        m = PART_PATTERN.match(p.name)
        if m and p.is_dir():
            found[(int(m.group(1)), int(m.group(2)))] = p
    if not found:
        raise ShardError(f"{out}: no part-I-of-N folders (written by extract --part or torchrun)")
    counts = sorted({n for _, n in found})
    if len(counts) != 1:
        raise ShardError(f"{out}: parts of different splits {counts}; keep one split")
    n = counts[0]
    missing = [f"part-{i}-of-{n}" for i in range(n) if (i, n) not in found]
    if missing:
        raise ShardError(f"{out}: missing {', '.join(missing)}; extract them before merging")
    return [found[(i, n)] for i in range(n)]


def merge_parts(out_dir: str | os.PathLike, keep_parts: bool = False) -> dict:
    """Merge the complete parts of a rank-split extraction into ``out_dir`` itself.

    Safe to run again after an interruption: shards are hard-linked (copied across file
    systems) before the merged ``writer_state.json`` is written, and the part folders are
    removed only after it; a folder already merged is returned as it is.

    Parameters
    ----------
    out_dir : path
        The extraction's output folder holding ``part-i-of-N`` folders.
    keep_parts : bool
        Keep the part folders (their shards are then stored twice unless hard-linked).

    Returns
    -------
    dict
        The merged meta.json content.

    Raises
    ------
    ShardError
        A part is missing or incomplete, or the parts differ in source, options, data or
        hookpoints (named).
    """
    from .shard_writer import ActivationWriter

    out = Path(out_dir)
    if (out / STATE_NAME).is_file():
        top = _read_state(out)
        if not top.get("parts"):
            raise ShardError(
                f"{out} holds a single-process extraction, not parts; there is nothing to merge"
            )
        if top.get("complete"):  # merged already (perhaps interrupted before the clean-up)
            if not keep_parts:
                _remove_parts(out)
            return json.loads((out / META_NAME).read_text())
    parts = find_parts(out)
    states = [_read_state(p) for p in parts]
    for p, st in zip(parts, states, strict=True):
        if not st.get("complete"):
            raise ShardError(f"{p}: this part is not complete; run (resume) it before merging")
        for key in ("hookpoints", "identity", "format_version"):
            if st.get(key) != states[0].get(key):
                raise ShardError(
                    f"{p}: {key} {st.get(key)} differs from {parts[0].name}'s "
                    f"{states[0].get(key)}; these parts are not one extraction"
                )
    metas = [json.loads((p / META_NAME).read_text()) for p in parts]
    for name in os.listdir(out):  # shards of an interrupted merge, never committed
        if SHARD_PATTERN.match(name):
            (out / name).unlink()
    shards = []
    for i, (p, st) in enumerate(zip(parts, states, strict=True)):
        for s in st["shards"]:
            name = shard_name(len(shards), s["name"].endswith(".gz"))
            _link_or_copy(p / s["name"], out / name)
            shards.append({**s, "name": name, "part": i})
    state = _merged_state(states, shards)
    write_json_atomic(out / STATE_NAME, state)
    first = metas[0]
    extra = {k: v for k, v in first["extra"].items() if k != "part"}
    info = {
        "source": first["source"],
        "pretrained": first["pretrained"],
        "options": first["options"],
        **extra,
        "parts": len(parts),
    }
    hookpoints = {hp: int(d) for hp, d in state["hookpoints"].items()}
    writer = ActivationWriter(
        out, hookpoints, shard_size=int(first["shard_size"]), info=info, resume=True
    )
    meta = writer.meta()
    write_json_atomic(out / META_NAME, meta)
    if not keep_parts:
        _remove_parts(out)
    return meta


def _merged_state(states: list[dict], shards: list[dict]) -> dict:
    first = states[0]
    stats = {}
    for hp, d in first["hookpoints"].items():
        total = RunningStats(int(d))
        for st in states:
            total.merge(RunningStats.from_json(st["stats"][hp]))
        stats[hp] = total.to_json()
    skipped = sorted((s for st in states for s in st["skipped"]), key=lambda s: s["input_index"])
    return {
        "format_version": first["format_version"],
        "hookpoints": first["hookpoints"],
        "identity": first["identity"],
        "shards": shards,
        "compress": first["compress"],
        "input_next": max(int(st["input_next"]) for st in states),
        "n_samples": sum(int(st["n_samples"]) for st in states),
        "stats": stats,
        "n_vectors": {hp: sum(st["n_vectors"][hp] for st in states) for hp in first["hookpoints"]},
        "n_clamped": {hp: sum(st["n_clamped"][hp] for st in states) for hp in first["hookpoints"]},
        "skipped": skipped,
        "complete": True,
        "parts": len(states),
    }


def _link_or_copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise ShardError(f"{src}: listed in its part's {STATE_NAME} but missing")
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links
        tmp = dst.with_name(dst.name + ".partial")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _remove_parts(out: Path) -> None:
    for p in out.iterdir():
        if PART_PATTERN.match(p.name) and p.is_dir():
            shutil.rmtree(p)
