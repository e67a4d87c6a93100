"""Placeholder: the speed benchmark is being written (see the issue)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speed benchmark."""


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print JSON."""
    raise SystemExit("vsae bench speed: not implemented yet")
