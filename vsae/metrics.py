"""Every evaluation metric of vsae, defined once (REFERENCE §4).

Reconstruction metrics accumulate over batches so they can run on any amount of
data; dictionary metrics (MMCS, stability, shared fraction) compare atoms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

DENSE_THRESHOLD = 0.1


class ReconAccumulator:
    """Streams batches of (x, x_hat, codes) and reports fvu, cos, l0, sparsity, dead and dense.

    Sums are kept in float64, so the result does not depend on how the evaluation set is cut
    into batches (up to rounding). Definitions as in REFERENCE §4: FVU over the whole set,
    cosine averaged over samples, L0 = mean non-zero codes, sparsity = 1 - L0 / n_latents,
    dead = never fires, dense = fires on more than 10% of samples.

    Parameters
    ----------
    n_latents : int
        Width N of the codes.
    """

    def __init__(self, n_latents: int) -> None:
        self.n_latents = n_latents
        self.count = 0
        self.sq_err = 0.0
        self.sum_x: Tensor | None = None
        self.sum_sq_x = 0.0
        self.cos_sum = 0.0
        self.nonzero = 0
        self.fire_counts_N = torch.zeros(n_latents, dtype=torch.long)

    @torch.no_grad()
    def update(self, x_BD: Tensor, recon_BD: Tensor, codes_BN: Tensor) -> None:
        """Add one batch (raw space).

        Parameters
        ----------
        x_BD : Tensor
            Activations [B, D].
        recon_BD : Tensor
            Their reconstructions [B, D].
        codes_BN : Tensor
            Their codes [B, n_latents].

        Raises
        ------
        ValueError
            When the shapes do not match.
        """
        if x_BD.shape != recon_BD.shape or codes_BN.shape != (x_BD.shape[0], self.n_latents):
            raise ValueError(
                f"x {tuple(x_BD.shape)}, recon {tuple(recon_BD.shape)}, codes "
                f"{tuple(codes_BN.shape)}: expected x and recon [B, D], codes "
                f"[B, {self.n_latents}]"
            )
        x, r = x_BD.double(), recon_BD.double()
        self.count += x.shape[0]
        self.sq_err += (x - r).pow(2).sum().item()
        self.sum_x = x.sum(0) if self.sum_x is None else self.sum_x + x.sum(0)
        self.sum_sq_x += x.pow(2).sum().item()
        self.cos_sum += torch.nn.functional.cosine_similarity(x, r, dim=-1, eps=1e-12).sum().item()
        active_BN = codes_BN != 0
        self.nonzero += int(active_BN.sum())
        self.fire_counts_N += active_BN.sum(0).cpu()

    def compute(self) -> dict[str, float]:
        """The metrics of everything seen so far.

        Returns
        -------
        dict of str to float
            ``fvu``, ``cos``, ``l0``, ``sparsity``, ``dead_frac``, ``dense_frac`` and
            ``n_samples``.

        Raises
        ------
        ValueError
            When no sample was added.
        """
        if self.count == 0:
            raise ValueError("no samples were evaluated")
        total_var = self.sum_sq_x - self.sum_x.pow(2).sum().item() / self.count
        l0 = self.nonzero / self.count
        freq_N = self.fire_counts_N.double() / self.count
        return {
            "fvu": self.sq_err / max(total_var, 1e-30),
            "cos": self.cos_sum / self.count,
            "l0": l0,
            "sparsity": 1.0 - l0 / self.n_latents,
            "dead_frac": float((self.fire_counts_N == 0).double().mean()),
            "dense_frac": float((freq_N > DENSE_THRESHOLD).double().mean()),
            "n_samples": float(self.count),
        }


def fvu(x_BD: Tensor, recon_BD: Tensor) -> float:
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2.

    The dataset-level FVU of REFERENCE §4 (not the per-sample variance ratio of the
    Matryoshka-CLIP code), computed in float64.

    Parameters
    ----------
    x_BD : Tensor
        Activations [B, D].
    recon_BD : Tensor
        Reconstructions [B, D].

    Returns
    -------
    float
        0 for a perfect reconstruction, 1 for predicting the mean.

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    _same_shape(x_BD, recon_BD)
    x, r = x_BD.double(), recon_BD.double()
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-30))


def cosine(x_BD: Tensor, recon_BD: Tensor) -> float:
    """Mean over samples of cos(x, x_hat), in float64.

    Parameters
    ----------
    x_BD : Tensor
        Activations [B, D].
    recon_BD : Tensor
        Reconstructions [B, D].

    Returns
    -------
    float
        In [-1, 1].

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    _same_shape(x_BD, recon_BD)
    return float(torch.nn.functional.cosine_similarity(x_BD.double(), recon_BD.double(), -1).mean())


