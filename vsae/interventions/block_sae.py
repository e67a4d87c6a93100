"""An SAE bound to one U-Net block, with what it reads: the block ``update`` or ``output``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vsae.sae.io import CheckpointError
from vsae.sae.registry import load_sae

from .errors import InterventionError

OUTPUT_MODES = ("update", "output")


@dataclass(frozen=True)
class BlockSAE:
    """One SAE on one ``Transformer2DModel`` block.

    Attributes
    ----------
    sae : BaseSAE
        The model (``d_in`` = the block's channels).
    block : str
        Module name in the U-Net, e.g. ``mid_block.attentions.0``.
    output : str
        ``"update"`` (block output - input, the SDXL-Turbo study) or ``"output"`` (SAeUron).
    name : str
        Its label in reports (the folder).
    """

    sae: torch.nn.Module
    block: str
    output: str = "update"
    name: str = "sae"

    def __post_init__(self):
        if self.output not in OUTPUT_MODES:
            raise InterventionError(f"output={self.output!r}; expected one of {OUTPUT_MODES}")


def output_mode(sae_dir: Path, shards: str | Path | None = None) -> str | None:
    """What the SAE was trained on, from its metadata.

    Looked up in ``cfg.json`` (``provenance.output`` or ``output``), then in the training shards'
    ``meta.json`` (``options.output``, as extraction records it). None when neither says.
    """
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    for holder in (cfg.get("provenance") or {}, cfg):
        if holder.get("output") in OUTPUT_MODES:
            return holder["output"]
    if shards is not None and (Path(shards) / "meta.json").is_file():
        meta = json.loads((Path(shards) / "meta.json").read_text())
        mode = (meta.get("options") or {}).get("output")
        if mode in OUTPUT_MODES:
            return mode
    return None


def load_block_sae(
    sae_dir: str | Path, block: str, output: str | None = None, shards: str | Path | None = None
) -> BlockSAE:
    """Load an SAE folder for a block.

    Parameters
    ----------
    sae_dir : str or Path
        Folder with ``cfg.json`` and ``sae.safetensors``.
    block : str
        The U-Net block it hooks.
    output : str, optional
        ``update`` or ``output``; when given it must agree with the metadata.
    shards : str or Path, optional
        The training shard folder (its ``meta.json`` records ``output``).

    Returns
    -------
    BlockSAE

    Raises
    ------
    InterventionError
        A missing folder, or no recorded mode and none given, or a given mode that contradicts
        the recorded one.
    """
    path = Path(sae_dir)
    if not (path / "cfg.json").is_file():
        raise InterventionError(f"{path}: not an SAE folder (no cfg.json)")
    recorded = output_mode(path, shards)
    if output is not None and recorded is not None and output != recorded:
        raise InterventionError(
            f"{path}: trained on the block {recorded!r} (its metadata), but output={output!r}"
        )
    mode = output or recorded
    if mode is None:
        raise InterventionError(
            f"{path}: neither cfg.json nor the shards' meta.json record whether the SAE reads "
            "the block 'update' or 'output'; give it (output= / --output)"
        )
    try:
        sae = load_sae(path)
    except CheckpointError as exn:
        raise InterventionError(str(exn)) from None
    return BlockSAE(sae.eval(), block, mode, path.name)
