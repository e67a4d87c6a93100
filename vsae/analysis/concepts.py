"""Named latents: one ``Concept`` record per latent, ``concepts.json`` / ``concepts.csv`` I/O,
and resolving a concept by its name or ``#id``.

The files sit next to the SAE (``cfg.json``, ``sae.safetensors``); ``vsae.load`` ignores them.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONCEPTS_JSON = "concepts.json"
CONCEPTS_CSV = "concepts.csv"
FORMAT_VERSION = 1


class ConceptError(ValueError):
    """A concepts file is missing or malformed, or a concept name is unknown."""


@dataclass(frozen=True)
class Concept:
    """The name of one SAE latent and how sure it is.

    Attributes
    ----------
    id : int
        Latent index.
    name : str
        Best vocabulary word ("" when the latent never fired and was not named).
    score : float
        Cosine of the best word (text side: decoder direction vs word embedding;
        image side: mean top-image embedding vs word embedding).
    margin : float
        ``score`` minus the runner-up word's cosine.
    top_words : tuple[str, ...]
        The best words, best first (5 by default).
    freq : float
        Fraction of images (or tokens) on which the latent fires.
    mean_act : float
        Mean activation over the images where it fires (0 when it never fires).
    top_ids : tuple[int, ...]
        Ids of its top-activating images, highest first (empty when not computed).
    valid : bool
        Whether score, margin and freq pass the table's thresholds.
    label : str
        Majority label of the top images ("" without labels).
    purity : float
        Fraction of top images that carry ``label`` (nan without labels).
    agreement : float
        Label-free check of the name: the fraction of the top images on which the named
        word's detector (centred image-word cosine) exceeds its median over all images
        (nan when not computed).
    """

    id: int
    name: str
    score: float
    margin: float
    top_words: tuple[str, ...]
    freq: float
    mean_act: float
    top_ids: tuple[int, ...] = ()
    valid: bool = False
    label: str = ""
    purity: float = float("nan")
    agreement: float = float("nan")


@dataclass(frozen=True)
class Thresholds:
    """When a named latent counts as a valid concept: every bound must hold.

    ``min_agreement`` applies only when an agreement was computed (not nan). A latent that
    never fired (``freq == 0``) is never valid.

    Parameters
    ----------
    min_score, min_margin : float
        Lower bounds on the best word's cosine and its margin over the runner-up.
    min_freq, max_freq : float
        Bounds on the firing frequency.
    min_agreement : float
        Lower bound on :attr:`Concept.agreement`.
    """

    min_score: float = 0.0
    min_margin: float = 0.0
    min_freq: float = 0.0
    max_freq: float = 1.0
    min_agreement: float = 0.0

    def passes(
        self, score: float, margin: float, freq: float, agreement: float = float("nan")
    ) -> bool:
        """Whether a latent with these numbers is a valid concept.

        Parameters
        ----------
        score, margin, freq, agreement : float
            The latent's numbers (see :class:`Concept`).

        Returns
        -------
        bool
        """
        agree_ok = agreement != agreement or agreement >= self.min_agreement  # nan: not used
        return (
            freq > 0
            and score >= self.min_score
            and margin >= self.min_margin
            and self.min_freq <= freq <= self.max_freq
            and agree_ok
        )


@dataclass(frozen=True)
class ConceptTable:
    """All latents' names, with the thresholds and vocabulary that produced them.

    Attributes
    ----------
    concepts : tuple[Concept, ...]
        One record per latent, in latent order (``concepts[i].id == i``).
    thresholds : Thresholds
        The validity thresholds used.
    vocab : dict
        What the vocabulary was: at least ``name`` and ``size`` (and ``sha256``).
    method : str
        ``"text"`` or ``"image"`` naming.
    meta : dict
        Anything else worth recording (model spec, pool mode, image source).
    """

    concepts: tuple[Concept, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    vocab: dict = field(default_factory=dict)
    method: str = "text"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, c in enumerate(self.concepts):
            if c.id != i:
                raise ConceptError(
                    f"concept record {i} has id {c.id}; expected ids 0..n-1 in order"
                )

    def __len__(self) -> int:
        return len(self.concepts)

    def __getitem__(self, i: int) -> Concept:
        return self.concepts[i]

    @property
    def valid(self) -> tuple[Concept, ...]:
        """The valid concepts, in latent order."""
        return tuple(c for c in self.concepts if c.valid)

    def by_name(self, name: str) -> list[Concept]:
        """Valid concepts named ``name``, best score first.

        Parameters
        ----------
        name : str
            A vocabulary word.

        Returns
        -------
        list of Concept
            Empty when no valid latent has that name.
        """
        hits = [c for c in self.concepts if c.valid and c.name == name]
        return sorted(hits, key=lambda c: -c.score)

    def to_dict(self) -> dict:
        """JSON-ready form (the ``concepts.json`` content).

        Returns
        -------
        dict
            ``format_version``, ``method``, ``thresholds``, ``vocab``, ``meta``, ``n_latents``,
            ``n_valid`` and ``concepts`` (one record per latent).
        """
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "thresholds": asdict(self.thresholds),
            "vocab": self.vocab,
            "meta": self.meta,
            "n_latents": len(self.concepts),
            "n_valid": len(self.valid),
            "concepts": [_record(c) for c in self.concepts],
        }

    def save(self, sae_dir: str | Path) -> tuple[Path, Path]:
        """Write ``concepts.json`` and ``concepts.csv`` atomically into ``sae_dir``.

        Parameters
        ----------
        sae_dir : str or Path
            The SAE folder (created if needed).

        Returns
        -------
        tuple[Path, Path]
            The JSON and CSV paths.
        """
        out = Path(sae_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out / CONCEPTS_JSON, out / CONCEPTS_CSV
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")
        os.replace(tmp, json_path)
        tmp = csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "id",
                    "name",
                    "valid",
                    "score",
                    "margin",
                    "freq",
                    "mean_act",
                    "label",
                    "purity",
                    "agreement",
                    "top_words",
                    "top_ids",
                ]
            )
            for c in self.concepts:
                w.writerow(
                    [
                        c.id,
                        c.name,
                        int(c.valid),
                        f"{c.score:.4f}",
                        f"{c.margin:.4f}",
                        f"{c.freq:.5f}",
                        f"{c.mean_act:.4f}",
                        c.label,
                        f"{c.purity:.4f}",
                        f"{c.agreement:.4f}",
                        " ".join(w_.replace(" ", "_") for w_ in c.top_words),
                        " ".join(str(i) for i in c.top_ids),
                    ]
                )
        os.replace(tmp, csv_path)
        return json_path, csv_path


def _record(c: Concept) -> dict:
    d = asdict(c)
    d["top_words"] = list(c.top_words)
    d["top_ids"] = list(c.top_ids)
    return d


def _concept(d: dict, where: str) -> Concept:
    try:
        return Concept(
            id=int(d["id"]),
            name=str(d["name"]),
            score=float(d["score"]),
            margin=float(d["margin"]),
            top_words=tuple(str(w) for w in d["top_words"]),
            freq=float(d["freq"]),
            mean_act=float(d["mean_act"]),
            top_ids=tuple(int(i) for i in d.get("top_ids", ())),
            valid=bool(d.get("valid", False)),
            label=str(d.get("label", "")),
            purity=float(d.get("purity", float("nan"))),
            agreement=float(d.get("agreement", float("nan"))),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConceptError(f"{where}: malformed concept record ({err!r}): {d!r}"[:300]) from None


def load_concepts(sae_dir: str | Path) -> ConceptTable:
    """Read ``concepts.json`` from an SAE folder.

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder, or the ``concepts.json`` file itself.

    Returns
    -------
    ConceptTable

    Raises
    ------
    ConceptError
        If the file is missing (run ``vsae concepts name``), not JSON, or malformed.
    """
    path = Path(sae_dir)
    if path.is_dir() or path.suffix != ".json":
        path = path / CONCEPTS_JSON
    if not path.is_file():
        raise ConceptError(
            f"{path}: no such file; name the SAE's latents first with "
            f"`vsae concepts name {path.parent}`"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConceptError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        got = data.get("format_version") if isinstance(data, dict) else type(data).__name__
        raise ConceptError(f"{path}: format_version={got!r}; expected {FORMAT_VERSION}")
    records = data.get("concepts")
    if not isinstance(records, list):
        raise ConceptError(f"{path}: field 'concepts' must be a list of records")
    try:
        thresholds = Thresholds(**data.get("thresholds", {}))
    except TypeError as err:
        raise ConceptError(f"{path}: bad field 'thresholds' ({err})") from None
    return ConceptTable(
        concepts=tuple(_concept(r, str(path)) for r in records),
        thresholds=thresholds,
        vocab=dict(data.get("vocab", {})),
        method=str(data.get("method", "text")),
        meta=dict(data.get("meta", {})),
    )


def resolve(table: ConceptTable, name: str | int) -> int:
    """Turn a concept reference into a latent id.

    Parameters
    ----------
    table : ConceptTable
        The SAE's concepts.
    name : str or int
        ``"#12"`` or ``12`` (a latent id), or a concept name such as ``"red"``. A name
        resolves to its best-scoring valid latent (invalid latents are used only when no
        valid one carries the name).

    Returns
    -------
    int
        The latent id.

    Raises
    ------
    ConceptError
        If the id is out of range, or no latent has that name; the message lists the
        closest names (difflib).
    """
    if isinstance(name, int) or (isinstance(name, str) and name.strip().startswith("#")):
        text = str(name).strip().lstrip("#")
        try:
            idx = int(text)
        except ValueError:
            raise ConceptError(f"concept {name!r}: expected '#ID' with an integer ID") from None
        if not 0 <= idx < len(table):
            raise ConceptError(
                f"concept {name!r}: latent id out of range; expected 0..{len(table) - 1}"
            )
        return idx
    key = name.strip()
    hits = table.by_name(key)
    if hits:
        return hits[0].id
    loose = sorted((c for c in table.concepts if c.name == key), key=lambda c: -c.score)
    if loose:
        return loose[0].id
    names = sorted({c.name for c in table.concepts if c.name and c.valid}) or sorted(
        {c.name for c in table.concepts if c.name}
    )
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.4)
    hint = (
        f"closest names: {', '.join(close)}"
        if close
        else f"known names include: {', '.join(names[:10])}"
    )
    raise ConceptError(f"unknown concept {name!r}; {hint} (or use '#ID' for a latent id)")


def resolve_all(table: ConceptTable, name: str | int) -> tuple[int, ...]:
    """Every latent a concept reference stands for.

    An SAE often has several latents with one name (e.g. "cyan" on small and on large
    objects); searching, suppressing or boosting "cyan" means all of them.

    Parameters
    ----------
    table : ConceptTable
    name : str or int
        ``"#12"`` / ``12`` (that latent only) or a name: its valid latents, best score first
        (its invalid ones only when none is valid).

    Returns
    -------
    tuple of int

    Raises
    ------
    ConceptError
        As :func:`resolve`.
    """
    first = resolve(table, name)
    if isinstance(name, int) or str(name).strip().startswith("#"):
        return (first,)
    key = str(name).strip()
    hits = table.by_name(key) or sorted(
        (c for c in table.concepts if c.name == key), key=lambda c: -c.score
    )
    return tuple(c.id for c in hits)
