"""timm Vision Transformers as activation sources.

Hookpoints:

- ``blocks.<i>``: residual stream after block ``i`` (CLS / patch / all tokens via ``tokens=``;
  register tokens, if any, are dropped from ``patches``).
- ``pooled``: the pre-logits feature (``forward_head(pre_logits=True)``), [N, 1, D].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def load_local_weights(model: torch.nn.Module, path: str) -> None:
    """Load a state dict from .safetensors or a torch file (``weights_only=True``), strictly.

    Parameters
    ----------
    model : torch.nn.Module
        The timm model to fill.
    path : str
        A ``.safetensors`` file, or a torch file holding a state dict (or
        ``{"state_dict": ...}``); never unpickled beyond tensors.

    Raises
    ------
    SourceError
        When the keys do not match the model (the first missing and unexpected ones named).
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SourceError(
            f"{p}: weights do not match the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )


class TimmSource(ActivationSource):
    """Activations of a timm ViT.

    Parameters
    ----------
    model_name : str
        timm model name, e.g. ``vit_tiny_patch16_224`` (a ``.tag`` suffix selects weights).
    pretrained : str or None
        None / "none": random weights; a local file (.safetensors or .pth): loaded without pickle;
        anything else (``"timm"``, ``"default"``, a tag): timm's own pretrained weights (network).
    hookpoints : list of str
        ``blocks.<i>`` and/or ``pooled``. Default: the last block.
    tokens : str
        ``cls``, ``patches`` or ``all``.
    image_size : int, optional
        Build the model for this input size (timm ``img_size``; position embeddings resampled
        when loading weights is the caller's concern). Default: the model's own.
    """

    def __init__(
        self,
        model_name: str,
        pretrained=None,
        hookpoints: Sequence[str] | None = None,
        tokens: str = "cls",
        device: str = "cpu",
        image_size: int | None = None,
    ):
        import timm

        self.spec = f"timm:{model_name}"
        self.pretrained = parse_pretrained(pretrained)
        self.tokens = check_tokens(tokens)
        self.device = torch.device(device)
        local = self.pretrained is not None and Path(self.pretrained).is_file()
        if (
            self.pretrained is not None
            and not local
            and ("/" in self.pretrained or self.pretrained.endswith((".pth", ".safetensors")))
        ):
            raise SourceError(f"{self.spec}: pretrained file {self.pretrained} does not exist")
        name = model_name
        use_hub = self.pretrained is not None and not local
        if use_hub and self.pretrained not in ("timm", "default", "true", "True"):
            name = f"{model_name}.{self.pretrained}"
        try:
            kw = {"img_size": int(image_size)} if image_size else {}
            with quiet_download_logs():
                model = timm.create_model(name, pretrained=use_hub, **kw)
        except (RuntimeError, OSError) as exn:
            if use_hub and is_missing_weights(exn):
                tag = self.pretrained or "default"
                raise missing_weights_error(self.spec, tag, f"timm/{name}") from None
            raise SourceError(f"{self.spec}: timm cannot create {name!r} ({exn})") from exn
        if local:
            load_local_weights(model, self.pretrained)
        self.model = model.eval().to(self.device)
        if not hasattr(model, "blocks"):
            raise SourceError(f"{self.spec}: {type(model).__name__} has no .blocks (not a ViT)")
        args = {"input_size": (3, int(image_size), int(image_size))} if image_size else {}
        cfg = timm.data.resolve_data_config(args, model=model)
        self.transform = timm.data.create_transform(**cfg)
        self.n_prefix = int(getattr(model, "num_prefix_tokens", 0))
        self.has_cls = getattr(model, "cls_token", None) is not None
        self.hookpoints = list(hookpoints or [f"blocks.{len(model.blocks) - 1}"])
        self.blocks: dict[str, torch.nn.Module] = {}
        self.d_out = {}
        width = int(model.embed_dim)
        for hp in self.hookpoints:
            if hp == "pooled":
                self.d_out[hp] = int(model.num_features)
            else:
                self.blocks[hp] = model.blocks[block_index(hp, len(model.blocks), self.spec)]
                self.d_out[hp] = width
        if self.tokens == "cls" and self.blocks and not self.has_cls:
            raise SourceError(f"{self.spec}: the model has no class token; use tokens='patches'")
        self.input_kind = "image"
        self.image_size = image_size
        # without 'pooled', the forward stops after the deepest requested block
        self.stop_after = None
        if "pooled" not in self.hookpoints:
            deepest = max(self.blocks.values(), key=lambda m: list(model.blocks).index(m))
            self.stop_after = deepest

    def options(self) -> dict:
        return {"tokens": self.tokens, "image_size": self.image_size}

    def prepare(self, items) -> dict:
        missing = [it.key for it in items if it.image is None]
        if missing:
            raise SourceError(f"{self.spec}: input {missing[0]!r} has no image")
        return {"pixels": torch.stack([self.transform(it.image) for it in items])}

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        pixels = batch["pixels"].to(self.device)
        pooled = None
        with capture_outputs(self.blocks, stop_after=self.stop_after) as store:
            feats = self.model.forward_features(pixels)
            pooled = self.model.forward_head(feats, pre_logits=True)
        out = {}
        for hp in self.hookpoints:
            if hp == "pooled":
                out[hp] = pooled[:, None, :]
            else:
                # the 'cls' mode takes token 0, the class token when the model has one
                out[hp] = select_tokens(store[hp], self.n_prefix, self.tokens, f"{self.spec} {hp}")
        return {hp: v.float().cpu() for hp, v in out.items()}

    @torch.no_grad()
    def forward_bare(self, batch: dict):
        return self.model(batch["pixels"].to(self.device))
