"""Training: every architecture learns the synthetic features; NaN stops cleanly; data types."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vsae import SAEConfig, TrainConfig, TrainingError, train
from vsae.data.checks import DataError
from vsae.metrics import mmcs

TC = TrainConfig(
    batch_size=256,
    steps=500,
    lr=4e-3,
    warmup_steps=30,
    progress=False,
    eval_samples=2000,
    dead_after=20_000,
)
ARCHS = [
    ("relu", {"l1_coef": 0.02}),
    ("topk", {}),
    ("batchtopk", {}),
    ("jumprelu", {"l0_coef": 3e-3, "jump_bandwidth": 0.05}),
    ("matryoshka_k", {}),
    ("matryoshka_prefix", {}),
    ("archetypal", {"n_candidates": 512, "n_neighbors": 16}),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,extra", ARCHS)
def test_every_architecture_recovers_features(arch, extra, flat_data):
    cfg = SAEConfig(arch=arch, d_in=32, n_latents=256, k=4, **extra)
    sae, m = train(cfg, flat_data.acts, TC)
    # The mean-only baseline has FVU 1; 128 true features in 32 dims, 4 active per sample.
    assert m["fvu"] < 0.3, m
    assert m["cos"] > 0.9, m
    # JumpReLU keeps far more latents active (L0 ~ 20-40), which blurs single features.
    assert mmcs(flat_data.features, sae.decoder_directions()) >= (
        0.85 if arch == "jumprelu" else 0.9
    )
    if arch in ("topk", "matryoshka_prefix", "batchtopk", "archetypal"):
        assert 3.5 <= m["l0"] <= 4.5, m
    assert set(m) >= {"fvu", "cos", "l0", "sparsity", "dead_frac", "dense_frac"}


def _small(steps: int = 60, **kw) -> TrainConfig:
    return TrainConfig(
        batch_size=128, steps=steps, lr=3e-3, warmup_steps=5, progress=False, eval_samples=512, **kw
    )


def test_nan_batch_stops_with_step_and_keeps_checkpoint(tmp_path, flat_data):
    acts = flat_data.acts[:8000].clone()
    # An iterable source: 512 held-out rows, then 128-row batches; poison step 25's batch.
    acts[512 + 25 * 128 + 5, 3] = float("nan")
    batches = [acts[i : i + 100] for i in range(0, 8000, 100)]
    cfg = SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)
    # the stream's batches are checked as they are read (vsae.data.checks): the error names the
    # source batch (3717 // 100 = 37), its row and column, before a NaN reaches a step
    with pytest.raises(
        DataError, match=r"batch 37: 1 of 100 rows hold NaN or inf .* row 17, column 3"
    ):
        train(cfg, batches, _small(steps=40, ckpt_every=10), out_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 20
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "sae.safetensors").exists()


def test_loss_blowup_is_reported(flat_data):
    acts = flat_data.acts[:4000] * 1e30  # overflows float32 inside the loss
    cfg = SAEConfig(arch="topk", d_in=32, n_latents=64, k=4, normalize=False)
    with pytest.raises(TrainingError, match=r"step 0: the loss is"):
        train(cfg, acts, _small())


def test_npy_memmap_and_iterable_sources(tmp_path, flat_data):
    acts = flat_data.acts[:8000].numpy()
    np.save(tmp_path / "acts.npy", acts)
    cfg = SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)
    sae_a, m_a = train(cfg, tmp_path / "acts.npy", _small())
    sae_b, m_b = train(cfg, acts, _small())
    for name, p in sae_a.state_dict().items():  # a memmap and an array give the same run
        assert torch.equal(p, sae_b.state_dict()[name]), name
    batches = [torch.from_numpy(acts[i : i + 100]) for i in range(0, 8000, 100)]
    sae_c, m_c = train(cfg, batches, _small(steps=40))
    assert m_c["fvu"] < 0.9 and m_c["n_samples"] == 512


def test_run_folder_contents(tmp_path, flat_data):
    cfg = SAEConfig(arch="batchtopk", d_in=32, n_latents=64, k=4)
    train(cfg, flat_data.acts[:6000], _small(eval_every=20, log_every=10), out_dir=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"cfg.json", "sae.safetensors", "metrics.json", "metrics.jsonl"} <= names
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [10, 20, 30, 40, 50, 60]
    assert any("eval/fvu" in r for r in rows)
    final = json.loads((tmp_path / "metrics.json").read_text())
    assert final["fvu"] < 1.0
