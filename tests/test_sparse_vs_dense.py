"""The fast sparse training paths equal the dense references in value and gradient."""

from __future__ import annotations

import pytest
import torch

from vsae import SAEConfig, build
from vsae.sae import sparse
from vsae.sae.reference import dense_batchtopk, dense_topk, reference_loss

ARCH_CASES = [
    ("topk", {}),
    ("batchtopk", {}),
    ("matryoshka_k", {}),
    ("matryoshka_k", {"levels": (2, 5, 9)}),  # no dense level: fully sparse path
    ("matryoshka_k", {"weighting": "rw"}),
    ("matryoshka_prefix", {}),
    ("matryoshka_prefix", {"prefixes": (7, 20, 37)}),
    ("archetypal", {"delta": 0.0}),
    ("archetypal", {"delta": 0.5, "n_candidates": 80, "n_neighbors": 6}),
    ("archetypal", {"delta": 0.5, "encoder_act": "batchtopk"}),
    # N * m <= C: the neighbour-ordered candidate bank
    ("archetypal", {"delta": 0.5, "n_candidates": 200, "n_neighbors": 5}),
    (
        "archetypal",
        {"delta": 0.0, "n_candidates": 190, "n_neighbors": 5, "encoder_act": "batchtopk"},
    ),
]
SHAPES = [  # (batch, d, n_latents, k): odd sizes, k = 1, k = n, batch 1
    (16, 8, 37, 3),
    (1, 8, 37, 4),
    (9, 5, 37, 1),
    (6, 4, 37, 37),
]


def _model(arch: str, extra: dict, d: int, n: int, k: int, seed: int = 0):
    cfg = SAEConfig(arch=arch, d_in=d, n_latents=n, k=k, seed=seed, aux_k=4, **extra)
    sae = build(cfg).double()
    gen = torch.Generator().manual_seed(seed)
    sae.init_from_data((torch.randn(200, d, generator=gen) * 2 + 1).double())
    with torch.no_grad():  # move away from the init so every parameter matters
        for p in sae.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        if arch == "archetypal":
            sae.after_step()
    return sae


def _grads(sae) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in sae.named_parameters()
        if p.requires_grad
    }


def _assert_matches_reference(sae, x, dead=None) -> None:
    """The fast loss and every parameter gradient equal the dense reference's."""
    fast = sae.loss(x, dead).loss
    fast.backward()
    g_fast = _grads(sae)
    sae.zero_grad()
    ref = reference_loss(sae, x, dead)
    ref.backward()
    g_ref = _grads(sae)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-12)
    assert g_fast.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.parametrize("arch,extra", ARCH_CASES)
@pytest.mark.parametrize("B,d,n,k", SHAPES)
def test_fast_loss_matches_reference(arch, extra, B, d, n, k):
    sae = _model(arch, extra, d, n, k)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, d, generator=gen, dtype=torch.float64) * 3
    dead = torch.zeros(n, dtype=torch.bool)
    dead[::3] = True
    _assert_matches_reference(sae, x, dead)


def test_gradients_are_not_trivially_zero():
    sae = _model("topk", {}, 8, 37, 3)
    x = torch.randn(16, 8, dtype=torch.float64)
    sae.loss(x, torch.ones(37, dtype=torch.bool)).loss.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_selection_helpers_match_dense_masks():
    gen = torch.Generator().manual_seed(3)
    pre = torch.randn(7, 23, generator=gen, dtype=torch.float64)
    sel = sparse.topk_select(pre, 5)
    dense = sparse.to_dense(sel, torch.relu(pre[sel.rows_M, sel.cols_M]))
    torch.testing.assert_close(dense, dense_topk(pre, 5))
    sel = sparse.batchtopk_select(pre, 5)
    dense = sparse.to_dense(sel, torch.relu(pre[sel.rows_M, sel.cols_M]))
    torch.testing.assert_close(dense, dense_batchtopk(pre, 5))
    assert sel.rows_M.numel() == 35 and torch.all(sel.rows_M[1:] >= sel.rows_M[:-1])


