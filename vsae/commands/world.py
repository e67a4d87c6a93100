"""``vsae world``: build, evaluate and export the tiny world."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``world`` with sub-commands ``build``, ``eval`` and ``render`` (alias ``export``)."""
    p = subparsers.add_parser(
        "world",
        help="the tiny world: renders with ground truth, tiny CLIP/SigLIP, tiny diffusion, judge",
        description="Build, evaluate and export the tiny world that vsae ships offline.",
    )
    sub = p.add_subparsers(dest="world_command", metavar="{build,eval,render,export}")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="retrain every tiny-world model from scratch (fixed seeds)",
        description="Retrain the tiny CLIP, SigLIP, judge and diffusion model from "
        "scratch with fixed seeds, write them as safetensors and report the wall "
        "time. About 95 minutes on 2 CPU cores (the diffusion stage alone about an hour): run "
        "it in the background.",
    )
    b.add_argument(
        "--out",
        default=None,
        help="output folder (default: the package's vsae/world/weights, replacing "
        "the shipped weights)",
    )
    b.add_argument(
        "--stages",
        default="clip,siglip,judge,diffusion",
        help="comma-separated stages to run, in this order; diffusion needs the clip "
        "stage's output in the same folder (default: all four)",
    )
    b.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    b.add_argument(
        "--fast",
        action="store_true",
        help="a few steps per stage only: a smoke test of the build, useless weights",
    )

    e = sub.add_parser(
        "eval",
        help="print one JSON object with every tiny-world metric",
        description="Measure zero-shot accuracy and retrieval (CLIP, SigLIP), "
        "judge accuracy and judged diffusion accuracy on held-out renders; print "
        "one JSON object.",
    )
    e.add_argument(
        "--weights", default=None, help="weights folder (default: the shipped vsae/world/weights)"
    )
    e.add_argument(
        "--n-images",
        type=int,
        default=1000,
        help="held-out renders for zero-shot, retrieval and judge (default: 1000)",
    )
    e.add_argument(
        "--repeats",
        type=int,
        default=4,
        help="seeds per 'a {colour} {shape}' prompt for the diffusion score "
        "(48 prompts each; default: 4)",
    )
    e.add_argument("--steps", type=int, default=20, help="DDIM steps (default: 20)")
    e.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the one recorded with the weights)",
    )
    e.add_argument(
        "--parts",
        default="clip,siglip,judge,diffusion",
        help="comma-separated models to evaluate (default: all)",
    )

    for name in ("render", "export"):
        alias = "" if name == "render" else " (an alias of `vsae world render`: the same command)"
        r = sub.add_parser(
            name,
            help="write renders as an image folder or WebDataset shards"
            + (" (alias of render)" if name == "export" else ""),
            description="Render scenes with ground-truth labels and captions and "
            "write them as a folder (images + labels.jsonl + captions.txt) or as "
            f"WebDataset tar shards (image + .json labels + .txt caption){alias}.",
        )
        r.add_argument("--out", required=True, help="output folder")
        r.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
        r.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
        r.add_argument(
            "--format", choices=("png", "jpg"), default="png", help="image encoding (default: png)"
        )
        r.add_argument(
            "--shards",
            action="store_true",
            help="write WebDataset shards instead of a folder of images",
        )
        r.add_argument(
            "--per-shard",
            type=int,
            default=1000,
            help="samples per shard with --shards (default: 1000)",
        )
        r.add_argument(
            "--two-objects",
            type=float,
            default=0.0,
            help="probability that a scene holds a second object (default: 0)",
        )
        r.add_argument(
            "--correlation",
            action="append",
            default=[],
            metavar="A=V|B=W:P",
            help="bias the data: P(A=V | B=W) = P, e.g. 'colour=red|shape=circle:0.9'; repeatable",
        )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the ``world`` sub-command in ``args``; returns the exit status."""
    cmd = args.world_command
    if cmd == "build":
        from vsae.world.build import DEFAULT_OUT, build

        t0 = time.time()
        stages = [s for s in args.stages.split(",") if s]
        record = build(args.out or DEFAULT_OUT, stages, threads=args.threads, fast=args.fast)
        print(
            json.dumps(
                {
                    "wall_s": round(time.time() - t0, 1),
                    "stages": {k: v["wall_s"] for k, v in record["stages"].items()},
                }
            )
        )
        return 0
    if cmd == "eval":
        from vsae.world.evaluate import evaluate

        parts = tuple(s for s in args.parts.split(",") if s)
        metrics = evaluate(
            args.weights,
            n_images=args.n_images,
            repeats=args.repeats,
            steps=args.steps,
            guidance=args.guidance,
            parts=parts,
        )
        print(json.dumps(metrics))
        return 0
    if cmd in ("render", "export"):
        from vsae.world.export import export_folder, export_shards

        kw = {
            "n": args.n,
            "seed": args.seed,
            "fmt": args.format,
            "two_objects": args.two_objects,
            "correlations": args.correlation or None,
        }
        if args.shards:
            paths = export_shards(args.out, per_shard=args.per_shard, **kw)
            print(json.dumps({"shards": paths, "n": args.n}))
        else:
            print(json.dumps({"folder": str(export_folder(args.out, **kw)), "n": args.n}))
        return 0
    print(f"unknown world command {cmd!r}", file=sys.stderr)
    return 2
