"""The training loop: AdamW, schedule, clipping, AuxK, evaluation, checkpoints, resume."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vsae.config import SAEConfig, TrainConfig, to_dict
from vsae.data import BatchSource, DataError, open_source
from vsae.data.checks import check_metrics
from vsae.metrics import evaluate
from vsae.sae import BaseSAE, build
from vsae.sae.io import CheckpointError
from vsae.training import checkpoint as ckpt
from vsae.training.optim import adamw
from vsae.training.schedule import lr_factor


class TrainingError(RuntimeError):
    """Training stopped: non-finite input or loss."""


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


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
        ``eval_samples`` rows (at least ``n_candidates`` for archetypal SAEs, whose k-means
        runs on them).
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
        Data that cannot be opened or holds non-finite rows (without ``skip_nonfinite``), or
        a non-finite final metric (nothing is written then; the last checkpoint stays).
    TrainingError
        A non-finite loss.
    """
    rank, world = _dist()
    main_proc = rank == 0
    min_hold = sae_cfg.num_candidates if sae_cfg.arch == "archetypal" else 0
    source = make_source(
        data, train_cfg, rank, world, min_hold, hookpoint, num_workers, skip_nonfinite, skip_corrupt
    )
    source.prepare()  # an iterable's held-out prefix is read before seeding, as always
    if sae_cfg.d_in != source.d:
        raise DataError(f"data has width {source.d}; the SAE config says d_in={sae_cfg.d_in}")
    device = _device(train_cfg)
    torch.manual_seed(train_cfg.seed)
    steps = total_steps(train_cfg, source)
    out = Path(out_dir) if out_dir is not None else None

    sae = build(sae_cfg)
    sae.init_from_data(source.sample(train_cfg.norm_samples))
    sae.to(device).train()
    params = [p for p in sae.parameters() if p.requires_grad]
    opt = adamw(params, train_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, train_cfg.warmup_steps, train_cfg.decay_frac)
    )
    since_fired_N = torch.zeros(sae.n_latents, dtype=torch.long, device=device)
    start = 0
    snapshot = {"sae": to_dict(sae_cfg), "train": _resume_relevant(train_cfg)}
    state = ckpt.load_checkpoint(out) if (resume and out is not None) else None
    if state is not None:
        where = ckpt.checkpoint_path(out)
        saved = json.loads(state["config"])
        ckpt.check_same_config(saved["sae"], snapshot["sae"], "SAE", where)
        ckpt.check_same_config(saved["train"], snapshot["train"], "training", where)
        ckpt.restore_model(sae, state, where)
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        since_fired_N.copy_(state["since_fired"])
        torch.set_rng_state(state["rng"])
        for name, gen in sae_generators(sae).items():
            gen.set_state(state["generators"][name])
        start = int(state["step"])
    source.start_at(start)

    log = _Log(out / "metrics.jsonl" if (out is not None and main_proc) else None, start)
    use_autocast = train_cfg.autocast and device.type == "cuda"
    loss_fn = torch.compile(sae.loss) if train_cfg.compile else sae.loss
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=f"train {sae_cfg.arch}",
        disable=not (train_cfg.progress and main_proc),
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    for step in bar:
        x_BD = source.batch(step).to(device, non_blocking=True)
        if not torch.isfinite(x_BD).all():
            raise TrainingError(
                f"step {step}: the input batch holds NaN or inf values; "
                f"the last good checkpoint is kept"
            )
        dead_N = since_fired_N > train_cfg.dead_after
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            res = loss_fn(sae.normalize(x_BD), dead_N)
        if not torch.isfinite(res.loss):
            raise TrainingError(
                f"step {step}: the loss is {res.loss.item()}; the last good checkpoint is kept"
            )
        opt.zero_grad(set_to_none=True)
        res.loss.backward()
        fired_N = res.fired_N
        if world > 1:
            _all_reduce_grads(params, world)
            fired_N = _any_across(fired_N)
        sae.before_step()
        if train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
        opt.step()
        sched.step()
        sae.after_step()
        since_fired_N += x_BD.shape[0] * world
        since_fired_N[fired_N] = 0
        done = step + 1
        if train_cfg.log_every and (done % train_cfg.log_every == 0 or done == steps):
            row = {k: float(v) for k, v in res.terms.items()}
            row.update(
                loss=float(res.loss.detach()),
                l0=float(res.l0),
                dead_frac=float(dead_N.float().mean()),
                lr=sched.get_last_lr()[0],
            )
            log.write(done, row)
            # loss is the whole objective; recon its reconstruction term (no AuxK, no penalty)
            shown = {"loss": f"{row['loss']:.4f}", "recon": f"{row.get('recon', row['loss']):.4f}"}
            bar.set_postfix(**shown, l0=f"{row['l0']:.1f}")
        if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < steps:
            log.write(
                done, {f"eval/{k}": v for k, v in evaluate(sae, source.eval_batches()).items()}
            )
        if (
            out is not None
            and main_proc
            and train_cfg.ckpt_every
            and done % train_cfg.ckpt_every == 0
        ):
            ckpt.save_checkpoint(
                out,
                {
                    "model": sae.state_dict(),
                    "optim": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": done,
                    "since_fired": since_fired_N.cpu(),
                    "rng": torch.get_rng_state(),
                    "generators": {k: g.get_state() for k, g in sae_generators(sae).items()},
                    "config": ckpt.dumps(snapshot),
                },
            )
    bar.close()
    sae.eval()
    metrics = evaluate(sae, source.eval_batches())
    metrics["train_seconds"] = time.perf_counter() - t0
    metrics["steps"] = float(steps)
    check_metrics(metrics, "the held-out evaluation rows")
    skipped = getattr(source, "skipped", None)
    if skip_nonfinite and skipped is not None:
        metrics["nonfinite_rows_dropped"] = skipped.nonfinite_rows
    if skip_corrupt and skipped is not None:
        metrics["corrupt_shards_skipped"] = len(skipped.corrupt_shards())
    if out is not None and main_proc:
        log.write(steps, {f"eval/{k}": v for k, v in metrics.items()})
        sae.save(out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return sae, metrics


def sae_generators(sae: BaseSAE) -> dict[str, torch.Generator]:
    """Random generators an SAE owns (random prefixes), saved with checkpoints."""
    return {name: value for name, value in vars(sae).items() if isinstance(value, torch.Generator)}


def _resume_relevant(cfg: TrainConfig) -> dict[str, Any]:
    data = to_dict(cfg)
    for key in ("progress", "device", "compile", "log_every", "eval_every", "ckpt_every"):
        data.pop(key)
    return data


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def _any_across(mask_N: torch.Tensor) -> torch.Tensor:
    as_int = mask_N.to(torch.int32)
    torch.distributed.all_reduce(as_int, op=torch.distributed.ReduceOp.MAX)
    return as_int.bool()


class _Log:
    """Appends one JSON object per line; on resume drops lines past the checkpoint."""

    def __init__(self, path: Path | None, start: int) -> None:
        self.path = path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if start == 0:
            path.write_text("")
            return
        if path.exists():
            keep = [ln for ln in path.read_text().splitlines() if _step_of(ln) <= start]
            path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, step: int, row: dict[str, float]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


__all__ = ["CheckpointError", "TrainingError", "make_source", "total_steps", "train"]
