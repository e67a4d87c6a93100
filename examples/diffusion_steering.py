"""Steer a diffusion model with an SAE on one of its U-Net blocks, offline on the tiny world.

    python examples/diffusion_steering.py [--out out/steering]

What it does, with the same library calls the ``vsae generate`` command makes:
1. extract the block ``up_blocks.1.attentions.0`` of the tiny diffusion model (its update,
   output - input) over colour x shape prompts, and train a TopK SAE on it (``vsae extract``,
   ``vsae train``);
2. find the latent that best marks "blue" (Cohen's d on judged images);
3. generate "a red circle" bare, steered towards blue everywhere, steered only in the left
   half, and the blue latent's feature icon, and save them side by side.

What to expect on the tiny world: one block's SAE moves the judged colour only some of the time
(``vsae bench interventions`` measured 0.55 at strength 32 with a larger SAE, and the shape is
lost at that strength; see benchmarks/results/interventions-2026-12-02-cpu.md). This example's
small SAE and strength 16 often leave the colour judged unchanged while the background degrades;
the printed judgements say which.

The same on real models (a GPU and the weights; the commands are the same, the names change):

    # SD 1.x: the SAE of a cross-attention block, steered at 30 steps
    vsae extract --source diffusers:runwayml/stable-diffusion-v1-5 --data prompts.txt \
        --hookpoints up_blocks.1.attentions.1 --output update --num-steps 30 --max-tokens 64 \
        --device cuda --out acts/sd
    vsae train configs/topk.yaml --data acts/sd --out runs/sd
    vsae generate --pipeline runwayml/stable-diffusion-v1-5 --sae runs/sd \
        --prompt "a photo of a dog" --steer '#123=6' --num-steps 30 --device cuda --out out/sd

    # SDXL-Turbo (the SDXL-Turbo study's blocks), one step, no guidance
    vsae extract --source diffusers:stabilityai/sdxl-turbo --data prompts.txt \
        --hookpoints down_blocks.2.attentions.1,up_blocks.0.attentions.0 --output update \
        --num-steps 1 --guidance 0 --max-tokens 64 --device cuda --dtype float16 --out acts/turbo
    vsae train configs/topk.yaml --data acts/turbo --hookpoint up_blocks.0.attentions.0 \
        --out runs/turbo-up0
    vsae generate --pipeline stabilityai/sdxl-turbo --num-steps 1 --guidance 0 \
        --sae runs/turbo-up0 --prompt "a cinematic shot of a cat" --steer '#4571=6@mask.png' \
        --device cuda --dtype float16 --out out/turbo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from vsae import world
from vsae.bench.interventions import BLOCK, QUICK, train_block_sae
from vsae.bench.interventions_eval import Setup, find_concept_latents, quadrant_mask
from vsae.interventions import (
    Icon,
    Steer,
    generate,
    load_block_sae,
    load_generator,
    load_or_compute_stats,
)


def main() -> None:
    """Train the block SAE, find "blue", steer, save ``steering.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/steering", help="output folder")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**QUICK, "steps": args.steps, "train_steps": 600, "batch_size": 512}
    cfg["colours"], cfg["shapes"] = ["red", "blue", "green", "yellow"], ["circle", "square"]
    sae_dir, _ = train_block_sae(cfg, out / "work")
    bsae = load_block_sae(sae_dir, BLOCK)
    stats = load_or_compute_stats(sae_dir, bsae.sae)  # mean activation of each latent
    gen, judge = load_generator("world"), world.load_judge()
    setup = Setup(gen, bsae, stats, judge, args.steps)
    latents, scores = find_concept_latents(setup, cfg["colours"], cfg["shapes"], [101])
    blue = latents["colour"]["blue"]
    print(f"blue latent: #{blue} (Cohen's d {scores['colour']['blue']:.2f})")

    def run(edits, prompt="a red circle"):
        kw = dict(saes=[bsae], edits=edits, stats=[stats]) if edits else {}
        return generate(gen, [prompt], args.steps, seed=0, **kw).images[0]

    left = np.zeros(gen.image_hw, np.float32)
    left[:, : gen.image_hw[1] // 2] = 1.0
    top_left = quadrant_mask("top left", gen.image_hw)
    panels = {
        "bare": run([]),
        "steered": run([Steer(feature=blue, strength=16.0)]),
        "left half": run([Steer(feature=blue, strength=16.0, mask=left)]),
        "top-left only": run([Steer(feature=blue, strength=16.0, mask=top_left)]),
        "icon": run([Icon(feature=blue, strength=4.0)], prompt=""),
    }
    for name, img in panels.items():
        print(f"{name:>14}: judged {judge.predict(img[None])['colour'][0]}")
    row = np.concatenate(list(panels.values()), axis=1)
    Image.fromarray(row).resize((row.shape[1] * 8, row.shape[0] * 8), Image.NEAREST).save(
        out / "steering.png"
    )
    print(f"wrote {out / 'steering.png'} ({', '.join(panels)})")


if __name__ == "__main__":
    main()
