"""``vsae demo``: the Gradio demo (apps/demo), offline on the tiny world by default.

On the tiny world, the image SAE it needs is built on first start with the library's own
functions (tiny-CLIP embeddings of world renders -> activation shards -> SAE training) and
cached under ``~/.cache/vsae/demo`` (``$VSAE_DEMO_CACHE``); later starts reuse it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from vsae.commands.demo_bias import prepare_world_bias
from vsae.commands.demo_diffusion import prepare_world_diffusion, recipe_dirs

# Bump when the recipe below changes, so stale caches are rebuilt rather than trusted.
ASSETS_VERSION = 3
WORLD_RECIPE = {"n_images": 4000, "steps": 300, "expansion": 8, "k": 8, "seed": 0}


class DemoError(ValueError):
    """A bad argument or folder for ``vsae demo`` (one line on stderr, exit 2)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo",
        help="the interactive Gradio demo (tiny world offline by default)",
        description=(
            "Serve the Gradio demo on HOST:PORT (127.0.0.1 by default: only this machine can "
            "reach it; no public share link). Without folders it uses the shipped tiny world "
            "and builds the SAE it needs on first start (a few minutes, cached in "
            "$VSAE_DEMO_CACHE or ~/.cache/vsae/demo). With real models, pass the folders "
            "built with the CLI; the demo then assumes nothing about the tiny world."
        ),
    )
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s; 0.0.0.0 exposes the demo to the network)",
    )
    p.add_argument("--clip-sae", default=None, help="SAE folder trained on image embeddings")
    p.add_argument("--index", default=None, help="index folder built with `vsae index build`")
    p.add_argument(
        "--diffusion-sae",
        default=None,
        metavar="DIR@BLOCK",
        help="SAE folder on a U-Net block and the block it hooks",
    )
    p.add_argument(
        "--pipeline",
        default="world",
        help="`world` (the shipped tiny diffusion model) or a diffusers repo id / folder",
    )
    p.add_argument(
        "--model",
        default=None,
        help="image-text model spec, e.g. open_clip:ViT-L-14 (default: world:clip)",
    )
    p.add_argument("--pretrained", default=None, help="weights tag or checkpoint of --model")
    p.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="DIR",
        help="an unlearning recipe fitted on --diffusion-sae (repeatable; a toggle each on the "
        "Generate tab)",
    )
    p.add_argument(
        "--bias-set",
        default=None,
        metavar="DIR",
        help="the Bias tab's data: a bias set folder (embeddings of --clip-sae's input with "
        "attributes, train and test splits; see docs/demo.md); default: the biased tiny-world "
        "set, built on first start",
    )
    p.add_argument(
        "--images",
        default=None,
        help=(
            "the Explore tab's gallery: a folder of images, WebDataset shards, or world:N:SEED "
            "(default: world:1000:77, held-out renders, for a tiny-world model; required "
            "otherwise)"
        ),
    )
    p.add_argument(
        "--n-images",
        type=int,
        default=1000,
        help="encode at most this many gallery images at start (default: %(default)s)",
    )
    p.add_argument(
        "--max-file-size", type=int, default=8, help="largest upload in MB (default: %(default)s)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="requests running at once per model; the rest queue (default: %(default)s)",
    )
    p.add_argument(
        "--cache", default=None, help="cache folder (default: $VSAE_DEMO_CACHE or ~/.cache/...)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: torch's; 1 is fastest on a busy machine, "
        "where requests run side by side)",
    )
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="build the cache and the models, print what is ready as JSON, then exit",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    p.set_defaults(run=run)


