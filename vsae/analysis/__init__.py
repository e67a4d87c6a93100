"""Analysis layer: naming SAE latents (concepts) and, built on them, image search.

Sits above ``vsae.sae``, ``vsae.encoders`` and ``vsae.data``; below commands and apps.
"""

from vsae.analysis.concepts import (
    Concept,
    ConceptError,
    ConceptTable,
    Thresholds,
    load_concepts,
    resolve,
)

__all__ = [
    "Concept",
    "ConceptError",
    "ConceptTable",
    "Thresholds",
    "load_concepts",
    "resolve",
]
