"""Placeholder: the quality benchmark is being written (see the issue)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the quality benchmark."""


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print JSON."""
    raise SystemExit("vsae bench quality: not implemented yet")
