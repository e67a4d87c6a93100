"""Bias analysis (vsae.analysis.bias*): a planted shortcut found by intervention, no false
alarm without one, debiasing, the probe files, the label formats and the bad-input errors.

The fast tests use an SAE whose latents are the embedding's coordinates (a ReLU SAE with
identity weights), so each concept's ground truth is known: coordinate 0 carries "circle"
with noise, 1 "red" cleanly, 2 "blue", 3-5 noise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vsae
from vsae.analysis import (
    BiasConfig,
    BiasError,
    ProbeConfig,
    align_labels,
    analyse_bias,
    fit_probe,
    load_probe,
    read_labels,
)
from vsae.analysis.bias_labels import target_mask

D = 6
CONCEPTS = {"circle": [0], "red": [1], "blue": [2], "n3": [3], "n4": [4], "n5": [5]}
CFG = BiasConfig(n_boot=60, probe=ProbeConfig(l2=0.03))


def identity_sae():
    """A ReLU SAE whose codes are relu(x) and whose decoder is the identity."""
    sae = vsae.build(vsae.SAEConfig(arch="relu", d_in=D, n_latents=D, k=D, seed=0))
    with torch.no_grad():
        sae.W_enc_ND.copy_(torch.eye(D))
        sae.W_dec_ND.copy_(torch.eye(D))
        sae.b_enc_N.zero_()
        sae.b_dec_D.zero_()
    return sae.eval()


def world(n: int, p_circle_given_red: float, seed: int):
    """Synthetic embeddings: red things are circles with the given probability, others with
    0.3 (the unbiased rate); the circle coordinate is noisy, the colour coordinates clean."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "blue", "green", "yellow"], size=n)
    rate = np.where(colour == "red", p_circle_given_red, 0.3)
    circle = rng.uniform(size=n) < rate
    x = np.zeros((n, D), np.float32)
    x[:, 0] = np.clip(circle * 1.0 + rng.normal(0, 0.45, n), 0, None)
    x[:, 1] = (colour == "red") * 1.0
    x[:, 2] = (colour == "blue") * 1.0
    x[:, 3:] = np.abs(rng.normal(0, 0.3, (n, 3)))
    labels = [
        {"shape": "circle" if c else "square", "colour": str(k)}
        for c, k in zip(circle, colour, strict=True)
    ]
    return torch.from_numpy(x), labels


@pytest.fixture(scope="module")
def sae():
    return identity_sae()


@pytest.fixture(scope="module")
def test_set():
    return world(2000, 0.3, seed=1)


def run(sae, test_set, p, **kw):
    x_tr, l_tr = world(800, p, seed=2)
    return analyse_bias(
        sae,
        *test_set,
        "shape=circle",
        group="colour",
        concepts=CONCEPTS,
        train_x=x_tr,
        train_labels=l_tr,
        cfg=kw.pop("cfg", CFG),
        **kw,
    )


def test_planted_shortcut_ranks_first_and_its_removal_closes_the_gap(sae, test_set):
    res = run(sae, test_set, 0.95)
    assert res.effects[0].name == "red"
    assert res.spurious[0] == "red" and res.removed == ["red"]
    red = res.effect("red")
    assert red.off.logit < 0 and red.off.logit_ci[1] < 0  # switching red off lowers "circle"
    assert red.off.gain_ci[0] > 0
    fp_before = 1 - res.before.by_group["red|not circle"]["accuracy"]
    fp_after = 1 - res.after.by_group["red|not circle"]["accuracy"]
    assert fp_before > 0.2 and fp_after < fp_before / 2
    assert res.after.worst > res.before.worst + 0.1
    assert not res.effect("circle").flagged and res.effect("circle").is_target


def test_unbiased_training_flags_no_colour(sae, test_set):
    res = run(sae, test_set, 0.3)
    assert not {"red", "blue"} & set(res.spurious)
    assert res.effect("red").off.gain_ci[0] <= 0


