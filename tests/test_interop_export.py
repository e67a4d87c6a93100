"""sae.save(DIR, format="saelens"|"sparsify") writes folders whose own forward pass (the
format's definition, tests/interop_refs.py, read from the written files) equals the vsae SAE
in raw space to 1e-5 relative, and vsae.load reads them back to the same outputs.

The real ``sae-lens`` cannot be installed here (see test_interop_folders.py); a real
``eai-sparsify`` round trip is in test_interop_sparsify_lib.py when it is installed.
"""

from __future__ import annotations

import json
import warnings

import interop_refs as ref
import pytest
import torch
from safetensors.torch import load_file

import vsae
from vsae.config import SAEConfig

D, N, B = 16, 64, 48
TOL = 1e-5


def _data(seed: int) -> torch.Tensor:
    return torch.randn(400, D, generator=ref.gen(seed)) * 3.0 + torch.linspace(-2, 2, D)


def _sae(arch: str, **kw) -> vsae.sae.BaseSAE:
    sae = vsae.build(SAEConfig(arch=arch, d_in=D, n_latents=N, k=5, seed=3, **kw))
    sae.init_from_data(_data(1))  # non-trivial mean and scale
    g = ref.gen(2)
    with torch.no_grad():
        sae.b_enc_N.add_(torch.randn(N, generator=g) * 0.1)
        sae.b_dec_D.add_(torch.randn(D, generator=g) * 0.2)
        if arch == "jumprelu":
            sae.log_threshold_N.copy_(torch.rand(N, generator=g).mul(0.5).log())
        if arch in ("batchtopk", "matryoshka_prefix"):
            sae.threshold.fill_(0.4)
            sae.threshold_updates.fill_(1)
    return sae.eval()


def _saelens_files(folder):
    cfg = json.loads((folder / "cfg.json").read_text())
    return cfg, load_file(str(folder / "sae_weights.safetensors"))


def _same(a, b):
    return ref.rel_err(a, b) < TOL


SAELENS_ARCHS = {
    "relu": ({}, "standard"),
    "topk": ({}, "topk"),
    "jumprelu": ({}, "jumprelu"),
    "batchtopk": ({}, "jumprelu"),
    "matryoshka_prefix": ({"prefixes": (16, N)}, "jumprelu"),
}


