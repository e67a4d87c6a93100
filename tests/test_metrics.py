"""The metrics of REFERENCE §4 on cases with known answers."""

from __future__ import annotations

import torch

from vsae.metrics import ReconAccumulator, cosine, fvu, mmcs, shared_fraction, stability


def test_fvu_and_cos_known_values():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=gen) + 3
    assert fvu(x, x) == 0.0
    assert abs(fvu(x, x.mean(0).expand_as(x)) - 1.0) < 1e-9
    assert abs(cosine(x, 2 * x) - 1.0) < 1e-9
    acc = ReconAccumulator(4)
    codes = torch.zeros(500, 4)
    codes[:, 0] = 1.0
    codes[:100, 1] = 1.0
    for i in range(0, 500, 128):  # streaming equals one shot
        acc.update(x[i : i + 128], x.mean(0).expand(len(x[i : i + 128]), -1), codes[i : i + 128])
    m = acc.compute()
    assert abs(m["fvu"] - 1.0) < 1e-9
    assert m["l0"] == 1.2 and abs(m["sparsity"] - (1 - 1.2 / 4)) < 1e-12
    assert m["dead_frac"] == 0.5 and m["dense_frac"] == 0.5


def test_dictionary_metrics():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(20, 16, generator=gen)
    perm = torch.randperm(20, generator=gen)
    assert abs(stability(a, a[perm] * 3) - 1.0) < 1e-9
    assert abs(mmcs(a, a[perm]) - 1.0) < 1e-9
    b = torch.randn(20, 16, generator=gen)
    assert stability(a, b) < 0.6
    assert shared_fraction(a, a, a[perm], a[perm]) == 1.0
    # decoders agree but encoders are unrelated: nothing is shared
    assert shared_fraction(a, a, b, a[perm]) == 0.0
