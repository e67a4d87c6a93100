"""SAE architectures behind one interface, a registry, and save/load."""

from __future__ import annotations

from vsae.config import SAEConfig
from vsae.sae.archetypal import ArchetypalSAE
from vsae.sae.base import BaseSAE, LossOutput, SAEOutput
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
        Architecture and sizes.

    Returns
    -------
    BaseSAE
        The model (call ``init_from_data`` or ``vsae.train`` before use).
    """
    return REGISTRY[cfg.arch](cfg)


from vsae.sae.io import CheckpointError, load_sae, save_sae  # noqa: E402

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
