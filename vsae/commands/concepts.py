"""``vsae concepts name SAE_DIR``: name an SAE's latents (concepts.json / concepts.csv)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``concepts`` and its ``name`` sub-command."""
    p = sub.add_parser(
        "concepts",
        help="name SAE latents against a vocabulary",
        description="Concept naming of SAE latents (see docs/concepts.md).",
    )
    csub = p.add_subparsers(dest="concepts_command", required=True, metavar="SUBCOMMAND")
    n = csub.add_parser(
        "name",
        help="name every latent; writes concepts.json and concepts.csv next to the SAE",
        description=(
            "Name every latent of an SAE by its closest vocabulary word. Text-side naming "
            "(default for an SAE on a CLIP/SigLIP image embedding) compares decoder atoms "
            "with the words' text embeddings; image-side naming (any hookpoint) compares the "
            "mean CLIP embedding of each latent's top-activating images with them. Writes "
            "concepts.json, concepts.csv, latent_stats.safetensors and concepts_run.json."
        ),
    )
    n.add_argument("sae_dir", metavar="SAE_DIR", help="SAE folder (cfg.json + sae.safetensors)")
    n.add_argument(
        "--vocab",
        default="world",
        help="world (tiny-world attribute words), imagenet (open_clip class names and "
        "templates), english (wordfreq's top 20k words), or a text file with one word per "
        "line (default: %(default)s)",
    )
    n.add_argument(
        "--images",
        default=None,
        help="images for frequencies and top images: world:N:SEED, an image folder, .tar "
        "image shards, or an activation-shard folder of `vsae extract` (default for "
        "tiny-world SAEs: world:4000:2025)",
    )
    n.add_argument(
        "--method",
        choices=("text", "image"),
        default=None,
        help="text-side or image-side naming (default: text for CLIP embeddings, else image)",
    )
    n.add_argument(
        "--model",
        default=None,
        help="the SAE's model spec, e.g. open_clip:ViT-L-14 (default: the SAE's provenance)",
    )
    n.add_argument("--pretrained", default=None, help="weights tag or path of --model")
    n.add_argument(
        "--hookpoint", default=None, help="the SAE's hookpoint (default: provenance, or image)"
    )
    n.add_argument(
        "--clip",
        default=None,
        help="CLIP for image-side naming (default: the SAE's model if a CLIP, else world:clip)",
    )
    n.add_argument("--clip-pretrained", default=None, help="weights tag or path of --clip")
    n.add_argument(
        "--pool",
        choices=("max", "mean"),
        default="max",
        help="how an image's token codes are pooled (default: %(default)s)",
    )
    n.add_argument(
        "--top", type=int, default=100, help="top images per latent (default: %(default)s)"
    )
    n.add_argument("--out", default=None, help="output folder (default: SAE_DIR)")
    n.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    n.add_argument("--no-progress", action="store_true", help="hide progress bars")
    n.add_argument("--json", action="store_true", help="print only the summary JSON on stdout")
    n.set_defaults(run=run_name)


def run_name(args: argparse.Namespace) -> int:
    """Name the latents and print a summary."""
    from vsae.analysis.name import name_sae

    if args.top < 1:
        raise ValueError(f"--top {args.top}: expected >= 1")
    table = name_sae(
        args.sae_dir,
        vocab=args.vocab,
        images=args.images,
        method=args.method,
        model=args.model,
        pretrained=args.pretrained,
        hookpoint=args.hookpoint,
        clip_model=args.clip,
        clip_pretrained=args.clip_pretrained,
        pool=args.pool,
        top=args.top,
        out=args.out,
        cache=not args.no_cache,
        progress=not args.no_progress,
    )
    out = Path(args.out or args.sae_dir)
    valid = table.valid
    summary = {
        "concepts_json": str(out / "concepts.json"),
        "concepts_csv": str(out / "concepts.csv"),
        "method": table.method,
        "vocab": table.vocab,
        "n_latents": len(table),
        "n_valid": len(valid),
        "names": sorted({c.name for c in valid}),
        "arguments": {k: v for k, v in vars(args).items() if k not in ("run",)},
    }
    (out / "concepts_run.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    print(f"{len(valid)} of {len(table)} latents are valid concepts ({table.method}-side)")
    for c in sorted(valid, key=lambda c: -c.score)[:20]:
        print(f"  #{c.id:<6} {c.name:<20} score {c.score:.3f} margin {c.margin:.3f}")
    print(f"wrote {out / 'concepts.json'} and {out / 'concepts.csv'}", file=sys.stderr)
    return 0
