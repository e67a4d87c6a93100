"""`vsae bench unlearning --quick` and `examples/unlearning.py`, end to end on the tiny world."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest

from tests.conftest import ROOT
from vsae.bench import unlearning


@pytest.mark.slow
def test_quick_bench_reports_every_target_and_both_splits(tmp_path):
    args = argparse.Namespace(quick=True, out=None, workdir=str(tmp_path / "work"))
    report = unlearning.run(args)
    json.dumps(report)  # JSON-clean
    assert report["benchmark"] == "unlearning" and report["settings"]["quick"] is True
    names = [t["name"] for t in report["targets"]]
    assert names[:3] == ["ua_mean", "ira_relative_mean", "cra_relative_mean"]
    assert "generation_time_ratio" in names and "multi_colours_ira_relative" in names
    for t in report["targets"]:
        assert set(t) >= {"name", "target", "values", "passed"} and t["values"]
    ua = report["targets"][0]
    assert set(ua["per_concept"]) == {"red", "blue", "green", "circle", "square"}
    r = report["results"]
    sel, ev = r["splits"]["selection"], r["splits"]["evaluation"]
    assert not set(sel["prompts"]) & set(ev["prompts"])  # disjoint prompts
    assert not set(sel["fit_seeds"] + sel["select_seeds"]) & set(ev["seeds"])  # and seeds
    assert set(r["selection"]["chosen"]) == {"colour", "shape"}
    s, n = r["summary"]["sae"], r["summary"]["negative_prompt"]
    assert 0 <= s["ua_mean"] <= 1 and 0 <= n["ua_mean"] <= 1
    assert s["ira_bare_mean"] == n["ira_bare_mean"]  # the same bare images for both
    steps = r["sequential"]["colours"]["steps"]
    assert [st["removed"] for st in steps] == [["red"], ["red", "blue"]]
    assert steps[1]["selected_pairs"] >= steps[0]["selected_pairs"]
    assert r["quality"]["other_seed"]["bare_vs_bare"] >= 0
    assert set(r["per_concept"]["red"]["robustness"]) == {
        "other_frames", "word_order", "alone", "two_objects"
    }  # fmt: skip
    assert r["cost"]["fit_seconds"] > 0 and r["cost"]["generation_ratio"] > 0


@pytest.mark.slow
def test_example_runs_small(tmp_path):
    spec = importlib.util.spec_from_file_location("ex_unlearn", ROOT / "examples" / "unlearning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--out", str(tmp_path), "--steps", "4", "--train-steps", "60"])
    assert 0 <= res["ua"] <= 1 and res["selected_pairs"] > 0 and res["kept"] >= 0
    assert (tmp_path / "unlearning.png").is_file()
    assert (tmp_path / "recipe" / "recipe.json").is_file()
