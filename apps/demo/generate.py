"""The Generate tab: prompt, seed and steps; steer or ablate a latent, in a drawn mask or
everywhere; unlearning recipes as toggles; the feature's icon; before and after side by side,
and where latents fire.

Layout and callbacks only: images come from :mod:`vsae.interventions` (``latent_maps`` for the
unedited image and its heatmaps on the U-Net grid, ``generate`` with ``Steer`` / ``Ablate`` /
``Icon`` edits). The U-Net's hooks are shared, so every call runs under one concurrency id
with limit 1: one generation at a time, the others wait in the queue.
"""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
from PIL import Image

from vsae.interventions import (
    Ablate,
    Icon,
    InterventionError,
    Steer,
    check_mask,
    generate,
    latent_maps,
    overlay,
)
from vsae.interventions.spec import resolve_latent

from .background import LoadError
from .messages import message_box, ok, problem
from .models import Diffusion

CONCURRENCY_ID = "diffusion"  # one U-Net with shared hooks: limit 1
MAX_STRENGTH = 40.0  # the SDXL-Turbo study's range, in units of the latent's mean activation
MAX_STEPS = 50
ICON_STRENGTH = 4.0
VIEW = 256  # generated images are shown upscaled to this side (nearest: pixels stay visible)
N_HEAT = 4


def _view(img_HW3: np.ndarray) -> Image.Image:
    return Image.fromarray(img_HW3).resize((VIEW, VIEW), Image.Resampling.NEAREST)


def _latent_ref(text) -> str:
    """``"red (#12)"`` (an autocomplete choice) -> ``"#12"``; anything else unchanged."""
    text = str(text or "").strip()
    if text.endswith(")") and "(#" in text:
        return text[text.rindex("(#") + 1 : -1]
    return text


