"""Retrain the whole tiny world from scratch with fixed seeds (``vsae world build``).

Stages run in order: clip, siglip, judge, diffusion (diffusion needs the tiny
CLIP text encoder of the same output folder). Each stage's wall time and
summary are merged into ``build_log.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

STAGES = ("clip", "siglip", "judge", "diffusion")
DEFAULT_OUT = Path(__file__).parent / "weights"
CLIP_STEPS = {"clip": 1500, "siglip": 1200}


def _log_to(path: Path):
    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(path, "a") as f:
            f.write(line + "\n")

    return log


def run_stage(stage: str, out: Path, log, fast: bool = False) -> dict:
    """Run one build stage into ``out``; ``fast`` shrinks it to a smoke test."""
    if stage in ("clip", "siglip"):
        from .train_clip import train_clip

        kw = {"steps": 4, "pool": 256} if fast else {"steps": CLIP_STEPS[stage]}
        return train_clip(out / stage, kind=stage, log=log, **kw)
    if stage == "judge":
        from .judge import train_judge

        kw = {"steps": 4, "pool": 256} if fast else {}
        return train_judge(out / "judge", log=log, **kw)
    if stage == "diffusion":
        from .train_diffusion import train_diffusion

        kw = {"steps": 4, "pool": 256, "select_steps": 2} if fast else {}
        return train_diffusion(out / "diffusion", clip_dir=out / "clip", log=log, **kw)
    raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")


def build(
    out: str | Path = DEFAULT_OUT, stages=STAGES, threads: int = 2, fast: bool = False
) -> dict:
    """Run ``stages`` into ``out`` and record wall times in ``out/build_log.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    log = _log_to(out / "build.log")
    record_path = out / "build_log.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"stages": {}}
    t0 = time.time()
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected some of {list(STAGES)}")
        ts = time.time()
        summary = run_stage(stage, out, log, fast=fast)
        record["stages"][stage] = {
            "wall_s": round(time.time() - ts, 1),
            "threads": threads,
            "summary": summary,
        }
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    total = time.time() - t0
    record["total_wall_s_stages"] = round(sum(s["wall_s"] for s in record["stages"].values()), 1)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    log(f"build of {list(stages)} finished in {total:.0f}s")
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fast", action="store_true")
    a = p.parse_args(argv)
    build(a.out, [s for s in a.stages.split(",") if s], a.threads, a.fast)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
