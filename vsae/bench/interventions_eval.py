"""Judged evaluations of SAE edits on the tiny diffusion model (used by ``vsae bench
interventions``): find each concept's latent, steer prompts towards it, draw feature icons.

Every image is judged by the world's attribute judge (``vsae.world.load_judge``); rates are
fractions of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vsae.interventions import BlockSAE, Icon, LatentStats, Steer, generate, latent_maps
from vsae.interventions.generator import Generator
from vsae.world import ATTRIBUTES


@dataclass(frozen=True)
class Setup:
    """What every evaluation shares: the pipeline, the SAE on its block, statistics, judge."""

    gen: Generator
    bsae: BlockSAE
    stats: LatentStats
    judge: object
    steps: int


def prompt(colour: str, shape: str) -> str:
    """The world's plain prompt for one object."""
    return f"a {colour} {shape}"


def find_concept_latents(
    s: Setup, colours: list[str], shapes: list[str], seeds: list[int]
) -> tuple[dict, dict]:
    """For every colour and shape, the latent that best separates images judged to have it.

    Each selection image's code is its SAE code averaged over the block's positions and the
    denoising steps; a latent's score for a value is Cohen's d between the images the judge
    gives that value and the others (difference of means over the pooled standard deviation).

    Parameters
    ----------
    s : Setup
    colours, shapes : list of str
        The values to find latents for; prompts are every (colour, shape) pair.
    seeds : list of int
        Noise seeds of the selection images (never the evaluation seeds).

    Returns
    -------
    (dict, dict)
        ``{"colour": {value: latent}, "shape": {...}}`` and the scores ``{attr: {value: d}}``.
    """
    prompts = [prompt(c, sh) for c in colours for sh in shapes]
    codes, judged = [], {"colour": [], "shape": []}
    for seed in seeds:
        maps = latent_maps(s.gen, s.bsae, prompts, s.steps, seed=seed)
        codes.append(maps.maps_BNhw.mean(dim=(2, 3)))
        pred = s.judge.predict(maps.images)
        for attr in judged:
            judged[attr] += pred[attr]
    z_BN = torch.cat(codes).double()
    latents, scores = {"colour": {}, "shape": {}}, {"colour": {}, "shape": {}}
    for attr, values in (("colour", colours), ("shape", shapes)):
        labels = np.asarray(judged[attr])
        for v in values:
            pos = torch.as_tensor(labels == v)
            if pos.sum() < 2 or (~pos).sum() < 2:
                continue  # the judge never (or always) sees it: no latent can be chosen
            a, b = z_BN[pos], z_BN[~pos]
            d_N = (a.mean(0) - b.mean(0)) / ((a.var(0) + b.var(0)) / 2 + 1e-6).sqrt()
            latents[attr][v] = int(d_N.argmax())
            scores[attr][v] = float(d_N.max())
    return latents, scores


def steer_pairs(
    s: Setup,
    attr: str,
    values: list[str],
    others: list[str],
    feats: dict[str, int],
    strength: float | None,
    seed: int,
) -> dict:
    """Steer prompts of every value A towards every other value B with B's latent.

    Parameters
    ----------
    s : Setup
    attr : str
        ``colour`` or ``shape``: the steered attribute.
    values : list of str
        Its values (pairs among those with a latent in ``feats``).
    others : list of str
        Values of the other attribute, cycled through the prompts.
    feats : dict
        value -> latent.
    strength : float or None
        In units of the latent's mean activation; None: the bare pipeline (no SAE).
    seed : int

    Returns
    -------
    dict
        ``hit`` (judged B, per pair), ``kept`` (the other attribute judged as prompted, per
        pair), ``pairs`` [(A, B)].
    """
    other_attr = "shape" if attr == "colour" else "colour"
    ps, oth, pairs, edits = [], [], [], []
    for j, b in enumerate(values):
        if b not in feats:
            continue
        sources = [a for a in values if a != b]
        rows = tuple(range(len(ps), len(ps) + len(sources)))
        for i, a in enumerate(sources):
            o = others[(i + j) % len(others)]
            ps.append(prompt(a, o) if attr == "colour" else prompt(o, a))
            oth.append(o)
            pairs.append((a, b))
        if strength is not None:  # one batched run: each target's edit on its own rows
            edits.append(Steer(feature=feats[b], strength=strength, rows=rows))
    if not ps:
        return {"hit": [], "kept": [], "pairs": []}
    if strength is None:
        images = generate(s.gen, ps, s.steps, seed).images
    else:
        images = generate(s.gen, ps, s.steps, seed, saes=[s.bsae], edits=edits, stats=[s.stats])
        images = images.images
    pred = s.judge.predict(images)
    hits = [p == b for p, (_, b) in zip(pred[attr], pairs, strict=True)]
    kept = [p == o for p, o in zip(pred[other_attr], oth, strict=True)]
    return {"hit": hits, "kept": kept, "pairs": pairs}


