"""Bias analysis with SAE concepts (after the Matryoshka-CLIP paper's CelebA analysis, whose
code was not published): which named concepts a downstream linear probe leans on, shown by
intervention in the SAE code, and the probe's accuracy per group with the top spurious
concepts removed at test time.

::

    from vsae.analysis import analyse_bias, load_concepts
    res = analyse_bias(sae, x_test_ND, test_labels, "shape=circle", group="colour",
                       concepts=load_concepts(sae_dir), train_x=x_train_ND,
                       train_labels=train_labels)
    res.effects[0].name, res.spurious, res.before.worst, res.after.worst
    res.effects_figure(); res.accuracy_figure(); res.write("runs/bias")

The code does not know which correlation a data set holds: every named concept is switched
off (and on) and the probe re-run; the concepts are ranked by the causal effect on the
probe's balanced accuracy over the analysed images of switching them off where they fire
(the logit change and flip fraction on those images are reported beside it). A probe that
learned only what holds in the analysed data loses accuracy when information is removed;
one that leaned on a correlation that does not hold there gains. A non-target concept is
*spurious* (flagged) when the bootstrap interval of that gain lies above zero.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vsae.analysis.bias_accuracy import GroupAccuracy, group_accuracy
from vsae.analysis.bias_assoc import Association, associations
from vsae.analysis.bias_boot import resample_counts
from vsae.analysis.bias_concepts import concept_latents, encode, remove_concepts
from vsae.analysis.bias_effects import ConceptEffect, concept_effects
from vsae.analysis.bias_labels import BiasError, group_names, group_values, target_mask
from vsae.analysis.bias_probe import LinearProbe, ProbeConfig, fit_probe


@dataclass(frozen=True)
class BiasConfig:
    """Settings of :func:`analyse_bias`.

    Parameters
    ----------
    n_boot : int
        Bootstrap replicates (>= 10).
    level : float
        Interval coverage, in (0, 1).
    min_group : int
        Groups (and edited sets) with fewer images are warned about and get intervals over
        the whole range.
    n_remove : int
        How many top spurious concepts debiasing removes when ``remove`` is not given.
    refit_probe : bool
        When vsae trains the probe: each replicate refits it on a resample of its training
        set, so intervals include the probe's training noise.
    probe : ProbeConfig
        How vsae trains the probe.
    split_seed : int
        Seed of the 50/50 split of the data when there is neither a probe nor training data.
    seed : int
        Bootstrap seed.
    """

    n_boot: int = 200
    level: float = 0.95
    min_group: int = 30
    n_remove: int = 1
    refit_probe: bool = True
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 10:
            raise BiasError(f"BiasConfig.n_boot must be >= 10, got {self.n_boot}")
        if not 0.0 < self.level < 1.0:
            raise BiasError(f"BiasConfig.level must lie in (0, 1), got {self.level}")
        if self.min_group < 1 or self.n_remove < 0:
            raise BiasError(
                f"BiasConfig: min_group >= 1 and n_remove >= 0 expected, got "
                f"{self.min_group}, {self.n_remove}"
            )


@dataclass(frozen=True)
class BiasResult:
    """Everything :func:`analyse_bias` measured.

    Attributes
    ----------
    target, group : str, str or None
        The target (``attribute=value``) and the group attribute.
    probe : LinearProbe
        The probe analysed.
    effects : list of ConceptEffect
        Every named concept, ranked by the accuracy gain of switching it off.
    spurious : list of str
        Flagged non-target concepts (switching them off makes the probe more often right,
        beyond the bootstrap noise), in rank order.
    associations : list of Association
        Concept-group association on the probe's training data (the analysed data when the
        probe came from the user), ranked.
    removed : list of str
        The concepts removed for debiasing.
    before, after : GroupAccuracy
        The probe's accuracy on the analysed data, as is and with ``removed`` switched off.
    n_images, n_train : int
        Images analysed; images the probe was trained on (0 for a given probe).
    warnings : list of str
        Small groups and other things worth knowing.
    settings : dict
        The ``BiasConfig`` and where the data came from.
    """

    target: str
    group: str | None
    probe: LinearProbe
    effects: list[ConceptEffect]
    spurious: list[str]
    associations: list[Association]
    removed: list[str]
    before: GroupAccuracy
    after: GroupAccuracy
    n_images: int
    n_train: int
    warnings: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def effect(self, name: str) -> ConceptEffect:
        """The effect record of one concept.

        Parameters
        ----------
        name : str

        Returns
        -------
        ConceptEffect

        Raises
        ------
        BiasError
            An unknown concept.
        """
        for e in self.effects:
            if e.name == name:
                return e
        raise BiasError(f"no concept {name!r}; analysed: {[e.name for e in self.effects]}")

    def rank(self, name: str) -> int:
        """1-based rank of a concept among all effects (largest effect first).

        Parameters
        ----------
        name : str

        Returns
        -------
        int
        """
        return [e.name for e in self.effects].index(self.effect(name).name) + 1

    def to_dict(self) -> dict:
        """JSON form (``bias.json``).

        Returns
        -------
        dict
        """
        return {
            "target": self.target,
            "group": self.group,
            "n_images": self.n_images,
            "n_train": self.n_train,
            "probe": self.probe.settings,
            "settings": self.settings,
            "spurious": self.spurious,
            "removed": self.removed,
            "accuracy_before": self.before.to_dict(),
            "accuracy_after": self.after.to_dict(),
            "effects": [{**asdict(e), "score": e.score} for e in self.effects],
            "associations": [asdict(a) for a in self.associations],
            "warnings": self.warnings,
        }

    def effects_figure(self, top: int = 15):
        """Ranked concept effects with their intervals (see ``bias_plots.effects_figure``).

        Parameters
        ----------
        top : int
            Concepts shown.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from vsae.analysis.bias_plots import effects_figure

        return effects_figure(self, top)

    def accuracy_figure(self):
        """Per-group accuracy before and after debiasing (``bias_plots.accuracy_figure``).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from vsae.analysis.bias_plots import accuracy_figure

        return accuracy_figure(self)

    def write(self, out: str | Path) -> Path:
        """Write ``report.md``, ``bias.json``, the figures and the probe into ``out``.

        Parameters
        ----------
        out : str or Path

        Returns
        -------
        Path
            ``out / "report.md"``.
        """
        from vsae.analysis.bias_report import write_report

        return write_report(self, out)


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def _small_groups(groups: Sequence[str], min_group: int, where: str) -> list[str]:
    counts = {g: list(groups).count(g) for g in sorted(set(groups))}
    out = []
    for g, n in counts.items():
        if n < min_group:
            msg = (
                f"group {g!r} has {n} images in the {where}, fewer than {min_group}: "
                "its intervals are reported as the whole range"
            )
            warnings.warn(msg, stacklevel=3)
            out.append(msg)
    return out


def _probes(
    probe: LinearProbe, train_x, y_train, cfg: BiasConfig, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the probe (column 0) and, when refitting, its bootstrap refits."""
    from tqdm import tqdm

    ws, bs = [probe.weight_D], [probe.bias]
    if train_x is not None and cfg.refit_probe:
        counts = resample_counts(len(train_x), cfg.n_boot, cfg.seed + 1).long()
        bar = tqdm(range(cfg.n_boot), desc="probe refits", file=sys.stderr, disable=not progress)
        for b in bar:
            idx = torch.repeat_interleave(torch.arange(len(train_x)), counts[b])
            yb = y_train[idx.numpy()]
            if yb.all() or not yb.any():
                ws.append(probe.weight_D)
                bs.append(probe.bias)
                continue
            p = fit_probe(train_x[idx], yb, cfg.probe)
            ws.append(p.weight_D)
            bs.append(p.bias)
    return torch.stack(ws, 1), torch.tensor(bs, dtype=torch.float32)


