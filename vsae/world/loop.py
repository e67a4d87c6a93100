"""What the tiny world's three trainers share: the warm-up cosine schedule, a smoothed-loss log,
the ``train_summary.json`` tail, and strict frozen configs.

``vsae.training`` has its own optimiser and (linear-decay) schedule, but the world is the
lowest layer (``docs/architecture.md``): it cannot import ``vsae.training``, and its trainers
use AdamW with parameter groups and a cosine schedule, so they share this small module instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

Log = Callable[[str], None]
C = TypeVar("C")


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up, then a cosine from 1 down to ``floor``.

    Parameters
    ----------
    step : int
        Optimiser step, 0-based (``LambdaLR`` also asks for ``step = total`` after the last).
    total : int
        Steps of the run.
    warmup : int
        Warm-up steps (the factor is ``(step + 1) / warmup`` below them), >= 1.
    floor : float
        Factor at the end of the cosine (0: decays to zero).

    Returns
    -------
    float
        ``min(1, (step + 1) / warmup) * (floor + (1 - floor) * (1 + cos(pi * s)) / 2)`` with
        ``s = min(1, step / total)``.
    """
    warm = min(1.0, (step + 1) / warmup)
    one_plus_cos = 1 + math.cos(math.pi * min(1.0, step / total))
    if floor == 0.0:
        return warm * (0.5 * one_plus_cos)
    # rounded, so that floor=0.1 gives the literal 0.9 (not 1 - 0.1 = 0.8999999999999999)
    span = round(1.0 - floor, 12)
    return warm * (floor + span * 0.5 * one_plus_cos)


def config_from(cls: type[C], cfg: C | None, fields: Mapping[str, Any]) -> C:
    """``cfg`` (or ``cls()``) with ``fields`` replaced; an unknown field names the valid ones.

    Parameters
    ----------
    cls : type
        A frozen dataclass.
    cfg : cls or None
        The base config (None: the defaults).
    fields : mapping
        Fields to replace.

    Returns
    -------
    cls

    Raises
    ------
    ValueError
        An unknown field.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; valid: {names}")
    return dataclasses.replace(cfg if cfg is not None else cls(), **fields)


class TrainLoop:
    """A world trainer's clock, smoothed loss and log lines, and its summary file.

    Parameters
    ----------
    name : str
        Prefix of every log line, e.g. ``"clip"`` gives ``[clip] step 50/1500 loss ...``.
    steps : int
        Steps of the run.
    log : callable
        Where the lines go (``print``, or a file logger of the build).
    every : int
        Log the smoothed loss every this many steps (and at the last).
    smoothing : tuple of float
        Weights of the old value and of the new loss in the loss's exponential moving average.
    """

    def __init__(
        self,
        name: str,
        steps: int,
        log: Log = print,
        every: int = 50,
        smoothing: tuple[float, float] = (0.95, 0.05),
    ) -> None:
        self.name = name
        self.steps = steps
        self.log_fn = log
        self.every = every
        self.smoothing = smoothing
        self.t0 = time.time()
        self.loss: float | None = None

    def seconds(self) -> float:
        """Seconds since the loop was made.

        Returns
        -------
        float
        """
        return time.time() - self.t0

    def log(self, msg: str) -> None:
        """Log ``[name] msg``.

        Parameters
        ----------
        msg : str
        """
        self.log_fn(f"[{self.name}] {msg}")

    def step_done(self, step: int, loss: float) -> None:
        """Fold ``loss`` into the moving average; log it every ``every`` steps and at the last.

        Parameters
        ----------
        step : int
            The step just taken, 0-based.
        loss : float
            Its loss.
        """
        old, new = self.smoothing
        self.loss = loss if self.loss is None else old * self.loss + new * loss
        if step % self.every == 0 or step == self.steps - 1:
            self.log(f"step {step}/{self.steps} loss {self.loss:.4f} {self.seconds():.0f}s")

    def tail(self) -> dict[str, Any]:
        """The summary's ``seconds`` and ``final_loss`` entries.

        Returns
        -------
        dict
            ``{"seconds": ..., "final_loss": the smoothed loss (None before any step)}``.
        """
        return {"seconds": self.seconds(), "final_loss": self.loss}

    def finish(self, out_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """Write ``summary`` to ``out_dir/train_summary.json``, log it, return it.

        Parameters
        ----------
        out_dir : Path
            The trained model's folder.
        summary : dict
            What the run did (its settings, :meth:`tail`, its held-out scores).

        Returns
        -------
        dict
            ``summary``.
        """
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.log(f"done {json.dumps(summary)}")
        return summary
