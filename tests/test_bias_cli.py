"""``vsae bias`` end to end on the tiny world (the shared world SAE, names from ground truth),
its bad-input errors on the command line, and ``vsae bench bias --quick``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from vsae.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def named_sae(world_sae_dir, tmp_path_factory) -> Path:
    """The shared world SAE with provenance and a concepts.json whose names are the majority
    colour or shape of each latent's top renders (test data, not the naming method)."""
    import vsae
    from tests.world_sae import embed_world
    from vsae.analysis import Concept, ConceptTable
    from vsae.sae.io import write_provenance

    out = tmp_path_factory.mktemp("bias_sae") / "sae"
    shutil.copytree(world_sae_dir, out)
    write_provenance(out, {"source": "world:clip", "hookpoint": "image", "token_mode": "cls"})
    sae = vsae.load(out)
    x, scenes = embed_world(1000, 31)
    with torch.no_grad():
        codes = sae.encode(x)
    records = []
    for f in range(codes.shape[1]):
        top = codes[:, f].argsort(descending=True)[:20]
        top = [int(i) for i in top if codes[i, f] > 0]
        name, purity = "", 0.0
        for attr in ("colour", "shape"):
            if len(top) < 10:
                break
            value, count = Counter(scenes[i][attr] for i in top).most_common(1)[0]
            if count / len(top) > purity:
                name, purity = value, count / len(top)
        freq = float((codes[:, f] > 0).float().mean())
        records.append(Concept(f, name, purity, 0.1, (name,), freq, 1.0, (), purity >= 0.9))
    ConceptTable(tuple(records), method="image").save(out)
    return out


def test_bias_command_on_world_renders(named_sae, tmp_path, capsys):
    out = tmp_path / "bias"
    args = ["bias", "--sae", str(named_sae), "--data", "world:800:5", "--target"]
    args += ["shape=circle", "--group", "colour", "--n-boot", "20", "--out", str(out)]
    assert main([*args, "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_images"] == 400 and summary["n_train"] == 400  # --data split in halves
    data = json.loads((out / "bias.json").read_text())
    assert {e["name"] for e in data["effects"]} >= {"circle", "red"}
    assert any(e["is_target"] for e in data["effects"] if e["name"] == "circle")
    assert data["accuracy_before"]["overall"] > 0.8  # the probe works on held-out renders
    for f in ("report.md", "effects.png", "accuracy.png", "probe.safetensors", "probe.json"):
        assert (out / f).is_file(), f
    # the saved probe is accepted back with --probe
    out2 = tmp_path / "again"
    args2 = ["bias", "--sae", str(named_sae), "--data", "world:300:6", "--target"]
    args2 += ["shape=circle", "--probe", str(out / "probe.safetensors"), "--n-boot", "20"]
    assert main([*args2, "--out", str(out2), "--no-progress"]) == 0
    assert json.loads((out2 / "bias.json").read_text())["n_train"] == 0


def test_bias_command_bad_inputs(named_sae, tmp_path, capsys):
    from safetensors.torch import save_file

    from vsae.world.export import export_folder

    images = export_folder(tmp_path / "imgs", 40, seed=3)
    lines = (images / "labels.jsonl").read_text().splitlines()
    (tmp_path / "partial.jsonl").write_text("\n".join(lines[:5] + lines[6:]) + "\n")
    base = ["bias", "--sae", str(named_sae), "--data", str(images), "--out", str(tmp_path / "o")]
    base += ["--no-progress", "--n-boot", "20"]
    code = main([*base, "--labels", str(tmp_path / "partial.jsonl"), "--target", "shape=circle"])
    err = capsys.readouterr().err
    assert code == 2 and "no record for" in err and "00000005.png" in err
    assert main([*base, "--target", "shape=hexagon"]) == 2
    assert "shape='hexagon' never occurs" in capsys.readouterr().err
    save_file({"weight": torch.ones(7)}, str(tmp_path / "p.safetensors"))
    assert (
        main([*base, "--target", "shape=circle", "--probe", str(tmp_path / "p.safetensors")]) == 2
    )
    assert "reads 7-d vectors" in capsys.readouterr().err


def test_bench_bias_quick(tmp_path):
    out = tmp_path / "bias.json"
    assert main(["bench", "bias", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "bias" and report["settings"]["quick"] is True
    names = {t["name"] for t in report["targets"]}
    for run in ("red_circle", "stripes_square"):
        assert f"{run}_ranking" in names and f"{run}_no_false_alarm" in names
        assert report["results"]["runs"][run]["debias"]["gap"] == pytest.approx(
            report["results"]["runs"][run]["debias"]["unbiased_worst"]
            - report["results"]["runs"][run]["debias"]["biased_worst"]
        )
    assert all(set(t) >= {"name", "target", "values", "passed"} for t in report["targets"])


def test_activation_shards_read_as_the_images_they_came_from(tmp_path):
    from vsae.analysis.bias_data import load_embeddings
    from vsae.analysis.models import ModelSpec

    assert (
        main(
            ["extract", "--source", "world:clip", "--data", "world:60:3"]
            + ["--hookpoints", "image", "--out", str(tmp_path / "acts"), "--quiet"]
        )
        == 0
    )
    spec = ModelSpec("world:clip", None, "image")
    x_s, keys_s, labels_s = load_embeddings(tmp_path / "acts", spec)
    x_i, keys_i, labels_i = load_embeddings("world:60:3", spec)
    assert keys_s == keys_i and labels_s == labels_i and labels_s[0]["shape"]
    assert (x_s - x_i).abs().max() < 0.01  # stored as float16
    # a CSV keyed by the shards' source keys replaces the stored labels
    rows = ["key,flag"] + [f"{k},{'yes' if i % 3 == 0 else 'no'}" for i, k in enumerate(keys_s)]
    (tmp_path / "attrs.csv").write_text("\n".join(rows) + "\n")
    _, _, labels_c = load_embeddings(tmp_path / "acts", spec, tmp_path / "attrs.csv")
    assert [lab["flag"] for lab in labels_c[:4]] == ["yes", "no", "no", "yes"]
