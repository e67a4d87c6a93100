"""vsae.load of MSAE, saev and overcomplete checkpoint files equals each format's own forward
pass (tests/interop_refs.py, and real torch modules for overcomplete's BatchNorm), 1e-5
relative, on inputs in the source's own space.

``saev`` and ``overcomplete`` are on the package index but not installed (checked with pip's
dry run): ``saev`` 0.1.0 pulls 27 more packages (marimo, polars, altair, submitit, tyro,
beartype, jaxtyping, ...); ``Overcomplete`` 0.3.0 pulls opencv-python, scikit-image and
scikit-learn. Their layouts are small and fully read
from their code, so the test writes them (saev's JSON line + torch payload, overcomplete's
state dict) and compares with the definition.
"""

from __future__ import annotations

import interop_refs as ref
import pytest
import torch
from torch import nn

import vsae

D, N, B = 16, 64, 48
TOL = 1e-5
MEAN = torch.linspace(-1, 1, D)
SCALE = 0.37


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, D, generator=ref.gen(seed)) * 2.0 + MEAN


def _check(sae, codes_ref, recon_ref, x):
    assert (codes_ref != 0).any() and (codes_ref == 0).any()
    assert ref.rel_err(sae.encode(x), codes_ref) < TOL
    assert ref.rel_err(sae.decode(codes_ref), recon_ref) < TOL
    assert ref.rel_err(sae(x).recon, recon_ref) < TOL


def _msae_file(tmp_path, name, tied=False):
    s = ref.msae_state(D, N, seed=11, tied=tied)
    path = tmp_path / name
    torch.save({"model": s, "mean_center": MEAN, "scaling_factor": SCALE, "target_norm": 4.0}, path)
    return path, s


def test_msae_topk_equals_its_definition(tmp_path):
    name = f"{N}_{D}_TopKReLU_6_False_False_0.0_cc3m_ViT-L~14_train_image_2905936_{D}.pth"
    path, s = _msae_file(tmp_path, name)
    sae = vsae.load(path)
    x = _x(1)
    codes = ref.msae_encode(s, MEAN, SCALE, x, topk=6)
    _check(sae, codes, ref.msae_decode(s, MEAN, SCALE, codes), x)
    assert sae.cfg.arch == "topk" and sae.cfg.k == 6
    prov = sae.provenance
    assert prov["model"] == "ViT-L/14" and prov["modality"] == "image"
    assert len(prov["sha256"]) == 64 and prov["format"] == "msae"


@pytest.mark.parametrize("tied", [False, True])
def test_msae_matryoshka_dense_and_topk_paths(tmp_path, tied):
    name = f"{N}_{D}_TopKReLU_4_RW_{tied}_False_0.0_imagenet_RN50_val_text_500_{D}.pth"
    path, s = _msae_file(tmp_path, name, tied=tied)
    sae = vsae.load(tmp_path)  # a folder holding one MSAE file resolves to it
    x = _x(2)
    # MSAE's SAE wrapper: dense ReLU codes by default ...
    codes = ref.msae_encode(s, MEAN, SCALE, x, topk=None)
    _check(sae, codes, ref.msae_decode(s, MEAN, SCALE, codes), x)
    assert sae.cfg.arch == "matryoshka_k" and sae.cfg.weighting == "rw"
    assert sae.levels == (4, 8, 16, 32, N)
    # ... or TopK at encode(x, topk=K)
    sae.set_infer_k(9)
    codes = ref.msae_encode(s, MEAN, SCALE, x, topk=9)
    _check(sae, codes, ref.msae_decode(s, MEAN, SCALE, codes), x)
    assert sae.provenance["model"] == "RN50" and sae.provenance["modality"] == "text"


def test_msae_relu_and_batchtopk(tmp_path):
    path, s = _msae_file(tmp_path, f"{N}_{D}_ReLU_003_False_False_0.0_cc3m_ViT-B~16_x.pth")
    sae = vsae.load(path)
    x = _x(3)
    codes = ref.msae_encode(s, MEAN, SCALE, x, topk=None)
    _check(sae, codes, ref.msae_decode(s, MEAN, SCALE, codes), x)
    assert sae.cfg.arch == "relu"
    path, s = _msae_file(tmp_path, f"{N}_{D}_BatchTopKReLU_5_False_False_0.0_cc3m.pth")
    sae = vsae.load(path)
    # BatchTopKReLU: the B*k largest pre-activations of the whole batch, then ReLU
    pre = ((x - MEAN) * SCALE - s["pre_bias"]) @ s["encoder"] + s["latent_bias"]
    vals, idx = pre.flatten().topk(B * 5)
    codes = torch.zeros(B * N).scatter(0, idx, vals.relu()).reshape(B, N)
    _check(sae, codes, ref.msae_decode(s, MEAN, SCALE, codes), x)


