"""Concept index and search on the tiny world: semantics (measured precision), edits, filters,
refusals and corrupt files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import vsae
from tests.conftest import run_cli
from tests.world_sae import EVAL_SEED
from vsae.analysis.index_build import ConceptIndexError, build_index
from vsae.analysis.models import ModelSpec
from vsae.analysis.name import name_sae
from vsae.analysis.query import Query, Searcher
from vsae.analysis.query_edit import Edit, edit_query
from vsae.analysis.search import ConceptIndex

WORLD = ModelSpec("world:clip", None, "image")
N_INDEX = 800


@pytest.fixture(scope="module")
def named_sae(world_sae_dir, tmp_path_factory):
    """A copy of the shared SAE, named (concepts.json) on renders of another seed."""
    sae_dir = tmp_path_factory.mktemp("search_sae") / "sae"
    shutil.copytree(world_sae_dir, sae_dir)
    name_sae(sae_dir, "world", "world:1500:2025", model="world:clip", method="image")
    return sae_dir


@pytest.fixture(scope="module")
def index_dir(named_sae, tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "idx"
    return build_index(named_sae, f"world:{N_INDEX}:{EVAL_SEED}", out, WORLD)


def test_index_files_and_sizes(index_dir, named_sae):
    meta = json.loads((index_dir / "index.json").read_text())
    assert meta["n_images"] == N_INDEX and meta["d"] == 128 and meta["n_latents"] == 256
    index = ConceptIndex(index_dir)
    # TopK k=6: at most 6 codes per image are stored
    assert index.codes.nnz <= 6 * N_INDEX and index.codes.nnz >= 5 * N_INDEX
    assert index.labels[0]["colour"] in vsae.world.COLOURS
    x = index.raw_embedding(3)
    sae = vsae.load(named_sae)
    codes = sae.encode(torch.from_numpy(x)[None]).detach().numpy()[0]
    np.testing.assert_allclose(index.codes[3].toarray()[0], codes, atol=1e-3)


def _named_colours(searcher):
    names = {c.name for c in searcher.table.valid}
    return [c for c in vsae.world.COLOURS if c in names]


def test_concept_search_precision(index_dir, named_sae):
    searcher = Searcher(index_dir)
    colours = _named_colours(searcher)
    assert len(colours) >= 5, colours
    precisions = {}
    for colour in colours:
        hits = searcher.run(Query(concept=colour, k=50))
        precisions[colour] = np.mean([h.labels["colour"] == colour for h in hits])
    # measured when written: mean 0.92, worst 0.66 (pink) over the 7 named colours
    assert np.mean(list(precisions.values())) >= 0.85, precisions
    assert min(precisions.values()) >= 0.6, precisions


def test_empty_edit_is_the_plain_query(index_dir, named_sae):
    searcher = Searcher(index_dir)
    x = searcher.index.raw_embedding(7)
    assert np.array_equal(edit_query(searcher.sae, x, (), searcher.mean_act_N), x)
    # an edit that changes no code (factor 1 on a latent already above its mean) keeps x
    # bitwise: the reconstruction error is added back as x + (dec(z') - dec(z))
    z = searcher.sae.encode(torch.from_numpy(x)[None])[0].detach()
    c = int(torch.argmax(z / torch.from_numpy(searcher.mean_act_N).clamp_min(1e-6)))
    assert float(z[c]) >= searcher.mean_act_N[c]
    assert np.array_equal(edit_query(searcher.sae, x, (Edit(c, 1.0),), searcher.mean_act_N), x)
    plain = [h.id for h in searcher.index.search_vector(x, 10)]
    assert plain == [h.id for h in searcher.run(Query(image="#7"))]


def test_suppress_and_boost_change_colour(index_dir):
    searcher = Searcher(index_dir)
    labels = searcher.index.labels
    a, b = _named_colours(searcher)[:2]
    shares = []
    for shape in vsae.world.SHAPES:
        ids = [i for i, lab in enumerate(labels) if lab["colour"] == a and lab["shape"] == shape]
        for qi in ids[:3]:
            plain = searcher.run(Query(image=f"#{qi}"))
            sup = searcher.run(Query(image=f"#{qi}", suppress=(a,)))
            swap = searcher.run(Query(image=f"#{qi}", suppress=(a,), boost=(f"{b}=2",)))
            shares.append(
                [
                    np.mean([h.labels["colour"] == a for h in plain]),
                    np.mean([h.labels["colour"] == a for h in sup]),
                    np.mean([h.labels["colour"] == b for h in plain]),
                    np.mean([h.labels["colour"] == b for h in swap]),
                ]
            )
    plain_a, sup_a, plain_b, swap_b = np.mean(shares, axis=0)
    # measured when written (orange -> yellow): a 0.58 -> 0.49 suppressed; b 0.16 -> 0.82; in a
    # clean-clone CI run with the final default thresholds b went 0.11 -> 0.65
    assert sup_a < plain_a, (plain_a, sup_a)
    assert swap_b >= 0.5 and swap_b >= plain_b + 0.4, (plain_b, swap_b)


def test_hard_filters(index_dir):
    searcher = Searcher(index_dir)
    colour = _named_colours(searcher)[0]
    red = [c.id for c in searcher.table.by_name(colour)]
    hits = searcher.run(Query(image="#1", where=(colour,), k=20))
    assert red
    assert hits and all(searcher.index.codes[h.id, red].sum() > 0 for h in hits)
    hits = searcher.run(Query(image="#1", where_not=(colour,), k=20))
    assert hits and all(searcher.index.codes[h.id, red].sum() == 0 for h in hits)


def test_other_sae_or_model_is_refused(index_dir, named_sae, tmp_path):
    other = tmp_path / "other"
    sae = vsae.load(named_sae)
    with torch.no_grad():
        sae.b_enc_N += 0.01
    sae.save(other)
    with pytest.raises(ConceptIndexError, match="built with SAE"):
        Searcher(index_dir, other)
    with pytest.raises(ConceptIndexError, match="built with model"):
        Searcher(index_dir, model=ModelSpec("world:siglip", None, "image"))


def test_corrupt_and_truncated_files(index_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(index_dir, bad)
    data = (bad / "embeddings.faiss").read_bytes()
    (bad / "embeddings.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConceptIndexError, match="corrupt or truncated"):
        ConceptIndex(bad)
    shutil.copy(index_dir / "embeddings.faiss", bad / "embeddings.faiss")
    codes = (bad / "codes.npz").read_bytes()
    (bad / "codes.npz").write_bytes(codes[:100])
    with pytest.raises(ConceptIndexError, match="corrupt or truncated"):
        ConceptIndex(bad)


def test_ivf_and_fp16_against_exact(named_sae, tmp_path):
    import faiss  # noqa: F401 - the index types below are faiss's

    from vsae.analysis.inputs import iter_image_chunks

    chunks = list(iter_image_chunks(f"world:600:{EVAL_SEED}", WORLD))
    exact = ConceptIndex(build_index(named_sae, "w", tmp_path / "f", WORLD, chunks=chunks))
    ivf = ConceptIndex(
        build_index(named_sae, "w", tmp_path / "i", WORLD, kind="ivf", nlist=8, chunks=chunks)
    )
    half = ConceptIndex(
        build_index(named_sae, "w", tmp_path / "h", WORLD, kind="fp16", chunks=chunks)
    )
    recall, err = [], []
    for i in range(0, 600, 60):
        x = exact.raw_embedding(i)
        a = exact.search_vector(x, 10)
        b = ivf.search_vector(x, 10, nprobe=4)
        c = half.search_vector(x, 10)
        recall.append(len({h.id for h in a} & {h.id for h in b}) / 10)
        err.append(max(abs(p.score - q.score) for p, q in zip(a, c, strict=True)))
    assert np.mean(recall) >= 0.8, recall
    assert max(err) < 2e-3, err
    # all 8 cells probed: IVF is exact
    x = exact.raw_embedding(0)
    assert [h.id for h in ivf.search_vector(x, 10, nprobe=8)] == [
        h.id for h in exact.search_vector(x, 10)
    ]


def test_cli_index_and_search(named_sae, index_dir, tmp_path):
    res = run_cli(
        "index",
        "build",
        "--sae",
        str(named_sae),
        "--model",
        "world:clip",
        "--data",
        "world:50:3",
        "--out",
        str(tmp_path / "idx"),
        "--json",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["n_images"] == 50
    assert (tmp_path / "idx" / "build.json").is_file()
    sheet = tmp_path / "sheet.png"
    res = run_cli(
        "search",
        str(index_dir),
        "--image",
        "#0",
        "--suppress",
        "red",
        "--boost",
        "blue=2",
        "-k",
        "8",
        "--json",
        "--sheet",
        str(sheet),
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["results"]) == 8 and out["results"][0]["rank"] == 1
    from PIL import Image

    assert Image.open(sheet).size[0] == 5 * 128
    res = run_cli("search", str(index_dir), "--concept", "gren")
    assert res.returncode == 2 and "closest names" in res.stderr and "green" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    res = run_cli("search", str(tmp_path / "nowhere"), "--concept", "red")
    assert res.returncode == 2 and "vsae index build" in res.stderr
