"""The judge: an attribute classifier trained on renders that scores generated images
(the role of the UnlearnCanvas classifier).

It sees single-object images. Any size is resized to 64x64 (bilinear); it is
trained on renders and on renders blurred through 32x32, so the 32x32 output of
the tiny diffusion model is in its distribution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .clip import WORLD_MEAN, WORLD_STD
from .loop import Log, TrainLoop, config_from, warmup_cosine
from .render import render
from .scenes import labels_of
from .vocab import ATTRIBUTES, BACKGROUND_WORDS

EVAL_SEED = 10_003


class JudgeNet(nn.Module):
    """A small CNN with one linear head per attribute.

    Four conv-BN-ReLU-maxpool blocks take a 64x64 image to 4x4, a 256-unit trunk feeds one
    linear head per world attribute.

    Parameters
    ----------
    width : int
        Channels of the first block (doubling in each of the next three).
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        layers = []
        chans = [3, w, 2 * w, 4 * w, 8 * w]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*layers)  # 64 -> 4
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * 16, 256), nn.ReLU())
        self.heads = nn.ModuleDict({a: nn.Linear(256, len(v)) for a, v in ATTRIBUTES.items()})

    def forward(self, x_B3HW: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute.

        Parameters
        ----------
        x_B3HW : Tensor
            Normalised images [B, 3, 64, 64] (:func:`to_judge_input`).

        Returns
        -------
        dict
            Attribute -> logits [B, n_values].
        """
        h = self.trunk(self.features(x_B3HW))
        return {a: head(h) for a, head in self.heads.items()}


def to_judge_input(images: Any) -> torch.Tensor:
    """The judge's input from any image batch.

    Parameters
    ----------
    images : iterable of PIL images, ndarray or Tensor
        PIL images, a uint8 array [N, H, W, 3] or a float tensor [N, 3, H, W] in [0, 1].

    Returns
    -------
    Tensor
        Normalised images [N, 3, 64, 64] (bilinear, antialiased resize when needed).

    Raises
    ------
    ValueError
        No images, or an array or tensor of another layout.
    """
    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"image tensor must be (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
    else:
        if isinstance(images, np.ndarray):
            arr = images
        else:
            images = list(images)
            if not images:
                raise ValueError("no images to judge")
            arr = np.stack([np.asarray(im.convert("RGB")) for im in images])
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"image array must be (N, H, W, 3) uint8, got {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[0] == 0:
        raise ValueError("no images to judge")
    if x.shape[-2:] != (64, 64):
        x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def attributes_in_prompt(prompt: str) -> dict[str, str]:
    """The world attributes a prompt asks for (first mention wins).

    Parameters
    ----------
    prompt : str
        E.g. ``"a red circle"``.

    Returns
    -------
    dict
        Attribute -> value, e.g. ``{"colour": "red", "shape": "circle"}``.
    """
    text = " " + re.sub(r"[^a-z ]", " ", prompt.lower()) + " "
    found: dict[str, tuple[int, str]] = {}
    for attr, values in ATTRIBUTES.items():
        for v in values:
            words = [v] + ([BACKGROUND_WORDS[v]] if attr == "background" else [])
            for w in words:
                i = text.find(" " + w + " ")
                if i >= 0 and (attr not in found or i < found[attr][0]):
                    found[attr] = (i, v)
    return {a: v for a, (_, v) in found.items()}


class Judge:
    """Attribute classifier for generated or rendered images.

    Parameters
    ----------
    net : JudgeNet
        The trained network (put in eval mode).
    """

    def __init__(self, net: JudgeNet) -> None:
        self.net = net.eval()

    @torch.no_grad()
    def logits(self, images: Any, batch: int = 256) -> dict[str, torch.Tensor]:
        """Raw logits per attribute.

        Parameters
        ----------
        images : images
            Anything :func:`to_judge_input` takes.
        batch : int
            Images per forward pass.

        Returns
        -------
        dict
            Attribute -> logits [N, n_values].
        """
        x = to_judge_input(images)
        parts = [self.net(x[i : i + batch]) for i in range(0, len(x), batch)]
        return {a: torch.cat([p[a] for p in parts]) for a in ATTRIBUTES}

    @torch.no_grad()
    def features(self, images: Any, batch: int = 256) -> np.ndarray:
        """The judge's 256-d trunk features (what its heads read), for distribution distances.

        Parameters
        ----------
        images : images
            Anything :func:`to_judge_input` takes.
        batch : int
            Images per forward pass.

        Returns
        -------
        np.ndarray
            float64 ``[N, 256]``.
        """
        x = to_judge_input(images)
        parts = [
            self.net.trunk(self.net.features(x[i : i + batch])) for i in range(0, len(x), batch)
        ]
        return torch.cat(parts).double().numpy()

    def predict_indices(self, images: Any) -> dict[str, np.ndarray]:
        """Predicted label index per attribute.

        Parameters
        ----------
        images : images
            Anything :func:`to_judge_input` takes.

        Returns
        -------
        dict
            Attribute -> indices [N] into ``ATTRIBUTES[attribute]``.
        """
        return {a: v.argmax(1).numpy() for a, v in self.logits(images).items()}

    def predict(self, images: Any) -> dict[str, list[str]]:
        """Predicted value names per attribute.

        Parameters
        ----------
        images : images
            Anything :func:`to_judge_input` takes.

        Returns
        -------
        dict
            Attribute -> N names, e.g. ``{"colour": ["red", ...], ...}``.
        """
        return {
            a: [ATTRIBUTES[a][i] for i in idx] for a, idx in self.predict_indices(images).items()
        }

    def score(self, images: Any, requested: Sequence[Mapping[str, str]]) -> dict[str, float]:
        """Accuracy per attribute of ``images`` against the requested attributes.

        Parameters
        ----------
        images : images
            N images, anything :func:`to_judge_input` takes.
        requested : sequence of mapping
            One attribute -> value dict per image; attributes a request leaves out are not
            scored.

        Returns
        -------
        dict
            Attribute -> fraction correct, for each attribute some request names.

        Raises
        ------
        ValueError
            No requests, or not one per image.
        """
        if len(requested) == 0:
            raise ValueError("no requested attributes to score against")
        pred = self.predict(images)
        n = len(pred["colour"])
        if n != len(requested):
            raise ValueError(f"{n} images but {len(requested)} requests")
        out = {}
        for a in ATTRIBUTES:
            hits = [pred[a][i] == r[a] for i, r in enumerate(requested) if a in r]
            if hits:
                out[a] = float(np.mean(hits))
        return out

    def score_prompts(self, images: Any, prompts: Sequence[str]) -> dict[str, float]:
        """``score`` with the requests read from the prompts (``attributes_in_prompt``).

        Parameters
        ----------
        images : images
            N images, anything :func:`to_judge_input` takes.
        prompts : sequence of str
            The N prompts the images were generated from.

        Returns
        -------
        dict
            Attribute -> fraction correct.
        """
        return self.score(images, [attributes_in_prompt(p) for p in prompts])


def _augment(images_NHW3: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Half the batch goes through 32x32 (as diffusion output does), plus mild noise."""
    x = torch.from_numpy(images_NHW3).permute(0, 3, 1, 2).float() / 255.0
    m = torch.from_numpy(rng.uniform(size=len(x)) < 0.5)
    if m.any():
        small = F.interpolate(x[m], size=(32, 32), mode="bilinear", antialias=True)
        x[m] = F.interpolate(small, size=(64, 64), mode="bilinear")
    sigma = torch.from_numpy(rng.uniform(0, 0.04, size=(len(x), 1, 1, 1))).float()
    x = (
        x
        + sigma
        * torch.randn(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
    ).clamp(0, 1)
    return x


@dataclass(frozen=True)
class JudgeTrainConfig:
    """How ``train_judge`` trains the judge.

    Attributes
    ----------
    steps, batch : int
        Optimiser steps and images per step.
    lr : float
        Peak learning rate of AdamW (100 warm-up steps, then cosine to 0).
    pool : int
        Training renders, drawn once.
    seed : int
        Seed of the initialisation, the renders, the batches and the augmentation.
    """

    steps: int = 1500
    batch: int = 128
    lr: float = 2e-3
    pool: int = 24576
    seed: int = 3


def train_judge(
    out_dir: str | Path, cfg: JudgeTrainConfig | None = None, log: Log = print, **fields: Any
) -> dict[str, Any]:
    """Train the judge from scratch; writes ``weights.safetensors`` + ``config.json``.

    Parameters
    ----------
    out_dir : str or Path
        The judge folder (also ``train_summary.json``).
    cfg : JudgeTrainConfig, optional
        The settings (default: ``JudgeTrainConfig()``).
    log : callable
        Where progress lines go.
    **fields
        ``JudgeTrainConfig`` fields overriding ``cfg``'s.

    Returns
    -------
    dict
        The summary (steps, batch, seconds, final smoothed loss, held-out accuracy per
        attribute on 1000 renders), also written to ``train_summary.json``.

    Raises
    ------
    ValueError
        An unknown field.
    """
    cfg = config_from(JudgeTrainConfig, cfg, fields)
    loop = TrainLoop("judge", cfg.steps, log, every=100)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    images_NHW3, scenes = render(cfg.pool, seed=cfg.seed)
    labels = {a: torch.from_numpy(v) for a, v in labels_of(scenes).items()}
    loop.log(f"rendered {cfg.pool} images in {loop.seconds():.0f}s")
    net = JudgeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, 100))
    rng = np.random.default_rng(cfg.seed)
    mean_1311 = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std_1311 = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    net.train()
    for step in range(cfg.steps):
        idx_B = rng.choice(cfg.pool, size=cfg.batch, replace=False)
        x_B3HW = (_augment(images_NHW3[idx_B], rng) - mean_1311) / std_1311
        out = net(x_B3HW)
        loss = sum(F.cross_entropy(out[a], labels[a][idx_B]) for a in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loop.step_done(step, loss.item())
    net.eval()
    sd = {
        k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(sd, str(out_dir / "weights.safetensors"))
    (out_dir / "config.json").write_text(json.dumps({"width": 16, "input_size": 64}) + "\n")
    judge = load(out_dir)
    ev_images_NHW3, ev_scenes = render(1000, seed=EVAL_SEED)
    acc = judge.score(ev_images_NHW3, ev_scenes)
    summary = {"steps": cfg.steps, "batch": cfg.batch, **loop.tail(), "heldout_1000": acc}
    return loop.finish(out_dir, summary)


def load(directory: str | Path) -> Judge:
    """Load a judge folder written by ``train_judge``.

    Parameters
    ----------
    directory : str or Path
        The folder (``weights.safetensors``, ``config.json``).

    Returns
    -------
    Judge

    Raises
    ------
    FileNotFoundError
        No weights in the folder.
    """
    directory = Path(directory)
    path = directory / "weights.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"judge weights missing: {path} (run `vsae world build`)")
    cfg = json.loads((directory / "config.json").read_text())
    net = JudgeNet(width=cfg["width"])
    sd = load_file(str(path))
    own = net.state_dict()
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    return Judge(net)
