"""The synthetic generator: determinism, unit features, sparsity and the hierarchy."""

from __future__ import annotations

import torch

from vsae.data.synthetic import SyntheticConfig, generate


def test_deterministic_and_consistent():
    cfg = SyntheticConfig(d=16, n_features=64, n_samples=2000, active=3, seed=5)
    a, b = generate(cfg), generate(cfg)
    assert torch.equal(a.acts, b.acts)
    assert not torch.equal(
        a.acts, generate(SyntheticConfig(d=16, n_features=64, seed=6)).acts[:2000]
    )
    torch.testing.assert_close(a.features.norm(dim=-1), torch.ones(64))
    torch.testing.assert_close(a.acts, a.codes @ a.features)
    active = (a.codes > 0).sum(-1).float().mean()
    assert 2.6 < active < 3.4


def test_hierarchy_children_fire_only_with_parent():
    cfg = SyntheticConfig(
        d=32,
        n_features=10,
        n_samples=5000,
        n_parents=3,
        children_per_parent=4,
        parent_prob=0.3,
        child_prob=0.5,
    )
    data = generate(cfg)
    children = (data.parent_of >= 0).nonzero().squeeze(-1)
    assert len(children) == 12
    on = data.codes > 0
    for c in children.tolist():
        p = int(data.parent_of[c])
        assert on[:, c].any()
        assert not (on[:, c] & ~on[:, p]).any()
        rate = on[on[:, p], c].float().mean()
        assert 0.4 < rate < 0.6


def test_correlation_raises_co_firing():
    base = dict(d=16, n_features=40, n_samples=20000, active=4, corr_group=4)
    plain = generate(SyntheticConfig(**base)).codes > 0
    corr = generate(SyntheticConfig(**base, corr=0.8)).codes > 0

    def cofire(on):
        return (on[:, 0] & on[:, 1]).float().mean() / (
            on[:, 0].float().mean() * on[:, 1].float().mean()
        )

    assert cofire(corr) > 2 * cofire(plain)
