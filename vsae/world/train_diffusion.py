"""DDPM training of the tiny diffusion UNet on 32x32 renders, with caption dropout
for classifier-free guidance and an EMA of the weights (the EMA is shipped).

The epsilon loss is weighted per sample by min(SNR, gamma) / SNR ("Min-SNR", Hang et al.
2023): the many low-noise timesteps, whose epsilon targets teach little about an
image's layout, stop dominating the gradient, which speeds up convergence.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import clip as clip_mod
from .captions import random_captions
from .diffusion import TEXT_ENCODER, build_unet, ddpm_scheduler, load_unet_weights, pack, save_unet
from .loop import Log, TrainLoop, config_from, warmup_cosine
from .render import downsample, render


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """How ``train_diffusion`` trains the tiny UNet.

    Attributes
    ----------
    steps, batch : int
        Optimiser steps and images per step.
    lr : float
        Peak learning rate of AdamW (100 warm-up steps, then cosine down to 0.1 of it).
    pool : int
        Training renders (downsampled to 32x32), drawn once.
    p_uncond : float
        Caption dropout for classifier-free guidance (Ho & Salimans 2022).
    min_snr_gamma : float
        Min-SNR loss weighting (Hang et al. 2023); 0 turns it off.
    ema_decay : float
        Decay of the weights' EMA (the EMA is saved and shipped).
    seed : int
        Seed of the UNet's initialisation, the renders, captions, noise and timesteps.
    select_steps : int
        Denoising steps of the guidance selection (:func:`select_guidance`).
    checkpoint_every : int
        Save the EMA every this many steps (0: only at the end).
    init_from : str or Path, optional
        A diffusion folder whose (EMA) UNet weights start this run, e.g. to go on training at
        a lower learning rate; the EMA restarts from them.
    """

    steps: int = 6000
    batch: int = 64
    lr: float = 1e-3
    pool: int = 16384
    p_uncond: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    seed: int = 5
    select_steps: int = 20
    checkpoint_every: int = 250
    init_from: str | Path | None = None


def train_diffusion(
    out_dir: str | Path,
    clip_dir: str | Path,
    cfg: DiffusionTrainConfig | None = None,
    log: Log = print,
    **fields: Any,
) -> dict[str, Any]:
    """Train the UNet conditioned on the (frozen) tiny CLIP in ``clip_dir``.

    The CLIP is copied into ``out_dir/text_encoder`` so that it travels with the UNet.

    Parameters
    ----------
    out_dir : str or Path
        The diffusion folder (UNet, text encoder, ``pipeline_config.json``,
        ``train_summary.json``).
    clip_dir : str or Path
        A tiny CLIP folder whose text tower conditions the UNet.
    cfg : DiffusionTrainConfig, optional
        The settings (default: ``DiffusionTrainConfig()``).
    log : callable
        Where progress lines go.
    **fields
        ``DiffusionTrainConfig`` fields overriding ``cfg``'s.

    Returns
    -------
    dict
        The summary (guidance selection, settings, seconds, final smoothed loss), also written
        to ``train_summary.json``.

    Raises
    ------
    ValueError
        An unknown field.
    FileNotFoundError
        ``init_from`` without UNet weights.
    """
    cfg = config_from(DiffusionTrainConfig, cfg, fields)
    loop = TrainLoop("diffusion", cfg.steps, log, every=50, smoothing=(0.98, 0.02))
    out_dir = Path(out_dir)
    text_model, tok = _text_encoder(out_dir, Path(clip_dir))
    unet = build_unet(cfg.seed, cross_attention_dim=text_model.transformer.width)
    if cfg.init_from is not None:
        if not (Path(cfg.init_from) / "unet.safetensors").is_file():
            raise FileNotFoundError(
                f"init_from: no UNet weights at {cfg.init_from}/unet.safetensors"
            )
        load_unet_weights(unet, cfg.init_from)
    ema = copy.deepcopy(unet).eval()
    images_NHW3, scenes = render(cfg.pool, seed=cfg.seed)
    x_all_N3HW = torch.from_numpy(downsample(images_NHW3)).permute(0, 3, 1, 2).float() / 127.5 - 1
    loop.log(
        f"rendered {cfg.pool} images in {loop.seconds():.0f}s; "
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params"
    )
    sched = ddpm_scheduler()
    weight_T = min_snr_weights(sched.alphas_cumprod.float(), cfg.min_snr_gamma)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.steps, 100, floor=0.1)
    )
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    unet.train()
    for step in range(cfg.steps):
        idx_B = rng.choice(cfg.pool, size=cfg.batch, replace=False)
        caps = random_captions([scenes[i] for i in idx_B], seed=cfg.seed * 1_000_003 + step)
        drop_B = rng.uniform(size=cfg.batch) < cfg.p_uncond
        caps = ["" if d else c for c, d in zip(caps, drop_B, strict=True)]
        with torch.no_grad():
            cond_BTW = clip_mod.text_token_states(text_model, tok(caps))
        x0 = pack(x_all_N3HW[idx_B])
        noise = torch.randn(x0.shape, generator=gen)
        t_B = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch,), generator=gen)
        xt = sched.add_noise(x0, noise, t_B)
        pred = unet(xt, t_B, encoder_hidden_states=cond_BTW).sample
        per_sample_B = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (weight_T[t_B] * per_sample_B).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == cfg.checkpoint_every - 1:
            save_unet(ema, out_dir)  # the EMA so far: usable if the run is cut short
        loop.step_done(step, loss.item())
    save_unet(ema, out_dir)
    chosen = select_guidance(out_dir, steps=cfg.select_steps, log=log)
    summary = {
        "guidance_selection": chosen,
        "steps": cfg.steps,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "p_uncond": cfg.p_uncond,
        "init_from": str(cfg.init_from) if cfg.init_from else None,
        "min_snr_gamma": cfg.min_snr_gamma,
        "ema_decay": cfg.ema_decay,
        **loop.tail(),
    }
    return loop.finish(out_dir, summary)


def min_snr_weights(alphas_cumprod_T: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-timestep loss weights min(SNR, gamma) / SNR (Min-SNR, Hang et al. 2023).

    Parameters
    ----------
    alphas_cumprod_T : Tensor
        The scheduler's cumulative alphas [T].
    gamma : float
        The cap; 0 gives weight 1 everywhere.

    Returns
    -------
    Tensor
        Weights [T]; 1 where SNR <= gamma (no 0/0 where the SNR underflows).
    """
    snr_T = alphas_cumprod_T / (1 - alphas_cumprod_T)
    weight_T = torch.ones_like(snr_T)
    if gamma > 0:
        weight_T = torch.where(snr_T > gamma, gamma / snr_T, weight_T)
    return weight_T


