"""Every tiny-world metric in one JSON-friendly dict (``vsae world eval``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .judge import EVAL_SEED as JUDGE_EVAL_SEED
from .render import render
from .train_clip import EVAL_SEED as CLIP_EVAL_SEED
from .vocab import COLOURS, SHAPES
from .zeroshot import retrieval_at_1, zero_shot_accuracy

TARGETS = {
    "zero_shot": {"colour": 0.95, "shape": 0.90, "size": 0.90, "position": 0.85},
    "judge": 0.98,
    "diffusion": {"colour": 0.90, "shape": 0.75},
}


def colour_shape_prompts(repeats: int = 1) -> tuple[list[str], list[dict]]:
    """Prompts 'a {colour} {shape}' for every pair and what each asks for.

    Parameters
    ----------
    repeats : int
        How many times the 48 pairs are listed.

    Returns
    -------
    (list of str, list of dict)
        The prompts and, per prompt, ``{"colour": ..., "shape": ...}`` for the judge.
    """
    prompts, requests = [], []
    for _ in range(repeats):
        for c in COLOURS:
            for s in SHAPES:
                prompts.append(f"a {c} {s}")
                requests.append({"colour": c, "shape": s})
    return prompts, requests


def eval_clip(kind: str, weights_dir: Path, n: int) -> dict:
    """Zero-shot accuracy per attribute and retrieval@1 of the tiny CLIP or SigLIP.

    Parameters
    ----------
    kind : str
        ``clip`` or ``siglip``.
    weights_dir : Path
        The world weights folder.
    n : int
        Held-out renders (the CLIP trainer's evaluation seed).

    Returns
    -------
    dict
        ``{"zero_shot": {attribute: accuracy}, "retrieval": {...}}``.
    """
    from . import clip as clip_mod

    model, _, tok = clip_mod.load(weights_dir / kind)
    images, scenes = render(n, seed=CLIP_EVAL_SEED)
    return {
        "zero_shot": zero_shot_accuracy(model, tok, images, scenes),
        "retrieval": retrieval_at_1(model, tok, images, scenes),
    }


def eval_judge(weights_dir: Path, n: int) -> dict:
    """The judge's accuracy per attribute on held-out renders.

    Parameters
    ----------
    weights_dir : Path
        The world weights folder.
    n : int
        Held-out renders (the judge trainer's evaluation seed).

    Returns
    -------
    dict
        Attribute -> accuracy in [0, 1].
    """
    from .judge import load as load_judge

    images, scenes = render(n, seed=JUDGE_EVAL_SEED)
    return load_judge(weights_dir / "judge").score(images, scenes)


def eval_diffusion(
    weights_dir: Path, repeats: int, steps: int, guidance: float, seed: int = 0
) -> dict:
    """How often the judge sees the asked colour and shape in generated images.

    Parameters
    ----------
    weights_dir : Path
        The world weights folder.
    repeats : int
        Images per (colour, shape) pair.
    steps : int
        DDIM steps.
    guidance : float
        Classifier-free guidance scale.
    seed : int
        Seed of the first batch's noise.

    Returns
    -------
    dict
        ``steps``, ``guidance``, ``n_images``, ``judged_colour``, ``judged_shape``.
    """
    from . import load_diffusion
    from .judge import load as load_judge

    pipe = load_diffusion(weights_dir)
    judge = load_judge(weights_dir / "judge")
    prompts, requests = colour_shape_prompts(repeats)
    images = np.concatenate(
        [
            pipe(
                prompts[i : i + 96], steps=steps, guidance=guidance, seed=seed + i, output_type="np"
            )
            for i in range(0, len(prompts), 96)
        ]
    )
    scores = judge.score(images, requests)
    return {
        "steps": steps,
        "guidance": guidance,
        "n_images": len(prompts),
        "judged_colour": scores["colour"],
        "judged_shape": scores["shape"],
    }


def _passes(metrics: dict) -> dict:
    out = {}
    for kind in ("clip", "siglip"):
        if kind in metrics:
            zs = metrics[kind]["zero_shot"]
            out[kind] = all(zs[a] >= t for a, t in TARGETS["zero_shot"].items())
    if "judge" in metrics:
        out["judge"] = all(v >= TARGETS["judge"] for v in metrics["judge"].values())
    if "diffusion" in metrics:
        d = metrics["diffusion"]
        out["diffusion"] = (
            d["judged_colour"] >= TARGETS["diffusion"]["colour"]
            and d["judged_shape"] >= TARGETS["diffusion"]["shape"]
        )
    return out


def weights_size_mb(weights_dir: Path) -> float:
    """Size of every weight file in a folder.

    Parameters
    ----------
    weights_dir : Path
        The world weights folder.

    Returns
    -------
    float
        MB (10^6 bytes) of its ``*.safetensors`` files, rounded to 0.01.
    """
    return round(sum(p.stat().st_size for p in Path(weights_dir).rglob("*.safetensors")) / 1e6, 2)


def evaluate(
    weights_dir: str | Path | None = None,
    n_images: int = 1000,
    repeats: int = 4,
    steps: int = 20,
    guidance: float | None = None,
    parts=("clip", "siglip", "judge", "diffusion"),
) -> dict:
    """Measure every tiny-world metric; ``parts`` picks which models to evaluate.

    Held-out renders use seeds that no training run uses. The diffusion model is
    judged on 'a {colour} {shape}' for all 48 pairs, ``repeats`` seeds each.

    Parameters
    ----------
    weights_dir : str or Path, optional
        The world weights folder (default: the shipped one).
    n_images : int
        Held-out renders for the CLIP, SigLIP and judge metrics.
    repeats : int
        Generated images per (colour, shape) pair.
    steps : int
        DDIM steps of the diffusion model.
    guidance : float, optional
        Its guidance scale (default: the one recorded with the weights).
    parts : sequence of str
        Some of ``clip``, ``siglip``, ``judge``, ``diffusion``.

    Returns
    -------
    dict
        One entry per part, plus ``passes`` (part -> bool against ``TARGETS``),
        ``targets``, ``weights_mb`` and ``eval_seconds``.
    """
    from . import default_guidance

    weights_dir = Path(weights_dir) if weights_dir else Path(__file__).parent / "weights"
    guidance = default_guidance(weights_dir) if guidance is None else guidance
    t0 = time.time()
    metrics: dict = {}
    for kind in ("clip", "siglip"):
        if kind in parts:
            metrics[kind] = eval_clip(kind, weights_dir, n_images)
    if "judge" in parts:
        metrics["judge"] = eval_judge(weights_dir, n_images)
    if "diffusion" in parts:
        metrics["diffusion"] = eval_diffusion(weights_dir, repeats, steps, guidance)
    metrics["passes"] = _passes(metrics)
    metrics["targets"] = TARGETS
    metrics["weights_mb"] = weights_size_mb(weights_dir)
    metrics["eval_seconds"] = round(time.time() - t0, 1)
    return metrics
