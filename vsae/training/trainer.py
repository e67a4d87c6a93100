"""The training loop: AdamW, schedule, clipping, AuxK, evaluation, checkpoints, resume.

``train`` runs in five parts: set-up (open the data, seed, build and initialise the SAE, its
optimiser and schedule), resume (restore everything from the checkpoint), step (one optimiser
step, gradients averaged over ranks under torchrun), evaluate (held-out metrics) and log
(``metrics.jsonl``, checkpoints, the final files).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vsae.config import SAEConfig, TrainConfig, to_dict
from vsae.data import BatchSource, DataError, open_source
from vsae.data.checks import check_metrics
from vsae.metrics import evaluate
from vsae.sae import REGISTRY, BaseSAE, build
from vsae.sae.base import LossOutput
from vsae.sae.io import CheckpointError
from vsae.training import checkpoint as ckpt
from vsae.training.distributed import any_across_ranks, average_gradients, get_rank, get_world_size
from vsae.training.optim import adamw
from vsae.training.run_log import RunLog
from vsae.training.schedule import lr_factor


class TrainingError(RuntimeError):
    """Training stopped: non-finite input or loss."""


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def make_source(
    data: Any,
    cfg: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
    min_hold: int = 0,
    hookpoint: str | None = None,
    num_workers: int = 0,
    skip_nonfinite: bool = False,
    skip_corrupt: bool = False,
) -> BatchSource:
    """The training data opened with ``vsae.data.open_source`` at the run's batch size and seed.

    An iterable's (or a shard folder's) first ``max(eval_samples, min_hold)`` rows are held
    out: they are the evaluation set and the sample for normalisation and data-dependent init.

    Parameters
    ----------
    data : array, str, Path, iterable or BatchSource
        Anything ``open_source`` accepts.
    cfg : TrainConfig
        Its ``batch_size``, ``seed`` and ``eval_samples`` cut the data.
    rank, world_size : int
        Data-parallel position.
    min_hold : int
        Rows an iterable must hold out at least (an archetypal SAE's candidate count).
    hookpoint : str, optional
        Which hookpoint of a shard folder.
    num_workers : int
        Reader processes of a shard folder.
    skip_nonfinite : bool
        Drop rows holding NaN or inf instead of refusing the data.
    skip_corrupt : bool
        Skip a shard folder's corrupt shards instead of stopping.

    Returns
    -------
    BatchSource

    Raises
    ------
    DataError
        Data that ``open_source`` cannot open (the message names it).
    """
    return open_source(
        data,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        eval_samples=cfg.eval_samples,
        hold=max(cfg.eval_samples, min_hold),
        rank=rank,
        world_size=world_size,
        hookpoint=hookpoint,
        num_workers=num_workers,
        skip_nonfinite=skip_nonfinite,
        skip_corrupt=skip_corrupt,
    )


def total_steps(cfg: TrainConfig, source: BatchSource) -> int:
    """Steps of the run: ``cfg.steps``, or ``epochs`` passes over an array.

    Parameters
    ----------
    cfg : TrainConfig
        ``steps`` (> 0 wins) or ``epochs``.
    source : BatchSource
        Its ``steps_per_epoch`` (None for an iterable).

    Returns
    -------
    int

    Raises
    ------
    DataError
        When ``steps`` is unset and the source is an iterable (no epoch length).
    """
    if cfg.steps > 0:
        return cfg.steps
    if source.steps_per_epoch is not None:
        return max(1, math.ceil(cfg.epochs * source.steps_per_epoch))
    raise DataError("steps must be set (> 0) when training on an iterable")


@dataclass
class _Run:
    """What one training run holds between its steps (built by :func:`_set_up`)."""

    sae: BaseSAE
    source: BatchSource
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    since_fired_N: torch.Tensor
    steps: int
    device: torch.device
    world: int
    out: Path | None
    main_proc: bool
    snapshot: dict[str, Any]
    start: int = 0


def train(
    sae_cfg: SAEConfig,
    data: Any,
    train_cfg: TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    *,
    hookpoint: str | None = None,
    num_workers: int = 0,
    skip_nonfinite: bool = False,
    skip_corrupt: bool = False,
) -> tuple[BaseSAE, dict[str, float]]:
    """Train an SAE and return it with its final evaluation metrics.

    Parameters
    ----------
    sae_cfg : SAEConfig
        Architecture; ``d_in`` must equal the data's width.
    data : Tensor, ndarray, str or Path, iterable of [B, D] batches, or BatchSource
        Raw activations, opened with ``vsae.data.open_source``: an array, a ``.npy`` file
        (memory-mapped), a shard folder or an iterable. Arrays hold out ``eval_samples``
        random rows (at most 10%); shard folders and iterables hold out their first
        ``eval_samples`` rows (at least the SAE class's ``min_hold``: an archetypal SAE's
        ``n_candidates``, as its k-means runs on them).
    train_cfg : TrainConfig
        Optimisation settings.
    out_dir : str or Path, optional
        Run folder: ``metrics.jsonl`` (log), ``checkpoint.pt`` (every ``ckpt_every``
        steps), and at the end ``cfg.json``, ``sae.safetensors`` and ``metrics.json``.
    resume : bool
        Continue from ``out_dir``'s checkpoint if there is one.
    hookpoint : str, optional
        Which hookpoint of a shard folder (needed when it holds several).
    num_workers : int
        Reader processes of a shard folder (0 reads in the training process).
    skip_nonfinite : bool
        Drop rows holding NaN or inf (counted in the metrics' ``nonfinite_rows_dropped``)
        instead of refusing the data; the normalisation statistics see checked rows only.
    skip_corrupt : bool
        Skip a shard folder's corrupt shards (counted in ``corrupt_shards_skipped``) instead
        of stopping with ``ShardError``.

    Returns
    -------
    (BaseSAE, dict)
        The trained model (eval mode) and its metrics on the held-out set.

    Raises
    ------
    DataError
        Data that cannot be opened, of another width than ``sae_cfg.d_in``, or holding
        non-finite rows (without ``skip_nonfinite``), or a non-finite final metric (nothing is
        written then; the last checkpoint stays).
    CheckpointError
        A checkpoint of another configuration or an unreadable one (``resume``).
    TrainingError
        A non-finite input batch or loss (the last good checkpoint is kept).
    """
    run = _set_up(
        sae_cfg, data, train_cfg, out_dir, hookpoint, num_workers, skip_nonfinite, skip_corrupt
    )
    if resume and run.out is not None:
        _resume(run)
    run.source.start_at(run.start)
    log = RunLog(
        run.out / "metrics.jsonl" if (run.out is not None and run.main_proc) else None, run.start
    )
    loss_fn = torch.compile(run.sae.loss) if train_cfg.compile else run.sae.loss
    bar = tqdm(
        range(run.start, run.steps),
        initial=run.start,
        total=run.steps,
        desc=f"train {sae_cfg.arch}",
        disable=not (train_cfg.progress and run.main_proc),
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    for step in bar:
        res, dead_N = _step(run, step, loss_fn, train_cfg)
        done = step + 1
        if train_cfg.log_every and (done % train_cfg.log_every == 0 or done == run.steps):
            row = _log_row(run, res, dead_N)
            log.write(done, row)
            # loss is the whole objective; recon its reconstruction term (no AuxK, no penalty)
            shown = {"loss": f"{row['loss']:.4f}", "recon": f"{row.get('recon', row['loss']):.4f}"}
            bar.set_postfix(**shown, l0=f"{row['l0']:.1f}")
        if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < run.steps:
            log.write(done, _evaluate(run))
        if run.out is not None and run.main_proc and train_cfg.ckpt_every:
            if done % train_cfg.ckpt_every == 0:
                ckpt.save_checkpoint(run.out, _checkpoint_state(run, done))
    bar.close()
    return _finish(run, log, t0, skip_nonfinite, skip_corrupt)


def _set_up(
    sae_cfg: SAEConfig,
    data: Any,
    train_cfg: TrainConfig,
    out_dir: str | Path | None,
    hookpoint: str | None,
    num_workers: int,
    skip_nonfinite: bool,
    skip_corrupt: bool,
) -> _Run:
    """Open the data, seed, build and initialise the SAE, its optimiser and schedule."""
    rank, world = get_rank(), get_world_size()
    min_hold = REGISTRY[sae_cfg.arch].min_hold(sae_cfg)
    source = make_source(
        data, train_cfg, rank, world, min_hold, hookpoint, num_workers, skip_nonfinite, skip_corrupt
    )
    source.prepare()  # an iterable's held-out prefix is read before seeding, as always
    if sae_cfg.d_in != source.d:
        raise DataError(f"data has width {source.d}; the SAE config says d_in={sae_cfg.d_in}")
    device = _device(train_cfg)
    torch.manual_seed(train_cfg.seed)
    steps = total_steps(train_cfg, source)
    sae = build(sae_cfg)
    sae.init_from_data(source.sample(train_cfg.norm_samples))
    sae.to(device).train()
    params = [p for p in sae.parameters() if p.requires_grad]
    opt = adamw(params, train_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, train_cfg.warmup_steps, train_cfg.decay_frac)
    )
    return _Run(
        sae=sae,
        source=source,
        params=params,
        opt=opt,
        sched=sched,
        since_fired_N=torch.zeros(sae.n_latents, dtype=torch.long, device=device),
        steps=steps,
        device=device,
        world=world,
        out=Path(out_dir) if out_dir is not None else None,
        main_proc=rank == 0,
        snapshot={"sae": to_dict(sae_cfg), "train": _resume_relevant(train_cfg)},
    )


def _resume(run: _Run) -> None:
    """Restore model, optimiser, schedule, dead-latent counters and RNGs from the checkpoint.

    Without a checkpoint in the run folder the run starts fresh (``run.start`` stays 0).
    """
    state = ckpt.load_checkpoint(run.out)
    if state is None:
        return
    where = ckpt.checkpoint_path(run.out)
    saved = json.loads(state["config"])
    ckpt.check_same_config(saved["sae"], run.snapshot["sae"], "SAE", where)
    ckpt.check_same_config(saved["train"], run.snapshot["train"], "training", where)
    ckpt.restore_model(run.sae, state, where)
    run.opt.load_state_dict(state["optim"])
    run.sched.load_state_dict(state["sched"])
    run.since_fired_N.copy_(state["since_fired"])
    torch.set_rng_state(state["rng"])
    for name, gen in sae_generators(run.sae).items():
        gen.set_state(state["generators"][name])
    run.start = int(state["step"])


def _step(
    run: _Run, step: int, loss_fn: Callable[..., LossOutput], cfg: TrainConfig
) -> tuple[LossOutput, torch.Tensor]:
    """One optimiser step; returns the loss output and the dead-latent mask [N] it used."""
    x_BD = run.source.batch(step).to(run.device, non_blocking=True)
    if not torch.isfinite(x_BD).all():
        raise TrainingError(
            f"step {step}: the input batch holds NaN or inf values; "
            f"the last good checkpoint is kept"
        )
    dead_N = run.since_fired_N > cfg.dead_after
    use_autocast = cfg.autocast and run.device.type == "cuda"
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_autocast):
        res = loss_fn(run.sae.normalize(x_BD), dead_N)
    if not torch.isfinite(res.loss):
        raise TrainingError(
            f"step {step}: the loss is {res.loss.item()}; the last good checkpoint is kept"
        )
    run.opt.zero_grad(set_to_none=True)
    res.loss.backward()
    fired_N = res.fired_N
    if run.world > 1:
        average_gradients(run.sae)
        fired_N = any_across_ranks(fired_N)
    run.sae.before_step()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
    run.opt.step()
    run.sched.step()
    run.sae.after_step()
    run.since_fired_N += x_BD.shape[0] * run.world
    run.since_fired_N[fired_N] = 0
    return res, dead_N


def _log_row(run: _Run, res: LossOutput, dead_N: torch.Tensor) -> dict[str, float]:
    """The training log's row of a step: loss terms, loss, L0, dead fraction, learning rate."""
    row = {k: float(v) for k, v in res.terms.items()}
    row.update(
        loss=float(res.loss.detach()),
        l0=float(res.l0),
        dead_frac=float(dead_N.float().mean()),
        lr=run.sched.get_last_lr()[0],
    )
    return row


def _evaluate(run: _Run) -> dict[str, float]:
    """The held-out metrics as ``eval/NAME`` log entries."""
    return {f"eval/{k}": v for k, v in evaluate(run.sae, run.source.eval_batches()).items()}


def _checkpoint_state(run: _Run, done: int) -> dict[str, Any]:
    """Everything an exact resume after ``done`` steps needs."""
    return {
        "model": run.sae.state_dict(),
        "optim": run.opt.state_dict(),
        "sched": run.sched.state_dict(),
        "step": done,
        "since_fired": run.since_fired_N.cpu(),
        "rng": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in sae_generators(run.sae).items()},
        "config": ckpt.dumps(run.snapshot),
    }


def _finish(
    run: _Run, log: RunLog, t0: float, skip_nonfinite: bool, skip_corrupt: bool
) -> tuple[BaseSAE, dict[str, float]]:
    """Final evaluation (refused when non-finite) and what was skipped; rank 0 writes the log's
    last row, the SAE and ``metrics.json``."""
    run.sae.eval()
    metrics = evaluate(run.sae, run.source.eval_batches())
    metrics["train_seconds"] = time.perf_counter() - t0  # the final evaluation included
    metrics["steps"] = float(run.steps)
    check_metrics(metrics, "the held-out evaluation rows")
    skipped = getattr(run.source, "skipped", None)
    if skip_nonfinite and skipped is not None:
        metrics["nonfinite_rows_dropped"] = skipped.nonfinite_rows
    if skip_corrupt and skipped is not None:
        metrics["corrupt_shards_skipped"] = len(skipped.corrupt_shards())
    if run.out is not None and run.main_proc:
        log.write(run.steps, {f"eval/{k}": v for k, v in metrics.items()})
        run.sae.save(run.out)
        (run.out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return run.sae, metrics


def sae_generators(sae: BaseSAE) -> dict[str, torch.Generator]:
    """Random generators an SAE owns (random prefixes), saved with checkpoints.

    Parameters
    ----------
    sae : BaseSAE

    Returns
    -------
    dict
        Attribute name -> generator.
    """
    return {name: value for name, value in vars(sae).items() if isinstance(value, torch.Generator)}


def _resume_relevant(cfg: TrainConfig) -> dict[str, Any]:
    data = to_dict(cfg)
    for key in ("progress", "device", "compile", "log_every", "eval_every", "ckpt_every"):
        data.pop(key)
    return data


__all__ = ["CheckpointError", "TrainingError", "make_source", "total_steps", "train"]
