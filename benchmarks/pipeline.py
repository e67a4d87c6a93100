"""Activation pipeline benchmark; prints JSON.

1. Extraction overhead: the extraction path (hooks, half precision, statistics, tar writing) on
   prepared batches, against the bare model forward on the same batches (same run, interleaved,
   median of repeats). Target <= 10 %.
2. Reader throughput (vectors/s, open_batches with shuffling) against the rate at which a TopK
   SAE training step consumes vectors (same run, same D). Target: reader >= 5x.
3. Bytes per vector on disk against a float32 memmap (4 * D bytes).

Usage: PYTHONPATH=. python benchmarks/pipeline.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vsae.data.images import InputItem
from vsae.data.shards import ActivationWriter, open_batches, read_meta
from vsae.encoders import from_spec
from vsae.extract import extract, write_batch


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.name.startswith("shard-"))


def images(n: int, size: int) -> list[InputItem]:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        InputItem(
            i, f"img{i:05d}", Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        )
        for i in range(n)
    ]


def bench_extraction(args, work: Path) -> dict:
    src = from_spec(args.source, hookpoints=args.hookpoints, tokens=args.tokens)
    items = images(args.n_images, 64)
    chunks = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    t0 = time.perf_counter()
    batches = [src.prepare(c) for c in chunks]
    t_prepare = time.perf_counter() - t0
    src.forward_bare(batches[0])  # warm-up
    bare, pipe = [], []
    for rep in range(args.repeats):
        writer = ActivationWriter(
            work / f"extract-{rep}", src.d_out, shard_size=64, info=src.describe()
        )
        tb = tp = 0.0
        for c, b in zip(chunks, batches, strict=True):  # interleaved: same load for both
            t0 = time.perf_counter()
            src.forward_bare(b)
            tb += time.perf_counter() - t0
            t0 = time.perf_counter()
            write_batch(writer, src, c, batch=b)
            tp += time.perf_counter() - t0
        t0 = time.perf_counter()
        writer.finish()
        tp += time.perf_counter() - t0
        bare.append(tb)
        pipe.append(tp)
    t0 = time.perf_counter()
    meta = extract(
        src, items, work / "extract-full", batch_size=args.batch_size, shard_size=64, progress=False
    )
    t_full = time.perf_counter() - t0
    n_vec = sum(h["n_vectors"] for h in meta["hookpoints"].values())
    d = {hp: h["d"] for hp, h in meta["hookpoints"].items()}
    fp32 = sum(h["n_vectors"] * 4 * h["d"] for h in meta["hookpoints"].values())
    mb, mp = statistics.median(bare), statistics.median(pipe)
    return {
        "source": args.source,
        "hookpoints": args.hookpoints,
        "tokens": args.tokens,
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "bare_forward_s": mb,
        "extraction_path_s": mp,
        "overhead": mp / mb - 1.0,
        "target_overhead": 0.10,
        "prepare_s_excluded": t_prepare,
        "full_extract_s_incl_preprocess": t_full,
        "dims": d,
        "n_vectors": n_vec,
        "compression": meta["compression"],
        "bytes_per_vector": dir_bytes(work / "extract-full") / n_vec,
        "fp32_bytes_per_vector": fp32 / n_vec,
    }


def synthetic_dataset(out: Path, n_vectors: int, d: int, tokens: int, compress) -> dict:
    rng = np.random.default_rng(0)
    w = ActivationWriter(out, {"x": d}, shard_size=max(1, 20000 // tokens), compress=compress)
    base = rng.normal(size=(4096, d)).astype(np.float32)
    for i in range(n_vectors // tokens):
        rows = rng.integers(0, 4096, size=tokens)
        w.add(i, {"x": base[rows]}, {"source_key": f"train/{i:08d}.jpg"})
    return w.finish()


def bench_reader(out: Path, batch_size: int, workers: int, max_batches: int) -> float:
    loader = open_batches(
        out, batch_size, shuffle=True, shuffle_buffer=4 * batch_size, num_workers=workers
    )
    n, t0 = 0, time.perf_counter()
    for i, x in enumerate(loader):
        n += x.shape[0]
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def bench_training(d: int, expansion: int, k: int, batch_size: int, steps: int) -> float:
    """Vectors/s of a TopK SAE step (encode, top-k, decode, backward, Adam, renormalise)."""
    n = d * expansion
    torch.manual_seed(0)
    w_dec = torch.nn.Parameter(torch.randn(n, d) / d**0.5)
    w_enc = torch.nn.Parameter(w_dec.detach().t().clone())
    b_enc = torch.nn.Parameter(torch.zeros(n))
    b_dec = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([w_dec, w_enc, b_enc, b_dec], lr=1e-4)
    x = torch.randn(batch_size, d)

    def step():
        pre = (x - b_dec) @ w_enc + b_enc
        top = pre.topk(k, dim=1)
        codes = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
        loss = ((codes @ w_dec + b_dec) - x).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w_dec.div_(w_dec.norm(dim=1, keepdim=True))

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="open_clip:ViT-B-32")
    p.add_argument("--hookpoints", default="image,blocks.6")
    p.add_argument("--tokens", default="all")
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--reader-vectors", type=int, default=200_000)
    p.add_argument("--train-batch", type=int, default=4096)
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = p.parse_args()
    args.hookpoints = [h for h in args.hookpoints.split(",") if h]
    if args.quick:
        args.source, args.hookpoints, args.n_images = "timm:vit_tiny_patch16_224", ["blocks.11"], 8
        args.dim, args.reader_vectors, args.train_batch, args.repeats = 256, 20_000, 1024, 2
    torch.set_num_threads(torch.get_num_threads())
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["extraction"] = bench_extraction(args, work)
        train_rate = bench_training(args.dim, args.expansion, args.k, args.train_batch, 5)
        reader = {}
        for name, tokens, compress in (
            ("embeddings_1_per_sample", 1, None),
            ("tokens_50_per_sample", 50, None),
        ):
            out = work / name
            meta = synthetic_dataset(out, args.reader_vectors, args.dim, tokens, compress)
            meta = read_meta(out)
            n_vec = meta["hookpoints"]["x"]["n_vectors"]
            max_b = max(3, n_vec // args.train_batch - 1)
            rates = {
                f"workers_{w}": bench_reader(out, args.train_batch, w, max_b)
                for w in sorted({0, args.workers})
            }
            best = max(rates.values())
            reader[name] = {
                "n_vectors": n_vec,
                "compression": meta["compression"],
                "reader_vectors_per_s": rates,
                "reader_over_training": best / train_rate,
                "bytes_per_vector": dir_bytes(out) / n_vec,
                "fp32_memmap_bytes_per_vector": 4 * args.dim,
                "disk_ratio_vs_fp32": dir_bytes(out) / n_vec / (4 * args.dim),
            }
        result["reader"] = {
            "dim": args.dim,
            "train_batch": args.train_batch,
            "training": f"TopK SAE x{args.expansion}, k={args.k}, Adam",
            "training_vectors_per_s": train_rate,
            "target_reader_over_training": 5.0,
            "datasets": reader,
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
