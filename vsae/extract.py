"""The extraction loop: inputs -> activation source -> resumable half-precision shards."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsae.data.images import InputItem, iter_inputs
from vsae.data.input_identity import data_identity, data_label
from vsae.data.shard_format import STATE_NAME
from vsae.data.shard_parts import part_dir
from vsae.data.shards import ActivationWriter
from vsae.encoders import ActivationSource, from_spec

log = logging.getLogger(__name__)


def subsample_tokens(
    x_TD: torch.Tensor, max_tokens: int, seed: Sequence[int]
) -> tuple[torch.Tensor, list[int] | None]:
    """Keep ``max_tokens`` random tokens of one sample (diffusion blocks have hundreds of
    positions per image: sub-sampling bounds the data, REFERENCE §6).

    Parameters
    ----------
    x_TD : Tensor
        Token activations [T, D] of one sample.
    max_tokens : int or None
        Tokens to keep; None (or T or more) keeps all.
    seed : sequence of int
        Seed of the choice (the run's token seed, input index, sample, hookpoint).

    Returns
    -------
    (Tensor, list of int or None)
        The kept tokens [min(T, max_tokens), D] in position order, and their positions
        (None when all were kept).
    """
    t = x_TD.shape[0]
    if max_tokens is None or t <= max_tokens:
        return x_TD, None
    idx = np.sort(np.random.default_rng(list(seed)).choice(t, size=max_tokens, replace=False))
    return x_TD[torch.from_numpy(idx)], idx.tolist()


def write_batch(
    writer: ActivationWriter,
    source: ActivationSource,
    items: list[InputItem],
    max_tokens: int | None = None,
    token_seed: int = 0,
    batch: dict | None = None,
) -> None:
    """Run ``source`` on the readable items and write their samples (and the skips) in order.

    Parameters
    ----------
    writer : ActivationWriter
        The open shard writer.
    source : ActivationSource
        The model.
    items : list of InputItem
        Inputs in order; those with an ``error`` are recorded as skipped.
    max_tokens : int, optional
        Tokens kept per sample (``subsample_tokens``).
    token_seed : int
        Seed of the token sub-sampling.
    batch : dict, optional
        ``source.prepare`` of the readable items when already computed.

    Raises
    ------
    RuntimeError
        When the source returns activations of another shape than it declares.
    """
    good = [it for it in items if it.error is None]
    if batch is None and good:
        batch = source.prepare(good)
    acts = source(batch) if good else {}
    spi = source.samples_per_input
    for hp, x in acts.items():
        if x.ndim != 3 or x.shape[0] != len(good) * spi or x.shape[2] != source.d_out[hp]:
            raise RuntimeError(
                f"{source.spec} returned {hp} with shape {tuple(x.shape)}, "
                f"expected [{len(good) * spi}, T, {source.d_out[hp]}]"
            )
    row = 0
    for it in items:  # in input order, so skips and samples interleave as in the input
        if it.error is not None:
            writer.skip(it.index, it.key, it.error)
            log.warning("skipped %s: %s", it.key, it.error)
            continue
        for j in range(spi):
            arrays, token_index = {}, {}
            for hi, (hp, x) in enumerate(acts.items()):
                arrays[hp], kept = subsample_tokens(
                    x[row], max_tokens, (token_seed, it.index, j, hi)
                )
                if kept is not None:
                    token_index[hp] = kept
            info: dict[str, Any] = {"source_key": it.key, **source.sample_info(j)}
            if it.text is not None:
                info["caption"] = it.text
            if it.labels:
                info["labels"] = it.labels
            if token_index:
                info["token_index"] = token_index
            writer.add(it.index, arrays, info)
            row += 1


def extract(
    source: ActivationSource | str,
    data: Any,
    out_dir: str | os.PathLike,
    batch_size: int = 32,
    shard_size: int = 1000,
    resume: bool = True,
    strict: bool = False,
    max_tokens: int | None = None,
    token_seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    pretrained=None,
    hookpoints: Sequence[str] | None = None,
    source_opts: dict | None = None,
    extra_info: dict | None = None,
    part: tuple[int, int] | None = None,
) -> dict:
    """Extract activations of ``source`` over ``data`` into WebDataset shards in ``out_dir``.

    Parameters
    ----------
    source : ActivationSource or str
        A source, or a spec string (then ``pretrained``, ``hookpoints`` and ``source_opts`` are
        passed to :func:`vsae.encoders.from_spec`).
    data : str, path or iterable
        Image folder, WebDataset image shards, prompt ``.txt`` file, or an iterable of PIL
        images / prompt strings / dicts (see :func:`vsae.data.images.iter_inputs`).
    out_dir : path
        Output directory; an interrupted run in it is continued after its last complete shard.
    batch_size : int
        Inputs per model forward.
    shard_size : int
        Samples per shard.
    resume : bool
        Continue an existing dataset in ``out_dir`` (False: refuse to touch it). Its source,
        options and data (the ``world`` spec, a folder's or tar list's file-list fingerprint,
        a prompt file's hash) must match, or a ``ValueError`` names both.
    strict : bool
        Fail on the first unreadable image instead of skipping and reporting it.
    max_tokens : int, optional
        Keep at most this many random tokens per sample and hookpoint (positions stored in the
        sample json as ``token_index``).
    token_seed : int
        Seed of the token sub-sampling.
    limit : int, optional
        Use only the first ``limit`` inputs.
    progress : bool
        Show a tqdm progress bar.
    part : (int, int), optional
        ``(i, n)``: extract only part i of n of the inputs (those whose index is i modulo n)
        into ``out_dir/part-i-of-n`` (resumable on its own); merge the n parts with
        :func:`vsae.data.shard_parts.merge_parts`. A folder already merged is returned as it is.

    Returns
    -------
    dict
        The dataset's (or the part's) meta.json content (``n_samples``, ``n_skipped`` ...).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if isinstance(source, str):
        source = from_spec(
            source, pretrained=pretrained, hookpoints=hookpoints, **(source_opts or {})
        )
    info = source.describe()
    info["max_tokens"] = max_tokens
    info["token_seed"] = token_seed if max_tokens is not None else None
    # the data is part of the folder's identity: a resume or a complete folder with other data
    # is refused instead of mixing or silently answering for another dataset
    info["data"] = data_identity(data)
    info["data_spec"] = data_label(data)
    info.update(extra_info or {})
    opts = dict(info.get("options") or {})
    opts.update(max_tokens=max_tokens)
    info["options"] = opts
    target = out_dir
    if part is not None:
        target = part_dir(out_dir, part)
        if (Path(out_dir) / STATE_NAME).is_file():
            # merged already, or a single-process extraction: it must be the same one, then it
            # answers for every part
            merged = ActivationWriter(
                out_dir, source.d_out, shard_size=shard_size, info=info, resume=resume
            )
            if not merged.state.get("parts"):
                raise FileExistsError(
                    f"{out_dir} holds a single-process extraction; use another --out for a "
                    "rank-split one"
                )
            log.info("%s is already merged (%d samples)", out_dir, merged.state["n_samples"])
            return merged.meta()
        info["part"] = {"index": part[0], "count": part[1]}
    elif not (Path(out_dir) / STATE_NAME).is_file() and any(Path(out_dir).glob("part-*-of-*")):
        raise FileExistsError(
            f"{out_dir} holds the parts of a rank-split extraction; merge them with "
            f"`vsae shards merge {out_dir}` (or continue them with --part i/N)"
        )
    writer = ActivationWriter(target, source.d_out, shard_size=shard_size, info=info, resume=resume)
    if writer.complete:
        log.info("%s is already complete (%d samples)", out_dir, writer.state["n_samples"])
        return writer.meta()
    start = writer.input_next
    items: Iterable[InputItem] = iter_inputs(data, start=start, strict=strict, part=part)
    if limit is not None:  # a limit on the input index, the same for every part
        items = takewhile(lambda it: it.index < limit, items)
    bar = None
    if progress:
        from tqdm import tqdm

        total = None
        if limit is not None and part is None:
            total = max(limit - start, 0)
        bar = tqdm(total=total, desc=f"extract {source.spec}", unit="input", file=sys.stderr)
    last = start - 1
    pending: list[InputItem] = []
    n_good = 0
    try:
        for it in items:
            pending.append(it)
            last = it.index
            n_good += it.error is None
            if n_good >= batch_size:
                write_batch(writer, source, pending, max_tokens, token_seed)
                if bar is not None:
                    bar.update(len(pending))
                pending, n_good = [], 0
        if pending:
            write_batch(writer, source, pending, max_tokens, token_seed)
            if bar is not None:
                bar.update(len(pending))
    except BaseException:
        writer.abort()  # committed shards stay; the partial one is removed
        raise
    finally:
        if bar is not None:
            bar.close()
    meta = writer.finish(input_next=max(last + 1, writer.input_next))
    if meta["n_skipped"]:
        names = ", ".join(s["key"] for s in meta["skipped"][:20])
        more = "" if meta["n_skipped"] <= 20 else f" (+{meta['n_skipped'] - 20} more)"
        log.warning("skipped %d unreadable input(s): %s%s", meta["n_skipped"], names, more)
    return meta
