"""``name_sae``: name every latent of an SAE folder and write ``concepts.json`` / ``.csv``
(and ``latent_stats.safetensors``) beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.concepts import ConceptError, ConceptTable, Thresholds
from vsae.analysis.inputs import (
    Chunk,
    is_shard_folder,
    iter_image_chunks,
    iter_shard_chunks,
    world_images_of_keys,
)
from vsae.analysis.latent_stats import LatentStats, latent_stats
from vsae.analysis.models import DEFAULT_CLIP, ClipModel, ModelSpec, sae_model_spec
from vsae.analysis.naming import NAMERS, name_latents
from vsae.analysis.text_cache import embed_vocab
from vsae.analysis.thresholds import default_thresholds
from vsae.analysis.vocab import Vocabulary, load_vocab

DEFAULT_IMAGES = "world:4000:2025"  # a world seed no benchmark split or training run uses
LATENT_STATS = "latent_stats.safetensors"


@dataclass
class Collected:
    """SAE statistics plus what naming needs of the same images.

    Parameters
    ----------
    stats : LatentStats
    image_emb_IE : np.ndarray or None
        Unit CLIP embeddings ``[I, E]``.
    keys : list of str
    labels : list of dict
    """

    stats: LatentStats
    image_emb_IE: np.ndarray | None
    keys: list[str] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)


def chunks_of(data, spec: ModelSpec, progress: bool = False) -> Iterator[Chunk]:
    """Chunks of ``data``: activation shards as stored, images through the SAE's model.

    Parameters
    ----------
    data : str or Path
    spec : ModelSpec
    progress : bool

    Returns
    -------
    Iterator[Chunk]
    """
    if is_shard_folder(data):
        return iter_shard_chunks(data, spec.hookpoint)
    return iter_image_chunks(data, spec, progress=progress)


def collect(
    sae,
    data,
    spec: ModelSpec,
    clip: ClipModel | None,
    top: int = 100,
    pool: str = "max",
    progress: bool = False,
) -> Collected:
    """One pass over ``data``: latent statistics, keys, labels and CLIP image embeddings.

    Parameters
    ----------
    sae : BaseSAE
    data : str or Path
        Images or activation shards (see :mod:`vsae.analysis.inputs`).
    spec : ModelSpec
        The SAE's model.
    clip : ClipModel, optional
        The CLIP that embeds the images (None: no image embeddings). When it is the SAE's own
        model at hookpoint ``image``, the SAE inputs are reused.
    top, pool : int, str
        See :func:`vsae.analysis.latent_stats.latent_stats`.
    progress : bool

    Returns
    -------
    Collected

    Raises
    ------
    ConceptError
        If the SAE's ``d_in`` differs from the activations' width.
    """
    same = clip is not None and spec.is_clip_embedding and clip.spec == spec.source
    keys: list[str] = []
    labels: list[dict] = []
    embs: list[np.ndarray] = []

    def stream():
        for ch in chunks_of(data, spec, progress):
            if ch.acts.shape[-1] != sae.d_in:
                raise ConceptError(
                    f"SAE d_in={sae.d_in} but {spec.source} at {spec.hookpoint!r} gives "
                    f"{ch.acts.shape[-1]}-d activations; is this the SAE's model "
                    f"(--model, --hookpoint)?"
                )
            keys.extend(ch.keys)
            labels.extend(ch.labels)
            if clip is not None:
                if same:
                    embs.append(torch.nn.functional.normalize(ch.acts.float(), dim=-1).numpy())
                else:
                    images = ch.images if ch.images is not None else world_images_of_keys(ch.keys)
                    embs.append(clip.encode_images(images))
            yield ch.acts

    stats = latent_stats(sae, stream(), top=top, pool=pool)
    emb = np.concatenate(embs) if embs else None
    return Collected(stats, emb, keys, labels)


def write_latent_stats(sae_dir: str | Path, stats: LatentStats) -> Path:
    """Write per-latent firing rate, mean activation when firing, and max (safetensors).

    Parameters
    ----------
    sae_dir : str or Path
    stats : LatentStats

    Returns
    -------
    Path
        ``latent_stats.safetensors`` (tensors ``freq``, ``mean_act``, ``max_act``).
    """
    from safetensors.torch import save_file

    path = Path(sae_dir) / LATENT_STATS
    tensors = {
        "freq": torch.from_numpy(np.ascontiguousarray(stats.freq_N)),
        "mean_act": torch.from_numpy(np.ascontiguousarray(stats.mean_act_N)),
        "max_act": torch.from_numpy(np.ascontiguousarray(stats.max_act_N)),
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"n_inputs": str(stats.n_inputs)})
    tmp.replace(path)
    return path


def name_sae(
    sae_dir: str | Path,
    vocab: str | Vocabulary = "world",
    images=None,
    method: str | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    hookpoint: str | None = None,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    pool: str = "max",
    top: int = 100,
    thresholds: Thresholds | None = None,
    out: str | Path | None = None,
    cache: bool = True,
    progress: bool = False,
) -> ConceptTable:
    """Name every latent of an SAE folder and write ``concepts.json`` / ``concepts.csv``.

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder (loaded with ``vsae.load``).
    vocab : str or Vocabulary
        ``world``, ``imagenet``, ``english`` or a word file (see :func:`load_vocab`).
    images : str, optional
        Images or activation shards for frequencies and top images (default: tiny-world
        renders :data:`DEFAULT_IMAGES`, for SAEs on a tiny-world model).
    method : str, optional
        ``text`` or ``image``; default ``text`` for an SAE on a CLIP image embedding,
        ``image`` otherwise.
    model, pretrained, hookpoint : str, optional
        Override the SAE's provenance (the model it was trained on).
    clip_model, clip_pretrained : str, optional
        The CLIP of image-side naming (default: the SAE's model when it is a CLIP embedding,
        else the world CLIP).
    pool : str
        ``max`` or ``mean`` over an image's tokens.
    top : int
        Top images per latent.
    thresholds : Thresholds, optional
        Default: :func:`vsae.analysis.thresholds.default_thresholds` of the method.
    out : str or Path, optional
        Folder to write into (default: the SAE folder).
    cache : bool
        Use the vocabulary embedding cache.
    progress : bool

    Returns
    -------
    ConceptTable

    Raises
    ------
    ConceptError
        Text-side naming of an SAE that is not on a CLIP image embedding; no images for a
        non-world model; a ``d_in`` that differs from the model's.
    """
    import vsae

    sae = vsae.load(sae_dir)
    spec = sae_model_spec(sae_dir, model=model, pretrained=pretrained, hookpoint=hookpoint)
    method = method or ("text" if spec.is_clip_embedding else "image")
    if method not in NAMERS:
        raise ConceptError(f"naming method {method!r}; expected one of {sorted(NAMERS)}")
    if method == "text" and not spec.is_clip_embedding:
        raise ConceptError(
            f"text-side naming needs an SAE on a CLIP/SigLIP image embedding (hookpoint "
            f"'image' of open_clip: or world:); this SAE reads {spec.source} at "
            f"{spec.hookpoint!r}: use image-side naming (--method image --images ...)"
        )
    if images is None:
        if not spec.source.startswith("world:"):
            raise ConceptError(
                f"naming an SAE on {spec.source} needs images: pass --images FOLDER|SHARDS"
            )
        images = DEFAULT_IMAGES
    if clip_model is None:
        clip_model = spec.source if spec.is_clip_embedding else DEFAULT_CLIP
        clip_pretrained = spec.pretrained if spec.is_clip_embedding else clip_pretrained
    clip = ClipModel(clip_model, clip_pretrained)
    if method == "text" and clip.dim != sae.d_in:
        raise ConceptError(
            f"SAE d_in={sae.d_in} differs from {clip.spec}'s embedding width {clip.dim}"
        )
    voc = vocab if isinstance(vocab, Vocabulary) else load_vocab(vocab)
    words_VE = embed_vocab(clip, voc, cache=cache, progress=progress)
    got = collect(sae, images, spec, clip, top=top, pool=pool, progress=progress)
    table = name_latents(
        sae,
        NAMERS[method](),
        voc,
        words_VE,
        got.stats,
        thresholds or default_thresholds(method),
        image_emb_IE=got.image_emb_IE,
        labels=got.labels,
        keys=got.keys,
        n_top_ids=top,
        meta={
            "model": spec.to_dict(),
            "naming_clip": {"spec": clip.spec, "pretrained": clip.pretrained},
            "images": str(images),
            "pool": pool,
            "top": top,
        },
    )
    dest = Path(out) if out is not None else Path(sae_dir)
    table.save(dest)
    write_latent_stats(dest, got.stats)
    return table
