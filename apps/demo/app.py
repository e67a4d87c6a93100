"""Assemble the demo: one ``gr.Blocks`` with a tab per feature, queued, bound to localhost."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import about, bias, explore, generate, search
from .background import Background
from .config import DemoConfig
from .messages import CSS as MESSAGE_CSS
from .models import load_bias_set, load_diffusion, load_explorer, load_searcher
from .sources import DemoSources

# small renders are shown enlarged (class vsae-pixels): keep their pixels sharp
CSS = MESSAGE_CSS + "\n.vsae-pixels img { image-rendering: pixelated; }"


def build_app(cfg: DemoConfig, sources: DemoSources, cache: Path | None = None) -> gr.Blocks:
    """The demo's ``gr.Blocks`` with the queue enabled (nothing launched yet).

    Parameters
    ----------
    cfg
        Serving settings: upload limits, per-model concurrency.
    sources
        The folders and models the tabs read; a tab whose inputs are missing is left out.
    cache
        Where start-up computations (the Explore gallery's codes) are kept between starts.

    Returns
    -------
    gr.Blocks
        The app; call :func:`launch` to serve it. What it loads in the background once
        served (the diffusion pipeline, the Bias tab's first analysis): see
        :func:`background_loads`.
    """
    explorer = load_explorer(sources, cache)
    searcher = load_searcher(sources) if explorer is not None else None
    bias_set = load_bias_set(sources, explorer)
    diffusion = load_diffusion(sources)
    loaded = (
        ("Explore", explorer),
        ("Search", searcher),
        ("Bias", bias_set),
        ("Generate", diffusion),
    )
    tabs = [name for name, m in loaded if m is not None]
    behind: list[Background] = []  # loaded once the page is served (launch starts them)
    with gr.Blocks(title="vsae demo", analytics_enabled=False) as app:
        about.build(cfg, sources, tabs)
        if explorer is not None:
            explore.build(cfg, explorer)
        if searcher is not None:
            search.build(cfg, searcher, explorer)
        if bias_set is not None:
            behind.append(bias.build(cfg, bias_set, explorer.coder.sae, explorer.concepts))
        if diffusion is not None:
            generate.build(diffusion)
            behind.insert(0, diffusion.gen)
    # Callbacks name their model in concurrency_id; this is the limit for any that don't.
    app.queue(default_concurrency_limit=cfg.concurrency_per_model, max_size=64)
    app.vsae_background = tuple(behind)
    return app


def background_loads(app: gr.Blocks) -> tuple[Background, ...]:
    """The models ``app`` loads after it is served (:func:`launch` starts them).

    Parameters
    ----------
    app
        From :func:`build_app`.

    Returns
    -------
    tuple of Background
        ``get()`` on each waits for it and raises ``LoadError`` when it failed.
    """
    return tuple(getattr(app, "vsae_background", ()))


def launch(app: gr.Blocks, cfg: DemoConfig, prevent_thread_lock: bool = False) -> str:
    """Serve ``app`` on ``cfg.host:cfg.port`` with no share link, then start loading its
    background models; returns the local URL.

    Parameters
    ----------
    app
        From :func:`build_app`.
    cfg
        Host, port, upload size limit; ``share`` stays False unless set there.
    prevent_thread_lock
        Return at once instead of blocking (tests; close with ``app.close()``).

    Returns
    -------
    str
        The URL the app answers on.
    """
    _, local_url, _ = app.launch(
        server_name=cfg.host,
        server_port=cfg.port,
        share=cfg.share,
        max_file_size=cfg.max_file_size,
        prevent_thread_lock=prevent_thread_lock,
        show_error=False,
        css=CSS,
        quiet=True,
        footer_links=["settings"],
        mcp_server=False,
        ssr_mode=False,
        pwa=False,
    )
    for load in background_loads(app):
        load.start()
    return local_url
