"""``vsae quickstart``: the offline main job, end to end in a few minutes on a laptop CPU.

render the tiny world -> tiny-CLIP image embeddings in WebDataset shards ->
nested-k Matryoshka SAE -> metrics (JSON) and a short report with a plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsae.config import SAEConfig, TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``quickstart``."""
    p = sub.add_parser(
        "quickstart",
        help="render the tiny world, extract CLIP embeddings, train a Matryoshka SAE, report",
        description=(
            "Render tiny-world images, extract the tiny CLIP's image embeddings into "
            "activation shards, train a nested-k Matryoshka SAE on them, print its "
            "metrics as JSON and write report.md with a training-curve plot into --out. "
            "With a real model: use `vsae extract` and `vsae train` instead."
        ),
    )
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: %(default)s)")
    p.add_argument(
        "--n-images", type=int, default=8000, help="world renders to encode (default: %(default)s)"
    )
    p.add_argument("--steps", type=int, default=800, help="training steps (default: %(default)s)")
    p.add_argument("--expansion", type=int, default=8, help="latents per embedding dimension")
    p.add_argument("--k", type=int, default=8, help="smallest Matryoshka level k0")
    p.add_argument("--seed", type=int, default=0, help="seed of the renders and of training")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the quickstart and print its metrics."""
    from vsae.commands.world_data import BATCH_SIZE, HOOKPOINT, world_clip_shards
    from vsae.report import plot_training_log
    from vsae.training import train

    out = Path(args.out)
    d, data = world_clip_shards(out / "shards", args.n_images, args.seed, not args.no_progress)
    sae_cfg = SAEConfig(
        arch="matryoshka_k", d_in=d, expansion=args.expansion, k=args.k, seed=args.seed
    )
    train_cfg = TrainConfig(
        batch_size=BATCH_SIZE,
        steps=args.steps,
        lr=2e-3,
        warmup_steps=min(50, args.steps // 10),
        eval_every=max(1, args.steps // 5),
        eval_samples=min(1024, args.n_images // 5),
        seed=args.seed,
        progress=not args.no_progress,
    )
    sae, metrics = train(sae_cfg, data, train_cfg, out_dir=out / "sae", hookpoint=HOOKPOINT)
    plot = plot_training_log(out / "sae" / "metrics.jsonl", out / "training.png")
    lines = [
        "# vsae quickstart",
        "",
        f"Nested-k Matryoshka SAE ({sae.n_latents} latents, levels {list(sae.levels)}) trained",
        f"on the tiny CLIP's {d}-d image embeddings of {args.n_images} tiny-world renders",
        "(held-out evaluation, dense ReLU inference path).",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.4g} |" for k, v in metrics.items()],
        "",
        f"![training curve]({plot.name})",
        "",
        f"Load it with `vsae.load('{out / 'sae'}')`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print(json.dumps(metrics, indent=2))
    print(f"report: {out / 'report.md'}")
    return 0