def test_association_finds_the_planted_correlation_on_the_training_data(sae, test_set):
    res = run(sae, test_set, 0.95)
    top = [a for a in res.associations if a.split == "target" and a.group == "circle"]
    top = [a for a in top if a.concept != "circle"]
    assert top[0].concept == "red"  # P(red | circle) 0.51 vs P(red | not circle) 0.02
    assert 0.4 < top[0].rate_diff < 0.6 and top[0].rate_diff_ci[0] > 0.35
    assert top[0].rate_ratio > 5
    unbiased = run(sae, test_set, 0.3)
    red = next(
        a
        for a in unbiased.associations
        if a.split == "target" and a.group == "circle" and a.concept == "red"
    )
    assert red.rate_diff_ci[0] < 0 < red.rate_diff_ci[1]


def test_given_probe_and_report(sae, test_set, tmp_path):
    x_tr, l_tr = world(800, 0.95, seed=2)
    probe = fit_probe(x_tr, target_mask(l_tr, "shape=circle"), ProbeConfig(l2=0.03))
    path = probe.save(tmp_path / "p")
    again = load_probe(path)
    assert torch.allclose(again.weight_D, probe.weight_D) and again.bias == probe.bias
    res = analyse_bias(
        sae, *test_set, "shape=circle", group="colour", concepts=CONCEPTS, probe=again, cfg=CFG
    )
    assert res.effects[0].name == "red" and res.n_train == 0
    report = res.write(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "bias.json").read_text())
    assert data["spurious"][0] == "red"
    assert data["accuracy_before"]["worst"] < data["accuracy_after"]["worst"]
    assert (tmp_path / "out" / "effects.png").stat().st_size > 1000
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 1000
    assert "red" in report.read_text()


def test_probe_of_another_width_is_refused(sae, test_set, tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(5), "bias": torch.zeros(1)}, str(tmp_path / "p.safetensors"))
    probe = load_probe(tmp_path / "p.safetensors")
    with pytest.raises(BiasError, match=r"reads 5-d vectors .*\(2000, 6\).*expected \[N, 5\]"):
        analyse_bias(sae, *test_set, "shape=circle", concepts=CONCEPTS, probe=probe, cfg=CFG)


def test_probe_file_without_weight_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(1, 5), "bias": torch.tensor([0.5])}, str(tmp_path / "r.st"))
    row = load_probe(tmp_path / "r.st")  # a [1, D] row, as torch.nn.Linear(D, 1) saves it
    assert row.dim == 5 and row.bias == 0.5
    assert row.logits(torch.ones(2, 5)).tolist() == [5.5, 5.5]
    save_file({"weight": torch.ones(2, 5)}, str(tmp_path / "two.st"))
    with pytest.raises(BiasError, match=r"shape \(2, 5\); expected \[D\] or \[1, D\]"):
        load_probe(tmp_path / "two.st")

    save_file({"w": torch.ones(5)}, str(tmp_path / "p.safetensors"))
    with pytest.raises(BiasError, match="expected a 'weight' tensor"):
        load_probe(tmp_path / "p.safetensors")


def test_bad_settings_are_refused():
    with pytest.raises(BiasError, match="n_boot must be >= 10, got 3"):
        BiasConfig(n_boot=3)
    with pytest.raises(BiasError, match="l2 must be >= 0"):
        ProbeConfig(l2=-1.0)


def test_target_value_that_never_occurs(sae, test_set):
    with pytest.raises(BiasError, match=r"shape='hexagon' never occurs.*\['circle', 'square'\]"):
        analyse_bias(sae, *test_set, "shape=hexagon", concepts=CONCEPTS, cfg=CFG)
    with pytest.raises(BiasError, match="expected ATTRIBUTE=VALUE"):
        analyse_bias(sae, *test_set, "circle", concepts=CONCEPTS, cfg=CFG)


def test_small_group_warns_and_reports_wide_intervals(sae, test_set):
    x, labels = test_set
    labels = [dict(lab) for lab in labels]
    for i in range(5):  # a colour seen 5 times
        labels[i]["colour"] = "pink"
    with pytest.warns(UserWarning, match=r"group 'pink\|.*' has \d images .* fewer than 30"):
        res = run(sae, (x, labels), 0.95)
    small = [g for g, v in res.before.by_group.items() if g.startswith("pink")]
    assert small and all(res.before.by_group[g]["few"] for g in small)
    assert all(tuple(res.before.by_group[g]["ci"]) == (0.0, 1.0) for g in small)
    assert any("pink" in w for w in res.warnings)


