"""A small SAE trained on tiny-world CLIP image embeddings, shared by the concept tests.

``world_sae(cache_dir)`` renders ``N_TRAIN`` scenes of world seed ``TRAIN_SEED``, embeds them
with the shipped tiny CLIP (hookpoint ``image``: the projected embedding, not L2-normalised)
and trains a TopK SAE on them with ``vsae.train``. The folder is written once per test
session (see the ``world_sae_dir`` fixture in ``tests/conftest.py``); later calls reuse it.
Held-out renders use ``EVAL_SEED``, which no training run here uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

N_TRAIN = 6000
TRAIN_SEED = 11
EVAL_SEED = 4242
SAE_SETTINGS = {"arch": "topk", "n_latents": 256, "k": 6}


def embed_world(n: int, seed: int, batch: int = 500) -> tuple[torch.Tensor, list[dict]]:
    """Render ``n`` world scenes of ``seed`` and embed them with the tiny CLIP.

    Returns
    -------
    (Tensor [n, D] float32, list of scene dicts)
    """
    from vsae import world
    from vsae.world.clip import images_to_tensor

    model, _, _ = world.load_clip()
    images_NHW3, scenes = world.render(n, seed)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            out.append(model.encode_image(images_to_tensor(images_NHW3[i : i + batch])).float())
    return torch.cat(out), scenes


def world_sae(cache_dir: Path) -> Path:
    """Train (or reuse) the shared tiny-world SAE under ``cache_dir / "sae"``.

    Returns
    -------
    Path
        The SAE folder (``cfg.json``, ``sae.safetensors``, ``metrics.json``), with the
        training embeddings' scenes in ``train_labels.npz`` beside it.
    """
    from vsae import SAEConfig, TrainConfig, train

    out = Path(cache_dir) / "sae"
    if (out / "sae.safetensors").is_file():
        return out
    acts_ND, scenes = embed_world(N_TRAIN, TRAIN_SEED)
    cfg = SAEConfig(d_in=acts_ND.shape[1], seed=0, **SAE_SETTINGS)
    tcfg = TrainConfig(
        batch_size=256, steps=1500, lr=2e-3, warmup_steps=50, eval_samples=500, progress=False
    )
    train(cfg, acts_ND, tcfg, out_dir=out)
    from vsae.world import labels_of

    np.savez(out.parent / "train_labels.npz", **labels_of(scenes))
    return out
