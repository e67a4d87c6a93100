"""Concept unlearning with SAEs (SAeUron method) on the tiny world, issue 18 §3.

1. Extract U-Net blocks of the tiny diffusion model over colour x shape prompts and train a
   TopK SAE on each (``vsae extract`` / ``vsae train``, as ``vsae bench interventions``).
2. Split the 48 "a {colour} {shape}" prompts into a selection half and an evaluation half
   (every colour and shape in both) and the seeds into fit, selection and evaluation seeds.
3. Per kind (colours, shapes), choose the block, percentile and gamma on the selection split
   (the mean over the kind's concepts of UA, relative IRA and relative CRA, each capped at 1).
4. For every one of the 14 concepts as the target, on the evaluation split: UA / IRA / CRA,
   absolute and relative to the bare pipeline on the same prompts, seeds and batch positions;
   the same for the negative-prompt baseline (guidance away from the concept); judge
   confidence and the judge-feature Fréchet distance on non-target images; robustness
   (other caption frames, other word orders, the attribute alone, two-object prompts).
5. Sequential removal of 3 colours and of 3 shapes (metrics after each added concept; the
   last step is the 3-at-once recipe).
6. Cost: the time to fit a recipe, and generation with a recipe against the bare pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vsae.bench.harness import add_common_arguments, make_report, target
from vsae.world import COLOURS, SHAPES

FULL = {
    "colours": list(COLOURS),
    "shapes": list(SHAPES),
    "extract_repeats": 1,
    # 10 DDIM steps (the world model's default is 20) so the full run fits a loaded 2-core
    # CPU; every bare figure is measured at the same steps in the same run
    "steps": 10,
    "train_steps": 600,
    "batch_size": 1024,
    "expansion": 8,
    "k": 8,
    "blocks": ["up_blocks.1.attentions.0", "up_blocks.1.attentions.1"],
    "percentiles": [95.0, 98.5],
    "gammas": [-3.0, -10.0],
    "fit_seeds": [0, 1],
    "select_seeds": [101],
    "select_others": 6,
    "eval_seeds": [7, 8],
    "robust_seeds": [7],
    "robust_per_family": 2,
    "chunk": 48,
    "multi": {"colours": ["red", "green", "blue"], "shapes": ["circle", "square", "star"]},
    "timing_repeats": 2,
}
QUICK = {
    **FULL,
    "colours": ["red", "blue", "green"],
    "shapes": ["circle", "square"],
    "extract_repeats": 4,
    "steps": 4,
    "train_steps": 100,
    "batch_size": 256,
    "blocks": ["up_blocks.1.attentions.0"],
    "percentiles": [99.0],
    "gammas": [-20.0],
    "fit_seeds": [0],
    "select_seeds": [101],
    "select_others": 2,
    "eval_seeds": [7, 8],
    "robust_seeds": [7],
    "robust_per_family": 1,
    "chunk": 48,
    "multi": {"colours": ["red", "blue"], "shapes": ["circle"]},
    "timing_repeats": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--out`` and the work folder."""
    add_common_arguments(parser)
    parser.add_argument(
        "--workdir",
        default="runs/bench-unlearning",
        help="where the shards and SAEs are written (default: %(default)s; shards reused)",
    )
    parser.add_argument(
        "--reuse-sae",
        action="store_true",
        help="reuse a block SAE the workdir already holds when it was trained with the same "
        "settings (recorded in train-settings.json) instead of retraining it",
    )


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _cap(x: float | None) -> float:
    return 0.0 if x is None else min(1.0, float(x))


