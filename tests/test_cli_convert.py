"""``vsae convert`` and ``vsae eval`` on other tools' checkpoints, through the CLI (one real
subprocess; the rest call ``vsae.cli.main`` in this process to keep the suite fast)."""

from __future__ import annotations

import contextlib
import io
import json

import interop_refs as ref
import numpy as np
import torch
from conftest import run_cli
from safetensors.torch import load_file

from vsae.cli import main

D, N = 12, 48


def _sparsify(tmp_path):
    t = ref.sparsify_tensors(D, N, seed=21)
    folder = ref.write_sparsify(tmp_path / "layers.4", {"d_in": D, "num_latents": N, "k": 5}, t)
    return folder, t


def test_convert_sparsify_to_saelens_then_eval_reads_the_source(tmp_path):
    src, t = _sparsify(tmp_path)
    out = tmp_path / "out_sl"
    proc = run_cli("convert", str(src), "--to", "saelens", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)  # --json: only JSON on stdout
    assert record["source_format"] == "sparsify" and record["to"] == "saelens"
    assert record["provenance"]["hookpoint"] == "layers.4"
    assert json.loads((out / "convert.json").read_text()) == record
    cfg = json.loads((out / "cfg.json").read_text())
    w = load_file(str(out / "sae_weights.safetensors"))
    x = torch.randn(30, D, generator=ref.gen(2))
    codes, recon = ref.sparsify_forward(5, t, x)
    assert ref.rel_err(ref.saelens_encode(cfg, w, x), codes) < 1e-5
    assert ref.rel_err(ref.saelens_decode(cfg, w, codes), recon) < 1e-5
    # vsae eval takes the foreign folder and the converted one alike
    np.save(tmp_path / "acts.npy", x.numpy())
    metrics = [json.loads(block) for block in _json_blocks(tmp_path, src, out)]
    fvu = float(((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert all(abs(m["fvu"] - fvu) < 1e-4 and m["l0"] == 5.0 for m in metrics)


def _json_blocks(tmp_path, *saes):
    """The JSON that ``vsae eval`` prints for each SAE (run in process, stdout captured)."""
    for sae in saes:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["eval", str(sae), "--data", str(tmp_path / "acts.npy")]) == 0
        yield json.dumps(json.loads(buf.getvalue()))


def test_convert_refuses_bad_input_and_keeps_dir(tmp_path, capsys):
    src, _ = _sparsify(tmp_path)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["convert", str(src), "--to", "vsae", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and len(err.strip().splitlines()) == 1
    # a failing conversion with --overwrite leaves DIR as it was
    argv = ["convert", str(src), "--to", "saelens", "--format", "saev", "--out", str(out)]
    assert main([*argv, "--overwrite"]) == 2
    assert "a saev checkpoint is one file" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["convert", "hf://not/a/../uri", "--to", "vsae", "--out", str(tmp_path / "h")]) == 2
    assert "malformed Hub URI" in capsys.readouterr().err
    # an overcomplete state dict needs --top-k, then converts, replacing DIR
    sd = {
        "encoder.final_block.0.weight": torch.randn(N, D),
        "encoder.final_block.0.bias": torch.zeros(N),
        "dictionary._weights": torch.randn(N, D),
        "dictionary.multiplier": torch.tensor(0.0),
    }
    torch.save(sd, tmp_path / "oc.pt")
    argv = ["convert", str(tmp_path / "oc.pt"), "--to", "sparsify", "--out", str(out)]
    assert main([*argv, "--overwrite"]) == 2
    assert "--top-k" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--top-k", "4"]) == 0
    assert json.loads((out / "cfg.json").read_text())["k"] == 4 and not (out / "keep.txt").exists()
    record = json.loads((out / "convert.json").read_text())
    assert record["source_format"] == "overcomplete" and record["args"]["top_k"] == 4
    assert not list(tmp_path.glob(".taken*"))  # no temporary folder left behind


def test_convert_help_lists_every_format(capsys):
    try:
        main(["convert", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = capsys.readouterr().out
    for name in ("saelens", "sparsify", "sdxl_unbox", "msae", "saev", "overcomplete", "--top-k"):
        assert name in text
