"""The ``vsae`` command line: one sub-command per module in ``vsae.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

# Each module exposes add_parser(subparsers) and run(args) -> int.
COMMANDS = (
    "train",
    "eval",
    "extract",
    "shards",
    "quickstart",
    "world",
    "bench",
    "demo",
    "generate",
    "heatmap",
    "convert",
    "concepts",
    "index",
    "search",
    "unlearn",
    "bias",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="vsae",
        description="Sparse autoencoders for vision and multimodal models.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (allowed anywhere on the command line)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"vsae.commands.{name}")
        module.add_parser(sub)
    return parser


# Errors that mean bad input, not a bug: one line on stderr and exit 2 (--debug: the traceback).
# Matched by class name along the exception's MRO, so that a class moving between modules
# (e.g. DataError from vsae.training to vsae.data) keeps its handling without cli.py importing
# every layer up front.
EXPECTED_ERRORS = frozenset(
    {
        "ShardError",
        "ImageReadError",
        "ConfigError",
        "CheckpointError",
        "SourceError",
        "TrainingError",
        "DataError",
        "RunFolderError",
        "InterventionError",
        "ConceptError",
        "ConceptIndexError",
        "BiasError",
        "FileNotFoundError",
        "FileExistsError",
    }
)


def is_expected(err: BaseException) -> bool:
    """True for the errors of bad input that :func:`main` reports in one line."""
    return any(cls.__name__ in EXPECTED_ERRORS for cls in type(err).__mro__)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit code.

    Expected errors (bad input: :data:`EXPECTED_ERRORS`) print one line on stderr and return 2;
    ``--debug`` (anywhere on the command line) prints their traceback too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # re-raised below unless it is bad input
        if not is_expected(err):
            raise
        if debug:
            traceback.print_exc()
        message = " ".join(str(err).split()) or type(err).__name__  # one line
        print(f"vsae {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
