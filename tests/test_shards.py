"""Activation shards: round trip, statistics, resume state, reader semantics, corrupt shards."""

import io
import json
import os

import numpy as np
import pytest
import torch

from vsae.data.shards import (
    ActivationWriter,
    RunningStats,
    ShardError,
    field_name,
    load_all,
    open_batches,
    read_meta,
)


def write_dataset(out, n=40, t=3, d=8, shard_size=7, seed=0, compress=False):
    rng = np.random.default_rng(seed)
    w = ActivationWriter(
        out,
        {"blocks.2": d, "image": 4},
        shard_size=shard_size,
        info={"source": "test:synthetic", "pretrained": None},
        compress=compress,
    )
    xs = []
    for i in range(n):
        x = rng.normal(size=(t, d)) * 3.0 + np.arange(d)
        xs.append(x)
        w.add(i, {"blocks.2": x, "image": rng.normal(size=4)}, {"source_key": f"img{i}"})
    meta = w.finish()
    return meta, np.concatenate(xs)


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_round_trip_and_meta(tmp_path, compress):
    meta, x = write_dataset(tmp_path, compress=compress)
    got = load_all(tmp_path, "blocks.2")
    assert got.dtype == np.float16 and got.shape == x.shape
    np.testing.assert_allclose(got.astype(np.float64), x, rtol=1e-3, atol=1e-2)
    m = read_meta(tmp_path)
    assert m == json.loads(json.dumps(meta))
    assert m["dtype"] == "float16" and m["complete"] and m["n_samples"] == 40
    hp = m["hookpoints"]["blocks.2"]
    assert hp["d"] == 8 and hp["n_vectors"] == 120 and hp["field"] == "blocks_2.npy"
    np.testing.assert_allclose(hp["mean"], x.mean(0), atol=5e-3)
    centred = x - x.mean(0)
    expected_scale = np.sqrt(8 / (centred**2).sum(1).mean())
    assert hp["scale"] == pytest.approx(expected_scale, rel=1e-3)
    assert sum(s["n_samples"] for s in m["shards"]) == 40
    ext = ".tar.gz" if compress else ".tar"
    assert [s["name"] for s in m["shards"]] == [f"shard-{i:06d}{ext}" for i in range(6)]
    assert m["compression"] == ("gzip" if compress else None)
    assert not list(tmp_path.glob("*.partial"))


def test_running_stats_merge_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(5, 2, size=(50, 3)), rng.normal(-1, 1, size=(30, 3))
    s1, s2 = RunningStats(3), RunningStats(3)
    s1.update(a)
    s2.update(b)
    s1.merge(s2)
    allx = np.concatenate([a, b])
    np.testing.assert_allclose(s1.mean(), allx.mean(0), atol=1e-10)
    assert s1.mean_sq_dist() == pytest.approx(((allx - allx.mean(0)) ** 2).sum(1).mean())
    s3 = RunningStats.from_json(json.loads(json.dumps(s1.to_json())))
    assert s3.scale() == pytest.approx(s1.scale())


def test_fp16_overflow_is_clamped_and_counted(tmp_path):
    w = ActivationWriter(tmp_path, {"x": 2}, shard_size=4)
    w.add(0, {"x": np.array([[1e6, -2.0]])})
    meta = w.finish()
    assert meta["hookpoints"]["x"]["n_clamped"] == 1
    assert load_all(tmp_path)[0, 0] == np.float16(65504)


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_plain_webdataset_and_numpy_read(tmp_path, compress):
    """The documented recipe: shards readable without vsae."""
    import webdataset as wds

    _, x = write_dataset(tmp_path, compress=compress)
    meta = json.load(open(tmp_path / "meta.json"))
    fld = meta["hookpoints"]["blocks.2"]["field"]
    urls = [str(tmp_path / s["name"]) for s in meta["shards"]]
    rows = []
    for sample in wds.WebDataset(urls, shardshuffle=False):
        rows.append(np.load(io.BytesIO(sample[fld]), allow_pickle=False))
        assert json.loads(sample["json"])["source_key"].startswith("img")
    np.testing.assert_allclose(np.concatenate(rows), x, rtol=1e-3, atol=1e-2)


