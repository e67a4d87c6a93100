"""diffusers U-Nets (SD 1.x, SDXL, SDXL-Turbo, the tiny world model) as activation sources.

A sample is one prompt at one denoising step. Hookpoints are names of ``Transformer2DModel``
modules inside the ``UNet2DConditionModel`` (e.g. ``down_blocks.2.attentions.1``); each returns
one vector per spatial position, [N, H*W, C]: the block output, or the block update
(output - input) with ``output="update"``. Under classifier-free guidance (``guidance > 1``) the
U-Net runs on [unconditional; conditional] and only the conditional half is kept.

A full pipeline (``model_index.json``: StableDiffusionPipeline, StableDiffusionXLPipeline, ...) is
loaded with its own text encoders, tokenizers and scheduler, and prompts condition the U-Net
through the pipeline's ``encode_prompt``, exactly as the pipeline does: SD 1.x the text encoder's
last hidden state; SDXL both text encoders' penultimate hidden states concatenated, plus the
pooled text embedding and the size/crop time ids as ``added_cond_kwargs``; the negative
(unconditional) embeddings are the pipeline's too (SDXL: zeros when
``force_zeros_for_empty_prompt``).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence

import torch

from .base import ActivationSource, SourceError, parse_pretrained
from .diffusers_pipeline import DTYPES, load_pipeline, load_unet
from .diffusers_prompts import (
    HashPromptEncoder,
    PipelinePromptEncoder,
    PromptEncoder,
    encode_prompts,
)
from .hooks import BlockError, ReadHook, resolve_blocks, transformer_blocks

__all__ = [
    "DiffusersSource",
    "HashPromptEncoder",
    "PipelinePromptEncoder",
    "PromptEncoder",
    "load_pipeline",
]


def _seed(*parts: object) -> int:
    """A 63-bit seed derived from the parts (independent streams for latents and step noise)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class DiffusersSource(ActivationSource):
    """Block activations of a diffusers ``UNet2DConditionModel`` along a denoising trajectory.

    Parameters
    ----------
    model : str
        A pipeline directory (``model_index.json``), a U-Net directory (``config.json``), or a
        Hub pipeline repo id such as ``stabilityai/sdxl-turbo`` (needs network or the HF cache).
    hookpoints : list of str
        ``Transformer2DModel`` module names; default: every such block in the mid block.
    output : str
        ``"update"`` (block output - block input) or ``"output"``.
    num_steps : int
        Denoising steps of the scheduler.
    timesteps : list of int or "all"
        Step indices (0 .. num_steps-1) at which activations are recorded.
    guidance : float
        Classifier-free guidance scale; > 1 runs [uncond; cond] and keeps the conditional half.
    latent_size : int, optional
        Latent height = width (default: ``unet.config.sample_size``).
    prompt_encoder : "pipeline", "hash" or callable
        How prompts become ``encoder_hidden_states`` (and SDXL pooled embeddings). ``"pipeline"``:
        the pipeline's own ``encode_prompt`` (text encoders, tokenizers, negative prompt). A
        callable maps a list of prompts to (embeddings [B, L, C], pooled [B, P] or None); the
        unconditional input is then the callable applied to empty prompts.
    seed : int
        Seed of the initial latents and of stochastic scheduler steps (per input index).
    device : str
        Where the U-Net and text encoders run.
    dtype : str
        Weights dtype: ``float32`` (default), ``float16`` or ``bfloat16``; a given ``unet`` is
        cast when it is not ``float32``. Activations are returned in float32.
    unet : UNet2DConditionModel, optional
        An already built U-Net (then ``model`` is only a name).
    scheduler : diffusers scheduler, optional
        Default: the pipeline's scheduler, else ``DDIMScheduler()``.
    """

    def __init__(
        self,
        model: str,
        pretrained=None,
        hookpoints: Sequence[str] | None = None,
        output: str = "update",
        num_steps: int = 50,
        timesteps: Sequence[int] | str = "all",
        guidance: float = 1.0,
        latent_size: int | None = None,
        prompt_encoder: str | PromptEncoder = "pipeline",
        seed: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        unet=None,
        scheduler=None,
        prompt_seq_len: int = 8,
    ):
        from diffusers import DDIMScheduler

        self.spec = f"diffusers:{model}"
        self.pretrained = parse_pretrained(pretrained)
        self.device = torch.device(device)
        if output not in ("update", "output"):
            raise SourceError(f"output={output!r}; expected 'update' or 'output'")
        if dtype not in DTYPES:
            raise SourceError(f"dtype={dtype!r}; expected one of {sorted(DTYPES)}")
        if isinstance(prompt_encoder, str) and prompt_encoder not in ("pipeline", "hash"):
            raise SourceError(
                f"prompt_encoder={prompt_encoder!r}; expected 'pipeline', 'hash' or a callable"
            )
        self.output = output
        self.dtype = dtype
        self.pipe = None
        self.vae_scale_factor = 8
        if unet is None:
            loaded = load_unet(model, self.spec, dtype, prompt_encoder == "pipeline", scheduler)
            self.pipe, unet, scheduler = loaded.pipe, loaded.unet, loaded.scheduler
            self.vae_scale_factor = loaded.vae_scale_factor
        elif dtype != "float32":
            unet = unet.to(DTYPES[dtype])  # a given U-Net is cast only when asked to
        self.unet = unet.eval().to(self.device)
        self.scheduler = scheduler if scheduler is not None else DDIMScheduler()
        self._step_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        cfg = self.unet.config
        self.sdxl = cfg.addition_embed_type == "text_time"
        self.pooled_dim = None
        if self.sdxl:
            self.pooled_dim = int(
                cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            )
        if prompt_encoder == "hash":
            prompt_encoder = HashPromptEncoder(
                prompt_seq_len, int(cfg.cross_attention_dim), self.pooled_dim
            )
        elif prompt_encoder == "pipeline":
            if self.pipe is None:
                raise SourceError(
                    f"{self.spec}: not a pipeline directory (no model_index.json), so there "
                    "is no text encoder; pass prompt_encoder='hash' or a callable"
                )
            self.pipe.to(self.device)
            prompt_encoder = PipelinePromptEncoder(self.pipe, self.device)
        self.prompt_encoder = prompt_encoder
        blocks = transformer_blocks(self.unet)
        if hookpoints is None:
            hookpoints = [n for n in blocks if n.startswith("mid_block")] or blocks[-1:]
        self.hookpoints = list(hookpoints)
        try:
            self.blocks = resolve_blocks(self.unet, self.hookpoints, self.spec)
        except BlockError as exn:
            raise SourceError(str(exn)) from None
        self.d_out = {hp: int(m.config.in_channels) for hp, m in self.blocks.items()}
        self.num_steps = int(num_steps)
        if timesteps == "all":
            self.steps = list(range(self.num_steps))
        else:
            self.steps = sorted({int(t) for t in timesteps})
            bad = [t for t in self.steps if not 0 <= t < self.num_steps]
            if bad or not self.steps:
                raise SourceError(
                    f"timesteps {list(timesteps)}: step indices must lie in 0..{self.num_steps - 1}"
                )
        self.guidance = float(guidance)
        self.latent_size = int(latent_size or cfg.sample_size)
        self.seed = int(seed)
        self.samples_per_input = len(self.steps)
        self.input_kind = "prompt"
        self.scheduler.set_timesteps(self.num_steps)
        self.timestep_values = [int(t) for t in self.scheduler.timesteps]

    def options(self) -> dict:
        return {
            "output": self.output,
            "num_steps": self.num_steps,
            "timesteps": self.steps,
            "guidance": self.guidance,
            "latent_size": self.latent_size,
            "seed": self.seed,
            "dtype": str(self.unet.dtype).removeprefix("torch."),
        }

    def sample_info(self, j: int) -> dict:
        return {"step": self.steps[j], "timestep": self.timestep_values[self.steps[j]]}

    def encode_prompts(
        self, prompts: list[str]
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor | None] | None]:
        """Conditional and (under guidance) unconditional prompt embeddings.

        Parameters
        ----------
        prompts : list of str
            B prompts.

        Returns
        -------
        (dict, dict or None)
            ``{"emb": [B, L, C], "pooled": [B, P] or None}`` each.
        """
        return encode_prompts(
            self.prompt_encoder,
            prompts,
            self.guidance > 1.0,
            self.spec,
            int(self.unet.config.cross_attention_dim),
        )

    def prepare(self, items) -> dict:
        prompts = [it.text for it in items]
        if any(p is None for p in prompts):
            bad = next(it.key for it in items if it.text is None)
            raise SourceError(f"{self.spec}: input {bad!r} has no prompt")
        cond, uncond = self.encode_prompts(list(prompts))
        c = int(self.unet.config.in_channels)
        s = self.latent_size
        latents_BCHW = torch.stack(
            [
                torch.randn(
                    c,
                    s,
                    s,
                    generator=torch.Generator().manual_seed(self.seed * 1_000_003 + it.index),
                )
                for it in items
            ]
        )
        return {
            "cond": cond,
            "uncond": uncond,
            "latents": latents_BCHW,
            "index": [int(it.index) for it in items],
        }

    def _added(self, pooled_BP: torch.Tensor | None, n: int) -> dict | None:
        """SDXL ``added_cond_kwargs``: pooled text embeddings and the pipeline's time ids."""
        if not self.sdxl:
            return None
        if pooled_BP is None:
            raise SourceError(f"{self.spec}: SDXL-style U-Net needs pooled prompt embeddings")
        if pooled_BP.shape != (n, self.pooled_dim):
            raise SourceError(
                f"{self.spec}: pooled prompt embeddings have shape {tuple(pooled_BP.shape)}; "
                f"the U-Net expects [{n}, {self.pooled_dim}]"
            )
        # (original size, crop top-left, target size) in pixels, as the SDXL pipeline builds them
        px = self.latent_size * self.vae_scale_factor
        time_ids = torch.tensor([[px, px, 0, 0, px, px]], dtype=pooled_BP.dtype).repeat(n, 1)
        return {"text_embeds": pooled_BP.to(self.device), "time_ids": time_ids.to(self.device)}

    @torch.no_grad()
    def _run(self, batch: dict, record: bool):
        self.scheduler.set_timesteps(self.num_steps)
        dtype = self.unet.dtype
        latents = batch["latents"].to(self.device, dtype) * self.scheduler.init_noise_sigma
        b = latents.shape[0]
        cfg = batch["uncond"] is not None
        emb = batch["cond"]["emb"]
        pooled = batch["cond"]["pooled"]
        if cfg:
            emb = torch.cat([batch["uncond"]["emb"], emb])
            if pooled is not None:
                pooled = torch.cat([batch["uncond"]["pooled"], pooled])
        emb = emb.to(self.device, dtype)
        if pooled is not None:
            pooled = pooled.to(self.device, dtype)
        added = self._added(pooled, emb.shape[0])
        step_kw = {}
        if self._step_generator:  # stochastic schedulers (Euler ancestral): seeded per input
            index = batch.get("index", range(b))
            step_kw["generator"] = [
                torch.Generator().manual_seed(_seed(self.seed, i, "step")) for i in index
            ]
        store: dict[str, torch.Tensor] = {}
        acts: dict[str, list[torch.Tensor]] = {hp: [] for hp in self.hookpoints}
        hooks = []
        if record:
            for hp, mod in self.blocks.items():

                def keep(x_in, x_out, hp=hp):
                    store[hp] = x_out - x_in if self.output == "update" else x_out

                hooks.append(ReadHook(mod, keep).__enter__())
        last = self.steps[-1]
        try:
            for i, t in enumerate(self.scheduler.timesteps):
                if i > last:
                    break
                x = torch.cat([latents, latents]) if cfg else latents
                x = self.scheduler.scale_model_input(x, t)
                noise = self.unet(x, t, encoder_hidden_states=emb, added_cond_kwargs=added).sample
                if cfg:
                    nu, nc = noise.chunk(2)
                    noise = nu + self.guidance * (nc - nu)
                if record and i in self.steps:
                    for hp in self.hookpoints:
                        a = store[hp][b:] if cfg else store[hp]  # conditional half only
                        assert a.shape[0] == b, (hp, a.shape)
                        acts[hp].append(a.flatten(2).transpose(1, 2).float().cpu())
                if i < last:
                    latents = self.scheduler.step(noise, t, latents, **step_kw).prev_sample
        finally:
            for h in hooks:
                h.__exit__(None, None, None)
        return acts

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        acts = self._run(batch, record=True)
        out = {}
        for hp, per_step in acts.items():
            x = torch.stack(per_step, dim=1)  # [B, n_steps, HW, C]
            out[hp] = x.reshape(-1, x.shape[2], x.shape[3])
        return out

    def forward_bare(self, batch: dict):
        return self._run(batch, record=False)
