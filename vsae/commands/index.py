"""``vsae index build``: index an image collection with an SAE (faiss + CSR codes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``index`` and its ``build`` sub-command."""
    p = sub.add_parser(
        "index",
        help="build a concept index of images",
        description="Concept indexes of image collections (see docs/concepts.md).",
    )
    isub = p.add_subparsers(dest="index_command", required=True, metavar="SUBCOMMAND")
    b = isub.add_parser(
        "build",
        help="index images or activation shards: embeddings, SAE codes, keys, labels",
        description=(
            "Run the SAE's model over a collection and store, per image, its embedding "
            "(faiss, for nearest neighbours), its SAE codes (scipy.sparse CSR, for concept "
            "filters), its path or key and its labels. Writes embeddings.faiss, norms.npy, "
            "codes.npz, keys.json, labels.jsonl, index.json and build.json into --out."
        ),
    )
    b.add_argument("--sae", required=True, help="SAE folder (cfg.json + sae.safetensors)")
    b.add_argument(
        "--data",
        required=True,
        help="world:N:SEED, an image folder, .tar image shards, or a `vsae extract` folder",
    )
    b.add_argument("--out", required=True, help="index folder to write")
    b.add_argument("--model", default=None, help="the SAE's model spec (default: provenance)")
    b.add_argument("--pretrained", default=None, help="weights tag or path of --model")
    b.add_argument("--hookpoint", default=None, help="the SAE's hookpoint (default: provenance)")
    b.add_argument(
        "--type",
        choices=("flat", "fp16", "ivf"),
        default="flat",
        help="faiss index: flat (exact), fp16 (exact scan, half the bytes), ivf "
        "(approximate, for millions of images) (default: %(default)s)",
    )
    b.add_argument("--nlist", type=int, default=1024, help="IVF cells (default: %(default)s)")
    b.add_argument(
        "--pool",
        choices=("max", "mean"),
        default="max",
        help="how an image's token codes are pooled (default: %(default)s)",
    )
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    b.add_argument("--json", action="store_true", help="print only JSON on stdout")
    b.set_defaults(run=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Build the index and print what was written."""
    from vsae.analysis.index_build import build_index
    from vsae.analysis.models import sae_model_spec

    spec = sae_model_spec(args.sae, args.model, args.pretrained, args.hookpoint)
    out = build_index(
        args.sae,
        args.data,
        args.out,
        spec,
        kind=args.type,
        nlist=args.nlist,
        pool=args.pool,
        progress=not args.no_progress,
    )
    meta = json.loads((out / "index.json").read_text())
    record = {
        "index": str(out),
        "arguments": {k: v for k, v in vars(args).items() if k != "run"},
        **meta,
    }
    (Path(out) / "build.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(record, indent=1, default=str))
    else:
        print(f"indexed {meta['n_images']} images into {out} ({meta['faiss_type']})")
        print(f"wrote {out}", file=sys.stderr)
    return 0
