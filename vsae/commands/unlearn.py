"""``vsae unlearn fit``: an SAeUron-style unlearning recipe (docs/interventions.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = """Fit a recipe that removes concepts from a diffusion model through an SAE on one block.

For each concept the SAE's activations are averaged per denoising step over prompts that name
it and prompts that do not; latents whose normalised-mean difference is above --percentile of
the scores (per step) are selected. Applying the recipe (vsae generate --unlearn DIR) multiplies
a selected latent by gamma * its mean on the concept wherever it exceeds its mean over all
prompts, and keeps the SAE's reconstruction error, so an empty recipe changes nothing.

Statistics prompts: --prompts FILE (one a line; each concept must appear in some, as a word);
on the tiny world the default is every "a {colour} {shape}". The recipe folder holds
recipe.json (SAE path and hash, block, concepts, percentile, gamma, prompts, seeds) and
latents.safetensors (selected latents, multipliers and thresholds per step).

Example: vsae unlearn fit --sae runs/blk@up_blocks.1.attentions.0 --concept red \\
    --percentile 99 --gamma -2 --out recipes/no-red
         vsae generate --sae runs/blk --unlearn recipes/no-red --prompt "a red circle" \\
    --out out/no-red"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``unlearn`` and its ``fit`` sub-command."""
    from vsae.commands.generate import add_pipeline_arguments

    p = sub.add_parser("unlearn", help="concept unlearning recipes (SAeUron method)")
    inner = p.add_subparsers(dest="unlearn_command", required=True, metavar="ACTION")
    fit = inner.add_parser(
        "fit",
        help="fit a recipe that removes concepts",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pipeline_arguments(fit)
    fit.add_argument(
        "--concept", action="append", required=True, help="a concept word (repeatable)"
    )
    fit.add_argument(
        "--prompts", default=None, help="statistics prompts file (default on world: all pairs)"
    )
    fit.add_argument(
        "--percentile",
        type=float,
        default=99.0,
        help="select latents above this percentile of the scores, per step, in (0, 100) "
        "(default: %(default)s)",
    )
    fit.add_argument(
        "--gamma",
        type=float,
        default=-1.0,
        help="multiplier scale, < 0 (default: %(default)s; SAeUron: -1 styles, -1..-30 objects)",
    )
    fit.add_argument(
        "--seeds", default="0", help="comma-separated noise seeds of the statistics (default: 0)"
    )
    fit.add_argument("--out", required=True, help="recipe folder")
    fit.add_argument("--json", action="store_true", help="print only the JSON summary")
    fit.set_defaults(run=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    """Fit and save the recipe; print a summary."""
    from vsae.commands.generate import _load
    from vsae.interventions import InterventionError, fit_recipe
    from vsae.interventions.unlearn import concept_prompts

    if len(args.sae) != 1:
        raise InterventionError(f"give exactly one --sae DIR@BLOCK, got {len(args.sae)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise InterventionError(f"--seeds {args.seeds!r}: expected integers like 0,1") from None
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise InterventionError(f"{path}: no such prompts file")
        prompts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    elif args.pipeline == "world":
        from vsae.world import COLOURS, SHAPES

        prompts = concept_prompts(args.concept, {"colour": COLOURS, "shape": SHAPES})
    else:
        raise InterventionError("--prompts FILE is needed outside the tiny world")
    gen, refs, bsaes = _load(args)
    recipe = fit_recipe(
        gen,
        bsaes[0],
        args.concept,
        prompts,
        args.num_steps,
        seeds=seeds,
        percentile=args.percentile,
        gamma=args.gamma,
        guidance=args.guidance,
        sae_path=str(refs[0].path),
    )
    recipe.info["arguments"] = {k: v for k, v in vars(args).items() if k not in ("run", "debug")}
    out = recipe.save(args.out)
    summary = {k: v for k, v in recipe.info.items() if k != "prompts"}
    summary["n_prompts"] = len(prompts)
    summary["selected_pairs"] = int(recipe.selected_TN.sum())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {out} ({summary['selected_pairs']} (step, latent) pairs selected)")
    return 0
