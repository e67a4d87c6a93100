"""The README's main job, at a small size: world renders -> CLIP shards -> MSAE -> report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    out = run_cli(
        "quickstart", "--out", str(tmp_path), "--n-images", "600", "--steps", "60", "--no-progress"
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    metrics = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert metrics["fvu"] < 1.0 and metrics["cos"] > 0.5
    assert (tmp_path / "shards" / "meta.json").is_file()
    assert (tmp_path / "training.png").stat().st_size > 5000
    report = (tmp_path / "report.md").read_text()
    assert "Matryoshka" in report and "| fvu |" in report
    assert "report:" in out.stdout
    # evaluation at a fixed sparsity (TopK at 4 x k0 = 32): held-out L0 cannot drift above it
    rows = [json.loads(ln) for ln in (tmp_path / "sae" / "metrics.jsonl").read_text().splitlines()]
    eval_l0 = [r["eval/l0"] for r in rows if "eval/l0" in r]
    assert len(eval_l0) >= 5 and all(0 < v <= 32 for v in eval_l0)
    assert "TopK k=32" in report
    # every level's held-out FVU, and FVU falls as the levels widen
    levels = [
        ln.split("|") for ln in report.splitlines() if ln.startswith("| ") and ln[2].isdigit()
    ]
    ks = [int(c[1]) for c in levels]
    assert ks == [8, 16, 32, 64, 128, 256, 512, 1024]
    fvus = [float(c[2]) for c in levels]
    assert fvus[-1] < fvus[0]
    assert "AuxK" in report and "recon" in report  # what `loss` includes
    # the concepts part: named latents, an index of the renders and one edited search
    assert "## Concepts" in report
    assert (tmp_path / "sae" / "concepts.json").is_file()
    assert json.loads((tmp_path / "index" / "index.json").read_text())["n_images"] == 600
    assert "--suppress" in report and "--boost" in report
    assert (tmp_path / "search.png").stat().st_size > 1000
