"""Sampling scene descriptions (ground-truth labels plus jitter) from a seed.

A scene is a plain JSON-friendly dict::

    {"colour": "red", "shape": "circle", "size": "small", "position": "top left",
     "background": "plain",                # the first object's attributes, for convenience
     "objects": [{"colour", "shape", "size", "position",
                  "hue", "sat", "val", "cx", "cy", "radius", "angle"}, ...],
     "bg": {"c1": [r, g, b], "c2": [r, g, b], "angle", "period", "seed"}}

Scene ``i`` of ``sample_scenes(n, seed)`` depends only on ``(seed, i)``, so a
longer request extends a shorter one.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import ATTRIBUTES, COLOUR_HSV, POSITION_CENTRE, SIZE_RADIUS, check_value

OBJECT_ATTRIBUTES = ("colour", "shape", "size", "position")


@dataclass(frozen=True)
class Correlation:
    """``P(attribute = value | given_attribute = given_value) = p``.

    Where the condition does not hold, ``attribute`` keeps its uniform sample.
    Where it holds, ``attribute`` is set to ``value`` with probability ``p`` and
    otherwise to one of the other values, uniformly. Correlated data sets test
    whether an SAE splits or merges the two concepts (and the bias analysis).

    Parameters
    ----------
    attribute, value : str
        The attribute that is set, and its value (``vocab.ATTRIBUTES``).
    given_attribute, given_value : str
        The condition; another attribute than ``attribute``.
    p : float
        Probability in [0, 1].

    Raises
    ------
    ValueError
        An unknown attribute or value, the same attribute twice, or p outside [0, 1].
    """

    attribute: str
    value: str
    given_attribute: str
    given_value: str
    p: float

    def __post_init__(self) -> None:
        check_value(self.attribute, self.value)
        check_value(self.given_attribute, self.given_value)
        if self.attribute == self.given_attribute:
            raise ValueError(
                f"a correlation needs two different attributes, got {self.attribute!r}"
            )
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"correlation probability must lie in [0, 1], got {self.p}")

    @classmethod
    def parse(cls, text: str) -> Correlation:
        """Parse ``"colour=red|shape=circle:0.9"`` (P(red | circle) = 0.9).

        Parameters
        ----------
        text : str
            ``attribute=value|given_attribute=given_value:p``.

        Returns
        -------
        Correlation

        Raises
        ------
        ValueError
            When the text does not have that form, or its values are invalid.
        """
        try:
            body, p = text.rsplit(":", 1)
            left, right = body.split("|")
            attribute, value = left.split("=")
            given_attribute, given_value = right.split("=")
            prob = float(p)
        except ValueError as err:
            raise ValueError(
                f"bad correlation {text!r}; expected 'attribute=value|attribute=value:p', "
                "e.g. 'colour=red|shape=circle:0.9'"
            ) from err
        return cls(
            attribute.strip(), value.strip(), given_attribute.strip(), given_value.strip(), prob
        )


def _as_correlations(correlations) -> list[Correlation]:
    if correlations is None:
        return []
    if isinstance(correlations, (Correlation, str)):
        correlations = [correlations]
    out = []
    for c in correlations:
        out.append(Correlation.parse(c) if isinstance(c, str) else c)
        if not isinstance(out[-1], Correlation):
            raise TypeError(f"correlations must be Correlation objects or strings, got {type(c)}")
    return out


def _hsv_to_rgb(h_deg: float, s: float, v: float) -> list[float]:
    return [float(c) for c in colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v)]


def _sample_object(rng: np.random.Generator, attrs: Mapping[str, str]) -> dict:
    hue, sat, val = COLOUR_HSV[attrs["colour"]]
    cx, cy = POSITION_CENTRE[attrs["position"]]
    return {
        **{k: attrs[k] for k in OBJECT_ATTRIBUTES},
        "hue": float((hue + rng.uniform(-8.0, 8.0)) % 360.0),
        "sat": float(np.clip(sat + rng.uniform(-0.05, 0.05), 0.0, 1.0)),
        "val": float(np.clip(val + rng.uniform(-0.05, 0.05), 0.0, 1.0)),
        "cx": float(cx + rng.uniform(-3.0, 3.0)),
        "cy": float(cy + rng.uniform(-3.0, 3.0)),
        "radius": float(SIZE_RADIUS[attrs["size"]] * rng.uniform(0.92, 1.08)),
        "angle": float(rng.uniform(-12.0, 12.0)),
    }


def _sample_background(rng: np.random.Generator) -> dict:
    h1 = rng.uniform(0.0, 360.0)
    s1 = rng.uniform(0.0, 0.18)
    v1 = rng.uniform(0.15, 0.9)
    dv = rng.uniform(0.3, 0.5)
    v2 = v1 - dv if v1 > 0.5 else v1 + dv
    h2 = h1 + rng.uniform(-40.0, 40.0)
    s2 = rng.uniform(0.0, 0.18)
    return {
        "c1": _hsv_to_rgb(h1, s1, v1),
        "c2": _hsv_to_rgb(h2, s2, float(np.clip(v2, 0.03, 0.98))),
        "angle": float(rng.uniform(0.0, np.pi)),
        "period": float(rng.uniform(6.0, 12.0)),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def _uniform_attrs(rng: np.random.Generator) -> dict[str, str]:
    return {name: values[int(rng.integers(len(values)))] for name, values in ATTRIBUTES.items()}


def _apply_correlations(rng, attrs: dict[str, str], correlations: list[Correlation]) -> None:
    for c in correlations:
        if attrs[c.given_attribute] != c.given_value:
            continue
        if rng.uniform() < c.p:
            attrs[c.attribute] = c.value
        else:
            others = [v for v in ATTRIBUTES[c.attribute] if v != c.value]
            attrs[c.attribute] = others[int(rng.integers(len(others)))]


def sample_scene(
    seed: int,
    index: int = 0,
    *,
    two_objects: float = 0.0,
    correlations=None,
    fixed: Mapping[str, str] | None = None,
) -> dict:
    """Sample one scene, deterministically from ``(seed, index)``.

    Parameters
    ----------
    seed, index
        The scene depends on these two integers only.
    two_objects
        Probability that the scene holds a second object (other position, other shape).
    correlations
        ``Correlation`` objects or strings like ``"colour=red|shape=circle:0.9"``.
    fixed
        Attribute values to force, e.g. ``{"colour": "red"}``; applied last.

    Returns
    -------
    dict
        The scene (see the module docstring): the first object's attributes, ``objects``
        and ``bg``.

    Raises
    ------
    ValueError
        An invalid correlation or fixed value.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    attrs = _uniform_attrs(rng)
    corr = _as_correlations(correlations)
    _apply_correlations(rng, attrs, corr)
    for key, value in (fixed or {}).items():
        check_value(key, value)
        attrs[key] = value
    objects = [_sample_object(rng, attrs)]
    if rng.uniform() < two_objects:
        second = _uniform_attrs(rng)
        second["position"] = [p for p in ATTRIBUTES["position"] if p != attrs["position"]][
            int(rng.integers(3))
        ]
        second["shape"] = [s for s in ATTRIBUTES["shape"] if s != attrs["shape"]][
            int(rng.integers(len(ATTRIBUTES["shape"]) - 1))
        ]
        objects.append(_sample_object(rng, second))
    return {**attrs, "objects": objects, "bg": _sample_background(rng)}


