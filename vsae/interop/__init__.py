"""Load other tools' SAE checkpoints into vsae, and write vsae SAEs in their layouts.

``load`` is the one loader every command uses: vsae folders, SAELens, sparsify (and SAeUron),
sdxl-unbox, MSAE, saev and overcomplete checkpoints, local or ``hf://``. Files are read with
safetensors, JSON or ``torch.load(weights_only=True)`` only. See docs/interop.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vsae.interop import hub
from vsae.interop.common import InteropError, SAEFormat
from vsae.interop.detect import detect
from vsae.interop.msae import MSAEFormat
from vsae.interop.overcomplete import OvercompleteFormat
from vsae.interop.saelens import SAELensFormat
from vsae.interop.saev import SaevFormat
from vsae.interop.sparsify import SparsifyFormat
from vsae.interop.unbox import UnboxFormat
from vsae.interop.vsae_folder import VsaeFormat
from vsae.sae.base import BaseSAE
from vsae.sae.io import register_exporter

# Tried in this order by format="auto" (overcomplete last: its look loads the file).
READERS: dict[str, SAEFormat] = {
    f.name: f
    for f in (
        VsaeFormat(),
        SAELensFormat(),
        SparsifyFormat(),
        UnboxFormat(),
        SaevFormat(),
        MSAEFormat(),
        OvercompleteFormat(),
    )
}
FORMATS = ("auto", *READERS)
WRITERS = ("vsae", "saelens", "sparsify")


def load(
    path: str | Path,
    format: str = "auto",
    device: str | torch.device = "cpu",
    **options: Any,
) -> BaseSAE:
    """Load an SAE from a vsae folder, another tool's checkpoint, or an ``hf://`` URI.

    Parameters
    ----------
    path : str or Path
        A folder or file, or ``hf://owner/repo[/subfolder][@revision]``.
    format : str
        ``auto`` (detected from the files, logged on ``vsae.interop``), ``vsae``,
        ``saelens``, ``sparsify``, ``sdxl_unbox``, ``msae``, ``saev`` or ``overcomplete``.
    device : str or torch.device
        Where to put the model.
    **options
        Format options: overcomplete ``top_k``, ``normalization``, ``delta``; saev
        ``b_dec_on_input``.

    Returns
    -------
    BaseSAE
        In eval mode; ``sae.source_format`` names the format read. ``sae.provenance`` says
        where it came from (format, file, SHA-256,
        model and hookpoint where known, the ``hf://`` URI); a vsae folder loads exactly as
        ``vsae.sae.load_sae`` loads it, with its cfg.json ``provenance``.

    Raises
    ------
    InteropError
        Unknown format, malformed URI, undetectable layout, unsupported architecture,
        truncated files, files needing pickle of code, missing/extra tensors, bad shapes.
    """
    if format not in FORMATS:
        raise InteropError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    uri = str(path) if hub.is_uri(str(path)) else None
    local = hub.fetch(uri) if uri else Path(path)
    if format == "auto":
        format, local = detect(local, READERS)
    elif not local.exists():
        raise InteropError(f"{local}: no such file or folder")
    sae = READERS[format].read(local, **options)
    sae.source_format = format  # the format read (the detected one under auto)
    if uri:
        sae.provenance["uri"] = uri
    return sae.to(device).eval()


def save(sae: BaseSAE, path: str | Path, format: str = "vsae") -> Path:
    """Write ``sae`` as a vsae, SAELens or sparsify folder (also ``sae.save(path, format=)``).

    Parameters
    ----------
    sae : BaseSAE
        The model.
    path : str or Path
        Output folder.
    format : str
        ``vsae`` (cfg.json keeps ``sae.provenance``), ``saelens`` or ``sparsify``.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InteropError
        Unknown format, or an architecture the format cannot represent exactly.
    """
    if format not in WRITERS:
        raise InteropError(f"format={format!r}; vsae writes {', '.join(WRITERS)}")
    return READERS[format].write(sae, Path(path))


for _name in ("saelens", "sparsify"):
    register_exporter(_name, READERS[_name].write)

__all__ = ["FORMATS", "READERS", "WRITERS", "InteropError", "SAEFormat", "load", "save"]
