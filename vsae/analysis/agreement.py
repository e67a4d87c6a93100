"""A label-free check of a latent's name: do its top images look like the named word?

For word ``w`` the detector score of image ``i`` is ``cos(e_i - mean(e), w_c)`` (centred image
embedding against the centred word embedding). A latent's agreement is the fraction of its top
images whose score exceeds the word's median over all images: 1.0 when every top image leans
towards the name, 0.5 when they are no better than chance.
"""

from __future__ import annotations

import numpy as np


def name_agreement(
    image_emb_IE: np.ndarray,
    words_c_VE: np.ndarray,
    names_N: np.ndarray,
    top_ids: list[np.ndarray],
    chunk: int = 256,
) -> np.ndarray:
    """Agreement of every named latent with its top images.

    Parameters
    ----------
    image_emb_IE : np.ndarray
        Unit CLIP embeddings of all images ``[I, E]``.
    words_c_VE : np.ndarray
        Centred unit word embeddings ``[V, E]``.
    names_N : np.ndarray
        Word index of each latent's name (-1: unnamed).
    top_ids : list of np.ndarray
        Each latent's top image ids (fired only).
    chunk : int
        Words scored at a time: peak memory ``I x chunk`` float32.

    Returns
    -------
    np.ndarray
        ``[N]`` float32; nan for unnamed latents or latents without top images.
    """
    centred_IE = (image_emb_IE - image_emb_IE.mean(0, keepdims=True)).astype(np.float32)
    out_N = np.full(len(names_N), np.nan, np.float32)
    used = np.unique(names_N[names_N >= 0])
    for lo in range(0, len(used), chunk):
        words = used[lo : lo + chunk]
        scores_IW = centred_IE @ words_c_VE[words].T
        medians_W = np.median(scores_IW, axis=0)
        col = {int(w): j for j, w in enumerate(words)}
        for i in np.flatnonzero(np.isin(names_N, words)):
            ids = top_ids[i]
            if len(ids):
                j = col[int(names_N[i])]
                out_N[i] = float(np.mean(scores_IW[ids, j] > medians_W[j]))
    return out_N
