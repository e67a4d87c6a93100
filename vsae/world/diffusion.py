"""Tiny text-to-image diffusion: a diffusers ``UNet2DConditionModel`` (cross-attention
``Transformer2DModel`` blocks) in 32x32 pixel space, conditioned on the tiny CLIP
text encoder's per-token states, sampled with ``DDIMScheduler`` and classifier-free
guidance.

Pixels are packed losslessly before the UNet: a 2x2 space-to-depth turns the
3x32x32 image into a 12x16x16 tensor (``pack``/``unpack``), a fixed "latent" that
makes the UNet four times cheaper on this CPU without a learned VAE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from PIL import Image

from .clip import text_token_states
from .tokens import PromptError, WorldTokenizer

RESOLUTION = 32
PACK = 2


def pack(x_B3HW: torch.Tensor) -> torch.Tensor:
    """Space-to-depth, lossless: the U-Net works on 16x16 positions of 12 channels.

    Parameters
    ----------
    x_B3HW : Tensor
        Images [B, 3, 32, 32] in [-1, 1].

    Returns
    -------
    Tensor
        [B, 12, 16, 16].
    """
    return torch.nn.functional.pixel_unshuffle(x_B3HW, PACK)


def unpack(z_BCHW: torch.Tensor) -> torch.Tensor:
    """Depth-to-space, the inverse of ``pack``.

    Parameters
    ----------
    z_BCHW : Tensor
        [B, 12, 16, 16].

    Returns
    -------
    Tensor
        Images [B, 3, 32, 32].
    """
    return torch.nn.functional.pixel_shuffle(z_BCHW, PACK)


def unet_config(cross_attention_dim: int = 128) -> dict:
    """The ``UNet2DConditionModel`` config of the tiny diffusion model.

    Three resolutions (16, 8, 4 positions a side), ``Transformer2DModel`` cross-attention
    blocks in the two lower down blocks, the mid block and two up blocks, as in SD 1.x.

    Parameters
    ----------
    cross_attention_dim : int
        Width of the text token states (the tiny CLIP's text width).

    Returns
    -------
    dict
        Keyword arguments of ``UNet2DConditionModel``.
    """
    return {
        "sample_size": RESOLUTION // PACK,
        "in_channels": 3 * PACK * PACK,
        "out_channels": 3 * PACK * PACK,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "cross_attention_dim": cross_attention_dim,
        # diffusers' legacy name: this is the number of heads (2 heads of 32 channels)
        "attention_head_dim": 2,
    }


def scheduler_config() -> dict:
    """Noise schedule shared by DDPM training and DDIM sampling (1000 steps, cosine betas,
    epsilon prediction).

    Returns
    -------
    dict
        Keyword arguments of the diffusers schedulers.
    """
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon",
        "clip_sample": True,
    }


def build_unet(seed: int = 0, cross_attention_dim: int = 128) -> UNet2DConditionModel:
    """A freshly initialised tiny UNet.

    Parameters
    ----------
    seed : int
        Seed of the initialisation (sets torch's global seed).
    cross_attention_dim : int
        Width of the text conditioning.

    Returns
    -------
    UNet2DConditionModel
    """
    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config(cross_attention_dim))


class WorldDiffusionPipeline:
    """``pipe(prompts, steps=20, guidance=None, seed=0)`` -> list of 32x32 PIL images.

    Attributes mirror Stable Diffusion pipelines: ``unet``, ``scheduler`` (DDIM),
    ``text_encoder`` (the tiny open_clip CLIP, used for its token states) and
    ``tokenizer``; hooks on ``pipe.unet`` blocks work as on SD.

    Parameters
    ----------
    unet : UNet2DConditionModel
        The denoiser (put in eval mode).
    scheduler : DDIMScheduler
        The sampler.
    text_encoder : open_clip.model.CLIP
        The tiny CLIP whose text token states condition the U-Net.
    tokenizer : WorldTokenizer
        Its tokenizer.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: DDIMScheduler,
        text_encoder,
        tokenizer: WorldTokenizer,
    ):
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.text_encoder = text_encoder.eval()
        self.tokenizer = tokenizer
        self.default_guidance = 3.0

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Per-token text states for a list of prompts.

        Parameters
        ----------
        prompts : sequence of str
            B prompts ("" is the unconditional one).

        Returns
        -------
        Tensor
            [B, T, width].

        Raises
        ------
        PromptError
            A prompt the tokenizer cannot represent.
        """
        return text_token_states(self.text_encoder, self.tokenizer(prompts))

    @torch.no_grad()
    def __call__(
        self,
        prompts: str | Sequence[str],
        steps: int = 20,
        guidance: float | None = None,
        seed: int = 0,
        output_type: str = "pil",
        eta: float = 0.0,
        negative_prompts: Sequence[str] | None = None,
    ):
        """Generate one image per prompt.

        Parameters
        ----------
        prompts
            A prompt or a non-empty list of prompts ("" is the unconditional prompt).
        steps
            DDIM steps.
        guidance
            Classifier-free guidance scale; ``guidance <= 1`` runs the conditional
            branch alone (no guidance); None uses ``self.default_guidance``.
        seed
            Seed of the initial noise (image i gets the same noise for the same seed).
        output_type
            "pil" (list of PIL images), "np" (uint8 array N x 32 x 32 x 3) or
            "pt" (float tensor N x 3 x 32 x 32 in [0, 1]).
        eta
            DDIM's eta (0: deterministic sampling).
        negative_prompts
            One per prompt: the unconditional half of classifier-free guidance is conditioned
            on it instead of ``""``, so guidance pushes away from it (None: ``""`` for all).

        Returns
        -------
        list of PIL.Image.Image, ndarray or Tensor
            As ``output_type`` says.

        Raises
        ------
        PromptError
            An empty list or a prompt the tokenizer cannot represent.
        ValueError
            ``steps < 1`` or an unknown ``output_type``.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = self.tokenizer.check(prompts)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if guidance is None:
            guidance = self.default_guidance
        n = len(prompts)
        cond = self.encode_prompt(prompts)
        use_cfg = guidance > 1.0
        if negative_prompts is not None:
            negative_prompts = self.tokenizer.check(list(negative_prompts))
            if len(negative_prompts) != n:
                raise ValueError(f"{len(negative_prompts)} negative prompts for {n} prompts")
        if use_cfg:
            cond = torch.cat([self.encode_prompt(negative_prompts or [""] * n), cond])
        gen = torch.Generator().manual_seed(int(seed))
        x = pack(torch.randn((n, 3, RESOLUTION, RESOLUTION), generator=gen))
        self.scheduler.set_timesteps(steps)
        for t in self.scheduler.timesteps:
            inp = torch.cat([x, x]) if use_cfg else x
            eps = self.unet(inp, t, encoder_hidden_states=cond).sample
            if use_cfg:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            x = self.scheduler.step(eps, t, x, eta=eta, generator=gen).prev_sample
        img = ((unpack(x).clamp(-1, 1) + 1) / 2).float()
        if output_type == "pt":
            return img
        arr = (img.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        if output_type == "np":
            return arr
        return [Image.fromarray(a) for a in arr]


def save_unet(unet: UNet2DConditionModel, directory: str | Path) -> None:
    """Write fp16 safetensors and JSON configs of the UNet and the schedule.

    Parameters
    ----------
    unet : UNet2DConditionModel
        The model.
    directory : str or Path
        Created if needed; gets ``unet.safetensors``, ``unet_config.json`` and
        ``scheduler_config.json``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in unet.state_dict().items()}
    save_file(sd, str(directory / "unet.safetensors"))
    (directory / "unet_config.json").write_text(
        json.dumps(dict(unet.config), indent=2, default=list) + "\n"
    )
    (directory / "scheduler_config.json").write_text(
        json.dumps(scheduler_config(), indent=2) + "\n"
    )


def load_unet_weights(unet: UNet2DConditionModel, directory: str | Path) -> None:
    """Load the fp16 ``unet.safetensors`` of a diffusion folder into ``unet`` (as fp32).

    Parameters
    ----------
    unet : UNet2DConditionModel
        Built from the folder's config.
    directory : str or Path
        The diffusion folder.
    """
    from safetensors.torch import load_file

    sd = load_file(str(Path(directory) / "unet.safetensors"))
    unet.load_state_dict({k: v.float() for k, v in sd.items()})


def load(directory: str | Path, text_encoder, tokenizer: WorldTokenizer) -> WorldDiffusionPipeline:
    """Load the tiny diffusion folder around a loaded tiny CLIP.

    Parameters
    ----------
    directory : str or Path
        Holds ``unet.safetensors``, ``unet_config.json`` and ``scheduler_config.json``.
    text_encoder : open_clip.model.CLIP
        The conditioning text tower (``load_text_encoder``).
    tokenizer : WorldTokenizer
        Its tokenizer.

    Returns
    -------
    WorldDiffusionPipeline

    Raises
    ------
    FileNotFoundError
        No U-Net weights in the folder.
    """
    directory = Path(directory)
    path = directory / "unet.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"diffusion weights missing: {path} (run `vsae world build`)")
    cfg = json.loads((directory / "unet_config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    unet = UNet2DConditionModel.from_config(cfg)
    load_unet_weights(unet, directory)
    sched = DDIMScheduler(**json.loads((directory / "scheduler_config.json").read_text()))
    return WorldDiffusionPipeline(unet, sched, text_encoder, tokenizer)


TEXT_ENCODER = "text_encoder"  # sub-folder: the tiny CLIP whose token states condition the UNet


def load_text_encoder(directory: str | Path, strict_vocab: bool = False):
    """The diffusion folder's own text encoder ``(model, preprocess, tokenizer)``.

    Like SD's ``text_encoder/``, it is frozen with the UNet: the shipped tiny CLIP may
    be fine-tuned later without moving the conditioning the UNet was trained on.

    Parameters
    ----------
    directory : str or Path
        The diffusion folder (its ``text_encoder/`` sub-folder is read).
    strict_vocab : bool
        The tokenizer also refuses words the world never uses.

    Returns
    -------
    (open_clip.model.CLIP, callable, WorldTokenizer)

    Raises
    ------
    FileNotFoundError
        No text encoder in the folder.
    """
    from . import clip as clip_mod

    text_dir = Path(directory) / TEXT_ENCODER
    if not (text_dir / "weights.safetensors").is_file():
        raise FileNotFoundError(
            f"diffusion text encoder missing: {text_dir} (run `vsae world build`)"
        )
    return clip_mod.load(text_dir, strict_vocab=strict_vocab)


def ddpm_scheduler() -> DDPMScheduler:
    """The training-time noise scheduler.

    Returns
    -------
    DDPMScheduler
        With ``scheduler_config()``.
    """
    return DDPMScheduler(**scheduler_config())


__all__ = [
    "WorldDiffusionPipeline",
    "PromptError",
    "build_unet",
    "load",
    "load_text_encoder",
    "pack",
    "save_unet",
    "unet_config",
    "unpack",
]
