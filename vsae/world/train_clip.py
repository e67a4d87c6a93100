"""Training tiny CLIP (softmax contrastive loss, Radford et al. 2021) or SigLIP (sigmoid loss,
Zhai et al. 2023) on renders."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss

from .captions import random_captions, world_words
from .clip import build, images_to_tensor, load_compact, save_compact, write_config_dir
from .loop import Log, TrainLoop, config_from, warmup_cosine
from .pairs import minimal_pair_batch
from .render import render
from .scenes import labels_of
from .tokens import WorldTokenizer
from .vocab import ATTRIBUTES
from .zeroshot import zero_shot_accuracy

EVAL_SEED = 10_001  # held-out renders: no training seed below 10_000 is used
KINDS = ("clip", "siglip")


@dataclass(frozen=True)
class ClipTrainConfig:
    """How ``train_clip`` trains a tiny CLIP or SigLIP.

    Attributes
    ----------
    kind : str
        ``"clip"`` (softmax contrastive loss) or ``"siglip"`` (sigmoid loss).
    steps, batch : int
        Optimiser steps and images per step.
    lr : float
        Peak learning rate of AdamW (warm-up over ``steps // 20`` steps, then cosine to 0).
    pool : int
        Training renders, drawn once; each step samples ``batch`` of them.
    seed : int
        Seed of the initialisation and of the batch draws.
    data_seed : int, optional
        Seed of the renders and captions (default ``seed``, + 1 for SigLIP).
    init_from : str or Path, optional
        A tiny-model folder to start from (else a fresh initialisation). For a SigLIP started
        from a CLIP, the logit scale and bias keep SigLIP's init.
    freeze_text : bool
        Train the image tower, the text projection and the logit scale only; the text
        transformer (whose token states condition the diffusion model) stays.
    p_full : float
        Caption sampling: probability of the full caption (see ``captions.random_caption``).
    keep_probs : mapping, optional
        Caption sampling: probability of keeping each attribute's words.
    pairs : mapping, optional
        Minimal-pair groups per step (see ``pairs.minimal_pair_batch``), e.g.
        ``{"position": 12, "shape": 6}``; they take that many rows of the batch and the rest
        stays random renders from the pool.
    pos_scale : float
        Multiply the image tower's positional embedding by this once, before training.
        Object patches embed with norms ~15x the positional embedding's, so after ``ln_pre``
        position is a few percent of each token and the tower never learns it.
    aux : mapping, optional
        Auxiliary linear heads on the normalised image embedding, one per named attribute,
        with cross-entropy weight ``aux[a]`` that decays linearly to 0 at ``aux_until`` of the
        steps; the rest of the run is contrastive only and the heads are not saved. This
        breaks a symmetric plateau: while neither tower encodes an attribute, the contrastive
        loss has no gradient that would make either start (see README, "Position").
    aux_until : float
        Fraction of the steps after which the auxiliary heads have weight 0.
    log_every : int
        Steps between log lines.
    """

    kind: str = "clip"
    steps: int = 1500
    batch: int = 128
    lr: float = 2e-3
    pool: int = 24576
    seed: int = 0
    data_seed: int | None = None
    init_from: str | Path | None = None
    freeze_text: bool = False
    p_full: float = 0.4
    keep_probs: Mapping[str, float] | None = None
    pairs: Mapping[str, int] | None = None
    pos_scale: float = 1.0
    aux: Mapping[str, float] | None = None
    aux_until: float = 0.5
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {KINDS}")

    @property
    def render_seed(self) -> int:
        """The seed of the renders and captions: ``data_seed``, else ``seed`` (+ 1 for SigLIP).

        Returns
        -------
        int
        """
        if self.data_seed is not None:
            return self.data_seed
        return self.seed + (0 if self.kind == "clip" else 1)

    @property
    def n_pair_rows(self) -> int:
        """Batch rows the minimal pairs take (groups x values of the attribute).

        Returns
        -------
        int
        """
        return sum(n * len(ATTRIBUTES[a]) for a, n in (self.pairs or {}).items())


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms, embeddings and logits.

    Parameters
    ----------
    model : torch.nn.Module
        The tiny open_clip model.
    weight_decay : float
        Decay of the matrices.

    Returns
    -------
    list of dict
        Two groups, ``params`` and ``weight_decay`` each (trainable parameters only).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "logit" in name or "class_embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train_clip(
    out_dir: str | Path, cfg: ClipTrainConfig | None = None, log: Log = print, **fields: Any
) -> dict[str, Any]:
    """Train a tiny CLIP or SigLIP; writes its config and weights into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        The model folder (``open_clip_config.json``, ``weights.safetensors``,
        ``train_summary.json``).
    cfg : ClipTrainConfig, optional
        The settings (default: ``ClipTrainConfig()``).
    log : callable
        Where progress lines go.
    **fields
        ``ClipTrainConfig`` fields overriding ``cfg``'s, e.g. ``kind="siglip", steps=800``.

    Returns
    -------
    dict
        The summary (settings, steps, seconds, final smoothed loss, held-out zero-shot
        accuracy on 512 renders), also written to ``train_summary.json``.

    Raises
    ------
    ValueError
        An unknown field or kind, or minimal pairs that need more rows than the batch.
    """
    cfg = config_from(ClipTrainConfig, cfg, fields)
    if cfg.n_pair_rows > cfg.batch:
        raise ValueError(
            f"minimal pairs {cfg.pairs} need {cfg.n_pair_rows} rows > batch {cfg.batch}"
        )
    loop = TrainLoop(cfg.kind, cfg.steps, log, every=cfg.log_every)
    out_dir = Path(out_dir)
    model, tok = _init_model(out_dir, cfg)
    images_NHW3, scenes = render(cfg.pool, seed=cfg.render_seed, two_objects=0.1)
    loop.log(f"rendered {cfg.pool} training images in {loop.seconds():.0f}s")
    heads = torch.nn.ModuleDict(
        {a: torch.nn.Linear(model.visual.output_dim, len(ATTRIBUTES[a])) for a in (cfg.aux or {})}
    )
    groups = param_groups(model, 0.05)
    if cfg.aux:
        groups.append({"params": list(heads.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, warm))
    loss_fn = ClipLoss() if cfg.kind == "clip" else SigLipLoss()
    rng = np.random.default_rng(cfg.seed + 7)
    used: set[int] = set()
    for step in range(cfg.steps):
        batch_images, batch_scenes, caps = _batch(cfg, images_NHW3, scenes, rng, step)
        tokens_BT = tok(caps)
        used.update(tokens_BT.unique().tolist())
        img_BE, txt_BE, scale = model(images_to_tensor(batch_images), tokens_BT)[:3]
        if cfg.kind == "clip":
            loss = loss_fn(img_BE, txt_BE, scale)
        else:
            loss = loss_fn(img_BE, txt_BE, scale, model.logit_bias)
        loss = _with_aux_loss(cfg, heads, loss, img_BE, batch_scenes, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        loop.step_done(step, loss.item())
    model.eval()
    # every token the world's prompts can produce is kept, trained or not
    used.update(tok(sorted(world_words())).unique().tolist())
    save_compact(model, out_dir / "weights.safetensors", torch.tensor(sorted(used)))
    ev_images_NHW3, ev_scenes = render(512, seed=EVAL_SEED)
    acc = zero_shot_accuracy(model, tok, ev_images_NHW3, ev_scenes)
    summary = {
        "kind": cfg.kind,
        "init_from": str(cfg.init_from) if cfg.init_from else None,
        "freeze_text": cfg.freeze_text,
        "p_full": cfg.p_full,
        "keep_probs": cfg.keep_probs,
        "pairs": cfg.pairs,
        "pos_scale": cfg.pos_scale,
        "aux": cfg.aux,
        "aux_until": cfg.aux_until if cfg.aux else None,
        "steps": cfg.steps,
        "batch": cfg.batch,
        "lr": cfg.lr,
        **loop.tail(),
        "zero_shot_512": acc,
    }
    return loop.finish(out_dir, summary)


def _init_model(out_dir: Path, cfg: ClipTrainConfig) -> tuple[torch.nn.Module, WorldTokenizer]:
    """The model (fresh or from ``init_from``), scaled and frozen as ``cfg`` says, in train mode."""
    write_config_dir(out_dir, cfg.kind)
    model, _, _ = build(out_dir, seed=cfg.seed)
    if cfg.init_from is not None:
        init_dir = Path(cfg.init_from)
        init_kind = json.loads((init_dir / "open_clip_config.json").read_text())["vsae"]
        from_clip = init_kind.get("kind", "clip") == "clip"
        skip = ("logit_scale", "logit_bias") if cfg.kind == "siglip" and from_clip else ()
        load_compact(model, init_dir / "weights.safetensors", skip=skip)
    if cfg.pos_scale != 1.0:
        with torch.no_grad():
            model.visual.positional_embedding.mul_(cfg.pos_scale)
    if cfg.freeze_text:
        text_prefixes = ("token_embedding", "positional_embedding", "transformer.", "ln_final")
        for name, p in model.named_parameters():
            if name.startswith(text_prefixes):
                p.requires_grad_(False)
    model.train()
    return model, WorldTokenizer(context_length=model.context_length)


def _batch(
    cfg: ClipTrainConfig,
    images_NHW3: np.ndarray,
    scenes: list,
    rng: np.random.Generator,
    step: int,
) -> tuple[np.ndarray, list, list[str]]:
    """Step ``step``'s images [B, H, W, 3], scenes and captions: minimal pairs, then the pool."""
    idx_B = rng.choice(cfg.pool, size=cfg.batch - cfg.n_pair_rows, replace=False)
    caps = random_captions(
        [scenes[i] for i in idx_B],
        seed=cfg.render_seed * 1_000_003 + step,
        p_full=cfg.p_full,
        keep_probs=cfg.keep_probs,
    )
    batch_images = images_NHW3[idx_B]
    batch_scenes = [scenes[i] for i in idx_B]
    if cfg.n_pair_rows:
        pair_images, pair_scenes, pair_caps = minimal_pair_batch(
            cfg.pairs, cfg.render_seed + 100, step
        )
        batch_images = np.concatenate([pair_images, batch_images])
        batch_scenes = pair_scenes + batch_scenes
        caps = pair_caps + caps
    return batch_images, batch_scenes, caps


def _with_aux_loss(
    cfg: ClipTrainConfig,
    heads: torch.nn.ModuleDict,
    loss: torch.Tensor,
    img_BE: torch.Tensor,
    batch_scenes: list,
    step: int,
) -> torch.Tensor:
    """``loss`` plus the auxiliary heads' weighted cross-entropy at ``step`` (none once decayed)."""
    aux_w = max(0.0, 1.0 - step / max(1.0, cfg.aux_until * cfg.steps))
    if not cfg.aux or aux_w <= 0:
        return loss
    labels = labels_of(batch_scenes)
    for a, w in cfg.aux.items():
        logits_BV = heads[a](img_BE) * 10.0  # img_BE is unit-norm: sharpen the logits
        loss = loss + aux_w * w * F.cross_entropy(logits_BV, torch.from_numpy(labels[a]))
    return loss
