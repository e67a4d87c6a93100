"""Judged evaluation of unlearning recipes on the tiny world (UnlearnCanvas-style, issue 18).

The world's 8 colours and 6 shapes play UnlearnCanvas's styles and objects; the world's judge
(``vsae.world.load_judge``) is the classifier. For a recipe removing concepts C of one kind:

- **UA** (per concept c) = 1 - the fraction of images of prompts naming c judged c;
- **IRA** = judged accuracy of that kind on the prompts naming no concept of C;
- **CRA** = judged accuracy of the other kind on the same prompts.

Every figure is also measured on the bare pipeline with the same prompts, seeds and batch
positions (the world's noise depends on a row's position in its batch, so bare and edited runs
share one layout), and IRA / CRA are given relative to it. Image quality kept: the judge's
confidence in the prompted values on non-target prompts, and the **judge-feature Fréchet
distance** (the Fréchet distance between Gaussians fitted to the judge's 256-d trunk features;
not FID, which uses Inception features) between non-target images with and without the recipe.

Rows are generated in fixed chunks with a per-row edit (``Unlearn(rows=...)``) or a per-row
negative prompt, so many recipes share one batched run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from vsae.world import COLOURS, SHAPES
from vsae.world.judge import attributes_in_prompt

from .block_sae import BlockSAE
from .errors import InterventionError
from .generator import Generator
from .run import generate
from .unlearn import Recipe, mentions

KINDS: dict[str, tuple[str, ...]] = {"colour": COLOURS, "shape": SHAPES}
OTHER = {"colour": "shape", "shape": "colour"}


def kind_of(concept: str) -> str:
    """``colour`` or ``shape``: the world attribute a concept word is a value of.

    Parameters
    ----------
    concept : str

    Returns
    -------
    str

    Raises
    ------
    InterventionError
        A word that is no colour or shape of the world.
    """
    for kind, values in KINDS.items():
        if concept in values:
            return kind
    raise InterventionError(
        f"concept {concept!r}: the tiny world's judge knows the colours {list(COLOURS)} and "
        f"the shapes {list(SHAPES)}"
    )


def prompt(colour: str, shape: str) -> str:
    """The world's plain one-object prompt ``a {colour} {shape}``.

    Parameters
    ----------
    colour, shape : str

    Returns
    -------
    str
    """
    return f"a {colour} {shape}"


def split_pairs(
    colours: Sequence[str] = COLOURS, shapes: Sequence[str] = SHAPES
) -> tuple[list[str], list[str]]:
    """Disjoint selection and evaluation prompts: pair (i, j) goes to selection when i + j is
    even, so every colour and every shape has prompts in both halves.

    Parameters
    ----------
    colours, shapes : list of str

    Returns
    -------
    (list of str, list of str)
        Selection prompts, evaluation prompts.
    """
    sel, ev = [], []
    for i, c in enumerate(colours):
        for j, s in enumerate(shapes):
            (sel if (i + j) % 2 == 0 else ev).append(prompt(c, s))
    return sel, ev


def negative_prompt(concepts: Sequence[str]) -> str:
    """The negative prompt of the baseline: ``a red object`` for a colour, ``a circle`` for a
    shape, joined with ``and`` for several.

    Parameters
    ----------
    concepts : list of str

    Returns
    -------
    str
    """
    parts = [f"a {c} object" if kind_of(c) == "colour" else f"a {c}" for c in concepts]
    return " and ".join(parts)


@dataclass(frozen=True)
class Row:
    """One image to generate.

    Attributes
    ----------
    prompt : str
    recipe : int or None
        Index into the run's recipes (None: no edit).
    negative : str or None
        Negative prompt (None: the empty prompt).
    """

    prompt: str
    recipe: int | None = None
    negative: str | None = None


def run_rows(
    gen: Generator,
    bsae: BlockSAE | None,
    rows: Sequence[Row],
    recipes: Sequence[Recipe],
    steps: int,
    seed: int,
    chunk: int = 48,
    guidance: float | None = None,
    cache: dict | None = None,
    progress=None,
) -> np.ndarray:
    """Generate ``rows`` in chunks of ``chunk``, each recipe applied to its own rows.

    A chunk without any recipe runs the bare pipeline (no SAE attached); chunks already in
    ``cache`` (same prompts, recipes, negatives and seed) are not run again.

    Parameters
    ----------
    gen : Generator
    bsae : BlockSAE or None
        The recipes' SAE on its block (needed when a row has a recipe).
    rows : list of Row
    recipes : list of Recipe
    steps : int
    seed : int
    chunk : int
        Rows per batched run; row i's noise depends on ``(seed, i % chunk)``.
    guidance : float, optional
    cache : dict, optional
        Chunk key -> images, shared between calls.
    progress : callable, optional
        Called with the number of rows done after each chunk.

    Returns
    -------
    np.ndarray
        uint8 ``[len(rows), H, W, 3]``.
    """
    out = []
    for start in range(0, len(rows), chunk):
        part = list(rows[start : start + chunk])
        key = (
            tuple(r.prompt for r in part),
            tuple(None if r.recipe is None else id(recipes[r.recipe]) for r in part),
            tuple(r.negative for r in part),
            seed,
            steps,
        )
        if cache is not None and key in cache:
            out.append(cache[key])
            continue
        prompts = [r.prompt for r in part]
        negatives = None
        if any(r.negative is not None for r in part):
            negatives = [r.negative or "" for r in part]
        edits = []
        for k in sorted({r.recipe for r in part if r.recipe is not None}):
            if bsae is None:
                raise InterventionError("rows with a recipe need its SAE (bsae)")
            on = tuple(i for i, r in enumerate(part) if r.recipe == k)
            edits.append(_with_rows(recipes[k].edit(bsae), on))
        run = generate(
            gen,
            prompts,
            steps,
            seed,
            guidance,
            saes=[bsae] if edits else [],
            edits=edits,
            negative_prompts=negatives,
        )
        if cache is not None:
            cache[key] = run.images
        out.append(run.images)
        if progress is not None:
            progress(len(part))
    return np.concatenate(out)


def _with_rows(edit, rows: tuple[int, ...]):
    from dataclasses import replace

    return replace(edit, rows=rows)


@dataclass(frozen=True)
class Judged:
    """The judge's reading of a set of rows.

    Attributes
    ----------
    prompts : list of str
    pred : dict
        attribute -> predicted value per row.
    prob : dict
        ``colour`` / ``shape`` -> the judge's probability of the prompted value per row
        (NaN where the prompt names none).
    features : np.ndarray
        ``[N, 256]`` trunk features.
    """

    prompts: list[str]
    pred: dict
    prob: dict
    features: np.ndarray


def judge_rows(judge, images: np.ndarray, prompts: Sequence[str]) -> Judged:
    """Predictions, prompted-value probabilities and features of generated images.

    Parameters
    ----------
    judge : vsae.world.judge.Judge
    images : np.ndarray
    prompts : list of str
        The prompt of each image.

    Returns
    -------
    Judged
    """
    from vsae.world import ATTRIBUTES

    logits = judge.logits(images)
    pred = {a: [ATTRIBUTES[a][i] for i in v.argmax(1).numpy()] for a, v in logits.items()}
    prob = {}
    want = [attributes_in_prompt(p) for p in prompts]
    for kind in KINDS:
        p_NV = logits[kind].softmax(1).numpy()
        vals = ATTRIBUTES[kind]
        prob[kind] = np.array(
            [p_NV[i, vals.index(w[kind])] if kind in w else np.nan for i, w in enumerate(want)]
        )
    return Judged(list(prompts), pred, prob, judge.features(images))


def frechet_distance(a_ND: np.ndarray, b_ND: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``: the formula FID uses, here on
    whatever features are given (this module: the judge's, so it is not FID).

    Parameters
    ----------
    a_ND, b_ND : np.ndarray
        Features, one row per image (at least 2 each).

    Returns
    -------
    float
    """
    if len(a_ND) < 2 or len(b_ND) < 2:
        return float("nan")
    mu = a_ND.mean(0) - b_ND.mean(0)
    sa, sb = np.cov(a_ND, rowvar=False), np.cov(b_ND, rowvar=False)
    # tr (S_a S_b)^(1/2) = tr (S_a^(1/2) S_b S_a^(1/2))^(1/2): symmetric, so eigh is stable
    lam, vec = linalg.eigh(sa)
    half = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T
    inner = linalg.eigvalsh(half @ sb @ half)
    root_trace = float(np.sqrt(np.clip(inner, 0, None)).sum())
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * root_trace)


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and np.isnan(x))]
    return float(np.mean(xs)) if xs else None


