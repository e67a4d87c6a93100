"""Issue 13 §5: rank-split extraction (torchrun, --part i/N), resume per part, exact merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli
from test_reliability_extract import Interrupted, interrupt_after

from vsae.data.checks import DataError
from vsae.data.shard_format import ShardError, decode_array, read_meta
from vsae.data.shard_parts import merge_parts, parse_part
from vsae.data.shards import ActivationWriter, iter_shard_samples, load_all, open_batches
from vsae.encoders import from_spec
from vsae.extract import extract

DATA = "world:48:5"
OPTS = dict(batch_size=1, shard_size=6, progress=False)  # one input per forward: bit-exact


def by_input(folder) -> dict[int, np.ndarray]:
    """Every stored vector of a folder, keyed by its input index."""
    meta = read_meta(folder)
    urls = [str(folder / s["name"]) for s in meta["shards"]]
    out = {}
    for sample in iter_shard_samples(urls):
        index = json.loads(sample["json"])["input_index"]
        assert index not in out, f"input {index} stored twice"
        out[index] = decode_array(sample["image.npy"], sample["__key__"])
    return out


def assert_same_dataset(merged, single) -> None:
    a, b = by_input(merged), by_input(single)
    assert sorted(a) == sorted(b)
    for i in a:
        np.testing.assert_array_equal(a[i], b[i])
    ma, mb = read_meta(merged), read_meta(single)
    for key in ("n_samples", "n_inputs", "n_skipped", "complete", "dtype"):
        assert ma[key] == mb[key], key
    ha, hb = ma["hookpoints"]["image"], mb["hookpoints"]["image"]
    assert ha["n_vectors"] == hb["n_vectors"] == len(a)
    np.testing.assert_allclose(ha["mean"], hb["mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ha["mean_sq_dist"], hb["mean_sq_dist"], rtol=1e-6)
    np.testing.assert_allclose(ha["scale"], hb["scale"], rtol=1e-6)
    # the statistics are those of the stored vectors, exactly
    x = np.stack([a[i] for i in sorted(a)]).reshape(-1, ha["d"]).astype(np.float64)
    np.testing.assert_allclose(ha["mean"], x.mean(0), rtol=0, atol=1e-9)
    msd = ((x - x.mean(0)) ** 2).sum(1).mean()
    np.testing.assert_allclose(ha["mean_sq_dist"], msd, rtol=1e-9)


@pytest.fixture(scope="module")
def clip():
    return from_spec("world:clip", hookpoints=["image"])


@pytest.fixture(scope="module")
def single(tmp_path_factory, clip):
    out = tmp_path_factory.mktemp("single") / "one"
    extract(clip, DATA, out, **OPTS)
    return out


def test_parse_part():
    assert parse_part("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b"):
        with pytest.raises(ValueError, match="expected i/N"):
            parse_part(bad)


def test_parts_resume_on_their_own_and_merge_exactly(tmp_path, clip, single):
    out = tmp_path / "split"
    extract(clip, DATA, out, part=(0, 3), **OPTS)
    with pytest.raises(ShardError, match="missing part-1-of-3, part-2-of-3"):
        merge_parts(out)
    extract(clip, DATA, out, part=(2, 3), **OPTS)
    with pytest.raises(Interrupted):  # killed after 2 shards of 6 of its 16 inputs
        extract(interrupt_after(clip, 13), DATA, out, part=(1, 3), **OPTS)
    part1 = out / "part-1-of-3"
    state = json.loads((part1 / "writer_state.json").read_text())
    assert len(state["shards"]) == 2 and not state["complete"]
    clip.__class__ = type(clip).__mro__[1]  # the source without the interruption
    with pytest.raises(ShardError, match="part-1-of-3: this part is not complete"):
        merge_parts(out)
    with pytest.raises(FileExistsError, match="vsae shards merge"):
        extract(clip, DATA, out, **OPTS)  # one process over parts is refused
    kept = [(p.name, p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(part1.glob("*.tar*"))]
    meta1 = extract(clip, DATA, out, part=(1, 3), **OPTS)  # resumes after its 2 shards
    assert meta1["n_samples"] == 16 and len(meta1["shards"]) == 3
    now = [(p.name, p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(part1.glob("*.tar*"))]
    assert len(kept) == 2 and now[:2] == kept  # the committed shards were not written again
    part_inputs = [sorted(by_input(out / f"part-{i}-of-3")) for i in range(3)]
    assert part_inputs == [list(range(i, 48, 3)) for i in range(3)]  # disjoint, in order
    meta = merge_parts(out)
    assert not list(out.glob("part-*")) and meta["extra"]["parts"] == 3
    assert_same_dataset(out, single)
    assert merge_parts(out) == meta  # again: nothing changes
    # the merged folder answers like a complete single-process one, for one process or a part
    assert extract(clip, DATA, out, **OPTS)["n_samples"] == 48
    assert extract(clip, DATA, out, part=(0, 3), **OPTS)["n_samples"] == 48
    with pytest.raises(ValueError, match="refusing to mix datasets"):
        extract(clip, "world:48:6", out, part=(0, 3), **OPTS)
    batches = list(open_batches(out, batch_size=12, shuffle=False))
    assert len(batches) == 4 and batches[0].shape == (12, 128)
    got = np.sort(torch.cat(batches).numpy(), axis=0)
    want = np.sort(load_all(single).astype(np.float32), axis=0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_cli_parts_then_shards_merge(tmp_path, single):
    out = tmp_path / "cli"
    for i in range(2):
        args = ["extract", "--source", "world:clip", "--data", DATA, "--out", str(out)]
        args += ["--batch-size", "1", "--shard-size", "6", "--quiet", "--part", f"{i}/2"]
        proc = run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["part"] == f"{i}/2" and summary["n_samples"] == 24
        assert "vsae shards merge" in summary["next"]
    merged = run_cli("shards", "merge", str(out))
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["n_samples"] == 48
    assert_same_dataset(out, single)
    bad = run_cli("shards", "merge", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "no such folder" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_match_one_process(tmp_path, single):
    out = tmp_path / "ranks"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["extract", "--source", "world:clip", "--data", DATA, "--out", str(out)]
    args += ["--batch-size", "1", "--shard-size", "6", "--quiet"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--standalone", "-m", "vsae", *args]  # --standalone: a free port
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # rank 0 alone prints, after the merge
    assert summary["n_samples"] == 48 and not list(out.glob("part-*"))
    assert read_meta(out)["extra"]["parts"] == 2
    assert_same_dataset(out, single)


def test_non_finite_activations_are_refused_at_write_time(tmp_path):
    w = ActivationWriter(tmp_path / "s", {"acts": 4}, shard_size=2, info={"source": "t"})
    for i in range(3):
        w.add(i, {"acts": np.ones((1, 4), np.float32)}, {"source_key": f"img{i}.png"})
    for bad in (np.nan, np.inf):
        x = np.ones((3, 4), np.float32)
        x[2, 1] = bad
        with pytest.raises(DataError, match=r"img3.png .*'acts'.*\(1 of 3 rows.*row 2, column 1"):
            w.add(3, {"acts": x}, {"source_key": "img3.png"})
    w.abort()
    state = json.loads((tmp_path / "s" / "writer_state.json").read_text())
    assert state["n_samples"] == 2 and state["n_clamped"]["acts"] == 0  # shard 0 kept
