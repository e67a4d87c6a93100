"""One rule at public boundaries: bad shapes raise ValueError naming what came and what was
expected (SAEs, losses, metrics), never a bare assert."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vsae import metrics
from vsae.config import SAEConfig
from vsae.sae import REGISTRY, build
from vsae.sae.losses import mse, nmse


@pytest.fixture(params=sorted(REGISTRY))
def sae(request):
    cfg = SAEConfig(arch=request.param, d_in=8, n_latents=32, k=4, n_candidates=32)
    model = build(cfg)
    model.init_from_data(torch.randn(256, 8, generator=torch.Generator().manual_seed(0)))
    return model.eval()


def test_encode_refuses_the_wrong_width(sae):
    with pytest.raises(ValueError, match=r"shape \(3, 7\); expected \[B, 8\]"):
        sae.encode(torch.randn(3, 7))
    with pytest.raises(ValueError, match=r"shape \(8,\); expected \[B, 8\]"):
        sae(torch.randn(8))


def test_decode_refuses_the_wrong_number_of_latents(sae):
    assert sae.decode(sae.encode(torch.randn(3, 8))).shape == (3, 8)
    with pytest.raises(ValueError, match=r"codes have shape \(3, 31\); expected \[B, 32\]"):
        sae.decode(torch.zeros(3, 31))


def test_init_from_data_refuses_the_wrong_width(sae):
    with pytest.raises(ValueError, match=r"sample has shape \(16, 9\); expected \[S, 8\]"):
        sae.init_from_data(torch.randn(16, 9))


def test_a_config_of_another_architecture_is_refused():
    cfg = SAEConfig(arch="topk", d_in=8, n_latents=32, k=4)
    with pytest.raises(ValueError, match="config arch 'relu'; TopKSAE is 'topk'"):
        REGISTRY["topk"](dataclasses.replace(cfg, arch="relu"))


@pytest.mark.parametrize("fn", [nmse, mse, metrics.fvu, metrics.cosine])
def test_reconstruction_losses_and_metrics_refuse_mismatched_shapes(fn):
    x_BD = torch.randn(4, 3)
    assert float(fn(x_BD, x_BD)) == pytest.approx(1.0 if fn is metrics.cosine else 0.0)
    with pytest.raises(ValueError, match=r"shape \(4, 2\); expected .*\(4, 3\)"):
        fn(x_BD, torch.randn(4, 2))


def test_metric_accumulators_and_detectors_refuse_mismatched_shapes():
    acc = metrics.ReconAccumulator(5)
    with pytest.raises(ValueError, match=r"codes \(2, 4\).*codes \[B, 5\]"):
        acc.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no samples"):
        acc.compute()
    with pytest.raises(
        ValueError, match=r"labels \(3,\): expected codes \[B, N\] and labels \[B\]"
    ):
        metrics.best_threshold_accuracy(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels \(3, 2\)"):
        metrics.identifiability(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"parent_of_F \(2,\)"):
        metrics.absorption_rate(
            torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(2).long(), torch.zeros(3).long()
        )
