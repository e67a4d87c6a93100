"""Issue 13 §1 and §3: run folders are never wiped silently; expected errors are one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, run_cli
from vsae.data.shards import ActivationWriter
from vsae.data.synthetic import SyntheticConfig, generate

CONFIG = str(ROOT / "configs/topk.yaml")
FAST = [
    "--set",
    "train.steps=40",
    "--set",
    "data.synthetic.n_samples=4000",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.ckpt_every=20",
]


def ckpt_step(run) -> int:
    return int(torch.load(run / "checkpoint.pt", weights_only=True)["step"])


def one_error_line(proc, *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_train_over_a_run_folder_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", CONFIG, "--out", str(run), *FAST).returncode == 0
    log_before = (run / "metrics.jsonl").read_text()
    assert ckpt_step(run) == 40
    again = run_cli("train", CONFIG, "--out", str(run), *FAST, "--set", "sae.k=4")
    one_error_line(again, str(run), "--resume", "--overwrite")
    assert (run / "metrics.jsonl").read_text() == log_before and ckpt_step(run) == 40
    short = ["--set", "train.steps=10", "--set", "train.ckpt_every=0"]
    over = run_cli("train", CONFIG, "--out", str(run), *FAST, *short, "--overwrite")
    assert over.returncode == 0, over.stderr
    assert "removed" in over.stderr and "checkpoint.pt" in over.stderr
    assert not (run / "checkpoint.pt").exists()  # the old run's checkpoint is gone too
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10


def test_resume_without_checkpoint_says_it_starts_fresh(tmp_path):
    run = tmp_path / "run"
    out = run_cli("train", CONFIG, "--out", str(run), *FAST, "--resume")
    assert out.returncode == 0, out.stderr
    assert "no checkpoint.pt" in out.stderr and "starting fresh" in out.stderr


def test_train_errors_go_to_stderr_and_debug_shows_the_traceback(tmp_path):
    bad = ["train", CONFIG, "--out", str(tmp_path / "x"), "--set", "sae.kk=3"]
    one_error_line(run_cli(*bad), "kk")
    debug = run_cli(*bad, "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_truncated_shard_mid_training_is_one_line_and_the_checkpoint_resumes(tmp_path):
    shards = tmp_path / "shards"
    acts = generate(SyntheticConfig(d=32, n_features=64, n_samples=6000, active=4)).acts
    w = ActivationWriter(shards, {"acts": 32}, shard_size=500, info={"source": "synthetic"})
    for i in range(len(acts)):
        w.add(i, {"acts": acts[i : i + 1].numpy()})
    w.finish()
    run = tmp_path / "run"
    args = ["train", CONFIG, "--data", str(shards), "--out", str(run)]
    args += ["--set", "train.batch_size=250", "--set", "train.eval_samples=500"]
    args += ["--set", "train.eval_every=0", "--set", "train.ckpt_every=10"]
    args += ["--set", "train.steps=400", "--set", "train.progress=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsae", *args], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    try:  # kill it mid-training, once a checkpoint is written
        while not (run / "checkpoint.pt").is_file():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint written"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step = ckpt_step(run)
    assert 10 <= step < 400 and not (run / "metrics.json").exists()
    victim = sorted(shards.glob("shard-*.tar*"))[7]
    intact = victim.read_bytes()
    victim.write_bytes(intact[: len(intact) // 2])  # corrupted while the run is under way
    one_error_line(run_cli(*args, "--resume"), victim.name)
    assert ckpt_step(run) == step  # the last checkpoint is intact
    victim.write_bytes(intact)
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == 400


def test_extract_strict_bad_image_is_one_line(tmp_path):
    from pipeline_helpers import image_folder

    folder = image_folder(tmp_path / "img", 2, corrupt=("001b.png",))
    out = run_cli(
        "extract", "--source", "timm:vit_tiny_patch16_224", "--pretrained", "none",
        "--data", str(folder), "--out", str(tmp_path / "o"), "--strict", "--quiet",
    )  # fmt: skip
    one_error_line(out, "001b.png")


def test_offline_pretrained_tag_is_one_message(tmp_path):
    env_before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # no retries against an unreachable hub
    try:
        out = run_cli(
            "extract", "--source", "open_clip:ViT-B-32", "--pretrained", "laion2b_s34b_b79k",
            "--data", "world:2", "--out", str(tmp_path / "o"), "--quiet",
        )  # fmt: skip
    finally:
        if env_before is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before
    line = one_error_line(out, "laion2b_s34b_b79k", "local cache", "--pretrained PATH")
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in line
    assert len(out.stderr.splitlines()) <= 3, out.stderr  # no chained tracebacks, no retries
