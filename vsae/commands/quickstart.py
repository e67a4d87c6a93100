"""``vsae quickstart``: the offline main job, end to end in a few minutes on a laptop CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsae.config import SAEConfig, TrainConfig
from vsae.data.synthetic import SyntheticConfig, generate


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``quickstart``."""
    p = sub.add_parser(
        "quickstart",
        help="train a Matryoshka SAE on offline data and report its metrics",
        description=(
            "Generate synthetic activations with known features, train a nested-k "
            "Matryoshka SAE on them, print its metrics as JSON and write a report "
            "(report.md + training-curve plot) into --out."
        ),
    )
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=600, help="training steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and training")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the quickstart and print its metrics."""
    from vsae.metrics import mmcs
    from vsae.report import plot_training_log
    from vsae.training import train

    out = Path(args.out)
    syn = generate(
        SyntheticConfig(d=64, n_features=512, n_samples=60_000, active=6, seed=args.seed)
    )
    sae_cfg = SAEConfig(arch="matryoshka_k", d_in=64, n_latents=512, k=8, seed=args.seed)
    train_cfg = TrainConfig(
        batch_size=512,
        steps=args.steps,
        lr=2e-3,
        warmup_steps=50,
        eval_every=max(1, args.steps // 5),
        seed=args.seed,
        progress=not args.no_progress,
    )
    sae, metrics = train(sae_cfg, syn.acts, train_cfg, out_dir=out)
    metrics["mmcs"] = mmcs(syn.features, sae.decoder_directions())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot = plot_training_log(out / "metrics.jsonl", out / "training.png")
    lines = [
        "# vsae quickstart",
        "",
        f"Nested-k Matryoshka SAE ({sae.n_latents} latents, levels {list(sae.levels)}) trained on",
        f"{syn.acts.shape[0]} synthetic activations (d={syn.acts.shape[1]}, "
        f"{syn.features.shape[0]} true features).",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.4g} |" for k, v in metrics.items()],
        "",
        f"![training curve]({plot.name})",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print(json.dumps(metrics, indent=2))
    print(f"report: {out / 'report.md'}")
    return 0
