"""``vsae train``: train an SAE from a YAML run config."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

from vsae.config import ConfigError, to_dict
from vsae.data import DataError, source_width
from vsae.data.shard_format import read_meta
from vsae.data.synthetic import generate
from vsae.runconfig import load_run_config
from vsae.sae.io import CheckpointError, write_provenance
from vsae.training.run_folder import RunFolderError, prepare_run_folder
from vsae.training.trainer import TrainingError

HELP = """Train a sparse autoencoder.

CONFIG is a YAML file with three sections (see configs/):
  sae:    SAEConfig fields (arch, expansion or n_latents, k, ...)
  train:  TrainConfig fields (batch_size, steps or epochs, lr, ckpt_every, ...)
  data:   either `synthetic: {...}` (SyntheticConfig fields) or `path: FILE.npy`
The run folder receives cfg.json + sae.safetensors (load with vsae.load(DIR)),
metrics.json (the final evaluation), metrics.jsonl (the training log) and,
with train.ckpt_every > 0, checkpoint.pt for --resume.

Checkpoint more often (less lost to a kill): --set train.ckpt_every=100 writes checkpoint.pt
every 100 steps (0: never); --set train.eval_every=N logs a held-out evaluation every N steps.

Bad data stops the run before training with one line naming the file: a dtype other than
float16/bfloat16/float32/float64, an empty file, a file that is not a numeric .npy array, or
rows holding NaN or inf (the first bad row and column, and how many rows). --skip-nonfinite
drops those rows instead (the normalisation statistics see checked rows only) and the output's
nonfinite_rows_dropped counts them; --skip-corrupt-shards skips corrupt or truncated shards of
a shard folder (named on stderr; corrupt_shards_skipped counts them). A non-finite final
metric is an error (exit 2), and the printed JSON is strict."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        help="train an SAE from a YAML config",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="YAML run config (sections sae, train, data)")
    p.add_argument("--out", required=True, help="run folder for the SAE, metrics and checkpoints")
    p.add_argument(
        "--data",
        help="activations to train on: a .npy file [N, D] or a shard folder written by "
        "`vsae extract` (overrides the config's data section)",
    )
    p.add_argument(
        "--hookpoint",
        help="which hookpoint of a shard folder to train on (needed when it holds several)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="reader processes for a shard folder (default 0: read in the training process)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set sae.k=16 --set train.lr=1e-3 (repeatable)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint.pt (same config required; "
        "without one the run starts fresh and says so)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in a non-empty --out: its checkpoint.pt, metrics and SAE are "
        "removed first (without --resume or --overwrite a non-empty --out is refused)",
    )
    p.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="drop rows holding NaN or inf instead of refusing the data; the output's "
        "nonfinite_rows_dropped says how many",
    )
    p.add_argument(
        "--skip-corrupt-shards",
        action="store_true",
        help="shard folders: skip a corrupt or truncated shard (named on stderr) instead of "
        "stopping; the output's corrupt_shards_skipped says how many",
    )
    p.set_defaults(run=run)


def load_data(run_cfg, data_arg: str | None):
    """The training data named by --data or the config."""
    path = data_arg or run_cfg.path
    if path is not None:
        return str(path)
    if run_cfg.synthetic is not None:
        return generate(run_cfg.synthetic).acts
    raise ConfigError("no data: give --data PATH or a data section (synthetic or path)")


def provenance(args: argparse.Namespace, run_cfg) -> dict:
    """What the SAE was trained on, for ``cfg.json``'s ``provenance`` (CONTRACTS.md).

    For a shard folder: its source spec, pretrained tag or path, the hookpoint, the source's
    options (``output`` = ``update``/``output`` for diffusion blocks, ``tokens`` for ViTs) and the
    folder; for an array file or a synthetic config only where the data came from.
    """
    path = args.data or run_cfg.path
    if path is None:
        return {"data": "synthetic", "synthetic": to_dict(run_cfg.synthetic)}
    path = Path(path)
    if not path.is_dir():
        return {"data": str(path.resolve())}
    meta = read_meta(path)
    hookpoint = args.hookpoint or next(iter(meta["hookpoints"]))
    options = dict(meta.get("options") or {})
    return {
        "data": str(path.resolve()),
        "source": meta.get("source"),
        "pretrained": meta.get("pretrained"),
        "hookpoint": hookpoint,
        "output": options.get("output"),
        "token_mode": options.get("tokens"),
        "options": options,
        # the mean and scale themselves are SAE buffers (sae.safetensors); this says the rule
        "normalisation": meta.get("normalisation"),
    }


def run(args: argparse.Namespace) -> int:
    """Train and write the run folder; print the final metrics as JSON.

    Under ``torchrun`` the process group is set up from the environment (gloo on
    CPU, nccl on GPU); gradients are averaged across ranks and rank 0 writes.
    """
    from vsae.training.distributed import cleanup_distributed, exit_distributed, setup_distributed
    from vsae.training.trainer import train

    info = setup_distributed()
    try:
        run_cfg = load_run_config(args.config, args.overrides)
        data = load_data(run_cfg, args.data)
        # a folder's meta.json or a .npy header; train() opens (and checks) the data itself
        sae_cfg = run_cfg.sae_for(source_width(data, args.hookpoint))
        out = prepare_run_folder(args.out, args.resume, args.overwrite, main=info.is_main)
        if info.distributed:  # every rank has checked the folder before rank 0 writes to it
            torch.distributed.barrier()
        _, metrics = train(
            sae_cfg,
            data,
            run_cfg.train,
            out_dir=out,
            resume=args.resume,
            hookpoint=args.hookpoint,
            num_workers=args.workers,
            skip_nonfinite=args.skip_nonfinite,
            skip_corrupt=args.skip_corrupt_shards,
        )
        if info.is_main:
            write_provenance(out, provenance(args, run_cfg))
    except (ConfigError, DataError, CheckpointError, TrainingError, RunFolderError) as err:
        print(f"vsae train: error: {err}", file=sys.stderr, flush=True)
        if getattr(args, "debug", False):
            traceback.print_exc()
        if info.distributed:
            exit_distributed(2)
        return 2
    except BaseException:
        cleanup_distributed(wait=False)  # a peer may never reach a barrier
        raise
    if info.is_main:
        for key, what in (
            ("nonfinite_rows_dropped", "rows holding NaN or inf dropped"),
            ("corrupt_shards_skipped", "corrupt shards skipped"),
        ):
            if key in metrics:
                print(f"vsae train: {metrics[key]} {what}", file=sys.stderr)
        print(json.dumps(metrics, indent=2, allow_nan=False))
    if info.distributed:
        exit_distributed(0)
    return 0
