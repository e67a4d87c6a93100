"""The Search tab: query the concept index by text, image or concept name; boost or suppress
the query's top concepts with sliders (the results update); must / must-not contain filters.

Layout and callbacks only: queries run through :class:`vsae.analysis.Searcher` (MSAE concept
search: encode, scale concepts, decode, add back the reconstruction error, cosine search).
Result images are the Explore gallery's thumbnails of the hits' keys.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from vsae.analysis import ConceptError, Explorer, Query, Searcher, top_latents

from .config import DemoConfig
from .messages import message_box, ok, problem
from .uploads import UploadError, load_upload

N_EDITS = 3  # sliders for the query's top concepts
CONCURRENCY_ID = "clip"  # the same model as Explore


def build(cfg: DemoConfig, searcher: Searcher, explorer: Explorer) -> None:
    """Add the Search tab to the enclosing ``gr.Blocks``.

    Parameters
    ----------
    cfg
        Upload limits and the per-model concurrency.
    searcher
        The index with its SAE and concepts (shared, read-only).
    explorer
        Its gallery shows the hits (the index's keys are the gallery's).

    Raises
    ------
    ValueError
        The index holds images that are not in the gallery (it was built on other images).
    """
    table = searcher.table
    names = sorted({c.name for c in table.valid}) if table is not None else []
    where = {k: i for i, k in enumerate(explorer.gallery.keys)}
    missing = [k for k in searcher.index.keys if k not in where]
    if missing:
        raise ValueError(
            f"the index {searcher.index.folder} holds {len(missing)} images that are not in the "
            f"Explore gallery (e.g. {missing[0]!r}); build it on the --images the demo shows, "
            f"with --n-images >= {len(searcher.index)}"
        )
    if searcher.index.model.is_clip_embedding:
        _ = searcher.clip  # load the text tower now, not racing in the first two queries

    def _query(mode, text, upload, concept, must, must_not, k, edits):
        kw = {"where": tuple(must or ()), "where_not": tuple(must_not or ()), "k": int(k)}
        if mode == "text":
            if not (text or "").strip():
                raise ConceptError("Type a text query first (e.g. 'a red circle').")
            return Query(text=text.strip(), **kw, **edits)
        if mode == "image":
            load_upload(upload, cfg.max_file_size, cfg.max_pixels)  # checked before it is read
            return Query(image=upload, **kw, **edits)
        if not concept:
            raise ConceptError("Pick a concept to search for.")
        return Query(concept=str(concept), **kw)

    def _top_concepts(q: Query) -> list[str]:
        if q.concept is not None:
            return []
        x_D = searcher.query_vector(Query(text=q.text, image=q.image))
        with torch.no_grad():
            codes_1N = searcher.sae.encode(torch.as_tensor(np.asarray(x_D))[None].float())
        out = []
        for f, _ in top_latents(codes_1N, 8):
            c = table[f] if table is not None else None
            if c is not None and c.valid and c.name and c.name not in out:
                out.append(c.name)
        return out[:N_EDITS]

    def _gallery(hits):
        shown = []
        for h in hits:
            i = where.get(h.key)
            img = explorer.gallery.thumbnail(i) if i is not None else None
            shown.append((img, f"{h.rank}. {h.score:.3f}"))
        return [s for s in shown if s[0] is not None]

    def _edits(slots) -> dict:
        pairs = [(slots[2 * j], slots[2 * j + 1]) for j in range(N_EDITS)]
        boost = tuple(f"{n}={float(v):g}" for n, v in pairs if n and float(v) > 0 and v != 1)
        suppress = tuple(n for n, v in pairs if n and float(v) == 0)
        return {"boost": boost, "suppress": suppress}

    def search(mode, text, upload, concept, must, must_not, k):
        try:
            q = _query(mode, text, upload, concept, must, must_not, k, {})
            tops = _top_concepts(q)
            hits = searcher.run(q)
        except (ConceptError, UploadError, ValueError) as e:
            return problem(str(e), 1 + 2 * N_EDITS)
        picks = [gr.update(value=tops[j] if j < len(tops) else None) for j in range(N_EDITS)]
        return ok(), _gallery(hits), *picks, *[gr.update(value=1.0)] * N_EDITS

    def search_edited(mode, text, upload, concept, must, must_not, k, *slots):
        if mode == "concept":
            return problem("Concept edits apply to text and image queries.", 1)
        try:
            hits = searcher.run(
                _query(mode, text, upload, concept, must, must_not, k, _edits(slots))
            )
        except (ConceptError, UploadError, ValueError) as e:
            return problem(str(e), 1)
        return ok(), _gallery(hits)

    with gr.Tab("Search", id="search"):
        gr.Markdown(
            "Search the index by text, by an image or by a concept name. After a text or image "
            "query, its top concepts appear below: move a slider to boost (> 1) or suppress (0) "
            "one and the results update. Filters keep only images where a concept fires (or "
            "does not)."
        )
        with gr.Row():
            mode = gr.Radio(["text", "image", "concept"], value="text", label="query by")
            k = gr.Slider(1, 32, value=12, step=1, label="results")
        text = gr.Textbox(label="text", value="a red circle", elem_id="search-text")
        with gr.Row():
            upload = gr.File(
                label="image", file_types=["image"], type="filepath", elem_id="search-upload"
            )
            concept = gr.Dropdown(
                names,
                value=None,
                allow_custom_value=True,
                label="concept",
                elem_id="search-concept",
            )
        with gr.Row():
            must = gr.Dropdown(names, multiselect=True, label="must contain", elem_id="search-must")
            must_not = gr.Dropdown(
                names, multiselect=True, label="must not contain", elem_id="search-must-not"
            )
        go = gr.Button("Search", variant="primary", elem_id="search-go")
        slots = []
        with gr.Row():
            for j in range(N_EDITS):
                with gr.Column():
                    slots.append(
                        gr.Dropdown(
                            names, value=None, label=f"concept {j + 1}", elem_id=f"search-edit-{j}"
                        )
                    )
                    slots.append(
                        gr.Slider(
                            0,
                            4,
                            value=1,
                            step=0.5,
                            label="x (0 suppresses)",
                            elem_id=f"search-factor-{j}",
                        )
                    )
        msg = message_box("search-msg")
        results = gr.Gallery(
            label="results (rank. score)",
            columns=6,
            height="auto",
            allow_preview=False,
            format="png",
            elem_id="search-results",
            elem_classes=["vsae-pixels"],
        )
        model = {"concurrency_id": CONCURRENCY_ID, "concurrency_limit": cfg.concurrency_per_model}
        query = [mode, text, upload, concept, must, must_not, k]
        go.click(
            search, query, [msg, results, *slots[0::2], *slots[1::2]], api_name="search", **model
        )
        for s in slots[1::2]:
            s.release(
                search_edited, query + slots, [msg, results], api_visibility="private", **model
            )