def test_labels_that_do_not_cover_the_images(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        json.dumps({"key": "00000000", "shape": "circle"})
        + "\n"
        + json.dumps({"key": "00000001", "shape": "square"})
        + "\n"
    )
    table = read_labels(path)
    assert align_labels(["/data/00000001.png"], table, str(path)) == [{"shape": "square"}]
    with pytest.raises(BiasError, match=r"no record for '/data/00000007.png' \(2 of 3 images"):
        align_labels(["/data/00000000.png", "/data/00000007.png", "x/9.png"], table, str(path))


def test_celeba_and_csv_label_files(tmp_path):
    celeba = tmp_path / "list_attr_celeba.txt"
    celeba.write_text("2\nBlond_Hair Male\n000001.jpg  1 -1\n000002.jpg -1  1\n")
    table = read_labels(celeba)
    assert table["000002.jpg"] == {"Blond_Hair": "-1", "Male": "1"}
    recs = align_labels(["imgs/000001.jpg", "imgs/000002.jpg"], table)
    assert target_mask(recs, "Blond_Hair=1").tolist() == [True, False]
    csv = tmp_path / "attrs.csv"
    csv.write_text("image_id,Smiling\na.png,1\nb.png,0\n")
    assert read_labels(csv) == {"a.png": {"Smiling": "1"}, "b.png": {"Smiling": "0"}}
    bad = tmp_path / "bad.txt"
    bad.write_text("2\nA B\n1.jpg 1\n")
    with pytest.raises(BiasError, match="line 3: 1 values for 2 attributes"):
        read_labels(bad)


def test_edit_delta_decodes_only_edited_rows_and_projects_per_batch():
    from vsae.analysis.bias_concepts import edit_delta, encode

    sae = vsae.build(vsae.SAEConfig(arch="topk", d_in=16, n_latents=64, k=8, seed=3))
    x_ND = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    codes_NL = encode(sae, x_ND)
    ids = [int(i) for i in codes_NL.sum(0).topk(3).indices]
    rows_N = (codes_NL[:, ids] > 0).any(1)
    assert 0 < int(rows_N.sum()) < 300
    values_K = torch.tensor([0.5, 1.0, 2.0])
    # the plain reference: every row decoded in one call, unedited rows given back unchanged
    z2 = codes_NL.clone()
    z2[:, ids] = values_K
    z2[~rows_N] = codes_NL[~rows_N]
    want_ND = sae.decode(z2) - sae.decode(codes_NL)
    got_ND = edit_delta(sae, codes_NL, ids, values_K, rows=rows_N, batch=7)
    torch.testing.assert_close(got_ND, want_ND.detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(got_ND[~rows_N], torch.zeros_like(got_ND[~rows_N]))
    W_DP = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    got_NP = edit_delta(sae, codes_NL, ids, values_K, rows=rows_N, batch=7, project_DP=W_DP)
    torch.testing.assert_close(got_NP, want_ND.detach() @ W_DP, atol=1e-4, rtol=1e-4)
    off_ND = edit_delta(sae, codes_NL, ids)  # switched off on every row
    z0 = codes_NL.clone()
    z0[:, ids] = 0.0
    torch.testing.assert_close(off_ND, (sae.decode(z0) - sae.decode(codes_NL)).detach())


def test_bias_set_reads_its_probe_settings_and_refuses_an_unknown_field():
    from vsae.analysis.bias_set import BiasSet

    x = torch.zeros(4, D)
    labels = [{"shape": "circle"}, {"shape": "square"}] * 2
    assert BiasSet(x, labels, x, labels).probe_config() == ProbeConfig()
    assert BiasSet(x, labels, x, labels, meta={"probe": {"l2": 0.5}}).probe_config().l2 == 0.5
    with pytest.raises(BiasError, match="unknown ProbeConfig field"):
        BiasSet(x, labels, x, labels, meta={"probe": {"lambda": 0.5}}).probe_config()