def test_msae_refuses_what_vsae_cannot_compute(tmp_path):
    path, _ = _msae_file(tmp_path, f"{N}_{D}_TopKReLU_6_False_False_30.0_cc3m.pth")
    with pytest.raises(vsae.InteropError, match="soft_cap=30.0"):
        vsae.load(path)
    path, _ = _msae_file(tmp_path, f"{N}_{D}_TopK_6_False_False_0.0_cc3m.pth")
    with pytest.raises(vsae.InteropError, match="'TopK' is not supported"):
        vsae.load(path)


def _saev(tmp_path, cls, header=None, **params):
    s = ref.saev_state(D, N, seed=12)
    if cls == "BatchTopK":
        s["activation.threshold"] = torch.tensor(params.pop("threshold"))
    act = {"cls": cls, "params": {"key": cls.lower(), **params}}
    header = header or {"schema": 5, "cfg": {"d_model": D, "d_sae": N, "activation": act}}
    return ref.write_saev(tmp_path / cls / "sae.pt", {**header, "commit": "abc"}, s), s


@pytest.mark.parametrize(
    ("cls", "params"),
    [("Relu", {}), ("TopK", {"top_k": 5}), ("BatchTopK", {"top_k": 5, "threshold": 0.4})],
)
def test_saev_equals_its_definition(tmp_path, cls, params):
    path, s = _saev(tmp_path, cls, **dict(params))
    if cls == "TopK":
        with pytest.warns(UserWarning, match="negative"):
            sae = vsae.load(path.parent)
    else:
        sae = vsae.load(path.parent)
    x = _x(4)
    codes = ref.saev_encode(cls, s, x, top_k=params.get("top_k", 0))
    _check(sae, codes, ref.saev_decode(s, codes), x)
    assert sae.provenance["schema"] == 5 and sae.provenance["commit"] == "abc"


def test_saev_batchtopk_nonpositive_threshold_is_relu(tmp_path):
    path, s = _saev(tmp_path, "BatchTopK", top_k=5, threshold=-0.3)
    sae = vsae.load(path)
    x = _x(5)
    codes = ref.saev_encode("BatchTopK", s, x)
    assert torch.equal(codes, saev_relu := ref.saev_encode("Relu", s, x))
    _check(sae, saev_relu, ref.saev_decode(s, codes), x)


def test_saev_topk_differs_only_where_vsae_applies_relu(tmp_path):
    path, s = _saev(tmp_path, "TopK", top_k=5)
    s_neg = {**s, "b_enc": s["b_enc"] - 3.0}  # few positive pre-activations: negatives in top k
    path = ref.write_saev(path, {"schema": 5, "cfg": _saev_cfg("TopK", 5)}, s_neg)
    with pytest.warns(UserWarning):
        sae = vsae.load(path)
    x = _x(6)
    saev_codes = ref.saev_encode("TopK", s_neg, x, top_k=5)
    assert (saev_codes < 0).any()
    assert ref.rel_err(sae.encode(x), saev_codes.relu()) < TOL


def _saev_cfg(cls, top_k):
    return {"d_model": D, "d_sae": N, "activation": {"cls": cls, "params": {"top_k": top_k}}}


