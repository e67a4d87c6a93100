"""Issue 13 §4: --help explains every option of the commands a new user meets first."""

from __future__ import annotations

import argparse

import pytest

from vsae.cli import build_parser


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(
    "path",
    [
        ("extract",),
        ("train",),
        ("eval",),
        ("shards", "merge"),
        ("world", "render"),
        ("unlearn", "fit"),
        ("unlearn", "eval"),
        ("bench", "unlearning"),
    ],
    ids=lambda p: " ".join(p),
)
def test_every_option_has_help(path):
    parser = subparser(*path)
    missing = [
        a.option_strings[0]
        for a in parser._actions
        if a.option_strings and a.help in (None, "", argparse.SUPPRESS)
    ]
    assert not missing, f"vsae {' '.join(path)}: options without help: {missing}"


def option_help(parser: argparse.ArgumentParser, flag: str) -> str:
    return next(a.help for a in parser._actions if flag in a.option_strings)


def test_the_texts_the_issue_asks_for():
    extract = subparser("extract")
    assert "world[:N[:SEED]]" in option_help(extract, "--data")
    pretrained = option_help(extract, "--pretrained")
    assert "random weights for open_clip:/timm:" in pretrained and "world:" in pretrained
    assert "shipped" in pretrained
    assert "torchrun" in extract.description and "--part" in extract.description
    assert "alias of `vsae world render`" in subparser("world", "export").description
    assert "--set train.ckpt_every=" in subparser("train").description
    assert "--skip-nonfinite" in subparser("train").description
    ev = subparser("eval").description
    assert "sparsity    1 - l0 / n_latents" in ev and "dense_frac" in ev and "10%" in ev
