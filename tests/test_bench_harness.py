"""vsae.bench.harness: timing against a baseline, targets, the report and its output."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from vsae.bench import harness
from vsae.commands.bench import _runner


def test_time_against_alternates_and_compares_medians():
    calls: list[str] = []

    def slow():
        calls.append("c")
        time.sleep(0.03)

    def fast():
        calls.append("b")
        time.sleep(0.001)

    timing = harness.time_against(slow, fast, repeats=4, warmup=1)
    assert len(timing.candidate_s) == 4 and len(timing.baseline_s) == 4
    # warm-up (b, c), then c first on even repeats and b first on odd ones
    assert calls == ["b", "c", "c", "b", "b", "c", "c", "b", "b", "c"]
    assert min(timing.candidate_s) >= 0.03
    assert timing.ratio == timing.candidate_median_s / timing.baseline_median_s
    assert timing.ratio > 1.5  # 30 ms against ~1 ms: even a loaded machine keeps it > 1.5
    d = timing.as_dict()
    assert d["ratio"] == timing.ratio and d["candidate_s"] == list(timing.candidate_s)


@pytest.mark.parametrize("repeats,warmup", [(0, 1), (1, -1)])
def test_time_against_rejects_bad_counts(repeats, warmup):
    with pytest.raises(ValueError, match="repeats|warmup"):
        harness.time_against(lambda: None, lambda: None, repeats=repeats, warmup=warmup)


def test_target_pass_fail_and_unmeasured():
    ok = harness.target("r", "<= 2x", [1.0, 1.9], lambda v: v <= 2)
    assert ok == {"name": "r", "target": "<= 2x", "values": [1.0, 1.9], "passed": True}
    assert harness.target("r", "<= 2x", [1.0, 2.1], lambda v: v <= 2)["passed"] is False
    assert harness.target("r", "<= 2x", [], lambda v: v <= 2)["passed"] is None
    assert harness.target("r", "x", [1], bool, note="n")["note"] == "n"


def test_make_report_keys_and_checks():
    t = harness.target("r", "<= 2x", [1.0], lambda v: v <= 2)
    report = harness.make_report("demo", {"quick": True, "n": 3}, {"ratio": 1.0}, [t], extra=1)
    assert list(report) == [
        "benchmark", "date_utc", "command", "machine", "settings", "extra", "results", "targets"
    ]  # fmt: skip
    assert report["benchmark"] == "demo" and report["machine"]["device"] == "cpu"
    assert time.strptime(report["date_utc"], "%Y-%m-%d %H:%M")
    with pytest.raises(ValueError, match="quick"):
        harness.make_report("demo", {}, {}, [t])
    with pytest.raises(ValueError, match="lacks"):
        harness.make_report("demo", {"quick": False}, {}, [{"name": "r"}])


def test_runner_prints_and_writes_a_returned_report(tmp_path, capsys):
    out = tmp_path / "sub" / "r.json"
    report = harness.make_report("demo", {"quick": True}, [1, 2], [])
    go = _runner(lambda args: report)
    assert go(argparse.Namespace(out=str(out))) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == report == json.loads(out.read_text())
    assert _runner(lambda args: 3)(argparse.Namespace()) == 3  # an exit code passes through


def test_common_arguments():
    p = argparse.ArgumentParser()
    harness.add_common_arguments(p)
    args = p.parse_args(["--quick", "--out", "x.json"])
    assert args.quick and args.out == "x.json"
    assert p.parse_args([]).out == ""
