"""Plots and small reports shared by commands (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training_log(log_path: str | Path, out_path: str | Path) -> Path:
    """Plot the reconstruction loss and held-out FVU against step from a metrics.jsonl file.

    Parameters
    ----------
    log_path : str or Path
        A ``metrics.jsonl`` written by the trainer.
    out_path : str or Path
        PNG to write.

    Returns
    -------
    Path
        ``out_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "eval/fvu" in r]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    # The reconstruction term, not the total: AuxK joins the total once latents die.
    axes[0].plot([r["step"] for r in train_rows], [r.get("recon", r["loss"]) for r in train_rows])
    axes[0].set(xlabel="step", ylabel="reconstruction loss", yscale="log", title="training")
    axes[1].plot([r["step"] for r in eval_rows], [r["eval/fvu"] for r in eval_rows], "o-")
    axes[1].set(xlabel="step", ylabel="FVU (held out)", title="evaluation")
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
