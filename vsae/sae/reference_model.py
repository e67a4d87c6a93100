"""Dense reference SAEs as whole models, trained the way the published implementations train them.

These are the baselines of ``vsae bench speed`` and what tests compare vsae's fast paths with
(``tests/test_bench_speed.py``). Each one:

- materialises the codes as a dense [B, N] matrix and decodes it with a dense matmul;
- removes the decoder gradient parallel to each row and re-normalises the rows every step;
- recomputes every Matryoshka level from scratch (its own top-k, its own dense decode);
- builds the archetypal dictionary as the full dense product W[N, C] @ C[C, D], with W a dense,
  trainable [N, C] matrix (the published RA-SAE trains every entry of W).

They compute the same loss as vsae's fast paths (and as ``vsae.sae.reference.reference_loss``).
``from_sae`` copies a vsae SAE's parameters so the two can be compared in loss and gradients
(``compare_gradients``). For the archetypal SAE vsae trains only each atom's ``n_neighbors``
entries of W; the dense reference's gradient at those entries is what vsae's ``mix_NM``
gradient must equal, and the dense reference also trains the other entries, as the published
one does.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from vsae.sae.base import BaseSAE
from vsae.sae.losses import nmse
from vsae.sae.reference import dense_batchtopk, dense_topk

ARCHS = ("topk", "batchtopk", "matryoshka_k", "archetypal")


class DenseReferenceSAE(nn.Module):
    """A dense TopK, BatchTopK, nested-k Matryoshka or RA-SAE with vsae's loss.

    Build it with ``from_sae``; train it with ``loss``, ``before_step`` and ``after_step``
    around the optimiser step, like a vsae SAE.

    Parameters
    ----------
    sae : BaseSAE
        A vsae ``topk``, ``batchtopk``, ``matryoshka_k`` or ``archetypal`` SAE whose
        parameters are copied.

    Raises
    ------
    ValueError
        Another architecture.
    """

    def __init__(self, sae: BaseSAE) -> None:
        super().__init__()
        arch = sae.cfg.arch
        if arch not in ARCHS:
            raise ValueError(f"no dense reference for arch={arch!r}; expected one of {ARCHS}")
        self.arch = arch
        self.k = sae.cfg.k
        self.n_latents = sae.n_latents
        self.k_aux = sae.cfg.num_aux_k
        self.aux_coef = sae.cfg.aux_coef
        self.batch_select = arch == "batchtopk" or (
            arch == "archetypal" and sae.cfg.encoder_act == "batchtopk"
        )
        self.levels: tuple[int, ...] = tuple(getattr(sae, "levels", ()))
        self.delta = float(sae.cfg.delta)
        with torch.no_grad():
            self.W_enc_ND = nn.Parameter(sae.W_enc_ND.detach().clone())
            self.b_enc_N = nn.Parameter(sae.b_enc_N.detach().clone())
            self.b_dec_D = nn.Parameter(sae.b_dec_D.detach().clone())
            if arch == "archetypal":
                N, C = self.n_latents, sae.candidates_CD.shape[0]
                W_NC = torch.zeros(N, C, dtype=sae.mix_NM.dtype, device=sae.mix_NM.device)
                W_NC.scatter_add_(1, sae.neighbors_NM, sae.mix_NM.detach())
                self.W_NC = nn.Parameter(W_NC)
                self.register_buffer("candidates_CD", sae.candidates_CD.detach().clone())
                self.relax_ND = nn.Parameter(
                    sae.relax_ND.detach().clone(), requires_grad=self.delta > 0
                )
            else:
                self.W_dec_ND = nn.Parameter(sae.W_dec_ND.detach().clone())
            if arch == "matryoshka_k":
                self.register_buffer("level_weights", sae.level_weights.detach().clone())

    @classmethod
    def from_sae(cls, sae: BaseSAE) -> DenseReferenceSAE:
        """A dense reference holding a copy of ``sae``'s parameters.

        Parameters
        ----------
        sae : BaseSAE
            A vsae ``topk``, ``batchtopk``, ``matryoshka_k`` or ``archetypal`` SAE.

        Returns
        -------
        DenseReferenceSAE
            Same dtype and device as ``sae``.
        """
        return cls(sae)

    def dictionary(self) -> Tensor:
        """Decoder atoms; for the RA-SAE the dense W C (+ Lambda), rebuilt every call.

        Returns
        -------
        Tensor
            [N, D] in normalised space.
        """
        if self.arch != "archetypal":
            return self.W_dec_ND
        atoms_ND = self.W_NC @ self.candidates_CD
        return atoms_ND + self.relax_ND if self.delta > 0 else atoms_ND

    def codes(self, pre_BN: Tensor, k: int) -> Tensor:
        """Dense training codes at ``k`` (k = N is the dense ReLU level).

        Parameters
        ----------
        pre_BN : Tensor
            Pre-activations [B, N].
        k : int
            Codes kept per row (over the batch, B * k, for BatchTopK).

        Returns
        -------
        Tensor
            Codes [B, N].
        """
        if k == self.n_latents and self.arch == "matryoshka_k":
            return torch.relu(pre_BN)
        if self.batch_select:
            return dense_batchtopk(pre_BN, k)
        return dense_topk(pre_BN, k)

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> Tensor:
        """The training loss on normalised inputs, everything dense.

        Parameters
        ----------
        x_BD : Tensor
            Normalised inputs [B, D].
        dead_N : Tensor, optional
            Boolean [N] dead-latent mask; enables the AuxK term when any is dead.

        Returns
        -------
        Tensor
            Scalar loss equal to the vsae SAE's ``loss(x_BD, dead_N).loss``.

        Raises
        ------
        ValueError
            When ``x_BD`` is not [B, D].
        """
        if x_BD.ndim != 2 or x_BD.shape[1] != self.b_dec_D.shape[0]:
            raise ValueError(
                f"inputs have shape {tuple(x_BD.shape)}; expected [B, {self.b_dec_D.shape[0]}]"
            )
        atoms_ND = self.dictionary()
        pre_BN = torch.addmm(self.b_enc_N, x_BD - self.b_dec_D, self.W_enc_ND.t())
        if self.arch == "matryoshka_k":
            losses = []
            first_recon_BD = None
            for level in self.levels:  # every level from scratch: own selection, own decode
                recon_BD = self.codes(pre_BN, level) @ atoms_ND + self.b_dec_D
                losses.append(nmse(x_BD, recon_BD))
                first_recon_BD = recon_BD if first_recon_BD is None else first_recon_BD
            w_L = self.level_weights
            main = (w_L * torch.stack(losses)).sum() / w_L.sum()
            recon_BD = first_recon_BD
        else:
            recon_BD = self.codes(pre_BN, self.k) @ atoms_ND + self.b_dec_D
            main = nmse(x_BD, recon_BD)
        aux = self.auxk(x_BD, recon_BD, pre_BN, dead_N, atoms_ND)
        return main if aux is None else main + self.aux_coef * aux

    def auxk(
        self,
        x_BD: Tensor,
        recon_BD: Tensor,
        pre_BN: Tensor,
        dead_N: Tensor | None,
        atoms_ND: Tensor,
    ) -> Tensor | None:
        """AuxK (Gao et al. 2024): dense top-k_aux of the dead latents reconstructs the
        detached residual.

        Parameters
        ----------
        x_BD : Tensor
            Normalised inputs [B, D].
        recon_BD : Tensor
            The main reconstruction [B, D].
        pre_BN : Tensor
            Pre-activations [B, N].
        dead_N : Tensor or None
            Bool [N]; None turns the term off.
        atoms_ND : Tensor
            The dictionary [N, D].

        Returns
        -------
        Tensor or None
            The residual's NMSE, or None without dead latents.
        """
        if dead_N is None or self.k_aux == 0:
            return None
        n_dead = int(dead_N.sum())
        if n_dead == 0:
            return None
        masked_BN = torch.where(dead_N, pre_BN, torch.full_like(pre_BN, float("-inf")))
        codes_BN = dense_topk(masked_BN, min(self.k_aux, n_dead))
        return nmse((x_BD - recon_BD).detach(), codes_BN @ atoms_ND)

    @torch.no_grad()
    def before_step(self) -> None:
        """Remove the decoder gradient parallel to each row (not for the RA-SAE)."""
        if self.arch == "archetypal" or self.W_dec_ND.grad is None:
            return
        W_ND, g_ND = self.W_dec_ND, self.W_dec_ND.grad
        g_ND -= (g_ND * W_ND).sum(-1, keepdim=True) * W_ND

    @torch.no_grad()
    def after_step(self) -> None:
        """Unit-norm decoder rows; for the RA-SAE, row-stochastic W and ||Lambda_i|| <= delta."""
        if self.arch != "archetypal":
            self.W_dec_ND /= self.W_dec_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return
        W_NC = self.W_NC.clamp_min_(0)
        W_NC /= W_NC.sum(-1, keepdim=True).clamp_min(1e-12)
        if self.delta > 0:
            norms_N1 = self.relax_ND.norm(dim=-1, keepdim=True)
            self.relax_ND.mul_((self.delta / norms_N1.clamp_min(1e-12)).clamp(max=1.0))


def fast_loss(sae: BaseSAE, x_BD: Tensor, dead_N: Tensor | None = None) -> Tensor:
    """vsae's training loss (the fast path) as a scalar.

    Parameters
    ----------
    sae : BaseSAE
        Any vsae SAE.
    x_BD : Tensor
        Normalised inputs [B, D].
    dead_N : Tensor, optional
        Boolean dead-latent mask [N] (AuxK).

    Returns
    -------
    Tensor
        ``sae.loss(x_BD, dead_N).loss``.
    """
    return sae.loss(x_BD, dead_N).loss


def reference_gradients(ref: DenseReferenceSAE, sae: BaseSAE) -> dict[str, Tensor | None]:
    """The reference's gradients, renamed and restricted to the vsae SAE's parameters.

    For the RA-SAE, vsae's ``mix_NM`` corresponds to the entries of the dense ``W_NC`` at
    ``neighbors_NM``.

    Parameters
    ----------
    ref : DenseReferenceSAE
        The reference, after ``backward``.
    sae : BaseSAE
        The vsae SAE it was built from.

    Returns
    -------
    dict
        Parameter name of ``sae`` -> the reference's gradient of the same shape (None when the
        reference has none).
    """
    out: dict[str, Tensor | None] = {}
    for name, p in sae.named_parameters():
        if not p.requires_grad:
            continue
        if name == "mix_NM":
            g = ref.W_NC.grad
            out[name] = None if g is None else g.gather(1, sae.neighbors_NM)
        else:
            out[name] = getattr(ref, name).grad
    return out


def compare_gradients(
    sae: BaseSAE, ref: DenseReferenceSAE, x_BD: Tensor, dead_N: Tensor | None = None
) -> dict[str, float]:
    """Relative differences of loss and gradients between the fast path and the reference.

    Both models must hold the same parameters (``DenseReferenceSAE.from_sae``). Their
    gradients are overwritten.

    Parameters
    ----------
    sae : BaseSAE
        The vsae SAE.
    ref : DenseReferenceSAE
        Its dense reference.
    x_BD : Tensor
        Normalised inputs.
    dead_N : Tensor, optional
        Dead-latent mask (AuxK).

    Returns
    -------
    dict
        ``loss``: |fast - ref| / |ref|; ``grad/NAME``: ||g_fast - g_ref|| / ||g_ref|| for
        every trainable vsae parameter (0 when both are zero); ``max``: the largest of these.
    """
    sae.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    fast = fast_loss(sae, x_BD, dead_N)
    fast.backward()
    slow = ref.loss(x_BD, dead_N)
    slow.backward()
    diffs = {"loss": _rel(fast.detach(), slow.detach())}
    ref_grads = reference_gradients(ref, sae)
    for name, p in sae.named_parameters():
        if not p.requires_grad:
            continue
        g_fast = p.grad if p.grad is not None else torch.zeros_like(p)
        g_ref = ref_grads[name]
        g_ref = g_ref if g_ref is not None else torch.zeros_like(p)
        diffs[f"grad/{name}"] = _rel(g_fast, g_ref)
    diffs["max"] = max(diffs.values())
    return diffs


def boundary_ties(sae: BaseSAE, x_BD: Tensor) -> int:
    """Rows of ``x_BD`` with two equal pre-activations straddling a top-k boundary.

    At such a boundary the fast path and the reference may keep different ones of the two
    (both are correct top-k sets), so their gradients can differ although the math is the
    same. Boundaries: ``k`` (TopK, RA-SAE) or every sparse level (nested-k MSAE); BatchTopK
    ranks the whole batch, so it has one boundary, at ``B * k``.

    Parameters
    ----------
    sae : BaseSAE
        A TopK-family SAE.
    x_BD : Tensor
        Normalised inputs [B, D].

    Returns
    -------
    int
        Tied rows (BatchTopK: 1 when the batch boundary is tied, else 0).
    """
    k = sae.cfg.k
    levels = [lv for lv in getattr(sae, "levels", (k,)) if lv < sae.n_latents]
    with torch.no_grad():
        pre_BN = sae.pre_acts(x_BD)
        if sae.cfg.arch == "batchtopk" or getattr(sae.cfg, "encoder_act", "") == "batchtopk":
            m = min(x_BD.shape[0] * k, pre_BN.numel() - 1)
            top = pre_BN.reshape(-1).topk(m + 1).values
            return int(top[m - 1] == top[m])
        if not levels:
            return 0
        top_BK = pre_BN.topk(max(levels) + 1, dim=1).values
        tied_B = torch.zeros(x_BD.shape[0], dtype=torch.bool, device=x_BD.device)
        for lv in levels:
            tied_B |= top_BK[:, lv - 1] == top_BK[:, lv]
    return int(tied_B.sum())


def float64_recheck(sae: BaseSAE, x_BD: Tensor, dead_N: Tensor | None = None) -> dict:
    """``compare_gradients`` on float64 copies of ``sae`` and ``x_BD``, plus the float32 ties.

    Run when the float32 check fails: ``ties_float32 > 0`` with a float64 ``max`` at rounding
    level says the float32 difference came from a tie at a top-k boundary, not from the math.

    Parameters
    ----------
    sae : BaseSAE
        The float32 vsae SAE (not modified).
    x_BD : Tensor
        Normalised float32 inputs [B, D].
    dead_N : Tensor, optional
        Boolean dead-latent mask [N] (AuxK).

    Returns
    -------
    dict
        ``ties_float32``, ``ties_float64`` (``boundary_ties`` at each precision) and
        ``float64`` (``compare_gradients`` of the float64 copies).
    """
    sae64 = copy.deepcopy(sae).double()
    x64_BD = x_BD.double()
    diffs = compare_gradients(sae64, DenseReferenceSAE.from_sae(sae64), x64_BD, dead_N)
    return {
        "ties_float32": boundary_ties(sae, x_BD),
        "ties_float64": boundary_ties(sae64, x64_BD),
        "float64": diffs,
    }


def _rel(a: Tensor, b: Tensor) -> float:
    num = (a.double() - b.double()).norm().item()
    den = b.double().norm().item()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den
