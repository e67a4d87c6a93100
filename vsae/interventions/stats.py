"""Per-latent statistics from an SAE's training shards: firing rate, mean when firing, max.

Computed once and saved next to the SAE as ``latent_stats.safetensors`` (CONTRACTS.md). For
diffusion shards each sample records its denoising ``step``; the statistics are also kept per
step (rows of ``*_TN``, in the order of ``steps_T``). Steering strengths are in units of
``mean_act_N`` (the SDXL-Turbo study's convention).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vsae.sae.io import read_provenance

from .errors import InterventionError

STATS_NAME = "latent_stats.safetensors"


@dataclass(frozen=True)
class LatentStats:
    """Per-latent statistics of an SAE on its training shards.

    Attributes
    ----------
    firing_rate_N : torch.Tensor
        Fraction of vectors where the latent fires.
    mean_act_N : torch.Tensor
        Mean activation over the vectors where it fires (the unit of steering strengths).
    max_act_N : torch.Tensor
        Largest activation.
    steps_T : torch.Tensor
        The denoising steps of the per-step rows (-1: samples without a step).
    firing_rate_TN, mean_act_TN : torch.Tensor
        The same per step.
    """

    firing_rate_N: torch.Tensor
    mean_act_N: torch.Tensor
    max_act_N: torch.Tensor
    steps_T: torch.Tensor
    firing_rate_TN: torch.Tensor
    mean_act_TN: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        """The safetensors content.

        Returns
        -------
        dict
            name -> contiguous tensor.
        """
        return {k: v.contiguous() for k, v in self.__dict__.items()}


class _Acc:
    def __init__(self, n: int):
        self.count, self.fire_N = 0, torch.zeros(n, dtype=torch.float64)
        self.sum_N = torch.zeros(n, dtype=torch.float64)
        self.max_N = torch.zeros(n)

    def add(self, codes_BN: torch.Tensor) -> None:
        self.count += codes_BN.shape[0]
        self.fire_N += (codes_BN > 0).sum(0).double()
        self.sum_N += codes_BN.clamp_min(0).sum(0).double()
        self.max_N = torch.maximum(self.max_N, codes_BN.max(0).values.float())

    def rate_mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        rate = self.fire_N / max(self.count, 1)
        return rate.float(), (self.sum_N / self.fire_N.clamp_min(1)).float()


@torch.no_grad()
def compute_latent_stats(
    sae: torch.nn.Module, shards: str | Path, hookpoint: str | None = None, batch: int = 4096
) -> LatentStats:
    """Encode every vector of a shard folder and accumulate per-latent statistics.

    Parameters
    ----------
    sae : BaseSAE
    shards : str or Path
        A shard folder written by ``vsae extract`` (``meta.json``).
    hookpoint : str, optional
        Needed when the folder holds several.
    batch : int
        Vectors encoded at once.

    Returns
    -------
    LatentStats

    Raises
    ------
    InterventionError
        Unreadable shards, an unknown hookpoint, or a width that is not the SAE's ``d_in``.
    """
    from vsae.data.shard_format import decode_array, read_meta
    from vsae.data.shard_reader import iter_shard_samples

    try:
        meta = read_meta(shards)
    except (OSError, ValueError) as exn:
        raise InterventionError(f"{shards}: cannot read the training shards ({exn})") from None
    hps = list(meta["hookpoints"])
    hp = hookpoint if hookpoint is not None else (hps[0] if len(hps) == 1 else None)
    if hp not in meta["hookpoints"]:
        raise InterventionError(f"{shards}: choose a hookpoint among {hps}, got {hookpoint!r}")
    info = meta["hookpoints"][hp]
    if int(info["d"]) != sae.d_in:
        raise InterventionError(f"{shards}: {hp} has width {info['d']}, the SAE d_in {sae.d_in}")
    urls = [str(Path(shards) / s["name"]) for s in meta["shards"]]
    total, per_step = _Acc(sae.n_latents), {}
    for sample in iter_shard_samples(urls):
        x_TD = decode_array(sample[info["field"]], sample["__key__"])
        step = int(json.loads(sample["json"]).get("step", -1)) if "json" in sample else -1
        x_TD = np.atleast_2d(x_TD)
        for i in range(0, len(x_TD), batch):
            codes_BN = sae.encode(torch.from_numpy(x_TD[i : i + batch].astype(np.float32)))
            total.add(codes_BN)
            per_step.setdefault(step, _Acc(sae.n_latents)).add(codes_BN)
    if total.count == 0:
        raise InterventionError(f"{shards}: no vectors for {hp}")
    rate, mean = total.rate_mean()
    steps = sorted(per_step)
    pairs = [per_step[s].rate_mean() for s in steps]
    return LatentStats(
        rate,
        mean,
        total.max_N,
        torch.tensor(steps, dtype=torch.int64),
        torch.stack([p[0] for p in pairs]),
        torch.stack([p[1] for p in pairs]),
    )


def load_or_compute_stats(
    sae_dir: str | Path,
    sae: torch.nn.Module,
    shards: str | Path | None = None,
    hookpoint: str | None = None,
) -> LatentStats:
    """``latent_stats.safetensors`` of an SAE folder, computed from ``shards`` and saved if absent.

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder (the file is read from and written to it); for another tool's
        checkpoint file, ``STEM.latent_stats.safetensors`` beside it.
    sae : BaseSAE
        The loaded model.
    shards : str or Path, optional
        Its training shards; default: the folder its ``cfg.json`` provenance records.
    hookpoint : str, optional
        The shard hookpoint (default: the provenance's, or the only one).

    Returns
    -------
    LatentStats

    Raises
    ------
    InterventionError
        No saved statistics and no shards to compute them from, or a file of another SAE.
    """
    where = Path(sae_dir)  # a folder, or another tool's checkpoint file: stats beside it
    path = where / STATS_NAME if where.is_dir() else where.with_name(f"{where.stem}.{STATS_NAME}")
    if path.is_file():
        stats = LatentStats(**load_file(str(path)))
        if stats.mean_act_N.shape != (sae.n_latents,):
            raise InterventionError(
                f"{path}: statistics of {stats.mean_act_N.shape[0]} latents; the SAE has "
                f"{sae.n_latents}"
            )
        return stats
    prov = read_provenance(where) if (where / "cfg.json").is_file() else {}
    if shards is None and prov.get("data") and Path(prov["data"]).is_dir():
        shards = prov["data"]
    hookpoint = hookpoint or prov.get("hookpoint")
    if shards is None:
        raise InterventionError(
            f"{path}: no latent statistics yet; give the SAE's training shards "
            "(shards= / --shards) to compute them once"
        )
    stats = compute_latent_stats(sae, shards, hookpoint)
    tmp = path.with_name(path.name + ".tmp")
    save_file(stats.tensors(), str(tmp))
    os.replace(tmp, path)
    return stats
