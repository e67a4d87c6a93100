"""8 concurrent sessions through ``gradio_client``: each gets its own, uncorrupted results.

Four sessions use the Explore tab (latent cards and image uploads, mixed), one the Search tab,
one the Bias tab, two the Generate tab (different seeds and latents), all at the same time on
the real app's queue. Each answer is
compared with what the library computes for that request alone (names, activations, and the
images pixel for pixel).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from tests.browser import serve
from tests.demo_world import GALLERY, GALLERY_N

N_SESSIONS = 8
N_EXPLORE = 4  # session 4 analyses bias, 5 searches, sessions 6 and 7 generate
BIAS = 4
SEARCH = 5


def _card_expected(explorer, f: int) -> tuple[str, list[str], list[np.ndarray]]:
    card = explorer.latent(f)
    return (
        f"### Latent #{f}",
        [f"{a:.3f}" for _, a, _ in card.top],
        [np.asarray(img) for img, _, _ in card.top],
    )


def _table_expected(explorer, path) -> list[str]:
    found = explorer.image(Image.open(path).convert("RGB"))
    return [f"| {t.latent} | {t.name or '-'} | {t.activation:.4f} |" for t in found]


@pytest.mark.slow
def _forged_server_path_is_refused(url: str, path) -> None:
    """A raw API call naming a file on the server (not uploaded) gets an error, no output."""
    import httpx

    body = {"data": [{"path": str(path), "meta": {"_type": "gradio.FileData"}}]}
    r = httpx.post(f"{url}gradio_api/call/image", json=body, timeout=60)
    event = r.json()["event_id"]
    stream = httpx.get(f"{url}gradio_api/call/image/{event}", timeout=120).text
    assert stream.startswith("event: error"), stream[:200]
    assert "image-msg" not in stream and "Top latents" not in stream


def _generated_expected(demo_block_sae, requests) -> dict:
    from vsae.interventions import (
        Steer,
        generate,
        load_block_sae,
        load_generator,
        load_or_compute_stats,
    )

    path, block = demo_block_sae.rsplit("@", 1)
    gen, bsae = load_generator("world"), load_block_sae(path, block)
    stats = [load_or_compute_stats(path, bsae.sae)]
    out = {}
    for s, (prompt, seed, f, strength) in requests.items():
        edit = Steer(feature=f, strength=strength)
        img = generate(gen, [prompt], 4, seed, saes=[bsae], edits=[edit], stats=stats).images[0]
        out[s] = np.asarray(Image.fromarray(img).resize((256, 256), Image.Resampling.NEAREST))
    return out


def _bias_expected(sae_dir, bias_set, target: str, group: str) -> str:
    """The accuracy table the Bias tab shows for this request, from the library's analysis."""
    import vsae
    from apps.demo.bias import N_BOOT, accuracy_table
    from vsae.analysis import load_concepts
    from vsae.analysis.bias_set import BiasSet

    data = BiasSet.load(bias_set)
    res = data.analyse(vsae.load(sae_dir), target, group, load_concepts(sae_dir), n_boot=N_BOOT)
    return accuracy_table(res)


