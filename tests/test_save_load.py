"""One folder per SAE: save/load round trips bitwise; broken files give clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import vsae
from vsae import CheckpointError, SAEConfig, build
from vsae.config import ARCHS


def _trained_like(arch: str):
    extra = {"n_candidates": 96} if arch == "archetypal" else {}
    sae = build(SAEConfig(arch=arch, d_in=12, n_latents=48, k=3, **extra))
    gen = torch.Generator().manual_seed(0)
    sae.init_from_data(torch.randn(400, 12, generator=gen) * 2 + 5)
    x = torch.randn(64, 12, generator=gen) * 2 + 5
    opt = torch.optim.AdamW([p for p in sae.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # a few steps so thresholds and weights move off their init
        opt.zero_grad()
        sae.loss(sae.normalize(x)).loss.backward()
        sae.before_step()
        opt.step()
        sae.after_step()
    return sae.eval(), x


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_is_bitwise(arch, tmp_path):
    sae, x = _trained_like(arch)
    sae.save(tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae.safetensors"]
    loaded = vsae.load(tmp_path / "sae")
    assert loaded.cfg == sae.cfg and type(loaded) is type(sae)
    a, b = sae(x), loaded(x)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.codes, b.codes)
    assert torch.equal(sae.decoder_directions(), loaded.decoder_directions())
    assert torch.equal(loaded.norm_mean_D, sae.norm_mean_D) and loaded.norm_scale != 1.0
    # public encode/decode work in raw space: the reconstruction is centred on x's mean, not 0
    assert (a.recon.mean(0) - x.mean(0)).norm() < 0.5 * x.mean(0).norm()


def test_truncated_weights_named(tmp_path):
    sae, _ = _trained_like("topk")
    sae.save(tmp_path)
    path = tmp_path / "sae.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"sae\.safetensors: unreadable safetensors"):
        vsae.load(tmp_path)


def test_shape_mismatch_named(tmp_path):
    sae, _ = _trained_like("topk")
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["n_latents"] = 64
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"_ND' has shape \(48, 12\); the config expects \(64, 12\)"
    ):
        vsae.load(tmp_path)


def test_bad_cfg_json(tmp_path):
    sae, _ = _trained_like("relu")
    sae.save(tmp_path)
    (tmp_path / "cfg.json").write_text(
        '{"format_version": 1, "arch": "relu", "d_in": 12, "nope": 1}'
    )
    with pytest.raises(CheckpointError, match="cfg.json.*unknown SAEConfig key 'nope'"):
        vsae.load(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        vsae.load(tmp_path / "missing")


def test_archetypal_delta_zero_never_nan():
    sae = build(SAEConfig(arch="archetypal", d_in=8, n_latents=16, k=2, delta=0.0))
    sae.init_from_data(torch.randn(100, 8))
    with torch.no_grad():
        sae.mix_NM.fill_(-1.0)  # every row loses its mass: projection must recover
    sae.after_step()
    assert torch.isfinite(sae.dictionary()).all()
    torch.testing.assert_close(sae.mix_NM.sum(-1), torch.ones(16))
    assert torch.all(sae.relax_ND == 0)


def test_sae_package_has_no_function_level_imports():
    """io -> base -> architectures -> registry: imports at module top only, no lazy cycle."""
    import ast
    from pathlib import Path

    import vsae.sae

    lazy = []
    for path in sorted(Path(vsae.sae.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        lazy.append(f"{path.name}:{inner.lineno}")
    assert lazy == []
    assert "noqa: E402" not in (Path(vsae.sae.__file__)).read_text()


def test_vsae_load_is_the_interop_loader_over_the_registry():
    import vsae
    import vsae.interop
    from vsae.interop.vsae_folder import VsaeFormat
    from vsae.sae.registry import REGISTRY

    # one loader for every format; vsae folders go through the registry's load_sae
    # (tests/test_interop_folders.py checks the outputs are bitwise those of load_sae)
    assert vsae.load is vsae.interop.load
    assert type(vsae.interop.READERS["vsae"]) is VsaeFormat
    assert sorted(REGISTRY) == sorted(
        ["relu", "topk", "batchtopk", "jumprelu", "matryoshka_k", "matryoshka_prefix", "archetypal"]
    )


def test_provenance_round_trips_and_never_breaks_loading(tmp_path):
    from vsae.sae.io import CFG_NAME, CheckpointError, read_provenance, write_provenance

    sae = vsae.build(SAEConfig(arch="topk", d_in=8, n_latents=32, k=4))
    sae.save(tmp_path)
    assert read_provenance(tmp_path) == {}
    prov = {"source": "world:clip", "hookpoint": "image", "output": None}
    write_provenance(tmp_path, prov)
    assert read_provenance(tmp_path) == prov
    x = torch.randn(5, 8)
    assert torch.equal(vsae.load(tmp_path).encode(x), sae.encode(x))
    before = (tmp_path / CFG_NAME).read_text()
    with pytest.raises(TypeError):  # not JSON: the file is left as it was
        write_provenance(tmp_path, {"bad": object()})
    assert (tmp_path / CFG_NAME).read_text() == before
    sae.save(tmp_path / "b", provenance={"format": "saelens"})
    assert read_provenance(tmp_path / "b") == {"format": "saelens"}
    with pytest.raises(CheckpointError, match="cfg.json"):
        read_provenance(tmp_path / "missing")
