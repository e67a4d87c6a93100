"""``vsae search INDEX_DIR``: find images by text, image, concept or latent, with edits."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``search``."""
    p = sub.add_parser(
        "search",
        help="search a concept index (text, image, concept, latent; boost/suppress)",
        description=(
            "Search an index built by `vsae index build`. A --text or --image query can be "
            "concept-edited (MSAE concept search): it is encoded with the SAE, the chosen "
            "concepts are scaled, it is decoded with the SAE's reconstruction error added "
            "back (an empty edit is the plain query), then searched by cosine. --concept and "
            "--latent rank images by that latent's activation. --where / --where-not keep "
            "only images where a concept fires / does not fire. Concept names come from the "
            "SAE's concepts.json (`vsae concepts name`); '#ID' names a latent directly."
        ),
    )
    p.add_argument("index_dir", metavar="INDEX_DIR", help="index folder")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="a text query (needs an index of CLIP image embeddings)")
    q.add_argument("--image", help="an image file, or '#ID' of an image in the index")
    q.add_argument(
        "--concept",
        help="a concept name (its valid latents, codes summed) or '#ID': images where "
        "it is strongest",
    )
    q.add_argument("--latent", type=int, help="a latent id: images where it is strongest")
    p.add_argument(
        "--boost",
        action="append",
        default=[],
        metavar="NAME=F",
        help="scale a concept up: z = F * max(z, its mean activation) (repeatable)",
    )
    p.add_argument(
        "--suppress", action="append", default=[], metavar="NAME", help="remove a concept"
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="NAME",
        help="only images where this concept fires (repeatable)",
    )
    p.add_argument(
        "--where-not",
        action="append",
        default=[],
        metavar="NAME",
        help="only images where this concept does not fire (repeatable)",
    )
    p.add_argument("-k", type=int, default=10, help="results (default: %(default)s)")
    p.add_argument("--sae", default=None, help="SAE folder (default: the index's; must match)")
    p.add_argument("--sheet", default=None, help="also write a PNG contact sheet here")
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the query and print the hits."""
    from vsae.analysis.query import Query, Searcher
    from vsae.analysis.sheet import contact_sheet

    query = Query(
        text=args.text,
        image=args.image,
        concept=args.concept,
        latent=args.latent,
        boost=tuple(args.boost),
        suppress=tuple(args.suppress),
        where=tuple(args.where),
        where_not=tuple(args.where_not),
        k=args.k,
    )
    searcher = Searcher(args.index_dir, args.sae)
    hits = searcher.run(query)
    result = {
        "index": str(args.index_dir),
        "query": {k: v for k, v in vars(args).items() if k not in ("run", "index_dir")},
        "results": [h.to_dict() for h in hits],
    }
    if args.sheet:
        root = searcher.index.meta.get("data")
        contact_sheet(hits, args.sheet, root=root, title=_title(args))
        result["sheet"] = args.sheet
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    for h in hits:
        labels = " ".join(f"{v}" for v in h.labels.values())
        print(f"{h.rank:>3}  {h.score:8.4f}  #{h.id:<8} {h.key}  {labels}")
    return 0


def _title(args: argparse.Namespace) -> str:
    what = args.text or args.image or args.concept or f"latent {args.latent}"
    edits = [f"+{b}" for b in args.boost] + [f"-{s}" for s in args.suppress]
    return f"{what} {' '.join(edits)}".strip()
