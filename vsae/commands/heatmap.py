"""``vsae heatmap``: where an SAE's latents fire on a generated image, as colour overlays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsae.commands.generate import _load, add_pipeline_arguments

HELP = """Generate an image and draw where SAE latents fire on the block's grid.

The SAE (--sae DIR@BLOCK) is attached without edits, so the image is the bare pipeline's; its
codes at every grid position are recorded, averaged over the denoising steps or taken at one
(--timestep), upsampled onto the image and drawn as an overlay (heatmap-IMAGE-LATENT.png).
Choose the latents (--latents 3,17 or concept names from concepts.json) or take each image's
--top N by spatial mean. heatmaps.json lists the top latents with their names (when the SAE has
a concepts.json) and the files.

Example: vsae heatmap --sae runs/blk@up_blocks.1.attentions.0 --prompt "a red circle" \\
    --top 5 --out out/heat"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``heatmap``."""
    p = sub.add_parser(
        "heatmap",
        help="activation heatmaps of SAE latents on generated images",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pipeline_arguments(p)
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    p.add_argument(
        "--latents",
        default=None,
        metavar="REF,REF",
        help="latents to draw: ids (12 or #12) or concept names, comma-separated",
    )
    p.add_argument(
        "--top", type=int, default=5, help="else each image's top N latents (default: %(default)s)"
    )
    p.add_argument(
        "--timestep",
        type=int,
        default=None,
        metavar="STEP",
        help="use the codes of denoising step STEP (0 = the first); default: mean over steps",
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate, record, draw; write ``heatmaps.json`` with the arguments."""
    from vsae.interventions import InterventionError, latent_maps, latent_names, save_heatmaps
    from vsae.interventions.spec import resolve_latent

    if len(args.sae) != 1:
        raise InterventionError(f"give exactly one --sae DIR@BLOCK, got {len(args.sae)}")
    if args.top < 1:
        raise InterventionError(f"--top {args.top}: expected at least 1")
    if any(not p.strip() for p in args.prompt):
        raise InterventionError("--prompt is empty")
    gen, refs, bsaes = _load(args)
    latents = None
    if args.latents:
        refs_ = [t for t in args.latents.split(",") if t.strip()]
        latents = [resolve_latent(t, [refs[0].path], [bsaes[0].sae.n_latents])[1] for t in refs_]
    maps = latent_maps(
        gen, bsaes[0], args.prompt, args.num_steps, args.seed, args.guidance, args.timestep
    )
    summary = save_heatmaps(maps, latents, args.top, args.out, names=latent_names(refs[0].path))
    summary = {
        "command": "heatmap",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("run", "debug")},
        "sae": {"path": str(refs[0].path), "block": refs[0].block, "output": bsaes[0].output},
        **summary,
    }
    (Path(args.out) / "heatmaps.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        n = sum(len(i["heatmaps"]) for i in summary["images"])
        print(f"wrote {n} heatmaps and heatmaps.json to {args.out}")
    return 0
