"""The SAE folder format: ``cfg.json`` + ``sae.safetensors``, written and read checked.

Loading a whole model needs the architecture registry: see ``vsae.sae.registry.load_sae``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsae.config import ConfigError, SAEConfig, from_dict, to_dict

FORMAT_VERSION = 1
CFG_NAME = "cfg.json"
PROVENANCE_KEY = "provenance"
WEIGHTS_NAME = "sae.safetensors"


class CheckpointError(ValueError):
    """A saved SAE or checkpoint is missing, truncated or of another shape."""


# Other tools' folder layouts that ``BaseSAE.save(path, format=NAME)`` can write. Filled by
# ``vsae.interop`` (a higher layer) when it is imported, which ``import vsae`` does.
EXPORTERS: dict[str, Callable[[torch.nn.Module, Path], Path]] = {}


def register_exporter(name: str, write: Callable[[torch.nn.Module, Path], Path]) -> None:
    """Make ``sae.save(path, format=name)`` call ``write(sae, Path(path))``.

    Parameters
    ----------
    name : str
        The format name (``saelens``, ``sparsify``).
    write : callable
        ``write(sae, folder) -> folder``; it raises ``CheckpointError`` for an SAE the format
        cannot hold.
    """
    EXPORTERS[name] = write


def save_sae(sae: torch.nn.Module, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``cfg.json`` and ``sae.safetensors`` atomically into folder ``path``.

    Parameters
    ----------
    sae : BaseSAE
        The model; every parameter and buffer (normalisation statistics,
        thresholds, candidates) is saved.
    path : str or Path
        Folder, created if needed.
    provenance : dict, optional
        Where the SAE comes from (source spec, pretrained tag, hookpoint, ``output`` mode of a
        diffusion block, token mode, shard folder), stored as cfg.json's ``provenance`` object.
        It must be JSON-serialisable.

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
    if provenance is not None:
        cfg[PROVENANCE_KEY] = provenance
    _write_json_atomic(out / CFG_NAME, cfg)
    return out


def _write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2) + "\n"  # serialise first: a bad value writes nothing
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_cfg_json(path: str | Path) -> tuple[Path, dict]:
    cfg_path = Path(path) / CFG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: no such file; an SAE folder holds {CFG_NAME}")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object, got {type(data).__name__}")
    return cfg_path, data


def write_provenance(path: str | Path, provenance: dict) -> None:
    """Record where an SAE folder's model comes from in its ``cfg.json``.

    Parameters
    ----------
    path : str or Path
        An SAE folder (with ``cfg.json``).
    provenance : dict
        JSON-serialisable metadata; it replaces any earlier ``provenance`` object. Known keys:
        ``source`` (e.g. ``world:clip``, ``open_clip:ViT-L-14``), ``pretrained``, ``hookpoint``,
        ``output`` (``update`` or ``output`` for diffusion blocks), ``token_mode``, ``data``
        (the shard folder), ``format`` and ``sha256`` (imported checkpoints).

    Raises
    ------
    CheckpointError
        The folder has no readable ``cfg.json``.
    TypeError
        ``provenance`` is not a dict or not JSON-serialisable (the file is then unchanged).
    """
    if not isinstance(provenance, dict):
        raise TypeError(f"provenance must be a dict, got {type(provenance).__name__}")
    cfg_path, data = _read_cfg_json(path)
    data[PROVENANCE_KEY] = provenance
    _write_json_atomic(cfg_path, data)


def read_provenance(path: str | Path) -> dict:
    """The ``provenance`` object of an SAE folder's ``cfg.json``; ``{}`` when none is recorded.

    Parameters
    ----------
    path : str or Path
        An SAE folder.

    Returns
    -------
    dict

    Raises
    ------
    CheckpointError
        No readable ``cfg.json``, or a ``provenance`` that is not a JSON object.
    """
    cfg_path, data = _read_cfg_json(path)
    prov = data.get(PROVENANCE_KEY, {})
    if not isinstance(prov, dict):
        raise CheckpointError(f"{cfg_path}: {PROVENANCE_KEY!r} must be an object, got {prov!r}")
    return prov


def read_cfg(path: str | Path) -> SAEConfig:
    """Read an SAE folder's ``cfg.json`` (its ``provenance`` object: ``read_provenance``).

    Parameters
    ----------
    path : str or Path
        The SAE folder.

    Returns
    -------
    SAEConfig

    Raises
    ------
    CheckpointError
        The file is missing or not JSON, its ``format_version`` is not this version's, or a
        field is unknown or invalid (the message names the file and the field).
    """
    cfg_path, data = _read_cfg_json(path)
    data.pop(PROVENANCE_KEY, None)
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version={version!r}; expected {FORMAT_VERSION}")
    try:
        return from_dict(SAEConfig, data, where=str(cfg_path))
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a truncated or corrupt file into a clear error.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file (never a pickle).

    Returns
    -------
    dict of str to Tensor
        The tensors, on the CPU.

    Raises
    ------
    CheckpointError
        The file is missing or unreadable.
    """
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
    """``load_state_dict`` with errors that name the file, tensor and both shapes.

    Parameters
    ----------
    module : torch.nn.Module
        The model to fill; its own state dict defines the expected names and shapes.
    tensors : dict of str to Tensor
        What the file holds.
    where : str
        The file's name, for the messages.

    Raises
    ------
    CheckpointError
        A tensor is missing, unexpected, or of another shape.
    """
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
