"""Round trip with EleutherAI's real sparsify library (``eai-sparsify``, the ``interop-test``
extra): a checkpoint written by ``SparseCoder.save_to_disk`` loads into vsae with the same
outputs, and vsae's sparsify export loads back with ``SparseCoder.load_from_disk`` with the
same outputs. Importing sparsify pulls transformers, datasets and accelerate (~20 s here), so
the test is marked slow."""

from __future__ import annotations

import os

import interop_refs as ref
import pytest
import torch

import vsae

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sparsify():
    """The library, imported only when these tests run (not at collection: it takes ~20 s)."""
    # sparsify decodes with triton kernels when triton imports; on a CPU-only machine its own
    # switch selects the eager decoder (an index + matmul, the same sum).
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    return pytest.importorskip("sparsify", reason="pip install -e '.[interop-test]'")


D, N, K, B = 24, 96, 6, 40


def _real_coder(sparsify, seed: int):
    coder = sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=N, k=K))
    g = ref.gen(seed)
    with torch.no_grad():
        coder.encoder.weight.copy_(torch.randn(N, D, generator=g) / D**0.5)
        coder.encoder.bias.copy_(torch.randn(N, generator=g) * 0.1)
        coder.W_dec.copy_(torch.randn(N, D, generator=g) * 0.3)
        coder.b_dec.copy_(torch.randn(D, generator=g))
    return coder.eval()


def _real_outputs(coder, x):
    with torch.no_grad():
        top_acts, top_idx, _ = coder.encode(x)
        codes = torch.zeros(len(x), coder.num_latents).scatter(-1, top_idx, top_acts)
        return codes, coder.decode(top_acts, top_idx)


def test_real_sparsify_checkpoint_into_vsae_and_back(tmp_path, sparsify):
    coder = _real_coder(sparsify, 31)
    coder.save_to_disk(tmp_path / "layers.5")
    x = torch.randn(B, D, generator=ref.gen(1)) * 2
    codes, recon = _real_outputs(coder, x)
    sae = vsae.load(tmp_path / "layers.5")
    assert sae.source_format == "sparsify" and sae.cfg.k == K
    with torch.no_grad():
        assert ref.rel_err(sae.encode(x), codes) < 1e-5
        assert ref.rel_err(sae(x).recon, recon) < 1e-5
    # vsae -> sparsify export -> the real loader
    sae.save(tmp_path / "export" / "layers.5", format="sparsify")
    back = sparsify.SparseCoder.load_from_disk(tmp_path / "export" / "layers.5")
    codes2, recon2 = _real_outputs(back, x)
    assert ref.rel_err(codes2, codes) < 1e-5 and ref.rel_err(recon2, recon) < 1e-5
    loaded = sparsify.SparseCoder.load_many(str(tmp_path / "export"), local=True)
    assert list(loaded) == ["layers.5"]


def test_vsae_trained_topk_exports_to_real_sparsify(tmp_path, sparsify):
    sae = vsae.build(vsae.SAEConfig(arch="topk", d_in=D, n_latents=N, k=K, seed=2))
    data = torch.randn(500, D, generator=ref.gen(3)) * 3 + 1.5
    sae.init_from_data(data)  # normalisation folded into the export
    sae.eval()
    sae.save(tmp_path / "hp", format="sparsify")
    coder = sparsify.SparseCoder.load_from_disk(tmp_path / "hp")
    x = data[:B]
    codes, recon = _real_outputs(coder, x)
    with torch.no_grad():
        assert ref.rel_err(sae.encode(x), codes) < 1e-5
        assert ref.rel_err(sae(x).recon, recon) < 1e-5
