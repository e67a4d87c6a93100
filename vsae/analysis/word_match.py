"""Best vocabulary words for many query directions, in chunks (never a dense
``[n_latents, n_words]`` matrix of the whole SAE).
"""

from __future__ import annotations

import numpy as np
import torch


def center_words(words_VE: np.ndarray) -> np.ndarray:
    """Subtract the vocabulary's mean embedding and re-normalise each word.

    CLIP text embeddings share a large common component (the "a photo of" direction, the
    modality gap); removing it leaves what tells the words apart, which is what an SAE atom
    (an offset from the data's mean) can point at.

    Parameters
    ----------
    words_VE : np.ndarray
        Unit text embeddings ``[V, E]``.

    Returns
    -------
    np.ndarray
        ``[V, E]`` float32, unit rows.
    """
    c_VE = words_VE - words_VE.mean(0, keepdims=True)
    return (c_VE / np.linalg.norm(c_VE, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


@torch.no_grad()
def top_words(
    queries_NE: np.ndarray | torch.Tensor,
    words_VE: np.ndarray,
    k: int = 5,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each query with each word, keeping only the ``k`` best words per query.

    Parameters
    ----------
    queries_NE : array or Tensor
        Query directions ``[N, E]`` (any norm; rows of zero norm score 0).
    words_VE : np.ndarray
        Unit word embeddings ``[V, E]``.
    k : int
        Words kept per query (at most V).
    chunk : int
        Queries per block: peak extra memory is ``chunk x V`` float32.

    Returns
    -------
    (np.ndarray, np.ndarray)
        Scores ``[N, k]`` float32 (best first) and word indices ``[N, k]`` int64.

    Raises
    ------
    ValueError
        If the embedding widths differ.
    """
    q = torch.as_tensor(np.asarray(queries_NE, dtype=np.float32))
    w = torch.as_tensor(np.asarray(words_VE, dtype=np.float32))
    if q.ndim != 2 or w.ndim != 2 or q.shape[1] != w.shape[1]:
        raise ValueError(
            f"queries {tuple(q.shape)} and words {tuple(w.shape)}: expected [N, E] and [V, E]"
        )
    k = min(k, w.shape[0])
    q = torch.nn.functional.normalize(q, dim=1)
    scores, idx = [], []
    for i in range(0, q.shape[0], chunk):
        sims_CV = q[i : i + chunk] @ w.t()
        s, j = sims_CV.topk(k, dim=1)
        scores.append(s)
        idx.append(j)
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return torch.cat(scores).numpy(), torch.cat(idx).numpy()
