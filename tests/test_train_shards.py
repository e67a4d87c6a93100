"""``vsae train --data SHARDS``: one process, and two data-parallel processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, run_cli
from vsae.data.shards import ActivationWriter
from vsae.data.synthetic import SyntheticConfig, generate
from vsae.sae.io import read_provenance
from vsae.sae.registry import load_sae

ARGS = [
    "--set",
    "train.steps=150",
    "--set",
    "train.batch_size=256",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.ckpt_every=0",
    "--set",
    "train.eval_samples=1024",
    "--set",
    "sae.k=8",
]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    acts = generate(
        SyntheticConfig(d=64, n_features=512, n_samples=24_000, active=6, offset=3.0)
    ).acts
    w = ActivationWriter(out, {"acts": 64}, shard_size=400, info={"source": "synthetic"})
    for i in range(0, len(acts), 8):  # 8 "tokens" per sample
        w.add(i, {"acts": acts[i : i + 8].numpy()}, {"source_key": f"s{i}"})
    w.finish()
    return out


def test_train_from_shards(shard_dir, tmp_path):
    out = run_cli(
        "train",
        str(ROOT / "configs/topk.yaml"),
        "--data",
        str(shard_dir),
        "--out",
        str(tmp_path),
        *ARGS,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["fvu"] < 0.6 and m["n_samples"] == 1024
    # cfg.json records what the SAE was trained on (CONTRACTS.md), and still loads
    prov = read_provenance(tmp_path)
    assert prov["source"] == "synthetic" and prov["hookpoint"] == "acts"
    assert prov["data"] == str(shard_dir.resolve())
    assert load_sae(tmp_path).cfg.d_in == 64
    bad = run_cli(
        "train",
        str(ROOT / "configs/topk.yaml"),
        "--data",
        str(shard_dir),
        "--hookpoint",
        "nope",
        "--out",
        str(tmp_path / "b"),
        *ARGS,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(shard_dir, tmp_path):
    single = tmp_path / "single"
    one = run_cli(
        "train",
        str(ROOT / "configs/topk.yaml"),
        "--data",
        str(shard_dir),
        "--out",
        str(single),
        *ARGS,
    )
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ddp = tmp_path / "ddp"
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "vsae",
            "train",
            str(ROOT / "configs/topk.yaml"),
            "--data",
            str(shard_dir),
            "--out",
            str(ddp),
            *ARGS,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    m1 = json.loads((single / "metrics.json").read_text())
    m2 = json.loads((ddp / "metrics.json").read_text())
    # Same number of steps; each rank sees its own half of every global batch.
    assert m2["fvu"] < m1["fvu"] * 1.25 + 0.02, (m1, m2)
    assert abs(m2["l0"] - m1["l0"]) < 1.0


def test_iterable_source_passes_reshuffle_and_skip_the_held_out_rows(tmp_path):
    """Training passes over shards: a new order per (seed, pass), held-out rows never trained."""
    from vsae.data import IterableSource
    from vsae.data.shards import open_batches

    w = ActivationWriter(tmp_path, {"x": 4}, shard_size=5)
    for i in range(60):  # 120 vectors, column 0 is a unique id
        w.add(i, {"x": np.array([[2 * i, 1, 2, 3], [2 * i + 1, 1, 2, 3]], dtype=np.float32)})
    w.finish()

    def source(seed=0):
        loader = open_batches(tmp_path, 8, seed=seed, shuffle_buffer=20)
        return IterableSource(loader, batch_size=8, eval_samples=16, hold=16)

    src = source()
    held = set(src.held[:, 0].int().tolist())
    assert len(held) == 16  # two 8-row batches
    steps = 3 * ((120 - 16) // 8)  # three passes over the 104 training rows
    batches = [src.batch(s) for s in range(steps)]
    assert src.passes == 2  # passes 0, 1 and 2, of 13 batches each
    ids = torch.cat(batches)[:, 0].int().tolist()
    assert not held & set(ids)  # the held-out rows are never trained on, in any pass
    first, second, third = ids[:104], ids[104:208], ids[208:312]
    everything = set(range(120)) - held
    # the first pass continues after the held-out prefix; each later pass is a full shuffled
    # pass less the held-out rows
    assert sorted(first) == sorted(second) == sorted(third) == sorted(everything)
    assert first != second and second != third  # every pass in its own order

    again = source()  # deterministic: same seed, same passes
    assert all(torch.equal(a, again.batch(s)) for s, a in enumerate(batches))
    resumed = source()
    resumed.start_at(20)  # a resumed run replays passes 0.. and continues identically
    assert all(torch.equal(batches[s], resumed.batch(s)) for s in range(20, steps))
    other = source(seed=1)
    assert not all(torch.equal(a, other.batch(s)) for s, a in enumerate(batches))
