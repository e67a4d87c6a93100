"""vsae's own folders (``cfg.json`` with ``format_version`` + ``sae.safetensors``) as a format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vsae.interop.common import SAEFormat, no_options
from vsae.sae.base import BaseSAE
from vsae.sae.io import CFG_NAME, read_provenance, save_sae
from vsae.sae.registry import load_sae


class VsaeFormat(SAEFormat):
    """A vsae SAE folder, loaded exactly as ``vsae.sae.registry.load_sae`` loads it."""

    name = "vsae"

    def matches(self, path: Path) -> bool:
        """A folder whose ``cfg.json`` has vsae's ``format_version`` and ``arch``.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        cfg = path / CFG_NAME  # the weights file may be missing: load_sae then says so
        if not (path.is_dir() and cfg.is_file()):
            return False
        try:
            data = json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and "format_version" in data and "arch" in data

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """``load_sae(path)``, with its ``provenance`` object as ``sae.provenance``.

        Parameters
        ----------
        path : Path
            The folder.
        **options
            None are accepted.

        Returns
        -------
        BaseSAE
            The model, bitwise as ``load_sae`` loads it.
        """
        no_options(options, self.name)
        sae = load_sae(path)
        sae.provenance = read_provenance(path)
        return sae

    def write(self, sae: BaseSAE, path: Path) -> Path:
        """``save_sae`` with the SAE's provenance (an import's source) in ``cfg.json``.

        Parameters
        ----------
        sae : BaseSAE
            The model.
        path : Path
            Output folder.

        Returns
        -------
        Path
            The folder.
        """
        return save_sae(sae, path, provenance=getattr(sae, "provenance", None) or None)
