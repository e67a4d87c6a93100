"""The quality benchmark's metrics on hand-made inputs, and the archetypal init option."""

from __future__ import annotations

import math

import pytest
import torch

from vsae.config import ConfigError, SAEConfig
from vsae.metrics import (
    absorption_rate,
    best_latents,
    best_threshold_accuracy,
    identifiability,
)
from vsae.sae import build


def _hierarchy():
    # Features: 0 = parent, 1 and 2 = its children, 3 = a flat feature.
    parent_of_F = torch.tensor([-1, 0, 0, -1])
    true_BF = torch.tensor(
        [
            [1.0, 1.0, 0.0, 0.0],  # child 1 fires
            [1.0, 0.0, 1.0, 0.0],  # child 2 fires
            [1.0, 1.0, 1.0, 0.0],  # both fire: one (sample, parent) pair
            [1.0, 0.0, 0.0, 1.0],  # parent alone: not counted
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    return parent_of_F, true_BF


def test_absorption_rate_counts_pairs_where_the_parent_latent_is_silent():
    parent_of_F, true_BF = _hierarchy()
    latent_of_F = torch.tensor([2, 0, 1, 3])
    codes_BN = torch.zeros(5, 4)
    codes_BN[0, 2] = 0.5  # parent latent fires with child 1
    codes_BN[1, 1] = 0.5  # child 2 absorbed: the parent latent is silent
    codes_BN[2, 2] = 0.7
    codes_BN[3, 2] = 0.0  # parent alone and silent: outside the definition
    assert absorption_rate(codes_BN, true_BF, parent_of_F, latent_of_F) == pytest.approx(1 / 3)
    codes_BN[1, 2] = 0.1
    assert absorption_rate(codes_BN, true_BF, parent_of_F, latent_of_F) == 0.0
    codes_BN[:, 2] = 0.0
    assert absorption_rate(codes_BN, true_BF, parent_of_F, latent_of_F) == 1.0


def test_absorption_rate_is_nan_without_children():
    true_BF = torch.ones(3, 2)
    rate = absorption_rate(torch.ones(3, 4), true_BF, torch.tensor([-1, -1]), torch.tensor([0, 1]))
    assert math.isnan(rate)


def test_best_latents_picks_the_closest_atom():
    atoms_ND = torch.tensor([[0.0, 1.0], [1.0, 0.1], [-1.0, 0.0]])
    feats_FD = torch.tensor([[2.0, 0.0], [0.1, -3.0]])
    assert best_latents(feats_FD, atoms_ND).tolist() == [1, 2]


def test_best_threshold_accuracy_finds_the_separating_latent_and_threshold():
    labels_B = torch.tensor([1, 1, 0, 0, 1, 0])
    codes_BN = torch.tensor(
        [
            [0.0, 0.9],
            [1.0, 0.8],
            [1.0, 0.1],
            [0.0, 0.0],
            [0.0, 0.5],
            [1.0, 0.3],
        ]
    )
    acc, j, thr = best_threshold_accuracy(codes_BN, labels_B)
    assert (acc, j) == (1.0, 1)
    assert 0.3 < thr < 0.5
    # Latent 0 alone: ties at 0 and 1 allow only 'all', 'code > 0' or 'none': best 3/6.
    acc0, _, _ = best_threshold_accuracy(codes_BN[:, :1], labels_B)
    assert acc0 == pytest.approx(0.5)


def test_best_threshold_accuracy_cannot_split_ties():
    # Equal codes can not be split, so the best is predicting the majority class.
    labels_B = torch.tensor([1, 0, 0, 0])
    acc, _, thr = best_threshold_accuracy(torch.zeros(4, 3), labels_B)
    assert acc == 0.75
    assert not (0.0 > thr)  # "absent" everywhere: the threshold is not below the codes


def test_identifiability_scores_every_concept():
    labels_BF = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]).bool()
    codes_BN = torch.tensor([[2.0, 0.0, 0.1], [0.0, 1.0, 0.1], [1.0, 3.0, 0.1], [0.0, 0.0, 0.1]])
    assert identifiability(codes_BN, labels_BF) == [1.0, 1.0]
    # A latent that fires on the wrong samples is 0 % accurate as 'code > t': no sign flips.
    assert identifiability(-codes_BN[:, :1].abs() + 2, labels_BF[:, :1]) == [0.5]


@pytest.mark.parametrize("init", ["kmeans", "shared", "random"])
def test_archetype_init_options(init):
    gen = torch.Generator().manual_seed(0)
    x_SD = torch.randn(600, 8, generator=gen) + 3.0
    saes = []
    for seed in (0, 1):
        cfg = SAEConfig(
            arch="archetypal",
            d_in=8,
            n_latents=32,
            k=4,
            n_neighbors=4,
            archetype_init=init,
            seed=seed,
        )
        sae = build(cfg)
        sae.init_from_data(x_SD)
        saes.append(sae)
    mix_NM = saes[0].mix_NM.detach()
    assert torch.allclose(mix_NM.sum(-1), torch.ones(32))
    assert (mix_NM >= 0).all()
    same_cands = torch.equal(saes[0].candidates_CD, saes[1].candidates_CD)
    same_atoms = torch.allclose(saes[0].dictionary(), saes[1].dictionary())
    if init == "kmeans":
        assert not same_cands
    elif init == "shared":
        assert same_cands and same_atoms
        assert (mix_NM[:, 0] == 1).all()
    else:
        assert same_cands and not same_atoms
        assert (mix_NM[:, 0] < 1).all()


def test_archetype_init_rejects_unknown_values():
    with pytest.raises(ConfigError, match="archetype_init"):
        SAEConfig(arch="archetypal", d_in=8, n_latents=16, k=4, archetype_init="identity")
