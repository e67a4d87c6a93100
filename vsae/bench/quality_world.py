"""Tiny-world suite: Pareto curves on tiny-CLIP image embeddings and zero-shot accuracy kept.

Image embeddings are the tiny CLIP's ``encode_image`` outputs (after the projection,
not L2-normalised), as ``vsae extract`` stores them. Training and held-out renders use
seeds that the world's own training and evaluation never use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsae.bench.quality_variants import TrainSizes, Variant, encode_all, is_msae, train_variant
from vsae.metrics import evaluate

TRAIN_SEED = 20_000  # world renders: CLIP training uses seeds < 10_000, its eval 10_001
EVAL_SEED = 20_001

Tick = Callable[[str], None]


@dataclass(frozen=True)
class WorldSizes:
    """Sizes of the tiny-world suite."""

    n_train: int
    n_eval: int
    train: TrainSizes
    ks: tuple[int, ...]
    relu_l1: tuple[float, ...]
    expansion: int = 8
    target_sparsity: float = 0.8


@torch.no_grad()
def world_embeddings(n: int, seed: int, batch: int = 256) -> tuple[Tensor, list[dict], Any]:
    """Tiny-CLIP image embeddings [n, E] of ``n`` renders, their scenes, and (model, tokenizer)."""
    from vsae import world
    from vsae.world.clip import encode_renders

    model, _, tokenizer = world.load_clip()
    images, scenes = world.render(n, seed=seed)
    return encode_renders(model, images, batch), scenes, (model, tokenizer)


def _point(
    sae, x_eval: Tensor, scenes: list[dict], clip: Any, original: dict[str, float]
) -> dict[str, Any]:
    from vsae.world.zeroshot import zero_shot_accuracy_of_embeddings

    row = evaluate(sae, [x_eval])
    recon_BE, _ = encode_all(sae, x_eval)
    acc = zero_shot_accuracy_of_embeddings(clip[0], clip[1], recon_BE, scenes)
    row["zero_shot"] = acc
    row["zero_shot_kept"] = float(np.mean(list(acc.values())) / np.mean(list(original.values())))
    return row


def world_suite(
    variants: Sequence[Variant], sizes: WorldSizes, configs_dir: Path, tick: Tick
) -> dict[str, Any]:
    """FVU, cosine, L0 and zero-shot accuracy kept, for every variant along a sparsity sweep.

    TopK-family variants train one SAE per k. Nested-k MSAEs train once (k0 = the
    smallest k) and are evaluated with TopK inference at every k, at the k giving the
    target sparsity, and on the dense ReLU path. ReLU sweeps its L1 coefficient.
    """
    from vsae.world.zeroshot import zero_shot_accuracy_of_embeddings

    x_train, _, _ = world_embeddings(sizes.n_train, TRAIN_SEED)
    x_eval, scenes, clip = world_embeddings(sizes.n_eval, EVAL_SEED)
    d = x_train.shape[1]
    n_latents = sizes.expansion * d
    k_target = int(round((1 - sizes.target_sparsity) * n_latents))
    original = zero_shot_accuracy_of_embeddings(clip[0], clip[1], x_eval, scenes)
    results: dict[str, Any] = {
        "data": {
            "d": d,
            "n_latents": n_latents,
            "n_train": int(x_train.shape[0]),
            "n_eval": int(x_eval.shape[0]),
            "train_seed": TRAIN_SEED,
            "eval_seed": EVAL_SEED,
        },
        "zero_shot_original": original,
        "k_target": k_target,
        "variants": {},
    }
    for v in variants:
        points = []
        if is_msae(v):
            sae = train_variant(
                v, x_train, sizes.train, sizes.expansion, min(sizes.ks), 0, configs_dir, None, tick
            )
            for k in sorted({*sizes.ks, k_target}) + [0]:
                sae.set_infer_k(k)
                points.append({"k": k, **_point(sae, x_eval, scenes, clip, original)})
        elif v.sweeps_coef == "l1_coef":
            for coef in sizes.relu_l1:
                sae = train_variant(
                    v, x_train, sizes.train, sizes.expansion, 1, 0, configs_dir, coef, tick
                )
                points.append({"l1_coef": coef, **_point(sae, x_eval, scenes, clip, original)})
        else:
            for k in sizes.ks:
                sae = train_variant(
                    v, x_train, sizes.train, sizes.expansion, k, 0, configs_dir, None, tick
                )
                points.append({"k": k, **_point(sae, x_eval, scenes, clip, original)})
        results["variants"][v.name] = {"label": v.label, "points": points}
    return results
