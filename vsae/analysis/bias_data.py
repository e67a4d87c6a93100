"""Embeddings and labels of an image collection for the bias analysis: images through the
SAE's model (or the stored vectors of activation shards), matched to a labels file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vsae.analysis.bias_labels import BiasError, align_labels, read_labels
from vsae.analysis.models import ModelSpec


def load_embeddings(
    data, spec: ModelSpec, labels_path: str | Path | None = None, progress: bool = False
) -> tuple[torch.Tensor, list[str], list[dict]]:
    """One embedding per image, its key and its labels.

    Parameters
    ----------
    data : str or Path
        ``world:N:SEED``, an image folder, ``.tar`` image shards, or an activation-shard
        folder of ``vsae extract``.
    spec : ModelSpec
        The SAE's model and hookpoint (one vector per image: an embedding, or a block's CLS).
    labels_path : str or Path, optional
        ``labels.jsonl``, CelebA ``list_attr_celeba.txt`` or a CSV; default the labels the
        collection carries (world renders, a folder's ``labels.jsonl``, shard metadata).
    progress : bool
        A tqdm bar over the images.

    Returns
    -------
    (Tensor [N, D], list of str, list of dict)

    Raises
    ------
    BiasError
        No images, several tokens per image, a labels file that does not cover the images,
        or no labels at all.
    """
    from vsae.analysis.name import chunks_of

    xs, keys, labels = [], [], []
    for ch in chunks_of(data, spec, progress=progress):
        if ch.acts.ndim != 2:
            raise BiasError(
                f"{data}: {tuple(ch.acts.shape)} activations per chunk; the bias analysis "
                "needs one vector per image (an embedding hookpoint, or tokens=cls)"
            )
        xs.append(ch.acts.float())
        keys += ch.keys
        labels += ch.labels
    if not xs:
        raise BiasError(f"{data}: no images")
    if labels_path is not None:
        labels = align_labels(keys, read_labels(labels_path), str(labels_path))
    elif not any(labels):
        raise BiasError(f"{data}: the images carry no labels; pass --labels labels.jsonl|attrs.csv")
    return torch.cat(xs), keys, labels
