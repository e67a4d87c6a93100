"""Plots and small reports shared by commands (matplotlib, headless)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# what the trainer's logged ``loss`` is made of, by term name (the SAE's ``terms``)
LOSS_TERMS = (
    "loss = recon (the reconstruction term; for a Matryoshka SAE the weighted mean over its "
    "levels of each level's batch FVU in normalised space) + the AuxK term (auxk, weighted, "
    "once latents are dead) + any sparsity penalty (l1 / l0 by architecture)"
)


def read_log(log_path: str | Path) -> tuple[list[dict], list[dict]]:
    """The training rows (with ``loss``) and the evaluation rows (``eval/...``) of a log.

    Parameters
    ----------
    log_path : str or Path
        A ``metrics.jsonl`` written by the trainer.

    Returns
    -------
    (list of dict, list of dict)
    """
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r], [r for r in rows if "eval/fvu" in r]


def level_keys(rows: list[dict]) -> list[str]:
    """The per-level FVU terms (``fvu_k8``, ``fvu_k16``, ...) of a Matryoshka log, by level.

    Parameters
    ----------
    rows : list of dict
        Training rows of a log.

    Returns
    -------
    list of str
        Sorted by level (empty for other architectures).
    """
    keys = {k for r in rows for k in r if re.fullmatch(r"fvu_k\d+", k)}
    return sorted(keys, key=lambda k: int(k[len("fvu_k") :]))


def plot_training_log(log_path: str | Path, out_path: str | Path, eval_label: str = "") -> Path:
    """Plot a run's training log: reconstruction and per-level FVU, held-out FVU, L0, dead.

    Four panels against step: (1) the training reconstruction term ``recon`` (not the total
    ``loss``, which adds AuxK once latents die) and, for a Matryoshka SAE, each level's batch
    FVU (``fvu_k{k}``); (2) the held-out FVU; (3) L0, in training (the smallest level for a
    Matryoshka SAE) and held out; (4) the dead fraction, in training (no firing for
    ``dead_after`` samples) and held out (no firing on the evaluation set).

    Parameters
    ----------
    log_path : str or Path
        A ``metrics.jsonl`` written by the trainer.
    out_path : str or Path
        PNG to write.
    eval_label : str
        How the held-out evaluation was run (e.g. "TopK k=32"), shown in the titles.

    Returns
    -------
    Path
        ``out_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows, eval_rows = read_log(log_path)
    t_steps = [r["step"] for r in train_rows]
    e_steps = [r["step"] for r in eval_rows]
    held = f"held out, {eval_label}" if eval_label else "held out"
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    ax.plot(t_steps, [r.get("recon", r["loss"]) for r in train_rows], "k-", label="recon")
    for key in level_keys(train_rows):
        ax.plot(t_steps, [r.get(key) for r in train_rows], lw=0.8, label=f"FVU k={key[5:]}")
    ax.set(xlabel="step", ylabel="batch FVU (normalised)", yscale="log")
    ax.set_title("training: reconstruction term and per-level FVU", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(e_steps, [r["eval/fvu"] for r in eval_rows], "o-")
    ax.set(xlabel="step", ylabel="FVU")
    ax.set_title(f"evaluation ({held})", fontsize=9)
    ax = axes[1, 0]
    ax.plot(t_steps, [r["l0"] for r in train_rows], label="training (smallest level)")
    ax.plot(e_steps, [r["eval/l0"] for r in eval_rows], "o-", label=held)
    ax.set(xlabel="step", ylabel="L0 (non-zero latents per row)")
    ax.set_title("L0", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.plot(t_steps, [r["dead_frac"] for r in train_rows], label="training (not fired lately)")
    ax.plot(e_steps, [r["eval/dead_frac"] for r in eval_rows], "o-", label=held)
    ax.set(xlabel="step", ylabel="fraction of latents", ylim=(-0.02, 1.02))
    ax.set_title("dead latents", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
