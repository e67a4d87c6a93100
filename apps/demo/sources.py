"""What the demo was started with: the only folders and models it ever reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoSources:
    """The folders and model specs fixed at start; callbacks never take a path from the UI.

    Parameters
    ----------
    clip_sae
        An SAE folder trained on image embeddings (``cfg.json``, ``sae.safetensors``,
        ``concepts.json`` when named), or ``None``.
    index
        An index folder built with ``vsae index build`` for that SAE, or ``None``.
    diffusion_sae
        ``DIR@BLOCK``: an SAE on a U-Net block and the block it hooks, or ``None``.
    pipeline
        ``world`` (the shipped tiny diffusion model) or a diffusers repo id / folder.
    model, pretrained
        The image-text model spec (``world:clip``, ``open_clip:ViT-L-14``) and its weights tag;
        ``None``: the one recorded in the image SAE's ``cfg.json`` provenance.
    recipes
        Unlearning recipe folders for the diffusion SAE (toggles on the Generate tab).
    bias_set
        A bias set folder (:mod:`vsae.analysis.bias_set`: embeddings of the image SAE's input
        with attributes, a training and a test split) for the Bias tab, or ``None``.
    images
        The Explore tab's gallery: ``world:N:SEED`` renders, or a folder of images (or
        WebDataset shards); its first ``n_images`` are encoded at start.
    n_images
        Gallery size.
    """

    clip_sae: Path | None = None
    index: Path | None = None
    diffusion_sae: str | None = None
    pipeline: str = "world"
    model: str | None = "world:clip"
    pretrained: str | None = None
    recipes: tuple[str, ...] = ()
    bias_set: Path | None = None
    images: str | None = "world:1000:77"
    n_images: int = 1000

    def __post_init__(self) -> None:
        for name in ("clip_sae", "index", "bias_set"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).is_dir():
                raise ValueError(f"{name}: {folder} is not a folder")
        if self.images is not None and not self.images.startswith("world"):
            if not Path(self.images).exists():
                raise ValueError(f"images: {self.images} is not a folder or shard file")
        if self.n_images < 1:
            raise ValueError(f"n_images: expected >= 1, got {self.n_images}")
        if self.diffusion_sae is not None and "@" not in self.diffusion_sae:
            raise ValueError(
                f"diffusion_sae: expected DIR@BLOCK (e.g. runs/sae@mid_block.attentions.0), "
                f"got {self.diffusion_sae!r}"
            )

    def describe(self) -> list[tuple[str, str]]:
        """Rows ``(what, value)`` for the Instructions tab: what this demo reads.

        Returns
        -------
        list of (str, str)
            One row per source, ``"-"`` where none was given.
        """
        pre = f" ({self.pretrained})" if self.pretrained else ""
        rows = [
            ("image-text model", (self.model or "from the SAE's cfg.json") + pre),
            ("image SAE", str(self.clip_sae) if self.clip_sae else "-"),
            ("Explore gallery", f"{self.images} (first {self.n_images})" if self.images else "-"),
            ("index", str(self.index) if self.index else "-"),
            ("bias set", str(self.bias_set) if self.bias_set else "-"),
            ("diffusion pipeline", self.pipeline),
            ("diffusion SAE", self.diffusion_sae or "-"),
            ("unlearning recipes", ", ".join(self.recipes) or "-"),
        ]
        return rows
