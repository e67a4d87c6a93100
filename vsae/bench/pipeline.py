"""Activation pipeline benchmark: extraction overhead, reader throughput, bytes on disk.

1. Extraction overhead: the extraction path (hooks, half precision, statistics, tar writing) on
   prepared batches, against the bare model forward on the same batches (same run, the two
   alternating, median of repeats). Target <= 10 %.
2. Reader throughput (vectors/s, ``open_batches`` with shuffling) against the rate at which a
   TopK SAE training step consumes vectors (same run, same D). Target: reader >= 5x.
3. Bytes per vector on disk against a float32 memmap (4 * D bytes); reported, no target.

``vsae bench pipeline [--quick] [--out FILE]`` prints the benchmark contract's JSON; its
``results`` keep the keys of the older ``benchmarks/pipeline.py`` (``extraction``, ``reader``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsae.bench.harness import add_common_arguments, make_report, target, time_against
from vsae.data.images import InputItem
from vsae.data.shards import ActivationWriter, read_meta
from vsae.data.sources import open_source
from vsae.encoders import from_spec
from vsae.extract import extract, write_batch

OVERHEAD_MAX = 0.10
READER_OVER_TRAINING_MIN = 5.0
QUICK = {
    "source": "timm:vit_tiny_patch16_224",
    "hookpoints": "blocks.11",
    "n_images": 8,
    "dim": 256,
    "reader_vectors": 20_000,
    "train_batch": 1024,
    "repeats": 2,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vsae bench pipeline``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``pipeline`` sub-command's parser.
    """
    add_common_arguments(parser)
    a = parser.add_argument
    a("--source", default="open_clip:ViT-B-32", help="model spec to extract (random weights)")
    a("--hookpoints", default="image,blocks.6", help="comma-separated hookpoints to extract")
    a("--tokens", default="all", help="token mode of the extraction (all, cls, mean)")
    a("--n-images", type=int, default=32, help="random images to extract")
    a("--batch-size", type=int, default=8, help="images per extraction batch")
    a("--repeats", type=int, default=3, help="timed repeats of the extraction comparison")
    a("--dim", type=int, default=768, help="width D of the reader's synthetic datasets")
    a("--reader-vectors", type=int, default=200_000, help="vectors per reader dataset")
    a("--train-batch", type=int, default=4096, help="batch of the reader and the TopK step")
    a("--expansion", type=int, default=8, help="latents per dimension of the TopK step")
    a("--k", type=int, default=32, help="k of the TopK step")
    a("--workers", type=int, default=2, help="reader worker processes (also timed: 0)")


