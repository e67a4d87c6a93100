"""``vsae extract``: model activations over images or prompts -> WebDataset shards."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

HELP = "extract model activations to half-precision WebDataset shards"
DESCRIPTION = """Extract model activations to half-precision WebDataset shards in --out.

An interrupted run continues after its last complete shard when run again (the default;
--no-resume refuses instead). The data (world spec, a folder's file list, a prompt file) is
part of the folder's identity: other data is refused.

Many processes: `torchrun --nproc_per_node N -m vsae extract ...` (or over nodes that share
--out) gives each rank the inputs whose index is its rank modulo N; each writes and resumes
--out/part-RANK-of-N, and rank 0 merges the parts into --out when all are done. Without
torchrun (SLURM arrays), run `vsae extract ... --part i/N` for i = 0 .. N-1, then
`vsae shards merge OUT`. A merged folder reads exactly like a single-process one."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``extract`` on an argparse sub-parser collection and return its parser."""
    p = subparsers.add_parser(
        "extract",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source",
        required=True,
        help="open_clip:<arch> | timm:<model> | diffusers:<repo or path> | "
        "world:<clip|siglip|diffusion>",
    )
    p.add_argument(
        "--pretrained",
        default=None,
        help="weights tag (e.g. laion2b_s34b_b79k; needs the local cache offline) or a local "
        "checkpoint path; 'none' means random weights for open_clip:/timm:/diffusers: but the "
        "shipped trained weights for world: (the tiny world's models)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="image folder, WebDataset tars (a.tar, 'd/{000..009}.tar', 'd/*.tar'), "
        "prompt .txt file, or world[:N[:SEED]] for the tiny world's generator (N scenes, "
        "default 1000, of scene seed SEED, default 0)",
    )
    p.add_argument(
        "--hookpoints",
        type=_csv,
        default=None,
        help="comma-separated, e.g. image,text,blocks.6 (open_clip), blocks.11 "
        "(timm), down_blocks.2.attentions.1 (diffusers)",
    )
    p.add_argument("--out", required=True, help="output directory (resumed if interrupted)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="inputs per model forward (default 32; lower it when memory runs short)",
    )
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
    p.add_argument(
        "--token-seed",
        type=int,
        default=0,
        help="seed of the random token choice of --max-tokens (default 0; the positions kept "
        "are stored with each sample)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N inputs")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first unreadable image instead of skipping it",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="refuse to continue an existing dataset in --out"
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the model runs: cpu, cuda or cuda:N (under torchrun, cuda means "
        "cuda:LOCAL_RANK); default cpu",
    )
    p.add_argument(
        "--part",
        default=None,
        metavar="I/N",
        help="extract only part I of N of the inputs (index modulo N) into --out/part-I-of-N, "
        "resumable on its own; merge the N parts with `vsae shards merge OUT` (torchrun sets "
        "the part from RANK/WORLD_SIZE and merges by itself)",
    )
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
    g.add_argument(
        "--latent-size",
        type=int,
        default=None,
        help="height = width of the initial latents, in latent pixels (default: the U-Net's "
        "sample_size)",
    )
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


def _ranks(args: argparse.Namespace) -> tuple[tuple[int, int] | None, object | None]:
    """This process's part: from --part, or from torchrun's RANK/WORLD_SIZE (then its info)."""
    from vsae.data.shard_parts import parse_part
    from vsae.training.distributed import setup_distributed

    part = parse_part(args.part) if args.part is not None else None
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return part, None
    if part is not None:
        raise ValueError("--part and torchrun both split the inputs; give one of them")
    # gloo for the one barrier before the merge; ranks may finish hours apart
    info = setup_distributed(backend="gloo", timeout_s=7 * 24 * 3600.0)
    if args.device == "cuda":
        args.device = f"cuda:{info.local_rank}"
    return (info.rank, info.world_size), info


def run(args: argparse.Namespace) -> int:
    """Run ``vsae extract``; print a JSON summary; return the exit code."""
    from vsae.data.shard_parts import merge_parts
    from vsae.encoders import SourceError
    from vsae.extract import extract
    from vsae.training.distributed import exit_distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    part, dist_info = _ranks(args)
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
            part=part,
        )
        if dist_info is not None:
            import torch.distributed as dist

            dist.barrier()  # every part is complete
            if dist_info.rank != 0:
                exit_distributed(0)
            meta = merge_parts(args.out)
    except (SourceError, ValueError, FileNotFoundError, FileExistsError) as exn:
        print(f"vsae extract: error: {exn}", file=sys.stderr)
        if dist_info is not None:
            exit_distributed(2)
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
    if part is not None and dist_info is None and not meta.get("extra", {}).get("parts"):
        summary["part"] = f"{part[0]}/{part[1]}"
        summary["next"] = f"when all {part[1]} parts are done: vsae shards merge {args.out}"
    print(json.dumps(summary, indent=1))
    if dist_info is not None:
        exit_distributed(0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m vsae.commands.extract ...``)."""
    parser = argparse.ArgumentParser(prog="vsae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["extract", *(argv if argv is not None else sys.argv[1:])])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