@torch.no_grad()
def evaluate(sae: torch.nn.Module, batches: Iterable[Tensor]) -> dict[str, float]:
    """Reconstruction metrics of an SAE over raw-space batches.

    Parameters
    ----------
    sae : BaseSAE
        The model; it is evaluated with its inference path (``encode``/``decode``).
    batches : iterable of Tensor
        Raw activations [B, d_in].

    Returns
    -------
    dict
        fvu, cos, l0, sparsity, dead_frac, dense_frac, n_samples.
    """
    was_training = sae.training
    sae.eval()
    acc = ReconAccumulator(sae.n_latents)
    device = next(sae.parameters()).device
    for x_BD in batches:
        x_BD = torch.as_tensor(x_BD, dtype=torch.float32).to(device)
        recon_BD, codes_BN = sae(x_BD)
        acc.update(x_BD, recon_BD, codes_BN)
    sae.train(was_training)
    return acc.compute()


def _same_shape(x_BD: Tensor, recon_BD: Tensor) -> None:
    if x_BD.shape != recon_BD.shape:
        raise ValueError(
            f"reconstruction has shape {tuple(recon_BD.shape)}; expected the activations' "
            f"{tuple(x_BD.shape)}"
        )


def _unit(x_ND: Tensor) -> Tensor:
    x_ND = x_ND.double()
    return x_ND / x_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def mmcs(true_FD: Tensor, atoms_ND: Tensor) -> float:
    """Mean over true features of the max cosine with any atom (ground-truth recovery).

    Parameters
    ----------
    true_FD : Tensor
        True feature directions [F, D] (any norm).
    atoms_ND : Tensor
        Dictionary atoms [N, D] (any norm).

    Returns
    -------
    float
        In [-1, 1]; 1 when every true feature has an atom along it.
    """
    return float((_unit(true_FD) @ _unit(atoms_ND).T).max(-1).values.mean())


def _match(cos_NM: Tensor) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cos_NM.cpu().numpy(), maximize=True)


def stability(atoms_a_ND: Tensor, atoms_b_ND: Tensor) -> float:
    """Mean cosine of unit atoms of two runs after Hungarian matching (Fel et al. 2025).

    Parameters
    ----------
    atoms_a_ND, atoms_b_ND : Tensor
        Decoder atoms [N, D] of two runs that differ only in seed.

    Returns
    -------
    float
        In [-1, 1]; the paper reports 0.54 for TopK and 0.93 for RA-SAE on DINOv2.
    """
    cos_NM = _unit(atoms_a_ND) @ _unit(atoms_b_ND).T
    rows, cols = _match(cos_NM)
    return float(cos_NM[rows, cols].mean())


