"""Ground-truth suites of the quality benchmark: flat, hierarchy, stability, identifiability.

Every suite trains the compared variants on ``vsae.data.synthetic`` data, whose
true features and codes are known, and scores them on held-out rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsae.bench.quality_variants import (
    CONFIGS_DIR,
    RA_INIT_VARIANTS,
    TrainSizes,
    Variant,
    encode_all,
    train_variant,
)
from vsae.config import replace
from vsae.data.synthetic import SyntheticConfig, SyntheticData, generate
from vsae.metrics import (
    absorption_rate,
    best_latents,
    evaluate,
    identifiability,
    mmcs,
    shared_fraction,
    stability,
)
from vsae.runconfig import load_run_config
from vsae.sae import BaseSAE

Tick = Callable[[str], None]


@dataclass(frozen=True)
class SyntheticSizes:
    """Sizes of the ground-truth suites."""

    n_train: int
    n_eval: int
    train: TrainSizes
    seeds: tuple[int, ...]
    relu_l1: tuple[float, ...]
    jump_l0: tuple[float, ...]
    expansion: int = 8
    k: int = 8


def flat_data_config(configs_dir: Path = CONFIGS_DIR) -> SyntheticConfig:
    """The flat ground truth shipped with the configs (d=64, 512 features, ~6 active)."""
    syn = load_run_config(configs_dir / "topk.yaml").synthetic
    assert syn is not None, "configs/topk.yaml has no data.synthetic section"
    return syn


def hierarchy_data_config() -> SyntheticConfig:
    """Flat features plus 32 parents with 4 children each (a child fires only with its parent)."""
    return SyntheticConfig(
        d=64,
        n_features=256,
        active=3.0,
        n_parents=32,
        children_per_parent=4,
        parent_prob=0.05,
        child_prob=0.5,
        offset=3.0,
        seed=1,
    )


def identifiability_data_config() -> SyntheticConfig:
    """Mixtures of 32 known concepts, each present in ~19% of samples, correlated in groups."""
    return SyntheticConfig(
        d=64,
        n_features=32,
        active=6.0,
        magnitude="lognormal",
        corr=0.2,
        corr_group=4,
        noise=0.05,
        offset=3.0,
        seed=2,
    )


def _split(cfg: SyntheticConfig, sizes: SyntheticSizes) -> tuple[SyntheticData, Tensor, Tensor]:
    """Data with train rows first and held-out rows last (one generator: same features)."""
    data = generate(replace(cfg, n_samples=sizes.n_train + sizes.n_eval))
    return data, data.acts[: sizes.n_train], data.acts[sizes.n_train :]


def _coefs(variant: Variant, sizes: SyntheticSizes) -> Sequence[float | None]:
    if variant.sweeps_coef == "l1_coef":
        return sizes.relu_l1
    if variant.sweeps_coef == "l0_coef":
        return sizes.jump_l0
    return (None,)


def _recon(sae: BaseSAE, x_SD: Tensor) -> dict[str, float]:
    return evaluate(sae, [x_SD[i : i + 4096] for i in range(0, x_SD.shape[0], 4096)])


def flat_suite(
    variants: Sequence[Variant], sizes: SyntheticSizes, configs_dir: Path, tick: Tick
) -> tuple[dict[str, Any], dict[str, BaseSAE], dict[str, float | None]]:
    """MMCS, FVU, cosine and L0 of every variant at a matched L0 (k of the TopK family).

    ReLU and JumpReLU have no k: their sparsity coefficient is swept and the run whose
    L0 is closest to k (in log ratio) is kept; every sweep point is reported.

    Returns
    -------
    (dict, dict, dict)
        Results per variant, the kept models (seed 0), and each variant's chosen coefficient.
    """
    data, x_train, x_eval = _split(flat_data_config(configs_dir), sizes)
    results: dict[str, Any] = {"data": _data_summary(data, x_train, x_eval), "variants": {}}
    models: dict[str, BaseSAE] = {}
    chosen: dict[str, float | None] = {}
    for v in variants:
        runs = []
        for coef in _coefs(v, sizes):
            sae = train_variant(
                v, x_train, sizes.train, sizes.expansion, sizes.k, 0, configs_dir, coef, tick
            )
            row = _recon(sae, x_eval)
            row["mmcs"] = mmcs(data.features, sae.decoder_directions())
            runs.append((coef, sae, row))
        coef, sae, row = min(runs, key=lambda r: abs(math.log(max(r[2]["l0"], 1e-3) / sizes.k)))
        models[v.name], chosen[v.name] = sae, coef
        entry = {"label": v.label, **row}
        if v.sweeps_coef:
            entry[v.sweeps_coef] = coef
            entry["sweep"] = [{v.sweeps_coef: c, **r} for c, _, r in runs]
        results["variants"][v.name] = entry
    best = max(results["variants"], key=lambda n: results["variants"][n]["mmcs"])
    results["best_mmcs"] = {"variant": best, "mmcs": results["variants"][best]["mmcs"]}
    return results, models, chosen


def hierarchy_suite(
    variants: Sequence[Variant],
    sizes: SyntheticSizes,
    chosen: dict[str, float | None],
    configs_dir: Path,
    tick: Tick,
) -> dict[str, Any]:
    """Feature absorption: how often a parent's latent is silent while a child fires."""
    data, x_train, x_eval = _split(hierarchy_data_config(), sizes)
    true_eval = data.codes[sizes.n_train :]
    is_parent_F = torch.zeros(data.features.shape[0], dtype=torch.bool)
    is_parent_F[data.parent_of[data.parent_of >= 0].unique()] = True
    is_child_F = data.parent_of >= 0
    results: dict[str, Any] = {"data": _data_summary(data, x_train, x_eval), "variants": {}}
    for v in variants:
        sae = train_variant(
            v,
            x_train,
            sizes.train,
            sizes.expansion,
            sizes.k,
            0,
            configs_dir,
            chosen.get(v.name),
            tick,
        )
        atoms_ND = sae.decoder_directions()
        _, codes_BN = encode_all(sae, x_eval)
        latent_of_F = best_latents(data.features, atoms_ND)
        row = _recon(sae, x_eval)
        row.update(
            absorption=absorption_rate(codes_BN, true_eval, data.parent_of, latent_of_F),
            mmcs_parents=mmcs(data.features[is_parent_F], atoms_ND),
            mmcs_children=mmcs(data.features[is_child_F], atoms_ND),
        )
        results["variants"][v.name] = {"label": v.label, **row}
    return results


