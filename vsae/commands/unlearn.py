"""``vsae unlearn fit`` and ``vsae unlearn eval``: SAeUron-style unlearning recipes, fitted and
measured (docs/interventions.md)."""

from __future__ import annotations

import argparse
import json
import time
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
    --out out/no-red
With --selection-split (tiny world) the recipe is fitted on half of the pairs, and
`vsae unlearn eval recipes/no-red --out DIR` measures it on the other half."""


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
        "--selection-split",
        action="store_true",
        help="tiny world: fit on the selection half of the 'a {colour} {shape}' pairs only "
        "(every colour and shape is in both halves), so `vsae unlearn eval` measures the "
        "recipe on the other half",
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
    ev = inner.add_parser(
        "eval",
        help="measure a recipe on the tiny world: UA / IRA / CRA, quality, robustness",
        description=EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("recipe", metavar="RECIPE_DIR", help="a folder from `vsae unlearn fit`")
    ev.add_argument(
        "--n-images",
        type=int,
        default=2,
        help="images per evaluation prompt, one noise seed each, none of the recipe's seeds "
        "(default: %(default)s; >= 2 gives the other-seed distance floor)",
    )
    ev.add_argument(
        "--prompts",
        default=None,
        help="evaluation prompts file, one 'a {colour} {shape}'-style prompt a line (default: "
        "the world's pairs the recipe was not fitted on)",
    )
    ev.add_argument(
        "--sae",
        default=None,
        metavar="DIR",
        help="the recipe's SAE folder when it moved (default: the path recipe.json records)",
    )
    ev.add_argument("--out", required=True, help="folder for eval.json, eval.md, eval.png")
    ev.set_defaults(run=run_eval)


EVAL_HELP = """Measure an unlearning recipe on the tiny world, judged by the world's classifier.

Evaluation prompts are the "a {colour} {shape}" pairs the recipe was not fitted on (all pairs
when it was fitted on every one; the report says so), at --n-images seeds that are none of the
recipe's. Every figure is also measured on the bare pipeline with the same prompts, seeds and
batch positions, and for the negative-prompt baseline (classifier-free guidance away from
"a red object" / "a circle"):
  UA  = 1 - judged accuracy of each removed concept on prompts that name it
  IRA = judged accuracy of the same kind (colour or shape) on the other prompts
  CRA = judged accuracy of the other kind on the other prompts
