"""Which model an SAE was trained on (its provenance, or flags), and a CLIP to embed with.

An SAE folder's ``cfg.json`` may carry a ``provenance`` object written by ``vsae train``
(source spec, pretrained tag or path, hookpoint, token mode). :func:`sae_model_spec` reads it
and lets the command line override each field; :class:`ClipModel` wraps an open_clip model
(a real architecture or the tiny world's) for text and image embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.concepts import ConceptError

CLIP_FAMILIES = ("open_clip", "world")
DEFAULT_CLIP = "world:clip"


@dataclass(frozen=True)
class ModelSpec:
    """The activations an SAE reads: source spec, weights, hookpoint and token mode.

    Attributes
    ----------
    source : str
        ``open_clip:ViT-B-32``, ``world:clip``, ``timm:...``, ``diffusers:...``.
    pretrained : str or None
        Weights tag or path (None: the family default; random weights for open_clip).
    hookpoint : str
        ``image``, ``text``, ``blocks.<i>`` or a U-Net block name.
    tokens : str
        Token mode of block hookpoints (``cls``, ``patches``, ``all``).
    """

    source: str
    pretrained: str | None = None
    hookpoint: str = "image"
    tokens: str = "cls"

    @property
    def is_clip_embedding(self) -> bool:
        """True for a CLIP/SigLIP image embedding: text-side naming applies."""
        family = self.source.split(":", 1)[0]
        return family in CLIP_FAMILIES and self.hookpoint == "image"

    def to_dict(self) -> dict:
        """JSON form.

        Returns
        -------
        dict
            As stored in ``index.json`` and the ``concepts.json`` meta.
        """
        return asdict(self)


def read_sae_provenance(sae_dir: str | Path) -> dict:
    """The ``provenance`` object of an SAE folder's ``cfg.json`` ({} when it has none).

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder.

    Returns
    -------
    dict
        As written by ``vsae train`` (``vsae.sae.io.write_provenance``).
    """
    from vsae.sae.io import read_provenance

    return dict(read_provenance(sae_dir))


def sae_model_spec(
    sae_dir: str | Path,
    model: str | None = None,
    pretrained: str | None = None,
    hookpoint: str | None = None,
    tokens: str | None = None,
) -> ModelSpec:
    """The model an SAE was trained on: its provenance, with each given flag overriding it.

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder.
    model, pretrained, hookpoint, tokens : str, optional
        Overrides (``--model``, ``--pretrained``, ``--hookpoint``, ``--tokens``).

    Returns
    -------
    ModelSpec

    Raises
    ------
    ConceptError
        If neither the provenance nor ``model`` names a source.
    """
    prov = read_sae_provenance(sae_dir)
    source = model or prov.get("source") or prov.get("spec")
    if not source:
        raise ConceptError(
            f"{Path(sae_dir) / 'cfg.json'}: no provenance says which model the SAE was trained "
            f"on; pass --model SPEC (e.g. world:clip or open_clip:ViT-B-32) and --hookpoint"
        )
    return ModelSpec(
        source=str(source),
        pretrained=pretrained if pretrained is not None else prov.get("pretrained"),
        hookpoint=hookpoint or prov.get("hookpoint") or "image",
        tokens=tokens or prov.get("token_mode") or prov.get("tokens") or "cls",
    )


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the SAE hash an index records).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ClipModel:
    """An open_clip CLIP (or the tiny world's) for L2-normalised text and image embeddings.

    Parameters
    ----------
    spec : str
        ``world:clip``, ``world:siglip`` or ``open_clip:<arch>``.
    pretrained : str, optional
        Weights tag or path; None gives the world's shipped weights, or random weights for
        an open_clip architecture (then embeddings are never cached: they differ per load).
    device : str
        Torch device.

    Raises
    ------
    ConceptError
        If ``spec`` is not a CLIP family.
    """

    def __init__(self, spec: str = DEFAULT_CLIP, pretrained: str | None = None, device="cpu"):
        from vsae.encoders import from_spec

        family = spec.split(":", 1)[0]
        if family not in CLIP_FAMILIES:
            raise ConceptError(
                f"naming model {spec!r}: expected a CLIP, open_clip:<arch> or world:clip|siglip"
            )
        self.spec = spec
        self.pretrained = pretrained
        self.source = from_spec(spec, pretrained=pretrained, hookpoints=["image"], device=device)
        self.model = self.source.model
        self.dim = int(self.source.d_out["image"])

    @property
    def cache_key(self) -> str | None:
        """What identifies the weights (None for random weights, which must not be cached)."""
        family = self.spec.split(":", 1)[0]
        if family == "open_clip" and self.pretrained in (None, "", "none"):
            return None
        key = f"{self.spec}|{self.pretrained}"
        p = Path(str(self.pretrained)) if self.pretrained else None
        if p is not None and p.is_file():
            st = p.stat()
            key += f"|{st.st_size}|{st.st_mtime_ns}"
        return key

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        tok = self.source.tokenizer
        try:
            return tok(texts)
        except ValueError:
            # The world's tokenizer refuses prompts longer than its context (32 tokens); naming
            # only needs their start, so truncate like open_clip does.
            inner = getattr(tok, "inner", None)
            if inner is None:
                raise
            return inner(texts)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        """L2-normalised text embeddings.

        Parameters
        ----------
        texts : sequence of str
        batch : int
            Texts per forward.

        Returns
        -------
        np.ndarray
            ``[len(texts), dim]`` float32.
        """
        out = []
        for i in range(0, len(texts), batch):
            tokens = self._tokenize(list(texts[i : i + batch])).to(self.source.device)
            e = self.model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.no_grad()
    def encode_images(self, images: Sequence, batch: int = 128) -> np.ndarray:
        """L2-normalised image embeddings of PIL images.

        Parameters
        ----------
        images : sequence of PIL.Image.Image
        batch : int

        Returns
        -------
        np.ndarray
            ``[len(images), dim]`` float32.
        """
        out = []
        for i in range(0, len(images), batch):
            pixels = torch.stack([self.source.transform(im) for im in images[i : i + batch]])
            e = self.model.encode_image(pixels.to(self.source.device)).float()
            out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
