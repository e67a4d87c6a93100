"""Generate with SAEs attached: the one call that commands, benchmarks and the demo share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .attach import Attached, Recorder, attach
from .block_sae import BlockSAE
from .edits import Edit
from .generator import Generator
from .stats import LatentStats


@dataclass(frozen=True)
class Generation:
    """Images of one run and what the hooks saw.

    Attributes
    ----------
    images : np.ndarray
        uint8 ``[N, H, W, 3]``.
    attached : Attached
        U-Net calls, their steps, and the calls each SAE edited.
    seconds : float
        Wall time of the run.
    """

    images: np.ndarray
    attached: Attached
    seconds: float


def generate(
    gen: Generator,
    prompts: Sequence[str],
    steps: int,
    seed: int = 0,
    guidance: float | None = None,
    saes: Sequence[BlockSAE] = (),
    edits: Sequence[Edit] = (),
    stats: Sequence[LatentStats | None] | None = None,
    cfg: str = "both",
    record: Recorder | None = None,
    as_float: bool = False,
    negative_prompts: Sequence[str] | None = None,
) -> Generation:
    """Run the pipeline with SAEs (and edits) attached; the hooks are removed afterwards.

    Parameters
    ----------
    gen : Generator
        From :func:`vsae.interventions.load_generator`.
    prompts : list of str
        One image each.
    steps : int
        Denoising steps; edit schedules are checked against them.
    seed : int
        Noise seed: the same seed with no SAE gives the bare image.
    guidance : float, optional
        Guidance scale (default: the pipeline's).
    saes, edits, stats, cfg, record
        As in :func:`vsae.interventions.attach`.
    as_float : bool
        float32 pixels in [0, 1] instead of uint8.
    negative_prompts : list of str, optional
        One per prompt: classifier-free guidance away from it (the negative-prompt baseline
        of unlearning); None: the empty prompt.

    Returns
    -------
    Generation

    Raises
    ------
    InterventionError
        Bad blocks, SAEs, edits or masks (see :func:`attach`), an empty prompt list.
    """
    t0 = time.perf_counter()
    with attach(
        gen.unet,
        gen.scheduler,
        list(saes),
        list(edits),
        stats=stats,
        cfg=cfg,
        guided=gen.guided(guidance),
        num_steps=steps,
        image_hw=gen.image_hw,
        record=record,
        n_prompts=len(prompts),
    ) as seen:
        images = gen(
            list(prompts),
            steps=steps,
            seed=seed,
            guidance=guidance,
            as_float=as_float,
            negative_prompts=None if negative_prompts is None else list(negative_prompts),
        )
    return Generation(images, seen, time.perf_counter() - t0)
