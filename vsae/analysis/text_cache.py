"""Text embeddings of a vocabulary (prompts averaged per word), cached on disk.

The cache is one ``.npz`` (no pickle) per (model weights, vocabulary) pair under
``$VSAE_CACHE/vocab`` (default ``~/.cache/vsae/vocab``). Models with random weights are never
cached: two loads give different towers.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from vsae.analysis.models import ClipModel
from vsae.analysis.vocab import Vocabulary


def cache_root() -> Path:
    """The cache folder.

    Returns
    -------
    Path
        ``$VSAE_CACHE/vocab``, or ``~/.cache/vsae/vocab``.
    """
    base = os.environ.get("VSAE_CACHE") or Path.home() / ".cache" / "vsae"
    return Path(base) / "vocab"


def cache_path(model_key: str, vocab: Vocabulary, root: Path | None = None) -> Path:
    """The cache file of a model and a vocabulary.

    Parameters
    ----------
    model_key : str
        :attr:`ClipModel.cache_key`.
    vocab : Vocabulary
    root : Path, optional
        Default :func:`cache_root`.

    Returns
    -------
    Path
    """
    digest = hashlib.sha256(f"{model_key}|{vocab.sha256}".encode()).hexdigest()[:24]
    safe = "".join(c if c.isalnum() else "_" for c in vocab.name)[:40]
    return (root or cache_root()) / f"{safe}-{digest}.npz"


def embed_vocab(
    clip: ClipModel,
    vocab: Vocabulary,
    cache: bool = True,
    root: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """One unit text embedding per word: the normalised mean of its prompts' unit embeddings.

    Parameters
    ----------
    clip : ClipModel
        The text tower.
    vocab : Vocabulary
        Words and prompts.
    cache : bool
        Read and write the disk cache (skipped for random-weight models).
    root : Path, optional
        Cache folder (default :func:`cache_root`).
    progress : bool
        A progress bar on stderr.

    Returns
    -------
    np.ndarray
        ``[len(vocab), clip.dim]`` float32, rows of unit norm.
    """
    key = clip.cache_key
    path = cache_path(key, vocab, root) if (cache and key is not None) else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                emb_VE = z["emb"]
            if emb_VE.shape == (len(vocab), clip.dim):
                return emb_VE.astype(np.float32)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed below
    flat = [p for prompts in vocab.prompts for p in prompts]
    owner = np.repeat(np.arange(len(vocab)), [len(p) for p in vocab.prompts])
    chunk = 2048
    sums_VE = np.zeros((len(vocab), clip.dim), np.float64)
    bar = _bar(len(flat), f"embedding vocabulary {vocab.name}", progress)
    for i in range(0, len(flat), chunk):
        e_BE = clip.encode_text(flat[i : i + chunk])
        np.add.at(sums_VE, owner[i : i + chunk], e_BE)
        bar.update(len(e_BE))
    bar.close()
    emb_VE = sums_VE / np.linalg.norm(sums_VE, axis=1, keepdims=True).clip(1e-12)
    emb_VE = emb_VE.astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, emb=emb_VE, words=np.array(vocab.words, dtype=str))
        os.replace(tmp, path)
    return emb_VE


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", file=sys.stderr, disable=not enabled)
