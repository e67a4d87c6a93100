"""Data-parallel training on shards: 2 gloo processes under torchrun match one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vsae.data.shards import ActivationWriter
from vsae.training.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    cleanup_distributed,
    is_main_process,
    setup_distributed,
    wrap_ddp,
)

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "ddp_train_worker.py"
WRAP_WORKER = REPO / "tests" / "ddp_wrap_worker.py"


def sparse_shards(out: Path, n: int = 1000, d: int = 16, f: int = 48) -> None:
    """Vectors that are sparse sums of f unit features (3 active per token, 4 tokens/sample)."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(f, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    w = ActivationWriter(out, {"x": d}, shard_size=125)
    for i in range(n):
        codes = np.zeros((4, f))
        for t in range(4):
            codes[t, rng.choice(f, 3, replace=False)] = rng.uniform(1, 3, 3)
        w.add(i, {"x": codes @ feats})
    w.finish()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed()
    assert info == DistInfo(device=info.device) and not info.distributed and info.is_main
    assert is_main_process()
    import torch

    lin = torch.nn.Linear(2, 2)
    lin(torch.ones(1, 2)).sum().backward()
    g = lin.weight.grad.clone()
    average_gradients(lin)
    assert torch.equal(lin.weight.grad, g)
    assert float(all_reduce_mean(3.0)) == 3.0
    assert wrap_ddp(lin, info) is lin  # not distributed: the module itself
    cleanup_distributed()  # no process group: nothing to wait for or destroy
    cleanup_distributed(wait=False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        setup_distributed()


def clean_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def head_tail(text: str, n: int = 1500) -> str:
    """Both ends of a long log: torchrun puts a worker's own error first, its summary last."""
    return text if len(text) <= 2 * n else text[:n] + "\n...\n" + text[-n:]


def torchrun(script: Path, *args: str) -> list[str]:
    """The command line running script under torchrun with 2 processes on a free port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
        *args,
    ]


@pytest.mark.slow
def test_wrap_ddp_matches_average_gradients_and_global_batch(tmp_path):
    out = tmp_path / "wrap.json"
    run = subprocess.run(
        torchrun(WRAP_WORKER, str(out)),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, head_tail(run.stderr)
    r = json.loads(out.read_text())
    assert r["wrapper"] == "DistributedDataParallel" and r["world_size"] == 2
    assert r["moved"] > 1e-2  # the steps did something
    assert r["ddp_vs_average_gradients"] < 1e-6
    assert r["ddp_vs_global_batch"] < 1e-5  # equal per-rank batches: mean of means
    assert r["rank_spread"] == 0.0  # ranks hold identical weights


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    sparse_shards(tmp_path / "acts")
    env = clean_env()
    args = [str(tmp_path / "acts"), "64", "4"]
    one = subprocess.run(
        [sys.executable, str(WORKER), args[0], str(tmp_path / "one.json"), *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, head_tail(one.stderr)
    two = subprocess.run(
        torchrun(WORKER, args[0], str(tmp_path / "two.json"), *args[1:]),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, head_tail(two.stderr)
    r1 = json.loads((tmp_path / "one.json").read_text())
    r2 = json.loads((tmp_path / "two.json").read_text())
    assert r2["world_size"] == 2 and r2["backend"] == "gloo"
    # same number of optimiser steps at the same global batch
    assert r1["steps"] == r2["steps"] == 4 * (4000 // 64)
    assert r2["max_param_diff"] == 0.0  # ranks hold identical weights
    assert r1["fvu"] < 0.5 and r2["fvu"] < 0.5  # both learned (FVU starts near 1)
    assert abs(r1["fvu"] - r2["fvu"]) < 0.05  # same quality
