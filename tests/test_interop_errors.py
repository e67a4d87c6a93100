"""Bad input to vsae.load gets one clear error naming the file and what was expected."""

from __future__ import annotations

import json

import interop_refs as ref
import pytest
import torch
from torch import nn

import vsae
from vsae.interop.hub import parse

D, N = 8, 32


def _saelens(tmp_path, **cfg_extra):
    cfg = {"d_in": D, "d_sae": N, "architecture": "standard", **cfg_extra}
    return ref.write_saelens(tmp_path / "sl", cfg, ref.saelens_tensors(D, N, seed=0))


def test_truncated_safetensors_names_the_file(tmp_path):
    folder = _saelens(tmp_path)
    w = folder / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(vsae.InteropError, match=r"sae_weights\.safetensors.*truncated"):
        vsae.load(folder)


def test_truncated_torch_file_names_the_file(tmp_path):
    folder = tmp_path / "unbox"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"n_dirs_local": N, "d_model": D, "k": 3}))
    torch.save({"state_dict": ref.unbox_state(D, N, 0)}, folder / "state_dict.pth")
    w = folder / "state_dict.pth"
    w.write_bytes(w.read_bytes()[:300])
    with pytest.raises(vsae.InteropError, match=r"state_dict\.pth: unreadable torch file"):
        vsae.load(folder)


def test_missing_and_extra_tensors_are_listed(tmp_path):
    t = ref.saelens_tensors(D, N, seed=0)
    del t["b_enc"]
    t["W_skip"] = torch.zeros(D, D)
    ref.write_saelens(tmp_path / "x", {"d_in": D, "d_sae": N}, t)
    with pytest.raises(
        vsae.InteropError, match=r"missing tensors \['b_enc'\], unexpected tensors \['W_skip'\]"
    ):
        vsae.load(tmp_path / "x")


def test_shapes_that_disagree_with_the_config(tmp_path):
    folder = _saelens(tmp_path, d_sae=N + 1)
    with pytest.raises(
        vsae.InteropError,
        match=rf"'W_dec' has shape \({N}, {D}\); the config expects \({N + 1}, {D}\)",
    ):
        vsae.load(folder)
    t = ref.sparsify_tensors(D, N, seed=0)
    ref.write_sparsify(tmp_path / "sp", {"d_in": D + 1, "num_latents": N, "k": 3}, t)
    with pytest.raises(vsae.InteropError, match=r"sae\.safetensors: tensor 'encoder\.weight'"):
        vsae.load(tmp_path / "sp")


@pytest.mark.parametrize(
    ("fmt", "cfg", "message"),
    [
        ("saelens", {"architecture": "gated"}, "architecture='gated' is not supported"),
        ("saelens", {"normalize_activations": "layer_norm"}, "rescales each sample"),
        ("sparsify", {"transcode": True}, "transcode=True is not supported"),
        ("sparsify", {"activation": "groupmax"}, "groupmax"),
    ],
)
def test_unsupported_architectures_are_refused(tmp_path, fmt, cfg, message):
    if fmt == "saelens":
        ref.write_saelens(
            tmp_path / "f", {"d_in": D, "d_sae": N, **cfg}, ref.saelens_tensors(D, N, 0)
        )
    else:
        base = {"d_in": D, "num_latents": N, "k": 3, **cfg}
        ref.write_sparsify(tmp_path / "f", base, ref.sparsify_tensors(D, N, 0))
    with pytest.raises(vsae.InteropError, match=message):
        vsae.load(tmp_path / "f", format=fmt)


@pytest.mark.parametrize(
    "uri", ["hf://owner", "hf://owner/", "hf:///repo", "hf://a/b/../c", "hf://a/b@", "hf://a b/c"]
)
def test_malformed_hub_uris(uri):
    with pytest.raises(vsae.InteropError, match="malformed Hub URI"):
        vsae.load(uri)


def test_hub_uri_parts():
    assert parse("hf://o/r") == ("o/r", "", None)
    assert parse("hf://o/r.x/unet.up_blocks.1.attentions.1@v1.0") == (
        "o/r.x",
        "unet.up_blocks.1.attentions.1",
        "v1.0",
    )
    assert parse("hf://o/r/a/b.pth@0123abc") == ("o/r", "a/b.pth", "0123abc")


def test_pickled_module_is_refused_with_the_conversion(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(D, N), path)  # pickle of code, as torch.save(model) writes
    for fmt in ("auto", "overcomplete"):
        with pytest.raises(
            vsae.InteropError, match="pickles torch.nn.modules.linear.Linear"
        ) as err:
            vsae.load(path, format=fmt, top_k=3)
        assert "state_dict()" in str(err.value) and "weights_only=False" in str(err.value)
        assert f"torch.load('{path}'" in str(err.value)


def test_unknown_and_ambiguous_layouts_list_what_was_found(tmp_path):
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "weights.npy").write_bytes(b"x")
    (tmp_path / "u" / "cfg.json").write_text(json.dumps({"hidden": 3}))
    with pytest.raises(vsae.InteropError, match=r"unknown layout.*weights\.npy.*\['hidden'\]"):
        vsae.load(tmp_path / "u")
    # SAELens's weights file beside a sparsify weights file and cfg: both formats match
    folder = _saelens(tmp_path)
    ref.write_sparsify(
        folder, {"d_in": D, "d_sae": N, "num_latents": N, "k": 3}, ref.sparsify_tensors(D, N, 0)
    )
    with pytest.raises(vsae.InteropError, match="ambiguous layout, matches saelens and sparsify"):
        vsae.load(folder)
    assert vsae.load(folder, format="saelens").cfg.arch == "relu"


def test_bad_format_name_options_and_paths(tmp_path):
    with pytest.raises(vsae.InteropError, match="format='sae_lens'; expected one of auto, vsae"):
        vsae.load(tmp_path, format="sae_lens")
    with pytest.raises(vsae.InteropError, match="no such file or folder"):
        vsae.load(tmp_path / "absent")
    with pytest.raises(vsae.InteropError, match="takes no options"):
        vsae.load(_saelens(tmp_path), top_k=3)
    with pytest.raises(vsae.InteropError, match="missing key 'd_sae'"):
        ref.write_saelens(tmp_path / "nok", {"d_in": D}, ref.saelens_tensors(D, N, 0))
        vsae.load(tmp_path / "nok")


def test_broken_vsae_folders_keep_load_sae_errors(tmp_path):
    sae = vsae.build(vsae.SAEConfig(arch="topk", d_in=D, n_latents=N, k=3))
    sae.save(tmp_path / "v")
    (tmp_path / "v" / "sae.safetensors").unlink()
    with pytest.raises(vsae.CheckpointError, match=r"sae\.safetensors: no such file"):
        vsae.load(tmp_path / "v")
    (tmp_path / "v" / "cfg.json").write_text("{not json")
    with pytest.raises(vsae.CheckpointError, match=r"cfg\.json: not valid JSON"):
        vsae.load(tmp_path / "v")
