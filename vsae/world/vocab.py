"""The attribute vocabularies of the tiny world (the ground-truth label sets).

Other layers build zero-shot prompts and ground truth from these constants, so
their order is fixed: the index of a value is its class label everywhere
(renderer labels, judge heads, evaluation).
"""

from __future__ import annotations

COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "stripes", "noise")

#: attribute name -> its values, in label order
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": COLOURS,
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
    "background": BACKGROUNDS,
}

#: object colour as (hue in degrees, saturation, value); hue is jittered when rendering
COLOUR_HSV: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 0.92, 0.92),
    "orange": (28.0, 0.95, 0.98),
    "yellow": (55.0, 0.95, 0.98),
    "green": (120.0, 0.85, 0.80),
    "cyan": (182.0, 0.90, 0.92),
    "blue": (228.0, 0.92, 0.95),
    "purple": (275.0, 0.80, 0.85),
    "pink": (330.0, 0.50, 1.00),
}

#: object radius in pixels on a 64x64 canvas (jittered by a few percent)
SIZE_RADIUS: dict[str, float] = {"small": 9.0, "large": 15.0}

#: object centre on a 64x64 canvas, as (x, y) with y pointing down
POSITION_CENTRE: dict[str, tuple[float, float]] = {
    "top left": (16.0, 16.0),
    "top right": (48.0, 16.0),
    "bottom left": (16.0, 48.0),
    "bottom right": (48.0, 48.0),
}

#: how a background kind is written in captions ("on a striped background")
BACKGROUND_WORDS: dict[str, str] = {
    "plain": "plain",
    "gradient": "gradient",
    "stripes": "striped",
    "noise": "noisy",
}


def check_value(attribute: str, value: str) -> int:
    """The label index of ``value`` for ``attribute``.

    Parameters
    ----------
    attribute : str
        A key of ``ATTRIBUTES``.
    value : str
        One of its values.

    Returns
    -------
    int
        The index of ``value`` in ``ATTRIBUTES[attribute]`` (its class label everywhere).

    Raises
    ------
    ValueError
        If the attribute or the value is unknown; the message lists the valid ones.
    """
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {list(ATTRIBUTES)}")
    values = ATTRIBUTES[attribute]
    if value not in values:
        raise ValueError(f"unknown {attribute} {value!r}; expected one of {list(values)}")
    return values.index(value)
