"""Synthetic activations with ground truth: a sparse superposition of known unit features.

x = sum_i c_i f_i + noise, where the features f_i are random unit vectors, each
fires with its own probability, and firing magnitudes follow a chosen law.
Features can be correlated (a Gaussian copula over groups) and can form a
two-level hierarchy in which a child fires only when its parent does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vsae.config import ConfigError, _strict


@_strict
@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic generator.

    Parameters
    ----------
    d : int
        Activation width.
    n_features : int
        Number of flat (non-hierarchical) true features.
    n_samples : int
        Rows to generate.
    active : float
        Expected number of flat features firing per sample.
    freq_decay : float
        Firing probabilities fall as (i + 1)^-freq_decay (0 = all equal), then
        are rescaled to give ``active`` on average.
    magnitude : str
        ``uniform`` (0.5..1.5), ``exponential`` (mean 1), ``lognormal`` or ``constant``.
    corr : float
        Correlation of the latent Gaussians within a group of ``corr_group`` features.
    corr_group : int
        Size of correlated feature groups.
    n_parents : int
        Parent features of the hierarchy (0 disables it).
    children_per_parent : int
        Children of each parent.
    parent_prob : float
        Firing probability of each parent.
    child_prob : float
        Probability that a child fires given its parent fires.
    noise : float
        Std of isotropic Gaussian noise added to every coordinate.
    offset : float
        Norm of a constant vector added to every sample (real activations are not centred).
    seed : int
        Seed; the output is deterministic given the config.
    """

    d: int = 64
    n_features: int = 256
    n_samples: int = 20_000
    active: float = 5.0
    freq_decay: float = 0.0
    magnitude: str = "uniform"
    corr: float = 0.0
    corr_group: int = 4
    n_parents: int = 0
    children_per_parent: int = 4
    parent_prob: float = 0.05
    child_prob: float = 0.5
    noise: float = 0.0
    offset: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.magnitude not in ("uniform", "exponential", "lognormal", "constant"):
            raise ConfigError(
                f"magnitude={self.magnitude!r}: expected uniform, exponential, "
                "lognormal or constant"
            )
        if self.d < 1 or self.n_features < 0 or self.n_samples < 1:
            raise ConfigError("d, n_samples must be >= 1 and n_features >= 0")
        if not 0 <= self.corr < 1:
            raise ConfigError(f"corr={self.corr}: expected 0 <= corr < 1")
        if self.n_features and not 0 < self.active <= self.n_features:
            raise ConfigError(f"active={self.active}: expected in (0, n_features]")


@dataclass(frozen=True)
class SyntheticData:
    """Generated activations with their ground truth.

    Attributes
    ----------
    acts : Tensor
        [n_samples, d] activations.
    features : Tensor
        [F, d] unit-norm true features: the flat ones, then parents, then children.
    codes : Tensor
        [n_samples, F] true coefficients (0 where a feature is off).
    parent_of : Tensor
        [F] index of each feature's parent, -1 for flat features and parents.
    """

    acts: Tensor
    features: Tensor
    codes: Tensor
    parent_of: Tensor


def _magnitudes(kind: str, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    if kind == "uniform":
        return 0.5 + torch.rand(shape, generator=gen)
    if kind == "exponential":
        return -torch.log(torch.rand(shape, generator=gen).clamp_min(1e-12))
    if kind == "lognormal":
        return torch.exp(0.5 * torch.randn(shape, generator=gen))
    return torch.ones(shape)


def _fires(probs_F: Tensor, n: int, corr: float, group: int, gen: torch.Generator) -> Tensor:
    """Bernoulli firing with a Gaussian copula: features in a group share a factor."""
    F = probs_F.shape[0]
    z = torch.randn(n, F, generator=gen)
    if corr > 0:
        n_groups = math.ceil(F / group)
        shared = torch.randn(n, n_groups, generator=gen).repeat_interleave(group, dim=1)[:, :F]
        z = math.sqrt(1 - corr) * z + math.sqrt(corr) * shared
    thresholds = torch.distributions.Normal(0.0, 1.0).icdf(probs_F.clamp(1e-6, 1 - 1e-6))
    return z < thresholds


def generate(cfg: SyntheticConfig) -> SyntheticData:
    """Generate activations, true features and true codes.

    Parameters
    ----------
    cfg : SyntheticConfig
        The generator's knobs.

    Returns
    -------
    SyntheticData
        Activations [n_samples, d] with their features, codes and hierarchy.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    n_child = cfg.n_parents * cfg.children_per_parent
    F = cfg.n_features + cfg.n_parents + n_child
    feats_FD = torch.randn(F, cfg.d, generator=gen)
    feats_FD /= feats_FD.norm(dim=-1, keepdim=True)
    offset_D = torch.randn(cfg.d, generator=gen)  # drawn early: same for any n_samples
    S = cfg.n_samples
    on_SF = torch.zeros(S, F, dtype=torch.bool)
    if cfg.n_features:
        ranks = torch.arange(cfg.n_features, dtype=torch.float64)
        p = (ranks + 1) ** -cfg.freq_decay
        p = (p * cfg.active / p.sum()).clamp(max=1.0).float()
        on_SF[:, : cfg.n_features] = _fires(p, S, cfg.corr, cfg.corr_group, gen)
    parent_of = torch.full((F,), -1, dtype=torch.long)
    if cfg.n_parents:
        p0 = cfg.n_features
        parents_on = torch.rand(S, cfg.n_parents, generator=gen) < cfg.parent_prob
        on_SF[:, p0 : p0 + cfg.n_parents] = parents_on
        child_on = torch.rand(S, n_child, generator=gen) < cfg.child_prob
        child_on &= parents_on.repeat_interleave(cfg.children_per_parent, dim=1)
        on_SF[:, p0 + cfg.n_parents :] = child_on
        parent_idx = torch.arange(cfg.n_parents).repeat_interleave(cfg.children_per_parent)
        parent_of[p0 + cfg.n_parents :] = p0 + parent_idx
    codes_SF = on_SF * _magnitudes(cfg.magnitude, (S, F), gen)
    acts_SD = codes_SF @ feats_FD
    if cfg.noise > 0:
        acts_SD += cfg.noise * torch.randn(S, cfg.d, generator=gen)
    if cfg.offset > 0:
        acts_SD += cfg.offset * offset_D / offset_D.norm()
    return SyntheticData(acts_SD, feats_FD, codes_SF, parent_of)
