"""Naming SAE latents against a vocabulary: text-side (decoder atoms vs word embeddings) and
image-side (top-activating images' mean embedding vs word embeddings).

Both namers turn each latent into a direction in a CLIP embedding space and pick the
vocabulary word with the highest cosine (Discover-then-Name, Rao et al. 2024; Matryoshka-CLIP
naming, Zaigrajew et al. 2025). Words are centred first (see
:func:`vsae.analysis.word_match.center_words`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from vsae.analysis.agreement import name_agreement
from vsae.analysis.concepts import Concept, ConceptError, ConceptTable, Thresholds
from vsae.analysis.labels import has_labels, majority_label
from vsae.analysis.latent_stats import LatentStats, fired_top_ids
from vsae.analysis.vocab import Vocabulary
from vsae.analysis.word_match import center_words, top_words

N_TOP_WORDS = 5


class Namer:
    """One way to turn latents into directions of a CLIP space (the shared interface)."""

    method: ClassVar[str] = ""

    def directions(self, sae, stats: LatentStats, image_emb_IE: np.ndarray | None) -> np.ndarray:
        """Per-latent query directions (a zero row: the latent cannot be named).

        Parameters
        ----------
        sae : BaseSAE
        stats : LatentStats
            Top images per latent.
        image_emb_IE : np.ndarray, optional
            Unit CLIP embeddings of the images ``[I, E]``.

        Returns
        -------
        np.ndarray
            ``[N, E]``.
        """
        raise NotImplementedError


class TextNamer(Namer):
    """Decoder atoms as directions: for an SAE on a CLIP/SigLIP image embedding.

    The atoms live in the embedding space itself, so they are compared with the text
    embeddings directly. No images are needed for the names (only for frequencies).
    """

    method = "text"

    def directions(self, sae, stats: LatentStats, image_emb_IE: np.ndarray | None) -> np.ndarray:
        """Unit decoder atoms in raw space.

        Parameters
        ----------
        sae : BaseSAE
        stats : LatentStats
            Top images per latent.
        image_emb_IE : np.ndarray, optional
            Unit CLIP embeddings of the images ``[I, E]``.

        Returns
        -------
        np.ndarray
            ``[N, E]`` with ``E = d_in``.
        """
        return sae.decoder_directions().cpu().float().numpy()


class ImageNamer(Namer):
    """Top-activating images as directions: for an SAE on any hookpoint.

    Each latent's direction is the mean CLIP embedding of its top images minus the mean
    embedding of all images (what sets those images apart).
    """

    method = "image"

    def directions(self, sae, stats: LatentStats, image_emb_IE: np.ndarray | None) -> np.ndarray:
        """Mean top-image embedding minus the overall mean.

        Parameters
        ----------
        sae : BaseSAE
        stats : LatentStats
            Top images per latent.
        image_emb_IE : np.ndarray, optional
            Unit CLIP embeddings of the images ``[I, E]``.

        Returns
        -------
        np.ndarray
            ``[N, E]``.

        Raises
        ------
        ConceptError
            Without image embeddings, or with a count that differs from the SAE inputs'.
        """
        if image_emb_IE is None:
            raise ConceptError("image-side naming needs the images' CLIP embeddings")
        if len(image_emb_IE) != stats.n_inputs:
            raise ConceptError(
                f"{len(image_emb_IE)} image embeddings for {stats.n_inputs} SAE inputs"
            )
        mean_E = image_emb_IE.mean(0)
        out_NE = np.zeros((stats.top_ids_NM.shape[0], image_emb_IE.shape[1]), np.float32)
        for i in range(out_NE.shape[0]):
            ids = fired_top_ids(stats, i)
            if len(ids):
                out_NE[i] = image_emb_IE[ids].mean(0) - mean_E
        return out_NE


NAMERS: dict[str, type[Namer]] = {"text": TextNamer, "image": ImageNamer}


def name_latents(
    sae,
    namer: Namer,
    vocab: Vocabulary,
    words_VE: np.ndarray,
    stats: LatentStats,
    thresholds: Thresholds,
    image_emb_IE: np.ndarray | None = None,
    labels: Sequence[dict] | None = None,
    keys: Sequence[str] | None = None,
    n_top_ids: int = 20,
    meta: dict | None = None,
) -> ConceptTable:
    """Name every latent and mark the valid ones.

    Parameters
    ----------
    sae : BaseSAE
        The SAE.
    namer : Namer
        :class:`TextNamer` or :class:`ImageNamer`.
    vocab : Vocabulary
        The words.
    words_VE : np.ndarray
        Unit text embeddings of ``vocab`` ``[V, E]`` (see :func:`vsae.analysis.embed_vocab`).
    stats : LatentStats
        Frequencies and top inputs on a set of images.
    thresholds : Thresholds
        When a named latent is valid.
    image_emb_IE : np.ndarray, optional
        Unit CLIP embeddings of those images (image-side naming).
    labels : sequence of dict, optional
        Labels per image: majority label and purity of the top images.
    keys : sequence of str, optional
        Not stored per latent; only counted in ``meta``.
    n_top_ids : int
        Top image ids stored per latent.
    meta : dict, optional
        Recorded in the table (model spec, pool mode, image source).

    Returns
    -------
    ConceptTable

    Raises
    ------
    ConceptError
        If the directions' width differs from the word embeddings' (e.g. an SAE whose
        ``d_in`` is not the text model's embedding width).
    """
    dirs_NE = namer.directions(sae, stats, image_emb_IE)
    if dirs_NE.shape[1] != words_VE.shape[1]:
        raise ConceptError(
            f"SAE d_in={dirs_NE.shape[1]} differs from the text model's embedding width "
            f"{words_VE.shape[1]}; text-side naming needs an SAE on that CLIP's image "
            f"embedding (use image-side naming, --images, for other hookpoints)"
        )
    words_c_VE = center_words(words_VE)
    scores_NK, idx_NK = top_words(dirs_NE, words_c_VE, k=N_TOP_WORDS + 1)
    nameable_N = np.linalg.norm(dirs_NE, axis=1) > 0
    tops = [fired_top_ids(stats, i) for i in range(len(dirs_NE))]
    agree_N = np.full(len(dirs_NE), np.nan, np.float32)
    if image_emb_IE is not None and image_emb_IE.shape[1] == words_VE.shape[1]:
        agree_N = name_agreement(
            image_emb_IE, words_c_VE, np.where(nameable_N, idx_NK[:, 0], -1), tops
        )
    use_labels = labels is not None and has_labels(labels)
    records = []
    for i in range(len(dirs_NE)):
        freq, mean_act = float(stats.freq_N[i]), float(stats.mean_act_N[i])
        ids = tops[i]
        label, purity = majority_label(ids, labels) if use_labels else ("", float("nan"))
        if not nameable_N[i]:
            records.append(Concept(i, "", 0.0, 0.0, (), freq, mean_act, (), False, label, purity))
            continue
        score = float(scores_NK[i, 0])
        margin = score - float(scores_NK[i, 1]) if scores_NK.shape[1] > 1 else score
        words = tuple(vocab.words[j] for j in idx_NK[i, :N_TOP_WORDS])
        records.append(
            Concept(
                id=i,
                name=words[0],
                score=score,
                margin=margin,
                top_words=words,
                freq=freq,
                mean_act=mean_act,
                top_ids=tuple(int(j) for j in ids[:n_top_ids]),
                valid=thresholds.passes(score, margin, freq, float(agree_N[i])),
                label=label,
                purity=purity,
                agreement=float(agree_N[i]),
            )
        )
    info = {"n_images": stats.n_inputs, **(meta or {})}
    if keys is not None:
        info["n_keys"] = len(keys)
    return ConceptTable(
        concepts=tuple(records),
        thresholds=thresholds,
        vocab=vocab.describe(),
        method=namer.method,
        meta=info,
    )