class Bench:
    """The shared state of one run: pipeline, judge, SAEs, statistics, bare-chunk cache."""

    def __init__(self, cfg: dict, work: Path | None, gen=None) -> None:
        from vsae import world
        from vsae.interventions import load_generator

        self.cfg, self.work = cfg, work
        self.gen = gen if gen is not None else load_generator("world")
        self.judge = world.load_judge()
        self.cache: dict = {}
        self.bsaes: dict = {}
        self.sae_dirs: dict = {}
        self.means: dict = {}
        self.training: dict = {}
        self.bar = tqdm(desc="unlearning images", unit="img", leave=False)
        self.reuse = False

    def rows(self, rows, recipes, seed, bsae=None):
        """Judge ``rows`` generated at ``seed`` (chunked, per-row edits)."""
        from vsae.interventions.unlearn_eval import judge_rows, run_rows

        images = run_rows(
            self.gen,
            bsae,
            rows,
            recipes,
            self.cfg["steps"],
            seed,
            chunk=self.cfg["chunk"],
            cache=self.cache,
            progress=self.bar.update,
        )
        return judge_rows(self.judge, images, [r.prompt for r in rows])


def _train(b: Bench) -> None:
    from vsae.bench.interventions import train_block_sae
    from vsae.interventions import load_block_sae

    keys = ("colours", "shapes", "extract_repeats", "steps", "train_steps", "batch_size", "k")
    for block in b.cfg["blocks"]:
        work = b.work / block.replace(".", "-")
        work.mkdir(parents=True, exist_ok=True)
        stamp = work / "train-settings.json"
        now = json.dumps({**{k: b.cfg[k] for k in keys + ("expansion",)}, "block": block})
        t0 = time.perf_counter()
        sae_dir = work / "sae"
        reuse = b.reuse and stamp.is_file() and stamp.read_text() == now
        if reuse and (sae_dir / "metrics.json").is_file():
            metrics = json.loads((sae_dir / "metrics.json").read_text())
            info = {"extract": None, "train": None, "metrics": metrics}
        else:
            reuse = False
            sae_dir, info = train_block_sae({**b.cfg, "block": block}, work)
            stamp.write_text(now)
        b.sae_dirs[block] = sae_dir
        b.bsaes[block] = load_block_sae(sae_dir, block)
        b.training[block] = {
            "extract": info["extract"],
            "train": info["train"],
            "fvu": info["metrics"].get("fvu"),
            "reused": reuse,
            "seconds": time.perf_counter() - t0,
        }


def _means(b: Bench, block: str, prompts: list[str]):
    from vsae.interventions.unlearn import step_means

    if block not in b.means:
        t0 = time.perf_counter()
        mu = step_means(b.gen, b.bsaes[block], prompts, b.cfg["steps"], b.cfg["fit_seeds"])
        b.means[block] = (mu, time.perf_counter() - t0)
    return b.means[block][0]


def _fit(b: Bench, block, concepts, prompts, percentile, gamma):
    from vsae.interventions import fit_from_means

    mu = _means(b, block, prompts)
    info = {"sae_path": str(b.sae_dirs[block]), "seeds": list(b.cfg["fit_seeds"])}
    return fit_from_means(b.bsaes[block], concepts, prompts, mu, percentile, gamma, info)


def _layout(concepts, prompts, n_others):
    """Per concept, its prompts and ``n_others`` non-target prompts (all when None)."""
    from vsae.interventions.unlearn import mentions

    out = {}
    for i, c in enumerate(concepts):
        on = [p for p in prompts if mentions(p, c)]
        off = [p for p in prompts if not mentions(p, c)]
        if n_others is not None and n_others < len(off):
            start = (3 * i) % len(off)
            off = [off[(start + j) % len(off)] for j in range(n_others)]
        out[c] = on + off
    return out


