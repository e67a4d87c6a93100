"""SAE codes of images: an SAE and the model hookpoint it was trained on, behind one call.

``ImageCoder.from_folder(DIR)`` reads the SAE's provenance (source spec, pretrained tag,
hookpoint, token mode) from ``cfg.json`` when it is recorded; any of them can be given instead.
An SAE on an embedding hookpoint (``image``) gives one token per image; an SAE on a ViT block
with ``tokens="patches"`` gives one token per patch, laid out on a square ``grid``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from vsae.data.images import InputItem
from vsae.encoders import ActivationSource, from_spec
from vsae.interop import load


class ImageCodesError(ValueError):
    """An SAE and a model that do not fit together, or inputs the coder cannot take."""


class ImageCoder:
    """Encode PIL images with a model, then with the SAE trained on that model's activations.

    Parameters
    ----------
    sae : BaseSAE
        A loaded SAE (``vsae.load``) whose ``d_in`` is the hookpoint's width.
    source : ActivationSource
        An image source that returns ``hookpoint``.
    hookpoint : str
        ``image`` or ``blocks.<i>`` (with the source's token mode).

    Raises
    ------
    ImageCodesError
        The source does not return ``hookpoint``, takes no images, or its width is not the
        SAE's ``d_in``.
    """

    def __init__(self, sae: torch.nn.Module, source: ActivationSource, hookpoint: str) -> None:
        if hookpoint not in source.hookpoints:
            raise ImageCodesError(
                f"{source.spec}: does not return hookpoint {hookpoint!r}; it has "
                f"{source.hookpoints}"
            )
        if source.input_kind != "image":
            raise ImageCodesError(f"{source.spec} {hookpoint}: not an image hookpoint")
        if source.d_out[hookpoint] != sae.d_in:
            raise ImageCodesError(
                f"{source.spec} {hookpoint} has width {source.d_out[hookpoint]}; the SAE "
                f"expects d_in={sae.d_in} (was it trained on another model or hookpoint?)"
            )
        self.sae = sae.eval()
        self.source = source
        self.hookpoint = hookpoint
        self.n_latents = int(sae.n_latents)
        # Sources capture block outputs with forward hooks registered per call: two threads on
        # one source would each see the other's activations. One call at a time per coder.
        self._lock = threading.Lock()

    @classmethod
    def from_folder(
        cls,
        sae_dir: str | Path,
        spec: str | None = None,
        pretrained: str | None = None,
        hookpoint: str | None = None,
        tokens: str | None = None,
        device: str = "cpu",
    ) -> ImageCoder:
        """Load an SAE folder and the model it was trained on.

        Parameters
        ----------
        sae_dir
            SAE folder (``cfg.json``, ``sae.safetensors``).
        spec, pretrained, hookpoint, tokens
            Override the folder's provenance (``source``, ``pretrained``, ``hookpoint``,
            ``token_mode``). Defaults when neither gives one: hookpoint ``image``, tokens
            ``patches`` on a block.
        device
            Torch device of model and SAE.

        Returns
        -------
        ImageCoder

        Raises
        ------
        ImageCodesError
            No model spec given or recorded, or a model/SAE mismatch.
        """
        sae = load(sae_dir, device=device)  # a vsae folder or any format vsae.load reads
        prov = dict(getattr(sae, "provenance", None) or {})
        spec = spec or prov.get("source")
        if not spec:
            raise ImageCodesError(
                f"{sae_dir}: its cfg.json records no source model; pass the model spec "
                "(e.g. open_clip:ViT-L-14 or world:clip)"
            )
        hookpoint = hookpoint or prov.get("hookpoint") or "image"
        tokens = tokens or prov.get("token_mode") or ("patches" if hookpoint != "image" else "cls")
        if pretrained is None and prov.get("source") == spec:
            pretrained = prov.get("pretrained")
        source = from_spec(
            spec, pretrained=pretrained, hookpoints=[hookpoint], tokens=tokens, device=device
        )
        return cls(sae, source, hookpoint)

    @torch.no_grad()
    def codes(self, images: Sequence) -> torch.Tensor:
        """SAE codes of each token of each image.

        Parameters
        ----------
        images
            RGB PIL images (any size: the model's own transform resizes them).

        Returns
        -------
        Tensor [B, T, N]
            Codes per image ``B``, token ``T`` (1 for an embedding, the patches for a block),
            latent ``N``.
        """
        if len(images) == 0:
            raise ImageCodesError("no images to encode")
        items = [InputItem(i, f"image-{i}", im) for i, im in enumerate(images)]
        with self._lock:
            acts_BTD = self.source(self.source.prepare(items))[self.hookpoint]
        B, T, D = acts_BTD.shape
        codes_MN = self.sae.encode(acts_BTD.reshape(B * T, D).to(self.sae.W_dec_ND.device))
        return codes_MN.reshape(B, T, -1).float().cpu()

    def grid(self, n_tokens: int) -> tuple[int, int] | None:
        """The patch grid of an image's tokens.

        Parameters
        ----------
        n_tokens
            Tokens per image ``T`` (from :meth:`codes`).

        Returns
        -------
        tuple of (int, int) or None
            ``(rows, cols)``; None for one token (an embedding SAE).

        Raises
        ------
        ImageCodesError
            Several tokens that do not form a square grid (e.g. a CLS token kept with them).
        """
        if n_tokens == 1:
            return None
        side = math.isqrt(n_tokens)
        if side * side != n_tokens:
            raise ImageCodesError(
                f"{n_tokens} tokens do not form a square patch grid; use tokens='patches'"
            )
        return side, side
