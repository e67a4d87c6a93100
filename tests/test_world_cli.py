"""``vsae world`` command module, driven through a tiny argparse front end."""

import argparse
import json

import pytest

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
