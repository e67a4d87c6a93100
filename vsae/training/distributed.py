"""Data-parallel helpers for training under ``torchrun`` (gloo on CPU, nccl on GPU).

``vsae.training.trainer`` uses ``get_rank``/``get_world_size``, ``average_gradients`` and
``any_across_ranks``; ``vsae train`` sets up and ends the process group. The pattern::

    dist = setup_distributed()                 # no-op (world_size 1) outside torchrun
    model.to(dist.device)
    broadcast_parameters(model)                # every rank starts from rank 0's weights
    for x_BD in open_batches(dir, batch_size // dist.world_size, epoch_vectors=...):
        loss = ...; loss.backward()
        average_gradients(model)               # all-reduce mean of .grad over ranks
        opt.step()
    if is_main_process(): save checkpoint
    exit_distributed(0)                        # barrier, destroy, exit without finalisation

Each rank reads different shards (``vsae.data.shards.open_batches`` splits by rank) and takes
the same number of steps, so the averaged gradient equals the gradient of the global batch.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a data-parallel run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global rank, number of processes, rank on this machine.
    backend : str or None
        ``"gloo"`` or ``"nccl"``; None when not distributed.
    device : torch.device
        ``cuda:<local_rank>`` under nccl, else cpu.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        """True when more than one process trains.

        Returns
        -------
        bool
        """
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes.

        Returns
        -------
        bool
        """
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exn:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exn


def setup_distributed(backend: str | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Initialise the default process group from torchrun's environment.

    Parameters
    ----------
    backend : str, optional
        ``"gloo"`` or ``"nccl"``; default nccl when CUDA is available, else gloo.
    timeout_s : float
        Collective timeout.

    Returns
    -------
    DistInfo
        world_size 1 (and no process group) when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size <= 1:
        dev = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return DistInfo(device=dev)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend={backend!r}; expected 'gloo' or 'nccl'")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("backend 'nccl' needs CUDA; use 'gloo' on CPU")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(
                    f"WORLD_SIZE={world_size} but {var} is not set; launch with torchrun"
                )
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(
        rank=rank, world_size=world_size, local_rank=local_rank, backend=backend, device=device
    )


def get_rank() -> int:
    """Rank of this process.

    Returns
    -------
    int
        0 when not distributed.
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes.

    Returns
    -------
    int
        1 when not distributed.
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): log, write checkpoints and reports here.

    Returns
    -------
    bool
    """
    return get_rank() == 0


def barrier() -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if get_world_size() > 1:
        dist.barrier()


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op when not distributed).

    Parameters
    ----------
    module : torch.nn.Module
        The model, the same architecture on every rank.
    src : int
        The rank whose values win.
    """
    if get_world_size() <= 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def average_gradients(module: torch.nn.Module) -> None:
    """Replace every parameter's ``.grad`` by its mean over ranks (one flat all-reduce).

    Parameters without a gradient on this rank contribute zeros, so all ranks stay in step.

    Parameters
    ----------
    module : torch.nn.Module
        The model after ``backward``; its trainable parameters' ``.grad`` are replaced.
    """
    world = get_world_size()
    if world <= 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def any_across_ranks(mask_N: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of a boolean mask over ranks (e.g. the latents that fired anywhere).

    Parameters
    ----------
    mask_N : Tensor
        Boolean [N], the same shape on every rank (on the rank's device: cuda under nccl).

    Returns
    -------
    Tensor
        Boolean [N], True where any rank's mask is True; ``mask_N`` itself when not
        distributed.
    """
    if get_world_size() <= 1:
        return mask_N
    as_int = mask_N.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
    return as_int.bool()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor:
    """Mean of a scalar or tensor over ranks (for logging metrics).

    Parameters
    ----------
    value : Tensor or float
        This rank's value.

    Returns
    -------
    Tensor
        float64 on the CPU, a copy (the value itself when not distributed).
    """
    t = torch.as_tensor(value, dtype=torch.float64).clone()
    if get_world_size() > 1:
        dev = (
            torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl"
            else torch.device("cpu")
        )
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t / get_world_size()
    return t.cpu()


def check_in_step(step: int) -> None:
    """Raise if ranks disagree on the step count (catches unequal batch counts before a hang).

    Parameters
    ----------
    step : int
        This rank's step.

    Raises
    ------
    RuntimeError
        When the ranks' steps differ (the message gives the range).
    """
    if get_world_size() <= 1:
        return
    t = torch.tensor([step, -step], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    hi, lo = int(t[0]), -int(t[1])
    if hi != lo:
        raise RuntimeError(
            f"ranks out of step: steps range {lo}..{hi}; use fixed-length epochs "
            "(open_batches(..., epoch_vectors=N))"
        )


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when distributed (alternative to average_gradients).

    Parameters
    ----------
    module : torch.nn.Module
        The model, on ``info.device``.
    info : DistInfo
        From :func:`setup_distributed`.

    Returns
    -------
    torch.nn.Module
        The DDP wrapper, or ``module`` itself when not distributed.
    """
    if not info.distributed:
        return module
    ids = [info.local_rank] if info.backend == "nccl" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def cleanup_distributed(wait: bool = True) -> None:
    """Destroy the process group if one was initialised.

    Parameters
    ----------
    wait : bool
        Barrier first, so no rank tears gloo down while a peer still works. Pass False on an
        error path, where a peer may never reach the barrier.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def exit_distributed(code: int) -> NoReturn:
    """End a torchrun worker: flush, destroy the process group, then leave without finalisation.

    Interpreter finalisation after a gloo process group can still abort now and then
    ("terminate called without an active exception", SIGABRT; seen about one run in ten on a
    loaded 2-core machine), which torchrun reports as a failed job although every rank
    finished. Everything worth keeping is written before this is called.

    Parameters
    ----------
    code : int
        The exit status (0 waits at a barrier first; an error code does not).
    """
    cleanup_distributed(wait=code == 0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
