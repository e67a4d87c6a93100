"""``vsae eval``: evaluate a saved SAE on other activations."""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from vsae.data import DataError, open_source
from vsae.interop import FORMATS, load
from vsae.metrics import evaluate
from vsae.sae import CheckpointError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a saved SAE on activations; prints JSON",
        description="Print the SAE's fvu, cos, l0, sparsity, dead_frac and dense_frac on DATA.",
    )
    p.add_argument(
        "sae_dir",
        metavar="SAE",
        help="an SAE: a vsae folder, or any checkpoint vsae.load reads (SAELens, sparsify, "
        "sdxl-unbox, MSAE, saev, overcomplete, hf://owner/repo[/subfolder][@revision])",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="the SAE's format (default auto: detected from its files)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="overcomplete checkpoints only: the TopKSAE's top_k (0: a plain ReLU SAE)",
    )
    p.add_argument("--data", required=True, help="activations: a .npy file [N, d_in]")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per evaluation batch")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="matryoshka_k only: evaluate TopK at this k (0 = the dense ReLU path)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print one JSON object."""
    try:
        options = {} if args.top_k is None else {"top_k": args.top_k}
        sae = load(args.sae_dir, format=args.format, **options)
        if not str(args.data).endswith(".npy"):
            raise DataError(f"{args.data}: expected a .npy file")
        source = open_source(args.data, batch_size=1, eval_samples=0)
        if source.d != sae.d_in:
            raise DataError(f"{args.data}: width {source.d}; the SAE expects d_in={sae.d_in}")
        if args.k is not None:
            if not hasattr(sae, "set_infer_k"):
                raise DataError(f"--k applies to matryoshka_k SAEs; this one is {sae.cfg.arch}")
            sae.set_infer_k(args.k)
        metrics = evaluate(sae, source.all_batches(args.batch_size))
    except (CheckpointError, DataError, ValueError) as err:
        print(f"vsae eval: error: {err}", file=sys.stderr)
        if getattr(args, "debug", False):
            traceback.print_exc()
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