(absolute and relative to bare); the judge's confidence in the prompted values on non-target
prompts; the judge-feature Frechet distance between non-target images with and without the
recipe (the FID formula on the judge's 256-d features, so not FID); UA on paraphrased prompts
(other caption frames, other word orders, the attribute alone) and on two-object prompts
where one object has the concept; generation time with the recipe over bare.

Writes eval.json (every number), eval.md (a report), eval.png (a plot) and arguments.json.

Example: vsae unlearn eval recipes/no-red --n-images 2 --out out/no-red-eval"""


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
    if args.selection_split and (args.prompts or args.pipeline != "world"):
        raise InterventionError("--selection-split is for the tiny world's default prompts")
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise InterventionError(f"{path}: no such prompts file")
        prompts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    elif args.pipeline == "world":
        from vsae.interventions.unlearn_eval import split_pairs
        from vsae.world import COLOURS, SHAPES

        prompts = concept_prompts(args.concept, {"colour": COLOURS, "shape": SHAPES})
        if args.selection_split:
            prompts = split_pairs(COLOURS, SHAPES)[0]
    else:
        raise InterventionError("--prompts FILE is needed outside the tiny world")
    gen, refs, bsaes = _load(args)
    t0 = time.perf_counter()
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
    recipe.info["fit_seconds"] = time.perf_counter() - t0
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


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concepts = res["sae"]["concepts"]
    labels = [f"UA {c}" for c in concepts] + ["IRA rel.", "CRA rel."]

    def vals(m: dict) -> list[float]:
        ua = [m["ua"][c] or 0.0 for c in concepts]
        return ua + [m["ira"]["relative"] or 0.0, m["cra"]["relative"] or 0.0]

    x = list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 3.5))
    ax.bar([i - 0.2 for i in x], vals(res["sae"]), 0.4, label="SAE recipe")
    ax.bar([i + 0.2 for i in x], vals(res["negative_prompt"]), 0.4, label="negative prompt")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.axhline(0.90, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("judged")
    ax.set_title("unlearning on the tiny world (dashed: UA 0.95; dotted: IRA/CRA 0.90)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _markdown(res: dict) -> str:
    sae, neg = res["sae"], res["negative_prompt"]
    lines = [
        f"# Unlearning evaluation: {', '.join(sae['concepts'])}",
        "",
        f"Recipe: `{res['recipe']}` (block `{res['block']}`, percentile {res['percentile']}, "
        f"gamma {res['gamma']}, {res['selected_pairs']} (step, latent) pairs).",
        f"Evaluation: {len(res['prompts'])} prompts x {len(res['seeds'])} seeds "
        f"({res['split_note']}); judged by the world's classifier.",
        "",
        "| metric | SAE recipe | negative prompt | bare |",
        "|---|---|---|---|",
    ]
    for c in sae["concepts"]:
        bare_ua = None if sae["bare_judged_target"][c] is None else 1 - sae["bare_judged_target"][c]
        lines.append(f"| UA {c} | {_fmt(sae['ua'][c])} | {_fmt(neg['ua'][c])} | {_fmt(bare_ua)} |")
    for name in ("ira", "cra"):
        if name in sae:
            e, n = sae[name], neg[name]
            lines.append(
                f"| {name.upper()} (absolute) | {_fmt(e['edited'])} | {_fmt(n['edited'])} | "
                f"{_fmt(e['bare'])} |"
            )
            lines.append(
                f"| {name.upper()} (relative to bare) | {_fmt(e['relative'])} | "
                f"{_fmt(n['relative'])} | 1 |"
            )
    lines.append(
        f"| judge confidence, non-target | {_fmt(sae['confidence']['edited'])} | "
        f"{_fmt(neg['confidence']['edited'])} | {_fmt(sae['confidence']['bare'])} |"
    )
    q = res["quality"]
    lines += [
        "",
        f"Judge-feature Fréchet distance (not FID), non-target images: recipe vs bare (same "
        f"noise) {_fmt(q['same_noise']['sae_vs_bare'])}, negative prompt vs bare "
        f"{_fmt(q['same_noise']['negative_prompt_vs_bare'])}; against bare images of another "
        f"seed: recipe {_fmt(q['other_seed']['sae_vs_bare'])}, negative prompt "
        f"{_fmt(q['other_seed']['negative_prompt_vs_bare'])}, bare itself (the floor) "
        f"{_fmt(q['other_seed']['bare_vs_bare'])}.",
        "",
        "## Robustness (UA)",
        "",
        "| concept | family | SAE recipe | negative prompt | bare |",
        "|---|---|---|---|---|",
    ]
    for c, fams in res["robustness"].items():
        for fam, r in fams.items():
            lines.append(
                f"| {c} | {fam} | {_fmt(r['ua_sae'])} | {_fmt(r['ua_negative'])} | "
                f"{_fmt(r['ua_bare'])} |"
            )
    cost = res["cost"]
    lines += [
        "",
        f"Cost: generation with the recipe {cost['generation_ratio']:.2f}x the bare pipeline "
        f"({cost['generation_images']} images); recipe fit "
        f"{_fmt(cost.get('fit_seconds'))} s (recipe.json).",
        "",
        "![plot](eval.png)",
        "",
    ]
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate a recipe; write eval.json, eval.md, eval.png and arguments.json."""
    from vsae.bench.harness import time_against
    from vsae.bench.unlearning import Bench, evaluate_recipe
    from vsae.interventions import (
        InterventionError,
        generate,
        load_block_sae,
        load_generator,
        load_recipe,
    )
    from vsae.interventions.unlearn import mentions
    from vsae.interventions.unlearn_eval import kind_of, split_pairs
    from vsae.world import COLOURS, SHAPES

    recipe = load_recipe(args.recipe)
    if args.n_images < 1:
        raise InterventionError(f"--n-images {args.n_images}: expected >= 1")
    pipeline = recipe.info.get("arguments", {}).get("pipeline", "world")
    if pipeline != "world":
        raise InterventionError(
            f"{args.recipe}: fitted on pipeline {pipeline!r}; `vsae unlearn eval` measures "
            "recipes of the tiny world (its judge knows only world images)"
        )
    for c in recipe.info["concepts"]:
        kind_of(c)
    sae_dir = Path(args.sae or recipe.info.get("sae_path") or "")
    if not (sae_dir / "cfg.json").is_file() and not sae_dir.is_dir():
        raise InterventionError(
            f"{sae_dir}: the recipe's SAE is not there; give --sae DIR where it moved"
        )
    bsae = load_block_sae(sae_dir, recipe.info["block"], output=recipe.info.get("output"))
    recipe.edit(bsae)  # refuses another SAE or block before any generation
    steps = int(recipe.info["num_steps"])
    fitted = set(recipe.info.get("prompts", []))
    pairs = [p for half in split_pairs(COLOURS, SHAPES) for p in half]
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise InterventionError(f"{path}: no such prompts file")
        ev_prompts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        shared = len([p for p in ev_prompts if p in fitted])
        note = f"{path}; {shared} of them among the recipe's prompts"
    else:
        ev_prompts = [p for p in pairs if p not in fitted]
        note = "disjoint from the recipe's prompts"
    missing = [c for c in recipe.info["concepts"] if not any(mentions(p, c) for p in ev_prompts)]
    if missing and args.prompts:
        raise InterventionError(f"{args.prompts}: no prompt names {missing}; UA needs some")
    if missing or not ev_prompts:
        ev_prompts, note = pairs, "every pair: the recipe was fitted on them (not disjoint)"
    used = set(recipe.info.get("seeds", []))
    seeds, s = [], 1000
    while len(seeds) < args.n_images:
        if s not in used:
            seeds.append(s)
        s += 1
    gen = load_generator("world")
    guidance = recipe.info.get("guidance")
    if guidance is not None and float(guidance) != float(gen.default_guidance):
        gen.pipe.default_guidance = float(guidance)
        gen.default_guidance = float(guidance)
    cfg = {"steps": steps, "chunk": 48, "robust_per_family": 3}
    b = Bench(cfg, None, gen=gen)
    t0 = time.perf_counter()
    res = evaluate_recipe(b, recipe, bsae, ev_prompts, seeds, seeds[:2])
    edit = recipe.edit(bsae)
    timing = time_against(
        lambda: generate(gen, ev_prompts, steps, seeds[0], saes=[bsae], edits=[edit]),
        lambda: generate(gen, ev_prompts, steps, seeds[0]),
        repeats=2,
        warmup=1,
    )
    b.bar.close()
    res.update(
        {
            "recipe": str(args.recipe),
            "sae_path": str(sae_dir),
            "block": recipe.info["block"],
            "percentile": recipe.info.get("percentile"),
            "gamma": recipe.info.get("gamma"),
            "selected_pairs": int(recipe.selected_TN.sum()),
            "prompts": ev_prompts,
            "seeds": seeds,
            "split_note": note,
            "selection_split": {
                "prompts": recipe.info.get("prompts"),
                "seeds": recipe.info.get("seeds"),
            },
            "cost": {
                "generation_ratio": timing.ratio,
                "generation": timing.as_dict(),
                "generation_images": len(ev_prompts),
                "fit_seconds": recipe.info.get("fit_seconds"),
            },
            "images_generated": b.bar.n,
            "seconds": time.perf_counter() - t0,
        }
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "debug")}
    (out / "arguments.json").write_text(json.dumps(arguments, indent=2) + "\n")
    (out / "eval.json").write_text(json.dumps(res, indent=2) + "\n")
    _plot(res, out / "eval.png")
    (out / "eval.md").write_text(_markdown(res))
    sae = res["sae"]
    ua = ", ".join(f"{c} {v:.2f}" for c, v in sae["ua"].items() if v is not None)
    line = f"UA {ua}"
    if "ira" in sae:
        line += (
            f"; IRA rel. {_fmt(sae['ira']['relative'])}; CRA rel. {_fmt(sae['cra']['relative'])}"
        )
    print(f"wrote {out}: {line}")
    return 0
