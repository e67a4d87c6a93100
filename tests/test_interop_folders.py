"""vsae.load of SAELens, sparsify/SAeUron and sdxl-unbox folders equals each format's own
forward pass (written in tests/interop_refs.py from the tools' code), to 1e-5 relative.

``sae-lens`` is not installed: it pulls about 45 packages (transformer-lens, wandb,
statsmodels, plotly, nltk, opentelemetry, ...), too much for a test extra, so its layout is
written here with random weights and compared with its definition. sparsify's real library
is exercised in test_interop_sparsify_lib.py.
"""

from __future__ import annotations

import json
import warnings

import interop_refs as ref
import pytest
import torch

import vsae

D, N, B = 16, 64, 48
TOL = 1e-5


def _x(seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(B, D, generator=ref.gen(seed)) * scale + 0.5


def _check(sae, codes_ref, recon_ref, x):
    codes = sae.encode(x)
    assert ref.rel_err(codes, codes_ref) < TOL
    assert ref.rel_err(sae.decode(codes_ref), recon_ref) < TOL
    out = sae(x)
    assert ref.rel_err(out.recon, recon_ref) < TOL


SAELENS_CASES = {
    "standard": {"architecture": "standard"},
    "topk": {"architecture": "topk", "k": 5},
    "jumprelu": {"architecture": "jumprelu"},
    "no_b_dec_in": {"architecture": "standard", "apply_b_dec_to_input": False},
    "topk_rescaled": {"architecture": "topk", "k": 7, "rescale_acts_by_decoder_norm": True},
    # SAELens before 6.0: activation_fn_str / activation_fn_kwargs, hook_point at top level
    "pre6_topk": {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}},
}


@pytest.mark.parametrize("case", sorted(SAELENS_CASES))
def test_saelens_equals_its_definition(tmp_path, case):
    cfg = {"d_in": D, "d_sae": N, "dtype": "float32", **SAELENS_CASES[case]}
    cfg["metadata"] = {"model_name": "ViT-B-32", "hook_name": "blocks.9.hook_resid_post"}
    t = ref.saelens_tensors(D, N, seed=1, arch=cfg.get("architecture", "standard"))
    folder = ref.write_saelens(tmp_path / case, cfg, t)
    sae = vsae.load(folder)
    x = _x()
    codes = ref.saelens_encode(cfg, t, x)
    assert (codes > 0).any() and (codes == 0).any()
    _check(sae, codes, ref.saelens_decode(cfg, t, codes), x)
    expected_arch = {"standard": "relu", "no_b_dec_in": "relu", "jumprelu": "jumprelu"}
    assert sae.cfg.arch == expected_arch.get(case, "topk")
    assert sae.provenance["format"] == "saelens"
    assert sae.provenance["hookpoint"] == "blocks.9.hook_resid_post"
    assert sae.provenance["model"] == "ViT-B-32"


def test_saelens_scaling_factor_and_training_batchtopk(tmp_path):
    # pre-6.0 finetuning scaling factor multiplies codes before decoding
    cfg = {"d_in": D, "d_sae": N, "hook_point": "blocks.2.hook_resid_pre", "model_name": "m"}
    t = ref.saelens_tensors(D, N, seed=2)
    t["scaling_factor"] = torch.rand(N, generator=ref.gen(5)) + 0.5
    sae = vsae.load(ref.write_saelens(tmp_path / "sf", cfg, t))
    x = _x(3)
    codes = ref.saelens_encode(cfg, t, x)
    _check(sae, codes, ref.saelens_decode(cfg, t, codes), x)
    assert sae.provenance["hookpoint"] == "blocks.2.hook_resid_pre"
    # a batchtopk training checkpoint: inference is JumpReLU at topk_threshold on every latent
    cfg = {"d_in": D, "d_sae": N, "architecture": "batchtopk", "k": 4}
    t = ref.saelens_tensors(D, N, seed=3)
    t["topk_threshold"] = torch.tensor(0.2)
    sae = vsae.load(ref.write_saelens(tmp_path / "btk", cfg, t))
    jump = {**t, "threshold": torch.full((N,), 0.2)}
    codes = ref.saelens_encode({"architecture": "jumprelu"}, jump, x)
    _check(sae, codes, ref.saelens_decode(cfg, t, codes), x)
    assert sae.cfg.arch == "batchtopk"


def test_saelens_expected_average_only_in_warns_and_matches_saelens(tmp_path):
    cfg = {"d_in": D, "d_sae": N, "normalize_activations": "expected_average_only_in"}
    t = ref.saelens_tensors(D, N, seed=4)
    with pytest.warns(UserWarning, match="scaling factor is not stored"):
        sae = vsae.load(ref.write_saelens(tmp_path / "eavg", cfg, t))
    x = _x(1)
    codes = ref.saelens_encode(cfg, t, x)  # SAELens's load_from_disk applies no factor either
    _check(sae, codes, ref.saelens_decode(cfg, t, codes), x)
    assert "notes" in sae.provenance


