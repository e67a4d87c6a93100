"""A training run and its run folder: start, resume or overwrite, never wipe silently."""

from __future__ import annotations

import sys
from pathlib import Path

from vsae.training.checkpoint import CKPT_NAME

# The files a training run writes; --overwrite removes these (and nothing else).
RUN_FILES = (
    CKPT_NAME,
    CKPT_NAME + ".tmp",
    "metrics.jsonl",
    "metrics.json",
    "cfg.json",
    "sae.safetensors",
)


class RunFolderError(ValueError):
    """The run folder holds a run and neither resume nor overwrite was asked for."""


def prepare_run_folder(out: str | Path, resume: bool, overwrite: bool, main: bool = True) -> Path:
    """Check (and with ``overwrite`` clear) a run folder before training writes into it.

    Parameters
    ----------
    out : path
        The run folder (created when missing).
    resume : bool
        Continue from its ``checkpoint.pt``; without one the run starts fresh, and says so.
    overwrite : bool
        Remove the files of an earlier run (checkpoint included) and start fresh.
    main : bool
        This process writes the run (rank 0): only it removes files and prints what happens
        (a fresh start despite ``resume``, files removed) on stderr; other ranks only check.

    Returns
    -------
    Path
        The run folder.

    Raises
    ------
    RunFolderError
        The folder is not empty and neither ``resume`` nor ``overwrite`` is given.
        Both ``resume`` and ``overwrite`` are given.
    """
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite contradict each other; give one")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, not a run folder")
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if overwrite and main:
        removed = [name for name in RUN_FILES if (path / name).is_file()]
        for name in removed:
            (path / name).unlink()
        if removed:
            print(
                f"vsae train: --overwrite removed {', '.join(removed)} from {path}", file=sys.stderr
            )
    elif resume:
        if main and not (path / CKPT_NAME).is_file():
            print(
                f"vsae train: --resume: no {CKPT_NAME} in {path}; starting fresh from step 0",
                file=sys.stderr,
            )
    elif held and not overwrite:
        more = "" if len(held) <= 4 else f", ... ({len(held)} entries)"
        raise RunFolderError(
            f"{path} is not empty ({', '.join(held[:4])}{more}); pass --resume to continue its "
            "run or --overwrite to replace it (or choose another --out)"
        )
    if main:
        path.mkdir(parents=True, exist_ok=True)
    return path
