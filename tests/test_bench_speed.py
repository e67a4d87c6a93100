"""The speed benchmark's dense references equal vsae's fast paths; ``vsae bench speed --quick``."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli

from vsae import SAEConfig, build
from vsae.bench.speed_msae import roofline_flops
from vsae.sae.reference_model import (
    DenseReferenceSAE,
    boundary_ties,
    compare_gradients,
    float64_recheck,
)

CASES = [
    ("topk", {}),
    ("batchtopk", {}),
    ("matryoshka_k", {}),  # default levels end at n: the dense ReLU level
    ("matryoshka_k", {"levels": (2, 5, 9), "weighting": "rw"}),  # all levels sparse
    ("archetypal", {"delta": 0.5, "n_candidates": 150, "n_neighbors": 6}),
    ("archetypal", {"delta": 0.0, "n_candidates": 74, "n_neighbors": 3}),
    ("archetypal", {"delta": 0.5, "encoder_act": "batchtopk"}),
    ("archetypal", {"delta": 0.5, "n_candidates": 296, "n_neighbors": 8}),  # N m <= C: bank
]
SHAPES = [  # (batch, d, n_latents, k): non-power-of-two n, k = 1, k = n, batch 1
    (16, 8, 37, 3),
    (1, 8, 37, 4),
    (9, 5, 37, 1),
    (6, 4, 37, 37),
]


def _pair(arch: str, extra: dict, d: int, n: int, k: int):
    cfg = SAEConfig(arch=arch, d_in=d, n_latents=n, k=k, aux_k=4, **extra)
    sae = build(cfg).double()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # random parameters so that every one of them matters
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        if arch == "archetypal":
            sae.candidates_CD.copy_(torch.randn(sae.candidates_CD.shape, generator=gen))
            C, m = sae.candidates_CD.shape[0], sae.neighbors_NM.shape[1]
            sae.neighbors_NM.copy_(
                torch.stack([torch.randperm(C, generator=gen)[:m] for _ in range(n)])
            )
            sae.mix_NM.abs_()
            sae.after_step()
    return sae, DenseReferenceSAE.from_sae(sae)


@pytest.mark.parametrize("arch,extra", CASES)
@pytest.mark.parametrize("B,d,n,k", SHAPES)
@pytest.mark.parametrize("with_dead", [False, True])
def test_dense_reference_equals_fast_path(arch, extra, B, d, n, k, with_dead):
    sae, ref = _pair(arch, extra, d, n, k)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, d, generator=gen, dtype=torch.float64) * 2 + 0.5
    dead = None
    if with_dead:
        dead = torch.zeros(n, dtype=torch.bool)
        dead[::3] = True
    diffs = compare_gradients(sae, ref, x, dead)
    trainable = [name for name, p in sae.named_parameters() if p.requires_grad]
    assert set(diffs) == {"loss", "max", *(f"grad/{name}" for name in trainable)}
    assert diffs["max"] < 1e-10, diffs
    # The check is not vacuous: every trainable parameter (but b_enc where no code is
    # positive) received a non-zero gradient on both sides.
    for name, p in sae.named_parameters():
        if p.requires_grad and name != "b_enc_N":
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_comparison_detects_a_wrong_reference():
    sae, ref = _pair("topk", {}, 8, 37, 3)
    with torch.no_grad():
        ref.W_dec_ND.mul_(1.001)  # the decoder differs by 0.1 %
    x = torch.randn(16, 8, dtype=torch.float64)
    diffs = compare_gradients(sae, ref, x)
    assert diffs["max"] > 1e-4


def test_reference_constraints_match_vsae():
    sae, ref = _pair("archetypal", {"delta": 0.5, "n_candidates": 150, "n_neighbors": 6}, 8, 37, 3)
    with torch.no_grad():
        sae.relax_ND.mul_(10)
        ref.relax_ND.mul_(10)
        sae.mix_NM.sub_(0.1)
        ref.W_NC.copy_(torch.zeros_like(ref.W_NC).scatter_add_(1, sae.neighbors_NM, sae.mix_NM))
    sae.after_step()
    ref.after_step()
    torch.testing.assert_close(ref.W_NC.gather(1, sae.neighbors_NM), sae.mix_NM)
    torch.testing.assert_close(ref.relax_ND, sae.relax_ND)
    assert float(sae.relax_ND.norm(dim=-1).max()) <= 0.5 + 1e-9


@pytest.mark.parametrize("arch", ["topk", "matryoshka_k"])
def test_boundary_ties_are_found_and_rechecked_in_float64(arch):
    # latent i has encoder row c_i * u, so every input with x.u > 0 ranks latents by c_i;
    # c_2 == c_3 puts equal pre-activations at ranks 2 and 3, across the k = 3 boundary
    levels = {"levels": (3, 6, 40)} if arch == "matryoshka_k" else {}
    sae = build(SAEConfig(arch=arch, d_in=8, n_latents=40, k=3, seed=0, **levels))
    gen = torch.Generator().manual_seed(0)
    u_D = torch.randn(8, generator=gen)
    c_N = torch.linspace(3.0, 0.1, 40)
    with torch.no_grad():
        sae.b_enc_N.zero_()
        sae.b_dec_D.zero_()
        sae.W_enc_ND.copy_(c_N[:, None] * u_D)
    x_BD = (1 + torch.rand(12, 1, generator=gen)) * u_D + 0.01 * torch.randn(12, 8, generator=gen)
    assert boundary_ties(sae, x_BD) == 0
    c_N[3] = c_N[2]
    with torch.no_grad():
        sae.W_enc_ND.copy_(c_N[:, None] * u_D)
    assert boundary_ties(sae, x_BD) == 12
    recheck = float64_recheck(sae, x_BD)
    assert recheck["ties_float32"] == recheck["ties_float64"] == 12
    assert set(recheck["float64"]) >= {"loss", "max", "grad/W_enc_ND"}
    assert next(sae.parameters()).dtype == torch.float32  # the recheck works on copies


def test_bench_speed_quick_cli(tmp_path):
    out = tmp_path / "speed.json"
    proc = run_cli("bench", "speed", "--quick", "--threads", "1", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed
    assert printed["machine"]["torch_threads"] == 1  # what the workers ran at, not this process
    eq = printed["equivalence"]
    assert set(eq) == {"topk", "batchtopk", "matryoshka_k", "archetypal"}
    for arch, res in eq.items():
        assert res["passed"] is True, (arch, res)
        assert res["max_rel_diff"] < res["tolerance"]
    rows = printed["results"]
    assert {r["arch"] for r in rows} == set(eq)
    for r in rows:
        assert r["vsae"]["samples_per_s"] > 0 and r["vsae"]["peak_mem_mb"] > 0
        if r["reference"].get("skipped"):
            continue
        assert r["reference"]["samples_per_s"] > 0
        assert r["check"]["passed"] is True, r
    (pair,) = printed["ra_vs_topk"]  # RA-SAE and TopK alternating in one process
    assert pair["ratio"] == pair["archetypal_step_s_median"] / pair["topk_step_s_median"]
    assert len(pair["topk_step_s"]) == len(pair["archetypal_step_s"]) == 2
    (share,) = printed["encoder_share_at_recipe_batch"]
    assert share["batch"] == 256 and 0 < share["encoder_share"] < 5
    named = {t["name"]: t for t in printed["targets"]}
    assert named["ra_vs_topk"]["values"] == [pair["ratio"]]
    assert named["topk_encoder_share"]["values"] == [share["encoder_share"]]
    assert {t["name"] for t in printed["targets"]} >= {
        "topk_speedup",
        "msae_speedup",
        "ra_vs_topk",
        "topk_encoder_share",
        "memory_n65536",
        "msae_roofline",
        "msae_trained_vs_topk",
    }
    (roof,) = printed["msae_roofline"]  # MSAE, TopK and the GEMM alternating in one process
    model = roofline_flops(64, 256, 32, tuple(roof["levels"]))
    assert roof["roofline"] == model and roof["levels"] == [4, 8, 16, 32, 64, 128, 256]
    assert roof["roofline_s"] == pytest.approx(model["total_flops"] / roof["gemm_flops_per_s"])
    assert roof["ratio_to_roofline"] == pytest.approx(
        roof["msae_step_s_median"] / roof["roofline_s"]
    )
    assert 0.3 < roof["positive_fraction"] < 0.7  # standard-normal inputs at init
    assert len(roof["plan"]["sparse_chunks"]) == 6
    trained = printed["msae_trained"]
    assert trained["trained_steps"] == 20 and len(trained["positive_fraction_during"]) == 1
    assert 0 < trained["positive_fraction"] < 1
    assert named["msae_trained_vs_topk"]["values"] == [trained["msae_over_topk"]]
    assert named["msae_roofline"]["values"] == [roof["ratio_to_roofline"]]


def test_roofline_flop_model():
    levels = (32, 64, 128, 256, 512, 1024, 2048, 16384)
    model = roofline_flops(1024, 16384, 768, levels)
    assert model["dense_products"] == 5
    assert model["dense_flops"] == 2 * 5 * 1024 * 16384 * 768  # ~129 GFLOP
    assert model["sparse_flops"] == 2 * 3 * 1024 * 4064 * 768  # ~19 GFLOP
    no_dense = roofline_flops(16, 37, 8, (2, 5, 9))
    assert no_dense["dense_flops"] == 2 * 16 * 37 * 8
    assert no_dense["sparse_flops"] == 2 * 3 * 16 * 16 * 8
