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
from vsae.analysis.explore import Explorer, ImageLatent, LatentCard
from vsae.analysis.heatmap import latent_heatmap, overlay, top_latents
from vsae.analysis.image_codes import ImageCoder, ImageCodesError
from vsae.analysis.latent_gallery import (
    GalleryStats,
    LatentGallery,
    build_gallery,
    load_or_build_gallery,
)

__all__ = [
    "Concept",
    "ConceptError",
    "ConceptTable",
    "Explorer",
    "ImageCoder",
    "ImageCodesError",
    "ImageLatent",
    "LatentCard",
    "LatentGallery",
    "GalleryStats",
    "Thresholds",
    "build_gallery",
    "latent_heatmap",
    "load_or_build_gallery",
    "overlay",
    "top_latents",
    "load_concepts",
    "resolve",
]
