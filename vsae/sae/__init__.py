"""SAE architectures behind one interface, a registry, and save/load."""

from __future__ import annotations

from vsae.sae.base import BaseSAE, LossOutput, SAEOutput
from vsae.sae.io import CheckpointError, save_sae
from vsae.sae.registry import REGISTRY, build, load_sae

__all__ = [
    "REGISTRY",
    "BaseSAE",
    "CheckpointError",
    "LossOutput",
    "SAEOutput",
    "build",
    "load_sae",
    "save_sae",
]
