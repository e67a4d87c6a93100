"""Nested-k MSAE measurements of the speed benchmark: its FLOP roofline, at init and trained.

``python -m vsae.bench.speed_msae SPEC_JSON`` runs one of them in a fresh process and prints
one JSON line:

- ``impl = "msae_roofline"``: an MSAE and a TopK SAE of the same (d, n, k0) at init, on
  standard-normal inputs, their full training steps alternating with a bare GEMM of the
  encoder's shape. The GEMM gives this machine's matmul rate at that moment; the MSAE's
  roofline is its FLOP count at that rate (:func:`roofline_flops`).
- ``impl = "msae_trained"``: the same after the MSAE has trained ``trained_steps`` steps on
  synthetic data with known sparsity (``vsae.data.synthetic``: ``trained_features`` true
  features, ``trained_active`` of them firing per sample), where the dense level's positive
  fraction is the one users see; the TopK SAE is initialised on the same data.

Both time the three alternately, so they see the same machine load (this 2-core machine is
shared); ratios within one process are what the targets judge.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from vsae.bench.speed_step import _median, _prepare, build_sae, make_step
from vsae.config import TrainConfig
from vsae.training.optim import adamw


def roofline_flops(batch: int, n: int, d: int, levels: tuple[int, ...]) -> dict[str, Any]:
    """The FLOP model of one MSAE training step (2 FLOPs per multiply-add).

    Dense work: with a dense ReLU level, 5 products of size B n d (encoder forward, encoder
    weight gradient, the dense level's decode and its two gradients); without one, the encoder
    forward only. Sparse work: 3 B k d per sparse level k (decode, code and dictionary
    gradients), each level counted in full as if decoded alone.

    Parameters
    ----------
    batch, n, d : int
        Batch rows, latents, input width.
    levels : tuple of int
        The MSAE's levels (the last equal to n for a dense level).

    Returns
    -------
    dict
        ``dense_products``, ``dense_flops``, ``sparse_flops``, ``total_flops`` and ``model``
        (the formula in words).
    """
    dense = levels[-1] == n
    sparse_levels = levels[:-1] if dense else levels
    products = 5 if dense else 1
    dense_flops = 2 * products * batch * n * d
    sparse_flops = 2 * 3 * batch * sum(sparse_levels) * d
    return {
        "dense_products": products,
        "dense_flops": dense_flops,
        "sparse_flops": sparse_flops,
        "total_flops": dense_flops + sparse_flops,
        "model": "2 * (P * B * n * d + 3 * B * sum(sparse levels) * d) FLOPs at the rate of "
        "one B x d x n GEMM timed alongside; P = 5 with the dense level, 1 without",
    }


def _gemm_seconds(x_BD: Tensor, W_ND: Tensor) -> float:
    """Wall time of one ``x @ W^T`` (the encoder's product, no autograd)."""
    with torch.no_grad():
        t0 = time.perf_counter()
        x_BD @ W_ND.T
        return time.perf_counter() - t0


def _positive_fraction(sae, x_BD: Tensor) -> float:
    with torch.no_grad():
        pre_BN = sae.pre_acts(x_BD)
        return float(torch.count_nonzero(pre_BN > 0)) / pre_BN.numel()


def _interleaved(spec: dict[str, Any], msae, topk, batches: list[Tensor]) -> dict[str, Any]:
    """Warm up, then time MSAE step, TopK step and the bare GEMM in turn."""
    device = torch.device(spec["device"])
    steps = {
        name: make_step(m, lambda x, dd, m=m: m.loss(x, dd).loss, device, False)
        for name, m in (("msae", msae), ("topk", topk))
    }
    W_ND = torch.randn(spec["n"], spec["d"], device=device)
    for i in range(spec["warmup"]):
        for step in steps.values():
            step(batches[i % 2], None)
    times: dict[str, list[float]] = {"msae": [], "topk": [], "gemm": []}
    for i in range(spec["steps"]):
        for name, step in steps.items():
            times[name].append(step(batches[i % 2], None))
        times["gemm"].append(_gemm_seconds(batches[i % 2], W_ND))
    med = {name: _median(t) for name, t in times.items()}
    B, n, d = spec["batch"], spec["n"], spec["d"]
    model = roofline_flops(B, n, d, tuple(msae.levels))
    rate = 2 * B * n * d / med["gemm"]
    roofline_s = model["total_flops"] / rate
    plan = asdict(msae.last_plan) if msae.last_plan is not None else None
    return {
        "msae_step_s": times["msae"],
        "topk_step_s": times["topk"],
        "gemm_s": times["gemm"],
        "msae_step_s_median": med["msae"],
        "topk_step_s_median": med["topk"],
        "gemm_s_median": med["gemm"],
        "gemm_flops_per_s": rate,
        "roofline": model,
        "roofline_s": roofline_s,
        "ratio_to_roofline": med["msae"] / roofline_s,
        "msae_over_topk": med["msae"] / med["topk"],
        "levels": list(msae.levels),
        "plan": plan,
    }


def measure_roofline(spec: dict[str, Any]) -> dict[str, Any]:
    """MSAE and TopK at init on standard-normal inputs, alternating with the bare GEMM.

    Parameters
    ----------
    spec : dict
        ``d``, ``n``, ``k`` (k0), ``batch``, ``steps``, ``warmup``, ``device``, ``threads``,
        ``msae_levels``, ``seed`` (and the keys ``speed_step._prepare`` reads).

    Returns
    -------
    dict
        Step times of both, the GEMM time and rate, the roofline model and seconds,
        ``ratio_to_roofline``, ``msae_over_topk``, the MSAE's last plan (which parts ran
        sparse) and ``positive_fraction`` (of the pre-activations on the first batch).
    """
    device, batches, _ = _prepare(spec)
    msae = build_sae({**spec, "arch": "matryoshka_k"}).to(device).train()
    topk = build_sae({**spec, "arch": "topk"}).to(device).train()
    out = _interleaved(spec, msae, topk, batches)
    out["positive_fraction"] = _positive_fraction(msae, batches[0])
    return out


def measure_trained(spec: dict[str, Any]) -> dict[str, Any]:
    """Train an MSAE on synthetic data, then time it against TopK as ``measure_roofline``.

    Parameters
    ----------
    spec : dict
        As ``measure_roofline``, plus ``trained_steps``, ``trained_batch`` (training batch),
        ``trained_features``, ``trained_active`` (the synthetic data's true features and
        how many fire per sample) and ``trained_samples``.

    Returns
    -------
    dict
        As ``measure_roofline``, plus ``positive_fraction`` after training (on the timing
        batch), ``positive_fraction_during`` (every 50 steps), the level FVUs at the end,
        ``train_s`` and the data settings.
    """
    from vsae.data.synthetic import SyntheticConfig, generate

    device = torch.device(spec["device"])
    if spec["threads"] > 0:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    data_cfg = SyntheticConfig(
        d=spec["d"],
        n_features=spec["trained_features"],
        n_samples=spec["trained_samples"],
        active=spec["trained_active"],
        seed=spec["seed"],
    )
    acts_SD = generate(data_cfg).acts.to(device)
    msae = build_sae({**spec, "arch": "matryoshka_k"}).to(device).train()
    topk = build_sae({**spec, "arch": "topk"}).to(device).train()
    for sae in (msae, topk):
        sae.init_from_data(acts_SD[:4096])
    gen = torch.Generator().manual_seed(spec["seed"] + 3)

    def batch(size: int) -> Tensor:
        idx = torch.randint(0, acts_SD.shape[0], (size,), generator=gen).to(device)
        return msae.normalize(acts_SD[idx])

    params = [p for p in msae.parameters() if p.requires_grad]
    opt = adamw(params, TrainConfig())
    during, t0 = [], time.perf_counter()
    for i in range(spec["trained_steps"]):
        x_BD = batch(spec["trained_batch"])
        if i % 50 == 0:
            during.append({"step": i, "positive_fraction": _positive_fraction(msae, x_BD)})
        out = msae.loss(x_BD)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        msae.before_step()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        msae.after_step()
    train_s = time.perf_counter() - t0
    fvu = {k: float(v) for k, v in out.terms.items() if k.startswith("fvu_")}
    batches = [batch(spec["batch"]) for _ in range(2)]
    pos = _positive_fraction(msae, batches[0])
    res = _interleaved(spec, msae, topk, batches)
    res.update(
        positive_fraction=pos,
        positive_fraction_during=during,
        fvu_at_end=fvu,
        train_s=train_s,
        data=asdict(data_cfg),
    )
    return res


def main(argv: list[str] | None = None) -> int:
    """Entry point of the measurement process: one JSON spec in, one JSON line out."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    spec.setdefault("msae_levels", 8)
    if spec["impl"] == "msae_trained":
        result = measure_trained(spec)
    else:
        result = measure_roofline(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
