"""``vsae quickstart``: the offline main job, end to end in a few minutes on a laptop CPU.

render the tiny world -> tiny-CLIP image embeddings in WebDataset shards ->
nested-k Matryoshka SAE -> metrics (JSON) and a short report with a plot -> the SAE's named
concepts, a concept index of the renders and one concept-edited search with a contact sheet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vsae.config import SAEConfig, TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``quickstart``."""
    p = sub.add_parser(
        "quickstart",
        help="render the tiny world, extract CLIP embeddings, train a Matryoshka SAE, report",
        description=(
            "Render tiny-world images, extract the tiny CLIP's image embeddings into "
            "activation shards, train a nested-k Matryoshka SAE on them, print its "
            "metrics as JSON and write report.md with a training-curve plot into --out; then "
            "name its latents (concepts.json), index the renders and run one concept-edited "
            "search (search.png in the report). "
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
    p.add_argument(
        "--eval-k",
        type=int,
        default=None,
        help="evaluate (during training and at the end) with TopK at this k, a fixed sparsity, "
        "so the curve is not moved by the dense path's drifting L0 (default 4 x --k; 0: the "
        "dense ReLU path)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the renders and of training")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the quickstart and print its metrics."""
    from vsae.commands.world_data import BATCH_SIZE, HOOKPOINT, world_clip_shards
    from vsae.report import LOSS_TERMS, plot_training_log
    from vsae.training import train

    out = Path(args.out)
    d, data = world_clip_shards(out / "shards", args.n_images, args.seed, not args.no_progress)
    eval_k = 4 * args.k if args.eval_k is None else args.eval_k
    eval_k = min(eval_k, d * args.expansion)
    sae_cfg = SAEConfig(
        arch="matryoshka_k",
        d_in=d,
        expansion=args.expansion,
        k=args.k,
        seed=args.seed,
        infer_k=eval_k,
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
    where = "dense ReLU path" if eval_k in (0, sae.n_latents) else f"TopK k={eval_k}"
    plot = plot_training_log(out / "sae" / "metrics.jsonl", out / "training.png", where)
    levels = per_level_metrics(sae, data, train_cfg)
    from vsae.commands.quickstart_concepts import concepts_section

    concepts = concepts_section(out, args.seed, args.n_images, progress=not args.no_progress)
    lines = [
        "# vsae quickstart",
        "",
        f"Nested-k Matryoshka SAE ({sae.n_latents} latents, levels {list(sae.levels)}) trained",
        f"on the tiny CLIP's {d}-d image embeddings of {args.n_images} tiny-world renders.",
        f"Held-out evaluation at a fixed sparsity: {where} (`--eval-k`).",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.4g} |" for k, v in metrics.items()],
        "",
        "Every Matryoshka level on the same held-out rows (TopK at the level's k; the last",
        "level is the dense ReLU path):",
        "",
        "| level k | FVU | cos | L0 | dead_frac |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {k} | {m['fvu']:.4g} | {m['cos']:.4g} | {m['l0']:.4g} | {m['dead_frac']:.4g} |"
            for k, m in levels.items()
        ],
        "",
        f"![training curve]({plot.name})",
        "",
        "The plot: training reconstruction term and each level's batch FVU; held-out FVU; L0;",
        "dead latents. The progress bar's and the log's `loss` is the whole objective:",
        f"{LOSS_TERMS}.",
        "",
        f"Load it with `vsae.load('{out / 'sae'}')`.",
        "",
        *concepts,
    ]
    (out / "report.md").write_text("\n".join(lines))
    print(json.dumps(metrics, indent=2, allow_nan=False))
    print(f"report: {out / 'report.md'}")
    return 0


def per_level_metrics(
    sae: torch.nn.Module, data: Path, train_cfg: TrainConfig
) -> dict[int, dict[str, float]]:
    """Held-out metrics of a Matryoshka SAE at each of its levels (the trainer's held-out rows).

    Parameters
    ----------
    sae : MatryoshkaKSAE
        The trained SAE (its inference k is restored afterwards).
    data : Path
        The shard folder it was trained on.
    train_cfg : TrainConfig
        Its training settings: the same seed, batch size and held-out count give the same rows.

    Returns
    -------
    dict
        Level k -> {fvu, cos, l0, sparsity, dead_frac, dense_frac, n_samples}.
    """
    from vsae.commands.world_data import HOOKPOINT
    from vsae.metrics import evaluate
    from vsae.training.trainer import make_source

    source = make_source(data, train_cfg, hookpoint=HOOKPOINT)
    source.prepare()
    held = list(source.eval_batches())
    keep, out = sae.infer_k, {}
    for k in sae.levels:
        sae.set_infer_k(0 if k == sae.n_latents else k)
        out[k] = evaluate(sae, held)
    sae.set_infer_k(keep)
    return out
