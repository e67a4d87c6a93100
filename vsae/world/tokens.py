"""Tokenizing prompts for the tiny world with open_clip's bundled CLIP BPE tokenizer.

open_clip truncates prompts that are too long without a word; the world's
tokenizer refuses them instead. Decision on vocabulary: words outside the
world's captions are *allowed* by default (concept naming uses outside
vocabularies; such words simply carry untrained embeddings) and refused with
``strict=True``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer

from .captions import world_words


class PromptError(ValueError):
    """A prompt (or prompt list) that the tiny world's tokenizer cannot represent."""


class WorldTokenizer:
    """Callable like an open_clip tokenizer: ``tok(texts) -> LongTensor (B, context_length)``.

    open_clip's bundled CLIP BPE (no download), with checks: a prompt that does not fit the
    context raises ``PromptError`` instead of being truncated silently.

    Parameters
    ----------
    context_length : int
        Tokens per prompt, including start and end tokens.
    strict : bool
        Also refuse words that never occur in the world's captions.
    """

    def __init__(self, context_length: int = 32, strict: bool = False):
        self.context_length = context_length
        self.strict = strict
        self.inner = SimpleTokenizer(context_length=context_length)
        self.sot_token_id = self.inner.sot_token_id
        self.eot_token_id = self.inner.eot_token_id
        self._words = world_words()

    def check(self, texts: str | Sequence[str]) -> list[str]:
        """The prompts as a list, checked.

        Parameters
        ----------
        texts : str or sequence of str
            One prompt or several.

        Returns
        -------
        list of str

        Raises
        ------
        PromptError
            An empty list, a non-string, a prompt longer than the context, or (strict) a
            word the world never uses; the message names the prompt.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise PromptError(
                'empty prompt list: give at least one prompt ("" is the empty prompt)'
            )
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise PromptError(f"prompt {i} is {type(t).__name__}, expected str")
            n = len(self.inner.encode(t)) + 2
            if n > self.context_length:
                raise PromptError(
                    f"prompt {i} {t!r} needs {n} tokens with start/end tokens; the tiny world's "
                    f"context length is {self.context_length}: shorten it"
                )
            if self.strict:
                unknown = sorted(set(re.findall(r"[a-z]+", t.lower())) - self._words)
                if unknown:
                    raise PromptError(
                        f"prompt {i} {t!r} uses words the tiny world never saw: {unknown}"
                    )
        return texts

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> torch.Tensor:
        """Token ids of the prompts.

        Parameters
        ----------
        texts : str or sequence of str
            One prompt or several.
        context_length : int, optional
            Overrides the tokenizer's.

        Returns
        -------
        Tensor
            Long [B, context_length].

        Raises
        ------
        PromptError
            As ``check``.
        """
        texts = self.check(texts)
        return self.inner(texts, context_length=context_length or self.context_length)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per prompt including start and end tokens.

        Parameters
        ----------
        texts : sequence of str
            Prompts.

        Returns
        -------
        list of int
        """
        return [len(self.inner.encode(t)) + 2 for t in texts]
