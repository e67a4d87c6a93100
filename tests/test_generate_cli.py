"""``vsae generate`` and ``vsae heatmap`` end to end: extract a world U-Net block, train an SAE
on it with the CLI, then steer, ablate, draw icons and heatmaps from the command line.

The commands run in-process through ``vsae.cli.main`` (the same parsing, error handling and
exit codes as ``python -m vsae``) to spare a torch start-up per call.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from vsae.cli import main

BLOCK = "up_blocks.1.attentions.0"


class Result:
    """What a CLI run gave: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str):
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        got = capsys.readouterr()
        return Result(code, got.out, got.err)

    return run


@pytest.fixture(scope="module")
def block_sae_dir(tmp_path_factory):

    def run_cli(*argv: str) -> Result:
        return Result(main(list(argv)), "", "")

    root = tmp_path_factory.mktemp("gen")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(f"a {c} circle" for c in ("red", "blue", "green", "yellow")))
    shards = root / "shards"
    out = run_cli(
        "extract",
        "--source",
        "world:diffusion",
        "--data",
        str(prompts),
        "--hookpoints",
        BLOCK,
        "--num-steps",
        "4",
        "--output",
        "update",
        "--out",
        str(shards),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    sae = root / "sae"
    args = ["--set", "train.steps=60", "--set", "train.batch_size=256", "--set", "sae.k=6"]
    args += ["--set", "train.eval_every=0", "--set", "train.ckpt_every=0"]
    args += ["--set", "train.eval_samples=256", "--set", "sae.expansion=2"]
    out = run_cli(
        "train", str(ROOT / "configs/topk.yaml"), "--data", str(shards), "--out", str(sae), *args
    )
    assert out.returncode == 0, out.stderr
    return sae


def test_generate_steers_and_reports(cli, block_sae_dir, tmp_path):
    # no @BLOCK: the block comes from the SAE's provenance (the shard folder's hookpoint)
    out = cli(
        "generate",
        "--sae",
        str(block_sae_dir),
        "--prompt",
        "a red circle",
        "--prompt",
        "a blue star",
        "--steer",
        "#3=12",
        "--icon",
        "5",
        "--num-steps",
        "4",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary == json.loads((tmp_path / "generate.json").read_text())
    assert summary["saes"][0]["block"] == BLOCK and summary["saes"][0]["output"] == "update"
    assert summary["edits"][0] == {
        "kind": "steer",
        "sae": 0,
        "steps": None,
        "feature": 3,
        "mask": None,
        "strength": 12.0,
    }
    assert summary["edited_calls"] == [4] and summary["max_abs_pixel_change"] > 0
    bare = np.asarray(Image.open(tmp_path / "bare-0.png"))
    steered = np.asarray(Image.open(tmp_path / "image-0.png"))
    assert bare.shape == (32, 32, 3) and not np.array_equal(bare, steered)
    assert (block_sae_dir / "latent_stats.safetensors").is_file()  # computed once, kept
    assert (tmp_path / "icon-0.png").is_file() and (tmp_path / "compare.png").is_file()


def test_generate_without_edits_is_the_bare_image_and_masks_schedules_work(
    cli, block_sae_dir, tmp_path
):
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(tmp_path / "right.png")
    plain = cli(
        "generate", "--sae", f"{block_sae_dir}@{BLOCK}", "--prompt", "a red circle",
        "--num-steps", "4", "--out", str(tmp_path / "a"), "--json",
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["max_abs_pixel_change"] == 0
    masked = cli(
        "generate", "--sae", str(block_sae_dir), "--prompt", "a red circle", "--num-steps", "4",
        "--steer", f"#3=12@{tmp_path / 'right.png'}", "--steps", "0:2", "--ablate", "#1",
        "--out", str(tmp_path / "b"), "--json",
    )  # fmt: skip
    assert masked.returncode == 0, masked.stderr
    s = json.loads(masked.stdout)
    assert s["edited_calls"] == [2] and s["edits"][0]["mask"] == [32, 32]
    assert s["edits"][1] == {
        "kind": "clamp", "sae": 0, "steps": [0, 2], "feature": 1, "mask": None, "value": 0.0,
    }  # fmt: skip


def test_heatmap_writes_overlays_of_the_top_latents(cli, block_sae_dir, tmp_path):
    out = cli(
        "heatmap", "--sae", str(block_sae_dir), "--prompt", "a red circle", "--top", "3",
        "--num-steps", "4", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["grid"] == [8, 8] and s["sae"]["block"] == BLOCK
    top = s["images"][0]["top"]
    assert 1 <= len(top) <= 3 and top[0]["mean"] >= top[-1]["mean"] > 0
    for name in s["images"][0]["heatmaps"].values():
        assert Image.open(tmp_path / name).size == (256, 256)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sae", "{sae}@mid_block"], "'mid_block' is not a Transformer2DModel block; valid:"),
        (["--sae", "{sae}", "--steer", "#999=3"], "latent id 999 out of range"),
        (["--sae", "{sae}", "--steer", "red=3"], "has no concepts.json"),
        (["--sae", "{sae}", "--steer", "#1=x"], "'x' is not a number"),
        (["--sae", "{sae}", "--steer", "#1=3@{tmp}/nope.png"], "no such mask file"),
        (["--sae", "{sae}", "--ablate", "#1", "--steps", "3:9"], "outside the schedule"),
        (["--sae", "{tmp}/none", "--ablate", "#1"], "no such SAE folder"),
        (["--steer", "#1=3"], "edits need an SAE"),
        (["--sae", "{sae}", "--prompt", " "], "--prompt is empty"),
    ],
)
def test_generate_bad_input_is_one_line(cli, block_sae_dir, tmp_path, extra, message):
    extra = [a.format(sae=block_sae_dir, tmp=tmp_path) for a in extra]
    out = cli("generate", *extra, "--num-steps", "4", "--out", str(tmp_path / "o"))
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_unlearn_fit_then_generate_with_the_recipe(cli, block_sae_dir, tmp_path):
    fit = cli(
        "unlearn", "fit", "--sae", str(block_sae_dir), "--concept", "red", "--percentile", "95",
        "--gamma", "-3", "--num-steps", "4", "--out", str(tmp_path / "r"), "--json",
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    s = json.loads(fit.stdout)
    assert s["concepts"] == ["red"] and s["block"] == BLOCK and s["selected_pairs"] >= 4
    assert s["n_prompts"] == 48 and (tmp_path / "r" / "latents.safetensors").is_file()
    gen = cli(
        "generate", "--unlearn", str(tmp_path / "r"), "--prompt", "a red circle",
        "--num-steps", "4", "--out", str(tmp_path / "g"), "--json",
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    g = json.loads(gen.stdout)
    assert g["edits"][0]["kind"] == "unlearn" and g["saes"][0]["block"] == BLOCK
    assert g["edited_calls"] == [4]
    bad = cli(
        "generate", "--unlearn", str(tmp_path / "r"), "--prompt", "a red circle",
        "--num-steps", "3", "--out", str(tmp_path / "h"),
    )  # fmt: skip
    assert bad.returncode == 2 and "fitted for 4 denoising steps" in bad.stderr
    for extra, msg in ((["--gamma", "1"], "expected gamma < 0"), (["--concept", "mauve"], "mauve")):
        out = cli("unlearn", "fit", "--sae", str(block_sae_dir), "--concept", "red", *extra,
                  "--num-steps", "4", "--out", str(tmp_path / "x"))  # fmt: skip
        assert out.returncode == 2 and msg in out.stderr


@pytest.mark.slow
def test_unlearn_eval_reports_ua_ira_cra_and_refuses_bad_recipes(cli, block_sae_dir, tmp_path):
    fit = cli(
        "unlearn", "fit", "--sae", str(block_sae_dir), "--concept", "red", "--percentile", "90",
        "--gamma", "-20", "--num-steps", "4", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na red square\na blue circle\na green star\n")
    out = cli("unlearn", "eval", str(tmp_path / "r"), "--prompts", str(prompts),
              "--n-images", "2", "--out", str(tmp_path / "e"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "e" / "eval.json").read_text())
    sae, neg = res["sae"], res["negative_prompt"]
    assert sae["n_target"] == 4 and sae["n_other"] == 4  # 2 prompts x 2 seeds each
    assert 0 <= sae["ua"]["red"] <= 1 and neg["ua"]["red"] is not None
    assert sae["ira"]["bare"] == neg["ira"]["bare"]  # one bare run for both
    assert set(res["robustness"]["red"]) == {"other_frames", "word_order", "alone", "two_objects"}
    assert "not FID" in res["quality"]["name"] and res["cost"]["generation_ratio"] > 0
    assert res["seeds"] == [1000, 1001] and res["selection_split"]["seeds"] == [0]
    assert "Judge-feature Fréchet distance (not FID)" in (tmp_path / "e" / "eval.md").read_text()
    assert Image.open(tmp_path / "e" / "eval.png").size[0] > 100
    args = json.loads((tmp_path / "e" / "arguments.json").read_text())
    assert args["n_images"] == 2 and args["recipe"] == str(tmp_path / "r")
    missing = cli("unlearn", "eval", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    meta = json.loads((tmp_path / "r" / "recipe.json").read_text())
    meta["sae_hash"] = "0" * 64
    (tmp_path / "r" / "recipe.json").write_text(json.dumps(meta))
    other = cli("unlearn", "eval", str(tmp_path / "r"), "--out", str(tmp_path / "y"))
    assert other.returncode == 2 and "refit it" in other.stderr


def test_unlearn_fit_on_the_selection_split_records_it(cli, block_sae_dir, tmp_path):
    fit = cli(
        "unlearn", "fit", "--sae", str(block_sae_dir), "--concept", "star", "--selection-split",
        "--num-steps", "2", "--seeds", "3", "--out", str(tmp_path / "r"), "--json",
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert json.loads(fit.stdout)["n_prompts"] == 24
    meta = json.loads((tmp_path / "r" / "recipe.json").read_text())
    assert meta["selection_split"]["seeds"] == [3] and len(meta["selection_split"]["prompts"]) == 24
    assert "a red circle" in meta["selection_split"]["prompts"]  # pair (0, 0)
    assert "a red square" not in meta["selection_split"]["prompts"]  # pair (0, 1): evaluation
    bad = cli("unlearn", "fit", "--sae", str(block_sae_dir), "--concept", "star",
              "--selection-split", "--prompts", "x.txt", "--out", str(tmp_path / "s"))  # fmt: skip
    assert bad.returncode == 2 and "--selection-split is for" in bad.stderr
