"""The architectures the quality benchmark compares, and how one of them is trained.

Hyper-parameters come from ``configs/<arch>.yaml`` (tuned on the d=64 synthetic
data); the benchmark overrides only sizes, seeds and the sparsity knob.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vsae.config import SAEConfig, TrainConfig, from_dict, replace
from vsae.runconfig import load_run_config
from vsae.sae import BaseSAE
from vsae.training import train

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Variant:
    """One compared architecture: a config file plus fixed overrides."""

    name: str
    label: str
    arch: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def sweeps_coef(self) -> str | None:
        """The sparsity coefficient swept to reach a target L0 (no TopK to set it)."""
        return {"relu": "l1_coef", "jumprelu": "l0_coef"}.get(self.arch)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("relu", "ReLU", "relu"),
        Variant("topk", "TopK", "topk"),
        Variant("batchtopk", "BatchTopK", "batchtopk"),
        Variant("jumprelu", "JumpReLU", "jumprelu"),
        Variant("msae_uw", "MSAE-UW", "matryoshka_k", {"weighting": "uw"}),
        Variant("msae_rw", "MSAE-RW", "matryoshka_k", {"weighting": "rw"}),
        Variant("prefix", "Prefix Matryoshka", "matryoshka_prefix"),
        Variant("ra_sae", "RA-SAE", "archetypal"),
    )
}
# Extra RA-SAE runs of the stability suite: the init shared by all seeds, or random.
RA_INIT_VARIANTS: dict[str, Variant] = {
    "ra_sae_shared": Variant(
        "ra_sae_shared",
        "RA-SAE shared k-means+identity init",
        "archetypal",
        {"archetype_init": "shared"},
    ),
    "ra_sae_random": Variant(
        "ra_sae_random",
        "RA-SAE random init (shared candidates)",
        "archetypal",
        {"archetype_init": "random"},
    ),
}


def is_msae(variant: Variant) -> bool:
    """Nested-k MSAEs train once and are evaluated at any inference k."""
    return variant.arch == "matryoshka_k"


@dataclass(frozen=True)
class TrainSizes:
    """How long each SAE trains."""

    steps: int
    batch_size: int
    eval_samples: int = 256


def sae_config(
    variant: Variant,
    d_in: int,
    expansion: int,
    k: int,
    seed: int,
    configs_dir: Path = CONFIGS_DIR,
    coef: float | None = None,
) -> SAEConfig:
    """The SAE config of a variant for data of width ``d_in``.

    Parameters
    ----------
    variant : Variant
        Which architecture.
    d_in, expansion, k, seed : int
        Width, latents per dimension, active latents (TopK family) and seed.
    configs_dir : Path
        Folder of the per-architecture YAML configs.
    coef : float, optional
        L1 (ReLU) or L0 (JumpReLU) coefficient replacing the config's.

    Returns
    -------
    SAEConfig
    """
    run = load_run_config(configs_dir / f"{variant.arch}.yaml")
    fields = {**run.sae_fields, **variant.fields}
    fields.update(d_in=d_in, expansion=expansion, n_latents=0, seed=seed)
    if variant.arch != "relu" and variant.arch != "jumprelu":
        fields["k"] = k
    if variant.arch == "archetypal":  # two candidates per atom, as the shipped config has
        fields["n_candidates"] = 2 * expansion * d_in
    if variant.arch == "matryoshka_k":
        fields["infer_k"] = k
    if coef is not None:
        fields[variant.sweeps_coef] = coef
    return from_dict(SAEConfig, fields, where=f"{variant.name} ({variant.arch}.yaml)")


def train_config(
    variant: Variant, sizes: TrainSizes, seed: int, configs_dir: Path = CONFIGS_DIR
) -> TrainConfig:
    """The config's optimiser settings at the benchmark's sizes, on the CPU, silent."""
    base = load_run_config(configs_dir / f"{variant.arch}.yaml").train
    return replace(
        base,
        steps=sizes.steps,
        batch_size=sizes.batch_size,
        warmup_steps=min(base.warmup_steps, sizes.steps // 10),
        eval_every=0,
        ckpt_every=0,
        log_every=0,
        eval_samples=sizes.eval_samples,
        seed=seed,
        device="cpu",
        progress=False,
    )


def train_variant(
    variant: Variant,
    data_SD: Tensor,
    sizes: TrainSizes,
    expansion: int,
    k: int,
    seed: int,
    configs_dir: Path = CONFIGS_DIR,
    coef: float | None = None,
    tick: Callable[[str], None] | None = None,
) -> BaseSAE:
    """Train one SAE of ``variant`` on ``data_SD`` and return it in eval mode."""
    if tick is not None:
        tick(f"{variant.name} k={k} seed={seed}" + (f" coef={coef:g}" if coef else ""))
    cfg = sae_config(variant, data_SD.shape[1], expansion, k, seed, configs_dir, coef)
    sae, _ = train(cfg, data_SD, train_config(variant, sizes, seed, configs_dir))
    return sae.eval()


@torch.no_grad()
def encode_all(sae: BaseSAE, x_SD: Tensor, batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Reconstructions and codes of many raw rows, in batches."""
    recons, codes = [], []
    for start in range(0, x_SD.shape[0], batch):
        out = sae(x_SD[start : start + batch])
        recons.append(out.recon)
        codes.append(out.codes)
    return torch.cat(recons), torch.cat(codes)
