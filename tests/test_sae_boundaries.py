"""One rule at the SAE's public boundary: bad shapes raise ValueError naming both shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vsae.config import SAEConfig
from vsae.sae import REGISTRY, build


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
