"""Analysis layer: naming SAE latents (concepts) and, built on them, image search.

Sits above ``vsae.sae``, ``vsae.encoders`` and ``vsae.data``; below commands and apps.

Naming::

    from vsae.analysis import name_sae, load_concepts
    table = name_sae("runs/sae", vocab="world", model="world:clip")   # writes concepts.json

Bias (which named concepts a linear probe leans on, by intervention)::

    from vsae.analysis import analyse_bias
    res = analyse_bias(sae, x_ND, labels, "shape=circle", group="colour", concepts=table)

Search::

    from vsae.analysis import build_index, Query, Searcher, sae_model_spec
    build_index("runs/sae", "world:3000:4242", "runs/index", sae_model_spec("runs/sae"))
    hits = Searcher("runs/index").run(Query(image="#0", suppress=("red",), boost=("blue=2",)))
"""

from vsae.analysis.bias import BiasConfig, BiasResult, analyse_bias, debias_accuracy
from vsae.analysis.bias_labels import BiasError, align_labels, read_labels
from vsae.analysis.bias_probe import LinearProbe, ProbeConfig, fit_probe, load_probe
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
from vsae.analysis.index_build import ConceptIndexError, IndexBuilder, build_index
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
from vsae.analysis.query import Query, Searcher, search
from vsae.analysis.query_edit import Edit, edit_query
from vsae.analysis.search import ConceptIndex, Hit
from vsae.analysis.sheet import contact_sheet
from vsae.analysis.text_cache import embed_vocab
from vsae.analysis.thresholds import DEFAULTS, default_thresholds
from vsae.analysis.vocab import Vocabulary, load_vocab

__all__ = [
    "BiasConfig",
    "BiasError",
    "BiasResult",
    "ClipModel",
    "Concept",
    "ConceptError",
    "ConceptIndex",
    "ConceptIndexError",
    "ConceptTable",
    "DEFAULTS",
    "Edit",
    "Explorer",
    "GalleryStats",
    "Hit",
    "ImageCoder",
    "ImageCodesError",
    "ImageLatent",
    "ImageNamer",
    "IndexBuilder",
    "LatentCard",
    "LatentGallery",
    "LatentStats",
    "LinearProbe",
    "ModelSpec",
    "Namer",
    "ProbeConfig",
    "Query",
    "Searcher",
    "TextNamer",
    "Thresholds",
    "Vocabulary",
    "align_labels",
    "analyse_bias",
    "build_gallery",
    "build_index",
    "contact_sheet",
    "debias_accuracy",
    "default_thresholds",
    "edit_query",
    "embed_vocab",
    "fit_probe",
    "latent_heatmap",
    "latent_stats",
    "load_concepts",
    "load_or_build_gallery",
    "load_probe",
    "load_vocab",
    "name_latents",
    "name_sae",
    "overlay",
    "read_labels",
    "resolve",
    "sae_model_spec",
    "search",
    "top_latents",
]
