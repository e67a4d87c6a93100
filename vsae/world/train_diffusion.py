"""DDPM training of the tiny diffusion UNet on 32x32 renders, with caption dropout
for classifier-free guidance and an EMA of the weights (the EMA is shipped).

The epsilon loss is weighted per sample by min(SNR, gamma) / SNR ("Min-SNR", Hang et al.
2023): the many low-noise timesteps, whose epsilon targets teach little about an
image's layout, stop dominating the gradient, which speeds up convergence.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import clip as clip_mod
from .captions import random_captions
from .diffusion import TEXT_ENCODER, build_unet, ddpm_scheduler, load_unet_weights, pack, save_unet
from .render import downsample, render


def train_diffusion(
    out_dir: str | Path,
    clip_dir: str | Path,
    steps: int = 6000,
    batch: int = 64,
    lr: float = 1e-3,
    pool: int = 16384,
    p_uncond: float = 0.1,
    min_snr_gamma: float = 5.0,
    ema_decay: float = 0.999,
    seed: int = 5,
    select_steps: int = 20,
    checkpoint_every: int = 250,
    init_from: str | Path | None = None,
    log=print,
) -> dict:
    """Train the UNet conditioned on the (frozen) tiny CLIP in ``clip_dir``, which is
    copied into ``out_dir/text_encoder`` so that it travels with the UNet.

    ``init_from``: a diffusion folder whose (EMA) UNet weights start this run, e.g. to go on
    training at a lower learning rate; the EMA restarts from them.
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    text_dir = out_dir / TEXT_ENCODER
    text_dir.mkdir(parents=True, exist_ok=True)
    for name in ("open_clip_config.json", "weights.safetensors"):
        shutil.copyfile(Path(clip_dir) / name, text_dir / name)
    text_model, _, tok = clip_mod.load(text_dir)
    for p in text_model.parameters():
        p.requires_grad_(False)
    unet = build_unet(seed, cross_attention_dim=text_model.transformer.width)
    if init_from is not None:
        if not (Path(init_from) / "unet.safetensors").is_file():
            raise FileNotFoundError(f"init_from: no UNet weights at {init_from}/unet.safetensors")
        load_unet_weights(unet, init_from)
    ema = copy.deepcopy(unet).eval()
    images, scenes = render(pool, seed=seed)
    x_all = torch.from_numpy(downsample(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    log(
        f"[diffusion] rendered {pool} images in {time.time() - t0:.0f}s; "
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params"
    )
    sched = ddpm_scheduler()
    alphas_cumprod_T = sched.alphas_cumprod.float()
    snr_T = alphas_cumprod_T / (1 - alphas_cumprod_T)
    weight_T = torch.ones_like(snr_T)
    if min_snr_gamma > 0:  # min(snr, gamma) / snr, without 0/0 where snr underflows
        weight_T = torch.where(snr_T > min_snr_gamma, min_snr_gamma / snr_T, weight_T)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warm = 100
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        ),
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    unet.train()
    run = None
    for step in range(steps):
        idx = rng.choice(pool, size=batch, replace=False)
        caps = random_captions([scenes[i] for i in idx], seed=seed * 1_000_003 + step)
        drop = rng.uniform(size=batch) < p_uncond
        caps = ["" if d else c for c, d in zip(caps, drop, strict=True)]
        with torch.no_grad():
            cond = clip_mod.text_token_states(text_model, tok(caps))
        x0 = pack(x_all[idx])
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        per_sample_B = F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (weight_T[t] * per_sample_B).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if checkpoint_every and step % checkpoint_every == checkpoint_every - 1:
            save_unet(ema, out_dir)  # the EMA so far: usable if the run is cut short
        if step % 50 == 0 or step == steps - 1:
            log(f"[diffusion] step {step}/{steps} loss {run:.4f} {time.time() - t0:.0f}s")
    save_unet(ema, out_dir)
    chosen = select_guidance(out_dir, steps=select_steps, log=log)
    summary = {
        "guidance_selection": chosen,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "p_uncond": p_uncond,
        "init_from": str(init_from) if init_from else None,
        "min_snr_gamma": min_snr_gamma,
        "ema_decay": ema_decay,
        "seconds": time.time() - t0,
        "final_loss": run,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[diffusion] done {json.dumps(summary)}")
    return summary


GUIDANCE_CANDIDATES = (1.0, 1.5, 2.0, 3.0, 4.0)
SELECTION_SEED = 777  # evaluation uses seed 0: selection and evaluation noise differ


def select_guidance(out_dir: Path, steps: int = 20, log=print) -> dict:
    """Pick the guidance scale with the best judged colour + shape accuracy on
    'a {colour} {shape}' (one image per pair, selection seed) and record it in
    ``pipeline_config.json``. Needs the judge next to ``out_dir``; else keeps 3.0."""
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