def _evaluate(b: Bench, recipes: dict, prompts: dict, seeds, negatives: dict | None = None):
    """Judged metrics of each named recipe (one block per call) and its negative-prompt twin.

    ``recipes``: name -> (concepts, Recipe or None, block); ``prompts``: name -> prompts.
    Returns name -> {"sae": metrics, "negative": metrics, "judged": (edited, neg, bare)}.
    """
    from vsae.interventions.unlearn_eval import Row, concat, recipe_metrics

    out = {}
    by_block: dict = {}
    for name, (_, _, block) in recipes.items():
        by_block.setdefault(block, []).append(name)
    edited, neg, bare = {n: [] for n in recipes}, {n: [] for n in recipes}, {n: [] for n in recipes}
    for block, names in by_block.items():
        rec_list = [recipes[n][1] for n in names]
        rows_e, rows_n, rows_b, spans, nspans = [], [], [], {}, {}
        for k, n in enumerate(names):
            ps = prompts[n]
            spans[n] = (len(rows_e), len(rows_e) + len(ps))
            rows_e += [Row(p, k) for p in ps]
            rows_b += [Row(p) for p in ps]
            neg_text = (negatives or {}).get(n)
            if neg_text is not None:
                nspans[n] = (len(rows_n), len(rows_n) + len(ps))
                rows_n += [Row(p, None, neg_text) for p in ps]
        for seed in seeds:
            je = b.rows(rows_e, rec_list, seed, b.bsaes[block])
            jb = b.rows(rows_b, rec_list, seed)
            jn = b.rows(rows_n, rec_list, seed) if rows_n else None
            for n in names:
                lo, hi = spans[n]
                idx = list(range(lo, hi))
                edited[n].append(_sub(je, idx))
                bare[n].append(_sub(jb, idx))
                if n in nspans:
                    lo, hi = nspans[n]
                    neg[n].append(_sub(jn, list(range(lo, hi))))
    for n, (concepts, _, _) in recipes.items():
        e, bb = concat(edited[n]), concat(bare[n])
        res = {"sae": recipe_metrics(concepts, e, bb), "judged": {"edited": e, "bare": bb}}
        if neg[n]:
            nn = concat(neg[n])
            res["negative"] = recipe_metrics(concepts, nn, bb)
            res["judged"]["negative"] = nn
        out[n] = res
    return out


def _sub(j, idx):
    from vsae.interventions.unlearn_eval import subset

    return subset(j, idx)


def _score(m: dict) -> float:
    return (_cap(m["ua_mean"]) + _cap(m["ira"]["relative"]) + _cap(m["cra"]["relative"])) / 3


def _select(b: Bench, sel_prompts, concepts_by_kind) -> dict:
    """Per kind, the (block, percentile, gamma) with the best selection score."""
    cfg = b.cfg
    chosen, grid_rows = {}, {}
    for kind, concepts in concepts_by_kind.items():
        lay = _layout(concepts, sel_prompts, cfg["select_others"])
        rows = []
        for block in cfg["blocks"]:
            for pc in cfg["percentiles"]:
                for g in cfg["gammas"]:
                    recipes = {
                        c: ([c], _fit(b, block, [c], sel_prompts, pc, g), block) for c in concepts
                    }
                    res = _evaluate(b, recipes, lay, cfg["select_seeds"])
                    ms = [res[c]["sae"] for c in concepts]
                    row = {
                        "block": block,
                        "percentile": pc,
                        "gamma": g,
                        "ua": _mean(m["ua_mean"] for m in ms),
                        "ira_relative": _mean(m["ira"]["relative"] for m in ms),
                        "cra_relative": _mean(m["cra"]["relative"] for m in ms),
                        "score": float(np.mean([_score(m) for m in ms])),
                    }
                    rows.append(row)
        best = max(rows, key=lambda r: r["score"])
        chosen[kind] = {k: best[k] for k in ("block", "percentile", "gamma")}
        grid_rows[kind] = rows
    return {"chosen": chosen, "grid": grid_rows}


def _summary(per: dict, method: str, names) -> dict:
    ms = [per[c][method] for c in names]
    ua = {c: per[c][method]["ua_mean"] for c in names}
    ira = {c: per[c][method]["ira"]["relative"] for c in names}
    cra = {c: per[c][method]["cra"]["relative"] for c in names}

    def worst(d):
        vals = {k: v for k, v in d.items() if v is not None}
        k = min(vals, key=vals.get) if vals else None
        return {"concept": k, "value": vals.get(k)}

    return {
        "ua_mean": _mean(ua.values()),
        "ira_relative_mean": _mean(ira.values()),
        "cra_relative_mean": _mean(cra.values()),
        "ira_absolute_mean": _mean(m["ira"]["edited"] for m in ms),
        "cra_absolute_mean": _mean(m["cra"]["edited"] for m in ms),
        "ira_bare_mean": _mean(m["ira"]["bare"] for m in ms),
        "cra_bare_mean": _mean(m["cra"]["bare"] for m in ms),
        "worst_ua": worst(ua),
        "worst_ira_relative": worst(ira),
        "worst_cra_relative": worst(cra),
        "confidence_non_target": _mean(m["confidence"]["edited"] for m in ms),
        "confidence_non_target_bare": _mean(m["confidence"]["bare"] for m in ms),
    }


def _quality(per: dict, names, eval_seeds) -> dict:
    """Judge-feature Fréchet distance on non-target rows, pooled over the concepts."""
    from vsae.interventions.unlearn import mentions
    from vsae.interventions.unlearn_eval import frechet_distance

    keys = ("sae", "negative", "bare")
    same = {k: [] for k in keys}
    first = {k: [] for k in keys}  # rows of the first evaluation seed
    second = []  # bare rows of the second evaluation seed
    for c in names:
        j = per[c]["judged"]
        removed = per[c]["sae"]["concepts"]
        per_seed = len(j["bare"].prompts) // max(1, len(eval_seeds))
        for k, jj in (("sae", j["edited"]), ("negative", j["negative"]), ("bare", j["bare"])):
            idx = [i for i, p in enumerate(jj.prompts) if not any(mentions(p, x) for x in removed)]
            same[k].append(jj.features[idx])
            first[k].append(jj.features[[i for i in idx if i < per_seed]])
            if k == "bare":
                second.append(jj.features[[i for i in idx if per_seed <= i < 2 * per_seed]])
    cat = {k: np.concatenate(v) for k, v in same.items()}
    a = {k: np.concatenate(v) for k, v in first.items()}
    b2 = np.concatenate(second)
    return {
        "name": "judge-feature Fréchet distance (256-d trunk features of the world judge; not FID)",
        "same_noise": {
            "sae_vs_bare": frechet_distance(cat["sae"], cat["bare"]),
            "negative_prompt_vs_bare": frechet_distance(cat["negative"], cat["bare"]),
            "n_images_per_side": len(cat["bare"]),
        },
        "other_seed": {
            "sae_vs_bare": frechet_distance(a["sae"], b2),
            "negative_prompt_vs_bare": frechet_distance(a["negative"], b2),
            "bare_vs_bare": frechet_distance(a["bare"], b2),
            "n_images_per_side": len(b2),
        },
        "note": "non-target rows of the evaluation split pooled over the concepts. same_noise: "
        "each image against the bare image of the same prompt and noise. other_seed: images "
        "of the first evaluation seed against bare images of the second, so bare_vs_bare is "
        "the floor two draws of the bare pipeline give at this sample size",
    }