def test_eight_concurrent_sessions_get_their_own_results(
    demo_world_sae, demo_block_sae, demo_bias_set, tmp_path
):
    from gradio_client import Client, handle_file

    from apps.demo import DemoSources
    from apps.demo.models import load_explorer
    from vsae import world

    sae_dir, cache, index = demo_world_sae
    sources = DemoSources(
        clip_sae=sae_dir,
        model=None,
        images=GALLERY,
        n_images=GALLERY_N,
        diffusion_sae=demo_block_sae,
        index=index,
        bias_set=demo_bias_set,
    )
    from vsae.analysis import Query, Searcher

    search_args = ("text", "a blue star", None, None, [], ["red"], 8)
    hits = Searcher(index, sae_dir=sae_dir).run(Query(text="a blue star", where_not=("red",), k=8))
    want_search = [f"{h.rank}. {h.score:.3f}" for h in hits]
    explorer = load_explorer(sources, cache)
    bias_args = ("colour=red", "shape")  # not the preloaded analysis: computed in the session
    want_bias = _bias_expected(sae_dir, demo_bias_set, *bias_args)
    gen_requests = {6: ("a blue star", 1, 3, 25.0), 7: ("a green square", 2, 11, -20.0)}
    want_gen = _generated_expected(demo_block_sae, gen_requests)
    images_NHW3, _ = world.render(N_SESSIONS, 31)
    uploads = []
    for s in range(N_SESSIONS):
        p = tmp_path / f"upload-{s}.png"
        Image.fromarray(images_NHW3[s]).save(p)
        uploads.append(p)
    latents = [explorer.names()[s].split("#")[1].rstrip(")") for s in range(N_SESSIONS)]
    want_card = {s: _card_expected(explorer, int(latents[s])) for s in range(N_EXPLORE)}
    want_table = {s: _table_expected(explorer, uploads[s]) for s in range(N_EXPLORE)}
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(N_SESSIONS)

    def session(s: int, url: str) -> None:
        try:
            client = Client(url, verbose=False)
            barrier.wait(timeout=300)  # all sessions connected: now they run together
            got = []
            if s == BIAS:
                for _ in range(2):
                    got.append(("bias", client.predict(*bias_args, api_name="/bias")))
                results[s] = got
                return
            if s == SEARCH:
                for _ in range(3):
                    got.append(("search", client.predict(*search_args, api_name="/search")))
                results[s] = got
                return
            if s in gen_requests:
                prompt, seed, f, strength = gen_requests[s]
                args = (prompt, seed, 4, f"#{f}", strength, "steer", False, None)
                for _ in range(2):
                    got.append(("generate", client.predict(*args, api_name="/generate")))
                results[s] = got
                return
            for _ in range(2):
                # even sessions look up a latent first, odd ones an image: the queue mixes them
                order = ("latent", "image") if s % 2 == 0 else ("image", "latent")
                for what in order:
                    if what == "latent":
                        got.append(("latent", client.predict(latents[s], api_name="/latent")))
                    else:
                        f = handle_file(str(uploads[s]))
                        got.append(("image", client.predict(f, api_name="/image")))
            results[s] = got
        except BaseException as e:
            errors.append(e)

    with serve({"concurrency_per_model": 2}, sources, cache) as url:
        _forged_server_path_is_refused(url, uploads[0])
        threads = [threading.Thread(target=session, args=(s, url)) for s in range(N_SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)  # a guard against a hung queue, not a timing
    assert not errors, errors
    assert sorted(results) == list(range(N_SESSIONS))
    for s, got in results.items():
        if s == BIAS:
            assert len(got) == 2
            for _what, (_msg, summary, effects, table, accuracy) in got:
                assert table == want_bias
                assert summary.startswith("Probe for **colour=red**"), summary[:60]
                assert effects["plot"].startswith("data:image/png;base64,")
                assert accuracy["plot"].startswith("data:image/png;base64,")
            continue
        if s == SEARCH:
            assert len(got) == 3
            for _what, (_msg, found, *_slots) in got:
                assert [g["caption"] for g in found] == want_search
            continue
        if s in gen_requests:
            assert len(got) == 2
            for _what, (_msg, _before, after, _icon, _heat, summary) in got:
                assert summary.startswith(f"Latent **#{gen_requests[s][2]}**"), summary
                np.testing.assert_array_equal(np.asarray(Image.open(after)), want_gen[s])
            continue
        assert len(got) == 4
        head, captions, pixels = want_card[s]
        for what, out in got:
            if what == "latent":
                _msg, info, grid = out
                assert info.startswith(head), (s, info[:40])
                assert [g["caption"] for g in grid] == captions
                for g, want in zip(grid, pixels, strict=True):
                    np.testing.assert_array_equal(np.asarray(Image.open(g["image"])), want)
            else:
                _msg, _shown, table, heat = out
                rows = [r for r in table.splitlines() if r.startswith("| ") and "latent" not in r]
                assert rows == want_table[s], s
                assert heat == []  # an embedding SAE: no heatmaps
