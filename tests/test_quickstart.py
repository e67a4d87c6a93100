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
