"""Find the concept a classifier leans on, prove it by intervention, and remove it, offline on a
biased tiny world.

Run from the repository root::

    python examples/bias_analysis.py [--out runs/example-bias]

It trains a small TopK SAE on the tiny CLIP's image embeddings (a few minutes on a laptop
CPU) and names its latents; exports a *biased* training set (every red object is a circle
with probability 0.95) and an unbiased test set as image folders with ``labels.jsonl``;
trains a "is it a circle" probe on the biased set; and runs the bias analysis on the test
set, which is told only the target and the group attribute. It prints the concepts ranked by
causal effect and the per-group accuracy before and after removing the top spurious one,
and writes the report (Markdown, JSON, figures) to ``OUT/report``.

The same on CelebA, on the command line (an SAE trained on a CLIP's image embedding of the
CelebA images, named with ``vsae concepts name``)::

    vsae extract --source open_clip:ViT-L-14 --pretrained laion2b_s32b_b82k \\
        --hookpoint image --data img_align_celeba/ --out runs/celeba-shards
    vsae train --data runs/celeba-shards --arch topk --expansion 16 --k 32 --out runs/celeba-sae
    vsae concepts name runs/celeba-sae --vocab english --images runs/celeba-shards
    vsae bias --sae runs/celeba-sae --data img_align_celeba/ \\
        --labels list_attr_celeba.txt --target Blond_Hair=1 --group Male --out runs/celeba-bias

(without ``--train-data`` or ``--probe`` the images are split in halves: the probe trains on
one, the analysis runs on the other; ``--remove NAME ...`` chooses what debiasing removes.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import vsae
from vsae import world
from vsae.analysis import (
    BiasConfig,
    ModelSpec,
    ProbeConfig,
    analyse_bias,
    load_concepts,
    name_sae,
)
from vsae.analysis.bias_data import load_embeddings
from vsae.world.clip import encode_renders
from vsae.world.export import export_folder

CORRELATION = "shape=circle|colour=red:0.95"  # P(circle | red) = 0.95 in the training set


def train_sae(out: Path, n: int = 4000, steps: int = 1000, seed: int = 11) -> Path:
    """A TopK SAE (256 latents, k = 6) on tiny-CLIP embeddings of ``n`` unbiased renders."""
    if (out / "sae.safetensors").is_file():
        return out
    model, _, _ = world.load_clip()
    images, _ = world.render(n, seed)
    acts = encode_renders(model, images)
    cfg = vsae.SAEConfig(arch="topk", d_in=acts.shape[1], n_latents=256, k=6)
    tcfg = vsae.TrainConfig(batch_size=256, steps=steps, lr=2e-3, progress=False)
    vsae.train(cfg, acts, tcfg, out_dir=out)
    return out


def main() -> None:
    """Train and name an SAE, export the biased world, analyse the probe."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-bias", help="output folder")
    parser.add_argument("--n-train", type=int, default=300, help="probe training images")
    parser.add_argument("--n-test", type=int, default=2000, help="test images")
    args = parser.parse_args()
    out = Path(args.out)
    sae_dir = train_sae(out / "sae")
    if not (sae_dir / "concepts.json").is_file():
        name_sae(sae_dir, "world", "world:3000:2025", method="text", model="world:clip")
    table = load_concepts(sae_dir)
    print("named concepts:", sorted({c.name for c in table.valid}))

    # Image folders with labels.jsonl, as `vsae world export` writes them.
    train_dir = export_folder(out / "train", args.n_train, seed=101, correlations=[CORRELATION])
    test_dir = export_folder(out / "test", args.n_test, seed=4242)
    spec = ModelSpec("world:clip", None, "image")
    x_train, _, l_train = load_embeddings(train_dir, spec, train_dir / "labels.jsonl")
    x_test, _, l_test = load_embeddings(test_dir, spec, test_dir / "labels.jsonl")

    res = analyse_bias(
        vsae.load(sae_dir),
        x_test,
        l_test,
        "shape=circle",
        group="colour",
        concepts=table,
        train_x=x_train,
        train_labels=l_train,
        cfg=BiasConfig(probe=ProbeConfig(l2=0.5)),
    )
    print("concepts ranked by the accuracy gain of switching them off:")
    for e in res.effects[:6]:
        lo, hi = e.off.gain_ci
        tag = " (target)" if e.is_target else (" SPURIOUS" if e.flagged else "")
        print(
            f"  {e.name:10s} gain {e.off.gain:+.3f} [{lo:+.3f}, {hi:+.3f}]  "
            f"logit {e.off.logit:+.2f}  flips {e.off.flip:.2f}{tag}"
        )
    print(
        f"removed {res.removed}: accuracy {res.before.overall:.3f} -> {res.after.overall:.3f}, "
        f"worst group {res.before.worst_group} {res.before.worst:.3f} -> "
        f"{res.after.worst_group} {res.after.worst:.3f}"
    )
    print("report:", res.write(out / "report"))


if __name__ == "__main__":
    main()