def _text_encoder(out_dir: Path, clip_dir: Path) -> tuple[torch.nn.Module, Any]:
    """Copy the CLIP into ``out_dir/text_encoder``, load it there, frozen."""
    text_dir = out_dir / TEXT_ENCODER
    text_dir.mkdir(parents=True, exist_ok=True)
    for name in ("open_clip_config.json", "weights.safetensors"):
        shutil.copyfile(clip_dir / name, text_dir / name)
    text_model, _, tok = clip_mod.load(text_dir)
    for p in text_model.parameters():
        p.requires_grad_(False)
    return text_model, tok


GUIDANCE_CANDIDATES = (1.0, 1.5, 2.0, 3.0, 4.0)
SELECTION_SEED = 777  # evaluation uses seed 0: selection and evaluation noise differ


def select_guidance(out_dir: Path, steps: int = 20, log: Log = print) -> dict[str, Any]:
    """Pick the guidance scale with the best judged colour + shape accuracy.

    Each of ``GUIDANCE_CANDIDATES`` generates 'a {colour} {shape}' (one image per pair, the
    selection seed); the judge next to ``out_dir`` scores them. The choice is recorded in
    ``pipeline_config.json``; without a judge the guidance stays 3.0.

    Parameters
    ----------
    out_dir : Path
        A diffusion folder (UNet and text encoder).
    steps : int
        Denoising steps per image.
    log : callable
        Where progress lines go.

    Returns
    -------
    dict
        ``guidance``, ``selection_steps`` and every candidate's scores (``selection``).
    """
    from . import diffusion
    from .evaluate import colour_shape_prompts
    from .judge import load as load_judge

    judge_dir = Path(out_dir).parent / "judge"
    scores: dict = {}
    best = 3.0
    if (judge_dir / "weights.safetensors").is_file():
        model, _, tok = diffusion.load_text_encoder(out_dir)
        pipe = diffusion.load(out_dir, model, tok)
        judge = load_judge(judge_dir)
        prompts, requests = colour_shape_prompts(1)
        for g in GUIDANCE_CANDIDATES:
            images = pipe(prompts, steps=steps, guidance=g, seed=SELECTION_SEED, output_type="np")
            scores[g] = judge.score(images, requests)
            log(f"[diffusion] guidance {g}: {scores[g]}")
        best = max(scores, key=lambda g: scores[g]["colour"] + scores[g]["shape"])
    else:
        log(f"[diffusion] no judge in {judge_dir}: guidance stays {best}")
    cfg = {
        "guidance": best,
        "selection_steps": steps,
        "selection": {str(k): v for k, v in scores.items()},
    }
    (Path(out_dir) / "pipeline_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg
