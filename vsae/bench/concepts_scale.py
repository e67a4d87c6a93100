"""The scale half of ``vsae bench concepts``: a synthetic collection (clustered unit
embeddings, d = 768) indexed with a 16k-latent TopK SAE (k = 32): build throughput, memory,
exact and approximate query latency (single and batched), recall, float16 score error,
concept-filtered latency, and the throughput of naming a 65k-latent SAE against 20k words.
"""

from __future__ import annotations

import resource
import statistics
import time

import faiss
import numpy as np
import torch

from vsae.analysis.index_build import IndexBuilder, make_faiss
from vsae.analysis.word_match import top_words

CHUNK = 4096


def synthetic_chunk(lo: int, n: int, centres_CD: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows ``lo .. lo + n`` of the collection: a cluster centre plus noise, raw norm ~10."""
    rng = np.random.default_rng([seed, lo])
    c = rng.integers(len(centres_CD), size=n)
    d = centres_CD.shape[1]
    x = centres_CD[c] + rng.standard_normal((n, d), dtype=np.float32) * (0.6 / np.sqrt(d))
    return (x * 10.0).astype(np.float32)


def bandwidth_gbs(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Streaming read bandwidth: a matrix-vector product over ``n_bytes`` of float32 (the
    access pattern of an exact scan), best of ``repeats``."""
    a = np.ones((n_bytes // (4 * 768), 768), np.float32)
    v = np.ones(768, np.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ v
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def _lat(fn, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None])
        out.append(time.perf_counter() - t)
    return out


def _ms(xs: list[float]) -> dict:
    s = sorted(xs)
    return {
        "median_ms": 1e3 * statistics.median(s),
        "p99_ms": 1e3 * s[min(len(s) - 1, int(0.99 * len(s)))],
    }


def naming_throughput(n_latents: int, n_words: int, d: int = 768) -> dict:
    """Seconds and peak memory of naming ``n_latents`` atoms against ``n_words`` words."""
    gen = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(n_latents, d, generator=gen), dim=1)
    words = torch.nn.functional.normalize(torch.randn(n_words, d, generator=gen), dim=1).numpy()
    with RssSampler() as rss:
        t = time.perf_counter()
        top_words(atoms.numpy(), words, k=6)
        sec = time.perf_counter() - t
    return {
        "n_latents": n_latents,
        "n_words": n_words,
        "seconds": sec,
        "rss_before_mib": rss.before_mib,
        "peak_rss_mib": rss.peak_mib,
        "peak_rss_growth_mib": rss.peak_mib - rss.before_mib,
        "inputs_mib": (atoms.numel() * 4 + words.nbytes) / 2**20,
        "dense_float64_matrix_mib": n_latents * n_words * 8 / 2**20,
    }


class RssSampler:
    """The process's resident memory before a block and its peak during it (sampled every
    5 ms from /proc/self/statm)."""

    def __enter__(self):
        import threading

        self.before_mib = self._rss()
        self.peak_mib = self.before_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak_mib = max(self.peak_mib, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._rss())

    @staticmethod
    def _rss() -> float:
        import os

        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_throughput(n: int, d: int, n_latents: int, k: int, centres: np.ndarray):
    """Index ``n`` images through the whole builder (SAE encode, CSR codes, faiss fp16)."""
    import vsae

    sae = vsae.build(vsae.SAEConfig(arch="topk", d_in=d, n_latents=n_latents, k=k, seed=0))
    builder = IndexBuilder(sae, "fp16")
    t_build = 0.0
    for lo in range(0, n, CHUNK):
        x = synthetic_chunk(lo, min(CHUNK, n - lo), centres)
        t = time.perf_counter()
        builder.add(torch.from_numpy(x), [str(i) for i in range(lo, lo + len(x))])
        t_build += time.perf_counter() - t
    builder.finish()
    import scipy.sparse as sp

    codes = sp.vstack(builder.codes, format="csr")
    return {"n_images": n, "seconds": t_build, "images_per_s": n / t_build}, codes


def run_scale(quick: bool, n: int | None = None, n_build: int | None = None) -> dict:
    """All scale measurements.

    Parameters
    ----------
    quick : bool
        20k images, 2048 latents, small naming.
    n : int, optional
        Images of the searched collection (1M by default).
    n_build : int, optional
        Images indexed through the whole builder for the build throughput (20k by default:
        the SAE encode of 1M images, 25 TFLOP, does not fit a shared 2-core machine's time).

    Returns
    -------
    dict
    """
    naming = naming_throughput(*((4096, 2000) if quick else (65536, 20000)))
    n = n or (20_000 if quick else 1_000_000)
    n_build = min(n, n_build or (5_000 if quick else 20_000))
    d, n_latents, k, n_queries = 768, (2048 if quick else 16384), 32, 20
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((1000, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    build, codes = build_throughput(n_build, d, n_latents, k, centres)
    half = make_faiss(d, "fp16")
    flat = make_faiss(d, "flat")
    for lo in range(0, n, CHUNK):
        x = synthetic_chunk(lo, min(CHUNK, n - lo), centres)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        half.add(x)
        flat.add(x)
    nnz_per_image = codes.nnz / codes.shape[0]
    index_bytes = {
        "embeddings_fp16": n * d * 2,
        "embeddings_fp32": n * d * 4,
        # CSR of n images at the measured codes per image: float32 values, int32 columns,
        # int64 row pointers
        "codes_csr": int(n * nnz_per_image * 8 + (n + 1) * 8),
        "norms": n * 4,
    }
    index_bytes["total_fp16"] = (
        index_bytes["embeddings_fp16"] + index_bytes["codes_csr"] + index_bytes["norms"]
    )
    qx = synthetic_chunk(10**9, n_queries, centres, seed=7)
    q = np.ascontiguousarray(qx / np.linalg.norm(qx, axis=1, keepdims=True))
    bw = bandwidth_gbs()
    exact32 = _ms(_lat(lambda v: flat.search(v, 10), q))
    exact16 = _ms(_lat(lambda v: half.search(v, 10), q))
    s32, i32 = flat.search(q, 10)
    s16, i16 = half.search(q, 10)
    # float16 score error: its scores against float32 cosines of the same ids
    true16 = np.einsum("qd,qkd->qk", q, np.stack([flat.reconstruct_batch(r) for r in i16]))
    fp16_err = float(np.abs(s16 - true16).max())
    fp16_recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i32, i16, strict=True)]))
    t = time.perf_counter()
    flat.search(np.resize(q, (64, d)), 10)
    batched32 = 1e3 * (time.perf_counter() - t) / 64
    t = time.perf_counter()
    half.search(np.resize(q, (64, d)), 10)
    batched16 = 1e3 * (time.perf_counter() - t) / 64
    flat.reset()  # free the float32 copy before the IVF index is built
    ivf = _ivf(centres, n, d, q, i32)
    filt = _filtered(half, codes, n, q)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n_images": n,
        "d": d,
        "n_latents": n_latents,
        "k": k,
        "n_queries": n_queries,
        "build": build,
        "codes_per_image": nnz_per_image,
        "index_bytes": index_bytes,
        "peak_rss_mib": rss,
        "bandwidth_gb_s": bw,
        "exact_fp32": {**exact32, "floor_ms": 1e3 * index_bytes["embeddings_fp32"] / (bw * 1e9)},
        "exact_fp16": {**exact16, "floor_ms": 1e3 * index_bytes["embeddings_fp16"] / (bw * 1e9)},
        "fp16_max_score_error": fp16_err,
        "fp16_recall_at_10": fp16_recall,
        "batched64_ms_per_query": {"exact_fp32": batched32, "exact_fp16": batched16},
        "ivf": ivf,
        "filtered": filt,
        "naming": naming,
    }