def identifiability_suite(
    variants: Sequence[Variant],
    sizes: SyntheticSizes,
    chosen: dict[str, float | None],
    configs_dir: Path,
    tick: Tick,
) -> dict[str, Any]:
    """Per concept, the accuracy of the best latent and threshold; mean over concepts."""
    data, x_train, x_eval = _split(identifiability_data_config(), sizes)
    labels_BF = data.codes[sizes.n_train :] != 0
    prevalence_F = labels_BF.double().mean(0)
    chance = float(torch.maximum(prevalence_F, 1 - prevalence_F).mean())
    results: dict[str, Any] = {
        "data": _data_summary(data, x_train, x_eval),
        "chance": chance,
        "variants": {},
    }
    for v in variants:
        sae = train_variant(
            v,
            x_train,
            sizes.train,
            sizes.expansion,
            sizes.k,
            0,
            configs_dir,
            chosen.get(v.name),
            tick,
        )
        _, codes_BN = encode_all(sae, x_eval)
        per_concept = identifiability(codes_BN, labels_BF)
        row = _recon(sae, x_eval)
        row.update(
            identifiability=float(np.mean(per_concept)),
            identifiability_min=float(np.min(per_concept)),
            per_concept=per_concept,
            mmcs=mmcs(data.features, sae.decoder_directions()),
        )
        results["variants"][v.name] = {"label": v.label, **row}
    return results


def stability_suite(
    variants: Sequence[Variant],
    sizes: SyntheticSizes,
    seed0_models: dict[str, BaseSAE],
    chosen: dict[str, float | None],
    configs_dir: Path,
    tick: Tick,
) -> dict[str, Any]:
    """Mean pairwise stability and shared fraction over seeds, on the flat data.

    Seed 0 reuses the flat suite's model. The RA-SAE is also run with the init shared
    by all seeds and with a random init (same candidates), to measure how much of its
    stability the shared k-means + identity init explains.
    """
    data, x_train, _ = _split(flat_data_config(configs_dir), sizes)
    runs = list(variants)
    if any(v.arch == "archetypal" for v in variants):
        runs += list(RA_INIT_VARIANTS.values())
    results: dict[str, Any] = {"seeds": list(sizes.seeds), "variants": {}}
    for v in runs:
        saes = []
        for seed in sizes.seeds:
            if seed == 0 and v.name in seed0_models:
                saes.append(seed0_models[v.name])
                continue
            saes.append(
                train_variant(
                    v,
                    x_train,
                    sizes.train,
                    sizes.expansion,
                    sizes.k,
                    seed,
                    configs_dir,
                    chosen.get(v.name),
                    tick,
                )
            )
        stab, shared = [], []
        for a, b in itertools.combinations(saes, 2):
            dec_a, dec_b = a.decoder_directions(), b.decoder_directions()
            stab.append(stability(dec_a, dec_b))
            shared.append(shared_fraction(a.W_enc_ND.detach(), dec_a, b.W_enc_ND.detach(), dec_b))
        results["variants"][v.name] = {
            "label": v.label,
            "stability": float(np.mean(stab)),
            "stability_pairs": stab,
            "shared_fraction": float(np.mean(shared)),
            "shared_fraction_pairs": shared,
            "mmcs_per_seed": [mmcs(data.features, s.decoder_directions()) for s in saes],
        }
    return results


def _data_summary(data: SyntheticData, x_train: Tensor, x_eval: Tensor) -> dict[str, Any]:
    return {
        "d": int(data.acts.shape[1]),
        "n_true_features": int(data.features.shape[0]),
        "n_train": int(x_train.shape[0]),
        "n_eval": int(x_eval.shape[0]),
        "mean_active": float((data.codes != 0).sum(-1).double().mean()),
    }
