"""``vsae extract``: model activations over images or prompts -> WebDataset shards."""

from __future__ import annotations

import argparse
import json
import logging
import sys

HELP = "extract model activations to half-precision WebDataset shards"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``extract`` on an argparse sub-parser collection and return its parser."""
    p = subparsers.add_parser("extract", help=HELP, description=HELP)
    p.add_argument(
        "--source",
        required=True,
        help="open_clip:<arch> | timm:<model> | diffusers:<repo or path> | "
        "world:<clip|siglip|diffusion>",
    )
    p.add_argument(
        "--pretrained",
        default=None,
        help="weights tag or local checkpoint path; 'none' for random weights",
    )
    p.add_argument(
        "--data",
        required=True,
        help="image folder, WebDataset tars (a.tar, 'd/{000..009}.tar', 'd/*.tar'), "
        "prompt .txt file, or world[:N] for the tiny world's generator",
    )
    p.add_argument(
        "--hookpoints",
        type=_csv,
        default=None,
        help="comma-separated, e.g. image,text,blocks.6 (open_clip), blocks.11 "
        "(timm), down_blocks.2.attentions.1 (diffusers)",
    )
    p.add_argument("--out", required=True, help="output directory (resumed if interrupted)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument(
        "--tokens",
        choices=("cls", "patches", "all"),
        default=None,
        help="ViT block tokens to keep (default cls)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="keep at most N random tokens per sample and hookpoint",
    )
    p.add_argument("--token-seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N inputs")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first unreadable image instead of skipping it",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="refuse to continue an existing dataset in --out"
    )
    p.add_argument("--device", default="cpu")
    g = p.add_argument_group("diffusers sources")
    g.add_argument(
        "--output",
        choices=("update", "output"),
        default=None,
        help="block update (output - input) or block output (default update)",
    )
    g.add_argument("--num-steps", type=int, default=None, help="denoising steps (default 50)")
    g.add_argument(
        "--timesteps",
        default=None,
        help="step indices to record, comma-separated, or 'all' (default all)",
    )
    g.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale; > 1 keeps the conditional half",
    )
    g.add_argument("--latent-size", type=int, default=None)
    g.add_argument(
        "--prompt-encoder",
        choices=("pipeline", "hash"),
        default=None,
        help="the pipeline's text encoder, or a fixed random embedding per prompt",
    )
    g.add_argument("--seed", type=int, default=None, help="seed of the initial latents")
    g.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default=None,
        help="weights dtype of a loaded pipeline or U-Net (default float32)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def source_options(args: argparse.Namespace) -> dict:
    """The family options given on the command line (unset ones keep the family default)."""
    opts: dict = {"device": args.device}
    family = args.source.split(":", 1)[0]
    if args.tokens is not None:
        opts["tokens"] = args.tokens
    diff = {
        "output": args.output,
        "num_steps": args.num_steps,
        "guidance": args.guidance,
        "latent_size": args.latent_size,
        "prompt_encoder": args.prompt_encoder,
        "seed": args.seed,
        "dtype": args.dtype,
    }
    if args.timesteps is not None:
        diff["timesteps"] = (
            "all" if args.timesteps == "all" else [int(t) for t in _csv(args.timesteps)]
        )
    given = {k: v for k, v in diff.items() if v is not None}
    if given and family not in ("diffusers", "world"):
        raise ValueError(
            f"options {sorted(given)} apply to diffusers sources only, not {args.source!r}"
        )
    opts.update(given)
    return opts


def run(args: argparse.Namespace) -> int:
    """Run ``vsae extract``; print a JSON summary; return the exit code."""
    from vsae.encoders import SourceError
    from vsae.extract import extract

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        meta = extract(
            args.source,
            args.data,
            args.out,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            resume=not args.no_resume,
            strict=args.strict,
            max_tokens=args.max_tokens,
            token_seed=args.token_seed,
            limit=args.limit,
            progress=not args.quiet,
            pretrained=args.pretrained,
            hookpoints=args.hookpoints,
            source_opts=source_options(args),
        )
    except (SourceError, ValueError, FileNotFoundError, FileExistsError) as exn:
        print(f"vsae extract: error: {exn}", file=sys.stderr)
        return 2
    summary = {
        "out": str(args.out),
        "source": meta["source"],
        "n_samples": meta["n_samples"],
        "n_shards": len(meta["shards"]),
        "n_skipped": meta["n_skipped"],
        "skipped": [s["key"] for s in meta["skipped"]],
        "hookpoints": {
            hp: {"d": h["d"], "n_vectors": h["n_vectors"]} for hp, h in meta["hookpoints"].items()
        },
    }
    print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m vsae.commands.extract ...``)."""
    parser = argparse.ArgumentParser(prog="vsae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["extract", *(argv if argv is not None else sys.argv[1:])])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