def _mask_of(drawn, image_hw: tuple[int, int]) -> np.ndarray:
    """The sketchpad's strokes as a mask [H, W] in [0, 1] at the generated image's size."""
    if not isinstance(drawn, dict):
        return np.zeros(image_hw, np.float32)
    layers = [x for x in drawn.get("layers") or [] if x is not None]
    rgba = layers[0] if layers else drawn.get("composite")
    if rgba is None:
        return np.zeros(image_hw, np.float32)
    rgba = np.asarray(rgba)
    alpha = rgba[..., 3] if rgba.ndim == 3 and rgba.shape[2] == 4 else rgba.max(axis=-1)
    small = Image.fromarray(alpha.astype(np.uint8)).resize(image_hw[::-1], Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def build(model: Diffusion) -> None:
    """Add the Generate tab to the enclosing ``gr.Blocks``.

    Parameters
    ----------
    model
        The pipeline, SAE, statistics and names (shared, read-only, by all sessions).
    """
    bsae = model.bsae
    n_latents = int(bsae.sae.n_latents)
    choices = [f"{name} (#{f})" for f, name in sorted(model.names.items())]

    def run(prompt, seed, steps, latent, strength, action, use_mask, drawn, unlearn=()):
        prompt = (prompt or "").strip()
        if not prompt:
            return problem("Type a prompt first (e.g. 'a red circle').", 5)
        try:
            strength = float(strength)
        except (TypeError, ValueError):
            return problem(f"Strength must be a number, got {strength!r}.", 5)
        if not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
            return problem(
                f"Strength {strength:g} is out of range: use -{MAX_STRENGTH:g}..{MAX_STRENGTH:g} "
                "(in units of the latent's mean activation).",
                5,
            )
        if seed is None or steps is None or not 1 <= int(steps) <= MAX_STEPS or int(seed) < 0:
            return problem(f"Seed must be >= 0 and steps 1..{MAX_STEPS}.", 5)
        seed, steps = int(seed), int(steps)
        chosen = [model.recipes[label] for label in unlearn or () if label in model.recipes]
        off = [r for r in chosen if int(r.info["num_steps"]) != steps]
        if off:
            return problem(
                f"The unlearning recipe for {' + '.join(off[0].info['concepts'])} was fitted for "
                f"{off[0].info['num_steps']} steps; set steps to that to use it.",
                5,
            )
        try:
            gen = model.gen.get()  # waits while the pipeline is still loading after a start
            _, f = resolve_latent(_latent_ref(latent), [model.sae_dir], [n_latents])
            mask = _mask_of(drawn, gen.image_hw) if use_mask else None
            if mask is not None:
                check_mask(mask, gen.image_hw, "your mask")
            maps = latent_maps(gen, bsae, [prompt], steps, seed)
            edits = [r.edit(bsae) for r in chosen]
            if action == "ablate":
                edits.append(Ablate(f, mask=mask))
            elif action == "steer":
                edits.append(Steer(feature=f, strength=strength, mask=mask))
            stats = [model.stats]
            after = generate(gen, [prompt], steps, seed, saes=[bsae], edits=edits, stats=stats)
            icon = generate(
                gen,
                [""],
                steps,
                seed,
                saes=[bsae],
                edits=[Icon(feature=f, strength=ICON_STRENGTH)],
                stats=stats,
            )
        except (InterventionError, LoadError) as e:
            return problem(str(e), 5)
        except ValueError as e:  # the world tokenizer's PromptError (an unknown or long prompt)
            return problem(f"Prompt refused: {e}", 5)
        before = maps.images[0]
        big = np.asarray(_view(before))
        shown = [f] + [g for g, _ in maps.top_latents(0, N_HEAT) if g != f][: N_HEAT - 1]
        heat = [
            (overlay(big, maps.maps_BNhw[0, g]), f"#{g} {model.names.get(g, '')}".strip())
            for g in shown
        ]
        name = model.names.get(f, "")
        changed = int(np.abs(after.images[0].astype(int) - before.astype(int)).max())
        verb = {"ablate": "ablated", "steer": f"steered with strength {strength:g}"}.get(action)
        where = "inside your mask" if mask is not None else "everywhere"
        done = [f"Latent **#{f}**{f' ({name})' if name else ''} {verb}, {where}"] if verb else []
        done += [f"unlearned **{' + '.join(r.info['concepts'])}**" for r in chosen]
        summary = (
            f"{'; '.join(done) or 'No edit'} on `{bsae.block}`; seed {seed}, {steps} steps. "
            f"Largest pixel change: **{changed}** / 255."
        )
        return ok(), _view(before), _view(after.images[0]), _view(icon.images[0]), heat, summary

    with gr.Tab("Generate", id="generate"):
        gr.Markdown(
            f"Generate with `{model.pipeline}` and the SAE on block `{bsae.block}` "
            f"({n_latents} latents). Pick a latent by id (0..{n_latents - 1}) or name, then "
            "steer it (strength in units of its mean activation) or ablate it, everywhere or "
            "only where you draw on the sketchpad."
        )
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="prompt", value="a red circle", elem_id="gen-prompt")
                with gr.Row():
                    seed = gr.Number(label="seed", value=0, precision=0, elem_id="gen-seed")
                    steps = gr.Slider(1, MAX_STEPS, value=10, step=1, label="steps")
                with gr.Row():
                    latent = gr.Dropdown(
                        choices=choices,
                        value=choices[0] if choices else "0",
                        allow_custom_value=True,
                        filterable=True,
                        label="latent (id, #id or name)",
                        elem_id="gen-latent",
                    )
                    strength = gr.Number(
                        label=f"strength (-{MAX_STRENGTH:g}..{MAX_STRENGTH:g})",
                        value=8,
                        elem_id="gen-strength",
                    )
                    action = gr.Radio(["steer", "ablate", "none"], value="steer", label="edit")
                unlearn = gr.CheckboxGroup(
                    sorted(model.recipes),
                    label="unlearn (SAeUron recipes)",
                    visible=bool(model.recipes),
                    elem_id="gen-unlearn",
                )
                use_mask = gr.Checkbox(label="only where I draw", value=False, elem_id="gen-use")
                go = gr.Button("Generate", variant="primary", elem_id="gen-go")
            with gr.Column(scale=2):
                drawn = gr.Sketchpad(
                    label="mask: draw where to edit",
                    canvas_size=(VIEW, VIEW),
                    fixed_canvas=True,
                    type="numpy",
                    layers=False,
                    elem_id="gen-mask",
                )
        msg = message_box("gen-msg")
        summary = gr.Markdown(elem_id="gen-summary")
        with gr.Row():
            before = gr.Image(label="before (no edit)", format="png", elem_id="gen-before")
            after = gr.Image(label="after", format="png", elem_id="gen-after")
            icon = gr.Image(label="feature icon (empty prompt)", format="png", elem_id="gen-icon")
        heat = gr.Gallery(
            elem_classes=["vsae-pixels"],
            label="where latents fire on the U-Net grid (before): the edited one, then the top",
            columns=N_HEAT,
            height="auto",
            allow_preview=False,
            format="png",
            elem_id="gen-heat",
        )
        go.click(
            run,
            [prompt, seed, steps, latent, strength, action, use_mask, drawn, unlearn],
            [msg, before, after, icon, heat, summary],
            api_name="generate",
            concurrency_id=CONCURRENCY_ID,
            concurrency_limit=1,
        )
