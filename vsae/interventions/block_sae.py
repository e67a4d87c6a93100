"""An SAE bound to one U-Net block, with what it reads: the block ``update`` or ``output``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vsae.interop import load
from vsae.sae.io import CheckpointError

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


def output_mode(provenance: dict, shards: str | Path | None = None) -> str | None:
    """What the SAE was trained on, from its metadata.

    Parameters
    ----------
    provenance : dict
        The loaded SAE's ``provenance`` (cfg.json's for a vsae folder; the source tool's
        metadata for an imported checkpoint).
    shards : str or Path, optional
        Its training shard folder; ``meta.json``'s ``options.output`` is used when the
        provenance says nothing.

    Returns
    -------
    str or None
        ``update``, ``output``, or None when neither records it.
    """
    if provenance.get("output") in OUTPUT_MODES:
        return provenance["output"]
    if shards is not None and (Path(shards) / "meta.json").is_file():
        meta = json.loads((Path(shards) / "meta.json").read_text())
        mode = (meta.get("options") or {}).get("output")
        if mode in OUTPUT_MODES:
            return mode
    return None


def load_block_sae(
    sae_dir: str | Path, block: str, output: str | None = None, shards: str | Path | None = None
) -> BlockSAE:
    """Load an SAE for a U-Net block: a vsae folder or any checkpoint ``vsae.load`` reads.

    Parameters
    ----------
    sae_dir : str or Path
        A vsae folder (``cfg.json`` + ``sae.safetensors``), another tool's checkpoint
        (SAELens, sparsify / SAeUron, sdxl-unbox, ...; docs/interop.md), or an ``hf://`` URI.
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
        An unreadable checkpoint, no recorded mode and none given, or a given mode that
        contradicts the recorded one.
    """
    path = sae_dir if str(sae_dir).startswith("hf://") else Path(sae_dir)
    try:
        sae = load(path)
    except CheckpointError as exn:  # InteropError is one
        raise InterventionError(str(exn)) from None
    recorded = output_mode(dict(getattr(sae, "provenance", {}) or {}), shards)
    if output is not None and recorded is not None and output != recorded:
        raise InterventionError(
            f"{path}: trained on the block {recorded!r} (its metadata), but output={output!r}"
        )
    mode = output or recorded
    if mode is None:
        raise InterventionError(
            f"{path}: neither its metadata (cfg.json provenance) nor the shards' meta.json "
            "record whether the SAE reads the block 'update' or 'output'; give it "
            "(output= / --output)"
        )
    name = path.name if isinstance(path, Path) else str(path)
    return BlockSAE(sae.eval(), block, mode, name)
