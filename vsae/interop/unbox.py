"""The SDXL-Turbo study's block SAEs ("sdxl-unbox"): ``config.json`` + ``state_dict.pth``.

Read from sdxl-unbox's ``SAE/sae.py`` (adapted from OpenAI's ``sparse_autoencoder``) and its
shipped ``checkpoints/``: ``config.json`` holds ``n_dirs_local`` (latents), ``d_model``,
``k``, ``auxk`` and ``dead_steps_threshold``; ``state_dict.pth`` is
``torch.save({"state_dict": ...})`` with ``encoder.weight`` [n_dirs, d_model],
``decoder.weight`` [d_model, n_dirs] (unit-norm columns), ``pre_bias`` [d_model],
``latent_bias`` [n_dirs] and the training counter ``stats_last_nonzero`` [n_dirs].
Encode: ``relu(topk(encoder(x - pre_bias) + latent_bias))``; decode:
``latents decoder^T + pre_bias``. The input is a U-Net block's update (output - input) of
``stabilityai/sdxl-turbo``; a checkpoint folder sits in
``<block>_k<k>_hidden<n>_auxk<a>_bs<b>_lr<lr>/final``. ``mean.pt`` and ``std.pt`` beside it
are per-latent activation statistics [n_dirs] (the app's steering scale), not an input
normalisation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vsae.interop.common import (
    SAEFormat,
    as_state_dict,
    assemble,
    base_provenance,
    check_names,
    check_shape,
    file_sha256,
    need_key,
    no_options,
    read_json,
    read_torch,
)
from vsae.sae.base import BaseSAE

CFG = "config.json"
WEIGHTS = "state_dict.pth"
STATS = ("mean.pt", "std.pt")
MODEL = "stabilityai/sdxl-turbo"
_RUN_NAME = re.compile(r"^(?P<block>.+?)_k\d+_hidden\d+")


class UnboxFormat(SAEFormat):
    """Read sdxl-unbox checkpoint folders."""

    name = "sdxl_unbox"

    def matches(self, path: Path) -> bool:
        """A folder with ``state_dict.pth`` and a ``config.json`` naming ``n_dirs_local``.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        if not (path.is_dir() and (path / WEIGHTS).is_file() and (path / CFG).is_file()):
            return False
        try:
            return "n_dirs_local" in read_json(path / CFG)
        except Exception:
            return False

    def read(self, path: Path, **options: Any) -> BaseSAE:
        """Load an sdxl-unbox checkpoint folder.

        Parameters
        ----------
        path : Path
            Folder with ``config.json`` and ``state_dict.pth``.
        **options
            None are accepted.

        Returns
        -------
        BaseSAE
            A TopK SAE on the block update.

        Raises
        ------
        InteropError
            A file needing pickle of code, missing/extra tensors, shapes against the config.
        """
        no_options(options, self.name)
        cfg_path, w_path = path / CFG, path / WEIGHTS
        cfg = read_json(cfg_path)
        N, D = need_key(cfg, "n_dirs_local", cfg_path), need_key(cfg, "d_model", cfg_path)
        k = need_key(cfg, "k", cfg_path)
        obj = read_torch(w_path, str(w_path))
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        t = as_state_dict(obj, str(w_path))
        need = {"encoder.weight", "decoder.weight", "pre_bias", "latent_bias"}
        check_names(t, need, str(w_path), frozenset({"stats_last_nonzero"}))
        shapes = {
            "encoder.weight": (N, D),
            "decoder.weight": (D, N),
            "pre_bias": (D,),
            "latent_bias": (N,),
            "stats_last_nonzero": (N,),
        }
        for name in t:
            check_shape(t[name], shapes[name], name, str(w_path))
        prov = base_provenance(self.name, w_path, model=MODEL, output="update")
        match = _RUN_NAME.match(path.parent.name if path.name == "final" else path.name)
        if match:
            prov["hookpoint"] = match["block"]
            prov["block"] = match["block"].removeprefix("unet.")
        stats = {n: file_sha256(path / n) for n in STATS if (path / n).is_file()}
        if stats:
            prov["latent_stats_files"] = stats  # per-latent statistics, not a normalisation
        pre_D = t["pre_bias"]
        W_dec_ND = t["decoder.weight"].t().contiguous()
        return assemble(
            "topk", t["encoder.weight"], t["latent_bias"], W_dec_ND, pre_D, pre_D, prov, k=k
        )
