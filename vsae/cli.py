"""The ``vsae`` command line: one sub-command per module in ``vsae.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes add_parser(subparsers) and run(args) -> int.
COMMANDS = ("train", "eval", "extract", "quickstart", "world", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="vsae",
        description="Sparse autoencoders for vision and multimodal models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"vsae.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
