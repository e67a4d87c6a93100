"""The shipped tiny-world models: loading, zero-shot accuracy, diffusion, judge."""

import numpy as np
import pytest
import torch
from PIL import Image

from vsae import world
from vsae.world.clip import encode_renders, images_to_tensor
from vsae.world.evaluate import TARGETS, colour_shape_prompts, weights_size_mb
from vsae.world.tokens import PromptError
from vsae.world.zeroshot import zero_shot_accuracy

HELDOUT_SEED = 20_202  # no training run uses this seed


@pytest.fixture(scope="module")
def clip():
    return world.load_clip()


@pytest.fixture(scope="module")
def pipe():
    return world.load_diffusion()


@pytest.fixture(scope="module")
def judge():
    return world.load_judge()


def test_shipped_weights_load_and_fit_the_budget(clip):
    import open_clip

    model, preprocess, tok = clip
    assert isinstance(model, open_clip.model.CLIP) and not model.training
    siglip, _, _ = world.load_siglip()
    assert siglip.logit_bias is not None
    assert weights_size_mb(world.WEIGHTS_DIR) <= 25.0
    # open_clip's own preprocess on a 64x64 PIL render equals the training transform
    images, _ = world.render(2, seed=HELDOUT_SEED)
    via_pil = torch.stack([preprocess(Image.fromarray(im)) for im in images])
    assert torch.allclose(via_pil, images_to_tensor(images), atol=1e-5)
    emb = model.encode_text(tok(["a red circle"]), normalize=True)
    assert emb.shape == (1, 128)


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["load_clip", "load_siglip"])
def test_zero_shot_accuracy_clears_the_targets(loader):
    model, _, tok = getattr(world, loader)()
    images, scenes = world.render(200, seed=HELDOUT_SEED)
    acc = zero_shot_accuracy(model, tok, images, scenes, attributes=tuple(TARGETS["zero_shot"]))
    for attr, target in TARGETS["zero_shot"].items():
        assert acc[attr] >= target, (loader, attr, acc)


def test_tokenizer_refuses_what_it_cannot_represent(clip):
    _, _, tok = clip
    with pytest.raises(PromptError, match="context length"):
        tok(["a red circle " * 20])
    with pytest.raises(PromptError, match="empty prompt list"):
        tok([])
    assert tok([""]).shape == (1, 32)  # the empty prompt is fine (unconditional)
    strict = world.WorldTokenizer(strict=True)
    with pytest.raises(PromptError, match="never saw"):
        strict(["a red giraffe"])
    assert strict(["a photo of a red circle in the top left"]).shape == (1, 32)


def test_diffusion_runs_with_and_without_guidance(pipe):
    from diffusers import UNet2DConditionModel
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert any(isinstance(m, Transformer2DModel) for m in pipe.unet.modules())
    guided = pipe(["a red circle", "a blue star"], steps=2, guidance=3.0, seed=1)
    plain = pipe(["a red circle", "a blue star"], steps=2, guidance=1.0, seed=1)
    assert len(guided) == 2 and guided[0].size == (32, 32)
    assert not np.array_equal(np.asarray(guided[0]), np.asarray(plain[0]))
    again = pipe(["a red circle", "a blue star"], steps=2, guidance=3.0, seed=1, output_type="np")
    assert np.array_equal(np.stack([np.asarray(g) for g in guided]), again)
    with pytest.raises(PromptError, match="empty prompt list"):
        pipe([], steps=2)
    with pytest.raises(PromptError, match="context length"):
        pipe(["a red circle " * 20], steps=2)


def test_judge_is_accurate_on_heldout_renders(judge):
    images, scenes = world.render(100, seed=HELDOUT_SEED)
    scores = judge.score(images, scenes)
    assert min(scores.values()) >= 0.95, scores
    pred = judge.predict([Image.fromarray(im) for im in images[:3]])
    assert pred["colour"] == [s["colour"] for s in scenes[:3]]


@pytest.mark.slow
def test_judge_scores_generated_colours_above_the_target(pipe, judge):
    prompts, requests = colour_shape_prompts(1)
    prompts, requests = prompts[::3], requests[::3]  # 16 prompts, every colour twice
    images = pipe(prompts, steps=20, seed=0, output_type="np")
    scores = judge.score(images, requests)
    assert scores["colour"] >= TARGETS["diffusion"]["colour"], scores
    assert judge.score_prompts(images, prompts) == scores