def shared_fraction(
    enc_a_ND: Tensor,
    dec_a_ND: Tensor,
    enc_b_ND: Tensor,
    dec_b_ND: Tensor,
    threshold: float = 0.7,
) -> float:
    """Fraction of latents whose encoder and decoder matches agree, both cosines >= threshold.

    Matches are Hungarian assignments on encoder rows and decoder rows separately
    (Paulo & Belrose 2025, "Sparse Autoencoders Trained on the Same Data Learn Different
    Features").

    Parameters
    ----------
    enc_a_ND, dec_a_ND : Tensor
        Encoder rows and decoder atoms [N, D] of run a.
    enc_b_ND, dec_b_ND : Tensor
        The same of run b.
    threshold : float
        Both cosines must reach it.

    Returns
    -------
    float
        In [0, 1].
    """
    dec_cos = _unit(dec_a_ND) @ _unit(dec_b_ND).T
    enc_cos = _unit(enc_a_ND) @ _unit(enc_b_ND).T
    dr, dc = _match(dec_cos)
    er, ec = _match(enc_cos)
    dec_match = dict(zip(dr.tolist(), dc.tolist(), strict=True))
    enc_match = dict(zip(er.tolist(), ec.tolist(), strict=True))
    shared = 0
    for i, j in dec_match.items():
        if enc_match.get(i) == j and dec_cos[i, j] >= threshold and enc_cos[i, j] >= threshold:
            shared += 1
    return shared / dec_cos.shape[0]


def best_latents(features_FD: Tensor, atoms_ND: Tensor) -> Tensor:
    """The atom with the highest cosine to each true feature.

    Parameters
    ----------
    features_FD : Tensor
        True feature directions [F, D].
    atoms_ND : Tensor
        Dictionary atoms [N, D].

    Returns
    -------
    Tensor
        Long [F]: an atom index per feature.
    """
    return (_unit(features_FD) @ _unit(atoms_ND).T).argmax(-1)


@torch.no_grad()
def absorption_rate(
    codes_BN: Tensor, true_codes_BF: Tensor, parent_of_F: Tensor, latent_of_F: Tensor
) -> float:
    """How often a parent's latent fails to fire when one of its children fires.

    For every parent p, its latent is ``latent_of_F[p]`` (e.g. the atom closest to
    the parent's true direction, see ``best_latents``). Over all (sample, parent)
    pairs in which at least one child of p is active, the rate is the fraction in
    which that latent's code is zero. Pairs are pooled over parents, so frequent
    parents weigh more.

    Parameters
    ----------
    codes_BN : Tensor
        SAE codes [B, N] of the samples.
    true_codes_BF : Tensor
        True coefficients [B, F]; a feature is active where its coefficient is non-zero.
    parent_of_F : Tensor
        Long [F]: parent index of every feature, -1 for features without a parent.
    latent_of_F : Tensor
        Long [F]: the latent standing for each feature (only parents' entries are read).

    Returns
    -------
    float
        The absorption rate in [0, 1]; NaN when no child is ever active.

    Raises
    ------
    ValueError
        When the shapes do not agree.
    """
    B, F = true_codes_BF.shape
    if codes_BN.shape[0] != B or parent_of_F.shape != (F,) or latent_of_F.shape != (F,):
        raise ValueError(
            f"codes {tuple(codes_BN.shape)}, true codes {tuple(true_codes_BF.shape)}, "
            f"parent_of_F {tuple(parent_of_F.shape)}, latent_of_F {tuple(latent_of_F.shape)}: "
            f"expected codes [{B}, N] and both maps [{F}]"
        )
    children_F = parent_of_F >= 0
    if not children_F.any():
        return float("nan")
    parents_P = parent_of_F[children_F].unique()
    child_on_BF = (true_codes_BF != 0) & children_F
    # child_on_BP[b, p]: some child of parent p is active in sample b
    onehot_FP = (parent_of_F[:, None] == parents_P[None, :]).to(torch.float32)
    child_on_BP = (child_on_BF.to(torch.float32) @ onehot_FP) > 0
    latent_off_BP = codes_BN[:, latent_of_F[parents_P]] == 0
    n_pairs = int(child_on_BP.sum())
    if n_pairs == 0:
        return float("nan")
    return float((child_on_BP & latent_off_BP).sum()) / n_pairs


class _SortedCodes(NamedTuple):
    vals_BN: Tensor
    order_BN: Tensor
    valid_CN: Tensor


