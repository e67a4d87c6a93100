"""Issue 13 §2: vsae.data.checks refuses bad dtypes, empty or non-numeric files, NaN rows."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from vsae.data.checks import (
    DataError,
    check_array,
    check_batch,
    check_dtype,
    check_metrics,
    find_nonfinite,
    open_npy,
)


def save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr, allow_pickle=False)
    return path


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_npy_files_open_as_memory_maps(tmp_path, dtype):
    arr = np.arange(12, dtype=dtype).reshape(4, 3)
    got = open_npy(save(tmp_path, "a.npy", arr))
    assert isinstance(got, np.memmap) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, arr)
    assert check_array(got, "a.npy") == check_array(arr, "a.npy")
    assert check_array(got, "a.npy").keep_rows is None


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.int64).reshape(4, 3),
        np.ones((4, 3), dtype=bool),
        np.full((4, 3), "ab"),
        np.ones((4, 3), dtype=np.complex64),
    ],
    ids=["int64", "bool", "str", "complex64"],
)
def test_other_dtypes_are_refused_naming_file_and_dtype(tmp_path, arr):
    path = save(tmp_path, "bad.npy", arr)
    with pytest.raises(DataError) as err:
        open_npy(path)
    assert str(path) in str(err.value) and f"dtype {arr.dtype.name}" in str(err.value)
    assert "float32" in str(err.value)  # says what is accepted


def test_torch_dtypes_bfloat16_passes_int_refused():
    check_dtype(torch.bfloat16, "t")
    check_dtype(torch.float16, "t")
    with pytest.raises(DataError, match="t: dtype int32"):
        check_dtype(torch.int32, "t")
    x = torch.ones(3, 4, dtype=torch.bfloat16)
    assert check_batch(x, "batch 0") is x
    with pytest.raises(DataError, match="batch 3: dtype int64"):
        check_batch(torch.ones(3, 4, dtype=torch.long), "batch 3")


def test_empty_array_says_the_file_is_empty(tmp_path):
    path = save(tmp_path, "empty.npy", np.zeros((0, 8), dtype=np.float32))
    with pytest.raises(DataError) as err:
        open_npy(path)
    assert str(path) in str(err.value) and "empty" in str(err.value)
    assert "batch_size" not in str(err.value)


def test_a_text_file_named_npy_is_not_numeric_and_pickle_is_never_suggested(tmp_path):
    text = tmp_path / "notes.npy"
    text.write_text("1.0 2.0 3.0\n4.0 5.0 6.0\n")
    pickled = tmp_path / "obj.npy"
    pickled.write_bytes(pickle.dumps([1.0, 2.0]))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([[1.0, "a"]], dtype=object), allow_pickle=True)
    for path in (text, pickled, objects):
        with pytest.raises(DataError) as err:
            open_npy(path)
        message = str(err.value)
        assert f"{path}: not a numeric .npy array" in message
        assert "pickle" not in message.lower()


def test_missing_and_wrong_rank_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_npy(tmp_path / "nope.npy")
    with pytest.raises(DataError, match=r"shape \(5,\); expected \[N, D\]"):
        open_npy(save(tmp_path, "v.npy", np.ones(5, dtype=np.float32)))


def nan_rows(n=1000, d=16, bad=((700, 3), (12, 9), (950, 0), (12, 2))):
    arr = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    for i, (r, c) in enumerate(bad):
        arr[r, c] = (np.nan, np.inf, -np.inf, np.nan)[i % 4]
    return arr


def test_nonfinite_rows_named_first_row_column_and_count():
    arr = nan_rows()
    with pytest.raises(DataError) as err:
        check_array(arr, "acts.npy")
    message = str(err.value)
    # rows 12, 700, 950 are bad (row 12 twice); the first is row 12, its first bad column 2
    assert "acts.npy: 3 of 1000 rows" in message
    assert "row 12, column 2" in message and "--skip-nonfinite" in message


def test_the_scan_crosses_chunks_of_a_memory_map(tmp_path, monkeypatch):
    import vsae.data.checks as checks

    monkeypatch.setattr(checks, "_SCAN_ROWS", 64)  # many chunks over 1000 rows
    mm = open_npy(save(tmp_path, "a.npy", nan_rows()))
    found = find_nonfinite(mm)
    np.testing.assert_array_equal(found.bad_rows, [12, 700, 950])
    assert found.first_col == 2 and found.n_rows == 1000
    assert find_nonfinite(np.ones((300, 4), dtype=np.float16)) is None


def test_skip_nonfinite_keeps_every_other_row():
    arr = nan_rows()
    res = check_array(arr, "acts.npy", skip_nonfinite=True)
    assert res.n_dropped == 3 and len(res.keep_rows) == 997
    assert not set(res.keep_rows.tolist()) & {12, 700, 950}
    assert np.isfinite(arr[res.keep_rows]).all()
    with pytest.raises(DataError, match="every one of its 2 rows"):
        check_array(np.full((2, 3), np.nan, dtype=np.float32), "x", skip_nonfinite=True)


def test_check_batch_raises_or_drops():
    x = torch.randn(8, 4)
    x[5, 1] = float("nan")
    x[6, 3] = float("inf")
    with pytest.raises(DataError, match=r"shard-000003.tar: 2 of 8 rows .* row 5, column 1"):
        check_batch(x, "shard-000003.tar")
    kept = check_batch(x, "s", skip_nonfinite=True)
    assert kept.shape == (6, 4) and torch.isfinite(kept).all()
    torch.testing.assert_close(kept, torch.cat([x[:5], x[7:]]))


def test_float16_overflow_to_inf_is_caught():
    with np.errstate(over="ignore"):
        arr = np.array([[1.0, 70000.0]], dtype=np.float32).astype(np.float16)  # inf in half
    assert math.isinf(float(arr[0, 1]))
    with pytest.raises(DataError, match="1 of 4 rows .* row 3, column 1"):
        check_array(np.concatenate([np.ones((3, 2), np.float16), arr]), "h.npy")


def test_nonfinite_metrics_are_an_error():
    check_metrics({"fvu": 0.1, "cos": 0.9}, "eval")
    with pytest.raises(DataError, match=r"held-out rows: non-finite metrics \(fvu=nan\)"):
        check_metrics({"fvu": float("nan"), "cos": 0.9}, "held-out rows")
