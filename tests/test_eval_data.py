"""Issue 13 §2 and §4: vsae eval reads shard folders, refuses bad data, prints strict JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vsae.cli import main
from vsae.config import SAEConfig
from vsae.data.shards import ActivationWriter
from vsae.data.synthetic import SyntheticConfig, generate
from vsae.sae import build


def strict(text: str) -> dict:
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An SAE (TopK, data-initialised) and 3000 rows of its data as .npy and as shards."""
    root = tmp_path_factory.mktemp("eval")
    acts = generate(SyntheticConfig(d=32, n_features=64, n_samples=3000, active=4)).acts
    half = acts.numpy().astype(np.float16)  # what shards store
    torch.manual_seed(0)
    sae = build(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4))
    sae.init_from_data(torch.from_numpy(half[:1000]).float())
    sae.save(root / "sae")
    np.save(root / "acts.npy", half)
    hps = {"a": 32, "b.x": 32}
    w = ActivationWriter(root / "shards", hps, shard_size=700, info={"source": "t"})
    for i in range(0, 3000, 10):  # samples of 10 tokens
        w.add(i, {"a": half[i : i + 10], "b.x": -half[i : i + 10]})
    w.finish()
    return root, half


def cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, out, err, *needles):
    assert code == 2 and out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsae eval: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_shard_folder_evaluates_like_the_same_rows_as_npy(setup, capsys):
    root, _ = setup
    code, out, err = cli(capsys, "eval", str(root / "sae"), "--data", str(root / "acts.npy"))
    assert code == 0, err
    from_npy = strict(out)
    code, out, err = cli(
        capsys, "eval", str(root / "sae"), "--data", str(root / "shards"), "--hookpoint", "a"
    )
    assert code == 0, err
    from_shards = strict(out)
    assert from_shards["n_samples"] == from_npy["n_samples"] == 3000
    for key in ("fvu", "cos", "l0", "sparsity", "dead_frac", "dense_frac"):
        assert from_shards[key] == pytest.approx(from_npy[key], rel=1e-5, abs=1e-7), key
    assert 0 < from_npy["fvu"] < 1.5 and from_npy["l0"] == pytest.approx(4.0)


def test_a_folder_with_several_hookpoints_needs_hookpoint(setup, capsys):
    root, _ = setup
    res = cli(capsys, "eval", str(root / "sae"), "--data", str(root / "shards"))
    one_line_error(*res, str(root / "shards"), "several hookpoints", "b.x")
    res = cli(capsys, "eval", str(root / "sae"), "--data", str(root / "shards"), "--hookpoint", "c")
    one_line_error(*res, "'c'", "b.x")


def test_nan_rows_are_an_error_or_dropped_and_counted(setup, capsys, tmp_path):
    root, half = setup
    bad = half.copy()
    bad[[2000, 17, 2999], [5, 30, 0]] = [np.nan, np.inf, np.nan]
    np.save(tmp_path / "bad.npy", bad)
    res = cli(capsys, "eval", str(root / "sae"), "--data", str(tmp_path / "bad.npy"))
    one_line_error(*res, "bad.npy", "3 of 3000 rows", "row 17, column 30", "--skip-nonfinite")
    code, out, err = cli(
        capsys, "eval", str(root / "sae"), "--data", str(tmp_path / "bad.npy"), "--skip-nonfinite"
    )
    assert code == 0, err
    got = strict(out)
    assert got["nonfinite_rows_dropped"] == 3 and got["n_samples"] == 2997
    np.save(tmp_path / "clean.npy", np.delete(half, [17, 2000, 2999], axis=0))
    code, out, _ = cli(capsys, "eval", str(root / "sae"), "--data", str(tmp_path / "clean.npy"))
    want = strict(out)
    for key in ("fvu", "cos", "l0", "dead_frac"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_non_finite_metrics_exit_non_zero(setup, capsys, tmp_path):
    root, _ = setup
    sae = build(SAEConfig(arch="topk", d_in=32, n_latents=64, k=4))
    with torch.no_grad():
        sae.b_dec_D.fill_(float("nan"))  # a broken model: every reconstruction is NaN
    sae.save(tmp_path / "broken")
    res = cli(capsys, "eval", str(tmp_path / "broken"), "--data", str(root / "acts.npy"))
    one_line_error(*res, "non-finite metrics", "fvu=nan")


@pytest.mark.parametrize(
    "content, needles",
    [
        (np.arange(64).reshape(2, 32), ["dtype int64", "float32"]),
        (np.zeros((2, 32), dtype=bool), ["dtype bool"]),
        (np.ones((2, 32), dtype=np.complex64), ["dtype complex64"]),
        (np.zeros((0, 32), dtype=np.float32), ["empty"]),
        ("1 2 3\n", ["not a numeric .npy array"]),
    ],
    ids=["int64", "bool", "complex64", "empty", "text"],
)
def test_bad_files_are_one_line_naming_the_file(setup, capsys, tmp_path, content, needles):
    root, _ = setup
    path = tmp_path / "x.npy"
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    line = one_line_error(*cli(capsys, "eval", str(root / "sae"), "--data", str(path)), str(path))
    for needle in needles:
        assert needle in line
    assert "pickle" not in line and "batch_size" not in line
