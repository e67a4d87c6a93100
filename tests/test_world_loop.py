"""The world trainers' shared loop helper: schedule, strict configs, smoothed log, summary."""

from __future__ import annotations

import json
import math

import pytest

from vsae.world.judge import JudgeTrainConfig
from vsae.world.loop import TrainLoop, config_from, warmup_cosine
from vsae.world.train_clip import ClipTrainConfig
from vsae.world.train_diffusion import DiffusionTrainConfig


@pytest.mark.parametrize("steps", [4, 800, 1500])
def test_cosine_schedule_is_the_clip_and_judge_schedule_bit_for_bit(steps):
    for warm in (max(1, steps // 20), 100):
        for s in range(steps + 1):
            old = min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
            assert warmup_cosine(s, steps, warm) == old


def test_cosine_schedule_with_a_floor():
    steps = 6000
    assert warmup_cosine(0, steps, 100, floor=0.1) == pytest.approx(0.01)
    assert warmup_cosine(steps, steps, 100, floor=0.1) == pytest.approx(0.1)
    for s in range(0, steps + 1, 13):  # the diffusion schedule up to rounding of pi * s / steps
        old = min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
        assert warmup_cosine(s, steps, 100, floor=0.1) == pytest.approx(old, rel=1e-14)


def test_configs_are_frozen_and_refuse_unknown_fields():
    cfg = config_from(ClipTrainConfig, None, {"kind": "siglip", "steps": 4})
    assert cfg.kind == "siglip" and cfg.render_seed == 1  # seed 0, + 1 for SigLIP
    assert config_from(ClipTrainConfig, cfg, {"data_seed": 40}).render_seed == 40
    with pytest.raises(ValueError, match=r"ClipTrainConfig: unknown option\(s\) \['step'\]"):
        config_from(ClipTrainConfig, None, {"step": 4})
    with pytest.raises(ValueError, match="kind='vit'"):
        ClipTrainConfig(kind="vit")
    with pytest.raises(AttributeError):
        JudgeTrainConfig().steps = 2  # type: ignore[misc]
    assert DiffusionTrainConfig().min_snr_gamma == 5.0
    # groups x values: 2 x 4 positions + 1 x 6 shapes
    assert ClipTrainConfig(pairs={"position": 2, "shape": 1}).n_pair_rows == 2 * 4 + 1 * 6


def test_train_loop_smooths_logs_and_writes_the_summary(tmp_path):
    lines: list[str] = []
    loop = TrainLoop("judge", steps=5, log=lines.append, every=2)
    for step, loss in enumerate([4.0, 2.0, 2.0, 2.0, 1.0]):
        loop.step_done(step, loss)
    # 4, then 0.95 * old + 0.05 * new: 3.9, 3.805, 3.71475, 3.5790125
    assert loop.loss == pytest.approx(3.5790125)
    assert [ln.split(" loss ")[0] for ln in lines] == [
        "[judge] step 0/5", "[judge] step 2/5", "[judge] step 4/5",
    ]  # fmt: skip
    summary = loop.finish(tmp_path, {"steps": 5, **loop.tail()})
    assert json.loads((tmp_path / "train_summary.json").read_text()) == summary
    assert summary["final_loss"] == loop.loss and lines[-1].startswith("[judge] done {")
