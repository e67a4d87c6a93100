"""Captions from several templates, and zero-shot prompts, for tiny-world scenes.

Training captions mention a random subset of the attributes (so that short
prompts such as "a red object" are in distribution) or all of them. Only the
canonical attribute words of ``vocab.py`` are used; wording varies in the frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .vocab import ATTRIBUTES, BACKGROUND_WORDS

FRAMES = (
    "a {obj}{pos}{bg}",
    "a photo of a {obj}{pos}{bg}",
    "a picture of a {obj}{bg}{pos}",
    "there is a {obj}{pos}{bg}",
    "an image showing a {obj}{pos}{bg}",
    "a rendering of a {obj}{bg}{pos}",
    "this is a {obj}{pos}{bg}",
)
POSITION_PHRASES = (" in the {p}", " at the {p}", " in the {p} corner")
BACKGROUND_PHRASES = (" on a {b} background", " with a {b} background", " against a {b} backdrop")
GENERIC_NOUNS = ("object", "shape", "thing")

ZERO_SHOT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("a {} object", "a photo of a {} shape", "a {} thing"),
    "shape": ("a {}", "a photo of a {}", "there is a {}"),
    "size": ("a {} object", "a photo of a {} shape", "a {} thing"),
    "position": ("an object in the {}", "a shape at the {}", "a thing in the {} corner"),
    "background": ("an object on a {} background", "a shape with a {} background"),
}


def _article(text: str) -> str:
    """Fix 'a' -> 'an' before a vowel sound (the world's words only)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][:1] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def noun_phrase(obj: Mapping[str, str], keep: Sequence[str], noun: str = "object") -> str:
    """'small red circle' with only the attributes in ``keep`` (generic noun if no shape).

    Parameters
    ----------
    obj : mapping
        One object of a scene (``size``, ``colour``, ``shape``).
    keep : sequence of str
        Attributes to name.
    noun : str
        The noun used when ``shape`` is not kept.

    Returns
    -------
    str
    """
    parts = [obj[k] for k in ("size", "colour") if k in keep]
    parts.append(obj["shape"] if "shape" in keep else noun)
    return " ".join(parts)


def full_caption(scene: Mapping, frame: int = 0, pos_phrase: int = 0, bg_phrase: int = 0) -> str:
    """A caption naming every attribute of every object, with the chosen templates.

    Parameters
    ----------
    scene : mapping
        A scene from ``sample_scenes``.
    frame, pos_phrase, bg_phrase : int
        Indices into ``FRAMES``, ``POSITION_PHRASES`` and ``BACKGROUND_PHRASES``.

    Returns
    -------
    str
        E.g. "a small red circle in the top left on a striped background".
    """
    bg = BACKGROUND_PHRASES[bg_phrase].format(b=BACKGROUND_WORDS[scene["background"]])
    objs = scene.get("objects", [scene])
    keep = ("size", "colour", "shape")
    first = noun_phrase(objs[0], keep)
    pos = POSITION_PHRASES[pos_phrase].format(p=objs[0]["position"])
    text = FRAMES[frame].format(obj=first, pos=pos, bg=bg)
    for o in objs[1:]:
        text += (
            " and a " + noun_phrase(o, keep) + POSITION_PHRASES[pos_phrase].format(p=o["position"])
        )
    return _article(text)


def random_caption(
    scene: Mapping,
    rng: np.random.Generator,
    p_full: float = 0.4,
    keep_probs: Mapping[str, float] | None = None,
) -> str:
    """A caption with random wording and, with probability ``1 - p_full``, a random
    subset of the attributes (at least one).

    Parameters
    ----------
    scene : mapping
        A scene from ``sample_scenes``.
    rng : numpy.random.Generator
        The source of randomness (advanced by the call).
    p_full : float
        Probability of naming every attribute (always for two-object scenes).
    keep_probs : mapping of str to float, optional
        Attribute ``a`` is kept with probability ``keep_probs[a]`` (0.45 by default).

    Returns
    -------
    str
    """
    objs = scene.get("objects", [scene])
    frame = FRAMES[int(rng.integers(len(FRAMES)))]
    if rng.uniform() < p_full or len(objs) > 1:
        keep = list(ATTRIBUTES)
    else:
        probs = keep_probs or {}
        keep = [a for a in ATTRIBUTES if rng.uniform() < probs.get(a, 0.45)]
        if not keep:
            keep = [list(ATTRIBUTES)[int(rng.integers(len(ATTRIBUTES)))]]
    noun = GENERIC_NOUNS[int(rng.integers(len(GENERIC_NOUNS)))]
    pos_t = POSITION_PHRASES[int(rng.integers(len(POSITION_PHRASES)))]
    bg_t = BACKGROUND_PHRASES[int(rng.integers(len(BACKGROUND_PHRASES)))]
    pos = pos_t.format(p=objs[0]["position"]) if "position" in keep else ""
    bg = bg_t.format(b=BACKGROUND_WORDS[scene["background"]]) if "background" in keep else ""
    text = frame.format(obj=noun_phrase(objs[0], keep, noun), pos=pos, bg=bg)
    for o in objs[1:]:
        text += " and a " + noun_phrase(o, keep, noun) + pos_t.format(p=o["position"])
    return _article(text)


def random_captions(
    scenes: Sequence[Mapping],
    seed: int,
    p_full: float = 0.4,
    keep_probs: Mapping[str, float] | None = None,
) -> list[str]:
    """One random caption per scene, deterministic from ``seed``.

    Parameters
    ----------
    scenes : sequence of mapping
        Scenes from ``sample_scenes``.
    seed : int
        Seed of the wording.
    p_full, keep_probs
        As for ``random_caption``.

    Returns
    -------
    list of str
    """
    rng = np.random.default_rng(seed)
    return [random_caption(s, rng, p_full, keep_probs) for s in scenes]


def zero_shot_prompts(attribute: str) -> dict[str, list[str]]:
    """Zero-shot prompts per value of an attribute.

    Parameters
    ----------
    attribute : str
        ``colour``, ``shape``, ``size``, ``position`` or ``background``.

    Returns
    -------
    dict of str to list of str
        E.g. ``{"red": ["a red object", ...], ...}``.

    Raises
    ------
    ValueError
        An unknown attribute.
    """
    if attribute not in ZERO_SHOT_TEMPLATES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {list(ATTRIBUTES)}")
    words = BACKGROUND_WORDS if attribute == "background" else {v: v for v in ATTRIBUTES[attribute]}
    return {
        value: [_article(t.format(words[value])) for t in ZERO_SHOT_TEMPLATES[attribute]]
        for value in ATTRIBUTES[attribute]
    }


def world_words() -> set[str]:
    """Every word that the world's captions and prompts can use.

    Returns
    -------
    set of str
        Used by ``WorldTokenizer(strict_vocab=True)`` to refuse other words.
    """
    words: set[str] = {"a", "an", "and"}
    templates = [*FRAMES, *POSITION_PHRASES, *BACKGROUND_PHRASES]
    for ts in ZERO_SHOT_TEMPLATES.values():
        templates.extend(ts)
    for t in templates:
        for w in t.replace(",", " ").split():
            if "{" not in w:
                words.add(w)
    words.update(GENERIC_NOUNS)
    for values in ATTRIBUTES.values():
        for v in values:
            words.update(v.split())
    words.update(BACKGROUND_WORDS.values())
    return words
