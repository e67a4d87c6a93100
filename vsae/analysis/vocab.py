"""Naming vocabularies from packaged sources: the tiny world's attribute words, open_clip's
ImageNet class names with its prompt templates, ``wordfreq``'s top English words, or a file.

A :class:`Vocabulary` holds the words (the names a latent can get) and, per word, the prompts
whose text embeddings are averaged into that word's embedding (prompt ensembling, as in CLIP's
zero-shot classifier).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vsae.analysis.concepts import ConceptError

VOCAB_NAMES = ("world", "imagenet", "english")
# Templates for plain English words (few, so that 20k words stay cheap to embed).
ENGLISH_TEMPLATES = ("a photo of a {}.", "a {}.", "{}")
FILE_TEMPLATES = ENGLISH_TEMPLATES


@dataclass(frozen=True)
class Vocabulary:
    """Words to name latents with, and the prompts averaged per word.

    Attributes
    ----------
    name : str
        ``world``, ``imagenet``, ``english`` or ``file:<path>``.
    words : tuple[str, ...]
        The names, unique, in a fixed order.
    prompts : tuple[tuple[str, ...], ...]
        ``prompts[i]`` are the texts embedded and averaged for ``words[i]``.
    """

    name: str
    words: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not self.words:
            raise ConceptError(f"vocabulary {self.name!r} is empty; expected at least 2 words")
        if len(self.prompts) != len(self.words):
            raise ConceptError(
                f"vocabulary {self.name!r}: {len(self.words)} words but "
                f"{len(self.prompts)} prompt lists"
            )
        if len(set(self.words)) != len(self.words):
            raise ConceptError(f"vocabulary {self.name!r} has repeated words")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def sha256(self) -> str:
        """Hash of the words and prompts (part of the embedding cache key)."""
        blob = json.dumps([self.words, self.prompts]).encode()
        return hashlib.sha256(blob).hexdigest()

    def describe(self) -> dict:
        """What ``concepts.json`` records about the vocabulary.

        Returns
        -------
        dict
            ``name``, ``size``, ``n_prompts``, ``sha256``.
        """
        n_prompts = sum(len(p) for p in self.prompts)
        return {"name": self.name, "size": len(self), "n_prompts": n_prompts, "sha256": self.sha256}


def world_vocab() -> Vocabulary:
    """The tiny world's attribute values, each with the world's own zero-shot prompts.

    Returns
    -------
    Vocabulary
        30 words: 8 colours, 6 shapes, 2 sizes, 4 positions, 4 backgrounds (named by their
        label, e.g. ``stripes``, prompted by their caption word, ``striped``).
    """
    from vsae.world import ATTRIBUTES
    from vsae.world.captions import zero_shot_prompts

    words, prompts = [], []
    for attribute, values in ATTRIBUTES.items():
        per_value = zero_shot_prompts(attribute)
        for value in values:
            words.append(value)
            prompts.append(tuple(per_value[value]))
    return Vocabulary("world", tuple(words), tuple(prompts))


def _templated(name: str, words: list[str], templates) -> Vocabulary:
    fill = [t if callable(t) else t.format for t in templates]
    return Vocabulary(name, tuple(words), tuple(tuple(f(w) for f in fill) for w in words))


def imagenet_vocab() -> Vocabulary:
    """open_clip's 1000 ImageNet class names with its 80 OpenAI prompt templates.

    Returns
    -------
    Vocabulary
        Duplicate class names (ImageNet has a few) keep their first occurrence.
    """
    from open_clip import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    words = list(dict.fromkeys(IMAGENET_CLASSNAMES))
    return _templated("imagenet", words, OPENAI_IMAGENET_TEMPLATES)


def english_vocab(n: int = 20_000) -> Vocabulary:
    """The ``n`` most frequent English words of ``wordfreq``, alphabetic and >= 3 letters.

    No part-of-speech tagger can be had offline here (nltk and spaCy need model downloads), so
    the list is not filtered to nouns and adjectives; only numbers, punctuation and one- and
    two-letter words are dropped.

    Parameters
    ----------
    n : int
        Words to keep.

    Returns
    -------
    Vocabulary
    """
    from wordfreq import top_n_list

    if n < 2:
        raise ConceptError(f"english vocabulary size n={n}; expected >= 2")
    words: list[str] = []
    for w in top_n_list("en", 3 * n):
        if w.isalpha() and len(w) >= 3 and w.isascii():
            words.append(w)
            if len(words) == n:
                break
    return _templated("english", list(dict.fromkeys(words)), ENGLISH_TEMPLATES)


def file_vocab(path: str | Path) -> Vocabulary:
    """A user's vocabulary: one word or phrase per line (blank lines and ``#`` comments skipped).

    Parameters
    ----------
    path : str or Path
        A UTF-8 text file.

    Returns
    -------
    Vocabulary
        Prompted with :data:`FILE_TEMPLATES`; repeated lines are kept once.

    Raises
    ------
    ConceptError
        If the file is missing, not UTF-8 text, or has fewer than 2 words.
    """
    p = Path(path)
    if not p.is_file():
        raise ConceptError(f"vocabulary file {p}: no such file; expected one word per line")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ConceptError(f"vocabulary file {p}: not UTF-8 text ({err})") from None
    words = [w.strip() for w in lines if w.strip() and not w.strip().startswith("#")]
    words = list(dict.fromkeys(words))
    if len(words) < 2:
        raise ConceptError(f"vocabulary file {p}: {len(words)} words; expected at least 2")
    return _templated(f"file:{p.name}", words, FILE_TEMPLATES)


def load_vocab(spec: str) -> Vocabulary:
    """A vocabulary by name (``world``, ``imagenet``, ``english``) or a text file's path.

    Parameters
    ----------
    spec : str
        One of :data:`VOCAB_NAMES`, or the path of a one-word-per-line file.

    Returns
    -------
    Vocabulary

    Raises
    ------
    ConceptError
        If ``spec`` is neither a known name nor an existing file.
    """
    if spec == "world":
        return world_vocab()
    if spec == "imagenet":
        return imagenet_vocab()
    if spec == "english":
        return english_vocab()
    if Path(spec).is_file():
        return file_vocab(spec)
    raise ConceptError(
        f"--vocab {spec!r}: expected one of {', '.join(VOCAB_NAMES)} or a text file's path"
    )
