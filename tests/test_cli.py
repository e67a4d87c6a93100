"""The ``vsae`` command line, run as a real subprocess: train, eval, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, run_cli

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
FAST = [
    "--set",
    "train.steps=60",
    "--set",
    "data.synthetic.n_samples=8000",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.ckpt_every=0",
]


def test_help_explains_every_option():
    out = run_cli("train", "--help")
    assert out.returncode == 0
    for opt in ("--out", "--data", "--set", "--resume"):
        assert opt in out.stdout
    assert "sae:" in out.stdout and "synthetic" in out.stdout
    top = run_cli("--help")
    assert "train" in top.stdout and "eval" in top.stdout and "quickstart" in top.stdout


def test_configs_cover_every_architecture():
    from vsae.config import ARCHS

    assert sorted(p.stem for p in CONFIGS) == sorted(ARCHS)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_trains_from_the_cli(config, tmp_path):
    out = run_cli("train", str(config), "--out", str(tmp_path), *FAST)
    assert out.returncode == 0, out.stdout + out.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("fvu", "cos", "l0", "sparsity", "dead_frac", "dense_frac"):
        assert isinstance(metrics[key], float), key
    assert metrics["fvu"] < 1.0
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["arch"] == config.stem


def test_eval_on_other_data_and_bad_inputs(tmp_path):
    run = tmp_path / "run"
    out = run_cli("train", str(ROOT / "configs/topk.yaml"), "--out", str(run), *FAST)
    assert out.returncode == 0, out.stderr
    from vsae.data.synthetic import SyntheticConfig, generate

    acts = generate(
        SyntheticConfig(d=64, n_features=512, n_samples=11000, active=6, offset=3.0, seed=0)
    ).acts[-3000:]  # same features as the config's data, rows it never trained on
    np.save(tmp_path / "other.npy", acts.numpy())
    ev = run_cli("eval", str(run), "--data", str(tmp_path / "other.npy"))
    assert ev.returncode == 0, ev.stdout + ev.stderr
    metrics = json.loads(ev.stdout)
    assert metrics["n_samples"] == 3000 and 0 < metrics["fvu"] < 1
    np.save(tmp_path / "narrow.npy", acts[:, :10].numpy())
    bad = run_cli("eval", str(run), "--data", str(tmp_path / "narrow.npy"))
    assert bad.returncode == 2 and "narrow.npy: width 10; the SAE expects d_in=64" in bad.stderr
    typo = run_cli(
        "train", str(ROOT / "configs/topk.yaml"), "--out", str(tmp_path / "x"), "--set", "sae.kk=3"
    )
    assert typo.returncode == 2 and "unknown SAEConfig key 'kk'" in typo.stderr


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "sae.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = [
        "train",
        str(ROOT / "configs/matryoshka_prefix.yaml"),
        "--set",
        "train.steps=600",
        "--set",
        "train.ckpt_every=50",
        "--set",
        "train.log_every=10",
        "--set",
        "data.synthetic.n_samples=20000",
        "--set",
        "sae.random_prefix=true",
        "--set",
        "train.eval_every=0",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsae", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = killed / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        lines = log.read_text().splitlines() if log.exists() else []
        if lines and json.loads(lines[-1])["step"] >= 120:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    state = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 100 <= state["step"] < 600
    assert not (killed / "sae.safetensors").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "vsae", *args, "--out", str(killed), "--resume"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    straight = tmp_path / "straight"
    ref = subprocess.run(
        [sys.executable, "-m", "vsae", *args, "--out", str(straight)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert ref.returncode == 0, ref.stderr
    a, b = _tensors(killed), _tensors(straight)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines() if '"loss"' in x]
    assert steps == list(range(10, 601, 10))  # no duplicated or missing log lines


def test_resume_with_changed_config_is_refused(tmp_path):
    base = [
        "train",
        str(ROOT / "configs/topk.yaml"),
        "--out",
        str(tmp_path),
        *FAST[:-2],
        "--set",
        "train.ckpt_every=30",
    ]
    assert run_cli(*base).returncode == 0
    out = run_cli(*base, "--set", "sae.k=4", "--resume")
    assert out.returncode == 2
    assert (
        "checkpoint.pt: cannot resume, the SAE config changed (k: checkpoint 8 vs now 4)"
        in out.stderr
    )
