"""Dense reference losses, written the way the published implementations compute them.

vsae's fast paths (``vsae/sae/sparse.py``, the TopK family, the nested-k Matryoshka and the
RA-SAE) never materialise a dense [B, N] code matrix. ``reference_loss(sae, x_BD, dead_N)``
does: it computes a vsae SAE's training loss from that SAE's own parameters with every code
dense, every Matryoshka level and prefix decoded from scratch, and the archetypal dictionary
the full product W C. Tests check each SAE's fast ``loss`` against it in value and gradient.
The whole trainable dense models that ``vsae bench speed`` times as its baseline are next door,
in ``vsae/sae/reference_model.py``.

Methods: TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), BatchTopK
(Bussmann et al. 2024), Matryoshka SAEs (Bussmann et al. 2025; Nabeshima 2024), RA-SAE
(Fel et al. 2025, "Archetypal SAE").
"""

from __future__ import annotations

import torch
from torch import Tensor

from vsae.sae.base import BaseSAE
from vsae.sae.losses import nmse


def dense_topk(pre_BN: Tensor, k: int) -> Tensor:
    """TopK codes as a dense matrix: ReLU of the k largest entries of every row, zeros elsewhere.

    Parameters
    ----------
    pre_BN : Tensor
        Pre-activations [B, N].
    k : int
        Entries kept per row, 1 <= k <= N.

    Returns
    -------
    Tensor
        Dense codes [B, N] (Gao et al. 2024).
    """
    vals_BK, idx_BK = pre_BN.topk(k, dim=-1)
    return torch.zeros_like(pre_BN).scatter(-1, idx_BK, torch.relu(vals_BK))


def dense_batchtopk(pre_BN: Tensor, k: int) -> Tensor:
    """BatchTopK codes as a dense matrix: ReLU of the B*k largest entries of the batch.

    Parameters
    ----------
    pre_BN : Tensor
        Pre-activations [B, N].
    k : int
        Mean entries kept per row; the batch keeps min(B k, B N) in all.

    Returns
    -------
    Tensor
        Dense codes [B, N], zeros outside the batch's top set (Bussmann et al. 2024).
    """
    B, N = pre_BN.shape
    flat = pre_BN.reshape(-1)
    idx = flat.topk(min(B * k, B * N)).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[idx] = True
    return torch.where(mask, flat, torch.zeros_like(flat)).relu().view(B, N)


def dense_auxk(
    sae: BaseSAE,
    x_BD: Tensor,
    recon_BD: Tensor,
    pre_BN: Tensor,
    dead_N: Tensor | None,
    atoms_ND: Tensor,
) -> Tensor | None:
    """The AuxK term computed densely (Gao et al. 2024, appendix A.2).

    The top ``min(num_aux_k, dead)`` dead latents of every row reconstruct the detached
    residual ``x_BD - recon_BD``.

    Parameters
    ----------
    sae : BaseSAE
        The SAE whose ``cfg.num_aux_k`` sets the number of auxiliary latents.
    x_BD, recon_BD : Tensor
        Inputs and their reconstruction [B, D].
    pre_BN : Tensor
        Pre-activations [B, N].
    dead_N : Tensor or None
        Boolean dead-latent mask [N].
    atoms_ND : Tensor
        Decoder atoms [N, D].

    Returns
    -------
    Tensor or None
        The scalar normalised MSE of the residual's reconstruction; None when no latent is
        dead or AuxK is off.
    """
    k_aux = sae.cfg.num_aux_k
    if dead_N is None or k_aux == 0 or int(dead_N.sum()) == 0:
        return None
    masked = torch.where(dead_N, pre_BN, torch.full_like(pre_BN, float("-inf")))
    k = min(k_aux, int(dead_N.sum()))
    vals_BK, idx_BK = masked.topk(k, dim=-1)
    codes_BN = torch.zeros_like(pre_BN).scatter(-1, idx_BK, torch.relu(vals_BK))
    err_BD = (x_BD - recon_BD).detach()
    return nmse(err_BD, codes_BN @ atoms_ND)


def archetypal_dictionary(sae: BaseSAE) -> Tensor:
    """The RA-SAE dictionary W C (+ Lambda) built densely (Fel et al. 2025).

    Parameters
    ----------
    sae : BaseSAE
        An ``archetypal`` SAE (``mix_NM``, ``neighbors_NM``, ``candidates_CD``, ``relax_ND``).

    Returns
    -------
    Tensor
        Atoms [N, D]: the mixing weights scattered into a dense [N, C] matrix, times the
        candidate points [C, D], plus the relaxation when ``cfg.delta > 0``.
    """
    N = sae.n_latents
    C = sae.candidates_CD.shape[0]
    W_NC = torch.zeros(N, C, dtype=sae.mix_NM.dtype).scatter_add(1, sae.neighbors_NM, sae.mix_NM)
    atoms_ND = W_NC @ sae.candidates_CD
    return atoms_ND + sae.relax_ND if sae.cfg.delta > 0 else atoms_ND


def reference_loss(sae: BaseSAE, x_BD: Tensor, dead_N: Tensor | None = None) -> Tensor:
    """The total training loss of ``sae`` on normalised ``x_BD``, computed densely.

    Parameters
    ----------
    sae : BaseSAE
        A TopK-family SAE (topk, batchtopk, matryoshka_k, matryoshka_prefix, archetypal).
    x_BD : Tensor
        Normalised inputs [B, D].
    dead_N : Tensor, optional
        Boolean dead-latent mask [N] enabling AuxK.

    Returns
    -------
    Tensor
        Scalar loss, differentiable w.r.t. every parameter; equal to ``sae.loss(x_BD,
        dead_N).loss``.
    """
    arch = sae.cfg.arch
    atoms_ND = archetypal_dictionary(sae) if arch == "archetypal" else sae.W_dec_ND
    pre_BN = (x_BD - sae.b_dec_D) @ sae.W_enc_ND.T + sae.b_enc_N
    k = sae.cfg.k
    if arch == "matryoshka_k":
        losses = []
        for level in sae.levels:
            codes = torch.relu(pre_BN) if level == sae.n_latents else dense_topk(pre_BN, level)
            losses.append(nmse(x_BD, codes @ atoms_ND + sae.b_dec_D))
        w = sae.level_weights
        main = (w * torch.stack(losses)).sum() / w.sum()
        first = sae.levels[0]
        codes0 = torch.relu(pre_BN) if first == sae.n_latents else dense_topk(pre_BN, first)
        recon_BD = codes0 @ atoms_ND + sae.b_dec_D
    else:
        use_batch = arch in ("batchtopk", "matryoshka_prefix") or (
            arch == "archetypal" and sae.cfg.encoder_act == "batchtopk"
        )
        codes_BN = dense_batchtopk(pre_BN, k) if use_batch else dense_topk(pre_BN, k)
        if arch == "matryoshka_prefix":
            losses = [
                nmse(x_BD, codes_BN[:, :m] @ atoms_ND[:m] + sae.b_dec_D) for m in sae.prefixes
            ]
            main = torch.stack(losses).mean()
        else:
            main = nmse(x_BD, codes_BN @ atoms_ND + sae.b_dec_D)
        recon_BD = codes_BN @ atoms_ND + sae.b_dec_D
    aux = dense_auxk(sae, x_BD, recon_BD, pre_BN, dead_N, atoms_ND)
    return main if aux is None else main + sae.cfg.aux_coef * aux