def test_reader_epoch_covers_every_vector_once(tmp_path):
    _, x = write_dataset(tmp_path)
    loader = open_batches(
        tmp_path, 16, hookpoint="blocks.2", shuffle=True, seed=3, shuffle_buffer=20, drop_last=False
    )
    e0 = torch.cat(list(loader))
    e1 = torch.cat(list(loader))
    assert e0.dtype == torch.float32 and e0.shape == (120, 8)
    key = lambda t: np.sort(t.numpy().round(2).view([("", t.numpy().dtype)] * 8), axis=0)  # noqa
    ref = torch.from_numpy(load_all(tmp_path, "blocks.2").astype(np.float32))
    assert np.array_equal(key(e0), key(ref)) and np.array_equal(key(e1), key(ref))
    assert not torch.equal(e0, e1), "epochs should be shuffled differently"
    assert not torch.equal(e0, ref), "shuffle=True should change the storage order"
    ordered = torch.cat(
        list(open_batches(tmp_path, 16, hookpoint="blocks.2", shuffle=False, drop_last=False))
    )
    assert torch.equal(ordered, ref)


def test_reader_normalize(tmp_path):
    write_dataset(tmp_path, n=60)
    xs = torch.cat(list(open_batches(tmp_path, 30, hookpoint="blocks.2", normalize=True)))
    assert xs.mean(0).abs().max() < 0.05
    assert xs.pow(2).sum(1).mean() == pytest.approx(8.0, rel=0.02)


def test_fixed_length_epochs_keep_ranks_in_step(tmp_path):
    write_dataset(tmp_path, n=40, shard_size=7)  # 6 shards, uneven per rank
    counts, seen = [], []
    for rank in range(2):
        loader = open_batches(
            tmp_path,
            8,
            hookpoint="blocks.2",
            rank=rank,
            world_size=2,
            epoch_vectors=300,
            shuffle_buffer=16,
        )
        batches = list(loader)
        counts.append(len(batches))
        assert len(loader) == len(batches)
        assert all(b.shape == (8, 8) for b in batches)
        seen.append(torch.cat(batches))
    assert counts == [300 // 16, 300 // 16]
    # ranks read different shards within a cycle
    assert not torch.equal(seen[0][:40], seen[1][:40])


def test_workers_split_the_shards(tmp_path):
    _, x = write_dataset(tmp_path, n=28, shard_size=7)  # 4 shards, 2 workers
    got = torch.cat(
        list(
            open_batches(
                tmp_path, 4, hookpoint="blocks.2", num_workers=2, shuffle=False, drop_last=False
            )
        )
    )
    assert got.shape == (84, 8)
    ref = load_all(tmp_path, "blocks.2").astype(np.float32)
    assert sorted(got.sum(1).tolist()) == pytest.approx(sorted(ref.sum(1).tolist()))


def test_distributed_default_is_one_pass_equal_counts(tmp_path):
    write_dataset(tmp_path, n=10, shard_size=7)  # 2 shards < 2 ranks x 2 workers: sample split
    lens = [
        len(list(open_batches(tmp_path, 5, hookpoint="image", rank=r, world_size=2, num_workers=2)))
        for r in range(2)
    ]
    assert lens == [1, 1]  # 10 vectors // (5 * 2)


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_truncated_shard_is_named(tmp_path, compress):
    write_dataset(tmp_path, compress=compress)
    shard = tmp_path / ("shard-000002.tar" + (".gz" if compress else ""))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(ShardError, match="shard-000002.tar"):
        list(open_batches(tmp_path, 4, hookpoint="blocks.2", shuffle=False))


def test_shard_cut_at_member_boundary_is_named(tmp_path):
    write_dataset(tmp_path)
    shard = tmp_path / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[: 512 * 4])  # whole members only, then EOF
    with pytest.raises(ShardError, match="shard-000001.tar"):
        load_all(tmp_path, "blocks.2")


def test_corrupt_array_bytes_are_named(tmp_path):
    write_dataset(tmp_path)
    shard = tmp_path / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    pos = data.index(b"\x93NUMPY")
    data[pos : pos + 6] = b"garbag"
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"cannot parse array .*shard-000000.tar"):
        load_all(tmp_path, "blocks.2")


def test_missing_shard_is_named(tmp_path):
    write_dataset(tmp_path)
    os.remove(tmp_path / "shard-000003.tar")
    with pytest.raises(ShardError, match="shard-000003.tar"):
        load_all(tmp_path, "image")


