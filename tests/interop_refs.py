"""Reference forward passes of other tools' SAEs, written from each format's definition
(read from the tools' own code), and writers of their checkpoint layouts with random weights.

Shared by the interop tests. Nothing here imports vsae.interop: the references must stay
independent of the code they check.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor


def rel_err(a: Tensor, b: Tensor) -> float:
    """Relative error ||a - b|| / ||b|| (float64)."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def topk_scatter(pre_BN: Tensor, k: int, relu: bool = True) -> Tensor:
    """Keep each row's k largest entries (ReLU'd when ``relu``), zeros elsewhere."""
    vals, idx = pre_BN.topk(k, dim=-1)
    vals = vals.relu() if relu else vals
    return torch.zeros_like(pre_BN).scatter(-1, idx, vals)


# ----- SAELens (sae_lens/saes/*.py) ---------------------------------------------------------
def saelens_tensors(D: int, N: int, seed: int, arch: str = "standard") -> dict[str, Tensor]:
    g = gen(seed)
    t = {
        "W_enc": torch.randn(D, N, generator=g) / D**0.5,
        "b_enc": torch.randn(N, generator=g) * 0.1,
        "W_dec": torch.randn(N, D, generator=g) * 0.3,
        "b_dec": torch.randn(D, generator=g),
    }
    if arch == "jumprelu":
        t["threshold"] = torch.rand(N, generator=g) * 0.3
    return t


def write_saelens(path: Path, cfg: dict, t: dict[str, Tensor]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def saelens_encode(cfg: dict, t: dict[str, Tensor], x: Tensor) -> Tensor:
    """SAE.process_sae_in + encode of standard / topk / jumprelu SAEs."""
    arch = cfg.get("architecture", "standard")
    sae_in = x - t["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if cfg.get("rescale_acts_by_decoder_norm"):
        pre = pre * t["W_dec"].norm(dim=-1)
    if arch == "topk" or cfg.get("activation_fn_str") == "topk":
        k = cfg.get("k") or cfg["activation_fn_kwargs"]["k"]
        return topk_scatter(pre, k)
    if arch == "jumprelu":
        return pre.relu() * (pre > t["threshold"])
    return pre.relu()


def saelens_decode(cfg: dict, t: dict[str, Tensor], acts: Tensor) -> Tensor:
    if cfg.get("rescale_acts_by_decoder_norm"):
        acts = acts / t["W_dec"].norm(dim=-1)
    if "scaling_factor" in t:  # pre-6.0 fine-tuning scaling factor
        acts = acts * t["scaling_factor"]
    return acts @ t["W_dec"] + t["b_dec"]


# ----- sparsify (sparsify/sparse_coder.py, fused_encoder.py) ------------------------------
def sparsify_tensors(D: int, N: int, seed: int) -> dict[str, Tensor]:
    g = gen(seed)
    return {
        "encoder.weight": torch.randn(N, D, generator=g) / D**0.5,
        "encoder.bias": torch.randn(N, generator=g) * 0.1,
        "W_dec": torch.randn(N, D, generator=g) * 0.3,
        "b_dec": torch.randn(D, generator=g),
    }


def write_sparsify(path: Path, cfg: dict, t: dict[str, Tensor]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path / "sae.safetensors"))
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def sparsify_forward(k: int, t: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Dense codes and reconstruction: topk(relu(encoder(x - b_dec))), sum acts W_dec[idx]."""
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    recon = (vals[..., None] * t["W_dec"][idx]).sum(-2) + t["b_dec"]
    return torch.zeros_like(pre).scatter(-1, idx, vals), recon


# ----- sdxl-unbox (SAE/sae.py) --------------------------------------------------------------
def unbox_state(D: int, N: int, seed: int) -> dict[str, Tensor]:
    g = gen(seed)
    dec = torch.randn(D, N, generator=g)
    return {
        "encoder.weight": torch.randn(N, D, generator=g) / D**0.5,
        "decoder.weight": dec / dec.norm(dim=0),  # unit_norm_decoder_: unit columns
        "pre_bias": torch.randn(D, generator=g),
        "latent_bias": torch.randn(N, generator=g) * 0.1,
        "stats_last_nonzero": torch.zeros(N, dtype=torch.long),
    }


def unbox_forward(k: int, s: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """encode: relu(topk(encoder(x - pre_bias) + latent_bias)); recons + pre_bias."""
    pre = (x - s["pre_bias"]) @ s["encoder.weight"].T + s["latent_bias"]
    codes = topk_scatter(pre, k)
    return codes, unbox_decode(s, codes)


def unbox_decode(s: dict[str, Tensor], codes: Tensor) -> Tensor:
    return codes @ s["decoder.weight"].T + s["pre_bias"]


# ----- MSAE (sae.py: Autoencoder + SAE wrapper) --------------------------------------------
def msae_state(D: int, N: int, seed: int, tied: bool = False) -> dict[str, Tensor]:
    g = gen(seed)
    s = {
        "pre_bias": torch.randn(D, generator=g),
        "encoder": torch.randn(D, N, generator=g) / D**0.5,
        "latent_bias": torch.randn(N, generator=g) * 0.1,
        "latents_activation_frequency": torch.zeros(N, dtype=torch.int64),
    }
    if not tied:
        s["decoder"] = torch.randn(N, D, generator=g) * 0.3
    return s


def msae_encode(s: dict, mean: Tensor, scale: float, x: Tensor, topk: int | None) -> Tensor:
    """SAE.preprocess, encode_pre_act, then relu (full latents) or TopKReLU_topk."""
    xp = (x - mean) * scale
    pre = (xp - s["pre_bias"]) @ s["encoder"] + s["latent_bias"]
    return pre.relu() if topk is None else topk_scatter(pre, topk)


def msae_decode(s: dict, mean: Tensor, scale: float, codes: Tensor) -> Tensor:
    dec = s["decoder"] if "decoder" in s else s["encoder"].t()
    return (codes @ dec + s["pre_bias"]) / scale + mean


# ----- saev (src/saev/nn/modeling.py) --------------------------------------------------------
def saev_state(D: int, N: int, seed: int) -> dict[str, Tensor]:
    g = gen(seed)
    return {
        "W_enc": torch.randn(D, N, generator=g) / D**0.5,
        "b_enc": torch.randn(N, generator=g) * 0.1 + 0.5,  # mostly positive: >= k positive
        "W_dec": torch.randn(N, D, generator=g) * 0.3,
        "b_dec": torch.randn(D, generator=g),
    }


def write_saev(path: Path, header: dict, state: dict[str, Tensor]) -> Path:
    """saev's dump: one JSON line, then torch.save(state_dict) in the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fd:
        fd.write(json.dumps(header).encode() + b"\n")
        torch.save(state, fd)
    return path


def saev_encode(cls: str, s: dict, x: Tensor, top_k: int = 0, sub_b_dec: bool = False) -> Tensor:
    h = (x - s["b_dec"] if sub_b_dec else x) @ s["W_enc"] + s["b_enc"]
    if cls == "Relu":
        return h.relu()
    if cls == "TopK":  # mask * x: the k largest kept as they are
        _, idx = h.topk(top_k, dim=-1)
        return torch.zeros_like(h).scatter(-1, idx, 1.0) * h
    thr = s["activation.threshold"]
    return torch.where(h > (thr if thr > 0 else 0), h, torch.zeros_like(h))


def saev_decode(s: dict, codes: Tensor) -> Tensor:
    return codes @ s["W_dec"] + s["b_dec"]
