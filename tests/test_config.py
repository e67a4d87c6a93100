"""Config validation: unknown keys, wrong types and bad values give clear errors."""

from __future__ import annotations

import pytest

from vsae import ConfigError, SAEConfig, TrainConfig
from vsae.config import from_dict, replace
from vsae.runconfig import load_run_config


def test_unknown_key_in_constructor_names_key_and_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        SAEConfig(arch="topk", d_in=8, kk=3)
    msg = str(err.value)
    assert "'kk'" in msg and "did you mean 'k'" in msg and "n_latents" in msg


def test_unknown_key_in_dict():
    with pytest.raises(ConfigError, match="unknown TrainConfig key 'learning_rate'.*valid keys"):
        from_dict(TrainConfig, {"learning_rate": 1e-3})


def test_wrong_type_and_value():
    with pytest.raises(ConfigError, match="k='8' has type str; expected int"):
        SAEConfig(d_in=8, k="8")
    with pytest.raises(ConfigError, match="arch='topq' is invalid"):
        SAEConfig(arch="topq", d_in=8)
    with pytest.raises(ConfigError, match="k=100 is invalid: expected between 1 and 64"):
        SAEConfig(d_in=8, k=100)
    with pytest.raises(ConfigError, match="n_candidates"):
        SAEConfig(arch="archetypal", d_in=8, n_latents=32, n_candidates=16)


def test_frozen_and_replace():
    cfg = SAEConfig(d_in=8, k=4)
    with pytest.raises(AttributeError):
        cfg.k = 5
    assert replace(cfg, k=5).k == 5 and cfg.k == 4
    assert cfg.num_latents == 64


def test_yaml_float_strings_and_lists():
    cfg = from_dict(TrainConfig, {"lr": "1e-3", "betas": [0.9, 0.99]})
    assert cfg.lr == pytest.approx(1e-3) and cfg.betas == (0.9, 0.99)


def test_run_config_errors_name_file_and_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sae:\n  arch: topk\n  kay: 3\ndata:\n  synthetic: {d: 16}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml \[sae\]: unknown SAEConfig key 'kay'"):
        load_run_config(path)
    path.write_text("sae: {arch: topk}\ntrian: {}\n")
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_run_config(path)
    path.write_text("sae: {arch: topk}\ndata:\n  synthetic: {d: 16, n_feats: 3}\n")
    with pytest.raises(ConfigError, match="SyntheticConfig key 'n_feats'"):
        load_run_config(path)


def test_overrides_apply(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("sae: {arch: topk, k: 4}\ndata:\n  synthetic: {d: 16}\n")
    run = load_run_config(path, ["sae.k=6", "train.lr=1e-2", "data.synthetic.d=24"])
    assert run.sae_for(24).k == 6 and run.train.lr == pytest.approx(1e-2)
    assert run.synthetic.d == 24
    with pytest.raises(ConfigError, match="key must start with one of sae, train, data"):
        load_run_config(path, ["k=3"])