def _robustness(b: Bench, recipes: dict, ev_prompts) -> dict:
    """UA of each concept's recipe (and of the negative prompt, and bare) per prompt family."""
    from vsae.interventions.unlearn_eval import (
        Row,
        concat,
        kind_of,
        negative_prompt,
        robustness_prompts,
        ua_of,
    )

    cfg = b.cfg
    fams, by_block = {}, {}
    for c, (_, _, block) in recipes.items():
        k = kind_of(c)
        partners = [
            p.split()[2] if k == "colour" else p.split()[1] for p in ev_prompts if c in p.split()
        ]
        fams[c] = robustness_prompts(c, partners, cfg["robust_per_family"])
        by_block.setdefault(block, []).append(c)
    judged = {c: {"sae": [], "negative": [], "bare": []} for c in recipes}
    layout = {}
    for block, names in by_block.items():
        rec_list = [recipes[c][1] for c in names]
        rows_e, rows_n, rows_b, spans = [], [], [], []
        for k, c in enumerate(names):
            for fam, ps in fams[c].items():
                spans.append((c, fam, len(rows_e), len(rows_e) + len(ps)))
                rows_e += [Row(p, k) for p in ps]
                rows_n += [Row(p, None, negative_prompt([c])) for p in ps]
                rows_b += [Row(p) for p in ps]
        layout[block] = spans
        for seed in cfg["robust_seeds"]:
            parts = {
                "sae": b.rows(rows_e, rec_list, seed, b.bsaes[block]),
                "negative": b.rows(rows_n, rec_list, seed),
                "bare": b.rows(rows_b, rec_list, seed),
            }
            for c, fam, lo, hi in spans:
                for m, j in parts.items():
                    judged[c][m].append((fam, _sub(j, list(range(lo, hi)))))
    out = {}
    for c, fam_prompts in fams.items():
        res = {}
        for fam, ps in fam_prompts.items():
            row = {"prompts": ps}
            for m in ("sae", "negative", "bare"):
                js = [j for f, j in judged[c][m] if f == fam]
                row["ua_" + m] = ua_of(c, concat(js))
            res[fam] = row
        out[c] = res
    return out


def _sequential(b: Bench, chosen, sel_prompts, ev_prompts) -> dict:
    from vsae.interventions import sequential_recipes
    from vsae.interventions.unlearn_eval import negative_prompt

    cfg = b.cfg
    out = {}
    for kind, concepts in cfg["multi"].items():
        ch = chosen["colour" if kind == "colours" else "shape"]
        block = ch["block"]
        mu = _means(b, block, sel_prompts)
        info = {"sae_path": str(b.sae_dirs[block]), "seeds": list(cfg["fit_seeds"])}
        recs = sequential_recipes(
            b.bsaes[block], concepts, sel_prompts, mu, ch["percentile"], ch["gamma"], info
        )
        named = {f"{kind}-{i + 1}": (concepts[: i + 1], r, block) for i, r in enumerate(recs)}
        prompts = {n: list(ev_prompts) for n in named}
        last = list(named)[-1]  # the baseline for the all-at-once step only
        negs = {last: negative_prompt(named[last][0])}
        res = _evaluate(b, named, prompts, cfg["eval_seeds"], negs)
        steps = []
        for n, (cs, r, _) in named.items():
            m, ng = res[n]["sae"], res[n].get("negative")
            step = {
                "removed": cs,
                "selected_pairs": int(r.selected_TN.sum()),
                "ua": m["ua"],
                "ira": m["ira"],
                "cra": m["cra"],
            }
            if ng is not None:
                step["negative_prompt"] = {"ua": ng["ua"], "ira": ng["ira"], "cra": ng["cra"]}
            steps.append(step)
        out[kind] = {"block": block, **{k: ch[k] for k in ("percentile", "gamma")}}
        out[kind]["steps"] = steps
    return out


