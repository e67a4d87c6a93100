"""``search``: one call from a query (text, image, concept name or latent id) with edits and
filters to ranked results, as used by ``vsae search`` and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.concepts import ConceptError
from vsae.analysis.index_build import ConceptIndexError
from vsae.analysis.models import ClipModel, ModelSpec
from vsae.analysis.query_edit import edit_query
from vsae.analysis.search import (
    ConceptIndex,
    Hit,
    latents_of,
    load_table,
    mean_acts,
    parse_edits,
)


@dataclass(frozen=True)
class Query:
    """What to search for: exactly one of ``text``, ``image``, ``concept``, ``latent``.

    Parameters
    ----------
    text : str, optional
    image : str, optional
        A path, or ``#ID`` of an image in the index.
    concept : str, optional
        A concept name or ``#ID``.
    latent : int, optional
    boost : tuple of str
        ``NAME=FACTOR`` entries.
    suppress, where, where_not : tuple of str
        Concept names or ``#ID``.
    k : int
        Results.
    """

    text: str | None = None
    image: str | None = None
    concept: str | None = None
    latent: int | None = None
    boost: tuple[str, ...] = ()
    suppress: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    where_not: tuple[str, ...] = ()
    k: int = 10

    def __post_init__(self) -> None:
        given = [n for n in ("text", "image", "concept", "latent") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a query needs exactly one of text, image, concept, latent; got {given or 'none'}"
            )
        if self.k < 1:
            raise ValueError(f"k={self.k}; expected >= 1")
        if (self.boost or self.suppress) and self.text is None and self.image is None:
            raise ValueError("--boost/--suppress edit a --text or --image query")


@dataclass
class Searcher:
    """An index with its SAE, concepts and model, ready for queries.

    Parameters
    ----------
    index_dir : str or Path
    sae_dir : str or Path, optional
        Default: the SAE recorded in ``index.json``; refused when its hash differs.
    model : ModelSpec, optional
        The query model; refused when it differs from the index's.
    """

    index_dir: str | Path
    sae_dir: str | Path | None = None
    model: ModelSpec | None = None
    _clip: ClipModel | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import vsae

        self.index = ConceptIndex(self.index_dir)
        self.sae_dir = Path(self.sae_dir or self.index.meta["sae"]["path"])
        if not (self.sae_dir / "sae.safetensors").is_file():
            raise ConceptIndexError(
                f"index {self.index_dir}: its SAE {self.sae_dir} is gone; pass --sae DIR"
            )
        self.index.check_sae(self.sae_dir)
        if self.model is not None:
            self.index.check_model(self.model)
        self.sae = vsae.load(self.sae_dir)
        self.table = load_table(self.sae_dir)
        self.mean_act_N = mean_acts(self.sae_dir, self.table, self.sae.n_latents)

    @property
    def clip(self) -> ClipModel:
        """The index's model as a CLIP (text queries, image files)."""
        if self._clip is None:
            spec = self.index.model
            self._clip = ClipModel(spec.source, spec.pretrained)
        return self._clip

    def query_vector(self, q: Query) -> np.ndarray:
        """The raw SAE-input vector of a text or image query.

        Parameters
        ----------
        q : Query

        Returns
        -------
        np.ndarray
            ``[d_in]``.
        """
        spec = self.index.model
        if q.text is not None:
            if not spec.is_clip_embedding:
                raise ConceptError(
                    f"text queries need an index of CLIP image embeddings; this one holds "
                    f"{spec.source} at {spec.hookpoint!r}"
                )
            # The SAE saw image embeddings: give the unit text embedding their typical norm.
            return self.clip.encode_text([q.text])[0] * float(np.mean(self.index.norms))
        ref = q.image.strip()
        if ref.startswith("#") or (ref.isdigit() and not Path(ref).is_file()):
            return self.index.raw_embedding(int(ref.lstrip("#")))
        return self._embed_file(Path(ref))

    def _embed_file(self, path: Path) -> np.ndarray:
        from vsae.analysis.index_build import embeddings_of
        from vsae.analysis.inputs import iter_image_chunks
        from vsae.data.images import decode_image

        img = decode_image(path, str(path))
        chunk = next(iter(iter_image_chunks([img], self.index.model)))
        return embeddings_of(chunk.acts)[0]

    def run(self, q: Query) -> list[Hit]:
        """Ranked hits of a query.

        Parameters
        ----------
        q : Query

        Returns
        -------
        list of Hit
            Best first.
        """
        where = tuple(latents_of(self.table, n) for n in q.where)
        where_not = tuple(c for n in q.where_not for c in latents_of(self.table, n))
        allowed = self.index.allowed(where, where_not)
        if q.concept is not None:
            return self.index.search_latent(latents_of(self.table, q.concept), q.k, allowed)
        if q.latent is not None:
            return self.index.search_latent(int(q.latent), q.k, allowed)
        edits = parse_edits(self.table, list(q.boost), list(q.suppress))
        x_D = self.query_vector(q)
        with torch.no_grad():
            x_edit = edit_query(self.sae, x_D, edits, self.mean_act_N)
        return self.index.search_vector(x_edit, q.k, allowed)


def search(index_dir: str | Path, query: Query, sae_dir: str | Path | None = None) -> list[Hit]:
    """Run one query against an index folder.

    Parameters
    ----------
    index_dir : str or Path
        Built by :func:`vsae.analysis.build_index` / ``vsae index build``.
    query : Query
    sae_dir : str or Path, optional
        The SAE (default: the one recorded in the index; another one is refused).

    Returns
    -------
    list of Hit
        Best first.
    """
    return Searcher(index_dir, sae_dir).run(query)