def random_images(n: int, size: int) -> list[InputItem]:
    """``n`` random RGB images of ``size`` x ``size`` pixels (seed 0).

    Parameters
    ----------
    n, size : int
        How many, and their side in pixels.

    Returns
    -------
    list of InputItem
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        InputItem(
            i, f"img{i:05d}", Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        )
        for i in range(n)
    ]


def shard_bytes(path: Path) -> int:
    """Bytes of a folder's shard files.

    Parameters
    ----------
    path : Path
        A shard folder.

    Returns
    -------
    int
    """
    return sum(p.stat().st_size for p in path.iterdir() if p.name.startswith("shard-"))


def bench_extraction(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Extraction path against the bare forward on the same prepared batches.

    Parameters
    ----------
    args : argparse.Namespace
        ``source``, ``hookpoints``, ``tokens``, ``n_images``, ``batch_size``, ``repeats``.
    work : Path
        Scratch folder for the written shards.

    Returns
    -------
    dict
        Seconds of both (medians), ``overhead`` (extraction / bare - 1), every repeat, and the
        bytes per vector of a full extraction.
    """
    src = from_spec(args.source, hookpoints=args.hookpoints, tokens=args.tokens)
    items = random_images(args.n_images, 64)
    chunks = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    t0 = time.perf_counter()
    batches = [src.prepare(c) for c in chunks]
    t_prepare = time.perf_counter() - t0
    runs = iter(range(1_000_000))

    def extraction_path() -> None:
        writer = ActivationWriter(
            work / f"extract-{next(runs)}", src.d_out, shard_size=64, info=src.describe()
        )
        for c, b in zip(chunks, batches, strict=True):
            write_batch(writer, src, c, batch=b)
        writer.finish()

    def bare_forward() -> None:
        for b in batches:
            src.forward_bare(b)

    timing = time_against(extraction_path, bare_forward, repeats=args.repeats, warmup=1)
    t0 = time.perf_counter()
    meta = extract(
        src, items, work / "extract-full", batch_size=args.batch_size, shard_size=64, progress=False
    )
    t_full = time.perf_counter() - t0
    n_vec = sum(h["n_vectors"] for h in meta["hookpoints"].values())
    fp32 = sum(h["n_vectors"] * 4 * h["d"] for h in meta["hookpoints"].values())
    return {
        "source": args.source,
        "hookpoints": args.hookpoints,
        "tokens": args.tokens,
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "bare_forward_s": timing.baseline_median_s,
        "extraction_path_s": timing.candidate_median_s,
        "overhead": timing.ratio - 1.0,
        "target_overhead": OVERHEAD_MAX,
        "timing": timing.as_dict(),
        "prepare_s_excluded": t_prepare,
        "full_extract_s_incl_preprocess": t_full,
        "dims": {hp: h["d"] for hp, h in meta["hookpoints"].items()},
        "n_vectors": n_vec,
        "compression": meta["compression"],
        "bytes_per_vector": shard_bytes(work / "extract-full") / n_vec,
        "fp32_bytes_per_vector": fp32 / n_vec,
    }