def recipe_metrics(concepts: Sequence[str], edited: Judged, bare: Judged) -> dict:
    """UA per concept, IRA / CRA (absolute, bare, relative), confidence on non-target rows.

    Parameters
    ----------
    concepts : list of str
        What the method removes (colours and / or shapes).
    edited, bare : Judged
        The same rows with the method and on the bare pipeline.

    Returns
    -------
    dict
        ``ua`` {concept: value}, ``ua_mean``, per kind ``accuracy`` on non-target rows
        (``edited``, ``bare``, ``relative``), ``ira`` and ``cra`` (when every concept is of
        one kind), ``target_other_kind_kept`` (the other kind on target rows, relative),
        ``confidence`` (edited, bare), ``n_target`` and ``n_other``.
    """
    prompts = edited.prompts
    want = [attributes_in_prompt(p) for p in prompts]
    target = [any(mentions(p, c) for c in concepts) for p in prompts]
    ua, bare_hit = {}, {}
    for c in concepts:
        k = kind_of(c)
        on = [i for i, p in enumerate(prompts) if mentions(p, c)]
        ua[c] = None if not on else 1 - float(np.mean([edited.pred[k][i] == c for i in on]))
        bare_hit[c] = None if not on else float(np.mean([bare.pred[k][i] == c for i in on]))
    others = [i for i, t in enumerate(target) if not t]
    acc = {}
    for kind in KINDS:
        idx = [i for i in others if kind in want[i]]
        e = _mean([float(edited.pred[kind][i] == want[i][kind]) for i in idx])
        b = _mean([float(bare.pred[kind][i] == want[i][kind]) for i in idx])
        acc[kind] = {"edited": e, "bare": b, "relative": _ratio(e, b), "n": len(idx)}
    kinds = {kind_of(c) for c in concepts}
    out = {
        "concepts": list(concepts),
        "ua": ua,
        "ua_mean": _mean(list(ua.values())),
        "bare_judged_target": bare_hit,
        "accuracy": acc,
        "n_target": int(sum(target)),
        "n_other": len(others),
    }
    if len(kinds) == 1:
        k = next(iter(kinds))
        out["ira"], out["cra"] = acc[k], acc[OTHER[k]]
        tgt = [i for i, t in enumerate(target) if t and OTHER[k] in want[i]]
        e = _mean([float(edited.pred[OTHER[k]][i] == want[i][OTHER[k]]) for i in tgt])
        b = _mean([float(bare.pred[OTHER[k]][i] == want[i][OTHER[k]]) for i in tgt])
        out["target_other_kind_kept"] = {"edited": e, "bare": b, "relative": _ratio(e, b)}
    conf = {}
    for name, j in (("edited", edited), ("bare", bare)):
        vals = [j.prob[kind][i] for kind in KINDS for i in others]
        conf[name] = _mean([float(v) for v in vals if not np.isnan(v)])
    out["confidence"] = conf
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def subset(j: Judged, idx: Sequence[int]) -> Judged:
    """The rows ``idx`` of a :class:`Judged`.

    Parameters
    ----------
    j : Judged
    idx : list of int

    Returns
    -------
    Judged
    """
    idx = list(idx)
    return Judged(
        [j.prompts[i] for i in idx],
        {a: [v[i] for i in idx] for a, v in j.pred.items()},
        {a: v[idx] for a, v in j.prob.items()},
        j.features[idx],
    )


