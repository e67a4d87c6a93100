"""Minimal-pair batches: groups of scenes identical except for one attribute.

A random contrastive batch of 128 renders can be told apart by colour, size and
background alone, so a tiny CLIP never needs position (and barely shape): its
image tower learns to ignore where the object is, and its text tower learns to
ignore "top left". A group that renders one scene at every value of one
attribute (same jitter, same background, same everything else) and captions
each member with that attribute makes the attribute the only way to match them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .captions import random_caption
from .render import render_scenes
from .scenes import sample_scene
from .vocab import ATTRIBUTES


def minimal_pair_batch(
    groups: Mapping[str, int],
    seed: int,
    step: int,
    keep_prob: float = 0.4,
) -> tuple[np.ndarray, list[dict], list[str]]:
    """Render ``groups[a]`` groups per attribute ``a``; each group spans every value of ``a``.

    Parameters
    ----------
    groups : mapping of str to int
        Number of groups per varied attribute, e.g. ``{"position": 12, "shape": 6}``.
    seed, step : int
        The batch depends on these two integers only (scene indices ``step * 10_000 + j``).
    keep_prob : float
        Probability that a caption also names each attribute other than the varied one.

    Returns
    -------
    (ndarray, list of dict, list of str)
        ``N = sum(groups[a] * len(ATTRIBUTES[a]))`` uint8 renders [N, 64, 64, 3] with their
        scenes and captions.

    Raises
    ------
    ValueError
        An unknown attribute.
    """
    rng = np.random.default_rng([int(seed), int(step), 7])
    scenes, captions = [], []
    j = 0
    for attribute, n_groups in groups.items():
        if attribute not in ATTRIBUTES:
            raise ValueError(f"minimal pairs: unknown attribute {attribute!r}")
        keep = {a: keep_prob for a in ATTRIBUTES}
        keep[attribute] = 1.0
        for _ in range(n_groups):
            for value in ATTRIBUTES[attribute]:
                scene = sample_scene(seed, step * 10_000 + j, fixed={attribute: value})
                scenes.append(scene)
                captions.append(random_caption(scene, rng, p_full=0.2, keep_probs=keep))
            j += 1
    return render_scenes(scenes), scenes, captions
