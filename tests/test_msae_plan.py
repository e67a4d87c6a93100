"""Nested-k MSAE: every sparse/dense plan of a step equals the dense reference (float64).

``MatryoshkaKSAE.plan`` picks, by a calibrated cost ratio, sparse or dense for each level's
chunk, the dense level's tail and the encoder gradient. Each combination is forced here and
compared with ``vsae.sae.reference.reference_loss`` in value and every gradient.
"""

from __future__ import annotations

import pytest
import torch

from vsae import SAEConfig, build
from vsae.sae.matryoshka_k import LevelPlan
from vsae.sae.reference import reference_loss
from vsae.sae.sparse_cost import measure_ratio, sparse_cost_ratio

N, D = 200, 8  # k0 = 2: levels 2, 4, ..., 128 and the dense level 200 (7 chunks)


def _model(levels=None, n=N, k=2, seed=0):
    extra = {"levels": levels} if levels else {}
    sae = build(
        SAEConfig(arch="matryoshka_k", d_in=D, n_latents=n, k=k, seed=seed, aux_k=4, **extra)
    ).double()
    gen = torch.Generator().manual_seed(seed)
    sae.init_from_data((torch.randn(300, D, generator=gen) * 2 + 1).double())
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return sae


def _shift_to_positive(sae, x, positive: int) -> None:
    """Shift b_enc so that ``positive`` codes per row are positive on average (0: none)."""
    pre = sae.pre_acts(x).detach()
    flat = pre.flatten().sort(descending=True).values
    B = x.shape[0]
    if positive == 0:
        shift = -10 - flat[0]
    elif positive == sae.n_latents:
        shift = 10 - flat[-1]
    else:
        shift = -(flat[positive * B - 1] + flat[positive * B]) / 2
    with torch.no_grad():
        sae.b_enc_N.add_(shift)


def _force(sae, chunks, tail, encoder) -> None:
    """Replace the cost model's decisions (the counts it reports are still the real ones)."""
    real = sae.plan

    def forced(B, chunk_positive, tail_positive, ratio):
        p = real(B, chunk_positive, tail_positive, ratio)
        c = tuple(chunks(j) for j in range(len(chunk_positive)))
        t = None if p.sparse_tail is None else tail
        return LevelPlan(c, t, encoder, p.chunk_positive, p.tail_positive, ratio)

    sae.plan = forced


def _check(sae, x, dead=None, any_positive=True) -> None:
    def grads():
        return {
            n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in sae.named_parameters()
        }

    sae.zero_grad(set_to_none=True)
    fast = sae.loss(x, dead).loss
    fast.backward()
    g_fast = grads()
    sae.zero_grad(set_to_none=True)
    ref = reference_loss(sae, x, dead)
    ref.backward()
    g_ref = grads()
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    for name in g_ref:
        if any_positive or name == "b_dec_D":  # the check is not vacuous
            assert g_ref[name].abs().sum() > 0, name
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-8, atol=1e-11, msg=name)


PLANS = [  # (chunk j sparse?, tail sparse, sparse encoder)
    (lambda j: True, True, True),  # everything sparse (a trained SAE with few positive codes)
    (lambda j: True, True, False),
    (lambda j: j % 2 == 0, True, True),  # mixed chunks
    (lambda j: j % 2 == 1, True, False),
    (lambda j: j < 5, False, False),  # the dense level as one product (an SAE at init)
    (lambda j: False, False, False),  # everything dense
]


@pytest.mark.parametrize("plan", range(len(PLANS)))
@pytest.mark.parametrize("positive", [0, 3, 40, 150, N])  # positive codes per row
def test_every_plan_matches_reference(plan, positive):
    sae = _model()
    x = torch.randn(16, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _shift_to_positive(sae, x, positive)
    _force(sae, *PLANS[plan])
    dead = torch.arange(N) % 3 == 0
    _check(sae, x, dead if plan % 2 else None, any_positive=positive > 0)
    got = sae.last_plan
    assert got.sparse_chunks == tuple(PLANS[plan][0](j) for j in range(7))


@pytest.mark.parametrize("levels", [(2, 5, 9), (37,), (4, 37)])
@pytest.mark.parametrize("ratio", [0.0, float("inf")])
def test_other_level_layouts_match_reference(levels, ratio):
    """All levels sparse (no dense level); the dense level alone; one chunk and the dense level."""
    sae = _model(levels=levels, n=37, k=levels[0])
    sae.sparse_cost_ratio = ratio
    x = torch.randn(9, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3
    _check(sae, x, torch.arange(37) % 4 == 0)
    plan = sae.last_plan
    sparse = ratio == 0.0
    assert plan.sparse_chunks == (sparse,) * (len(levels) - (levels[-1] == 37))
    assert plan.sparse_tail == (sparse if levels[-1] == 37 else None)
    assert plan.sparse_encoder == sparse


def test_plan_counts_positive_codes_per_chunk_and_tail():
    sae = _model()
    sae.sparse_cost_ratio = 0.0
    x = torch.randn(16, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _shift_to_positive(sae, x, 40)
    sae.loss(x)
    plan = sae.last_plan
    ranked = sae.pre_acts(x).detach().sort(dim=1, descending=True).values > 0
    bounds = [0, 2, 4, 8, 16, 32, 64, 128]
    want = [int(ranked[:, s:e].sum()) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    assert list(plan.chunk_positive) == want
    assert plan.tail_positive == int(ranked[:, 128:].sum())
    assert sum(want) + plan.tail_positive == 40 * 16
    assert plan.sparse_encoder and plan.sparse_tail and all(plan.sparse_chunks)


def test_cost_model_decisions():
    sae = _model()
    B, full = 16, 16 * N
    # ratio 4: a part is sparse below full / 4 = 800 positive codes
    plan = sae.plan(B, [10, 900, 799], 100, 4.0)
    assert plan.sparse_chunks == (True, False, True)
    assert plan.sparse_tail is True
    assert plan.sparse_encoder is False  # 1809 codes in all: above 800
    plan = sae.plan(B, [10, 20, 30], 801, 4.0)
    assert plan.sparse_tail is False and plan.sparse_encoder is False
    plan = sae.plan(B, [10, 20, 30], None, 4.0)  # no dense level
    assert plan.sparse_tail is None and plan.sparse_encoder is True
    assert sae.plan(B, [full], 0, 0.9).sparse_chunks == (True,)


def test_calibrated_ratio_is_positive_and_cached():
    r = measure_ratio(512, 16, torch.float32, torch.device("cpu"), repeats=1)
    assert 0 < r < float("inf")
    atoms = torch.randn(300, 12)
    assert sparse_cost_ratio(atoms) == sparse_cost_ratio(atoms.clone()) > 0