def _cost(b: Bench, chosen, sel_prompts, ev_prompts, recipe) -> dict:
    from vsae.interventions import generate
    from vsae.interventions.unlearn import step_means

    from .harness import time_against

    cfg = b.cfg
    block = chosen["colour"]["block"]
    t0 = time.perf_counter()
    mu = step_means(b.gen, b.bsaes[block], sel_prompts, cfg["steps"], cfg["fit_seeds"])
    t_means = time.perf_counter() - t0
    t0 = time.perf_counter()
    from vsae.interventions import fit_from_means

    c = cfg["colours"][0]
    ch = chosen["colour"]
    fit_from_means(b.bsaes[block], [c], sel_prompts, mu, ch["percentile"], ch["gamma"])
    t_fit = time.perf_counter() - t0
    ps = list(ev_prompts)
    edit = recipe.edit(b.bsaes[block])
    timing = time_against(
        lambda: generate(b.gen, ps, cfg["steps"], 0, saes=[b.bsaes[block]], edits=[edit]),
        lambda: generate(b.gen, ps, cfg["steps"], 0),
        repeats=cfg["timing_repeats"],
        warmup=1,
    )
    return {
        "fit_seconds": t_means + t_fit,
        "fit_statistics_seconds": t_means,
        "fit_selection_seconds": t_fit,
        "fit_images": len(sel_prompts) * len(cfg["fit_seeds"]),
        "generation": timing.as_dict(),
        "generation_ratio": timing.ratio,
        "generation_images": len(ps),
    }


def evaluate_recipe(b: Bench, recipe, bsae, ev_prompts, seeds, robust_seeds) -> dict:
    """Everything ``vsae unlearn eval`` reports for one recipe (it may remove several concepts).

    Parameters
    ----------
    b : Bench
        With ``cfg`` holding ``steps``, ``chunk`` and ``robust_per_family``.
    recipe : Recipe
    bsae : BlockSAE
        The recipe's SAE on its block.
    ev_prompts : list of str
        Evaluation prompts (``a {colour} {shape}``).
    seeds, robust_seeds : list of int
        Evaluation seeds of the main prompts and of the robustness prompts.

    Returns
    -------
    dict
        ``sae`` and ``negative_prompt`` metrics (:func:`recipe_metrics`), ``quality`` and
        ``robustness`` per removed concept and prompt family.
    """
    from vsae.interventions.unlearn_eval import negative_prompt

    concepts = list(recipe.info["concepts"])
    block = bsae.block
    b.bsaes[block] = bsae
    b.cfg = {**b.cfg, "eval_seeds": list(seeds), "robust_seeds": list(robust_seeds)}
    named = {"recipe": (concepts, recipe, block)}
    per = _evaluate(b, named, {"recipe": list(ev_prompts)}, seeds,
                    {"recipe": negative_prompt(concepts)})  # fmt: skip
    quality = _quality(per, ["recipe"], seeds)
    robust = _robustness(b, {c: (concepts, recipe, block) for c in concepts}, ev_prompts)
    return {
        "sae": per["recipe"]["sae"],
        "negative_prompt": per["recipe"]["negative"],
        "quality": quality,
        "robustness": robust,
    }


def _strip(per: dict) -> dict:
    return {c: {k: v for k, v in r.items() if k != "judged"} for c, r in per.items()}


