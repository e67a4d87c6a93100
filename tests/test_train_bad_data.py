"""Issue 13 §2 and §3: vsae train on non-finite rows, bad dtypes and corrupt shards."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from vsae.cli import main
from vsae.data import open_source
from vsae.data.shards import ActivationWriter
from vsae.data.synthetic import SyntheticConfig, generate
from vsae.sae import load_sae

CONFIG = str(ROOT / "configs/topk.yaml")
FAST = ["--set", "train.steps=10", "--set", "train.eval_every=0", "--set", "train.ckpt_every=0"]
FAST += ["--set", "train.batch_size=250", "--set", "train.eval_samples=500"]
FAST += ["--set", "train.progress=false"]


def strict(text: str) -> dict:
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def acts():
    return generate(SyntheticConfig(d=32, n_features=64, n_samples=6000, active=4)).acts.numpy()


def train_cli(capsys, data, out, *extra):
    code = main(["train", CONFIG, "--data", str(data), "--out", str(out), *FAST, *extra])
    res = capsys.readouterr()
    return code, res.out, res.err


def error_line(code, out, err, *needles):
    assert code == 2 and out == "" and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_nan_in_a_later_training_row_names_file_row_column_and_count(acts, tmp_path, capsys):
    bad = acts.copy()
    bad[5000, 7] = np.nan
    bad[5999, 0] = np.inf
    bad[4321, [1, 2]] = np.nan
    path = tmp_path / "acts.npy"
    np.save(path, bad)
    line = error_line(*train_cli(capsys, path, tmp_path / "r1"), str(path), "3 of 6000 rows")
    assert "row 4321, column 1" in line and "--skip-nonfinite" in line
    assert "loss" not in line
    assert not (tmp_path / "r1" / "metrics.json").exists()
    code, out, err = train_cli(capsys, path, tmp_path / "r2", "--skip-nonfinite")
    assert code == 0, err
    metrics = strict(out)
    assert metrics["nonfinite_rows_dropped"] == 3 and "3 rows holding NaN or inf dropped" in err
    assert strict((tmp_path / "r2" / "metrics.json").read_text()) == metrics
    assert np.isfinite(metrics["fvu"]) and metrics["steps"] == 10
    sae = load_sae(tmp_path / "r2")  # statistics of checked rows: finite
    assert torch.isfinite(sae.norm_mean_D).all() and np.isfinite(float(sae.norm_scale))


@pytest.mark.parametrize(
    "content, needle",
    [
        (np.arange(6000 * 32).reshape(6000, 32), "dtype int64"),
        (np.ones((6000, 32), dtype=bool), "dtype bool"),
        (np.full((600, 32), "x"), "dtype str"),
        (np.ones((6000, 32), dtype=np.complex64), "dtype complex64"),
        (np.zeros((0, 32), dtype=np.float32), "the array is empty"),
        ("0.5 0.25\n", "not a numeric .npy array"),
    ],
    ids=["int64", "bool", "str", "complex64", "empty", "text"],
)
def test_bad_arrays_are_refused_naming_the_file(tmp_path, capsys, content, needle):
    path = tmp_path / "x.npy"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    line = error_line(*train_cli(capsys, path, tmp_path / "run"), str(path), needle)
    assert "pickle" not in line and "batch_size" not in line and "warning" not in line.lower()


def write_shards(folder, acts):
    """12 uncompressed shards of 50 samples of 10 vectors."""
    info = {"source": "synthetic"}
    w = ActivationWriter(folder, {"acts": 32}, shard_size=50, info=info, compress=False)
    for i in range(0, len(acts), 10):
        w.add(i, {"acts": acts[i : i + 10]})
    w.finish()
    return sorted(folder.glob("shard-*.tar"))


ONE_PASS = ["--set", "train.steps=24"]  # 500 held out + 24 x 250 > 6000: every shard is read


def put_nan_into(shard, sample_index, row, col):
    """Rewrite one sample's array of an (uncompressed) shard with a NaN: the tar stays valid."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for k, (m, data) in enumerate(members):
            if m.name.endswith(".npy") and k // 2 == sample_index:
                x = np.load(io.BytesIO(data), allow_pickle=False).copy()
                x[row, col] = np.nan
                buf = io.BytesIO()
                np.save(buf, x, allow_pickle=False)
                data = buf.getvalue()
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))


@pytest.mark.slow
def test_nan_in_a_shard_names_the_shard_or_is_dropped(acts, tmp_path, capsys):
    shards = write_shards(tmp_path / "shards", acts)
    put_nan_into(shards[3], sample_index=4, row=6, col=9)
    put_nan_into(shards[3], sample_index=7, row=0, col=1)
    code, out, err = train_cli(capsys, tmp_path / "shards", tmp_path / "r1", *ONE_PASS)
    error_line(code, out, err, shards[3].name, "row 6, column 9")
    # the source drops and counts them, over one pass exactly
    src = open_source(tmp_path / "shards", batch_size=250, eval_samples=0, skip_nonfinite=True)
    n = sum(b.shape[0] for b in src.all_batches(250))
    assert src.skipped.nonfinite_rows == 2 and n == 5998 // 250 * 250
    code, out, err = train_cli(
        capsys, tmp_path / "shards", tmp_path / "r2", *ONE_PASS, "--skip-nonfinite"
    )
    assert code == 0, err
    metrics = strict(out)
    assert metrics["nonfinite_rows_dropped"] >= 1 and np.isfinite(metrics["fvu"])


def test_skip_corrupt_shards_trains_on_the_rest_and_counts_them(acts, tmp_path, capsys):
    shards = write_shards(tmp_path / "shards", acts)
    victim = shards[5]
    victim.write_bytes(victim.read_bytes()[:3000])  # truncated
    error_line(*train_cli(capsys, tmp_path / "shards", tmp_path / "r1", *ONE_PASS), victim.name)
    code, out, err = train_cli(
        capsys, tmp_path / "shards", tmp_path / "r2", *ONE_PASS, "--skip-corrupt-shards"
    )
    assert code == 0, err
    metrics = strict(out)
    assert metrics["corrupt_shards_skipped"] == 1 and "1 corrupt shards skipped" in err
    assert (
        sum(
            f"skipping corrupt shard: corrupt or truncated shard {victim}" in ln
            for ln in err.splitlines()
        )
        == 1
    )  # named once, however often it is read
    assert strict((tmp_path / "r2" / "metrics.json").read_text())["corrupt_shards_skipped"] == 1


def test_nan_in_an_iterables_held_out_rows_is_named_not_the_loss(acts, tmp_path):
    from vsae.config import SAEConfig, TrainConfig
    from vsae.data import DataError
    from vsae.training import train

    batches = [torch.from_numpy(acts[i : i + 500].copy()) for i in range(0, 6000, 500)]
    batches[0][123, 4] = float("nan")  # a held-out row: it would reach the statistics
    cfg = TrainConfig(batch_size=250, steps=5, eval_samples=500, progress=False)
    sae_cfg = SAEConfig(arch="topk", d_in=32, n_latents=64, k=4)
    with pytest.raises(DataError, match=r"batch 0: 1 of 500 rows .*row 123, column 4"):
        train(sae_cfg, batches, cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    _, metrics = train(sae_cfg, open_source(batches, cfg_for(cfg), skip_nonfinite=True), cfg)
    assert np.isfinite(metrics["fvu"])


def cfg_for(cfg):
    from vsae.data.sources import SourceConfig

    return SourceConfig(batch_size=cfg.batch_size, seed=cfg.seed, eval_samples=cfg.eval_samples)
