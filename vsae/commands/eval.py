"""``vsae eval``: evaluate a saved SAE on other activations (a .npy file or a shard folder)."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path

from torch import Tensor

from vsae.data import DataError, open_source
from vsae.data.checks import check_batch, check_metrics, open_npy
from vsae.interop import FORMATS, load
from vsae.metrics import evaluate
from vsae.sae import CheckpointError

DESCRIPTION = """Print the SAE's metrics on DATA as one JSON object (strict JSON):
  fvu         fraction of variance unexplained, sum ||x - x_hat||^2 / sum ||x - mean(x)||^2
  cos         mean cosine similarity between x and x_hat
  l0          mean number of non-zero latents per row
  sparsity    1 - l0 / n_latents (the fraction of latents that are zero on a row)
  dead_frac   fraction of latents that never fire on DATA
  dense_frac  fraction of latents that fire on more than 10% of the rows of DATA
DATA holding NaN or inf is an error naming the file, the first bad row and column and the
count; --skip-nonfinite drops those rows and reports how many."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a saved SAE on activations; prints JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument(
        "--data",
        required=True,
        help="activations: a .npy file [N, d_in] (float16/32/64), or a shard folder written by "
        "`vsae extract` (every vector of it, in storage order)",
    )
    p.add_argument(
        "--hookpoint",
        default=None,
        help="which hookpoint of a shard folder to evaluate on (needed when it holds several)",
    )
    p.add_argument("--batch-size", type=int, default=4096, help="rows per evaluation batch")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="matryoshka_k only: evaluate TopK at this k (0 = the dense ReLU path)",
    )
    p.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="drop rows holding NaN or inf (the output's nonfinite_rows_dropped counts them) "
        "instead of refusing the data",
    )
    p.set_defaults(run=run)


def _checked(batches: Iterable[Tensor], where: str, skip: bool) -> Iterator[Tensor]:
    for i, x_BD in enumerate(batches):
        kept_BD = check_batch(x_BD, f"{where} (batch {i})", skip)
        if kept_BD.shape[0]:
            yield kept_BD


def open_eval_data(args: argparse.Namespace) -> tuple[int, int, Iterator[Tensor]]:
    """``--data``'s width, row count and checked batches (every row once, in storage order)."""
    path = Path(args.data)
    if args.batch_size < 1:
        raise DataError(f"--batch-size {args.batch_size}: expected >= 1")
    if path.is_dir():
        from vsae.data.shards import ShardError, open_batches

        try:
            loader = open_batches(
                path,
                args.batch_size,
                hookpoint=args.hookpoint,
                shuffle=False,
                drop_last=False,
                rank=0,
                world_size=1,
            )
        except (ShardError, ValueError) as err:
            raise DataError(f"{path}: {err}") from None
        n_rows = int(loader.meta["hookpoints"][loader.dataset.hookpoint]["n_vectors"])
        return loader.d, n_rows, _checked(loader, str(path), args.skip_nonfinite)
    if args.hookpoint is not None:
        raise DataError(f"--hookpoint applies to shard folders; {path} is not a folder")
    if path.suffix != ".npy":
        raise DataError(f"{path}: expected a .npy file or a shard folder written by vsae extract")
    n_rows = int(open_npy(path).shape[0])  # the header only; open_source checks every row
    source = open_source(path, batch_size=1, eval_samples=0, skip_nonfinite=args.skip_nonfinite)
    return source.d, n_rows, source.all_batches(args.batch_size)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print one JSON object; bad input: one line on stderr and exit 2."""
    try:
        metrics = _evaluate(args)
    except (CheckpointError, DataError, ValueError) as err:
        print(f"vsae eval: error: {' '.join(str(err).split())}", file=sys.stderr)
        if getattr(args, "debug", False):
            traceback.print_exc()
        return 2
    print(json.dumps(metrics, indent=2, allow_nan=False))
    return 0


def _evaluate(args: argparse.Namespace) -> dict[str, float]:
    options = {} if args.top_k is None else {"top_k": args.top_k}
    sae = load(args.sae_dir, format=args.format, **options)
    width, n_rows, batches = open_eval_data(args)
    if width != sae.d_in:
        raise DataError(f"{args.data}: width {width}; the SAE expects d_in={sae.d_in}")
    if args.k is not None:
        if not hasattr(sae, "set_infer_k"):
            raise DataError(f"--k applies to matryoshka_k SAEs; this one is {sae.cfg.arch}")
        sae.set_infer_k(args.k)
    metrics = evaluate(sae, batches)
    if metrics.get("n_samples", 1) == 0:
        raise DataError(f"{args.data}: no rows left to evaluate on")
    check_metrics(metrics, f"{args.data}")
    if args.skip_nonfinite:
        metrics["nonfinite_rows_dropped"] = n_rows - int(metrics["n_samples"])
    return metrics
