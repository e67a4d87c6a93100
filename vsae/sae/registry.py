"""Architecture name -> SAE class, and the two calls that go through it: build and load.

The import order is one way: ``io`` (the folder format) -> ``base`` -> the architectures ->
this module -> ``vsae.sae``. Nothing below imports this module, so there is no cycle.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vsae.config import SAEConfig
from vsae.sae.archetypal import ArchetypalSAE
from vsae.sae.base import BaseSAE
from vsae.sae.io import WEIGHTS_NAME, load_state_checked, read_cfg, read_tensors
from vsae.sae.jumprelu import JumpReLUSAE
from vsae.sae.matryoshka_k import MatryoshkaKSAE
from vsae.sae.matryoshka_prefix import MatryoshkaPrefixSAE
from vsae.sae.relu import ReLUSAE
from vsae.sae.topk import BatchTopKSAE, TopKSAE

REGISTRY: dict[str, type[BaseSAE]] = {
    cls.arch: cls
    for cls in (
        ReLUSAE,
        TopKSAE,
        BatchTopKSAE,
        JumpReLUSAE,
        MatryoshkaKSAE,
        MatryoshkaPrefixSAE,
        ArchetypalSAE,
    )
}


def build(cfg: SAEConfig) -> BaseSAE:
    """A freshly initialised SAE of the architecture ``cfg.arch``.

    Parameters
    ----------
    cfg : SAEConfig
        Architecture and sizes (``cfg.arch`` is validated by ``SAEConfig``).

    Returns
    -------
    BaseSAE
        The model (call ``init_from_data`` or ``vsae.train`` before use).
    """
    return REGISTRY[cfg.arch](cfg)


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> BaseSAE:
    """Load an SAE folder written by ``save``; outputs are bitwise equal to the saved model.

    Parameters
    ----------
    path : str or Path
        Folder holding ``cfg.json`` and ``sae.safetensors``.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    BaseSAE
        The model, in eval mode.

    Raises
    ------
    CheckpointError
        A file is missing, truncated, of another format version, or its tensors do not
        match the config's shapes.
    """
    cfg = read_cfg(path)
    sae = build(cfg)
    weights = Path(path) / WEIGHTS_NAME
    load_state_checked(sae, read_tensors(weights), str(weights))
    return sae.to(device).eval()
