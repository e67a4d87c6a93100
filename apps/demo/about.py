"""The Instructions tab: what the demo is, what it was started with, how to use it."""

from __future__ import annotations

import gradio as gr

from .config import DemoConfig
from .sources import DemoSources

INTRO = """\
# vsae demo

Sparse autoencoders (SAEs) split a model's embeddings into many sparse *latents*, most of
which stand for one human concept. This demo lets you look at them.

- **Instructions** (this tab): what the demo was started with and its limits.
- Further tabs appear when the folders they need were given at start (see `vsae demo --help`).

Everything runs on this machine; nothing is sent anywhere. The demo only reads the folders
listed below: no path typed in the page reaches the file system.
"""


def build(cfg: DemoConfig, sources: DemoSources, tabs: list[str]) -> None:
    """Add the Instructions tab to the enclosing ``gr.Blocks``.

    Parameters
    ----------
    cfg
        Serving settings (upload limits are shown to the user).
    sources
        The folders and models this demo reads.
    tabs
        Names of the other tabs this app has, listed for the user.
    """
    with gr.Tab("Instructions", id="about"):
        gr.Markdown(INTRO)
        table = "\n".join(f"| {what} | `{value}` |" for what, value in sources.describe())
        gr.Markdown("| source | value |\n|---|---|\n" + table, elem_id="sources")
        limits = (
            f"Uploads: at most {cfg.max_file_size / 1e6:.0f} MB and {cfg.max_pixels:,} pixels, "
            f"PNG/JPEG/WEBP/GIF/BMP. At most {cfg.concurrency_per_model} requests run at once "
            "per model; others wait in the queue."
        )
        gr.Markdown(limits, elem_id="limits")
        gr.Markdown("Tabs: " + (", ".join(tabs) if tabs else "none besides this one."))
