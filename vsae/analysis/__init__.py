"""Analysis layer: naming SAE latents (concepts) and, built on them, image search.

Sits above ``vsae.sae``, ``vsae.encoders`` and ``vsae.data``; below commands and apps.

Naming::

    from vsae.analysis import name_sae, load_concepts
    table = name_sae("runs/sae", vocab="world", model="world:clip")   # writes concepts.json
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
from vsae.analysis.latent_stats import LatentStats, latent_stats
from vsae.analysis.models import ClipModel, ModelSpec, sae_model_spec
from vsae.analysis.name import name_sae
from vsae.analysis.naming import ImageNamer, Namer, TextNamer, name_latents
from vsae.analysis.text_cache import embed_vocab
from vsae.analysis.thresholds import DEFAULTS, default_thresholds
from vsae.analysis.vocab import Vocabulary, load_vocab

__all__ = [
    "ClipModel",
    "Concept",
    "ConceptError",
    "ConceptTable",
    "DEFAULTS",
    "Explorer",
    "GalleryStats",
    "ImageCoder",
    "ImageCodesError",
    "ImageLatent",
    "ImageNamer",
    "LatentCard",
    "LatentGallery",
    "LatentStats",
    "ModelSpec",
    "Namer",
    "TextNamer",
    "Thresholds",
    "Vocabulary",
    "build_gallery",
    "default_thresholds",
    "embed_vocab",
    "latent_heatmap",
    "latent_stats",
    "load_concepts",
    "load_or_build_gallery",
    "load_vocab",
    "name_latents",
    "name_sae",
    "overlay",
    "resolve",
    "sae_model_spec",
    "top_latents",
]
