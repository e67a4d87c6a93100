"""The Explore tab: a latent's name, score, frequency and top images; an image's top latents.

Layout and callbacks only: every answer comes from :class:`vsae.analysis.Explorer`. Expected
errors (a bad latent id or name, a refused upload) become a message shown in the page next to
the input, and the last good results stay.
"""

from __future__ import annotations

import gradio as gr

from vsae.analysis import ConceptError, Explorer

from .config import DemoConfig
from .messages import message_box, ok, problem
from .uploads import UploadError, load_upload

N_TOP = 16  # top images shown per latent
N_PICK = 12  # gallery images offered to pick from
N_LATENTS = 6  # top latents shown per image
CONCURRENCY_ID = "clip"  # the image-text model and its SAE


def _card_text(card) -> str:
    name = f"**{card.name}**" if card.name else "*(not named: no concepts.json)*"
    score = f"{card.score:.3f}" if card.score is not None else "-"
    valid = " (valid concept)" if card.valid else ""
    s = card.stats
    return (
        f"### Latent #{card.latent}: {name}{valid}\n"
        f"naming score **{score}** · fires on **{100 * s.freq:.1f}%** of the gallery · "
        f"mean activation {s.mean_act:.3f} · max {s.max_act:.3f} · "
        f"{len(card.top)} top images shown"
    )


def build(cfg: DemoConfig, explorer: Explorer) -> None:
    """Add the Explore tab to the enclosing ``gr.Blocks``.

    Parameters
    ----------
    cfg
        Upload limits and the per-model concurrency.
    explorer
        The SAE, its model and gallery (shared, read-only, by all sessions).
    """

    def show_latent(ref):
        try:
            card = explorer.latent(ref if ref is not None else "", k=N_TOP)
        except (ConceptError, ValueError) as e:
            return problem(str(e), 2)
        grid = [(img, f"{act:.3f}") for img, act, _ in card.top]
        return ok(), _card_text(card), grid

    def from_upload(path):
        try:
            image = load_upload(path, cfg.max_file_size, cfg.max_pixels)
        except UploadError as e:
            return problem(str(e), 3)
        return ok(), image, *_analysed(image)

    def from_pick(evt: gr.SelectData):
        image = explorer.gallery.thumbnail(picks[evt.index])
        return ok(), image, *_analysed(image)

    def _analysed(image):
        found = explorer.image(image, k=N_LATENTS)
        rows = "\n".join(f"| {t.latent} | {t.name or '-'} | {t.activation:.4f} |" for t in found)
        table = "#### Top latents\n| latent | name | mean activation |\n|---|---|---|\n" + rows
        heat = [(t.heatmap, f"#{t.latent} {t.name}") for t in found if t.heatmap is not None]
        return table, heat

    step = max(1, len(explorer.gallery) // N_PICK)
    picks = list(range(0, len(explorer.gallery), step))[:N_PICK]
    with gr.Tab("Explore", id="explore"):
        gr.Markdown(
            f"Pick a latent by id (0..{explorer.n_latents - 1}, e.g. `12` or `#12`)"
            + (" or by concept name" if explorer.names() else "")
            + " to see its top images, or give an image to see its top latents."
        )
        with gr.Row():
            ref = gr.Dropdown(
                choices=explorer.names(),
                value=None,
                allow_custom_value=True,
                filterable=True,
                label="latent id or concept name",
                elem_id="latent-ref",
                scale=4,
            )
            show = gr.Button("Show latent", variant="primary", elem_id="latent-show", scale=1)
        latent_msg = message_box("latent-msg")
        info = gr.Markdown(elem_id="latent-info")
        grid = gr.Gallery(
            format="png",
            label="top images (pooled activation)",
            columns=8,
            height="auto",
            allow_preview=False,
            elem_id="latent-grid",
            elem_classes=["vsae-pixels"],
        )
        with gr.Row():
            upload = gr.File(
                label="upload an image", file_types=["image"], type="filepath", elem_id="upload"
            )
            pick = gr.Gallery(
                format="png",
                value=[explorer.gallery.thumbnail(i) for i in picks],
                label="or pick one of the gallery",
                columns=6,
                height=240,
                allow_preview=False,
                elem_id="image-pick",
                elem_classes=["vsae-pixels"],
            )
        image_msg = message_box("image-msg")
        with gr.Row():
            shown = gr.Image(
                label="image",
                interactive=False,
                height=224,
                format="png",
                elem_id="image-shown",
                elem_classes=["vsae-pixels"],
            )
            table = gr.Markdown(elem_id="image-latents")
        heat = gr.Gallery(
            format="png",
            label="where each latent fires (patch heatmaps)",
            columns=N_LATENTS,
            height="auto",
            allow_preview=False,
            visible=explorer.coder.hookpoint != "image",
            elem_id="image-heat",
        )
        model = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": cfg.concurrency_per_model}
        latent_out = [latent_msg, info, grid]
        show.click(show_latent, ref, latent_out, api_name="latent", **model)
        ref.select(show_latent, ref, latent_out, api_visibility="private", **model)
        image_out = [image_msg, shown, table, heat]
        upload.upload(from_upload, upload, image_out, api_name="image", **model)
        pick.select(from_pick, None, image_out, api_visibility="private", **model)
