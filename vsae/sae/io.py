"""The SAE folder format: ``cfg.json`` + ``sae.safetensors``, written and read checked.

Loading a whole model needs the architecture registry: see ``vsae.sae.registry.load_sae``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsae.config import ConfigError, SAEConfig, from_dict, to_dict

FORMAT_VERSION = 1
CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae.safetensors"


class CheckpointError(ValueError):
    """A saved SAE or checkpoint is missing, truncated or of another shape."""


def save_sae(sae: torch.nn.Module, path: str | Path) -> Path:
    """Write ``cfg.json`` and ``sae.safetensors`` atomically into folder ``path``.

    Parameters
    ----------
    sae : BaseSAE
        The model; every parameter and buffer (normalisation statistics,
        thresholds, candidates) is saved.
    path : str or Path
        Folder, created if needed.

    Returns
    -------
    Path
        The folder.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    os.replace(tmp, out / WEIGHTS_NAME)
    cfg = {"format_version": FORMAT_VERSION, **to_dict(sae.cfg)}
    tmp = out / (CFG_NAME + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, out / CFG_NAME)
    return out


def read_cfg(path: str | Path) -> SAEConfig:
    """Read an SAE folder's ``cfg.json``."""
    cfg_path = Path(path) / CFG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: no such file; an SAE folder holds {CFG_NAME}")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({err})") from None
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version={version!r}; expected {FORMAT_VERSION}")
    try:
        return from_dict(SAEConfig, data, where=str(cfg_path))
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a truncated or corrupt file into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file (truncated?): {err}") from None


def load_state_checked(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str
) -> None:
    """``load_state_dict`` with errors that name the file, tensor and both shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(f"{where}: missing tensors {missing}, unexpected tensors {extra}")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(value.shape)}; "
                f"the config expects {tuple(own[name].shape)}"
            )
    module.load_state_dict(tensors)
