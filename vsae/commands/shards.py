"""``vsae shards``: work on activation shard folders (``merge`` the parts of a split extraction)."""

from __future__ import annotations

import argparse
import json

HELP = "activation shard folders: merge the parts of a rank-split extraction"
MERGE_HELP = """Merge the parts OUT/part-I-of-N (written by `vsae extract --part I/N`, one per
I = 0 .. N-1) into OUT itself: the shards move up, renumbered part by part, and one meta.json
holds the combined counts, mean and second moment (combined exactly). The merged folder reads
exactly like a single-process extraction of the same inputs. Running it again is safe."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``shards`` and its sub-commands."""
    p = sub.add_parser("shards", help=HELP, description=HELP)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    m = actions.add_parser(
        "merge",
        help="merge OUT/part-I-of-N folders into OUT",
        description=MERGE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("out", metavar="OUT", help="the --out of the split extraction")
    m.add_argument(
        "--keep-parts",
        action="store_true",
        help="keep the part folders after the merge (default: removed; the shards are "
        "hard-linked, so keeping them costs no space on one file system)",
    )
    m.set_defaults(run=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    """Merge and print a JSON summary of the merged folder (meta.json says the rest)."""
    from vsae.data.shard_parts import merge_parts

    meta = merge_parts(args.out, keep_parts=args.keep_parts)
    summary = {
        "out": str(args.out),
        "parts": meta["extra"].get("parts"),
        "n_samples": meta["n_samples"],
        "n_shards": len(meta["shards"]),
        "n_skipped": meta["n_skipped"],
        "hookpoints": {
            hp: {"d": h["d"], "n_vectors": h["n_vectors"]} for hp, h in meta["hookpoints"].items()
        },
    }
    print(json.dumps(summary, indent=1))
    return 0