def _ivf(centres, n, d, q, truth) -> dict:
    nlist = 1024 if n >= 200_000 else 64
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFScalarQuantizer(
        quant, d, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    n_train = min(n, 40 * nlist)
    train = synthetic_chunk(0, n_train, centres)
    t = time.perf_counter()
    ivf.train(train / np.linalg.norm(train, axis=1, keepdims=True))
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    for lo in range(0, n, CHUNK):
        x = synthetic_chunk(lo, min(CHUNK, n - lo), centres)
        ivf.add(x / np.linalg.norm(x, axis=1, keepdims=True))
    t_add = time.perf_counter() - t
    sweep = {}
    chosen = None
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128):
        if nprobe > nlist:
            break
        ivf.nprobe = nprobe
        _, ids = ivf.search(q, 10)
        rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, ids, strict=True)]))
        sweep[nprobe] = rec
        if rec >= 0.95 and chosen is None:
            chosen = nprobe
    ivf.nprobe = chosen or max(sweep)
    lat = _ms(_lat(lambda v: ivf.search(v, 10), q))
    t = time.perf_counter()
    ivf.search(np.resize(q, (64, d)), 10)
    batched = 1e3 * (time.perf_counter() - t) / 64
    return {
        "type": "IVF-SQfp16",
        "nlist": nlist,
        "train_seconds": t_train,
        "add_seconds": t_add,
        "recall_by_nprobe": sweep,
        "nprobe": ivf.nprobe,
        "recall_at_10": sweep[ivf.nprobe],
        **lat,
        "batched64_ms_per_query": batched,
    }


def _filtered(index, codes, n: int, q) -> dict:
    """A concept-filtered exact query: only images where a latent of median frequency fires.

    The allowed ids are a random set of that latent's measured frequency times ``n`` (the
    codes were computed on the build subset only).
    """
    codes = codes.tocsc()
    counts = np.diff(codes.indptr)
    latent = int(np.argsort(counts)[len(counts) // 2])
    freq = counts[latent] / codes.shape[0]
    rng = np.random.default_rng(3)
    ids = np.sort(rng.choice(n, size=max(1, int(freq * n)), replace=False)).astype(np.int64)

    def one(v):
        sel = faiss.IDSelectorBatch(ids)
        index.search(v, 10, params=faiss.SearchParameters(sel=sel))

    return {"latent": latent, "freq": float(freq), "n_allowed": len(ids), **_ms(_lat(one, q))}