def prepare_world(cache: Path, progress: bool = True) -> Path:
    """Build (once) the tiny-world image SAE the default demo uses; return its folder.

    Parameters
    ----------
    cache
        The demo's cache folder; ``cache/world-vN/clip_sae`` is written.
    progress
        Show progress bars (stderr).

    Returns
    -------
    Path
        The SAE folder (``cfg.json``, ``sae.safetensors``, ``metrics.json``, and
        ``concepts.json``: its latents named text-side against the world's attribute words).
    """
    from vsae.analysis import name_sae
    from vsae.commands.world_data import BATCH_SIZE, HOOKPOINT, world_clip_shards
    from vsae.config import SAEConfig, TrainConfig
    from vsae.sae.io import write_provenance
    from vsae.training import train

    root = cache / f"world-v{ASSETS_VERSION}"
    sae_dir = root / "clip_sae"
    stamp = root / "assets.json"
    if stamp.is_file() and (sae_dir / "concepts.json").is_file():
        return sae_dir
    r = WORLD_RECIPE
    t0 = time.perf_counter()
    print(f"vsae demo: first start, building the tiny-world SAE in {root}", file=sys.stderr)
    d, data = world_clip_shards(root / "shards", r["n_images"], r["seed"], progress)
    sae_cfg = SAEConfig(arch="matryoshka_k", d_in=d, expansion=r["expansion"], k=r["k"])
    train_cfg = TrainConfig(
        batch_size=BATCH_SIZE,
        steps=r["steps"],
        lr=2e-3,
        warmup_steps=r["steps"] // 10,
        eval_every=r["steps"],
        eval_samples=512,
        seed=r["seed"],
        progress=progress,
    )
    train(sae_cfg, data, train_cfg, out_dir=sae_dir, hookpoint=HOOKPOINT)
    write_provenance(
        sae_dir,
        {"source": "world:clip", "pretrained": None, "hookpoint": "image", "token_mode": "cls"},
    )
    # frequencies and top images from the Explore gallery's renders (held out, 1000: a quarter
    # of name_sae's default set, to keep the first start within its budget)
    table = name_sae(sae_dir, vocab="world", images=WORLD_GALLERY, progress=progress)
    print(
        f"vsae demo: named {len(table.valid)} of {len(table)} latents (concepts.json)",
        file=sys.stderr,
    )
    record = {
        "version": ASSETS_VERSION,
        "recipe": r,
        "source": "world:clip",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    stamp.write_text(json.dumps(record, indent=2))
    return sae_dir


WORLD_GALLERY = "world:1000:77"  # renders of a seed no training run of the demo uses


def prepare_world_index(root: Path, sae_dir: Path, images: str) -> Path:
    """Build (once) the default Search tab's index of the Explore gallery's renders.

    Parameters
    ----------
    root : Path
        The demo's versioned cache folder; ``root/index`` is written.
    sae_dir : Path
        The image SAE (named).
    images : str
        The renders (``world:N:SEED``): the same as the gallery, so hits show its thumbnails.

    Returns
    -------
    Path
        The index folder.
    """
    from vsae.analysis import build_index, sae_model_spec

    out = root / "index"
    if (out / "index.json").is_file():
        return out
    print(f"vsae demo: first start, indexing {images} in {out}", file=sys.stderr)
    return build_index(sae_dir, images, out, sae_model_spec(sae_dir))


def _gallery(args: argparse.Namespace) -> str | None:
    """The Explore gallery: --images, else held-out world renders for a tiny-world model."""
    from vsae.sae.io import CheckpointError, read_provenance

    if args.images or not args.clip_sae or not Path(args.clip_sae).is_dir():
        return args.images  # a missing folder is reported by DemoSources
    try:
        model = args.model or read_provenance(args.clip_sae).get("source") or ""
    except CheckpointError as e:
        raise DemoError(str(e)) from None
    if model.startswith("world:"):
        return WORLD_GALLERY
    raise DemoError(
        f"--clip-sae {args.clip_sae} is on {model or 'an unrecorded model'}: pass --images "
        "DIR, the images the Explore tab shows (and --model if cfg.json records none)"
    )


def _sources(args: argparse.Namespace):
    from apps.demo import DemoSources

    try:
        return DemoSources(
            clip_sae=Path(args.clip_sae) if args.clip_sae else None,
            index=Path(args.index) if args.index else None,
            diffusion_sae=args.diffusion_sae,
            pipeline=args.pipeline,
            model=args.model,
            pretrained=args.pretrained,
            recipes=tuple(args.recipe),
            bias_set=Path(args.bias_set) if args.bias_set else None,
            images=_gallery(args),
            n_images=args.n_images,
        )
    except ValueError as e:
        raise DemoError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Prepare the sources, build the app and serve it until interrupted."""
    from apps.demo import (
        DemoConfig,
        LoadError,
        background_loads,
        build_app,
        default_cache_dir,
        launch,
    )

    try:
        cache = Path(args.cache) if args.cache else default_cache_dir()
        if args.model and not args.clip_sae:
            raise DemoError("--model needs --clip-sae: an SAE trained on that model's embeddings")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        if args.clip_sae is None and args.diffusion_sae is None and args.pipeline == "world":
            # nothing given: the default demo on the shipped tiny world, built once and cached
            args.clip_sae = str(prepare_world(cache, progress=not args.no_progress))
            root = cache / f"world-v{ASSETS_VERSION}"
            args.index = str(prepare_world_index(root, Path(args.clip_sae), WORLD_GALLERY))
            args.diffusion_sae = prepare_world_diffusion(root, progress=not args.no_progress)
            args.recipe = [str(p) for p in recipe_dirs(root)]
            args.bias_set = str(prepare_world_bias(root, progress=not args.no_progress))
        sources = _sources(args)
        try:
            cfg = DemoConfig(
                host=args.host,
                port=args.port,
                max_file_size=args.max_file_size * 1024 * 1024,
                concurrency_per_model=args.concurrency,
            )
        except ValueError as e:
            raise DemoError(str(e)) from None
        try:
            app = build_app(cfg, sources, cache)
        except ValueError as e:  # SAE/model mismatch, bad concepts.json, unreadable gallery
            raise DemoError(str(e)) from None
        seconds = round(time.perf_counter() - t0, 1)
        if args.prepare_only:
            try:  # what a served demo loads behind the page is checked here too
                for load in background_loads(app):
                    load.get()
            except LoadError as e:
                raise DemoError(str(e)) from None
            seconds = round(time.perf_counter() - t0, 1)
            ready = {
                "cache": str(cache),
                "clip_sae": str(sources.clip_sae),
                "bias_set": str(sources.bias_set) if sources.bias_set else None,
            }
            print(json.dumps({**ready, "diffusion_sae": sources.diffusion_sae, "seconds": seconds}))
            return 0
        print(f"vsae demo: ready in {seconds} s", file=sys.stderr)
        url = launch(app, cfg, prevent_thread_lock=True)
        behind = ", ".join(b.what for b in background_loads(app))
        later = f"; loading {behind} behind it" if behind else ""
        print(f"vsae demo: serving on {url} (Ctrl-C to stop){later}", file=sys.stderr, flush=True)
        app.block_thread()
        return 0
    except (DemoError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"vsae demo: error: {e}", file=sys.stderr)
        return 2
