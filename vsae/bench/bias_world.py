"""The tiny-world half of ``vsae bench bias``: an SAE on unbiased tiny-CLIP embeddings, named
text-side, then for each planted correlation a probe trained on a biased set, the same probe
trained on an unbiased set, and the bias analysis of both on an unbiased test set.

World seeds: SAE training 11, naming 2025, biased probe training 101, unbiased probe
training 102, test 4242. The analysis is told only the target and the group attribute; which
concept is planted is used only here, to score its output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vsae.analysis.bias import BiasConfig, BiasResult, analyse_bias, debias_accuracy
from vsae.analysis.bias_concepts import concept_latents
from vsae.analysis.bias_probe import ProbeConfig
from vsae.analysis.models import ClipModel

SAE_SEED, NAME_SEED, BIASED_SEED, UNBIASED_SEED, TEST_SEED = 11, 2025, 101, 102, 4242


@dataclass(frozen=True)
class Plant:
    """One planted correlation and what the analysis should find.

    Parameters
    ----------
    name : str
        Short name of the run.
    correlation : str
        For ``world.render``, e.g. ``shape=circle|colour=red:0.95``.
    target : str
        The probe's target, ``attribute=value``.
    group : str
        The group attribute.
    planted : str
        The concept name the correlation plants (ground truth, for scoring only).
    """

    name: str
    correlation: str
    target: str
    group: str
    planted: str


PLANTS = (
    Plant("red_circle", "shape=circle|colour=red:{p}", "shape=circle", "colour", "red"),
    Plant(
        "stripes_square",
        "shape=square|background=stripes:{p}",
        "shape=square",
        "background",
        "stripes",
    ),
)


def embed(clip: ClipModel, n: int, seed: int, correlations=None):
    """Raw tiny-CLIP image embeddings of ``n`` renders and their attribute labels.

    Parameters
    ----------
    clip : ClipModel
    n, seed : int
    correlations : optional
        As for ``world.render``.

    Returns
    -------
    (Tensor [n, D], list of dict)
    """
    from vsae import world
    from vsae.world.clip import encode_renders

    images, scenes = world.render(n, seed, correlations=correlations)
    return encode_renders(clip.model, images), [{a: s[a] for a in world.ATTRIBUTES} for s in scenes]


def train_and_name(clip: ClipModel, n: int, steps: int, n_name: int, out: Path):
    """The benchmark's SAE (TopK, 256 latents, k = 6, on unbiased embeddings of seed 11) and
    its text-side names (world vocabulary, default thresholds, statistics on seed 2025).

    Parameters
    ----------
    clip : ClipModel
    n, steps : int
        Training embeddings and steps.
    n_name : int
        Renders for the naming statistics.
    out : Path
        SAE folder.

    Returns
    -------
    (BaseSAE, dict, ConceptTable)
        The SAE, its training metrics and its names.
    """
    from vsae import SAEConfig, TrainConfig, train
    from vsae.analysis.latent_stats import latent_stats
    from vsae.analysis.naming import NAMERS, name_latents
    from vsae.analysis.text_cache import embed_vocab
    from vsae.analysis.thresholds import DEFAULTS
    from vsae.analysis.vocab import world_vocab

    acts, _ = embed(clip, n, SAE_SEED)
    cfg = SAEConfig(arch="topk", d_in=acts.shape[1], n_latents=256, k=6, seed=0)
    tcfg = TrainConfig(
        batch_size=256, steps=steps, lr=2e-3, warmup_steps=50, eval_samples=500, progress=False
    )
    sae, metrics = train(cfg, acts, tcfg, out_dir=out)
    x_name, labels = embed(clip, n_name, NAME_SEED)
    voc = world_vocab()
    stats = latent_stats(sae, x_name.split(1000), top=100)
    emb = torch.nn.functional.normalize(x_name, dim=1).numpy()
    table = name_latents(
        sae,
        NAMERS["text"](),
        voc,
        embed_vocab(clip, voc),
        stats,
        DEFAULTS["text"],
        emb,
        labels,
        n_top_ids=100,
    )
    return sae, metrics, table


def _effect_rows(res: BiasResult, top: int = 12) -> list[dict]:
    return [
        {
            "name": e.name,
            "latents": list(e.latents),
            "is_target": e.is_target,
            "flagged": e.flagged,
            "fire_rate": e.fire_rate,
            "gain": e.off.gain,
            "gain_ci": list(e.off.gain_ci),
            "logit_off": e.off.logit,
            "logit_off_ci": list(e.off.logit_ci),
            "flip_off": e.off.flip,
            "logit_on": e.on.logit,
            "logit_on_ci": list(e.on.logit_ci),
            "flip_on": e.on.flip,
        }
        for e in res.effects[:top]
    ]


def measure_plant(
    sae,
    table,
    plant: Plant,
    p: float,
    train_b,
    train_u,
    test,
    cfg: BiasConfig,
    report_dir: Path | None = None,
) -> dict:
    """The analysis of the biased and the unbiased probe for one planted correlation.

    Parameters
    ----------
    sae : BaseSAE
    table : ConceptTable
    plant : Plant
    p : float
        The correlation's strength.
    train_b, train_u, test : (Tensor, list of dict)
        Biased and unbiased probe training sets, unbiased test set.
    cfg : BiasConfig
    report_dir : Path, optional
        Write both analyses' reports there.

    Returns
    -------
    dict
        The measured numbers (see ``vsae.bench.bias`` for the targets).
    """
    from vsae import world

    t0 = time.perf_counter()
    kw = {"group": plant.group, "concepts": table, "cfg": cfg}
    biased = analyse_bias(
        sae, *test, plant.target, train_x=train_b[0], train_labels=train_b[1], **kw
    )
    unbiased = analyse_bias(
        sae, *test, plant.target, train_x=train_u[0], train_labels=train_u[1], **kw
    )
    seconds = time.perf_counter() - t0
    named = concept_latents(table)
    target_value = plant.target.split("=", 1)[1]
    t_attr = plant.target.split("=", 1)[0]
    non_target = [e.name for e in biased.effects if not e.is_target]
    rivals = [v for v in world.ATTRIBUTES[t_attr] if v != target_value and v in named]
    group_words = [v for v in world.ATTRIBUTES[plant.group] if v in named]
    # switching the planted concept off, told which one it is (the ranking is not told)
    fp_group = f"{plant.planted}|not {target_value}"
    fp_before = fp_after = float("nan")
    if plant.planted in named:
        before, after = debias_accuracy(
            sae, biased.probe, *test, plant.target, plant.group, named, [plant.planted], cfg
        )
        fp_before = 1 - before.by_group[fp_group]["accuracy"]
        fp_after = 1 - after.by_group[fp_group]["accuracy"]
    gap = unbiased.before.worst - biased.before.worst
    closed = (biased.after.worst - biased.before.worst) / gap if gap > 0 else float("nan")
    rank = non_target.index(plant.planted) + 1 if plant.planted in non_target else None
    rival_ranks = {r: non_target.index(r) + 1 for r in rivals if r in non_target}
    flagged_u = [e.name for e in unbiased.effects if e.flagged]
    planted_assoc = [
        {
            "split": a.split,
            "group": a.group,
            "rate_in": a.rate_in,
            "rate_out": a.rate_out,
            "rate_diff": a.rate_diff,
            "rate_diff_ci": list(a.rate_diff_ci),
            "rate_ratio": a.rate_ratio,
        }
        for a in biased.associations
        if a.concept == plant.planted and a.split == "target" and a.group == target_value
    ]
    if report_dir is not None:
        biased.write(report_dir / plant.name / "biased")
        unbiased.write(report_dir / plant.name / "unbiased")
    return {
        "correlation": plant.correlation.format(p=p),
        "target": plant.target,
        "group": plant.group,
        "planted": plant.planted,
        "planted_named": plant.planted in named,
        "seconds_both_analyses": seconds,
        "ranking": {
            "planted_rank_among_non_target": rank,
            "planted_flagged": plant.planted in biased.spurious,
            "top_spurious": biased.spurious[:1],
            "rival_ranks": rival_ranks,
            "ahead_of_every_rival": rank is not None
            and all(rank < r for r in rival_ranks.values()),
            "effects_biased_probe": _effect_rows(biased),
        },
        "switch_off": {
            "group": fp_group,
            "false_positive_rate_before": fp_before,
            "false_positive_rate_after": fp_after,
            "ratio": fp_after / fp_before if fp_before > 0 else float("nan"),
        },
        "debias": {
            "removed": biased.removed,
            "biased_worst": biased.before.worst,
            "biased_worst_group": biased.before.worst_group,
            "unbiased_worst": unbiased.before.worst,
            "unbiased_worst_group": unbiased.before.worst_group,
            "gap": gap,
            "after_worst": biased.after.worst,
            "after_worst_group": biased.after.worst_group,
            "gap_closed_fraction": closed,
            "overall_before": biased.before.overall,
            "overall_after": biased.after.overall,
            "unbiased_overall": unbiased.before.overall,
            "accuracy_before": biased.before.to_dict(),
            "accuracy_after": biased.after.to_dict(),
        },
        "no_false_alarm": {
            "flagged_unbiased": flagged_u,
            "flagged_group_concepts": [n for n in flagged_u if n in group_words],
            "group_concepts": group_words,
            "effects_unbiased_probe": _effect_rows(unbiased),
        },
        "planted_association_on_biased_training": planted_assoc,
        "warnings": biased.warnings + unbiased.warnings,
    }


def sensitivity(sae, table, clip, plant: Plant, test, grid, n_boot: int) -> list[dict]:
    """The headline numbers over a small grid of (strength, training size, L2) settings.

    Parameters
    ----------
    sae, table, clip, plant, test
        As for :func:`measure_plant`.
    grid : sequence of (float, int, float)
        Strength, probe training-set size, L2.
    n_boot : int
        Replicates per analysis (fewer than the headline run).

    Returns
    -------
    list of dict
    """
    rows = []
    for p, n_train, l2 in grid:
        cfg = BiasConfig(n_boot=n_boot, probe=ProbeConfig(l2=l2))
        tb = embed(clip, n_train, BIASED_SEED, [plant.correlation.format(p=p)])
        tu = embed(clip, n_train, UNBIASED_SEED)
        m = measure_plant(sae, table, plant, p, tb, tu, test, cfg)
        rows.append(
            {
                "p": p,
                "n_train": n_train,
                "l2": l2,
                "gap": m["debias"]["gap"],
                "gap_closed_fraction": m["debias"]["gap_closed_fraction"],
                "overall_change": m["debias"]["overall_after"] - m["debias"]["overall_before"],
                "fp_ratio": m["switch_off"]["ratio"],
                "planted_rank": m["ranking"]["planted_rank_among_non_target"],
                "planted_flagged": m["ranking"]["planted_flagged"],
                "removed": m["debias"]["removed"],
                "flagged_group_concepts_unbiased": m["no_false_alarm"]["flagged_group_concepts"],
            }
        )
    return rows
