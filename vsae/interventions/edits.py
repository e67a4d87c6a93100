"""Edits of an attached SAE's latents, composable: steer, clamp/ablate, icon, block ablation.

Each edit acts on an :class:`EditState` for one block call: the SAE codes of every position, an
additive term in the block's activation space, and an optional replacement of the whole block
update. The hook turns the state into the block's new output as
``out + (dec(codes') - dec(codes)) + add`` (so no edit leaves ``out`` bitwise unchanged: the
reconstruction error is kept, REFERENCE.md §6a), or ``in + replace`` when replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InterventionError
from .masks import check_mask


@dataclass
class EditState:
    """One block call of one SAE, which the edits change in place.

    Attributes
    ----------
    codes_BPN : torch.Tensor
        SAE codes of every grid position (P = H*W).
    add_BPD : torch.Tensor
        Additive term in the block's activation space.
    dir_ND : torch.Tensor
        Raw-space decoder atoms (``decode(e_f) - decode(0)``).
    mean_N : torch.Tensor or None
        Mean activation when firing (None without statistics).
    grid : (int, int)
        The block's (H, W).
    n_prompts : int
        Prompts: the U-Net batch is ``[uncond; cond]`` (2n rows) when ``guided``, else n.
    guided : bool
    step : int
        The denoising step of the call (0 = the first).
    replace_BPD, replace_B : torch.Tensor
        New block update on the rows of ``replace_B`` (icons).
    ablate_B : torch.Tensor
        Rows that return the block input.
    """

    codes_BPN: torch.Tensor
    add_BPD: torch.Tensor
    dir_ND: torch.Tensor
    mean_N: torch.Tensor | None
    grid: tuple[int, int]
    n_prompts: int = 0
    guided: bool = False
    step: int = -1
    replace_BPD: torch.Tensor = None  # type: ignore[assignment] - set in __post_init__
    replace_B: torch.Tensor = None  # type: ignore[assignment]
    ablate_B: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        B = self.codes_BPN.shape[0]
        self.n_prompts = self.n_prompts or B
        self.replace_BPD = torch.zeros_like(self.add_BPD)
        self.replace_B = torch.zeros(B, dtype=torch.bool)
        self.ablate_B = torch.zeros(B, dtype=torch.bool)

    def row_weights(self, rows: tuple[int, ...] | None) -> torch.Tensor:
        """[B] weights: 1 on the U-Net rows of prompts ``rows`` (both CFG halves), else 0.

        Parameters
        ----------
        rows : tuple of int or None
            Prompt indices; None means every row.

        Returns
        -------
        torch.Tensor
        """
        B = self.codes_BPN.shape[0]
        if rows is None:
            return torch.ones(B)
        w_B = torch.zeros(B)
        for r in rows:
            w_B[r] = 1.0
            if self.guided:
                w_B[self.n_prompts + r] = 1.0
        return w_B


def pool_mask(mask_HW: np.ndarray | None, grid: tuple[int, int]) -> torch.Tensor | None:
    """An image-space mask [H, W] averaged onto the block grid: weights [P] in [0, 1].

    Parameters
    ----------
    mask_HW : np.ndarray or None
        None means everywhere.
    grid : (int, int)
        The block's (h, w).

    Returns
    -------
    torch.Tensor or None
        ``[h * w]``, row-major like the block's flattened positions.
    """
    if mask_HW is None:
        return None
    m = torch.as_tensor(np.asarray(mask_HW, dtype=np.float32))[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(m, grid).flatten()


@dataclass(frozen=True)
class Edit:
    """Shared interface of the edits.

    Attributes
    ----------
    sae : int
        Which attached SAE it acts on (index into the attached list).
    steps : (int, int) or None
        Denoising steps [A, B) it is active at (None: every step).
    mask : np.ndarray or None
        Image-space [H, W] weights in [0, 1] (None: everywhere).
    rows : tuple of int or None
        The prompts of the batch it applies to (None: every prompt), so that one batched run
        can carry a different edit per image.

    Subclasses implement :meth:`apply`; ``feature`` is the latent id they act on (or None).
    """

    sae: int = 0
    steps: tuple[int, int] | None = None
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    rows: tuple[int, ...] | None = None

    feature = None
    needs_mean = False

    def active(self, step: int) -> bool:
        """Whether the edit acts at a denoising step.

        Parameters
        ----------
        step : int
            0 = the first (noisiest) step.

        Returns
        -------
        bool
            True when ``step`` lies in the schedule ``[A, B)`` (always without one).
        """
        return self.steps is None or self.steps[0] <= step < self.steps[1]

    def apply(self, st: EditState) -> None:
        """Change ``st`` in place.

        Parameters
        ----------
        st : EditState
            The block call's codes and additive terms.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON record of the edit.

        Returns
        -------
        dict
            kind, sae, steps, feature, mask shape, rows and the edit's own values.
        """
        out = {"kind": type(self).__name__.lower(), "sae": self.sae, "steps": self.steps}
        if self.feature is not None:
            out["feature"] = self.feature
        out["mask"] = None if self.mask is None else list(np.asarray(self.mask).shape)
        if self.rows is not None:
            out["rows"] = list(self.rows)
        return out


@dataclass(frozen=True)
class Steer(Edit):
    """Add ``strength * mean_act_f * W_dec[f]`` at the mask's positions (SDXL-Turbo study).

    Attributes
    ----------
    feature : int
        The latent.
    strength : float
        In units of the latent's mean activation when it fires.
    """

    feature: int = 0
    strength: float = 10.0
    needs_mean = True

    def apply(self, st: EditState) -> None:
        """Add the steering vector on the mask's positions of the edit's rows.

        Parameters
        ----------
        st : EditState
        """
        m_P = pool_mask(self.mask, st.grid)
        vec_D = self.strength * st.mean_N[self.feature] * st.dir_ND[self.feature]
        w_P = torch.ones(st.add_BPD.shape[1]) if m_P is None else m_P
        w_BP1 = (st.row_weights(self.rows)[:, None] * w_P[None, :])[..., None]
        st.add_BPD += w_BP1.to(st.add_BPD) * vec_D.to(st.add_BPD)

    def describe(self) -> dict:
        """JSON record, with the strength.

        Returns
        -------
        dict
        """
        return {**super().describe(), "strength": self.strength}


@dataclass(frozen=True)
class Clamp(Edit):
    """Set latent ``feature`` to ``value`` on the mask (``value=0``: ablate it).

    Attributes
    ----------
    feature : int
        The latent.
    value : float
        Its new code (in the SAE's code units).
    """

    feature: int = 0
    value: float = 0.0

    def apply(self, st: EditState) -> None:
        """Blend the latent's codes towards ``value`` by the mask's weights.

        Parameters
        ----------
        st : EditState
        """
        m_P = pool_mask(self.mask, st.grid)
        col_BP = st.codes_BPN[:, :, self.feature]
        w_P = torch.ones(col_BP.shape[1]) if m_P is None else m_P
        w_BP = (st.row_weights(self.rows)[:, None] * w_P[None, :]).to(col_BP)
        st.codes_BPN[:, :, self.feature] = col_BP * (1 - w_BP) + self.value * w_BP

    def describe(self) -> dict:
        """JSON record, with the value.

        Returns
        -------
        dict
        """
        return {**super().describe(), "value": self.value}


def Ablate(feature: int, **kw) -> Clamp:
    """A latent set to 0 (on a mask): ``Clamp(feature, value=0)``.

    Parameters
    ----------
    feature : int
        The latent.
    **kw
        ``sae``, ``steps``, ``mask``, ``rows`` as in :class:`Edit`.

    Returns
    -------
    Clamp
    """
    return Clamp(feature=feature, value=0.0, **kw)


@dataclass(frozen=True)
class Icon(Edit):
    """Feature icon: the block update replaced everywhere by ``strength * mean_f * W_dec[f]``.

    Used with the empty prompt (SDXL-Turbo study: output = input + mean_f * k * W_dec[f]).

    Attributes
    ----------
    feature : int
        The latent.
    strength : float
        In units of its mean activation.
    """

    feature: int = 0
    strength: float = 1.0
    needs_mean = True

    def apply(self, st: EditState) -> None:
        """Replace the update of the edit's rows by the feature's vector.

        Parameters
        ----------
        st : EditState
        """
        vec_D = self.strength * st.mean_N[self.feature] * st.dir_ND[self.feature]
        on_B = st.row_weights(self.rows) > 0
        st.replace_BPD[on_B] = vec_D.to(st.add_BPD)
        st.replace_B |= on_B

    def describe(self) -> dict:
        """JSON record, with the strength.

        Returns
        -------
        dict
        """
        return {**super().describe(), "strength": self.strength}


@dataclass(frozen=True)
class AblateBlock(Edit):
    """The whole block update removed: the block returns its input.

    Attributes
    ----------
    sae, steps, mask, rows
        As in :class:`Edit` (the mask is not used: the whole update goes).
    """

    def apply(self, st: EditState) -> None:
        """Mark the edit's rows as ablated.

        Parameters
        ----------
        st : EditState
        """
        st.ablate_B |= st.row_weights(self.rows) > 0


def check_edit(
    edit: Edit,
    n_saes: int,
    n_latents: list[int],
    image_hw: tuple[int, int] | None,
    num_steps: int | None,
    n_prompts: int | None = None,
) -> None:
    """Validate one edit against the attached SAEs, image size, schedule and batch.

    Parameters
    ----------
    edit : Edit
    n_saes : int
        SAEs attached.
    n_latents : list of int
        Latents of each.
    image_hw : (int, int) or None
        The image size masks must have.
    num_steps : int or None
        Denoising steps of the run.
    n_prompts : int or None
        Prompts of the run (the range of ``edit.rows``).

    Raises
    ------
    InterventionError
        SAE index or latent id out of range, a mask of another shape, steps outside the schedule.
    """
    if not 0 <= edit.sae < n_saes:
        raise InterventionError(
            f"{edit.describe()['kind']}: SAE index {edit.sae}; {n_saes} attached"
        )
    n = n_latents[edit.sae]
    if edit.feature is not None and not 0 <= int(edit.feature) < n:
        raise InterventionError(
            f"latent id {edit.feature} out of range: the SAE has latents 0..{n - 1}"
        )
    if edit.rows is not None and n_prompts is not None:
        bad = [r for r in edit.rows if not 0 <= r < n_prompts]
        if bad:
            raise InterventionError(
                f"{edit.describe()['kind']}: rows {bad} out of range for {n_prompts} prompts"
            )
    if edit.mask is not None:
        check_mask(edit.mask, image_hw, f"{edit.describe()['kind']} mask")
    fitted = int(getattr(edit, "num_steps", 0) or 0)  # an unlearning recipe's steps
    if fitted and num_steps is not None and fitted != num_steps:
        raise InterventionError(
            f"the recipe was fitted for {fitted} denoising steps; this run has {num_steps} "
            f"(use --num-steps {fitted} or refit)"
        )
    if edit.steps is not None and num_steps is not None:
        a, b = edit.steps
        if not 0 <= a < b <= num_steps:
            raise InterventionError(
                f"steps {a}:{b} outside the schedule: need 0 <= A < B <= {num_steps}"
            )