def analyse_bias(
    sae,
    x_ND: torch.Tensor,
    labels: Sequence[dict],
    target: str,
    group: str | None = None,
    concepts=None,
    probe: LinearProbe | None = None,
    train_x: torch.Tensor | None = None,
    train_labels: Sequence[dict] | None = None,
    remove: Sequence[str] | None = None,
    cfg: BiasConfig = BiasConfig(),
    progress: bool = False,
) -> BiasResult:
    """Find the concepts a probe leans on, prove it by intervention, and debias at test time.

    Parameters
    ----------
    sae : BaseSAE
        An SAE on the embedding (``d_in == D``).
    x_ND : Tensor [N, D]
        Embeddings of the analysed images (e.g. an unbiased test set).
    labels : sequence of dict
        Their attributes (:func:`vsae.analysis.bias_labels.align_labels`).
    target : str
        ``attribute=value``: what the probe predicts (``shape=circle``, ``Blond_Hair=1``).
    group : str, optional
        Group attribute; evaluation groups are its values x target or not.
    concepts : ConceptTable or mapping of str to latents
        Named concepts (``load_concepts(sae_dir)``, or ``{"red": [17, 58]}``).
    probe : LinearProbe, optional
        A probe to analyse (``load_probe``); default: vsae trains one on ``train_x``.
    train_x, train_labels : optional
        The probe's training data. Without them and without a probe, ``x_ND`` is split in
        halves (``cfg.split_seed``): the probe trains on one, the analysis uses the other.
    remove : sequence of str, optional
        Concepts to remove for debiasing; default the top ``cfg.n_remove`` spurious ones.
    cfg : BiasConfig
    progress : bool
        A tqdm bar over the probe refits.

    Returns
    -------
    BiasResult

    Raises
    ------
    BiasError
        Labels that do not match the embeddings, a target value that never occurs, a probe
        or SAE whose width is not the embedding's, unknown concepts to remove.
    """
    if concepts is None:
        raise BiasError("analyse_bias needs named concepts (concepts=load_concepts(sae_dir))")
    named = concept_latents(concepts)
    if len(labels) != len(x_ND):
        raise BiasError(f"{len(labels)} label records for {len(x_ND)} embeddings")
    settings = {**asdict(cfg), "data_split": None}
    if probe is None and train_x is None:
        tr, te = _split(len(x_ND), cfg.split_seed)
        train_x, train_labels = x_ND[tr], [labels[i] for i in tr]
        x_ND, labels = x_ND[te], [labels[i] for i in te]
        settings["data_split"] = {"train": len(tr), "analysed": len(te), "seed": cfg.split_seed}
    y = target_mask(labels, target)
    groups = group_names(labels, target, group)
    notes = _small_groups(groups, cfg.min_group, "analysed data")
    y_train = None
    if train_x is not None:
        if train_labels is None or len(train_labels) != len(train_x):
            raise BiasError("train_x needs train_labels, one record per training embedding")
        y_train = target_mask(train_labels, target)
    if probe is None:
        probe = fit_probe(train_x, y_train, cfg.probe)
        refit_x = train_x
    else:
        refit_x = None
    probe.check_dim(x_ND, "the analysed embedding")
    codes_NL = encode(sae, x_ND)
    counts_BN = resample_counts(len(x_ND), cfg.n_boot, cfg.seed)
    w_DP, b_P = _probes(probe, refit_x, y_train, cfg, progress)
    effects = concept_effects(
        sae,
        x_ND,
        codes_NL,
        named,
        w_DP,
        b_P,
        torch.from_numpy(y),
        groups,
        counts_BN,
        target,
        cfg.min_group,
        cfg.level,
    )
    spurious = [e.name for e in effects if e.flagged]
    # association on what the probe learned from (else on the analysed data)
    a_x = train_x if train_x is not None else x_ND
    a_labels = train_labels if train_x is not None else labels
    a_codes = encode(sae, a_x) if train_x is not None else codes_NL
    _, value = target.split("=", 1)
    splits = {"target": [value if t else f"not {value}" for t in target_mask(a_labels, target)]}
    if group is not None:
        splits[group] = group_values(a_labels, group)
    a_counts = resample_counts(len(a_x), cfg.n_boot, cfg.seed + 2)
    assoc = associations(a_codes, named, splits, a_counts, cfg.min_group, cfg.level)
    removed = list(remove) if remove is not None else spurious[: cfg.n_remove]
    y_t = torch.from_numpy(y)
    before = group_accuracy(
        probe.logits(x_ND) > 0, y_t, groups, counts_BN, cfg.min_group, cfg.level
    )
    x_removed = remove_concepts(sae, x_ND, named, removed)
    after = group_accuracy(
        probe.logits(x_removed) > 0, y_t, groups, counts_BN, cfg.min_group, cfg.level
    )
    return BiasResult(
        target,
        group,
        probe,
        effects,
        spurious,
        assoc,
        removed,
        before,
        after,
        len(x_ND),
        0 if train_x is None else len(train_x),
        notes,
        settings,
    )


