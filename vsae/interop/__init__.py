"""Load other tools' SAE checkpoints into vsae, and write vsae SAEs in their layouts.

Sits above ``vsae.sae`` (imports it; ``vsae.sae`` never imports this package).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vsae.interop import detect as _detect
from vsae.interop import hub, saelens, sparsify
from vsae.interop.common import InteropError
from vsae.sae import load_sae
from vsae.sae.base import BaseSAE

READERS = {"saelens": saelens.read, "sparsify": sparsify.read}
FORMATS = ("auto", "vsae", *READERS)
PROVENANCE = "provenance.json"


def load(path: str | Path, format: str = "auto", device: str | torch.device = "cpu") -> BaseSAE:
    """Load an SAE from a vsae, SAELens or sparsify folder, or an ``hf://`` URI.

    Parameters
    ----------
    path : str or Path
        A folder, or ``hf://owner/repo[/subfolder][@revision]``.
    format : str
        ``auto`` (detected from files and cfg keys, logged), ``vsae``, ``saelens`` or
        ``sparsify``.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    BaseSAE
        In eval mode; imported SAEs carry ``sae.provenance`` (source format, file,
        SHA-256, model, hookpoint).

    Raises
    ------
    InteropError
        Unknown format, undetectable layout, unsupported architecture or bad tensors.
    """
    if format not in FORMATS:
        raise InteropError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    folder = hub.fetch(str(path)) if str(path).startswith("hf://") else Path(path)
    fmt = _detect.detect(folder) if format == "auto" else format
    if fmt == "vsae":
        return load_sae(folder, device=device)
    sae = READERS[fmt](folder)
    if str(path).startswith("hf://"):
        sae.provenance["uri"] = str(path)
    return sae.to(device)


def save(sae: BaseSAE, path: str | Path, format: str = "vsae") -> Path:
    """Write ``sae`` as a vsae, SAELens or sparsify folder.

    Parameters
    ----------
    sae : BaseSAE
        The model.
    path : str or Path
        Output folder.
    format : str
        ``vsae`` (also writes ``provenance.json`` when the SAE was imported), ``saelens``
        or ``sparsify``.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InteropError
        Unknown format, or an architecture the format cannot represent.
    """
    out = Path(path)
    if format == "saelens":
        return saelens.write(sae, out)
    if format == "sparsify":
        return sparsify.write(sae, out)
    if format != "vsae":
        raise InteropError(f"format={format!r}; expected vsae, saelens or sparsify")
    sae.save(out)
    prov = getattr(sae, "provenance", None)
    if prov:
        (out / PROVENANCE).write_text(json.dumps(prov, indent=2) + "\n")
    return out


__all__ = ["FORMATS", "InteropError", "load", "save"]