@pytest.mark.parametrize("select", ["topk", "batchtopk"])
def test_gather_pre_gradients_equal_dense_autograd(select):
    """Every input's gradient, x included, with a non-zero b_dec (its matrix-vector path)."""
    gen = torch.Generator().manual_seed(5)
    B, D, N = 6, 7, 13
    f64 = dict(generator=gen, dtype=torch.float64)
    x = torch.randn(B, D, **f64).requires_grad_(True)
    b_dec = torch.randn(D, **f64).requires_grad_(True)
    W = torch.randn(N, D, **f64).requires_grad_(True)
    b_enc = torch.randn(N, **f64).requires_grad_(True)
    pre_ref = (x - b_dec) @ W.T + b_enc
    sel = getattr(sparse, f"{select}_select")(pre_ref, 4)
    vals = sparse.gather_pre(x, b_dec, W, b_enc, pre_ref.detach(), sel)
    ref = pre_ref[sel.rows_M, sel.cols_M]
    torch.testing.assert_close(vals, ref)
    g = torch.randn(vals.shape, **f64)
    inputs = (x, b_dec, W, b_enc)
    for got, want in zip(
        torch.autograd.grad(vals, inputs, g), torch.autograd.grad(ref, inputs, g), strict=True
    ):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want)
    # both backward passes group the same selection by column once
    assert sel.column_bags is sel.column_bags


def test_sparse_decode_equals_dense_product():
    gen = torch.Generator().manual_seed(4)
    pre = torch.randn(5, 11, generator=gen, dtype=torch.float64)
    W = torch.randn(11, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    sel = sparse.topk_select(pre, 3)
    vals = pre[sel.rows_M, sel.cols_M].clone().requires_grad_(True)
    out = sparse.sparse_decode(sel, vals, W)
    ref = sparse.to_dense(sel, vals) @ W
    torch.testing.assert_close(out, ref)
    g = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    gw, gv = torch.autograd.grad(out, (W, vals), g)
    gw_ref, gv_ref = torch.autograd.grad(ref, (W, vals), g)
    torch.testing.assert_close(gw, gw_ref)
    torch.testing.assert_close(gv, gv_ref)


@pytest.mark.parametrize("n_candidates", [200, 100])  # bank copy (N m <= C), and the table
def test_archetypal_atoms_follow_candidate_changes(n_candidates):
    """The neighbour-ordered bank is derived: in-place edits, loads and dtype moves rebuild it."""
    from vsae.sae.reference import archetypal_dictionary

    sae = _model("archetypal", {"n_candidates": n_candidates, "n_neighbors": 5}, 8, 37, 3)
    torch.testing.assert_close(sae.dictionary(), archetypal_dictionary(sae))
    with torch.no_grad():
        sae.candidates_CD.mul_(2.0)
    torch.testing.assert_close(sae.dictionary(), archetypal_dictionary(sae))
    with torch.no_grad():
        sae.neighbors_NM.copy_(sae.neighbors_NM.flip(-1))
    torch.testing.assert_close(sae.dictionary(), archetypal_dictionary(sae))
    other = _model("archetypal", {"n_candidates": n_candidates, "n_neighbors": 5}, 8, 37, 3, 5)
    sae.load_state_dict(other.state_dict())
    torch.testing.assert_close(sae.dictionary(), other.dictionary())
    single = sae.float()
    torch.testing.assert_close(single.dictionary(), archetypal_dictionary(single))
    used = torch.tensor([3, 0, 36])
    torch.testing.assert_close(single.mixtures(used), single.mixtures()[used])


@pytest.mark.parametrize("share", [0.0, 1.0])  # always all N mixtures / always the subset
@pytest.mark.parametrize("n_candidates", [200, 100])
def test_archetypal_subset_and_full_mixing_agree(monkeypatch, share, n_candidates):
    from vsae.sae.archetypal import ArchetypalSAE

    monkeypatch.setattr(ArchetypalSAE, "SUBSET_MAX_SHARE", share)
    sae = _model(
        "archetypal", {"n_candidates": n_candidates, "n_neighbors": 5, "delta": 0.5}, 8, 37, 3
    )
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    _assert_matches_reference(sae, x, torch.arange(37) % 4 == 0)
