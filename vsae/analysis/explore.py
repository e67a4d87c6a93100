"""Explore an SAE: a latent's name, statistics and top images; an image's top latents.

:class:`Explorer` joins an :class:`~vsae.analysis.image_codes.ImageCoder`, a
:class:`~vsae.analysis.latent_gallery.LatentGallery` and, when the SAE folder has one, its
``concepts.json``. It is what the demo's Explore tab calls; it holds no per-user state, so one
explorer serves every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vsae.analysis.concepts import CONCEPTS_JSON, ConceptError, ConceptTable, load_concepts
from vsae.analysis.concepts import resolve as resolve_concept
from vsae.analysis.heatmap import latent_heatmap, overlay, top_latents
from vsae.analysis.image_codes import ImageCoder
from vsae.analysis.latent_gallery import GalleryStats, LatentGallery


@dataclass(frozen=True)
class LatentCard:
    """What there is to show about one latent.

    Attributes
    ----------
    latent : int
    name : str
        Its ``concepts.json`` name ("" without one).
    score : float or None
        Its naming score (None without ``concepts.json``).
    valid : bool
        Whether it is a valid named concept.
    stats : GalleryStats
        Frequency and activations over the gallery.
    top : list of (PIL image, activation, key)
        Its top gallery images, highest first.
    """

    latent: int
    name: str
    score: float | None
    valid: bool
    stats: GalleryStats
    top: list[tuple[Image.Image, float, str]]


@dataclass(frozen=True)
class ImageLatent:
    """One of an image's top latents.

    Parameters
    ----------
    latent : int
        Latent id.
    name : str
        Its ``concepts.json`` name ("" without one).
    activation : float
        Its mean code over the image's tokens.
    heatmap : PIL.Image.Image or None
        Its code per patch drawn over the image (None for a one-token SAE).
    """

    latent: int
    name: str
    activation: float
    heatmap: Image.Image | None


class Explorer:
    """Look up latents and images of one SAE.

    Parameters
    ----------
    coder : ImageCoder
        The SAE and its model.
    gallery : LatentGallery
        Reference images encoded with ``coder``.
    concepts : ConceptTable, optional
        Latent names (``load_concepts``); None when the SAE has not been named.

    Raises
    ------
    ValueError
        Gallery or concepts with another number of latents than the SAE.
    """

    def __init__(
        self, coder: ImageCoder, gallery: LatentGallery, concepts: ConceptTable | None = None
    ) -> None:
        n = coder.n_latents
        if gallery.n_latents != n:
            raise ValueError(f"gallery has {gallery.n_latents} latents; the SAE has {n}")
        if concepts is not None and len(concepts) != n:
            raise ValueError(f"concepts.json has {len(concepts)} records; the SAE has {n} latents")
        self.coder, self.gallery, self.concepts = coder, gallery, concepts

    @staticmethod
    def concepts_of(sae_dir: str | Path) -> ConceptTable | None:
        """The folder's ``concepts.json`` if it has one.

        Parameters
        ----------
        sae_dir
            An SAE folder.

        Returns
        -------
        ConceptTable or None
            None when the folder has no ``concepts.json``.

        Raises
        ------
        ConceptError
            A ``concepts.json`` that is not valid.
        """
        if not (Path(sae_dir) / CONCEPTS_JSON).is_file():
            return None
        return load_concepts(sae_dir)

    @property
    def n_latents(self) -> int:
        """Number of SAE latents."""
        return self.coder.n_latents

    def names(self) -> list[str]:
        """Choices for autocomplete.

        Returns
        -------
        list of str
            ``"name (#id)"`` for each valid named latent, by id; empty without names.
        """
        if self.concepts is None:
            return []
        return [f"{c.name} (#{c.id})" for c in self.concepts.concepts if c.valid and c.name]

    def resolve(self, ref: str | int) -> int:
        """A latent id from what the user typed or picked.

        Parameters
        ----------
        ref
            ``12``, ``"12"``, ``"#12"``, a concept name or an autocomplete ``"name (#12)"``.

        Returns
        -------
        int
            The latent id.

        Raises
        ------
        ConceptError
            Empty, an id out of range, an unknown name (with the closest names), or a name
            when the SAE has no ``concepts.json``.
        """
        text = str(ref).strip()
        if not text:
            raise ConceptError("Type a latent id (e.g. 12 or #12) or a concept name.")
        if text.endswith(")") and "(#" in text:  # an autocomplete choice "name (#id)"
            text = text[text.rindex("(#") + 1 : -1]
        if text.lstrip("#").lstrip("-").isdigit():
            idx = int(text.lstrip("#"))
            last = self.n_latents - 1
            if not 0 <= idx <= last:
                raise ConceptError(
                    f"Latent id {idx} is out of range: this SAE has latents 0..{last}."
                )
            return idx
        if self.concepts is None:
            raise ConceptError(
                f"Unknown concept {text!r}: this SAE's latents are not named (no concepts.json); "
                "pick a latent by id."
            )
        return resolve_concept(self.concepts, text)

    def _name(self, latent: int) -> tuple[str, float | None, bool]:
        if self.concepts is None:
            return "", None, False
        c = self.concepts[latent]
        return c.name, c.score, c.valid

    def latent(self, ref: str | int, k: int = 16) -> LatentCard:
        """Name, statistics and top ``k`` gallery images of a latent.

        Parameters
        ----------
        ref
            See :meth:`resolve`.
        k
            Number of top images.

        Returns
        -------
        LatentCard
        """
        f = self.resolve(ref)
        name, score, valid = self._name(f)
        top = [
            (self.gallery.thumbnail(i), act, self.gallery.keys[i])
            for i, act in self.gallery.top_images(f, k)
        ]
        return LatentCard(f, name, score, valid, self.gallery.stats(f), top)

    def image(self, image: Image.Image, k: int = 6) -> list[ImageLatent]:
        """An image's top ``k`` latents by mean code, with a heatmap each on a patch SAE.

        Parameters
        ----------
        image
            RGB image.
        k
            Number of latents.

        Returns
        -------
        list of ImageLatent
            Highest first; ``heatmap`` is None for an SAE with one token per image.
        """
        codes_TN = self.coder.codes([image])[0]
        grid = self.coder.grid(codes_TN.shape[0])
        shown = image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
        out = []
        for f, act in top_latents(codes_TN, k):
            heat = None
            if grid is not None:
                heat = overlay(shown, latent_heatmap(codes_TN, f, grid))
            out.append(ImageLatent(f, self._name(f)[0], act, heat))
        return out
