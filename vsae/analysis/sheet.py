"""A contact sheet: a PNG grid of search results with their ranks and scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vsae.analysis.search import Hit


def load_hit_image(key: str, root: str | Path | None = None):
    """The image of a result: a tiny-world key is re-rendered, a path is read.

    Parameters
    ----------
    key : str
        ``world-SEED-INDEX`` or a path (relative to ``root``).
    root : str or Path, optional
        Folder that relative keys are under.

    Returns
    -------
    PIL.Image.Image or None
        None when the image cannot be found or read.
    """
    from vsae.analysis.inputs import world_images_of_keys
    from vsae.data.images import ImageReadError, decode_image

    if key.startswith("world-") and key.count("-") == 2:
        return world_images_of_keys([key])[0]
    path = Path(root) / key if root is not None and not Path(key).is_absolute() else Path(key)
    if not path.is_file():
        return None
    try:
        return decode_image(path, str(path))
    except ImageReadError:
        return None


def contact_sheet(
    hits: Sequence[Hit],
    out: str | Path,
    root: str | Path | None = None,
    cols: int = 5,
    cell: int = 128,
    title: str = "",
) -> Path:
    """Write a PNG grid of the results' images with rank and score under each.

    Parameters
    ----------
    hits : sequence of Hit
    out : str or Path
        The PNG file.
    root : str or Path, optional
        Folder of relative image keys.
    cols : int
    cell : int
        Thumbnail size in pixels.
    title : str
        A line on top.

    Returns
    -------
    Path
    """
    from PIL import Image, ImageDraw

    rows = max(1, -(-len(hits) // cols))
    top = 18 if title else 0
    sheet = Image.new("RGB", (cols * cell, top + rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 2), title[:120], fill="black")
    for n, h in enumerate(hits):
        x, y = (n % cols) * cell, top + (n // cols) * (cell + 16)
        img = load_hit_image(h.key, root)
        if img is not None:
            sheet.paste(img.resize((cell, cell)), (x, y))
        else:
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline="red")
        draw.text((x + 2, y + cell + 1), f"#{h.rank} {h.score:.3f}", fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
