"""One measurement of the speed benchmark, meant to run in a fresh process.

``python -m vsae.bench.speed_step SPEC_JSON`` builds one SAE (vsae's fast path or its dense
reference), trains it for ``warmup + steps`` full steps (forward, backward, decoder-gradient
projection, gradient clipping, AdamW, constraint projection) and prints one JSON line: step
times, throughput, the time of the bare encoder matmul, and the process's peak memory. A fresh
process per measurement makes the peak memory (``ru_maxrss`` on CPU) that of this
configuration alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vsae.config import SAEConfig, TrainConfig
from vsae.sae import BaseSAE, build
from vsae.sae.reference_model import DenseReferenceSAE, compare_gradients, float64_recheck
from vsae.training.optim import adamw


def msae_levels(k: int, n: int, n_levels: int) -> tuple[int, ...]:
    """Nested-k levels k, 2k, 4k, ... (below n) and the dense ReLU level n: ``n_levels`` in all.

    Fewer when n is too small to hold ``n_levels - 1`` doublings of k below it.
    """
    sparse = [k * 2**i for i in range(n_levels - 1) if k * 2**i < n]
    return (*sparse, n)


def build_sae(spec: dict[str, Any]) -> BaseSAE:
    """The vsae SAE of a measurement spec, with random parameters (no data-dependent init).

    Archetypal SAEs get random candidate points and, for each atom, ``n_neighbors`` distinct
    candidates spread over the whole candidate table (so the gathers are not cache-friendly
    runs), with random convex mixing weights.
    """
    arch, d, n, k = spec["arch"], spec["d"], spec["n"], spec["k"]
    extra: dict[str, Any] = {}
    if arch == "matryoshka_k":
        extra["levels"] = msae_levels(k, n, spec["msae_levels"])
    if arch == "archetypal":
        extra.update(
            n_candidates=spec["candidates_per_atom"] * n,
            n_neighbors=spec["n_neighbors"],
            delta=1.0,
            encoder_act="topk",
        )
    cfg = SAEConfig(arch=arch, d_in=d, n_latents=n, k=k, seed=spec["seed"], **extra)
    sae = build(cfg)
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    if arch == "archetypal":
        with torch.no_grad():
            C, m = sae.candidates_CD.shape[0], sae.neighbors_NM.shape[1]
            sae.candidates_CD.copy_(torch.randn(C, d, generator=gen))
            start_N1 = torch.randint(0, C, (n, 1), generator=gen)
            sae.neighbors_NM.copy_((start_N1 + torch.arange(m) * (C // m)) % C)
            sae.mix_NM.copy_(torch.rand(n, m, generator=gen))
            sae.after_step()
    return sae


def dead_mask(n: int, dead_frac: float, device: torch.device) -> Tensor | None:
    """Every (1 / dead_frac)-th latent marked dead, so AuxK runs; None when dead_frac is 0."""
    if dead_frac <= 0:
        return None
    n_dead = max(1, round(n * dead_frac))
    dead_N = torch.zeros(n, dtype=torch.bool, device=device)
    dead_N[torch.linspace(0, n - 1, n_dead, device=device).long()] = True
    return dead_N


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor | None], Tensor],
    device: torch.device,
    autocast: bool,
) -> Callable[[Tensor, Tensor | None], float]:
    """A full training step as the trainer does it; returns its wall time in seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, TrainConfig())  # the trainer's optimiser and default settings

    def step(x_BD: Tensor, dead_N: Tensor | None) -> float:
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(x_BD, dead_N)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        model.before_step()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        model.after_step()
        _sync(device)
        return time.perf_counter() - t0

    return step


