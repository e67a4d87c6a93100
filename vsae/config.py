"""Frozen dataclass configs for SAEs and training, with strict key checking."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ARCHS = (
    "relu",
    "topk",
    "batchtopk",
    "jumprelu",
    "matryoshka_k",
    "matryoshka_prefix",
    "archetypal",
)
TOPK_FAMILY = ("topk", "batchtopk", "matryoshka_k", "matryoshka_prefix", "archetypal")


class ConfigError(ValueError):
    """A config has an unknown key, a wrong type or an out-of-range value."""


def _unknown_key_error(cls: type, key: str, where: str = "") -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    prefix = f"{where}: " if where else ""
    return ConfigError(
        f"{prefix}unknown {cls.__name__} key {key!r}{hint}; valid keys: {', '.join(names)}"
    )


def _strict(cls: type) -> type:
    """Make a dataclass constructor reject unknown keywords with a ConfigError."""
    init = cls.__init__
    names = {f.name for f in dataclasses.fields(cls)}

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in names:
                raise _unknown_key_error(cls, key)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


@_strict
@dataclass(frozen=True)
class SAEConfig:
    """Architecture of one sparse autoencoder.

    Parameters
    ----------
    arch : str
        One of ``relu``, ``topk``, ``batchtopk``, ``jumprelu``, ``matryoshka_k``,
        ``matryoshka_prefix``, ``archetypal``.
    d_in : int
        Width of the activations the SAE reads.
    n_latents : int
        Dictionary size. When 0, ``expansion * d_in`` is used.
    expansion : int
        Expansion factor used when ``n_latents`` is 0.
    k : int
        Active latents per sample for the TopK family (k0 of the nested-k MSAE).
    l1_coef : float
        L1 coefficient of the ReLU SAE.
    l0_coef : float
        L0 coefficient of the JumpReLU SAE.
    jump_bandwidth : float
        Width of the rectangle kernel of the JumpReLU straight-through estimator.
    jump_init_threshold : float
        Initial JumpReLU threshold, in normalised units.
    levels : tuple of int
        Nested-k levels of ``matryoshka_k``; empty means k, 2k, 4k, ... and n.
    weighting : str
        ``uw`` (all levels weigh 1) or ``rw`` (level i of h weighs h - i + 1).
    infer_k : int
        ``matryoshka_k`` inference: TopK at this k, or 0 for the dense ReLU path.
    prefixes : tuple of int
        Prefix sizes of ``matryoshka_prefix``; empty means ``n_levels`` halvings of n.
    n_levels : int
        Number of prefixes when they are chosen automatically or sampled.
    random_prefix : bool
        Sample prefix boundaries anew at every training step.
    n_candidates : int
        Archetypal candidate points (k-means centroids); 0 means ``n_latents``.
    n_neighbors : int
        Archetypal: each atom mixes only its m nearest candidates; 0 means all.
    delta : float
        Archetypal relaxation radius; 0 is the A-SAE, > 0 the RA-SAE.
    encoder_act : str
        Archetypal encoder activation, ``topk`` or ``batchtopk``.
    archetype_init : str
        Archetypal init. ``kmeans``: k-means seeded by ``seed``, atom i starts on
        centroid i. ``shared``: k-means seeded by 0 whatever ``seed`` is, atom i on
        centroid i, so runs differing only in ``seed`` share candidates and init.
        ``random``: the shared candidates, but atom i starts on a random convex mix
        of its neighbours, drawn from ``seed``.
    normalize : bool
        Mean-centre and scale inputs so that E||x - mu|| = sqrt(d_in).
    b_dec_init : str
        ``zero``, ``mean`` or ``median`` (geometric median of a data sample).
    aux_k : int
        Latents used by the AuxK loss; 0 means min(512, d_in // 2). -1 disables it.
    aux_coef : float
        AuxK loss coefficient.
    seed : int
        Seed of the weight initialisation.

    Raises
    ------
    ConfigError
        An unknown key (with the closest valid ones), a value of the wrong type, or one out
        of range (the message names the field, the value and what was expected).
    """

    arch: str = "topk"
    d_in: int = 0
    n_latents: int = 0
    expansion: int = 8
    k: int = 32
    l1_coef: float = 5e-3
    l0_coef: float = 1e-3
    jump_bandwidth: float = 1e-2
    jump_init_threshold: float = 1e-1
    levels: tuple[int, ...] = ()
    weighting: str = "uw"
    infer_k: int = 0
    prefixes: tuple[int, ...] = ()
    n_levels: int = 5
    random_prefix: bool = False
    n_candidates: int = 0
    n_neighbors: int = 0
    delta: float = 1.0
    encoder_act: str = "topk"
    archetype_init: str = "kmeans"
    normalize: bool = True
    b_dec_init: str = "mean"
    aux_k: int = 0
    aux_coef: float = 1 / 32
    seed: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        _require(self.arch in ARCHS, "arch", self.arch, f"one of {', '.join(ARCHS)}")
        _require(self.d_in > 0, "d_in", self.d_in, "a positive integer")
        _require(self.n_latents >= 0, "n_latents", self.n_latents, ">= 0")
        _require(self.expansion > 0, "expansion", self.expansion, "> 0")
        _require(1 <= self.k <= self.num_latents, "k", self.k, f"between 1 and {self.num_latents}")
        _require(self.weighting in ("uw", "rw"), "weighting", self.weighting, "'uw' or 'rw'")
        _require(
            self.encoder_act in ("topk", "batchtopk"),
            "encoder_act",
            self.encoder_act,
            "'topk' or 'batchtopk'",
        )
        _require(
            self.archetype_init in ("kmeans", "shared", "random"),
            "archetype_init",
            self.archetype_init,
            "'kmeans', 'shared' or 'random'",
        )
        _require(
            self.b_dec_init in ("zero", "mean", "median"),
            "b_dec_init",
            self.b_dec_init,
            "'zero', 'mean' or 'median'",
        )
        _require(self.delta >= 0, "delta", self.delta, ">= 0")
        _require(
            0 <= self.infer_k <= self.num_latents,
            "infer_k",
            self.infer_k,
            f"0 (dense) or at most {self.num_latents}",
        )
        if self.levels:
            ok = (
                list(self.levels) == sorted(set(self.levels))
                and self.levels[-1] <= self.num_latents
            )
            _require(ok and self.levels[0] >= 1, "levels", self.levels, "strictly increasing, <= n")
        if self.prefixes:
            ok = list(self.prefixes) == sorted(set(self.prefixes)) and self.prefixes[0] >= 1
            _require(
                ok and self.prefixes[-1] == self.num_latents,
                "prefixes",
                self.prefixes,
                f"strictly increasing and ending at n_latents={self.num_latents}",
            )
        if self.arch == "archetypal":
            _require(
                self.num_candidates >= self.num_latents,
                "n_candidates",
                self.n_candidates,
                f">= n_latents={self.num_latents} (atom i starts on candidate i)",
            )

    @property
    def num_latents(self) -> int:
        """Dictionary size after resolving ``expansion``."""
        return self.n_latents or self.expansion * self.d_in

    @property
    def num_candidates(self) -> int:
        """Archetypal candidate count after resolving the default."""
        return self.n_candidates or self.num_latents

    @property
    def num_aux_k(self) -> int:
        """AuxK latent count after resolving the default (0 when disabled)."""
        if self.aux_k < 0:
            return 0
        return self.aux_k or max(1, min(512, self.d_in // 2))


@_strict
@dataclass(frozen=True)
class TrainConfig:
    """How an SAE is trained.

    Parameters
    ----------
    batch_size : int
        Samples per optimiser step.
    steps : int
        Optimiser steps; 0 means ``epochs`` passes over an array dataset.
    epochs : float
        Passes over the data when ``steps`` is 0.
    lr : float
        Peak learning rate of AdamW.
    betas : tuple of float
        AdamW betas.
    eps : float
        AdamW epsilon.
    weight_decay : float
        AdamW weight decay.
    warmup_steps : int
        Linear warm-up steps.
    decay_frac : float
        Final fraction of the steps with linear decay to zero.
    grad_clip : float
        Gradient-norm clip; 0 disables it.
    dead_after : int
        A latent is dead once it has not fired for this many training samples.
    eval_every : int
        Steps between evaluations; 0 evaluates only at the end.
    eval_samples : int
        Held-out samples used for evaluation.
    norm_samples : int
        Samples used for normalisation statistics and data-dependent init.
    ckpt_every : int
        Steps between checkpoints; 0 writes none.
    log_every : int
        Steps between lines of metrics.jsonl.
    seed : int
        Seed of data order and training randomness.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    compile : bool
        Wrap the training step in ``torch.compile``.
    autocast : bool
        bf16 autocast on CUDA.
    progress : bool
        Show a tqdm progress bar.

    Raises
    ------
    ConfigError
        An unknown key, a value of the wrong type, or one out of range (named in the
        message with what was expected).
    """

    batch_size: int = 1024
    steps: int = 0
    epochs: float = 1.0
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 6.25e-10
    weight_decay: float = 0.0
    warmup_steps: int = 100
    decay_frac: float = 0.2
    grad_clip: float = 1.0
    dead_after: int = 100_000
    eval_every: int = 0
    eval_samples: int = 4096
    norm_samples: int = 65_536
    ckpt_every: int = 0
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    autocast: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        _require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _require(self.steps >= 0, "steps", self.steps, ">= 0")
        _require(self.steps > 0 or self.epochs > 0, "epochs", self.epochs, "> 0 when steps is 0")
        _require(self.lr > 0, "lr", self.lr, "> 0")
        _require(0 <= self.decay_frac <= 1, "decay_frac", self.decay_frac, "in [0, 1]")
        _require(self.device in ("cpu", "cuda", "auto"), "device", self.device, "cpu/cuda/auto")


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a config dataclass from a dict, rejecting unknown keys.

    Parameters
    ----------
    cls : type
        ``SAEConfig`` or ``TrainConfig``.
    data : dict
        Field values; lists are converted to tuples.
    where : str
        Where the dict came from (a file or section name), used in errors.

    Returns
    -------
    cls
        An instance of ``cls``.

    Raises
    ------
    ConfigError
        ``data`` is not a mapping, has an unknown key, or a value is invalid; the message
        starts with ``where``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _unknown_key_error(cls, key, where)
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**clean)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists).

    Parameters
    ----------
    cfg : SAEConfig or TrainConfig
        Any config dataclass.

    Returns
    -------
    dict
        Field name to value; ``from_dict`` reads it back to an equal config.
    """
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def replace(cfg: T, **changes: Any) -> T:
    """Copy of a frozen config with some fields changed, with the same key checks.

    Parameters
    ----------
    cfg : SAEConfig or TrainConfig
        The config to copy.
    **changes
        Field values to change.

    Returns
    -------
    SAEConfig or TrainConfig
        A new config of the same type.

    Raises
    ------
    ConfigError
        An unknown field or an invalid value.
    """
    return from_dict(type(cfg), {**dataclasses.asdict(cfg), **changes})


def save_json(cfg: Any, path: str | Path) -> None:
    """Write a config as indented JSON.

    Parameters
    ----------
    cfg : SAEConfig or TrainConfig
        The config.
    path : str or Path
        The file to write (replaced if it exists).
    """
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expected}")


def _check_types(cfg: Any) -> None:
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        want = hints[f.name]
        if want is bool:
            ok = isinstance(value, bool)
        elif want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif want is float:
            if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
                try:
                    value = float(value)
                    object.__setattr__(cfg, f.name, value)
                except ValueError:
                    pass
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and isinstance(value, int):
                object.__setattr__(cfg, f.name, float(value))
        elif want is str:
            ok = isinstance(value, str)
        else:  # tuples
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(cfg, f.name, value)
            ok = isinstance(value, tuple)
        if not ok:
            raise ConfigError(
                f"{f.name}={value!r} has type {type(value).__name__}; expected {_type_name(want)}"
            )


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


__all__ = [
    "ARCHS",
    "TOPK_FAMILY",
    "ConfigError",
    "SAEConfig",
    "TrainConfig",
    "from_dict",
    "to_dict",
    "replace",
    "save_json",
]
