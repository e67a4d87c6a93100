"""Training tiny CLIP (softmax contrastive loss) or SigLIP (sigmoid loss) on renders."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss

from .captions import random_captions
from .clip import build, images_to_tensor, load_compact, save_compact, write_config_dir
from .pairs import minimal_pair_batch
from .render import render
from .scenes import labels_of
from .tokens import WorldTokenizer
from .vocab import ATTRIBUTES
from .zeroshot import zero_shot_accuracy

EVAL_SEED = 10_001  # held-out renders: no training seed below 10_000 is used


def _param_groups(model, weight_decay: float):
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
    out_dir: str | Path,
    kind: str = "clip",
    steps: int = 1500,
    batch: int = 128,
    lr: float = 2e-3,
    pool: int = 24576,
    seed: int = 0,
    data_seed: int | None = None,
    init_from: str | Path | None = None,
    freeze_text: bool = False,
    p_full: float = 0.4,
    keep_probs: dict[str, float] | None = None,
    pairs: dict[str, int] | None = None,
    pos_scale: float = 1.0,
    aux: dict[str, float] | None = None,
    aux_until: float = 0.5,
    log_every: int = 50,
    log=print,
) -> dict:
    """Train a tiny CLIP or SigLIP; writes config + weights into ``out_dir``.

    Parameters
    ----------
    init_from
        A tiny-model folder to start from (else a fresh initialisation). For a
        SigLIP started from a CLIP, the logit scale and bias keep SigLIP's init.
    freeze_text
        Train the image tower, the text projection and the logit scale only; the
        text transformer (whose token states condition the diffusion model) stays.
    p_full, keep_probs
        Caption sampling (see ``captions.random_caption``).
    pairs
        Minimal-pair groups per step (see ``pairs.minimal_pair_batch``), e.g.
        ``{"position": 12, "shape": 6}``; they take that many rows of the batch and
        the rest stays random renders from the pool.
    pos_scale
        Multiply the image tower's positional embedding by this once, before training.
        Object patches embed with norms ~15x the positional embedding's, so after
        ``ln_pre`` position is a few percent of each token and the tower never learns it.
    aux, aux_until
        Auxiliary linear heads on the normalised image embedding, one per named
        attribute, with cross-entropy weight ``aux[a]`` that decays linearly to 0 at
        ``aux_until`` of the steps; the rest of the run is contrastive only and the
        heads are not saved. This breaks a symmetric plateau: while neither tower
        encodes an attribute, the contrastive loss has no gradient that would make
        either start (see README, "Position").

    Returns a summary dict (steps, seconds, final loss, held-out zero-shot accuracy).
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    write_config_dir(out_dir, kind)
    model, _, _ = build(out_dir, seed=seed)
    if init_from is not None:
        init_kind = json.loads((Path(init_from) / "open_clip_config.json").read_text())["vsae"]
        from_clip = init_kind.get("kind", "clip") == "clip"
        skip = ("logit_scale", "logit_bias") if kind == "siglip" and from_clip else ()
        load_compact(model, Path(init_from) / "weights.safetensors", skip=skip)
    if pos_scale != 1.0:
        with torch.no_grad():
            model.visual.positional_embedding.mul_(pos_scale)
    if freeze_text:
        for name, p in model.named_parameters():
            if name.startswith(
                ("token_embedding", "positional_embedding", "transformer.", "ln_final")
            ):
                p.requires_grad_(False)
    model.train()
    tok = WorldTokenizer(context_length=model.context_length)
    data_seed = seed + (0 if kind == "clip" else 1) if data_seed is None else data_seed
    images, scenes = render(pool, seed=data_seed, two_objects=0.1)
    n_pairs = sum(n * len(ATTRIBUTES[a]) for a, n in (pairs or {}).items())
    if n_pairs > batch:
        raise ValueError(f"minimal pairs {pairs} need {n_pairs} rows > batch {batch}")
    log(f"[{kind}] rendered {pool} training images in {time.time() - t0:.0f}s")
    loss_fn = ClipLoss() if kind == "clip" else SigLipLoss()
    groups = _param_groups(model, 0.05)
    heads = torch.nn.ModuleDict(
        {a: torch.nn.Linear(model.visual.output_dim, len(ATTRIBUTES[a])) for a in (aux or {})}
    )
    if aux:
        groups.append({"params": list(heads.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    rng = np.random.default_rng(seed + 7)
    used = set()
    ema = None
    for step in range(steps):
        idx = rng.choice(pool, size=batch - n_pairs, replace=False)
        caps = random_captions(
            [scenes[i] for i in idx],
            seed=data_seed * 1_000_003 + step,
            p_full=p_full,
            keep_probs=keep_probs,
        )
        batch_images = images[idx]
        batch_scenes = [scenes[i] for i in idx]
        if n_pairs:
            pair_images, pair_scenes, pair_caps = minimal_pair_batch(pairs, data_seed + 100, step)
            batch_images = np.concatenate([pair_images, batch_images])
            batch_scenes = pair_scenes + batch_scenes
            caps = pair_caps + caps
        tokens = tok(caps)
        used.update(tokens.unique().tolist())
        x = images_to_tensor(batch_images)
        img_f, txt_f, scale = model(x, tokens)[:3]
        if kind == "clip":
            loss = loss_fn(img_f, txt_f, scale)
        else:
            loss = loss_fn(img_f, txt_f, scale, model.logit_bias)
        aux_w = max(0.0, 1.0 - step / max(1.0, aux_until * steps))
        if aux and aux_w > 0:
            labels = labels_of(batch_scenes)
            for a, w in aux.items():
                logits = heads[a](img_f) * 10.0  # img_f is unit-norm: sharpen the logits
                loss = loss + aux_w * w * F.cross_entropy(logits, torch.from_numpy(labels[a]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % log_every == 0 or step == steps - 1:
            log(f"[{kind}] step {step}/{steps} loss {ema:.4f} {time.time() - t0:.0f}s")
    model.eval()
    # every token the world's prompts can produce is kept, trained or not
    from .captions import world_words

    used.update(tok(sorted(world_words())).unique().tolist())
    save_compact(model, out_dir / "weights.safetensors", torch.tensor(sorted(used)))
    ev_images, ev_scenes = render(512, seed=EVAL_SEED)
    acc = zero_shot_accuracy(model, tok, ev_images, ev_scenes)
    summary = {
        "kind": kind,
        "init_from": str(init_from) if init_from else None,
        "freeze_text": freeze_text,
        "p_full": p_full,
        "keep_probs": keep_probs,
        "pairs": pairs,
        "pos_scale": pos_scale,
        "aux": aux,
        "aux_until": aux_until if aux else None,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seconds": time.time() - t0,
        "final_loss": ema,
        "zero_shot_512": acc,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[{kind}] done {json.dumps(summary)}")
    return summary
