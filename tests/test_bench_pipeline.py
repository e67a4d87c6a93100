"""``vsae bench pipeline`` from the installed package: the contract's JSON, real extraction."""

from __future__ import annotations

import json

import pytest

from vsae.cli import main

SMALL = [
    "--source", "timm:vit_tiny_patch16_224", "--hookpoints", "blocks.11", "--tokens", "all",
    "--n-images", "4", "--batch-size", "2", "--repeats", "1", "--dim", "16",
    "--reader-vectors", "3000", "--train-batch", "256", "--workers", "0",
    "--expansion", "2", "--k", "4",
]  # fmt: skip


@pytest.mark.slow
def test_pipeline_benchmark_reports_the_contract_keys(tmp_path, capsys):
    out = tmp_path / "pipeline.json"
    assert main(["bench", "pipeline", *SMALL, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert list(printed) == [
        "benchmark", "date_utc", "command", "machine", "settings", "results", "targets",
    ]  # fmt: skip
    assert printed["benchmark"] == "pipeline" and printed["settings"]["quick"] is False
    ex = printed["results"]["extraction"]
    # 4 images of a ViT-Tiny at blocks.11, all 197 tokens, width 192
    assert ex["n_vectors"] == 4 * 197 and ex["dims"] == {"blocks.11": 192}
    assert ex["overhead"] == ex["extraction_path_s"] / ex["bare_forward_s"] - 1
    assert 0 < ex["bytes_per_vector"] < ex["fp32_bytes_per_vector"]  # float16 on disk
    reader = printed["results"]["reader"]
    assert set(reader["datasets"]) == {"embeddings_1_per_sample", "tokens_50_per_sample"}
    for ds in reader["datasets"].values():
        assert ds["n_vectors"] in (3000, 3000 // 50 * 50)
        assert ds["reader_over_training"] > 0 and ds["disk_ratio_vs_fp32"] < 1.0
    names = [t["name"] for t in printed["targets"]]
    assert names == ["extraction_overhead", "reader_over_training"]
    over = printed["targets"][0]
    assert over["values"] == [ex["overhead"]] and over["passed"] is (ex["overhead"] <= 0.10)
    assert printed["targets"][1]["values"] == [
        ds["reader_over_training"] for ds in reader["datasets"].values()
    ]
