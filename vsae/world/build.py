"""Retrain the whole tiny world from scratch with fixed seeds (``vsae world build``).

Stages run in order: clip, siglip, judge, diffusion.

* clip: phase 1 trains a tiny CLIP from scratch (``_phase1/clip``, not shipped);
  phase 2 fine-tunes its image tower and text projection (text transformer frozen,
  ``_phase2/clip``); phase 3 fine-tunes every weight on batches that are half
  minimal pairs (``pairs.py``, ``_phase3/clip``), which lifts shape; phase 4 adds an
  auxiliary position head for its first 600 of 800 steps, which teaches both towers
  position (``PHASE4``).
* siglip: starts from the phase-1 CLIP, trains every weight with the sigmoid loss
  (``_phase2/siglip``), then phases 3 and 4 as for CLIP.
* judge: the attribute classifier, from scratch.
* diffusion: the UNet, conditioned on the CLIP text transformer (identical in
  phase 1 and phase 2): 6000 steps from scratch (``_phase1/diffusion``), then 3000 more at
  a lower learning rate from that EMA; picks its default guidance with the judge.

Each stage's wall time and summary are merged into ``build_log.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

STAGES = ("clip", "siglip", "judge", "diffusion")
DEFAULT_OUT = Path(__file__).parent / "weights"
CLIP_STEPS = {"clip": 1500}
# phase 2 (CLIP: image tower + text projection with the text transformer frozen, so the
# diffusion model's conditioning does not move; SigLIP: every weight, sigmoid loss):
# captions that name position and shape more often, the attributes phase 1 learns last
PHASE2 = {
    "steps": 700,
    "lr": 1e-3,
    "pool": 16384,
    "p_full": 0.2,
    "keep_probs": {"position": 0.8, "shape": 0.8, "colour": 0.3, "size": 0.35, "background": 0.3},
}

# phase 3 (every weight): 12 position groups (48 rows) and 6 shape groups (36 rows) per
# batch of 128, so that matching captions needs position and shape
PHASE3 = {
    "steps": 600,
    "lr": 1.5e-3,
    "pool": 8192,
    "p_full": 0.3,
    "pairs": {"position": 12, "shape": 6},
}
PHASE3_DATA_SEED = {"clip": 4, "siglip": 5}

# phase 4 (every weight): phase 3's batches plus an auxiliary position head on the image
# embedding (weight 2, decaying to 0 at 75 % of the steps; the last 200 steps are contrastive
# only), with the image tower's positional embedding scaled by 4 once at the start. Without
# the head, neither tower starts to encode position: while the text tower ignores "top left"
# the contrastive loss gives the image tower no reason to encode it, and vice versa.
PHASE4 = {
    **PHASE3,
    "steps": 800,
    "lr": 1e-3,
    "aux": {"position": 2.0},
    "aux_until": 0.75,
    "pos_scale": 4.0,
}
PHASE4_DATA_SEED = {"clip": 40, "siglip": 41}

# diffusion phase 2: goes on from phase 1's EMA UNet at a lower learning rate, other data seed
DIFFUSION_PHASE2 = {"steps": 3000, "lr": 3e-4, "seed": 6}


def _phases34(out: Path, kind: str, log, fast: bool) -> dict:
    """Phases 3 (into ``_phase3/``) and 4 (into ``out/kind``, the shipped model)."""
    from .train_clip import train_clip

    fast_kw = {"steps": 4, "pool": 256, "pairs": {"position": 1, "shape": 1}}
    phase3 = train_clip(
        out / "_phase3" / kind,
        kind=kind,
        init_from=out / "_phase2" / kind,
        data_seed=PHASE3_DATA_SEED[kind],
        log=log,
        **(fast_kw if fast else PHASE3),
    )
    phase4 = train_clip(
        out / kind,
        kind=kind,
        init_from=out / "_phase3" / kind,
        data_seed=PHASE4_DATA_SEED[kind],
        log=log,
        **({**PHASE4, **fast_kw} if fast else PHASE4),
    )
    return {"phase3": phase3, "phase4": phase4}


def _log_to(path: Path):
    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(path, "a") as f:
            f.write(line + "\n")

    return log


def run_stage(stage: str, out: Path, log, fast: bool = False, resume: bool = False) -> dict:
    """Run one build stage into ``out``.

    Parameters
    ----------
    stage : str
        ``clip``, ``siglip`` (needs the clip stage's phase 1), ``judge`` or ``diffusion``.
    out : Path
        The weights folder being built.
    log : callable
        ``log(message)`` for progress lines.
    fast : bool
        Shrink every phase to a few steps (a smoke test; the models are useless).
    resume : bool
        Reuse a finished CLIP phase 1 found in ``out``.

    Returns
    -------
    dict
        The stage's training summaries, by phase.

    Raises
    ------
    ValueError
        An unknown stage.
    FileNotFoundError
        The siglip stage without the clip stage's phase 1.
    """
    if stage == "clip":
        from .train_clip import train_clip

        kw = {"steps": 4, "pool": 256} if fast else {"steps": CLIP_STEPS["clip"]}
        p1 = out / "_phase1" / "clip"
        if resume and (p1 / "train_summary.json").is_file():
            phase1 = json.loads((p1 / "train_summary.json").read_text())
            log(f"[clip] reusing phase 1 in {p1}")
        else:
            phase1 = train_clip(p1, kind="clip", log=log, **kw)
        kw = {"steps": 4, "pool": 256} if fast else PHASE2
        phase2 = train_clip(
            out / "_phase2" / "clip",
            kind="clip",
            init_from=out / "_phase1" / "clip",
            freeze_text=True,
            data_seed=2,
            log=log,
            **kw,
        )
        return {"phase1": phase1, "phase2": phase2, **_phases34(out, "clip", log, fast)}
    if stage == "siglip":
        from .train_clip import train_clip

        if not (out / "_phase1" / "clip" / "weights.safetensors").is_file():
            raise FileNotFoundError(
                f"the siglip stage starts from {out / '_phase1' / 'clip'}: run the clip stage first"
            )
        kw = {"steps": 4, "pool": 256} if fast else PHASE2
        phase2 = train_clip(
            out / "_phase2" / "siglip",
            kind="siglip",
            init_from=out / "_phase1" / "clip",
            data_seed=3,
            log=log,
            **kw,
        )
        return {"phase2": phase2, **_phases34(out, "siglip", log, fast)}
    if stage == "judge":
        from .judge import train_judge

        kw = {"steps": 4, "pool": 256} if fast else {}
        return train_judge(out / "judge", log=log, **kw)
    if stage == "diffusion":
        from .train_diffusion import train_diffusion

        fast_kw = {"steps": 4, "pool": 256, "select_steps": 2}
        # the phase-1 text tower: phase 2 keeps it frozen, phase 3 fine-tunes it
        clip_dir = out / "_phase1" / "clip"
        # phase 1 trains into _phase1/ (no judge there, so no guidance selection)
        phase1 = train_diffusion(
            out / "_phase1" / "diffusion", clip_dir=clip_dir, log=log, **(fast_kw if fast else {})
        )
        kw = {**DIFFUSION_PHASE2, **fast_kw} if fast else DIFFUSION_PHASE2
        phase2 = train_diffusion(
            out / "diffusion",
            clip_dir=clip_dir,
            init_from=out / "_phase1" / "diffusion",
            log=log,
            **kw,
        )
        return {"phase1": phase1, "phase2": phase2}
    raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")


def build(
    out: str | Path = DEFAULT_OUT,
    stages=STAGES,
    threads: int = 2,
    fast: bool = False,
    resume: bool = False,
) -> dict:
    """Run ``stages`` into ``out`` and record wall times in ``out/build_log.json``.

    Parameters
    ----------
    out : str or Path
        The weights folder (default: the shipped ``vsae/world/weights``).
    stages : sequence of str
        Some of ``STAGES``, run in the given order.
    threads : int
        torch CPU threads.
    fast : bool
        Smoke-test sizes (see ``run_stage``).
    resume : bool
        Reuse a finished CLIP phase 1.

    Returns
    -------
    dict
        The build record: per stage its wall time, threads and summary.

    Raises
    ------
    ValueError
        An unknown stage (checked before anything runs).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    log = _log_to(out / "build.log")
    record_path = out / "build_log.json"
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected some of {list(STAGES)}")
    t0 = time.time()
    for stage in stages:
        ts = time.time()
        summary = run_stage(stage, out, log, fast=fast, resume=resume)
        # re-read: stages may run as separate processes into the same folder
        record = json.loads(record_path.read_text()) if record_path.is_file() else {"stages": {}}
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


def main(argv: list[str] | None = None) -> int:
    """``python -m vsae.world.build``: the same as ``vsae world build``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status, 0.
    """
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    build(a.out, [s for s in a.stages.split(",") if s], a.threads, a.fast, a.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
