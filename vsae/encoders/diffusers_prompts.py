"""Prompt encoders for diffusers U-Nets: a pipeline's own ``encode_prompt``, or a hash stand-in.

SD 1.x: the text encoder's last hidden state; SDXL: both text encoders' penultimate hidden states
concatenated, plus the pooled text embedding; the negative (unconditional) embeddings are the
pipeline's too (SDXL: zeros when ``force_zeros_for_empty_prompt``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from .base import SourceError

PromptEncoder = Callable[[list[str]], tuple[torch.Tensor, "torch.Tensor | None"]]


class HashPromptEncoder:
    """Deterministic stand-in text encoder: a fixed Gaussian embedding per prompt string.

    For U-Net-only checkpoints (no text encoder on disk) and tests. Equal prompts give equal
    embeddings; the empty prompt is the unconditional one.

    Parameters
    ----------
    seq_len : int
        Tokens L per prompt.
    dim : int
        The U-Net's ``cross_attention_dim`` C.
    pooled_dim : int or None
        Width P of a pooled embedding (SDXL-style ``text_time`` conditioning), or None.
    """

    def __init__(self, seq_len: int, dim: int, pooled_dim: int | None):
        self.seq_len, self.dim, self.pooled_dim = seq_len, dim, pooled_dim

    def _one(self, prompt: str, n: int) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, generator=g)

    def __call__(self, prompts: list[str]):
        emb = torch.stack(
            [self._one(p, self.seq_len * self.dim).view(self.seq_len, self.dim) for p in prompts]
        )
        pooled = None
        if self.pooled_dim:
            pooled = torch.stack([self._one("pooled:" + p, self.pooled_dim) for p in prompts])
        return emb, pooled


class PipelinePromptEncoder:
    """A diffusers pipeline's own prompt encoding (its text encoders and tokenizers).

    Parameters
    ----------
    pipe : DiffusionPipeline
        A pipeline with ``encode_prompt`` (StableDiffusionPipeline, StableDiffusionXLPipeline).
    device : torch.device
        Where the text encoders run.
    """

    def __init__(self, pipe: Any, device: torch.device):
        self.pipe = pipe
        self.device = device

    def encode_with_negative(
        self, prompts: list[str], guidance: bool
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor | None] | None]:
        """Conditional and (under guidance) unconditional embeddings, as the pipeline makes them.

        Parameters
        ----------
        prompts : list of str
            B prompts.
        guidance : bool
            Also return the negative (unconditional) embeddings, for classifier-free guidance.

        Returns
        -------
        (dict, dict or None)
            ``{"emb": [B, L, C], "pooled": [B, P] or None}`` for the prompts, and the same for
            the pipeline's negative prompt (None without guidance).
        """
        res = self.pipe.encode_prompt(
            prompt=list(prompts),
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guidance,
        )
        if len(res) == 4:  # SDXL: (emb, negative emb, pooled, negative pooled)
            emb, neg, pooled, neg_pooled = res
        elif len(res) == 2:  # SD 1.x: (emb, negative emb)
            (emb, neg), pooled, neg_pooled = res, None, None
        else:
            raise SourceError(
                f"{type(self.pipe).__name__}.encode_prompt returned {len(res)} values; "
                "expected 2 (SD 1.x) or 4 (SDXL)"
            )
        assert emb.ndim == 3 and emb.shape[0] == len(prompts), emb.shape
        cond = {"emb": emb, "pooled": pooled}
        uncond = {"emb": neg, "pooled": neg_pooled} if guidance else None
        return cond, uncond

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        cond, _ = self.encode_with_negative(prompts, guidance=False)
        return cond["emb"], cond["pooled"]


def encode_prompts(
    encoder: Any, prompts: list[str], guided: bool, spec: str, cross_dim: int
) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor | None] | None]:
    """Conditional and (when ``guided``) unconditional embeddings from any prompt encoder.

    Parameters
    ----------
    encoder : PipelinePromptEncoder, HashPromptEncoder or callable
        A callable maps prompts to (emb [B, L, C], pooled [B, P] or None); its unconditional
        input is the callable applied to empty prompts.
    prompts : list of str
    guided : bool
        Classifier-free guidance on (also return the unconditional half).
    spec : str
        For error messages.
    cross_dim : int
        The U-Net's ``cross_attention_dim`` (C), for error messages.

    Returns
    -------
    (dict, dict or None)
        ``{"emb": [B, L, C], "pooled": [B, P] or None}`` each.
    """
    pair = getattr(encoder, "encode_with_negative", None)
    if pair is not None:
        cond, uncond = pair(prompts, guided)
    else:
        emb, pooled = encoder(prompts)
        cond = {"emb": emb, "pooled": pooled}
        uncond = None
        if guided:
            ue, up = encoder([""] * len(prompts))
            uncond = {"emb": ue, "pooled": up}
    for half in (cond, uncond):
        if half is None:
            continue
        emb_BLC = half["emb"]
        if emb_BLC.ndim != 3 or emb_BLC.shape[0] != len(prompts):
            raise SourceError(
                f"{spec}: prompt embeddings have shape {tuple(emb_BLC.shape)}; "
                f"expected [{len(prompts)}, L, {cross_dim}]"
            )
    return cond, uncond
