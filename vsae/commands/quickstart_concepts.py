"""The concepts part of ``vsae quickstart``: name the SAE's latents, index the renders, run
one concept-edited search and write its contact sheet, as lines for the report."""

from __future__ import annotations

from pathlib import Path


def concepts_section(
    out: Path, seed: int, n_images: int = 2000, progress: bool = False
) -> list[str]:
    """Name ``out/sae``'s latents, index ``out/shards`` and search; return Markdown lines.

    Parameters
    ----------
    out : Path
        The quickstart folder (``sae/`` and ``shards/`` inside).
    seed : int
        The quickstart's seed; naming uses renders of another seed.
    n_images : int
        Renders to name with (at most 2000).
    progress : bool

    Returns
    -------
    list of str
        The report's "Concepts" section.
    """
    from vsae.analysis import ModelSpec, Query, Searcher, build_index, contact_sheet, name_sae

    spec = ModelSpec("world:clip", None, "image")
    table = name_sae(
        out / "sae",
        "world",
        f"world:{max(500, min(2000, n_images))}:{seed + 1}",
        method="image",
        model="world:clip",
        progress=progress,
    )
    build_index(out / "sae", out / "shards", out / "index", spec, progress=progress)
    searcher = Searcher(out / "index")
    valid = sorted(table.valid, key=lambda c: -c.score)
    names = {c.name for c in valid}
    lines = [
        "## Concepts",
        "",
        f"{len(valid)} of {len(table)} latents are valid concepts (image-side naming against "
        f"the world's attribute words; `sae/concepts.json`, `sae/concepts.csv`).",
        "",
        "| latent | name | score | margin | freq | top-image purity |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| #{c.id} | {c.name} | {c.score:.3f} | {c.margin:.3f} | {c.freq:.3f} | "
            f"{c.purity:.2f} |"
            for c in valid[:12]
        ],
        "",
    ]
    # valid colour concepts first; latents whose name is a colour but did not pass the
    # thresholds only when fewer than two are valid (search resolves names the same way)
    named = {c.name for c in table.concepts if c.name}
    palette = ("red", "blue", "green", "yellow", "purple", "orange", "cyan", "pink")
    colours = [c for c in palette if c in names] + [
        c for c in palette if c in named and c not in names
    ]
    if len(colours) < 2:
        return [*lines, "No two latents are named after colours: no edited search.", ""]
    a, b = colours[0], colours[1]
    qid = next((i for i, lab in enumerate(searcher.index.labels) if lab.get("colour") == a), 0)
    hits = searcher.run(Query(image=f"#{qid}", suppress=(a,), boost=(f"{b}=2",), k=10))
    sheet = contact_sheet(hits, out / "search.png", title=f"#{qid} -{a} +{b}=2")
    share = sum(h.labels.get("colour") == b for h in hits) / max(1, len(hits))
    return [
        *lines,
        "### A concept-edited search",
        "",
        f"`vsae search {out / 'index'} --image '#{qid}' --suppress {a} --boost {b}=2`: the "
        f"query is a {a} {searcher.index.labels[qid].get('shape', '')}; "
        f"{share:.0%} of the top 10 are {b}.",
        "",
        f"![search]({sheet.name})",
        "",
    ]
