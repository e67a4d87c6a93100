"""Zero-shot attribute accuracy and text-to-image retrieval for tiny CLIP/SigLIP."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .captions import full_caption, zero_shot_prompts
from .clip import encode_renders
from .scenes import labels_of
from .vocab import ATTRIBUTES


@torch.no_grad()
def encode_images(model, images_NHW3: np.ndarray, batch: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings of uint8 renders.

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP.
    images_NHW3 : ndarray
        uint8 [N, 64, 64, 3].
    batch : int
        Images per forward pass.

    Returns
    -------
    Tensor
        [N, E].
    """
    return encode_renders(model, images_NHW3, batch, normalize=True)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings.

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP.
    tokenizer : WorldTokenizer
        Its tokenizer.
    texts : sequence of str
        N prompts.
    batch : int
        Prompts per forward pass.

    Returns
    -------
    Tensor
        [N, E].
    """
    out = [
        model.encode_text(tokenizer(list(texts[i : i + batch])), normalize=True)
        for i in range(0, len(texts), batch)
    ]
    return torch.cat(out)


@torch.no_grad()
def class_embeddings(model, tokenizer, attribute: str) -> torch.Tensor:
    """One normalised text embedding per value of an attribute (an ensemble over the
    zero-shot templates, as in CLIP's zero-shot classifiers).

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP.
    tokenizer : WorldTokenizer
        Its tokenizer.
    attribute : str
        A key of ``ATTRIBUTES``.

    Returns
    -------
    Tensor
        [V, E] for the attribute's V values, in ``ATTRIBUTES`` order.
    """
    prompts = zero_shot_prompts(attribute)
    rows = []
    for value in ATTRIBUTES[attribute]:
        e = encode_texts(model, tokenizer, prompts[value]).mean(0)
        rows.append(e / e.norm())
    return torch.stack(rows)


@torch.no_grad()
def zero_shot_accuracy(
    model,
    tokenizer,
    images_NHW3: np.ndarray,
    scenes: Sequence[dict],
    attributes: Sequence[str] = tuple(ATTRIBUTES),
) -> dict[str, float]:
    """Zero-shot accuracy per attribute on labelled renders.

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP.
    tokenizer : WorldTokenizer
        Its tokenizer.
    images_NHW3 : ndarray
        uint8 [N, 64, 64, 3].
    scenes : sequence of dict
        Their scenes (the labels).
    attributes : sequence of str
        Attributes to classify.

    Returns
    -------
    dict of str to float
        Attribute -> accuracy in [0, 1].
    """
    img = encode_images(model, images_NHW3)
    return zero_shot_accuracy_of_embeddings(model, tokenizer, img, scenes, attributes)


@torch.no_grad()
def zero_shot_accuracy_of_embeddings(
    model,
    tokenizer,
    image_embeddings_NE: torch.Tensor,
    scenes: Sequence[dict],
    attributes: Sequence[str] = tuple(ATTRIBUTES),
) -> dict[str, float]:
    """Zero-shot accuracy per attribute of given image embeddings (e.g. SAE reconstructions).

    The class is the value whose prompt embedding has the largest cosine with the
    image embedding, so the embeddings need not be normalised. With SAE reconstructions
    this is the downstream metric of REFERENCE §4 (zero-shot accuracy kept).

    Parameters
    ----------
    model : open_clip.model.CLIP
        The model whose text tower makes the class embeddings.
    tokenizer : WorldTokenizer
        Its tokenizer.
    image_embeddings_NE : Tensor
        [N, E] in the model's embedding space.
    scenes : sequence of dict
        The images' scenes (the labels).
    attributes : sequence of str
        Attributes to classify.

    Returns
    -------
    dict of str to float
        Attribute -> accuracy in [0, 1].
    """
    img = torch.nn.functional.normalize(image_embeddings_NE.float(), dim=-1)
    labels = labels_of(scenes)
    out = {}
    for a in attributes:
        pred = (img @ class_embeddings(model, tokenizer, a).T).argmax(1).numpy()
        out[a] = float((pred == labels[a]).mean())
    return out


@torch.no_grad()
def retrieval_at_1(model, tokenizer, images_NHW3: np.ndarray, scenes: Sequence[dict]) -> dict:
    """Text-to-image R@1 with one full caption per image.

    Parameters
    ----------
    model : open_clip.model.CLIP
        A tiny CLIP or SigLIP.
    tokenizer : WorldTokenizer
        Its tokenizer.
    images_NHW3 : ndarray
        uint8 [N, 64, 64, 3].
    scenes : sequence of dict
        Their scenes.

    Returns
    -------
    dict
        ``t2i_r1_exact``: the top image is the caption's own image.
        ``t2i_r1_labels``: the top image has the caption's labels (renders with
        identical labels are indistinguishable by their captions). ``n_images``.
    """
    img = encode_images(model, images_NHW3)
    txt = encode_texts(model, tokenizer, [full_caption(s) for s in scenes])
    top = (txt @ img.T).argmax(1).numpy()
    keys = [tuple(s[a] for a in ATTRIBUTES) for s in scenes]
    exact = float((top == np.arange(len(scenes))).mean())
    same = float(np.mean([keys[t] == keys[i] for i, t in enumerate(top)]))
    return {"t2i_r1_exact": exact, "t2i_r1_labels": same, "n_images": len(scenes)}
