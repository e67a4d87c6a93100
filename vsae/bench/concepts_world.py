"""The tiny-world half of ``vsae bench concepts``: naming precision and coverage (text- and
image-side), search by concept name, concept editing and the empty edit.

Splits (world seeds): training 11, threshold selection 777 (never reported as a result, only
the thresholds it picks), evaluation 4242 (no training run or selection uses it).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.concepts import ConceptError
from vsae.analysis.index_build import IndexBuilder
from vsae.analysis.inputs import Chunk
from vsae.analysis.latent_stats import latent_stats
from vsae.analysis.models import ClipModel, ModelSpec
from vsae.analysis.naming import NAMERS, name_latents
from vsae.analysis.query_edit import Edit, edit_query
from vsae.analysis.search import ConceptIndex
from vsae.analysis.text_cache import embed_vocab
from vsae.analysis.thresholds import (
    DEFAULTS,
    SELECTION_SEED,
    choose_thresholds,
    precision_coverage,
)
from vsae.analysis.vocab import world_vocab

TRAIN_SEED, EVAL_SEED = 11, 4242
SPEC = ModelSpec("world:clip", None, "image")


def embed_split(clip: ClipModel, n: int, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """Raw tiny-CLIP image embeddings of ``n`` renders of ``seed`` and their labels."""
    from vsae import world
    from vsae.world.clip import encode_renders

    images, scenes = world.render(n, seed)
    return encode_renders(clip.model, images), [{a: s[a] for a in world.ATTRIBUTES} for s in scenes]


def train_sae(clip: ClipModel, n: int, steps: int, out: Path):
    """The benchmark's SAE: TopK, 256 latents, k = 6, on tiny-CLIP embeddings of seed 11."""
    from vsae import SAEConfig, TrainConfig, train

    acts, _ = embed_split(clip, n, TRAIN_SEED)
    cfg = SAEConfig(arch="topk", d_in=acts.shape[1], n_latents=256, k=6, seed=0)
    tcfg = TrainConfig(
        batch_size=256, steps=steps, lr=2e-3, warmup_steps=50, eval_samples=500, progress=False
    )
    sae, metrics = train(cfg, acts, tcfg, out_dir=out)
    return sae, metrics


def name_split(sae, clip, acts, labels, method, thresholds):
    """Name the SAE's latents on one split."""
    voc = world_vocab()
    words = embed_vocab(clip, voc)
    stats = latent_stats(sae, acts.split(1000), top=100)
    emb = torch.nn.functional.normalize(acts, dim=1).numpy()
    return name_latents(
        sae, NAMERS[method](), voc, words, stats, thresholds, emb, labels, n_top_ids=100
    )


def naming_results(sae, clip, sel, ev) -> tuple[dict, dict]:
    """Thresholds chosen on the selection split; precision and coverage on the eval split
    under those thresholds (and under the shipped defaults, when they differ)."""
    values = world_vocab().words
    out, tables = {}, {}
    for method in ("text", "image"):
        chosen, on_sel = choose_thresholds(
            name_split(sae, clip, *sel, method, DEFAULTS[method]), sel[1], values
        )
        table = name_split(sae, clip, *ev, method, chosen)
        prec, cov, n_valid = precision_coverage(table, ev[1], values, chosen)
        d_prec, d_cov, _ = precision_coverage(table, ev[1], values, DEFAULTS[method])
        covered = sorted({c.name for c in table.valid if c.name in values})
        out[method] = {
            "chosen_on_selection": chosen.__dict__,
            "selection_split": on_sel,
            "defaults": DEFAULTS[method].__dict__,
            "defaults_equal_chosen": chosen == DEFAULTS[method],
            "eval_precision": prec,
            "eval_coverage": cov,
            "eval_n_valid": n_valid,
            "eval_values_missing": sorted(set(values) - set(covered)),
            "eval_with_defaults": {"precision": d_prec, "coverage": d_cov},
        }
        tables[method] = table
    return out, tables


