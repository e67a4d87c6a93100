"""open_clip models (CLIP and SigLIP architectures) as activation sources.

Hookpoints:

- ``image``: image embedding after the projection (``encode_image``, not L2-normalised), [N, 1, D].
- ``text``: text embedding of the item's caption (``encode_text``, not normalised), [N, 1, D].
- ``blocks.<i>``: residual stream after visual block ``i`` (before the final LayerNorm); the CLS
  token, the patch tokens or both (``tokens=``). SigLIP towers have no CLS token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import (
    ActivationSource,
    SourceError,
    block_index,
    capture_outputs,
    check_tokens,
    parse_pretrained,
    select_tokens,
)
from .weights_cache import is_missing_weights, missing_weights_error, quiet_download_logs


def _visual_blocks(visual: torch.nn.Module) -> tuple[list[torch.nn.Module], int, bool]:
    """Blocks of the image tower, number of prefix tokens, and whether outputs are batch-first."""
    if hasattr(visual, "trunk"):  # TimmModel wrapper (SigLIP and other timm towers)
        trunk = visual.trunk
        if not hasattr(trunk, "blocks"):
            raise SourceError(f"timm trunk {type(trunk).__name__} has no .blocks")
        return list(trunk.blocks), int(getattr(trunk, "num_prefix_tokens", 0)), True
    if hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks"):
        n_prefix = 1 if getattr(visual, "class_embedding", None) is not None else 0
        batch_first = bool(getattr(visual.transformer, "batch_first", True))
        return list(visual.transformer.resblocks), n_prefix, batch_first
    raise SourceError(f"image tower {type(visual).__name__} is not a ViT; blocks unsupported")


class OpenClipSource(ActivationSource):
    """Activations of an open_clip model.

    Parameters
    ----------
    arch : str
        open_clip architecture name (``ViT-B-32``, ``ViT-B-16-SigLIP`` ...), or
        ``local-dir:<folder>`` / ``hf-hub:<repo>`` (config and weights from there).
    pretrained : str or None
        open_clip pretrained tag, a local checkpoint (.safetensors / .pt, loaded without pickle),
        or None / "none" for random weights.
    hookpoints : list of str
        Any of ``image``, ``text``, ``blocks.<i>``. Default: ``["image"]``.
    tokens : str
        ``cls``, ``patches`` or ``all`` for block hookpoints.
    device : str
        Torch device.
    model, preprocess, tokenizer : optional
        An already loaded open_clip model with its eval transform (and tokenizer), used instead of
        building ``arch`` (the tiny world's models); ``spec`` then names the source.
    """

    def __init__(
        self,
        arch: str,
        pretrained=None,
        hookpoints: Sequence[str] | None = None,
        tokens: str = "cls",
        device: str = "cpu",
        model=None,
        preprocess=None,
        tokenizer=None,
        spec: str | None = None,
    ):
        import open_clip

        self.arch = arch
        self.spec = spec or f"open_clip:{arch}"
        self.pretrained = parse_pretrained(pretrained)
        self.tokens = check_tokens(tokens)
        self.device = torch.device(device)
        if model is None:  # otherwise an already loaded open_clip model (the tiny world's)
            schema = arch.startswith(("hf-hub:", "local-dir:"))  # open_clip loads these itself
            if not schema and arch not in open_clip.list_models():
                raise SourceError(
                    f"open_clip has no architecture {arch!r}; see open_clip.list_models()"
                )
            try:
                with quiet_download_logs():
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        arch, pretrained=self.pretrained, device=self.device, weights_only=True
                    )
            except (RuntimeError, OSError) as exn:
                if self.pretrained is None or not is_missing_weights(exn):
                    raise
                hub = _hub_name(arch, self.pretrained)
                raise missing_weights_error(self.spec, self.pretrained, hub) from None
        elif preprocess is None:
            raise SourceError(f"{self.spec}: a given model needs its preprocess transform")
        self.model = model.eval().to(self.device)
        self.transform = preprocess
        self.hookpoints = list(hookpoints or ["image"])
        if not self.hookpoints:
            raise SourceError(f"{self.spec}: no hookpoints")
        blocks, self.n_prefix, self.batch_first = _visual_blocks(self.model.visual)
        self.blocks: dict[str, torch.nn.Module] = {}
        self._block_order = {id(b): i for i, b in enumerate(blocks)}
        embed_dim = self._embed_dim()
        self.d_out = {}
        for hp in self.hookpoints:
            if hp in ("image", "text"):
                self.d_out[hp] = embed_dim
            else:
                blk = blocks[block_index(hp, len(blocks), self.spec)]
                self.blocks[hp] = blk
                self.d_out[hp] = self._block_width(blk)
        self.input_kind = "image" if any(h != "text" for h in self.hookpoints) else "text"
        self._tokenizer = tokenizer

    def _embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.nn.Parameter):
            return int(proj.shape[1])
        text = getattr(self.model, "text", None)
        proj = getattr(text, "text_projection", None)
        if isinstance(proj, torch.nn.Linear):
            return int(proj.out_features)
        cfg = open_clip_cfg(self.arch)
        return int(cfg["embed_dim"])

    @staticmethod
    def _block_width(block: torch.nn.Module) -> int:
        for name in ("ln_1", "norm1"):
            mod = getattr(block, name, None)
            if mod is not None and hasattr(mod, "normalized_shape"):
                return int(mod.normalized_shape[0])
        raise SourceError(f"cannot infer the width of block {type(block).__name__}")

    @property
    def tokenizer(self):
        """The model's tokenizer (open_clip's, loaded on first use unless one was given).

        Raises
        ------
        SourceError
            When it cannot be loaded (Hugging Face tokenizers of SigLIP need a download).
        """
        if self._tokenizer is None:
            import open_clip

            try:
                self._tokenizer = open_clip.get_tokenizer(self.arch)
            except Exception as exn:  # any loader failure: HF tokenizers need a download
                raise SourceError(
                    f"{self.spec}: cannot load its tokenizer ({exn}); the 'text' hookpoint needs it"
                ) from exn
        return self._tokenizer

    def options(self) -> dict:
        return {"tokens": self.tokens}

    def prepare(self, items) -> dict:
        batch: dict = {}
        if self.input_kind == "image":
            imgs = [it.image for it in items]
            if any(im is None for im in imgs):
                bad = next(it.key for it in items if it.image is None)
                raise SourceError(f"{self.spec}: input {bad!r} has no image")
            batch["pixels"] = torch.stack([self.transform(im) for im in imgs])
        if "text" in self.hookpoints:
            texts = [it.text for it in items]
            if any(t is None for t in texts):
                bad = next(it.key for it in items if it.text is None)
                raise SourceError(
                    f"{self.spec}: hookpoint 'text' needs a caption; input {bad!r} has none"
                )
            batch["tokens"] = self.tokenizer(texts)
        return batch

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "pixels" in batch:
            pixels = batch["pixels"].to(self.device)
            img = None
            stop = None
            if "image" not in self.hookpoints:  # only blocks: skip the layers after the deepest
                stop = max(self.blocks.values(), key=lambda m: self._block_order[id(m)])
            with capture_outputs(self.blocks, stop_after=stop) as store:
                img = self.model.encode_image(pixels)
            if "image" in self.hookpoints:
                out["image"] = img[:, None, :]
            for hp in self.blocks:
                x = store[hp]
                if not self.batch_first:
                    x = x.transpose(0, 1)
                out[hp] = select_tokens(x, self.n_prefix, self.tokens, f"{self.spec} {hp}")
        if "text" in self.hookpoints:
            out["text"] = self.model.encode_text(batch["tokens"].to(self.device))[:, None, :]
        return {hp: out[hp].float().cpu() for hp in self.hookpoints}

    @torch.no_grad()
    def forward_bare(self, batch: dict):
        res = []
        if "pixels" in batch:
            res.append(self.model.encode_image(batch["pixels"].to(self.device)))
        if "tokens" in batch:
            res.append(self.model.encode_text(batch["tokens"].to(self.device)))
        return res


def open_clip_cfg(arch: str) -> dict:
    """The open_clip model config dict of an architecture.

    Parameters
    ----------
    arch : str
        An open_clip architecture name (``ViT-B-32`` ...).

    Returns
    -------
    dict
        open_clip's config (``embed_dim``, ``vision_cfg``, ``text_cfg``).

    Raises
    ------
    SourceError
        When open_clip has no such architecture.
    """
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise SourceError(f"open_clip has no config for {arch!r}")
    return cfg


def _hub_name(arch: str, tag: str) -> str:
    """Where open_clip fetches ``arch``'s ``tag`` weights (a Hugging Face repo, or a URL)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    return (cfg.get("hf_hub") or "").rstrip("/") or cfg.get("url") or f"{arch} {tag}"
