"""vsae.data.open_source: one way in for arrays, .npy files, shard folders and iterables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsae.data import (
    ArraySource,
    DataError,
    IterableSource,
    SourceConfig,
    open_source,
    source_width,
)
from vsae.data.shards import ActivationWriter, ShardConfig, open_batches


class CountingBatches:
    """A re-iterable of [10, 3] batches that counts the batches it has yielded."""

    def __init__(self, n: int = 20) -> None:
        self.n, self.yielded = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.yielded += 1
            yield torch.full((10, 3), float(i))


def test_array_and_npy_give_the_same_batches(tmp_path):
    x_ND = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x_ND)
    a = open_source(x_ND, batch_size=32, seed=3, eval_samples=40)
    f = open_source(tmp_path / "x.npy", SourceConfig(batch_size=32, seed=3, eval_samples=40))
    assert isinstance(a, ArraySource) and isinstance(f, ArraySource) and a.d == f.d == 6
    assert isinstance(f.arr, np.memmap)
    assert torch.equal(a.batch(7), f.batch(7)) and a.batch(7).shape == (32, 6)
    assert a.steps_per_epoch == (500 - 40) // 32
    held = torch.cat(list(a.eval_batches(16)))
    assert held.shape == (40, 6)
    # all_batches: every row once, in storage order
    assert torch.equal(torch.cat(list(f.all_batches(64))), torch.from_numpy(x_ND))
    assert open_source(a) is a  # an open source passes through


def test_iterable_reads_nothing_until_used():
    data = CountingBatches()
    src = open_source(data, batch_size=10, eval_samples=25)
    assert isinstance(src, IterableSource) and data.yielded == 0
    assert src.d == 3 and data.yielded == 3  # the width needs the held-out prefix: 3 batches
    assert src.held.shape == (30, 3) and src.n_eval == 25
    assert float(src.batch(0)[0, 0]) == 3.0  # training starts after the held-out prefix
    with pytest.raises(ValueError, match="step 5 requested, the next is 1"):
        src.batch(5)


def test_hold_raises_the_held_out_prefix():
    src = open_source(CountingBatches(), batch_size=10, eval_samples=5, hold=40)
    assert src.held.shape == (40, 3) and src.n_eval == 5


def test_shard_folder_opens_lazily_with_its_width(tmp_path):
    w = ActivationWriter(tmp_path / "s", {"a": 4, "b": 5}, shard_size=10)
    for i in range(60):
        w.add(i, {"a": np.full((1, 4), i, np.float32), "b": np.zeros((1, 5), np.float32)})
    w.finish()
    with pytest.raises(DataError, match="several hookpoints"):
        open_source(tmp_path / "s", batch_size=8)
    src = open_source(str(tmp_path / "s"), batch_size=8, hookpoint="b", eval_samples=16, seed=1)
    assert isinstance(src, IterableSource) and src.d == 5 and src._held is None
    src = open_source(tmp_path / "s", batch_size=8, hookpoint="a", eval_samples=16, seed=1)
    ids = torch.cat([src.held, src.batch(0), src.batch(1)])[:, 0].int().tolist()
    assert len(set(ids)) == 32  # held-out rows and the first batches are distinct vectors


@pytest.mark.parametrize(
    "x,match",
    [
        ("missing.npy", "missing.npy: no such file"),
        ("data.csv", "data.csv: expected a .npy file or a shard folder"),
        (np.zeros((4, 2, 2)), "data: array has shape \\(4, 2, 2\\); expected \\[N, D\\]"),
        (42, "cannot read batches from int"),
    ],
)
def test_bad_data_names_what_was_wrong(x, match):
    with pytest.raises(DataError, match=match):
        open_source(x, batch_size=1)


def test_unknown_options_name_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown source option\(s\) \['batch'\]; valid: "):
        open_source(np.zeros((10, 2)), batch=4)
    with pytest.raises(ValueError, match=r"unknown shard reader option\(s\) \['shufle'\]"):
        open_batches(tmp_path, 4, shufle=False)
    assert ShardConfig.of(4, seed=2) == ShardConfig(batch_size=4, seed=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SourceConfig(batch_size=0)


def test_arrays_go_through_the_data_checks(tmp_path):
    x_ND = np.ones((200, 4), np.float32)
    x_ND[[5, 17], 2] = np.nan
    np.save(tmp_path / "bad.npy", x_ND)
    with pytest.raises(DataError, match=r"bad.npy: 2 of 200 rows hold NaN or inf .*row 5, col"):
        open_source(tmp_path / "bad.npy", batch_size=8)
    src = open_source(tmp_path / "bad.npy", batch_size=8, skip_nonfinite=True)
    assert src.arr.shape == (198, 4) and bool(np.isfinite(src.arr).all())
    with pytest.raises(DataError, match="dtype int64 is not activation data"):
        open_source(np.zeros((20, 3), np.int64), batch_size=2)
    (tmp_path / "text.npy").write_text("1,2,3\n")
    with pytest.raises(DataError, match="text.npy: not a numeric .npy array"):
        open_source(tmp_path / "text.npy")
    assert source_width(tmp_path / "bad.npy") == 4  # the header only: no scan, no refusal


def test_skip_nonfinite_drops_a_streams_bad_rows():
    batches = [torch.ones(10, 3) for _ in range(6)]
    batches[1][4, 0] = float("inf")
    src = open_source(batches, batch_size=10, eval_samples=10, skip_nonfinite=True)
    rows = torch.cat([src.held] + [src.batch(s) for s in range(4)])
    assert rows.shape == (50, 3) and bool(torch.isfinite(rows).all())  # 59 finite rows, cut by 10