def sample_scenes(
    n: int,
    seed: int,
    *,
    start: int = 0,
    two_objects: float = 0.0,
    correlations=None,
    fixed: Mapping[str, str] | None = None,
) -> list[dict]:
    """Sample scenes ``start .. start+n-1`` for ``seed`` (see ``sample_scene``).

    Parameters
    ----------
    n : int
        Number of scenes, >= 0.
    seed : int
        The data set's seed; scene i depends only on (seed, i).
    start : int
        Index of the first scene.
    two_objects, correlations, fixed
        As for ``sample_scene``.

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        A negative n, or an invalid correlation or fixed value.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    corr = _as_correlations(correlations)
    return [
        sample_scene(seed, start + i, two_objects=two_objects, correlations=corr, fixed=fixed)
        for i in range(n)
    ]


def labels_of(scenes: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Integer labels of the first object (and background), one array per attribute.

    Parameters
    ----------
    scenes : sequence of dict
        Scenes from ``sample_scenes``.

    Returns
    -------
    dict of str to ndarray
        Attribute -> int64 [S], the index of the value in ``ATTRIBUTES[attribute]``.
    """
    return {
        name: np.array([values.index(s[name]) for s in scenes], dtype=np.int64)
        for name, values in ATTRIBUTES.items()
    }
