"""Classifier reliance by intervention: switch a concept off in the SAE code (where it fires),
or on at its mean firing value (where it does not), decode with the error term kept, re-run
the probe, and measure the change of its logit and the fraction of predictions that flip.

The bootstrap replicates resample the images; when the probe was trained by vsae, replicate
``b`` also uses a probe refitted on a resample of its training set, so the intervals include
the noise of the probe's own training (what an unbiased training set would leave).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vsae.analysis.bias_boot import interval
from vsae.analysis.bias_concepts import edit_delta


@dataclass(frozen=True)
class Change:
    """What one intervention does to the probe on a set of images.

    Attributes
    ----------
    n : int
        Images edited (where the concept fires for ``off``, where it does not for ``on``).
    logit : float
        Mean change of the logit over them.
    logit_ci : (float, float)
        Its bootstrap interval.
    flip : float
        Fraction of their predictions that change class.
    flip_ci : (float, float)
        Its bootstrap interval.
    gain : float
        Change of the balanced accuracy (the mean of the two classes' accuracies, or the one
        class's present) of the whole population the change is measured on (all analysed
        images, or one group's), the edit applied where it applies: positive means the edit
        makes the probe more often right, i.e. it leaned on the concept where that does not
        hold. A population-level measure: a concept that touches few images moves it little.
    gain_ci : (float, float)
        Its bootstrap interval.
    few : bool
        Fewer images than the analysis' minimum: the intervals are reported as the whole
        range (the logit's as infinite).
    """

    n: int
    logit: float
    logit_ci: tuple[float, float]
    flip: float
    flip_ci: tuple[float, float]
    gain: float = float("nan")
    gain_ci: tuple[float, float] = (float("nan"), float("nan"))
    few: bool = False


@dataclass(frozen=True)
class ConceptEffect:
    """The probe's reliance on one named concept.

    Attributes
    ----------
    name : str
        Concept name.
    latents : tuple of int
        Its latents (switched together).
    fire_rate : float
        Fraction of the analysed images on which it fires.
    off, on : Change
        Switching it off where it fires; on at its mean firing value where it does not.
    off_by_group, on_by_group : dict of str to Change
        The same per evaluation group.
    is_target : bool
        The concept is the target itself (its name is the target's value or attribute).
    flagged : bool
        A non-target concept whose switch-off accuracy gain has an interval above zero: the
        probe leans on it where the analysed labels say it should not, beyond the bootstrap
        noise.
    """

    name: str
    latents: tuple[int, ...]
    fire_rate: float
    off: Change
    on: Change
    off_by_group: dict = field(default_factory=dict)
    on_by_group: dict = field(default_factory=dict)
    is_target: bool = False
    flagged: bool = False

    @property
    def score(self) -> float:
        """The ranking key: the accuracy gain of switching it off (harmful reliance)."""
        return self.off.gain if np.isfinite(self.off.gain) else -np.inf


def _balanced(w_BN: torch.Tensor, c_BN: torch.Tensor, y_N: torch.Tensor) -> torch.Tensor:
    """Weighted balanced accuracy per row: the mean of the classes present."""
    accs, present = [], []
    for cls in (y_N, ~y_N):
        wc = w_BN * cls.float()
        den = wc.sum(1)
        accs.append((wc * c_BN).sum(1) / den.clamp_min(1e-12))
        present.append((den > 0).float())
    num = accs[0] * present[0] + accs[1] * present[1]
    return num / (present[0] + present[1]).clamp_min(1.0)


def _change(
    d_NP: torch.Tensor,
    base_NP: torch.Tensor,
    y_N: torch.Tensor,
    mask_N: torch.Tensor,
    pop_N: torch.Tensor,
    counts_BN: torch.Tensor,
    refit: bool,
    min_n: int,
    level: float,
) -> Change:
    """Mean logit change and flip fraction over the edited images ``mask``, and the balanced
    accuracy gain of the population ``pop`` (rows outside ``mask`` have a zero delta), point
    estimate and bootstrap."""
    n = int(mask_N.sum())
    if n == 0:
        nan = float("nan")
        return Change(0, nan, (nan, nan), nan, (nan, nan), nan, (nan, nan), True)
    before_NP = base_NP > 0
    after_NP = (base_NP + d_NP) > 0
    flips_NP = after_NP != before_NP
    right_NP = (after_NP == y_N[:, None]).float() - (before_NP == y_N[:, None]).float()
    m = mask_N.float()
    right_NP = right_NP * m[:, None]  # only the edited images can change
    logit = float((d_NP[:, 0] * m).sum() / n)
    flip = float((flips_NP[:, 0].float() * m).sum() / n)
    pop = pop_N.float()
    gain = float(_balanced(pop[None], right_NP[:, 0][None], y_N)[0])
    if n < min_n:
        return Change(n, logit, (-np.inf, np.inf), flip, (0.0, 1.0), gain, (-1.0, 1.0), True)
    cols = slice(1, None) if refit else slice(0, 1)
    B = counts_BN.shape[0]
    d_BN = d_NP[:, cols].T.expand(B, -1)
    f_BN = flips_NP[:, cols].float().T.expand(B, -1)
    r_BN = right_NP[:, cols].T.expand(B, -1)
    w_BN = counts_BN * m
    den_B = w_BN.sum(1).clamp_min(1e-12)
    logit_B = (w_BN * d_BN).sum(1) / den_B
    flip_B = (w_BN * f_BN).sum(1) / den_B
    gain_B = _balanced(counts_BN * pop, r_BN, y_N)
    return Change(
        n,
        logit,
        interval(logit_B, level),
        flip,
        interval(flip_B, level),
        gain,
        interval(gain_B, level),
        False,
    )


def is_target_concept(name: str, target: str) -> bool:
    """Whether a concept name is the target itself (its value or attribute, any case).

    Parameters
    ----------
    name : str
        Concept name.
    target : str
        ``attribute=value``.

    Returns
    -------
    bool
    """
    attr, _, value = target.partition("=")
    norm = name.strip().lower().replace("_", " ")
    return norm in {value.strip().lower().replace("_", " "), attr.strip().lower().replace("_", " ")}


@torch.no_grad()
def concept_effects(
    sae,
    x_ND: torch.Tensor,
    codes_NL: torch.Tensor,
    concepts: Mapping[str, Sequence[int]],
    weights_DP: torch.Tensor,
    biases_P: torch.Tensor,
    y_N: torch.Tensor,
    groups: Sequence[str],
    counts_BN: torch.Tensor,
    target: str,
    min_group: int = 30,
    level: float = 0.95,
) -> list[ConceptEffect]:
    """Switch each concept off and on, re-run the probe(s), and rank by causal effect.

    Parameters
    ----------
    sae : BaseSAE
    x_ND : Tensor [N, D]
        The analysed embeddings.
    codes_NL : Tensor [N, L]
        Their SAE codes.
    concepts : mapping
        Concept name -> latents.
    weights_DP, biases_P : Tensor [D, P], [P]
        Column 0 is the probe analysed; columns ``1..B`` (when ``P = B + 1``) are its
        refits on resamples of its training set, one per bootstrap replicate. ``P = 1``:
        the intervals resample the images only.
    y_N : Tensor [N] bool
        Whether each image has the target.
    groups : sequence of str
        Each image's evaluation group.
    counts_BN : Tensor [B, N]
        Bootstrap resample counts.
    target : str
        ``attribute=value``; concepts named after it are marked ``is_target``.
    min_group : int
        Fewer edited images than this: intervals reported as the whole range.
    level : float
        Interval coverage.

    Returns
    -------
    list of ConceptEffect
        Largest switch-off accuracy gain first (the concepts whose removal helps most).
    """
    refit = weights_DP.shape[1] == counts_BN.shape[0] + 1
    base_NP = x_ND.float() @ weights_DP + biases_P
    g_arr = np.asarray(groups)
    group_masks = {g: torch.from_numpy(g_arr == g) for g in sorted(set(groups))}
    out = []
    for name, ids in concepts.items():
        ids = list(ids)
        fire_N = (codes_NL[:, ids] > 0).any(1)
        sub = codes_NL[:, ids]
        n_fired = (sub > 0).sum(0).clamp_min(1)
        mean_K = (sub * (sub > 0)).sum(0) / n_fired
        changes = {}
        for kind, rows, values in (("off", fire_N, None), ("on", ~fire_N, mean_K)):
            d_NP = edit_delta(sae, codes_NL, ids, values, rows=rows, project_DP=weights_DP)
            everyone = torch.ones_like(rows)
            total = _change(d_NP, base_NP, y_N, rows, everyone, counts_BN, refit, min_group, level)
            by_group = {
                g: _change(d_NP, base_NP, y_N, rows & m, m, counts_BN, refit, min_group, level)
                for g, m in group_masks.items()
            }
            changes[kind] = (total, by_group)
        eff_off, eff_on = changes["off"], changes["on"]
        tgt = is_target_concept(name, target)
        flagged = (not tgt) and (not eff_off[0].few) and eff_off[0].gain_ci[0] > 0
        out.append(
            ConceptEffect(
                name,
                tuple(ids),
                float(fire_N.float().mean()),
                eff_off[0],
                eff_on[0],
                eff_off[1],
                eff_on[1],
                tgt,
                flagged,
            )
        )
    return sorted(out, key=lambda e: -e.score)
