"""diffusers U-Nets (SD 1.x, SDXL, SDXL-Turbo, the tiny world model) as activation sources.

A sample is one prompt at one denoising step. Hookpoints are names of ``Transformer2DModel``
modules inside the ``UNet2DConditionModel`` (e.g. ``down_blocks.2.attentions.1``); each returns
one vector per spatial position, [N, H*W, C]: the block output, or the block update
(output - input) with ``output="update"``. Under classifier-free guidance (``guidance > 1``) the
U-Net runs on [unconditional; conditional] and only the conditional half is kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .base import ActivationSource, SourceError, parse_pretrained

PromptEncoder = Callable[[list[str]], tuple[torch.Tensor, "torch.Tensor | None"]]


class HashPromptEncoder:
    """Deterministic stand-in text encoder: a fixed Gaussian embedding per prompt string.

    For U-Net-only checkpoints (no text encoder on disk) and tests. Equal prompts give equal
    embeddings; the empty prompt is the unconditional one.
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


def _pipeline_encoder(path: str, device: torch.device) -> PromptEncoder:
    """Text encoder(s) of a full diffusers pipeline (needs ``transformers``)."""
    try:
        import transformers  # noqa: F401
    except ImportError as exn:
        raise SourceError(
            f"{path}: encoding prompts with the pipeline's text encoder needs the "
            "'transformers' package; or pass prompt_encoder='hash'"
        ) from exn
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(path, unet=None, vae=None).to(device)

    def encode(prompts: list[str]):
        res = pipe.encode_prompt(
            prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        emb = res[0]
        pooled = res[2] if len(res) == 4 else None  # SDXL: (emb, neg, pooled, neg_pooled)
        return emb, pooled

    return encode


def _is_transformer2d(module: torch.nn.Module) -> bool:
    return type(module).__name__ == "Transformer2DModel"


class DiffusersSource(ActivationSource):
    """Block activations of a diffusers ``UNet2DConditionModel`` along a denoising trajectory.

    Parameters
    ----------
    model : str
        A pipeline directory (``model_index.json``, U-Net in ``unet/``), a U-Net directory
        (``config.json``), or a Hub repo id (needs network).
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
        How prompts become ``encoder_hidden_states`` (and SDXL pooled embeddings). A callable maps
        a list of prompts to (embeddings [B, L, C], pooled [B, P] or None).
    seed : int
        Seed of the initial latents (per input: seeded by (seed, input index)).
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
        unet=None,
        scheduler=None,
        prompt_seq_len: int = 8,
    ):
        from diffusers import DDIMScheduler, UNet2DConditionModel

        self.spec = f"diffusers:{model}"
        self.pretrained = parse_pretrained(pretrained)
        self.device = torch.device(device)
        if output not in ("update", "output"):
            raise SourceError(f"output={output!r}; expected 'update' or 'output'")
        self.output = output
        path = Path(model)
        is_pipeline = (path / "model_index.json").is_file()
        if unet is None:
            sub = "unet" if is_pipeline else None
            try:
                unet = UNet2DConditionModel.from_pretrained(model, subfolder=sub)
            except (OSError, ValueError) as exn:
                raise SourceError(
                    f"{self.spec}: cannot load a UNet2DConditionModel ({exn})"
                ) from exn
        self.unet = unet.eval().to(self.device)
        if scheduler is None:
            if is_pipeline and (path / "scheduler").is_dir():
                sched_cfg = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
                import diffusers

                cls = getattr(
                    diffusers, sched_cfg.get("_class_name", "DDIMScheduler"), DDIMScheduler
                )
                scheduler = cls.from_pretrained(model, subfolder="scheduler")
            else:
                scheduler = DDIMScheduler()
        self.scheduler = scheduler
        cfg = self.unet.config
        self.sdxl = cfg.addition_embed_type == "text_time"
        self.pooled_dim = None
        if self.sdxl:
            self.pooled_dim = int(
                cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            )
        if isinstance(prompt_encoder, str):
            if prompt_encoder == "hash":
                prompt_encoder = HashPromptEncoder(
                    prompt_seq_len, int(cfg.cross_attention_dim), self.pooled_dim
                )
            elif prompt_encoder == "pipeline":
                if not is_pipeline:
                    raise SourceError(
                        f"{self.spec}: not a pipeline directory (no "
                        "model_index.json), so there is no text encoder; pass "
                        "prompt_encoder='hash' or a callable"
                    )
                prompt_encoder = _pipeline_encoder(model, self.device)
            else:
                raise SourceError(
                    f"prompt_encoder={prompt_encoder!r}; expected 'pipeline', 'hash' or a callable"
                )
        self.prompt_encoder = prompt_encoder
        modules = dict(self.unet.named_modules())
        blocks = [n for n, m in modules.items() if _is_transformer2d(m)]
        if hookpoints is None:
            hookpoints = [n for n in blocks if n.startswith("mid_block")] or blocks[-1:]
        self.hookpoints = list(hookpoints)
        for hp in self.hookpoints:
            if hp not in modules or not _is_transformer2d(modules[hp]):
                raise SourceError(
                    f"{self.spec}: {hp!r} is not a Transformer2DModel block; valid: {blocks}"
                )
        self.blocks = {hp: modules[hp] for hp in self.hookpoints}
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
        }

    def sample_info(self, j: int) -> dict:
        return {"step": self.steps[j], "timestep": self.timestep_values[self.steps[j]]}

    def prepare(self, items) -> dict:
        prompts = [it.text for it in items]
        if any(p is None for p in prompts):
            bad = next(it.key for it in items if it.text is None)
            raise SourceError(f"{self.spec}: input {bad!r} has no prompt")
        emb, pooled = self.prompt_encoder(list(prompts))
        cond = {"emb": emb, "pooled": pooled}
        uncond = None
        if self.guidance > 1.0:
            ue, up = self.prompt_encoder([""] * len(prompts))
            uncond = {"emb": ue, "pooled": up}
        c = int(self.unet.config.in_channels)
        s = self.latent_size
        latents = torch.stack(
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
        return {"cond": cond, "uncond": uncond, "latents": latents}

    def _added(self, pooled: torch.Tensor | None, n: int) -> dict | None:
        if not self.sdxl:
            return None
        if pooled is None:
            raise SourceError(f"{self.spec}: SDXL-style U-Net needs pooled prompt embeddings")
        px = self.latent_size * 8  # time ids in pixels (VAE factor 8)
        time_ids = torch.tensor([[px, px, 0, 0, px, px]], dtype=pooled.dtype).repeat(n, 1)
        return {"text_embeds": pooled.to(self.device), "time_ids": time_ids.to(self.device)}

    @torch.no_grad()
    def _run(self, batch: dict, record: bool):
        self.scheduler.set_timesteps(self.num_steps)
        latents = batch["latents"].to(self.device) * self.scheduler.init_noise_sigma
        b = latents.shape[0]
        cfg = batch["uncond"] is not None
        emb = batch["cond"]["emb"]
        pooled = batch["cond"]["pooled"]
        if cfg:
            emb = torch.cat([batch["uncond"]["emb"], emb])
            if pooled is not None:
                pooled = torch.cat([batch["uncond"]["pooled"], pooled])
        emb = emb.to(self.device)
        added = self._added(pooled, emb.shape[0])
        store: dict[str, torch.Tensor] = {}
        acts: dict[str, list[torch.Tensor]] = {hp: [] for hp in self.hookpoints}
        handles = []
        if record:
            for hp, mod in self.blocks.items():

                def hook(_m, args, kwargs, out, hp=hp):
                    x_in = args[0] if args else kwargs["hidden_states"]
                    x_out = out.sample if hasattr(out, "sample") else out[0]
                    store[hp] = x_out - x_in if self.output == "update" else x_out

                handles.append(mod.register_forward_hook(hook, with_kwargs=True))
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
                        acts[hp].append(a.flatten(2).transpose(1, 2).float().cpu())
                if i < last:
                    latents = self.scheduler.step(noise, t, latents).prev_sample
        finally:
            for h in handles:
                h.remove()
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
