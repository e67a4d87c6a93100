"""The training log: ``metrics.jsonl``, one JSON object per line, trimmed on resume."""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    """Appends one JSON object per line; on resume drops the lines past the checkpoint.

    Parameters
    ----------
    path : Path or None
        The ``metrics.jsonl`` file; None writes nothing (no run folder, or not rank 0).
    start : int
        The step the run starts at: 0 empties the file, a resumed step keeps its lines up to
        that step.
    """

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
        """Append ``{"step": step, **row}``.

        Parameters
        ----------
        step : int
            Steps done when the row was measured.
        row : dict
            Metric name -> value.
        """
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62