def choose_strength(
    s: Setup, attr: str, values, others, feats, grid: list[float], seed: int
) -> tuple[float, list[dict]]:
    """The strength of ``grid`` with the best hit rate whose kept rate is >= 0.9 of the bare's.

    Parameters
    ----------
    s, attr, values, others, feats
        As :func:`steer_pairs`.
    grid : list of float
        Candidate strengths.
    seed : int
        A held-out seed (not an evaluation seed).

    Returns
    -------
    (float, list of dict)
        The choice, and per strength its hit and kept rates (with the bare kept rate).
    """
    bare = steer_pairs(s, attr, values, others, feats, None, seed)
    bare_kept = float(np.mean(bare["kept"])) if bare["kept"] else 0.0
    rows = []
    for g in grid:
        r = steer_pairs(s, attr, values, others, feats, g, seed)
        hit, kept = float(np.mean(r["hit"])), float(np.mean(r["kept"]))
        rows.append({"strength": g, "hit": hit, "kept": kept, "bare_kept": bare_kept})
    ok = [r for r in rows if r["kept"] >= 0.9 * bare_kept] or rows
    return max(ok, key=lambda r: (r["hit"], -r["strength"]))["strength"], rows


def icon_rates(s: Setup, feats: dict[str, int], strength: float, seed: int) -> dict[str, bool]:
    """Each colour feature's icon (the empty prompt, update replaced by the feature): judged
    colour == the feature's colour.

    Parameters
    ----------
    s : Setup
    feats : dict
        colour -> latent.
    strength : float
        Icon strength in units of the mean activation.
    seed : int

    Returns
    -------
    dict
        colour -> hit.
    """
    colours = list(feats)
    icons = [Icon(feature=feats[c], strength=strength, rows=(i,)) for i, c in enumerate(colours)]
    if not icons:
        return {}
    run = generate(
        s.gen, [""] * len(icons), s.steps, seed, saes=[s.bsae], edits=icons, stats=[s.stats]
    )
    judged = s.judge.predict(run.images)["colour"]
    out = {c: j == c for c, j in zip(colours, judged, strict=True)}
    return out


def quadrant_mask(position: str, hw: tuple[int, int]) -> np.ndarray:
    """A mask of one image quadrant (``top left`` ...)."""
    h, w = hw
    m = np.zeros(hw, np.float32)
    rows = slice(0, h // 2) if position.startswith("top") else slice(h // 2, h)
    cols = slice(0, w // 2) if position.endswith("left") else slice(w // 2, w)
    m[rows, cols] = 1.0
    return m


OPPOSITE = {p: ATTRIBUTES["position"][3 - i] for i, p in enumerate(ATTRIBUTES["position"])}


def spatial_steering(
    s: Setup, colours: list[str], shapes: list[str], feats: dict, strength: float, seed: int
) -> dict:
    """Steer inside the object's quadrant (judged on the bare image) and inside the opposite
    one: the first should change the object's colour, the second keep it.

    Parameters
    ----------
    s : Setup
    colours, shapes : list of str
    feats : dict
        colour -> latent.
    strength : float
    seed : int

    Returns
    -------
    dict
        ``inside_hit`` (judged the target colour, mask on the object) and ``outside_kept``
        (judged the prompt's colour, mask on the opposite quadrant), per image.
    """
    ps, want_in, want_out, feat = [], [], [], []
    for j, b in enumerate(colours):
        if b not in feats:
            continue
        for i, a in enumerate([a for a in colours if a != b][:3]):
            ps.append(prompt(a, shapes[(i + j) % len(shapes)]))
            want_in.append(b)
            want_out.append(a)
            feat.append(feats[b])
    if not ps:
        return {"inside_hit": [], "outside_kept": []}
    where = s.judge.predict(generate(s.gen, ps, s.steps, seed).images)["position"]
    res, hw = {}, s.gen.image_hw
    for name, quad in (("inside", lambda p: p), ("outside", lambda p: OPPOSITE[p])):
        edits = [
            Steer(feature=f, strength=strength, rows=(i,), mask=quadrant_mask(quad(pos), hw))
            for i, (f, pos) in enumerate(zip(feat, where, strict=True))
        ]
        run = generate(s.gen, ps, s.steps, seed, saes=[s.bsae], edits=edits, stats=[s.stats])
        res[name] = s.judge.predict(run.images)["colour"]
    inside = [j == w for j, w in zip(res["inside"], want_in, strict=True)]
    outside = [j == w for j, w in zip(res["outside"], want_out, strict=True)]
    return {"inside_hit": inside, "outside_kept": outside}
