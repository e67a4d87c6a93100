"""Name an SAE's latents and search images by concept, offline on the tiny world.

Run from the repository root::

    python examples/concepts_and_search.py [--out runs/example-concepts]

It trains a small TopK SAE on the tiny CLIP's image embeddings (a few minutes on a laptop
CPU), names its latents against the world's attribute words, indexes 2000 held-out renders,
and runs a plain, a concept-edited and a filtered search. With a real model the same steps
are, on the command line (weights must be on disk or in the open_clip cache)::

    vsae extract --source open_clip:ViT-L-14 --pretrained laion2b_s32b_b82k \\
        --hookpoint image --data /data/images --out runs/vitl-shards
    vsae train --data runs/vitl-shards --arch topk --expansion 16 --k 32 --out runs/vitl-sae
    vsae concepts name runs/vitl-sae --vocab imagenet \\
        --model open_clip:ViT-L-14 --pretrained laion2b_s32b_b82k --images runs/vitl-shards
    vsae index build --sae runs/vitl-sae --data runs/vitl-shards --type ivf --out runs/vitl-index
    vsae search runs/vitl-index --text "a dog on a beach" --suppress beach --boost snow=2 \\
        --sheet dog-snow.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import vsae
from vsae import world
from vsae.analysis import ModelSpec, Query, Searcher, build_index, contact_sheet, name_sae
from vsae.world.clip import encode_renders


def train_sae(out: Path, n: int = 4000, steps: int = 1000, seed: int = 11) -> Path:
    """A TopK SAE (256 latents, k = 6) on tiny-CLIP embeddings of ``n`` renders."""
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
    """Train, name, index and search."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-concepts", help="output folder")
    parser.add_argument("--n-train", type=int, default=4000, help="training renders")
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--n-images", type=int, default=2000, help="renders to name and index")
    args = parser.parse_args()
    out, n = Path(args.out), args.n_images
    sae_dir = train_sae(out / "sae", args.n_train, args.steps)

    # 1. Name the latents: image-side (top images' mean embedding vs the words) is the more
    #    precise one on the world; "text" compares decoder atoms with the words directly.
    table = name_sae(sae_dir, "world", f"world:{n}:2025", method="image", model="world:clip")
    print(f"{len(table.valid)} valid concepts:", sorted({c.name for c in table.valid}))

    # 2. Index held-out renders (seed 4242) with the SAE.
    spec = ModelSpec("world:clip", None, "image")
    build_index(sae_dir, f"world:{n}:4242", out / "index", spec)
    searcher = Searcher(out / "index")
    labels = searcher.index.labels
    names = {c.name for c in table.valid}
    colours = [c for c in world.COLOURS if c in names]  # e.g. red and orange
    shape = next((s for s in world.SHAPES if s in names), None)
    a = colours[0] if colours else world.COLOURS[0]
    query = next(i for i, lab in enumerate(labels) if lab["colour"] == a)

    # 3. Search: the plain query, then "the same but b instead of a", then a concept with a
    #    hard filter (only images where colour a does not fire).
    queries = [Query(image=f"#{query}")]
    if len(colours) >= 2:
        queries.append(Query(image=f"#{query}", suppress=(a,), boost=(f"{colours[1]}=2",)))
    if shape is not None and colours:
        queries.append(Query(concept=shape, where_not=(a,)))
    for q in queries:
        hits = searcher.run(q)
        print(q, [f"{h.labels['colour']} {h.labels['shape']}" for h in hits[:5]])
    sheet = contact_sheet(hits, out / "last-query.png", title=str(queries[-1]))
    print("contact sheet:", sheet)


if __name__ == "__main__":
    main()