def encoder_seconds(model: nn.Module, x_BD: Tensor, device: torch.device, autocast: bool) -> float:
    """Wall time of the bare encoder matmul (+ bias) that every path must do once per step.

    For the vsae SAEs this is ``pre_acts`` (``x W_enc^T`` plus the folded bias).
    """
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        _sync(device)
        t0 = time.perf_counter()
        model.pre_acts(x_BD)  # the same encoder product (and bias) as the training step
        _sync(device)
    return time.perf_counter() - t0


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations, or the CPU resident set (ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _prepare(spec: dict[str, Any]) -> tuple[torch.device, list[Tensor], Tensor | None]:
    """Threads and seed of a measurement process; its two input batches and dead mask."""
    device = torch.device(spec["device"])
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    batches = [torch.randn(spec["batch"], spec["d"], generator=gen).to(device) for _ in range(2)]
    return device, batches, dead_mask(spec["n"], spec["dead_frac"], device)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, (optionally) check against the other path, warm up and time one configuration.

    Parameters
    ----------
    spec : dict
        ``arch``, ``impl`` (``vsae`` or ``reference``), ``d``, ``n``, ``k``, ``batch``,
        ``steps``, ``warmup``, ``device``, ``threads``, ``compile``, ``autocast``,
        ``dead_frac``, ``msae_levels``, ``candidates_per_atom``, ``n_neighbors``, ``seed``,
        ``check`` (compare loss and gradients with the dense reference first) and, with it,
        ``check_tol`` (above which the check is redone in float64: ``check_recheck``).

    Returns
    -------
    dict
        ``step_s`` (every timed step), ``step_s_median``, ``samples_per_s``, ``encoder_s_median``
        and ``encoder_share`` (vsae only), ``peak_mem_mb``, ``rss_at_start_mb`` (CPU), and
        ``check`` when requested.
    """
    start_mb = peak_memory_mb(torch.device("cpu"))
    device, batches, dead_N = _prepare(spec)
    sae = build_sae(spec).to(device).train()
    out: dict[str, Any] = {}
    if spec["check"]:
        ref = DenseReferenceSAE.from_sae(sae)
        out["check"] = compare_gradients(sae, ref, batches[0], dead_N)
        del ref
        sae.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec["impl"] == "reference":
        model: nn.Module = DenseReferenceSAE.from_sae(sae)
        del sae
        loss_fn = model.loss
    else:
        model = sae

        def loss_fn(x_BD: Tensor, dead: Tensor | None) -> Tensor:
            return model.loss(x_BD, dead).loss

    if spec["compile"]:
        loss_fn = torch.compile(loss_fn)
    autocast = spec["autocast"] and device.type == "cuda"
    step = make_step(model, loss_fn, device, autocast)
    warm = [step(batches[i % 2], dead_N) for i in range(spec["warmup"])]
    times, enc = [], []
    for i in range(spec["steps"]):
        times.append(step(batches[i % 2], dead_N))
        if spec["impl"] == "vsae":
            enc.append(encoder_seconds(model, batches[i % 2], device, autocast))
    med = _median(times)
    out.update(
        warmup_s=warm,
        step_s=times,
        step_s_median=med,
        samples_per_s=spec["batch"] / med,
        peak_mem_mb=peak_memory_mb(device),
    )
    if device.type == "cpu":
        out["rss_at_start_mb"] = start_mb
    if spec["check"] and out["check"]["max"] >= spec["check_tol"]:
        # after the peak memory is read: the float64 copies must not count
        sae = build_sae(spec).to(device).train()
        out["check_recheck"] = float64_recheck(sae, batches[0], dead_N)
    if enc:
        out["encoder_s_median"] = _median(enc)
        out["encoder_share"] = _median(enc) / med
    return out


def measure_interleaved(spec: dict[str, Any]) -> dict[str, Any]:
    """RA-SAE and TopK of one (d, n, k) in one process, their steps alternating.

    Both see the same machine load at the same moments, so their ratio is far less noisy
    than one taken between two processes minutes apart.
    """
    device, batches, dead_N = _prepare(spec)
    autocast = spec["autocast"] and device.type == "cuda"
    steps = {}
    for arch in ("topk", "archetypal"):
        sae = build_sae({**spec, "arch": arch}).to(device).train()
        steps[arch] = make_step(sae, lambda x, dd, m=sae: m.loss(x, dd).loss, device, autocast)
    for i in range(spec["warmup"]):
        for arch in steps:
            steps[arch](batches[i % 2], dead_N)
    times: dict[str, list[float]] = {arch: [] for arch in steps}
    for i in range(spec["steps"]):
        for arch in steps:
            times[arch].append(steps[arch](batches[i % 2], dead_N))
    med = {arch: _median(t) for arch, t in times.items()}
    return {
        "topk_step_s": times["topk"],
        "archetypal_step_s": times["archetypal"],
        "topk_step_s_median": med["topk"],
        "archetypal_step_s_median": med["archetypal"],
        "ratio": med["archetypal"] / med["topk"],
    }


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the measurement process: one JSON spec in, one JSON line out."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    result = measure_interleaved(spec) if spec["impl"] == "ra_vs_topk" else measure(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