def _sparsify_cfg(k: int, **extra) -> dict:
    cfg = {"activation": "topk", "expansion_factor": 4, "normalize_decoder": True}
    return {**cfg, "num_latents": N, "k": k, "multi_topk": False, "d_in": D, **extra}


def test_sparsify_equals_its_definition(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "openai/clip-vit-base-patch32"}))
    t = ref.sparsify_tensors(D, N, seed=6)
    folder = ref.write_sparsify(run / "vision_model.encoder.layers.6", _sparsify_cfg(6), t)
    sae = vsae.load(folder)
    x = _x(2)
    codes, recon = ref.sparsify_forward(6, t, x)
    _check(sae, codes, recon, x)
    assert sae.cfg.arch == "topk" and sae.cfg.k == 6
    prov = sae.provenance
    assert prov["hookpoint"] == "vision_model.encoder.layers.6"
    assert prov["model"] == "openai/clip-vit-base-patch32"
    assert prov["variant"] == "sparsify"
    # num_latents 0: expansion_factor * d_in latents
    cfg0 = _sparsify_cfg(3, num_latents=0)
    sae0 = vsae.load(ref.write_sparsify(tmp_path / "exp", cfg0, t))
    assert sae0.n_latents == 4 * D == N


def test_sparsify_run_folder_lists_its_hookpoints(tmp_path):
    t = ref.sparsify_tensors(D, N, seed=6)
    for name in ("layers.3", "layers.7"):
        ref.write_sparsify(tmp_path / "run" / name, _sparsify_cfg(4), t)
    with pytest.raises(vsae.CheckpointError, match=r"\['layers.3', 'layers.7'\]"):
        vsae.load(tmp_path / "run")


def test_saeuron_batch_topk_infers_per_patch(tmp_path):
    # SAeUron's load_from_disk sets batch_topk = sample_topk = False: per-patch TopK
    cfg = {"expansion_factor": 4, "normalize_decoder": True, "num_latents": 0, "k": 5}
    cfg.update({"batch_topk": True, "sample_topk": False, "input_unit_norm": False, "d_in": D})
    t = ref.sparsify_tensors(D, N, seed=7)
    sae = vsae.load(ref.write_sparsify(tmp_path / "unet.up_blocks.1.attentions.1", cfg, t))
    x = _x(4)
    codes, recon = ref.sparsify_forward(5, t, x)
    _check(sae, codes, recon, x)
    prov = sae.provenance
    assert prov["variant"] == "saeuron" and prov["block"] == "up_blocks.1.attentions.1"
    assert prov["output"] == "output"


def test_sdxl_unbox_equals_its_definition(tmp_path):
    folder = tmp_path / "unet.mid_block.attentions.0_k10_hidden5120_auxk256_bs4096_lr0.0001"
    folder = folder / "final"
    folder.mkdir(parents=True)
    cfg = {"n_dirs_local": N, "d_model": D, "k": 5, "auxk": 8, "dead_steps_threshold": 100}
    (folder / "config.json").write_text(json.dumps(cfg))
    s = ref.unbox_state(D, N, seed=8)
    torch.save({"state_dict": s}, folder / "state_dict.pth")
    torch.save(torch.rand(N) * 20, folder / "mean.pt")
    sae = vsae.load(folder.parent)  # the run folder resolves to its one checkpoint, final/
    x = _x(5, scale=2.0)
    codes, recon = ref.unbox_forward(5, s, x)
    _check(sae, codes, recon, x)
    prov = sae.provenance
    assert prov["format"] == "sdxl_unbox" and prov["block"] == "mid_block.attentions.0"
    assert prov["output"] == "update" and prov["model"] == "stabilityai/sdxl-turbo"
    assert set(prov["latent_stats_files"]) == {"mean.pt"}


def test_vsae_folder_loads_exactly_as_load_sae(tmp_path):
    from vsae.config import SAEConfig
    from vsae.sae import build, load_sae

    sae = build(SAEConfig(arch="topk", d_in=D, n_latents=N, k=4))
    sae.init_from_data(_x(6))
    sae.save(tmp_path / "v", provenance={"source": "world:clip"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = vsae.load(tmp_path / "v"), load_sae(tmp_path / "v")
    x = _x(7)
    assert torch.equal(a.encode(x), b.encode(x)) and torch.equal(a(x).recon, b(x).recon)
    assert a.provenance == {"source": "world:clip"}
    assert type(a) is type(b) and not a.training
