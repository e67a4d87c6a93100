"""``wrap_ddp`` against ``average_gradients`` and a one-process global batch; run by torchrun.

Usage: python tests/ddp_wrap_worker.py OUT_JSON
Every rank trains two copies of a small MLP on its own data for a few SGD steps: one wrapped by
``wrap_ddp`` (DistributedDataParallel), one with ``average_gradients``. Rank 0 also replays the
steps in one process on the concatenated global batch. Rank 0 writes the largest parameter
differences, how far training moved the weights and the wrapper's type to OUT_JSON.
"""

import copy
import json
import sys

import torch

from vsae.training.distributed import (
    all_reduce_mean,
    average_gradients,
    exit_distributed,
    is_main_process,
    setup_distributed,
    wrap_ddp,
)

STEPS, BATCH = 5, 8


def batch(step: int, rank: int) -> torch.Tensor:
    """This rank's [BATCH, 4] inputs at a step (different on every rank)."""
    return torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(100 * step + rank))


def loss_fn(model: torch.nn.Module, x_BD: torch.Tensor) -> torch.Tensor:
    return (model(x_BD) - x_BD.flip(1)).pow(2).sum(1).mean()


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        float((p - q).detach().abs().max())
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def main() -> None:
    out_json = sys.argv[1]
    info = setup_distributed()
    torch.manual_seed(0)  # the same initial weights on every rank
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    init, plain, reference = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    ddp = wrap_ddp(net, info)
    opt_ddp = torch.optim.SGD(ddp.parameters(), lr=0.1)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.1)
    for step in range(STEPS):
        x_BD = batch(step, info.rank)
        opt_ddp.zero_grad()
        loss_fn(ddp, x_BD).backward()  # DDP all-reduces (averages) gradients in backward
        opt_ddp.step()
        opt_plain.zero_grad()
        loss_fn(plain, x_BD).backward()
        average_gradients(plain)
        opt_plain.step()
        # one process, global batch: the mean loss over all ranks' rows
        x_all = torch.cat([batch(step, r) for r in range(info.world_size)])
        opt_ref.zero_grad()
        loss_fn(reference, x_all).backward()
        opt_ref.step()
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    rank_spread = float(all_reduce_mean((flat - all_reduce_mean(flat).float()).abs().max()))
    if is_main_process():
        result = {
            "wrapper": type(ddp).__name__,
            "world_size": info.world_size,
            "ddp_vs_average_gradients": max_diff(net, plain),
            "ddp_vs_global_batch": max_diff(net, reference),
            "moved": max_diff(net, init),  # training changed the weights
            "rank_spread": rank_spread,
        }
        with open(out_json, "w") as f:
            json.dump(result, f)
    exit_distributed(0)


if __name__ == "__main__":
    main()
