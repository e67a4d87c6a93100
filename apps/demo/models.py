"""Load, once at start, the library objects the tabs share: read-only, used by every session."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from vsae.analysis import Explorer, ImageCoder, load_or_build_gallery

from .sources import DemoSources


def load_explorer(sources: DemoSources, cache: Path | None) -> Explorer | None:
    """The Explore tab's :class:`~vsae.analysis.Explorer`; None without an image SAE.

    Parameters
    ----------
    sources
        The folders and model specs the demo was started with.
    cache
        Folder for the gallery's codes (reused at the next start while the SAE, model and
        images are the same); None: computed at every start.

    Returns
    -------
    Explorer or None

    Raises
    ------
    ValueError
        An image SAE without a gallery, or an SAE and model that do not fit.
    """
    if sources.clip_sae is None:
        return None
    if sources.images is None:
        raise ValueError("the Explore tab needs a gallery of images (--images DIR)")
    coder = ImageCoder.from_folder(
        sources.clip_sae, spec=sources.model, pretrained=sources.pretrained
    )
    file = None
    if cache is not None:
        key = f"{Path(sources.clip_sae).resolve()}|{sources.images}|{sources.n_images}"
        file = cache / "galleries" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    t0 = time.perf_counter()
    gallery = load_or_build_gallery(coder, sources.images, sources.n_images, file)
    print(
        f"vsae demo: Explore gallery of {len(gallery)} images ready in "
        f"{time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return Explorer(coder, gallery, Explorer.concepts_of(sources.clip_sae))
