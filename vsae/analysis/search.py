"""Querying a concept index: by image, text, concept name or latent id, with concept edits
(boost / suppress) and hard filters (only images where a concept fires / does not fire).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from vsae.analysis.concepts import ConceptTable, load_concepts, resolve_all
from vsae.analysis.index_build import INDEX_FORMAT, ConceptIndexError, sae_hash
from vsae.analysis.models import ModelSpec
from vsae.analysis.query_edit import Edit, edit_query


@dataclass
class Hit:
    """One search result.

    Parameters
    ----------
    rank : int
        1 for the best.
    id : int
        Image id in the index.
    key : str
        Path or key.
    score : float
        Cosine, or the latent's code for concept queries.
    labels : dict
    """

    rank: int
    id: int
    key: str
    score: float
    labels: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form.

        Returns
        -------
        dict
        """
        return {
            "rank": self.rank,
            "id": self.id,
            "key": self.key,
            "score": self.score,
            "labels": self.labels,
        }


class ConceptIndex:
    """An index folder opened for search (see :mod:`vsae.analysis.index_build`).

    Parameters
    ----------
    folder : str or Path
        The index folder.

    Raises
    ------
    ConceptIndexError
        If a file is missing, truncated or corrupt.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / "index.json"
        if not meta_path.is_file():
            raise ConceptIndexError(
                f"{meta_path}: no such file; build the index with `vsae index build`"
            )
        try:
            self.meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ConceptIndexError(f"{meta_path}: not valid JSON ({err})") from None
        if self.meta.get("format_version") != INDEX_FORMAT:
            raise ConceptIndexError(
                f"{meta_path}: format_version={self.meta.get('format_version')!r}; "
                f"expected {INDEX_FORMAT}"
            )
        n = int(self.meta["n_images"])
        self.index = self._read_faiss(self.folder / "embeddings.faiss")
        try:
            self.codes = sp.load_npz(self.folder / "codes.npz").tocsr()
            self.norms = np.load(self.folder / "norms.npy", allow_pickle=False)
            self.keys = json.loads((self.folder / "keys.json").read_text())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise ConceptIndexError(
                f"{self.folder}: corrupt or truncated index file ({err})"
            ) from None
        lab = self.folder / "labels.jsonl"
        self.labels = (
            [json.loads(line) for line in lab.read_text().splitlines()]
            if lab.is_file()
            else [{}] * n
        )
        sizes = {
            "embeddings.faiss": self.index.ntotal,
            "codes.npz": self.codes.shape[0],
            "norms.npy": len(self.norms),
            "keys.json": len(self.keys),
            "labels.jsonl": len(self.labels),
        }
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise ConceptIndexError(
                f"{self.folder}: corrupt or truncated index: index.json says {n} images, but {bad}"
            )
        self._csc: sp.csc_matrix | None = None

    @staticmethod
    def _read_faiss(path: Path) -> faiss.Index:
        if not path.is_file():
            raise ConceptIndexError(f"{path}: no such file (index incomplete?)")
        try:
            return faiss.read_index(str(path))
        except RuntimeError as err:
            msg = str(err).splitlines()[0][:200]
            raise ConceptIndexError(f"{path}: corrupt or truncated faiss index ({msg})") from None

    @property
    def model(self) -> ModelSpec:
        """The model spec the index was built with."""
        return ModelSpec(**self.meta["model"])

    def __len__(self) -> int:
        return int(self.meta["n_images"])

    def check_sae(self, sae_dir: str | Path) -> None:
        """Refuse an SAE other than the one the index was built with.

        Parameters
        ----------
        sae_dir : str or Path

        Raises
        ------
        ConceptIndexError
            Naming both hashes.
        """
        got = sae_hash(sae_dir)
        want = self.meta["sae"]["sha256"]
        if got != want:
            raise ConceptIndexError(
                f"index {self.folder} was built with SAE {self.meta['sae']['path']} "
                f"(sha256 {want[:12]}); {sae_dir} has sha256 {got[:12]}: rebuild the index "
                f"or pass the SAE it was built with"
            )

    def check_model(self, spec: ModelSpec) -> None:
        """Refuse a query model other than the index's (source, weights and hookpoint).

        Parameters
        ----------
        spec : ModelSpec

        Raises
        ------
        ConceptIndexError
        """
        mine = self.model
        if (spec.source, spec.pretrained, spec.hookpoint) != (
            mine.source,
            mine.pretrained,
            mine.hookpoint,
        ):
            raise ConceptIndexError(
                f"index {self.folder} was built with model {mine.to_dict()}; the query uses "
                f"{spec.to_dict()}"
            )

    def raw_embedding(self, i: int) -> np.ndarray:
        """The stored embedding of image ``i`` at its original norm (an SAE input).

        Parameters
        ----------
        i : int

        Returns
        -------
        np.ndarray
            ``[d]`` float32.
        """
        if not 0 <= i < len(self):
            raise ConceptIndexError(f"image id {i}: expected 0..{len(self) - 1}")
        if isinstance(self.index, faiss.IndexIVF):
            self.index.make_direct_map()
        return self.index.reconstruct(int(i)) * float(self.norms[i])

    def fires(self, latent: int) -> np.ndarray:
        """Sorted ids of the images where ``latent`` fires.

        Parameters
        ----------
        latent : int

        Returns
        -------
        np.ndarray
        """
        if self._csc is None:
            self._csc = self.codes.tocsc()
        col = self._csc[:, latent]
        return np.sort(col.indices)

    def allowed(
        self, where: tuple[tuple[int, ...], ...] = (), where_not: tuple[int, ...] = ()
    ) -> np.ndarray | None:
        """Ids passing the filters.

        Parameters
        ----------
        where : tuple of tuple of int
            One group of latents per concept that must fire (any latent of the group).
        where_not : tuple of int
            Latents that must not fire.

        Returns
        -------
        np.ndarray or None
            None when there is no filter.
        """
        if not where and not where_not:
            return None
        ids = np.arange(len(self))
        for group in where:
            fire = np.unique(np.concatenate([self.fires(c) for c in group]))
            ids = np.intersect1d(ids, fire, assume_unique=True)
        for c in where_not:
            ids = np.setdiff1d(ids, self.fires(c), assume_unique=True)
        return ids

    def search_vector(
        self, q_D: np.ndarray, k: int = 10, allowed: np.ndarray | None = None, nprobe: int = 32
    ) -> list[Hit]:
        """Cosine nearest neighbours of a query (normalised here), within ``allowed``.

        Parameters
        ----------
        q_D : np.ndarray
            The query ``[d]`` (any norm).
        k : int
        allowed : np.ndarray, optional
            Ids to search among (a faiss ``IDSelectorBatch``).
        nprobe : int
            IVF cells probed (``ivf`` indexes).

        Returns
        -------
        list of Hit
        """
        q = np.ascontiguousarray(q_D, dtype=np.float32).reshape(1, -1)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return []
            sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
            params = (
                faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
                if isinstance(self.index, faiss.IndexIVF)
                else faiss.SearchParameters(sel=sel)
            )
        elif isinstance(self.index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        scores, ids = self.index.search(q, k, params=params)
        return self._hits(ids[0], scores[0])

    def search_latent(
        self, latents: int | tuple[int, ...], k: int = 10, allowed: np.ndarray | None = None
    ) -> list[Hit]:
        """Images ranked by a latent's activation, or by the sum over several latents.

        Parameters
        ----------
        latents : int or tuple of int
        k : int
        allowed : np.ndarray, optional

        Returns
        -------
        list of Hit
            Highest first; scores are the (summed) codes; only images where one fires.

        Raises
        ------
        ConceptIndexError
            If a latent id is out of range.
        """
        group = (latents,) if isinstance(latents, (int, np.integer)) else tuple(latents)
        n = self.codes.shape[1]
        bad = [c for c in group if not 0 <= c < n]
        if bad or not group:
            raise ConceptIndexError(f"latents {list(group)}: expected ids in 0..{n - 1}")
        if self._csc is None:
            self._csc = self.codes.tocsc()
        col = self._csc[:, list(group)].sum(axis=1).A.ravel()
        ids = np.flatnonzero(col > 0)
        if allowed is not None:
            ids = np.intersect1d(ids, allowed)
        vals = col[ids]
        order = np.argsort(-vals, kind="stable")[:k]
        return self._hits(ids[order], vals[order])

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
        out = []
        for r, (i, s) in enumerate(zip(ids, scores, strict=True)):
            if i < 0:
                continue
            out.append(Hit(r + 1, int(i), self.keys[int(i)], float(s), self.labels[int(i)]))
        return out


def parse_edits(
    table: ConceptTable | None, boost: list[str], suppress: list[str]
) -> tuple[Edit, ...]:
    """``--boost red=2`` / ``--suppress blue`` into edits.

    Parameters
    ----------
    table : ConceptTable or None
        Resolves names (``#ID`` works without it).
    boost : list of str
        ``NAME=FACTOR`` entries.
    suppress : list of str
        Names.

    Returns
    -------
    tuple of Edit

    Raises
    ------
    ValueError
        For a malformed entry or a factor <= 0.
    """
    edits = []
    for b in boost:
        name, _, f = b.rpartition("=")
        if not name:
            raise ValueError(f"--boost {b!r}: expected NAME=FACTOR, e.g. red=2")
        try:
            factor = float(f)
        except ValueError:
            raise ValueError(f"--boost {b!r}: factor {f!r} is not a number") from None
        if factor <= 0:
            raise ValueError(f"--boost {b!r}: expected a factor > 0 (use --suppress to remove)")
        edits.extend(Edit(c, factor) for c in latents_of(table, name))
    edits.extend(Edit(c, 0.0) for s in suppress for c in latents_of(table, s))
    return tuple(edits)


def latents_of(table: ConceptTable | None, name: str) -> tuple[int, ...]:
    """The latents a concept name or ``#id`` stands for (names need ``concepts.json``).

    Parameters
    ----------
    table : ConceptTable or None
    name : str

    Returns
    -------
    tuple of int
        All valid latents of the name (see :func:`vsae.analysis.concepts.resolve_all`).
    """
    if table is None:
        if name.strip().startswith("#") and name.strip()[1:].isdigit():
            return (int(name.strip()[1:]),)
        raise ValueError(f"concept {name!r}: no concepts.json next to the SAE; use '#ID'")
    return resolve_all(table, name)


def load_table(sae_dir: str | Path) -> ConceptTable | None:
    """The SAE's concepts.

    Parameters
    ----------
    sae_dir : str or Path

    Returns
    -------
    ConceptTable or None
        None when it has not been named.
    """
    path = Path(sae_dir) / "concepts.json"
    return load_concepts(path) if path.is_file() else None


def mean_acts(sae_dir: str | Path, table: ConceptTable | None, n_latents: int) -> np.ndarray:
    """Mean activation per latent when firing.

    Parameters
    ----------
    sae_dir : str or Path
        Read from its ``latent_stats.safetensors`` when there.
    table : ConceptTable or None
        Else from the concepts.
    n_latents : int
        Else zeros of this length.

    Returns
    -------
    np.ndarray
    """
    path = Path(sae_dir) / "latent_stats.safetensors"
    if path.is_file():
        from safetensors.numpy import load_file

        return load_file(str(path))["mean_act"]
    if table is not None:
        return np.array([c.mean_act for c in table.concepts], np.float32)
    return np.zeros(n_latents, np.float32)


def edited_search(
    index: ConceptIndex,
    sae,
    x_D: np.ndarray,
    edits: tuple[Edit, ...],
    mean_act_N: np.ndarray,
    k: int = 10,
    allowed: np.ndarray | None = None,
) -> list[Hit]:
    """Concept-edited nearest neighbours: edit the query, then search by cosine.

    Parameters
    ----------
    index : ConceptIndex
    sae : BaseSAE
    x_D : np.ndarray
        The query (raw SAE input).
    edits : tuple of Edit
    mean_act_N : np.ndarray
    k : int
    allowed : np.ndarray, optional
        Hard filter of ids.

    Returns
    -------
    list of Hit
    """
    return index.search_vector(edit_query(sae, x_D, edits, mean_act_N), k, allowed)
