"""``vsae world`` command module, driven through a tiny argparse front end."""

import argparse
import json

import pytest

from tests.conftest import run_cli
from vsae.commands import world as world_cmd


def _parser():
    p = argparse.ArgumentParser(prog="vsae")
    world_cmd.add_parser(p.add_subparsers(dest="command"))
    return p


@pytest.mark.parametrize("sub", ["build", "eval", "render", "export"])
def test_every_option_has_help(sub):
    p = _parser()
    world = next(a for a in p._subparsers._group_actions[0].choices.values())
    sp = world._subparsers._group_actions[0].choices[sub]
    for action in sp._actions:
        assert action.help, (sub, action.dest)


def test_render_writes_shards(tmp_path, capsys):
    args = _parser().parse_args(
        [
            "world",
            "render",
            "--out",
            str(tmp_path),
            "--n",
            "4",
            "--shards",
            "--per-shard",
            "2",
            "--correlation",
            "colour=red|shape=circle:0.9",
        ]
    )
    assert world_cmd.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["shards"]) == 2


def test_eval_prints_one_json_object(capsys):
    args = _parser().parse_args(["world", "eval", "--parts", "judge", "--n-images", "40"])
    assert world_cmd.run(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics["judge"]) == {"colour", "shape", "size", "position", "background"}
    assert metrics["weights_mb"] <= 25


def test_world_runs_through_the_vsae_entry_point(tmp_path):
    proc = run_cli("world", "render", "--out", str(tmp_path / "imgs"), "--n", "3")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 3
    assert len(list((tmp_path / "imgs").glob("*.png"))) == 3


@pytest.mark.slow
def test_fast_build_writes_loadable_models(tmp_path):
    from vsae import world

    out = tmp_path / "weights"
    proc = run_cli("world", "build", "--fast", "--out", str(out), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report["stages"]) == {"clip", "siglip", "judge", "diffusion"}
    log = json.loads((out / "build_log.json").read_text())
    assert set(log["stages"]["clip"]["summary"]) == {"phase1", "phase2", "phase3", "phase4"}
    assert log["stages"]["clip"]["summary"]["phase3"]["pairs"] == {"position": 1, "shape": 1}
    phase4 = log["stages"]["siglip"]["summary"]["phase4"]
    assert phase4["aux"] == {"position": 2.0}
    assert phase4["init_from"] == str(out / "_phase3" / "siglip")
    diffusion = log["stages"]["diffusion"]["summary"]
    assert diffusion["phase2"]["init_from"] == str(out / "_phase1" / "diffusion")
    assert diffusion["phase1"]["init_from"] is None
    model, _, tok = world.load_clip(out)
    assert model.encode_text(tok(["a red circle"])).shape == (1, 128)
    pipe = world.load_diffusion(out)
    assert pipe(["a red circle"], steps=2, seed=0)[0].size == (32, 32)
    assert world.load_judge(out).predict(world.render(2, seed=1)[0])["colour"][0] in world.COLOURS
