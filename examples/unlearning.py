"""Remove a concept from a diffusion model with an SAE (SAeUron method), offline on the tiny world.

    python examples/unlearning.py [--concept red] [--out out/unlearning]

What it does, with the library calls behind ``vsae unlearn fit`` and ``vsae generate --unlearn``:
1. extract the block ``up_blocks.1.attentions.0`` of the tiny diffusion model (its update)
   over colour x shape prompts and train a TopK SAE on it (``vsae extract``, ``vsae train``);
2. fit a recipe for the concept on half of the "a {colour} {shape}" prompts (the selection
   split): per denoising step, the latents whose normalised mean activation is most above
   the other prompts', with gamma < 0; save it (recipe.json + latents.safetensors) and load
   it back;
3. generate the other half of the prompts (the evaluation split) bare and with the recipe,
   judge them with the world's classifier, print UA (the concept no longer judged on prompts
   that name it) and how much of the other prompts' accuracy is kept, and save the images.

The same on SD 1.x (a GPU and the weights; SAeUron's blocks are up_blocks.1.attentions.1 for
objects and .2 for styles, block output, every step of the sampler):

    vsae extract --source diffusers:runwayml/stable-diffusion-v1-5 --data prompts.txt \
        --hookpoints up_blocks.1.attentions.2 --output output --num-steps 50 --guidance 9 \
        --max-tokens 64 --dtype float16 --device cuda --out acts/sd-up1-2
    vsae train configs/topk.yaml --data acts/sd-up1-2 --set sae.k=32 --set sae.expansion=16 \
        --out runs/sd-up1-2
    vsae unlearn fit --pipeline runwayml/stable-diffusion-v1-5 \
        --sae runs/sd-up1-2@up_blocks.1.attentions.2 --concept "Van Gogh" \
        --prompts style_prompts.txt --percentile 99.999 --gamma -1 --num-steps 50 \
        --guidance 9 --device cuda --out recipes/no-van-gogh
    vsae generate --pipeline runwayml/stable-diffusion-v1-5 --unlearn recipes/no-van-gogh \
        --prompt "a cat in Van Gogh style" --num-steps 50 --guidance 9 --device cuda \
        --out out/no-van-gogh

(``vsae unlearn eval`` needs the tiny world's judge; on SD 1.x use an UnlearnCanvas classifier.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from vsae import world
from vsae.bench.interventions import BLOCK, QUICK, train_block_sae
from vsae.interventions import fit_recipe, generate, load_block_sae, load_generator, load_recipe
from vsae.interventions.unlearn import mentions
from vsae.interventions.unlearn_eval import kind_of, split_pairs


def main(argv: list[str] | None = None) -> dict:
    """Train the block SAE, fit a recipe, compare bare and unlearned; return the figures.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv``).

    Returns
    -------
    dict
        ``ua`` (with the recipe), ``bare_ua``, ``kept`` (accuracy on the other prompts,
        relative to bare) and ``selected_pairs``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concept", default="red", help="a colour or shape of the world")
    parser.add_argument("--out", default="out/unlearning", help="output folder")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--train-steps", type=int, default=600, help="SAE training steps")
    parser.add_argument("--percentile", type=float, default=99.0, help="in (0, 100)")
    parser.add_argument("--gamma", type=float, default=-20.0, help="< 0")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = kind_of(args.concept)
    cfg = {**QUICK, "steps": args.steps, "train_steps": args.train_steps, "batch_size": 512}
    cfg["colours"] = ["red", "blue", "green", "yellow"]
    cfg["shapes"] = ["circle", "square", "star"]
    cfg[kind + "s"] = sorted({*cfg[kind + "s"], args.concept})
    (out / "work").mkdir(exist_ok=True)
    sae_dir, _ = train_block_sae(cfg, out / "work")
    bsae = load_block_sae(sae_dir, BLOCK)
    gen, judge = load_generator("world"), world.load_judge()

    selection, evaluation = split_pairs(cfg["colours"], cfg["shapes"])
    recipe = fit_recipe(gen, bsae, [args.concept], selection, args.steps, seeds=(0,),
                        percentile=args.percentile, gamma=args.gamma,
                        sae_path=str(sae_dir))  # fmt: skip
    recipe = load_recipe(recipe.save(out / "recipe"))  # what `vsae generate --unlearn` reads
    print(f"recipe: {int(recipe.selected_TN.sum())} (step, latent) pairs -> {out / 'recipe'}")

    bare = generate(gen, evaluation, args.steps, seed=7).images
    unlearned = generate(
        gen, evaluation, args.steps, seed=7, saes=[bsae], edits=[recipe.edit(bsae)]
    ).images
    want = [world.judge.attributes_in_prompt(p) for p in evaluation]
    on = np.array([mentions(p, args.concept) for p in evaluation])
    figures = {}
    for name, images in (("bare", bare), ("unlearned", unlearned)):
        pred = judge.predict(images)
        hit = np.array([pred[kind][i] == args.concept for i in range(len(evaluation))])
        correct = np.array([pred[kind][i] == w[kind] for i, w in enumerate(want)])
        figures[name] = {"ua": 1 - float(hit[on].mean()), "acc_other": float(correct[~on].mean())}
    result = {
        "ua": figures["unlearned"]["ua"],
        "bare_ua": figures["bare"]["ua"],
        "kept": figures["unlearned"]["acc_other"] / max(figures["bare"]["acc_other"], 1e-9),
        "selected_pairs": int(recipe.selected_TN.sum()),
    }
    print(
        f"UA {args.concept}: {result['ua']:.2f} with the recipe (bare {result['bare_ua']:.2f}); "
        f"other {kind}s kept {result['kept']:.2f} of bare"
    )
    grid = np.concatenate([np.concatenate(list(bare), 1), np.concatenate(list(unlearned), 1)], 0)
    img = Image.fromarray(grid)
    img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(out / "unlearning.png")
    print(f"wrote {out / 'unlearning.png'} (top: bare, bottom: with the recipe)")
    return result


if __name__ == "__main__":
    main()