def _sort_codes(codes_BN: Tensor) -> _SortedCodes:
    B, N = codes_BN.shape
    vals_BN, order_BN = codes_BN.double().sort(dim=0)
    # A cut between two equal codes is no threshold: only cuts at value changes count.
    valid_CN = torch.ones(B + 1, N, dtype=torch.bool, device=codes_BN.device)
    valid_CN[1:B] = vals_BN[1:] > vals_BN[:-1]
    return _SortedCodes(vals_BN, order_BN, valid_CN)


def _best_cut(s: _SortedCodes, labels_B: Tensor) -> tuple[float, int, float]:
    vals_BN = s.vals_BN
    B, N = vals_BN.shape
    pos_BN = labels_B.bool()[s.order_BN].double()
    n_pos = float(labels_B.bool().sum())
    # Cut c (0..B) predicts the c smallest codes absent and the rest present.
    zero_1N = torch.zeros(1, N, dtype=torch.float64, device=vals_BN.device)
    pos_below_CN = torch.cat([zero_1N, pos_BN.cumsum(0)])
    neg_below_CN = torch.arange(B + 1, dtype=torch.float64)[:, None] - pos_below_CN
    correct_CN = (neg_below_CN + (n_pos - pos_below_CN)).masked_fill_(~s.valid_CN, -1.0)
    cut, j = divmod(int(correct_CN.argmax()), N)
    if cut == 0:
        thr = float(vals_BN[0, j]) - 1.0
    elif cut == B:
        thr = float(vals_BN[B - 1, j])
    else:
        thr = float(vals_BN[cut - 1, j] + vals_BN[cut, j]) / 2
    return float(correct_CN[cut, j]) / B, j, thr


@torch.no_grad()
def best_threshold_accuracy(codes_BN: Tensor, labels_B: Tensor) -> tuple[float, int, float]:
    """Accuracy of the best single-latent detector ``code_j > t`` of a binary label.

    Every latent j and every threshold t between two distinct code values (or
    below/above all of them) is tried; the prediction is "present" where
    ``codes_BN[:, j] > t``.

    Parameters
    ----------
    codes_BN : Tensor
        Codes [B, N] of B samples.
    labels_B : Tensor
        Whether the concept is present (bool or 0/1), [B].

    Returns
    -------
    (float, int, float)
        Best accuracy, the latent that reaches it, and its threshold.

    Raises
    ------
    ValueError
        When ``codes_BN`` is not 2-D or ``labels_B`` not [B].
    """
    if codes_BN.ndim != 2 or labels_B.shape != (codes_BN.shape[0],):
        raise ValueError(
            f"codes {tuple(codes_BN.shape)}, labels {tuple(labels_B.shape)}: expected "
            "codes [B, N] and labels [B]"
        )
    return _best_cut(_sort_codes(codes_BN), labels_B)


@torch.no_grad()
def identifiability(codes_BN: Tensor, labels_BF: Tensor) -> list[float]:
    """Per concept, the accuracy of the best latent and threshold (Fel et al. 2025).

    Parameters
    ----------
    codes_BN : Tensor
        SAE codes [B, N] of B samples.
    labels_BF : Tensor
        Presence [B, F] of each of F known concepts in each sample.

    Returns
    -------
    list of float
        ``best_threshold_accuracy`` of every concept; their mean is the score (the paper:
        TopK 0.81-0.83, RA-SAE 0.95-0.96 on synthetic mixtures).

    Raises
    ------
    ValueError
        When ``codes_BN`` is not 2-D or ``labels_BF`` has another number of rows.
    """
    if codes_BN.ndim != 2 or labels_BF.ndim != 2 or labels_BF.shape[0] != codes_BN.shape[0]:
        raise ValueError(
            f"codes {tuple(codes_BN.shape)}, labels {tuple(labels_BF.shape)}: expected "
            "codes [B, N] and labels [B, F]"
        )
    s = _sort_codes(codes_BN)
    return [_best_cut(s, labels_BF[:, f])[0] for f in range(labels_BF.shape[1])]