def build_eval_index(sae, acts, labels, folder: Path) -> ConceptIndex:
    """A flat index of the eval split."""
    b = IndexBuilder(sae, "flat")
    keys = [f"world-{EVAL_SEED}-{i:09d}" for i in range(len(acts))]
    for lo in range(0, len(acts), 1000):
        ch = Chunk(acts[lo : lo + 1000], keys[lo : lo + 1000], labels[lo : lo + 1000], None)
        b.add(ch.acts, ch.keys, ch.labels)
    b.save(folder, folder.parent / "sae", SPEC, {"data": f"world:{len(acts)}:{EVAL_SEED}"})
    return ConceptIndex(folder)


def _latents(table, name: str) -> tuple[int, ...]:
    """The valid latents named ``name`` (what ``vsae search`` uses for a name)."""
    return tuple(c.id for c in table.by_name(name))


def search_results(sae, table, index: ConceptIndex) -> dict:
    """Precision@50 by concept name, concept editing and the empty edit on the eval index."""
    from vsae import world

    labels = index.labels
    mean_act = np.array([c.mean_act for c in table.concepts], np.float32)
    p50 = {}
    for attr in ("colour", "shape"):
        for v in world.ATTRIBUTES[attr]:
            c = _latents(table, v)
            if not c:
                p50[v] = 0.0  # no valid latent carries the name: nothing to search with
                continue
            hits = index.search_latent(c, 50)
            p50[v] = float(np.mean([h.labels[attr] == v for h in hits])) if hits else 0.0
    sup, swap, empty_same = [], [], []
    by_cs = {}
    for i, lab in enumerate(labels):
        by_cs.setdefault((lab["colour"], lab["shape"]), i)
    for a, b in itertools.permutations(world.COLOURS, 2):
        ca, cb = _latents(table, a), _latents(table, b)
        for s in world.SHAPES:
            qi = by_cs.get((a, s))
            if qi is None:
                continue
            x = index.raw_embedding(qi)
            plain = [h.id for h in index.search_vector(x, 10)]
            same = [h.id for h in index.search_vector(edit_query(sae, x, (), mean_act), 10)]
            empty_same.append(float(plain == same))
            if not ca or not cb:
                sup.append(0.0)
                swap.append(0.0)
                continue
            suppress = tuple(Edit(c, 0.0) for c in ca)
            h1 = index.search_vector(edit_query(sae, x, suppress, mean_act), 10)
            sup.append(np.mean([h.labels["colour"] != a and h.labels["shape"] == s for h in h1]))
            swap_edits = suppress + tuple(Edit(c, 2.0) for c in cb)
            h2 = index.search_vector(edit_query(sae, x, swap_edits, mean_act), 10)
            swap.append(np.mean([h.labels["colour"] == b and h.labels["shape"] == s for h in h2]))
    return {
        "names_from": table.method,
        "precision_at_50": p50,
        "suppress_mean": float(np.mean(sup)),
        "suppress_worst": float(np.min(sup)),
        "suppress_boost_mean": float(np.mean(swap)),
        "suppress_boost_worst": float(np.min(swap)),
        "n_edit_queries": len(sup),
        "empty_edit_same_ranking": float(np.mean(empty_same)),
    }


def run_world(work: Path, quick: bool) -> dict:
    """All tiny-world measurements."""
    clip = ClipModel("world:clip")
    n_train, steps, n_split = (1500, 300, 800) if quick else (6000, 1500, 3000)
    sae, metrics = train_sae(clip, n_train, steps, work / "sae")
    sel = embed_split(clip, n_split, SELECTION_SEED)
    ev = embed_split(clip, n_split, EVAL_SEED)
    naming, tables = naming_results(sae, clip, sel, ev)
    index = build_eval_index(sae, ev[0], ev[1], work / "index")
    try:
        search = search_results(sae, tables["image"], index)
    except ConceptError as err:  # pragma: no cover - reported, not hidden
        search = {"error": str(err)}
    return {
        "sae": {"n_train": n_train, "steps": steps, **metrics},
        "n_per_split": n_split,
        "naming": naming,
        "search": search,
    }
