"""Issue 13 §1: an extraction folder answers only for the data it was made from."""

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from pipeline_helpers import image_folder

from vsae.data.shards import load_all
from vsae.encoders import from_spec
from vsae.extract import extract


class Interrupted(RuntimeError):
    """Stands in for a kill: raised by the source on a chosen forward call."""


def vit():
    torch.manual_seed(0)  # random weights, the same in every call
    return from_spec("timm:vit_tiny_patch16_224", hookpoints=["blocks.1"], image_size=32)


def interrupt_after(src, calls: int):
    """The same source, raising on forward call ``calls + 1`` (committed shards stay)."""
    call = src.__call__
    count = [0]

    class Stopping(type(src)):
        def __call__(self, batch):
            count[0] += 1
            if count[0] > calls:
                raise Interrupted("killed")
            return call(batch)

    src.__class__ = Stopping
    return src


def state(out):
    return json.loads((out / "writer_state.json").read_text())


def test_resume_with_other_world_seed_is_refused_and_same_seed_resumes(tmp_path):
    out = tmp_path / "A"
    with pytest.raises(Interrupted):
        extract(
            interrupt_after(vit(), 3), "world:12:0", out, batch_size=2, shard_size=2, progress=False
        )
    before = state(out)
    assert len(before["shards"]) == 2 and not before["complete"]
    with pytest.raises(ValueError, match=r"world:12:0.*world:12:99"):
        extract(vit(), "world:12:99", out, batch_size=2, shard_size=2, progress=False)
    assert state(out) == before  # nothing written by the refused run
    meta = extract(vit(), "world:12:0", out, batch_size=2, shard_size=2, progress=False)
    assert meta["complete"] and meta["n_samples"] == 12
    fresh = extract(vit(), "world:12:0", tmp_path / "B", batch_size=2, shard_size=2, progress=False)
    np.testing.assert_array_equal(load_all(out), load_all(tmp_path / "B"))
    assert meta["hookpoints"] == fresh["hookpoints"]


def test_complete_folder_refuses_other_data_on_the_command_line(tmp_path):
    out = tmp_path / "A"
    args = [
        "extract",
        "--source",
        "timm:vit_tiny_patch16_224",
        "--pretrained",
        "none",
        "--hookpoints",
        "blocks.1",
        "--out",
        str(out),
        "--quiet",
        "--batch-size",
        "4",
    ]
    first = run_cli(*args, "--data", "world:4:0")
    assert first.returncode == 0, first.stderr
    again = run_cli(*args, "--data", "world:4:0")  # same data: the complete folder answers
    assert again.returncode == 0 and json.loads(again.stdout)["n_samples"] == 4
    other = run_cli(*args, "--data", "world:4:7")
    assert other.returncode == 2
    assert other.stdout == ""
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "world:4:0" in lines[0] and "world:4:7" in lines[0]
    assert "Traceback" not in other.stderr


def test_folder_fingerprint_changes_when_its_files_change(tmp_path):
    folder = image_folder(tmp_path / "img", 4)
    out = tmp_path / "A"
    meta = extract(vit(), folder, out, batch_size=2, progress=False)
    assert meta["extra"]["data"]["kind"] == "folder" and meta["extra"]["data"]["n_files"] == 4
    assert extract(vit(), folder, out, batch_size=2, progress=False)["n_samples"] == 4
    image_folder(tmp_path / "img", 5)  # one more image: another dataset
    with pytest.raises(ValueError, match="n_files': 4.*n_files': 5"):
        extract(vit(), folder, out, batch_size=2, progress=False)


def test_no_resume_message_names_the_real_flag(tmp_path):
    out = tmp_path / "A"
    extract(vit(), "world:2:0", out, progress=False)
    with pytest.raises(FileExistsError, match="drop --no-resume") as err:
        extract(vit(), "world:2:0", out, resume=False, progress=False)
    assert "(--resume)" not in str(err.value)
