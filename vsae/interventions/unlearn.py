"""Concept unlearning with an SAE on a U-Net block (SAeUron, Cywiński & Deja 2025; REFERENCE §6).

Per denoising step t and latent f, ``mu_c(f, t)`` is the mean activation (over positions and
prompts, conditional half) on prompts with concept c, ``mu_notc`` on the others, and ``mu_all``
on all of them. The score is

    score_c(f, t) = mu_c(f, t) / sum_f' mu_c(f', t) - mu_notc(f, t) / sum_f' mu_notc(f', t)

and, per step, the latents above the ``percentile`` of the scores are selected. At inference,
where a selected latent exceeds ``mu_all(f, t)`` it is multiplied by ``gamma * mu_c(f, t)``
(gamma < 0), on both CFG halves at every step. The block output becomes
``x + (x_hat_edited - x_hat)``: the SAE's reconstruction error is kept, so an empty selection
changes nothing (SAeUron's public code adds ``x_hat - x`` instead, which gives ``2 x_hat - x``
under no edit). Several concepts: the union of their latents.

A **recipe** (``recipe.json`` + ``latents.safetensors``, CONTRACTS.md) holds the selection, the
multipliers, the thresholds, the SAE's hash and block, and the prompts and seeds it was fitted
on; it is refused for another SAE or block.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .block_sae import BlockSAE
from .edits import Edit, EditState
from .errors import InterventionError
from .generator import Generator
from .run import generate

RECIPE_JSON = "recipe.json"
RECIPE_TENSORS = "latents.safetensors"
RECIPE_VERSION = 1


def sae_hash(sae: torch.nn.Module) -> str:
    """SHA-256 of an SAE's tensors (names, shapes, dtypes and bytes, in name order).

    Parameters
    ----------
    sae : BaseSAE

    Returns
    -------
    str
        Hex digest; equal for the same weights whatever the file format they were read from.
    """
    h = hashlib.sha256()
    for name, t in sorted(sae.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def mentions(prompt: str, concept: str) -> bool:
    """Whether a prompt names a concept.

    Parameters
    ----------
    prompt : str
    concept : str

    Returns
    -------
    bool
        True when ``concept`` appears in ``prompt`` as a whole word (case-insensitive).
    """
    return re.search(rf"\b{re.escape(concept.lower())}\b", prompt.lower()) is not None


@torch.no_grad()
def step_means(
    gen: Generator,
    bsae: BlockSAE,
    prompts: Sequence[str],
    steps: int,
    seeds: Sequence[int],
    guidance: float | None = None,
) -> torch.Tensor:
    """Mean SAE code per denoising step over positions and images: ``[len(prompts), T, N]``.

    Parameters
    ----------
    gen : Generator
    bsae : BlockSAE
    prompts : list of str
    steps : int
        Denoising steps T.
    seeds : list of int
        Noise seeds; each prompt's means are averaged over them.
    guidance : float, optional

    Returns
    -------
    torch.Tensor
        float64, the conditional half only (what the prompt drives).
    """
    n = len(prompts)
    out = torch.zeros(n, steps, bsae.sae.n_latents, dtype=torch.float64)

    def record(_i: int, step: int, codes_BPN: torch.Tensor) -> None:
        if 0 <= step < steps:
            out[:, step] += codes_BPN[-n:].double().mean(dim=1)

    for seed in seeds:
        generate(gen, prompts, steps, seed, guidance, [bsae], record=record)
    return out / len(seeds)


def scores(mu_c_TN: torch.Tensor, mu_notc_TN: torch.Tensor) -> torch.Tensor:
    """``score_c(f, t)``: each side's means normalised to sum 1 per step, then subtracted.

    Parameters
    ----------
    mu_c_TN, mu_notc_TN : torch.Tensor
        Mean activations per step with and without the concept.

    Returns
    -------
    torch.Tensor
        ``[T, N]``.
    """
    eps = 1e-12
    return mu_c_TN / (mu_c_TN.sum(1, keepdim=True) + eps) - mu_notc_TN / (
        mu_notc_TN.sum(1, keepdim=True) + eps
    )


@dataclass(frozen=True)
class Recipe:
    """A fitted unlearning recipe.

    Attributes
    ----------
    selected_TN : torch.Tensor
        bool, the latents edited at each step.
    multiplier_TN : torch.Tensor
        ``gamma * mu_c(f, t)`` (the most negative over the concepts that select f).
    threshold_TN : torch.Tensor
        ``mu_all(f, t)``: the edit applies where the activation exceeds it.
    info : dict
        sae_path, sae_hash, block, output, concepts, percentile, gamma, num_steps, guidance,
        prompts (with / without each concept) and seeds: ``recipe.json``.
    """

    selected_TN: torch.Tensor
    multiplier_TN: torch.Tensor
    threshold_TN: torch.Tensor
    info: dict = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``recipe.json`` and ``latents.safetensors`` (atomically) into ``out_dir``.

        Parameters
        ----------
        out_dir : str or Path
            Created if needed.

        Returns
        -------
        Path
            The folder.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            "selected_TN": self.selected_TN.to(torch.uint8).contiguous(),
            "multiplier_TN": self.multiplier_TN.float().contiguous(),
            "threshold_TN": self.threshold_TN.float().contiguous(),
        }
        tmp = out / (RECIPE_TENSORS + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, out / RECIPE_TENSORS)
        text = json.dumps({"format_version": RECIPE_VERSION, **self.info}, indent=2) + "\n"
        tmp = out / (RECIPE_JSON + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / RECIPE_JSON)
        return out

    def edit(self, bsae: BlockSAE, sae_index: int = 0) -> Unlearn:
        """The edit for ``bsae``, refused when it is not the recipe's SAE on its block.

        Parameters
        ----------
        bsae : BlockSAE
            The attached SAE.
        sae_index : int
            Its index among the attached SAEs.

        Returns
        -------
        Unlearn

        Raises
        ------
        InterventionError
            Another SAE (hash) or another block than the recipe's.
        """
        if bsae.block != self.info["block"]:
            raise InterventionError(
                f"the recipe is for block {self.info['block']!r}; the SAE is on {bsae.block!r}"
            )
        got = sae_hash(bsae.sae)
        if got != self.info["sae_hash"]:
            raise InterventionError(
                f"the recipe was fitted on SAE {self.info['sae_path']} (sha256 "
                f"{self.info['sae_hash'][:12]}...); this SAE's is {got[:12]}...: refit it"
            )
        return Unlearn(
            sae=sae_index,
            recipe_selected=self.selected_TN,
            recipe_multiplier=self.multiplier_TN,
            recipe_threshold=self.threshold_TN,
            num_steps=int(self.info["num_steps"]),
        )


@dataclass(frozen=True)
class Unlearn(Edit):
    """Suppress a recipe's latents: where f > mu_all(f, t), f <- f * gamma * mu_c(f, t).

    Attributes
    ----------
    recipe_selected, recipe_multiplier, recipe_threshold : torch.Tensor
        ``[T, N]`` from the :class:`Recipe`.
    num_steps : int
        The denoising steps the recipe was fitted for (a run must have as many).
    """

    recipe_selected: torch.Tensor = field(default=None, compare=False, repr=False)
    recipe_multiplier: torch.Tensor = field(default=None, compare=False, repr=False)
    recipe_threshold: torch.Tensor = field(default=None, compare=False, repr=False)
    num_steps: int = 0

    def apply(self, st: EditState) -> None:
        """Scale the selected latents of this step where they exceed their threshold.

        Parameters
        ----------
        st : EditState
        """
        if not 0 <= st.step < self.recipe_selected.shape[0]:
            return
        sel_N = self.recipe_selected[st.step].bool()
        if not sel_N.any():
            return
        codes = st.codes_BPN[:, :, sel_N]
        thr = self.recipe_threshold[st.step, sel_N].to(codes)
        mult = self.recipe_multiplier[st.step, sel_N].to(codes)
        w_B11 = st.row_weights(self.rows).to(codes)[:, None, None] > 0
        st.codes_BPN[:, :, sel_N] = torch.where((codes > thr) & w_B11, codes * mult, codes)

    def describe(self) -> dict:
        """JSON record: how many (latent, step) pairs are edited.

        Returns
        -------
        dict
        """
        n = int(self.recipe_selected.bool().sum()) if self.recipe_selected is not None else 0
        return {**super().describe(), "selected_pairs": n, "num_steps": self.num_steps}


def _check_hyperparameters(concepts: Sequence[str], percentile: float, gamma: float) -> None:
    if not concepts:
        raise InterventionError("give at least one concept to unlearn")
    if not 0 < percentile < 100:
        raise InterventionError(f"percentile {percentile}: expected a value in (0, 100)")
    if gamma >= 0:
        raise InterventionError(
            f"gamma {gamma}: expected gamma < 0 (the latent is multiplied by gamma * mu_c; "
            "gamma >= 0 keeps or amplifies the concept instead of removing it)"
        )


def _concept_flags(concepts: Sequence[str], prompts: Sequence[str]) -> dict[str, list[bool]]:
    has = {c: [mentions(p, c) for p in prompts] for c in concepts}
    for c, flags in has.items():
        if not any(flags):
            raise InterventionError(
                f"concept {c!r} appears in no statistics prompt (of {len(flags)}); give prompts "
                "that name it as a word"
            )
        if all(flags):
            raise InterventionError(f"concept {c!r} appears in every prompt: none to contrast")
    return has


def fit_from_means(
    bsae: BlockSAE,
    concepts: Sequence[str],
    prompts: Sequence[str],
    mu_PTN: torch.Tensor,
    percentile: float = 99.0,
    gamma: float = -1.0,
    info: dict | None = None,
) -> Recipe:
    """A recipe from per-prompt step means already computed (:func:`step_means`).

    The statistics do not depend on the concepts, the percentile or gamma, so a grid of
    hyperparameters over many concepts needs one :func:`step_means` run.

    Parameters
    ----------
    bsae : BlockSAE
        The SAE on its block (hashed into the recipe).
    concepts : list of str
    prompts : list of str
        The statistics prompts, one per row of ``mu_PTN``.
    mu_PTN : torch.Tensor
        ``[len(prompts), T, N]`` mean codes.
    percentile, gamma : float
        As :func:`fit_recipe`.
    info : dict, optional
        Extra fields for ``recipe.json`` (guidance, seeds, sae_path ...).

    Returns
    -------
    Recipe

    Raises
    ------
    InterventionError
        As :func:`fit_recipe`, or means of another shape than the prompts and the SAE.
    """
    _check_hyperparameters(concepts, percentile, gamma)
    prompts = list(prompts)
    if mu_PTN.ndim != 3 or mu_PTN.shape[0] != len(prompts) or mu_PTN.shape[2] != bsae.sae.n_latents:
        raise InterventionError(
            f"means of shape {tuple(mu_PTN.shape)}: expected [{len(prompts)} prompts, steps, "
            f"{bsae.sae.n_latents} latents]"
        )
    has = _concept_flags(concepts, prompts)
    steps = mu_PTN.shape[1]
    mu_all_TN = mu_PTN.mean(0)
    selected = torch.zeros(steps, bsae.sae.n_latents, dtype=torch.bool)
    mult = torch.zeros(steps, bsae.sae.n_latents, dtype=torch.float64)
    per_concept = {}
    for c, flags in has.items():
        on = torch.tensor(flags)
        mu_c, mu_not = mu_PTN[on].mean(0), mu_PTN[~on].mean(0)
        s_TN = scores(mu_c, mu_not)
        cut_T1 = torch.quantile(s_TN, percentile / 100, dim=1, keepdim=True)
        sel = (s_TN > cut_T1) & (mu_c > 0)
        selected |= sel
        mult = torch.where(sel, torch.minimum(mult, gamma * mu_c), mult)
        per_concept[c] = {"selected_pairs": int(sel.sum()), "prompts": int(on.sum())}
    meta = {
        "sae_path": "",
        "sae_hash": sae_hash(bsae.sae),
        "block": bsae.block,
        "output": bsae.output,
        "concepts": list(concepts),
        "percentile": percentile,
        "gamma": gamma,
        "num_steps": steps,
        "guidance": None,
        "seeds": [],
        **(info or {}),
        "prompts": prompts,
        "per_concept": per_concept,
    }
    # the prompts and seeds the recipe was fitted (and may be tuned) on: evaluate elsewhere
    meta["selection_split"] = {"prompts": prompts, "seeds": list(meta.get("seeds", []))}
    return Recipe(selected, mult.float(), mu_all_TN.float(), meta)


def fit_recipe(
    gen: Generator,
    bsae: BlockSAE,
    concepts: Sequence[str],
    prompts: Sequence[str],
    steps: int,
    seeds: Sequence[int] = (0,),
    percentile: float = 99.0,
    gamma: float = -1.0,
    guidance: float | None = None,
    sae_path: str = "",
) -> Recipe:
    """Fit an unlearning recipe for one or more concepts (the union of their latents).

    Parameters
    ----------
    gen : Generator
    bsae : BlockSAE
        The SAE on its block.
    concepts : list of str
        Words; a prompt has a concept when it names it (whole word).
    prompts : list of str
        The statistics prompts: with and without each concept.
    steps : int
        Denoising steps (the recipe is for runs of this many).
    seeds : list of int
        Noise seeds of the statistics.
    percentile : float
        In (0, 100): per step, latents scoring above this percentile are selected.
    gamma : float
        < 0: the selected latents become ``f * gamma * mu_c(f, t)`` (a sign flip scaled by the
        concept's mean), which pushes the block away from the concept.
    guidance : float, optional
    sae_path : str
        Recorded in the recipe.

    Returns
    -------
    Recipe

    Raises
    ------
    InterventionError
        No concept, a percentile outside (0, 100), gamma >= 0, a concept named by no prompt
        (or by every prompt).
    """
    _check_hyperparameters(concepts, percentile, gamma)
    prompts = list(prompts)
    _concept_flags(concepts, prompts)  # refuse before the (slow) statistics
    mu_PTN = step_means(gen, bsae, prompts, steps, seeds, guidance)
    info = {"sae_path": sae_path, "guidance": guidance, "seeds": list(seeds)}
    return fit_from_means(bsae, concepts, prompts, mu_PTN, percentile, gamma, info)


def combine_recipes(recipes: Sequence[Recipe]) -> Recipe:
    """The union of recipes fitted on the same SAE, block and steps (sequential removal).

    A latent selected by several keeps the most negative multiplier and the lowest threshold.

    Parameters
    ----------
    recipes : list of Recipe

    Returns
    -------
    Recipe
        Its ``concepts`` are all of theirs, in order; ``parts`` records each one's info.

    Raises
    ------
    InterventionError
        No recipe, or recipes for another SAE, block or number of steps than the first.
    """
    if not recipes:
        raise InterventionError("no recipe to combine")
    first = recipes[0]
    key = ("sae_hash", "block", "num_steps")
    for r in recipes[1:]:
        if any(r.info[k] != first.info[k] for k in key):
            raise InterventionError(
                f"cannot combine a recipe for {[r.info[k] for k in key]} with one for "
                f"{[first.info[k] for k in key]} (sae_hash, block, num_steps)"
            )
    sel = torch.zeros_like(first.selected_TN)
    mult = torch.zeros_like(first.multiplier_TN)
    thr = torch.full_like(first.threshold_TN, float("inf"))
    for r in recipes:
        s = r.selected_TN.bool()
        sel |= s
        mult = torch.where(s, torch.minimum(mult, r.multiplier_TN), mult)
        thr = torch.where(s, torch.minimum(thr, r.threshold_TN), thr)
    thr = torch.where(sel, thr, first.threshold_TN)
    concepts = [c for r in recipes for c in r.info["concepts"]]
    info = {**first.info, "concepts": concepts, "parts": [dict(r.info) for r in recipes]}
    info["per_concept"] = {k: v for r in recipes for k, v in r.info.get("per_concept", {}).items()}
    return Recipe(sel, mult, thr, info)


def sequential_recipes(
    bsae: BlockSAE,
    concepts: Sequence[str],
    prompts: Sequence[str],
    mu_PTN: torch.Tensor,
    percentile: float = 99.0,
    gamma: float = -1.0,
    info: dict | None = None,
) -> list[Recipe]:
    """Sequential removal: the recipe after adding each concept, one by one.

    Recipe ``i`` removes ``concepts[: i + 1]``: each concept is fitted alone and the first
    ``i + 1`` are combined (:func:`combine_recipes`), as a user adding one concept to a recipe
    at a time would.

    Parameters
    ----------
    bsae, prompts, mu_PTN, percentile, gamma, info
        As :func:`fit_from_means`.
    concepts : list of str
        In the order they are added.

    Returns
    -------
    list of Recipe
        One per prefix of ``concepts``.
    """
    singles = [
        fit_from_means(bsae, [c], prompts, mu_PTN, percentile, gamma, info) for c in concepts
    ]
    return [combine_recipes(singles[: i + 1]) for i in range(len(singles))]


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe folder.

    Parameters
    ----------
    path : str or Path
        Folder with ``recipe.json`` and ``latents.safetensors``.

    Returns
    -------
    Recipe

    Raises
    ------
    InterventionError
        A missing, unreadable or truncated file, another format version, or tensors whose
        shapes disagree.
    """
    path = Path(path)
    meta_path, tensors_path = path / RECIPE_JSON, path / RECIPE_TENSORS
    for p in (meta_path, tensors_path):
        if not p.is_file():
            raise InterventionError(
                f"{p}: no such file; a recipe folder holds {RECIPE_JSON} and {RECIPE_TENSORS}"
            )
    try:
        info = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exn:
        raise InterventionError(f"{meta_path}: not valid JSON ({exn})") from None
    if info.pop("format_version", None) != RECIPE_VERSION:
        raise InterventionError(f"{meta_path}: format_version is not {RECIPE_VERSION}")
    missing = [k for k in ("sae_hash", "block", "num_steps", "concepts") if k not in info]
    if missing:
        raise InterventionError(f"{meta_path}: missing fields {missing}")
    try:
        t = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exn:
        raise InterventionError(f"{tensors_path}: unreadable (truncated?): {exn}") from None
    names = ("selected_TN", "multiplier_TN", "threshold_TN")
    if sorted(t) != sorted(names):
        raise InterventionError(f"{tensors_path}: tensors {sorted(t)}; expected {list(names)}")
    shapes = {tuple(t[n].shape) for n in names}
    if len(shapes) != 1 or next(iter(shapes))[0] != int(info["num_steps"]):
        raise InterventionError(
            f"{tensors_path}: shapes {sorted(shapes)} disagree with the recipe's "
            f"{info['num_steps']} steps"
        )
    return Recipe(t["selected_TN"].bool(), t["multiplier_TN"], t["threshold_TN"], info)


def concept_prompts(concepts: Sequence[str], vocab: dict[str, Sequence[str]]) -> list[str]:
    """The tiny world's statistics prompts: ``a {colour} {shape}`` for every pair.

    Parameters
    ----------
    concepts : list of str
        Checked against the vocabulary.
    vocab : dict
        ``{"colour": COLOURS, "shape": SHAPES}``.

    Returns
    -------
    list of str

    Raises
    ------
    InterventionError
        A concept that is no colour or shape of the world.
    """
    known = set(vocab["colour"]) | set(vocab["shape"])
    bad = [c for c in concepts if c not in known]
    if bad:
        raise InterventionError(f"concepts {bad}: the tiny world's concepts are {sorted(known)}")
    return [f"a {c} {s}" for c in vocab["colour"] for s in vocab["shape"]]


__all__ = [
    "Recipe",
    "Unlearn",
    "combine_recipes",
    "concept_prompts",
    "fit_from_means",
    "fit_recipe",
    "load_recipe",
    "mentions",
    "sae_hash",
    "scores",
    "sequential_recipes",
    "step_means",
]