def test_saev_legacy_header_and_b_dec_on_input(tmp_path):
    legacy = {"d_vit": D, "exp_factor": N // D, "n_reinit_samples": 10, "l1_coeff": 0.1}
    path, s = _saev(tmp_path, "Relu", header=legacy)
    with pytest.warns(UserWarning, match="2025-07-31"):
        sae_now = vsae.load(path, format="saev")
    sae_old = vsae.load(path, format="saev", b_dec_on_input=True)
    x = _x(7)
    now, old = ref.saev_encode("Relu", s, x), ref.saev_encode("Relu", s, x, sub_b_dec=True)
    _check(sae_now, now, ref.saev_decode(s, now), x)
    _check(sae_old, old, ref.saev_decode(s, old), x)
    assert sae_old.provenance["b_dec_on_input"] is True


class OvercompleteRef(nn.Module):
    """overcomplete's SAE written from its modules: MLPEncoder(nb_blocks=0) -> relu ->
    (top_k | thresholds) -> DictionaryLayer (l2-normalised rows times exp(multiplier))."""

    def __init__(self, norm: str, top_k: int = 0, jump: bool = False):
        super().__init__()
        g = ref.gen(13)
        bn = nn.BatchNorm1d(N) if norm == "bn" else nn.Identity()
        self.encoder = nn.Module()
        self.encoder.final_block = nn.Sequential(nn.Linear(D, N), bn)
        self.dictionary = nn.Module()
        self.dictionary._weights = nn.Parameter(torch.randn(N, D, generator=g))
        self.dictionary.multiplier = nn.Parameter(torch.tensor(0.3))
        if jump:
            self.thresholds = nn.Parameter(torch.randn(N, generator=g) * 0.3 - 1.0)
        if norm == "bn":  # non-trivial running statistics, then eval mode
            bn.running_mean.copy_(torch.randn(N, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(N, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(N, generator=g) + 0.5)
            bn.bias.data.copy_(torch.randn(N, generator=g) * 0.1)
        self.top_k = top_k
        self.eval()

    def encode(self, x):
        codes = torch.relu(self.encoder.final_block(x))
        if hasattr(self, "thresholds"):
            return codes * (codes >= torch.exp(self.thresholds))
        if self.top_k:
            top = codes.topk(self.top_k, dim=-1)
            return torch.zeros_like(codes).scatter(-1, top.indices, top.values)
        return codes

    def decode(self, z):
        w = self.dictionary._weights
        return z @ (
            w / (w.norm(dim=1, keepdim=True) + 1e-8) * torch.exp(self.dictionary.multiplier)
        )


@pytest.mark.parametrize(
    ("norm", "top_k", "jump", "arch"),
    [("none", 5, False, "topk"), ("bn", 5, False, "topk"), ("none", 0, False, "relu"),
     ("bn", 0, True, "jumprelu")],
)  # fmt: skip
def test_overcomplete_equals_its_definition(tmp_path, norm, top_k, jump, arch):
    model = OvercompleteRef(norm, top_k, jump)
    path = tmp_path / "sae.pt"
    torch.save(model.state_dict(), path)
    sae = vsae.load(path, top_k=None if jump else top_k)
    x = _x(8)
    with torch.no_grad():
        codes = model.encode(x)
        _check(sae, codes, model.decode(codes), x)
    assert sae.cfg.arch == arch and sae.provenance["format"] == "overcomplete"


def test_overcomplete_needs_top_k_and_reads_archetypal(tmp_path):
    model = OvercompleteRef("none")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(vsae.InteropError, match="pass top_k=K"):
        vsae.load(tmp_path / "plain.pt")
    # relaxed archetypal dictionary: (relu(W) row-normalised) C + Relax, times exp(multiplier)
    g = ref.gen(14)
    C = torch.randn(80, D, generator=g)
    state = {
        "encoder.weight": torch.randn(N, D, generator=g),
        "encoder.bias": torch.randn(N, generator=g) * 0.1,
        "dictionary.C": C,
        "dictionary.W": torch.rand(N, 80, generator=g),
        "dictionary.Relax": torch.randn(N, D, generator=g) * 0.05,
        "dictionary.multiplier": torch.tensor(-0.2),
    }
    torch.save(state, tmp_path / "ra.pt")
    sae = vsae.load(tmp_path / "ra.pt", format="overcomplete", top_k=6)
    x = _x(9)
    codes = ref.topk_scatter(torch.relu(x @ state["encoder.weight"].T + state["encoder.bias"]), 6)
    W = state["dictionary.W"] / state["dictionary.W"].sum(-1, keepdim=True)
    atoms = (W @ C + state["dictionary.Relax"]) * torch.exp(torch.tensor(-0.2))
    _check(sae, codes, codes @ atoms, x)


def test_overcomplete_tied_encoder_uses_the_dictionary(tmp_path):
    # SAE.tied(): TieableEncoder without its own weight, x D^T (+ bias), then ReLU
    g = ref.gen(15)
    w = torch.randn(N, D, generator=g)
    state = {
        "encoder.bias": torch.randn(N, generator=g) * 0.1,
        "dictionary._weights": w,
        "dictionary.multiplier": torch.tensor(0.1),
    }
    torch.save(state, tmp_path / "tied.pt")
    sae = vsae.load(tmp_path / "tied.pt", top_k=4)
    atoms = w / (w.norm(dim=1, keepdim=True) + 1e-8) * torch.exp(torch.tensor(0.1))
    x = _x(10)
    codes = ref.topk_scatter(torch.relu(x @ atoms.T + state["encoder.bias"]), 4)
    _check(sae, codes, codes @ atoms, x)
