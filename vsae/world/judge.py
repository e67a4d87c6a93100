"""The judge: an attribute classifier trained on renders that scores generated images
(the role of the UnlearnCanvas classifier).

It sees single-object images. Any size is resized to 64x64 (bilinear); it is
trained on renders and on renders blurred through 32x32, so the 32x32 output of
the tiny diffusion model is in its distribution.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .clip import WORLD_MEAN, WORLD_STD
from .render import render
from .scenes import labels_of
from .vocab import ATTRIBUTES, BACKGROUND_WORDS

EVAL_SEED = 10_003


class JudgeNet(nn.Module):
    """A small CNN with one linear head per attribute."""

    def __init__(self, width: int = 16):
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
        h = self.trunk(self.features(x_B3HW))
        return {a: head(h) for a, head in self.heads.items()}


def to_judge_input(images) -> torch.Tensor:
    """PIL images, uint8 arrays (N, H, W, 3) or float tensors (N, 3, H, W) in [0, 1]
    -> normalised (N, 3, 64, 64)."""
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
    """The world attributes a prompt asks for, e.g. 'a red circle' -> {'colour': 'red',
    'shape': 'circle'} (first mention wins)."""
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
    """Attribute classifier for generated or rendered images."""

    def __init__(self, net: JudgeNet):
        self.net = net.eval()

    @torch.no_grad()
    def logits(self, images, batch: int = 256) -> dict[str, torch.Tensor]:
        """Raw logits per attribute, each (N, n_values)."""
        x = to_judge_input(images)
        parts = [self.net(x[i : i + batch]) for i in range(0, len(x), batch)]
        return {a: torch.cat([p[a] for p in parts]) for a in ATTRIBUTES}

    def predict_indices(self, images) -> dict[str, np.ndarray]:
        """Predicted label index per attribute, each (N,)."""
        return {a: v.argmax(1).numpy() for a, v in self.logits(images).items()}

    def predict(self, images) -> dict[str, list[str]]:
        """Predicted value names per attribute, e.g. {'colour': ['red', ...], ...}."""
        return {
            a: [ATTRIBUTES[a][i] for i in idx] for a, idx in self.predict_indices(images).items()
        }

    def score(self, images, requested: Sequence[Mapping[str, str]]) -> dict[str, float]:
        """Accuracy per attribute of ``images`` against the requested attributes (one
        dict per image; attributes a request leaves out are not scored)."""
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

    def score_prompts(self, images, prompts: Sequence[str]) -> dict[str, float]:
        """``score`` with the requests read from the prompts (``attributes_in_prompt``)."""
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


def train_judge(
    out_dir: str | Path,
    steps: int = 1500,
    batch: int = 128,
    lr: float = 2e-3,
    pool: int = 24576,
    seed: int = 3,
    log=print,
) -> dict:
    """Train the judge from scratch; writes ``weights.safetensors`` + ``config.json``."""
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    images, scenes = render(pool, seed=seed)
    labels = {a: torch.from_numpy(v) for a, v in labels_of(scenes).items()}
    log(f"[judge] rendered {pool} images in {time.time() - t0:.0f}s")
    net = JudgeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    rng = np.random.default_rng(seed)
    mean = torch.tensor(WORLD_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(WORLD_STD).view(1, 3, 1, 1)
    net.train()
    ema = None
    for step in range(steps):
        idx = rng.choice(pool, size=batch, replace=False)
        x = (_augment(images[idx], rng) - mean) / std
        out = net(x)
        loss = sum(F.cross_entropy(out[a], labels[a][idx]) for a in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"[judge] step {step}/{steps} loss {ema:.4f} {time.time() - t0:.0f}s")
    net.eval()
    sd = {
        k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(sd, str(out_dir / "weights.safetensors"))
    (out_dir / "config.json").write_text(json.dumps({"width": 16, "input_size": 64}) + "\n")
    judge = load(out_dir)
    ev_images, ev_scenes = render(1000, seed=EVAL_SEED)
    acc = judge.score(ev_images, ev_scenes)
    summary = {
        "steps": steps,
        "batch": batch,
        "seconds": time.time() - t0,
        "final_loss": ema,
        "heldout_1000": acc,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[judge] done {json.dumps(summary)}")
    return summary


def load(directory: str | Path) -> Judge:
    """Load a judge folder written by ``train_judge``."""
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