def test_resume_discards_partial_and_uncommitted_shards(tmp_path):
    w = ActivationWriter(tmp_path, {"x": 2}, shard_size=2, info={"source": "s"}, compress=False)
    for i in range(5):
        w.add(i, {"x": np.full((1, 2), i)})
    # killed here: shards 0, 1 committed, shard 2 half written
    assert (tmp_path / "shard-000002.tar.partial").exists()
    assert w.input_next == 4
    (tmp_path / "shard-000007.tar").write_bytes(b"renamed but never committed")
    w2 = ActivationWriter(tmp_path, {"x": 2}, shard_size=2, info={"source": "s"})
    assert w2.input_next == 4
    assert not (tmp_path / "shard-000007.tar").exists()
    assert not list(tmp_path.glob("*.partial"))
    for i in range(w2.input_next, 6):
        w2.add(i, {"x": np.full((1, 2), i)})
    meta = w2.finish()
    assert load_all(tmp_path)[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert meta["hookpoints"]["x"]["mean"] == pytest.approx([2.5, 2.5])
    with pytest.raises(ValueError, match="hookpoints"):
        ActivationWriter(tmp_path, {"y": 2}, info={"source": "s"})
    with pytest.raises(ValueError, match="source"):
        ActivationWriter(tmp_path, {"x": 2}, info={"source": "other"})
    with pytest.raises(FileExistsError):
        ActivationWriter(tmp_path, {"x": 2}, info={"source": "s"}, resume=False)


def test_bad_inputs_name_the_value(tmp_path):
    assert field_name("down_blocks.2.attentions.1") == "down_blocks_2_attentions_1"
    with pytest.raises(ValueError, match="collide"):
        ActivationWriter(tmp_path / "a", {"a.b": 2, "a_b": 2})
    w = ActivationWriter(tmp_path / "b", {"x": 3})
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        w.add(0, {"x": np.zeros((2, 4))})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "meta.json").write_text('{"format_version": 1}')
    with pytest.raises(ShardError, match="missing field 'hookpoints'"):
        read_meta(tmp_path / "c")
    write_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="several hookpoints"):
        open_batches(tmp_path / "d", 4)


def test_auto_compression_and_skips(tmp_path):
    small = ActivationWriter(tmp_path / "small", {"x": 4})
    small.skip(0, "bad.png", "cannot read")  # a skip before the first shard opens
    small.add(1, {"x": np.ones((1, 4))})
    meta = small.finish()
    assert meta["compression"] == "gzip" and meta["shards"][0]["name"].endswith(".tar.gz")
    assert meta["skipped"][0]["key"] == "bad.png" and meta["n_inputs"] == 2
    big = ActivationWriter(tmp_path / "big", {"x": 1024})
    big.add(0, {"x": np.ones((16, 1024))})
    assert big.finish()["compression"] is None


def test_set_epoch_gives_a_fixed_order_per_seed_and_epoch(tmp_path):
    write_dataset(tmp_path, n=40, shard_size=7)  # 6 shards, 120 vectors

    def epoch(e, seed=3, **kw):
        loader = open_batches(tmp_path, 8, hookpoint="blocks.2", seed=seed, shuffle_buffer=16, **kw)
        loader.set_epoch(e)
        return torch.cat(list(loader))

    ref = load_all(tmp_path, "blocks.2").astype(np.float32)
    key = lambda t: sorted(map(tuple, np.asarray(t).round(2).tolist()))  # noqa: E731
    e2 = epoch(2)
    assert key(e2) == key(ref)  # one pass: every vector once
    torch.testing.assert_close(epoch(2), e2, rtol=0, atol=0)  # a pure function of (seed, epoch)
    assert not torch.equal(epoch(3), e2) and not torch.equal(epoch(2, seed=4), e2)
    # set_epoch overrides the loader's own pass counter: history does not matter
    used = open_batches(tmp_path, 8, hookpoint="blocks.2", seed=3, shuffle_buffer=16)
    for _ in range(3):
        list(used)
    used.set_epoch(2)
    assert torch.equal(torch.cat(list(used)), e2)
    # two ranks, fixed-length epochs: equal batch counts in every epoch, new orders each epoch
    for rank in range(2):
        runs = [epoch(e, rank=rank, world_size=2, epoch_vectors=200) for e in range(3)]
        assert [len(r) for r in runs] == [200 // 16 * 8] * 3
        assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[1], runs[2])