def debias_accuracy(
    sae,
    probe: LinearProbe,
    x_ND: torch.Tensor,
    labels: Sequence[dict],
    target: str,
    group: str | None,
    concepts: Mapping[str, Sequence[int]],
    remove: Sequence[str],
    cfg: BiasConfig = BiasConfig(),
) -> tuple[GroupAccuracy, GroupAccuracy]:
    """A probe's accuracy before and after removing concepts, without the full analysis.

    Parameters
    ----------
    sae : BaseSAE
    probe : LinearProbe
    x_ND : Tensor [N, D]
    labels : sequence of dict
    target : str
    group : str or None
    concepts : mapping
        Name -> latents.
    remove : sequence of str
    cfg : BiasConfig

    Returns
    -------
    (GroupAccuracy, GroupAccuracy)
        Before and after.
    """
    y_t = torch.from_numpy(target_mask(labels, target))
    groups = group_names(labels, target, group)
    counts_BN = resample_counts(len(x_ND), cfg.n_boot, cfg.seed)
    before = group_accuracy(
        probe.logits(x_ND) > 0, y_t, groups, counts_BN, cfg.min_group, cfg.level
    )
    x2 = remove_concepts(sae, x_ND, concept_latents(concepts), remove)
    after = group_accuracy(probe.logits(x2) > 0, y_t, groups, counts_BN, cfg.min_group, cfg.level)
    return before, after
