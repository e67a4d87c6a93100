"""``vsae convert SRC --to vsae|saelens|sparsify --out DIR``: bring another tool's SAE in, or
take a vsae SAE out (formats: docs/interop.md)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from vsae.interop import FORMATS, WRITERS, load, save

RECORD = "convert.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``convert``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The ``vsae`` command's sub-parsers.
    """
    p = sub.add_parser(
        "convert",
        help="convert an SAE checkpoint between vsae, SAELens, sparsify and other tools",
        description="Read SRC (a vsae, SAELens, sparsify/SAeUron, sdxl-unbox, MSAE, saev or "
        "overcomplete checkpoint, or hf://owner/repo[/subfolder][@revision]) without running "
        "pickle, and write it as a vsae, SAELens or sparsify folder. DIR also gets "
        f"{RECORD}: the arguments, the detected format, the provenance and any warning.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint folder, file or hf:// URI")
    p.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="SRC's format (default auto: detected from its files, and reported)",
    )
    p.add_argument("--to", required=True, choices=WRITERS, help="format to write")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR if it exists and is not empty (otherwise refused; DIR is only "
        "replaced once the new folder is complete)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="overcomplete only: the TopKSAE's top_k (0: a plain ReLU SAE); its state dicts "
        "do not record it",
    )
    p.add_argument(
        "--normalization",
        default=None,
        help="overcomplete only: the dictionary normalisation it was built with (default l2)",
    )
    p.add_argument(
        "--b-dec-on-input",
        action="store_true",
        help="saev only: subtract b_dec before encoding (checkpoints trained before 2025-07-31)",
    )
    p.add_argument("--json", action="store_true", help="print only the record as JSON on stdout")
    p.set_defaults(run=run)


def _options(args: argparse.Namespace) -> dict:
    opts: dict = {}
    if args.top_k is not None:
        opts["top_k"] = args.top_k
    if args.normalization is not None:
        opts["normalization"] = args.normalization
    if args.b_dec_on_input:
        opts["b_dec_on_input"] = True
    return opts


def run(args: argparse.Namespace) -> int:
    """Convert, write DIR and its record, and report.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``convert`` arguments.

    Returns
    -------
    int
        0 on success (expected errors are raised for the CLI to report in one line).
    """
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise FileExistsError(f"{out}: exists and is not empty; pass --overwrite to replace it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae = load(args.src, format=args.format, **_options(args))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            save(sae, tmp, format=args.to)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    notes = [str(w.message) for w in caught]
    record = {
        "command": "convert",
        "args": {k: v for k, v in vars(args).items() if k not in ("run",) and not callable(v)},
        "source": args.src,
        "source_format": sae.source_format,
        "to": args.to,
        "out": str(out),
        "arch": sae.cfg.arch,
        "d_in": sae.d_in,
        "n_latents": sae.n_latents,
        "provenance": getattr(sae, "provenance", {}),
        "warnings": notes,
        "files": sorted(p.name for p in tmp.iterdir()) + [RECORD],
    }
    (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    _replace(tmp, out)
    for note in notes:
        print(f"vsae convert: warning: {' '.join(note.split())}", file=sys.stderr)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            f"{args.src} ({record['source_format']}, {sae.cfg.arch}, {sae.d_in} -> "
            f"{sae.n_latents}) written as {args.to} to {out}"
        )
    return 0


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an old DIR is removed only after that."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["add_parser", "run"]