@pytest.mark.parametrize("arch", sorted(SAELENS_ARCHS))
def test_saelens_export_equals_vsae(tmp_path, arch):
    kw, out_arch = SAELENS_ARCHS[arch]
    sae = _sae(arch, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these are exact: no warning
        sae.save(tmp_path / arch, format="saelens")
    cfg, t = _saelens_files(tmp_path / arch)
    assert cfg["architecture"] == out_arch and cfg["d_in"] == D and cfg["d_sae"] == N
    x = _data(4)[:B]
    with torch.no_grad():
        codes = sae.encode(x)
        assert (codes > 0).any() and (codes == 0).any()
        assert _same(ref.saelens_encode(cfg, t, x), codes)
        assert _same(ref.saelens_decode(cfg, t, codes), sae.decode(codes))
        back = vsae.load(tmp_path / arch)
        assert _same(back.encode(x), codes) and _same(back(x).recon, sae(x).recon)


def test_sparsify_export_equals_vsae(tmp_path):
    sae = _sae("topk")
    sae.provenance = {"model": "ViT-B-32", "hookpoint": "blocks.6"}
    out = sae.save(tmp_path / "blocks.6", format="sparsify")
    cfg = json.loads((out / "cfg.json").read_text())
    t = load_file(str(out / "sae.safetensors"))
    assert cfg["k"] == 5 and cfg["num_latents"] == N and cfg["d_in"] == D
    x = _data(5)[:B]
    with torch.no_grad():
        codes_ref, recon_ref = ref.sparsify_forward(5, t, x)
        assert _same(codes_ref, sae.encode(x)) and _same(recon_ref, sae(x).recon)
        back = vsae.load(out)
        assert back.cfg.arch == "topk" and _same(back(x).recon, recon_ref)
    assert back.provenance["hookpoint"] == "blocks.6"


def test_matryoshka_k_exports_topk_at_infer_k_with_a_warning(tmp_path):
    sae = _sae("matryoshka_k")
    sae.set_infer_k(7)
    x = _data(6)[:B]
    with pytest.warns(UserWarning, match="levels .* dropped"):
        sae.save(tmp_path / "sp", format="sparsify")
    t = load_file(str(tmp_path / "sp" / "sae.safetensors"))
    with torch.no_grad():
        codes_ref, recon_ref = ref.sparsify_forward(7, t, x)
        assert _same(codes_ref, sae.encode(x)) and _same(recon_ref, sae(x).recon)
    sae.set_infer_k(0)  # the dense path is ReLU: SAELens standard, refused by sparsify
    with pytest.warns(UserWarning, match="ReLU"):
        sae.save(tmp_path / "sl", format="saelens")
    cfg, t = _saelens_files(tmp_path / "sl")
    assert cfg["architecture"] == "standard"
    with torch.no_grad():
        assert _same(ref.saelens_encode(cfg, t, x), sae.encode(x))
    with pytest.raises(vsae.InteropError, match="dense ReLU path"):
        sae.save(tmp_path / "sp0", format="sparsify")


def test_archetypal_exports_the_materialised_dictionary(tmp_path):
    sae = _sae("archetypal", n_candidates=N, delta=0.5)
    with pytest.warns(UserWarning, match="materialised dictionary"):
        sae.save(tmp_path / "a", format="saelens")
    cfg, t = _saelens_files(tmp_path / "a")
    x = _data(7)[:B]
    with torch.no_grad():
        codes = sae.encode(x)
        assert _same(ref.saelens_encode(cfg, t, x), codes)
        assert _same(ref.saelens_decode(cfg, t, codes), sae.decode(codes))


def test_exports_refuse_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(vsae.InteropError, match="per-token TopK"):
        _sae("relu").save(tmp_path / "r", format="sparsify")
    fresh = vsae.build(SAEConfig(arch="batchtopk", d_in=D, n_latents=N, k=5))
    with pytest.raises(vsae.InteropError, match="no inference threshold"):
        fresh.save(tmp_path / "b", format="saelens")
    with pytest.raises(vsae.CheckpointError, match="vsae, saelens, sparsify"):
        _sae("topk").save(tmp_path / "x", format="onnx")
    assert not (tmp_path / "r").exists() and not (tmp_path / "b").exists()


def test_imported_provenance_survives_a_vsae_save(tmp_path):
    t = ref.sparsify_tensors(D, N, seed=9)
    cfg = {"d_in": D, "num_latents": N, "k": 4}
    sae = vsae.load(ref.write_sparsify(tmp_path / "layers.2", cfg, t))
    sae.save(tmp_path / "v")
    prov = vsae.sae.io.read_provenance(tmp_path / "v")
    assert prov["format"] == "sparsify" and prov["hookpoint"] == "layers.2"
    assert len(prov["sha256"]) == 64
    x = _data(8)[:B]
    with torch.no_grad():
        assert torch.equal(vsae.load(tmp_path / "v")(x).recon, sae(x).recon)


def test_converted_block_sae_carries_its_output_mode_for_interventions(tmp_path):
    from vsae.interventions.block_sae import load_block_sae

    folder = tmp_path / "unet.up_blocks.0.attentions.1_k10_hidden5120_auxk256_bs4096_lr0.0001"
    (folder / "final").mkdir(parents=True)
    cfg = {"n_dirs_local": N, "d_model": D, "k": 5, "auxk": 8, "dead_steps_threshold": 100}
    (folder / "final" / "config.json").write_text(json.dumps(cfg))
    torch.save({"state_dict": ref.unbox_state(D, N, 4)}, folder / "final" / "state_dict.pth")
    vsae.load(folder / "final").save(tmp_path / "v")
    block = load_block_sae(tmp_path / "v", "up_blocks.0.attentions.1")
    assert block.output == "update"  # read from the provenance the import recorded
    x = _data(9)[:B]
    with torch.no_grad():
        assert torch.equal(block.sae(x).recon, vsae.load(folder / "final")(x).recon)
