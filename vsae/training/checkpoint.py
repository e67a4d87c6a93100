"""Training checkpoints: model, optimiser, step, dead-latent counters and RNG states.

Written with ``torch.save`` to a temporary file and renamed into place, so a
kill mid-write leaves the previous checkpoint intact; read back with
``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from vsae.sae.io import CheckpointError, load_state_checked

CKPT_NAME = "checkpoint.pt"


def checkpoint_path(out_dir: str | Path) -> Path:
    """Where a run folder keeps its checkpoint.

    Parameters
    ----------
    out_dir : str or Path
        The run folder.

    Returns
    -------
    Path
        ``out_dir / "checkpoint.pt"``.
    """
    return Path(out_dir) / CKPT_NAME


def save_checkpoint(out_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (a temporary file renamed into place).

    Parameters
    ----------
    out_dir : str or Path
        The run folder (created when missing).
    state : dict
        Tensors, numbers, strings, dicts and lists only (what ``weights_only`` loads).

    Returns
    -------
    Path
        The checkpoint file.
    """
    path = checkpoint_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(out_dir: str | Path) -> dict[str, Any] | None:
    """The checkpoint of a run folder.

    Parameters
    ----------
    out_dir : str or Path
        The run folder.

    Returns
    -------
    dict or None
        The state :func:`save_checkpoint` wrote (on the CPU); None when there is none.

    Raises
    ------
    CheckpointError
        An unreadable (e.g. truncated) checkpoint.
    """
    path = checkpoint_path(out_dir)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated archives
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated?): {err}") from None


def check_same_config(
    saved: dict[str, Any], current: dict[str, Any], what: str, where: Path
) -> None:
    """Refuse to resume with a config that differs from the checkpoint's.

    Parameters
    ----------
    saved, current : dict
        The checkpoint's and this run's config (as dicts).
    what : str
        Which config (``"SAE"``, ``"training"``), named in the message.
    where : Path
        The checkpoint, named in the message.

    Raises
    ------
    CheckpointError
        Naming every key that differs, with both values.
    """
    diff = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{where}: cannot resume, the {what} config changed ({detail})")


def restore_model(model: torch.nn.Module, state: dict[str, Any], where: Path) -> None:
    """Load the model tensors of a checkpoint with shape-checked errors.

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built SAE.
    state : dict
        The checkpoint (its ``"model"`` entry is loaded).
    where : Path
        The checkpoint, named in errors.

    Raises
    ------
    CheckpointError
        A missing, unexpected or differently shaped tensor.
    """
    load_state_checked(model, state["model"], str(where))


def dumps(obj: Any) -> str:
    """JSON for the config snapshot kept in a checkpoint (keys sorted).

    Parameters
    ----------
    obj : object
        JSON-serialisable.

    Returns
    -------
    str
    """
    return json.dumps(obj, sort_keys=True)
