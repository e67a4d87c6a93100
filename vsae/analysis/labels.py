"""Labels of images (world scenes, class folders, sidecar JSON) and how pure a latent's top
images are.

A label set is one ``dict`` per image, attribute -> value (``{"colour": "red", ...}``, or
``{"class": "goldfish"}`` for an ImageNet-style folder). Empty dicts mean "no labels".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def has_labels(labels: Sequence[dict]) -> bool:
    """Whether any image carries a label.

    Parameters
    ----------
    labels : sequence of dict

    Returns
    -------
    bool
    """
    return any(bool(lab) for lab in labels)


def label_values(lab: dict) -> set[str]:
    """The string values of one image's labels (nested objects ignored).

    Parameters
    ----------
    lab : dict

    Returns
    -------
    set of str
    """
    return {str(v) for v in lab.values() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def majority_label(ids: np.ndarray, labels: Sequence[dict]) -> tuple[str, float]:
    """The value carried by most of the images ``ids``, and the fraction that carry it.

    Parameters
    ----------
    ids : np.ndarray
        Image ids (e.g. a latent's top-activating images).
    labels : sequence of dict
        Labels of every image, indexed by id.

    Returns
    -------
    (str, float)
        ``("", nan)`` when there are no ids or no labels.
    """
    if len(ids) == 0 or not has_labels(labels):
        return "", float("nan")
    counts: Counter[str] = Counter()
    for i in ids:
        counts.update(label_values(labels[int(i)]))
    if not counts:
        return "", float("nan")
    value, n = counts.most_common(1)[0]
    return value, n / len(ids)


def share_with(ids: np.ndarray, labels: Sequence[dict], value: str) -> float:
    """Fraction of the images ``ids`` whose labels include ``value``.

    Parameters
    ----------
    ids : np.ndarray
    labels : sequence of dict
    value : str

    Returns
    -------
    float
        nan for no ids.
    """
    if len(ids) == 0:
        return float("nan")
    return float(np.mean([value in label_values(labels[int(i)]) for i in ids]))