def test_dense_export_loads_in_plain_open_clip(clip, tmp_path):
    import open_clip

    from vsae.world.clip import export_open_clip

    model, _, tok = clip
    out = export_open_clip(model, world.WEIGHTS_DIR / "clip", tmp_path / "dense")
    plain, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    plain.eval()
    text = tok(["a red circle", "a large star in the top left"])
    with torch.no_grad():
        assert torch.allclose(plain.encode_text(text), model.encode_text(text), atol=1e-5)


def test_attributes_in_prompt():
    from vsae.world.judge import attributes_in_prompt

    assert attributes_in_prompt("a red circle") == {"colour": "red", "shape": "circle"}
    got = attributes_in_prompt("A large blue star in the top left, striped background")
    assert got == {
        "colour": "blue",
        "shape": "star",
        "size": "large",
        "position": "top left",
        "background": "stripes",
    }


def test_diffusion_carries_its_own_frozen_text_encoder(pipe, tmp_path, caplog):
    import shutil

    from vsae.world.diffusion import load_text_encoder

    # the conditioning is the diffusion folder's text tower, not whatever CLIP ships next to it
    text_model, _, _ = load_text_encoder(world.WEIGHTS_DIR / "diffusion")
    ours = list(text_model.transformer.parameters())
    assert len(ours) > 0
    for a, b in zip(ours, pipe.text_encoder.transformer.parameters(), strict=True):
        assert torch.equal(a, b)
    # loading logs no open_clip "initialized randomly" warning: vsae loads the weights itself
    with caplog.at_level("WARNING"):
        world.load_clip()
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    broken = tmp_path / "weights"
    shutil.copytree(world.WEIGHTS_DIR / "diffusion", broken / "diffusion")
    shutil.rmtree(broken / "diffusion" / "text_encoder")
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        world.load_diffusion(broken)


def test_diffusion_training_resumes_from_a_folder(tmp_path):
    """``init_from`` starts the UNet from saved weights (phase 2 of the build)."""
    from vsae.world.diffusion import load as load_pipe
    from vsae.world.diffusion import load_text_encoder
    from vsae.world.train_diffusion import train_diffusion

    text_dir = world.WEIGHTS_DIR / "diffusion" / "text_encoder"
    with pytest.raises(FileNotFoundError, match="no UNet weights"):
        train_diffusion(
            tmp_path / "bad",
            clip_dir=text_dir,
            init_from=tmp_path / "missing",
            steps=1,
            pool=16,
            select_steps=1,
            log=lambda m: None,
        )
    summary = train_diffusion(
        tmp_path / "d",
        clip_dir=text_dir,
        init_from=world.WEIGHTS_DIR / "diffusion",
        steps=1,
        pool=64,
        lr=1e-12,
        select_steps=1,
        log=lambda m: None,
    )
    assert summary["init_from"] == str(world.WEIGHTS_DIR / "diffusion")
    # one step at lr ~0 from the shipped EMA: the saved UNet is (almost) the shipped one
    model, _, tok = load_text_encoder(tmp_path / "d")
    new = load_pipe(tmp_path / "d", model, tok).unet.state_dict()
    shipped = world.load_diffusion().unet.state_dict()
    assert all(torch.allclose(new[k], shipped[k], atol=1e-3) for k in shipped)


def test_encode_renders_matches_one_forward_pass_and_normalises_on_request(clip):
    model = clip[0]
    images, _ = world.render(7, seed=3)
    with torch.no_grad():
        whole_NE = model.encode_image(images_to_tensor(images)).float()
    raw_NE = encode_renders(model, images, batch=3)  # batches of 3, 3 and 1
    assert raw_NE.shape == whole_NE.shape and raw_NE.dtype == torch.float32
    torch.testing.assert_close(raw_NE, whole_NE, rtol=1e-4, atol=1e-5)
    unit_NE = encode_renders(model, images, batch=3, normalize=True)
    torch.testing.assert_close(unit_NE.norm(dim=1), torch.ones(7), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        unit_NE, torch.nn.functional.normalize(whole_NE, dim=1), rtol=1e-4, atol=1e-5
    )