def synthetic_dataset(out: Path, n_vectors: int, d: int, tokens: int) -> dict[str, Any]:
    """A shard folder of ``n_vectors`` random vectors, ``tokens`` per sample.

    Parameters
    ----------
    out : Path
        The folder.
    n_vectors, d, tokens : int
        Vectors in all, their width, vectors per sample.

    Returns
    -------
    dict
        The folder's meta.json.
    """
    rng = np.random.default_rng(0)
    w = ActivationWriter(out, {"x": d}, shard_size=max(1, 20000 // tokens))
    base_KD = rng.normal(size=(4096, d)).astype(np.float32)
    for i in range(n_vectors // tokens):
        rows = rng.integers(0, 4096, size=tokens)
        w.add(i, {"x": base_KD[rows]}, {"source_key": f"train/{i:08d}.jpg"})
    return w.finish()


def reader_rate(folder: Path, batch_size: int, workers: int, max_batches: int) -> float:
    """Vectors/s of the shuffling shard reader (one pass of at most ``max_batches`` batches).

    Parameters
    ----------
    folder : Path
        A shard folder.
    batch_size, workers, max_batches : int
        Reader batch, DataLoader workers, batches read.

    Returns
    -------
    float
    """
    from vsae.data.shards import open_batches

    loader = open_batches(
        folder, batch_size, shuffle=True, shuffle_buffer=4 * batch_size, num_workers=workers
    )
    n, t0 = 0, time.perf_counter()
    for i, x_BD in enumerate(loader):
        n += x_BD.shape[0]
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def training_rate(d: int, expansion: int, k: int, batch_size: int, steps: int) -> float:
    """Vectors/s of a TopK SAE step (encode, top-k, decode, backward, Adam, renormalise).

    Parameters
    ----------
    d, expansion, k, batch_size, steps : int
        Width, latents per dimension, k, batch and timed steps (after one warm-up step).

    Returns
    -------
    float
    """
    n = d * expansion
    torch.manual_seed(0)
    W_dec_ND = torch.nn.Parameter(torch.randn(n, d) / d**0.5)
    W_enc_DN = torch.nn.Parameter(W_dec_ND.detach().t().clone())
    b_enc_N = torch.nn.Parameter(torch.zeros(n))
    b_dec_D = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([W_dec_ND, W_enc_DN, b_enc_N, b_dec_D], lr=1e-4)
    x_BD = torch.randn(batch_size, d)

    def step() -> None:
        pre_BN = (x_BD - b_dec_D) @ W_enc_DN + b_enc_N
        top = pre_BN.topk(k, dim=1)
        codes_BN = torch.zeros_like(pre_BN).scatter(1, top.indices, top.values.relu())
        loss = ((codes_BN @ W_dec_ND + b_dec_D) - x_BD).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec_ND.div_(W_dec_ND.norm(dim=1, keepdim=True))

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def bench_reader(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Reader throughput on two synthetic datasets against the TopK step's consumption.

    Parameters
    ----------
    args : argparse.Namespace
        ``dim``, ``reader_vectors``, ``train_batch``, ``expansion``, ``k``, ``workers``.
    work : Path
        Scratch folder for the datasets.

    Returns
    -------
    dict
        ``training_vectors_per_s`` and, per dataset, the reader rates, their best over the
        training rate, and bytes per vector against a float32 memmap.
    """
    train_rate = training_rate(args.dim, args.expansion, args.k, args.train_batch, 5)
    datasets = {}
    for name, tokens in (("embeddings_1_per_sample", 1), ("tokens_50_per_sample", 50)):
        out = work / name
        synthetic_dataset(out, args.reader_vectors, args.dim, tokens)
        meta = read_meta(out)
        # the folder opens through the one way in for data, as training opens it
        assert open_source(out, batch_size=args.train_batch).d == args.dim
        n_vec = meta["hookpoints"]["x"]["n_vectors"]
        max_b = max(3, n_vec // args.train_batch - 1)
        rates = {
            f"workers_{w}": reader_rate(out, args.train_batch, w, max_b)
            for w in sorted({0, args.workers})
        }
        datasets[name] = {
            "n_vectors": n_vec,
            "compression": meta["compression"],
            "reader_vectors_per_s": rates,
            "reader_over_training": max(rates.values()) / train_rate,
            "bytes_per_vector": shard_bytes(out) / n_vec,
            "fp32_memmap_bytes_per_vector": 4 * args.dim,
            "disk_ratio_vs_fp32": shard_bytes(out) / n_vec / (4 * args.dim),
        }
    return {
        "dim": args.dim,
        "train_batch": args.train_batch,
        "training": f"TopK SAE x{args.expansion}, k={args.k}, Adam",
        "training_vectors_per_s": train_rate,
        "target_reader_over_training": READER_OVER_TRAINING_MIN,
        "datasets": datasets,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three measurements and return the benchmark's report.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments`; ``--quick`` replaces the sizes by ``QUICK``'s.

    Returns
    -------
    dict
        ``benchmark, date_utc, command, machine, settings, results (extraction, reader),
        targets (extraction_overhead, reader_over_training)``.
    """
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    hookpoints = [h for h in str(args.hookpoints).split(",") if h]
    args = argparse.Namespace(**{**vars(args), "hookpoints": hookpoints})
    settings = {
        k: v for k, v in vars(args).items() if not callable(v) and k not in ("out", "debug")
    }
    settings["quick"] = bool(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        extraction = bench_extraction(args, work)
        reader = bench_reader(args, work)
    ratios = [v["reader_over_training"] for v in reader["datasets"].values()]
    targets = [
        target(
            "extraction_overhead",
            f"extraction path <= {OVERHEAD_MAX:.0%} over the bare forward (same batches)",
            [extraction["overhead"]],
            lambda v: v <= OVERHEAD_MAX,
        ),
        target(
            "reader_over_training",
            f"shard reader >= {READER_OVER_TRAINING_MIN:g}x the TopK step's vectors/s "
            "(every dataset)",
            ratios,
            lambda v: v >= READER_OVER_TRAINING_MIN,
        ),
    ]
    return make_report("pipeline", settings, {"extraction": extraction, "reader": reader}, targets)