def concat(parts: Sequence[Judged]) -> Judged:
    """Several :class:`Judged` as one (rows in order).

    Parameters
    ----------
    parts : list of Judged

    Returns
    -------
    Judged
    """
    return Judged(
        [p for j in parts for p in j.prompts],
        {a: [v for j in parts for v in j.pred[a]] for a in parts[0].pred},
        {a: np.concatenate([j.prob[a] for j in parts]) for a in parts[0].prob},
        np.concatenate([j.features for j in parts]),
    )


def robustness_prompts(concept: str, partners: Sequence[str], n: int = 3) -> dict[str, list]:
    """Paraphrased and two-object prompts naming ``concept``.

    Parameters
    ----------
    concept : str
        A colour or a shape.
    partners : list of str
        Values of the other kind to pair it with (the evaluation split's, cycled).
    n : int
        Prompts per family.

    Returns
    -------
    dict
        Family -> prompts: ``other_frames`` ("a photo of a red circle", "there is a ..."),
        ``word_order`` ("a circle in red" / "red circle"), ``alone`` ("a red object",
        "a circle"), ``two_objects`` (one object has the concept, the other does not).
    """
    k = kind_of(concept)
    others = [v for v in KINDS[k] if v != concept]
    ps = [partners[i % len(partners)] for i in range(n)]

    def pair(value: str, partner: str) -> tuple[str, str]:
        return (value, partner) if k == "colour" else (partner, value)

    frames = ("a photo of a {c} {s}", "there is a {c} {s}", "an image showing a {c} {s}")
    out = {
        "other_frames": [
            frames[i % 3].format(c=pair(concept, p)[0], s=pair(concept, p)[1])
            for i, p in enumerate(ps)
        ],
        "word_order": [
            f"a {pair(concept, p)[1]} in {pair(concept, p)[0]}"
            if i % 2 == 0
            else f"{pair(concept, p)[0]} {pair(concept, p)[1]}"
            for i, p in enumerate(ps)
        ],
        "alone": (
            [f"a {concept} object", f"a {concept} thing", f"a photo of a {concept} shape"]
            if k == "colour"
            else [f"a {concept}", f"a photo of a {concept}", f"there is a {concept}"]
        )[:n],
        "two_objects": [],
    }
    for i, p in enumerate(ps):
        q = partners[(i + 1) % len(partners)]
        o = others[i % len(others)]
        first = prompt(*pair(concept, p))
        second = prompt(*pair(o, q))
        out["two_objects"].append(
            f"{first} and {second}" if i % 2 == 0 else f"{second} and {first}"
        )
    return out


def ua_of(concept: str, j: Judged) -> float | None:
    """1 - the fraction of rows judged to have ``concept``.

    Parameters
    ----------
    concept : str
    j : Judged

    Returns
    -------
    float or None
        None for no rows.
    """
    k = kind_of(concept)
    if not j.prompts:
        return None
    return 1 - float(np.mean([v == concept for v in j.pred[k]]))


__all__ = [
    "KINDS",
    "Judged",
    "Row",
    "concat",
    "frechet_distance",
    "judge_rows",
    "kind_of",
    "negative_prompt",
    "prompt",
    "recipe_metrics",
    "robustness_prompts",
    "run_rows",
    "split_pairs",
    "subset",
    "ua_of",
]