def run(args: argparse.Namespace) -> dict:
    """Train, select, evaluate; return the report."""
    from vsae.interventions.unlearn_eval import negative_prompt, split_pairs

    torch.manual_seed(0)
    cfg = QUICK if args.quick else FULL
    work = Path(args.workdir) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    b = Bench(cfg, work)
    b.reuse = bool(getattr(args, "reuse_sae", False))
    _train(b)
    sel_prompts, ev_prompts = split_pairs(cfg["colours"], cfg["shapes"])
    by_kind = {"colour": list(cfg["colours"]), "shape": list(cfg["shapes"])}
    selection = _select(b, sel_prompts, by_kind)
    chosen = selection["chosen"]
    names = by_kind["colour"] + by_kind["shape"]
    recipes = {}
    for kind, concepts in by_kind.items():
        ch = chosen[kind]
        for c in concepts:
            r = _fit(b, ch["block"], [c], sel_prompts, ch["percentile"], ch["gamma"])
            recipes[c] = ([c], r, ch["block"])
    per = _evaluate(
        b,
        recipes,
        {c: list(ev_prompts) for c in names},
        cfg["eval_seeds"],
        {c: negative_prompt([c]) for c in names},
    )
    for c in names:
        r = recipes[c][1]
        per[c]["recipe"] = {
            "block": recipes[c][2],
            "percentile": r.info["percentile"],
            "gamma": r.info["gamma"],
            "selected_pairs": int(r.selected_TN.sum()),
        }
    quality = _quality(per, names, cfg["eval_seeds"])
    robust = _robustness(b, recipes, ev_prompts)
    for c in names:
        per[c]["robustness"] = robust[c]
    sequential = _sequential(b, chosen, sel_prompts, ev_prompts)
    cost = _cost(b, chosen, sel_prompts, ev_prompts, recipes[names[0]][1])
    b.bar.close()
    summary = {
        "sae": _summary(per, "sae", names),
        "negative_prompt": _summary(per, "negative", names),
    }
    fams = ("other_frames", "word_order", "alone", "two_objects")
    robust_mean = {
        m: {f: _mean(robust[c][f]["ua_" + m] for c in names) for f in fams}
        for m in ("sae", "negative", "bare")
    }
    results = {
        "splits": {
            "selection": {
                "prompts": sel_prompts,
                "fit_seeds": cfg["fit_seeds"],
                "select_seeds": cfg["select_seeds"],
                "note": "recipes are fitted on these prompts at fit_seeds; hyperparameters "
                "are chosen on them at select_seeds",
            },
            "evaluation": {
                "prompts": ev_prompts,
                "seeds": cfg["eval_seeds"],
                "robustness_seeds": cfg["robust_seeds"],
            },
        },
        "training": b.training,
        "selection": selection,
        "summary": summary,
        "quality": quality,
        "robustness_mean": robust_mean,
        "per_concept": _strip(per),
        "sequential": sequential,
        "cost": cost,
        "images_generated": b.bar.n,
        "seconds": time.perf_counter() - t_start,
    }
    s = summary["sae"]
    ua_all = [per[c]["sae"]["ua_mean"] for c in names]
    ira_all = [per[c]["sae"]["ira"]["relative"] for c in names]
    cra_all = [per[c]["sae"]["cra"]["relative"] for c in names]
    targets = [
        target("ua_mean", ">= 0.95 (mean over the 14 concepts)", [s["ua_mean"]],
               lambda v: v >= 0.95, per_concept=dict(zip(names, ua_all, strict=True)),
               worst=s["worst_ua"]),
        target("ira_relative_mean", ">= 0.90 of the bare accuracy (mean over the 14)",
               [s["ira_relative_mean"]], lambda v: v >= 0.9,
               per_concept=dict(zip(names, ira_all, strict=True)),
               worst=s["worst_ira_relative"]),
        target("cra_relative_mean", ">= 0.90 of the bare accuracy (mean over the 14)",
               [s["cra_relative_mean"]], lambda v: v >= 0.9,
               per_concept=dict(zip(names, cra_all, strict=True)),
               worst=s["worst_cra_relative"]),
    ]  # fmt: skip
    for kind, res in sequential.items():
        last = res["steps"][-1]
        targets.append(
            target(
                f"multi_{kind}_ira_relative",
                f">= 0.85 of bare, {len(last['removed'])} {kind} removed at once",
                [last["ira"]["relative"] or 0.0],
                lambda v: v >= 0.85,
                ua=last["ua"],
            )
        )
        targets.append(
            target(
                f"multi_{kind}_cra_relative",
                f">= 0.85 of bare, {len(last['removed'])} {kind} removed at once",
                [last["cra"]["relative"] or 0.0],
                lambda v: v >= 0.85,
            )
        )
    targets.append(
        target(
            "generation_time_ratio",
            "<= 1.3x the bare pipeline (same prompts, same run)",
            [cost["generation_ratio"]],
            lambda v: v <= 1.3,
        )
    )
    settings = {"quick": bool(args.quick), **cfg, "workdir": str(work)}
    return make_report("unlearning", settings, results, targets)
