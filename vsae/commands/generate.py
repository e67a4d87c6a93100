"""``vsae generate``: images from a diffusion pipeline with SAEs attached and latents edited."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HELP = """Generate images with SAEs attached to U-Net blocks, and edit their latents.

Each --sae DIR@BLOCK puts an SAE back into the block it was trained on; it works on what it
was trained on (the block update = output - input, or the block output), read from its
cfg.json provenance or the training shards' meta.json. With no edit the images equal the bare
pipeline's (the reconstruction error is kept). Edits (repeatable, composable):
  --steer REF=STRENGTH[@MASK.png]  add STRENGTH x mean activation x decoder atom, in the mask
  --ablate REF / --clamp REF=VALUE set a latent to 0 / VALUE (everywhere)
  --icon REF[=STRENGTH]            a feature icon: the empty prompt with the block update
                                   replaced by the feature alone (written as icon-*.png)
  --ablate-block I                 remove the whole update of the I-th SAE's block
REF is a latent id (12 or #12) or a concept name from the SAE's concepts.json; I:REF picks the
I-th --sae. Strengths are in units of the latent's mean activation when it fires, from
latent_stats.safetensors next to the SAE (computed once from its training shards).

Examples (offline, the tiny world; then SD 1.x and SDXL-Turbo with a GPU and the weights):
  vsae generate --prompt "a red circle" --sae runs/blk@up_blocks.1.attentions.0 \\
      --steer '#17=8' --out out/steer
  vsae generate --pipeline runwayml/stable-diffusion-v1-5 --prompt "a photo of a dog" \\
      --sae runs/sd@up_blocks.1.attentions.1 --steer 'cartoon=4' --num-steps 30 --out out/sd
  vsae generate --pipeline stabilityai/sdxl-turbo --num-steps 1 --guidance 0 \\
      --prompt "a cinematic shot of a cat" --sae runs/turbo@down_blocks.2.attentions.1 \\
      --steer '#4571=6@mask.png' --device cuda --dtype float16 --out out/turbo
Writes bare-N.png (no SAE), image-N.png (edited), compare.png and generate.json."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``generate``."""
    p = sub.add_parser(
        "generate",
        help="generate images with SAEs on U-Net blocks: steer, ablate, clamp, icons",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pipeline_arguments(p)
    p.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="a prompt (repeatable: one image each); default: the empty prompt",
    )
    p.add_argument(
        "--steer",
        action="append",
        default=[],
        metavar="REF=STRENGTH[@MASK]",
        help="steer by a latent, in units of its mean activation; MASK: a PNG of the image's "
        "size (alpha channel, else grey level; white = steer)",
    )
    p.add_argument("--ablate", action="append", default=[], metavar="REF", help="set to 0")
    p.add_argument("--clamp", action="append", default=[], metavar="REF=VALUE", help="set to VALUE")
    p.add_argument(
        "--icon",
        action="append",
        default=[],
        metavar="REF[=STRENGTH]",
        help="feature icon of a latent (strength in units of its mean; default 4)",
    )
    p.add_argument(
        "--unlearn",
        action="append",
        default=[],
        metavar="RECIPE_DIR",
        help="apply an unlearning recipe from `vsae unlearn fit` (its SAE is attached when no "
        "--sae is the recipe's; a recipe of another SAE or block is refused)",
    )
    p.add_argument(
        "--ablate-block",
        action="append",
        type=int,
        default=[],
        metavar="I",
        help="remove the whole block update of the I-th --sae (0 = the first)",
    )
    p.add_argument(
        "--steps",
        default=None,
        metavar="A:B",
        help="apply the edits only at denoising steps A..B-1 (0 = the first, noisiest step)",
    )
    p.add_argument(
        "--cfg",
        choices=("both", "cond", "signed"),
        default="both",
        help="under classifier-free guidance, edit both halves (default: the edit changes the "
        "model, so it enters the guided prediction once), the conditional half only (its "
        "effect is then scaled by the guidance), or subtract on the unconditional half and add "
        "on the conditional one (the SDXL-Turbo study's sign convention)",
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    p.set_defaults(run=run)


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``generate`` and ``heatmap``: pipeline, SAEs, steps, guidance."""
    p.add_argument(
        "--pipeline",
        default="world",
        help="`world` (the shipped tiny model, offline), a diffusers pipeline folder, or a Hub "
        "repo id such as stabilityai/sdxl-turbo (default: %(default)s)",
    )
    p.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="DIR@BLOCK",
        help="an SAE folder and the Transformer2DModel block it hooks, e.g. "
        "runs/sae@mid_block.attentions.0 (repeatable; @BLOCK may be left out when the SAE's "
        "cfg.json records its hookpoint)",
    )
    p.add_argument(
        "--output",
        choices=("update", "output"),
        default=None,
        help="what the SAEs read: the block update (output - input) or its output; default: "
        "what their metadata records",
    )
    p.add_argument(
        "--shards",
        default=None,
        help="the SAEs' training shard folder, to compute latent statistics once when "
        "latent_stats.safetensors is missing (default: the folder cfg.json records)",
    )
    p.add_argument(
        "--num-steps",
        type=int,
        default=20,
        help="denoising steps (default: %(default)s; SDXL-Turbo: 1-4)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: the pipeline's; <= 1 turns it off)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="weights dtype of a diffusers pipeline (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")


def _save(img_HW3: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(img_HW3).save(path)


def _compare(rows: list[np.ndarray], path: Path, min_side: int = 256) -> None:
    """Rows of images side by side, upscaled (nearest) so a 32 px image is visible."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    h = rows[0].shape[1]
    scale = max(1, min_side // h)
    img = Image.fromarray(grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def _load(args: argparse.Namespace):
    from vsae.interventions import load_block_sae, load_generator
    from vsae.interventions.spec import parse_sae_ref

    gen = load_generator(args.pipeline, dtype=args.dtype, device=args.device)
    refs = [parse_sae_ref(s) for s in args.sae]
    bsaes = [load_block_sae(r.path, r.block, output=args.output) for r in refs]
    for b in bsaes:
        b.sae.to(args.device)
    return gen, refs, bsaes


def _recipes(args: argparse.Namespace, refs: list, bsaes: list) -> list:
    """Each ``--unlearn`` recipe with the index of its SAE (attached here when not given)."""
    from vsae.interventions import load_block_sae, load_recipe, sae_hash
    from vsae.interventions.spec import SAERef

    out = []
    for text in args.unlearn:
        recipe = load_recipe(text)
        want = (recipe.info["sae_hash"], recipe.info["block"])
        found = [i for i, b in enumerate(bsaes) if (sae_hash(b.sae), b.block) == want]
        if not found:
            path = Path(recipe.info.get("sae_path") or "")
            bsae = load_block_sae(path, recipe.info["block"], output=recipe.info.get("output"))
            bsaes.append(bsae.__class__(bsae.sae.to(args.device), bsae.block, bsae.output))
            refs.append(SAERef(path, recipe.info["block"]))
            found = [len(bsaes) - 1]
        out.append((found[0], recipe))
    return out


def run(args: argparse.Namespace) -> int:
    """Generate, write images and ``generate.json``; print the summary."""
    from vsae.interventions import (
        AblateBlock,
        Clamp,
        Icon,
        InterventionError,
        Steer,
        generate,
        load_mask,
        load_or_compute_stats,
    )
    from vsae.interventions.spec import parse_steps, resolve_latent, split_value

    gen, refs, bsaes = _load(args)
    recipes = _recipes(args, refs, bsaes)
    dirs, widths = [r.path for r in refs], [b.sae.n_latents for b in bsaes]
    steps = parse_steps(args.steps, args.num_steps)
    edits, icons = [], []
    if (args.steer or args.ablate or args.clamp or args.icon or args.ablate_block) and not dirs:
        raise InterventionError("edits need an SAE: give --sae DIR@BLOCK")
    for text in args.steer:
        ref, strength, mask_path = split_value(text, "--steer")
        sae, f = resolve_latent(ref, dirs, widths)
        mask = load_mask(mask_path, gen.image_hw) if mask_path else None
        edits.append(Steer(sae=sae, steps=steps, mask=mask, feature=f, strength=strength))
    for text in args.clamp:
        ref, value, _ = split_value(text, "--clamp")
        sae, f = resolve_latent(ref, dirs, widths)
        edits.append(Clamp(sae=sae, steps=steps, feature=f, value=value))
    for ref in args.ablate:
        sae, f = resolve_latent(ref, dirs, widths)
        edits.append(Clamp(sae=sae, steps=steps, feature=f, value=0.0))
    for i in args.ablate_block:
        if not 0 <= i < len(refs):
            raise InterventionError(f"--ablate-block {i}: {len(refs)} --sae given")
        edits.append(AblateBlock(sae=i, steps=steps))
    for text in args.icon:
        ref, strength, _ = split_value(text, "--icon", default=4.0)
        sae, f = resolve_latent(ref, dirs, widths)
        icons.append((text, Icon(sae=sae, steps=steps, feature=f, strength=strength)))
    edits += [recipe.edit(bsaes[i], i) for i, recipe in recipes]
    needs = {e.sae for e in [*edits, *(i for _, i in icons)] if e.needs_mean}
    stats = [
        load_or_compute_stats(r.path, b.sae, args.shards) if i in needs else None
        for i, (r, b) in enumerate(zip(refs, bsaes, strict=True))
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = args.prompt or [""]
    if any(not p.strip() for p in args.prompt):
        raise InterventionError("--prompt is empty; leave --prompt out for the empty prompt")
    common = dict(steps=args.num_steps, seed=args.seed, guidance=args.guidance)
    bare = generate(gen, prompts, **common)
    edited = generate(gen, prompts, **common, saes=bsaes, edits=edits, stats=stats, cfg=args.cfg)
    files = []
    for i, (a, b) in enumerate(zip(bare.images, edited.images, strict=True)):
        _save(a, out / f"bare-{i}.png")
        _save(b, out / f"image-{i}.png")
        files.append({"prompt": prompts[i], "bare": f"bare-{i}.png", "image": f"image-{i}.png"})
    _compare([bare.images, edited.images], out / "compare.png")
    icon_files = []
    for k, (text, icon) in enumerate(icons):
        run_ = generate(gen, [""], **common, saes=bsaes, edits=[icon], stats=stats, cfg=args.cfg)
        _save(run_.images[0], out / f"icon-{k}.png")
        icon_files.append({"icon": text, "latent": icon.feature, "file": f"icon-{k}.png"})
    summary = {
        "command": "generate",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("run", "debug")},
        "pipeline": gen.spec,
        "image_hw": list(gen.image_hw),
        "saes": [
            {"path": str(r.path), "block": r.block, "output": b.output, "n_latents": w}
            for r, b, w in zip(refs, bsaes, widths, strict=True)
        ],
        "edits": [e.describe() for e in edits],
        "unet_calls": edited.attached.calls,
        "edited_calls": edited.attached.edited,
        "max_abs_pixel_change": float(
            np.abs(edited.images.astype(np.int16) - bare.images.astype(np.int16)).max()
        ),
        "seconds": {"bare": bare.seconds, "with_saes": edited.seconds},
        "images": files,
        "icons": icon_files,
    }
    (out / "generate.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        n = len(files) * 2 + len(icon_files)
        print(f"wrote {n} images, compare.png and generate.json to {out}", file=sys.stdout)
    return 0
