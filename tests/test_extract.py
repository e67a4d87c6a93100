"""Extraction end to end: inputs with bad images, resume after a kill, the CLI command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from pipeline_helpers import image_folder, image_tar, tiny_unet

from vsae.commands.extract import main as extract_main
from vsae.data.images import ImageReadError, iter_inputs
from vsae.data.shards import load_all, read_meta
from vsae.encoders import from_spec
from vsae.extract import extract

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vit():
    return from_spec(
        "timm:vit_tiny_patch16_224",
        hookpoints=["blocks.1", "blocks.3"],
        tokens="all",
        image_size=32,
    )


def samples(out):
    meta = read_meta(out)
    urls = [str(Path(out) / s["name"]) for s in meta["shards"]]
    return [dict(s, meta=json.loads(s["json"])) for s in wds.WebDataset(urls, shardshuffle=False)]


def test_folder_with_corrupt_image_is_reported(tmp_path, vit):
    folder = image_folder(tmp_path / "img", 5, corrupt=("002b.png", "zz.jpg"))
    meta = extract(vit, folder, tmp_path / "out", batch_size=2, shard_size=2, progress=False)
    assert meta["n_samples"] == 5 and meta["n_skipped"] == 2
    assert [s["key"] for s in meta["skipped"]] == ["002b.png", "zz.jpg"]
    assert "cannot read image" in meta["skipped"][0]["error"]
    got = samples(tmp_path / "out")
    assert [s["meta"]["source_key"] for s in got] == [f"{i:03d}.png" for i in range(5)]
    assert got[0]["meta"]["caption"] == "caption 0"
    x = load_all(tmp_path / "out", "blocks.3")
    assert x.shape == (5 * 5, 192)  # CLS + 2x2 patches at 32 px
    assert meta["hookpoints"]["blocks.1"]["d"] == 192
    with pytest.raises(ImageReadError, match="002b.png"):
        extract(vit, folder, tmp_path / "strict", strict=True, progress=False)


def test_webdataset_input_with_bad_member_and_truncated_tar(tmp_path, vit):
    a = image_tar(tmp_path / "in-000.tar", 4, corrupt_keys=(1,))
    b = image_tar(tmp_path / "in-001.tar", 4)
    b.write_bytes(b.read_bytes()[:3000])  # truncated mid-member
    items = list(iter_inputs(str(tmp_path / "in-{000..001}.tar")))
    errors = [it for it in items if it.error]
    assert [it.key for it in errors] == ["in-000.tar/s0001", str(b)]
    assert "in-001.tar" in errors[1].error
    good = [it for it in items if not it.error]
    assert good[0].text == "img 0" and good[0].labels == {"label": 0}
    meta = extract(vit, str(tmp_path / "in-*.tar"), tmp_path / "out", progress=False)
    assert meta["n_samples"] == len(good) and meta["n_skipped"] == 2
    with pytest.raises(ImageReadError, match="s0001"):
        list(iter_inputs([str(a)], strict=True))


@pytest.mark.slow
def test_killed_extract_resumes_without_duplicates(tmp_path, vit):
    folder = image_folder(tmp_path / "img", 30)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "extract_kill_worker.py"), str(folder), str(out)],
        env=env,
    )
    state = out / "writer_state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if state.exists() and len(json.loads(state.read_text())["shards"]) >= 2:
                break
            assert proc.poll() is None, "worker ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no shard committed in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = json.loads(state.read_text())
    assert 2 <= len(before["shards"]) < 10 and not before["complete"]
    src = from_spec(
        "timm:vit_tiny_patch16_224", hookpoints=["blocks.1"], tokens="all", image_size=32
    )
    meta = extract(src, folder, out, batch_size=4, shard_size=3, progress=False)
    got = samples(out)
    keys = [s["meta"]["source_key"] for s in got]
    assert keys == [f"{i:03d}.png" for i in range(30)]  # nothing missing, nothing twice
    assert [s["__key__"] for s in got] == [f"{i:09d}" for i in range(30)]
    assert meta["complete"] and meta["n_samples"] == 30
    assert meta["hookpoints"]["blocks.1"]["n_vectors"] == 30 * 5
    # the resumed statistics equal the statistics of the data on disk
    x = load_all(out).astype(np.float64)
    np.testing.assert_allclose(meta["hookpoints"]["blocks.1"]["mean"], x.mean(0), atol=1e-6)
    assert not list(out.glob("*.partial"))


@pytest.mark.slow
def test_cli_prompts_diffusers_token_subsampling(tmp_path, capsys):
    tiny_unet(True).save_pretrained(tmp_path / "unet")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# prompts\na red cube\n\na blue ball\na green cone\n")
    args = [
        "--source",
        f"diffusers:{tmp_path / 'unet'}",
        "--data",
        str(prompts),
        "--hookpoints",
        "mid_block.attentions.0,up_blocks.0.attentions.1",
        "--out",
        str(tmp_path / "out"),
        "--prompt-encoder",
        "hash",
        "--num-steps",
        "3",
        "--timesteps",
        "0,2",
        "--guidance",
        "4",
        "--max-tokens",
        "5",
        "--shard-size",
        "2",
        "--batch-size",
        "2",
        "--quiet",
    ]
    assert extract_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_samples"] == 6 and summary["n_skipped"] == 0
    assert summary["hookpoints"]["mid_block.attentions.0"] == {"d": 64, "n_vectors": 30}
    got = samples(tmp_path / "out")
    assert [(s["meta"]["caption"], s["meta"]["step"]) for s in got][:3] == [
        ("a red cube", 0),
        ("a red cube", 2),
        ("a blue ball", 0),
    ]
    idx = got[0]["meta"]["token_index"]["up_blocks.0.attentions.1"]
    assert len(idx) == 5 and idx == sorted(idx) and max(idx) < 64
    meta = read_meta(tmp_path / "out")
    assert meta["options"]["guidance"] == 4.0 and meta["options"]["timesteps"] == [0, 2]
    # a second run on a complete dataset changes nothing; --no-resume refuses it
    assert extract_main(args) == 0
    assert read_meta(tmp_path / "out")["n_samples"] == 6
    assert extract_main(args + ["--no-resume"]) == 2
    assert (
        extract_main(
            [
                "--source",
                "timm:vit_tiny_patch16_224",
                "--data",
                str(prompts),
                "--out",
                str(tmp_path / "x"),
                "--guidance",
                "2",
            ]
        )
        == 2
    )
    assert "diffusers sources only" in capsys.readouterr().err
