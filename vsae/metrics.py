"""Every evaluation metric of vsae, defined once (REFERENCE §4).

Reconstruction metrics accumulate over batches so they can run on any amount of
data; dictionary metrics (MMCS, stability, shared fraction) compare atoms.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

DENSE_THRESHOLD = 0.1


class ReconAccumulator:
    """Streams batches of (x, x_hat, codes) and reports fvu, cos, l0, sparsity, dead and dense."""

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
        """Add one batch (raw space)."""
        assert x_BD.shape == recon_BD.shape and codes_BN.shape == (x_BD.shape[0], self.n_latents)
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
        """The metrics of everything seen so far."""
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
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    x, r = x_BD.double(), recon_BD.double()
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-30))


def cosine(x_BD: Tensor, recon_BD: Tensor) -> float:
    """Mean over samples of cos(x, x_hat)."""
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


def _unit(x_ND: Tensor) -> Tensor:
    x_ND = x_ND.double()
    return x_ND / x_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def mmcs(true_FD: Tensor, atoms_ND: Tensor) -> float:
    """Mean over true features of the max cosine with any atom."""
    return float((_unit(true_FD) @ _unit(atoms_ND).T).max(-1).values.mean())


def _match(cos_NM: Tensor) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cos_NM.cpu().numpy(), maximize=True)


def stability(atoms_a_ND: Tensor, atoms_b_ND: Tensor) -> float:
    """Mean cosine of unit atoms of two runs after Hungarian matching (Fel et al.)."""
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
    (Paulo & Belrose 2025).
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
