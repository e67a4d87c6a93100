"""Plain dense reference losses, written the way the published implementations compute them.

Every code is materialised as a dense [B, N] matrix, every Matryoshka level and
prefix is decoded from scratch, and the archetypal dictionary is the full
product W C. Tests check that each SAE's fast ``loss`` matches these in value and
gradient; the speed benchmark measures how much faster the fast path is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vsae.sae.losses import nmse


def dense_topk(pre_BN: Tensor, k: int) -> Tensor:
    """ReLU of the k largest entries of every row, zeros elsewhere."""
    vals_BK, idx_BK = pre_BN.topk(k, dim=-1)
    return torch.zeros_like(pre_BN).scatter(-1, idx_BK, torch.relu(vals_BK))


def dense_batchtopk(pre_BN: Tensor, k: int) -> Tensor:
    """ReLU of the B*k largest entries of the batch, zeros elsewhere."""
    B, N = pre_BN.shape
    flat = pre_BN.reshape(-1)
    idx = flat.topk(min(B * k, B * N)).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[idx] = True
    return torch.where(mask, flat, torch.zeros_like(flat)).relu().view(B, N)


def dense_auxk(
    sae, x_BD: Tensor, recon_BD: Tensor, pre_BN: Tensor, dead_N: Tensor | None, atoms_ND: Tensor
):  # noqa: ANN001
    """AuxK term computed densely (None when it does not apply)."""
    k_aux = sae.cfg.num_aux_k
    if dead_N is None or k_aux == 0 or int(dead_N.sum()) == 0:
        return None
    masked = torch.where(dead_N, pre_BN, torch.full_like(pre_BN, float("-inf")))
    k = min(k_aux, int(dead_N.sum()))
    vals_BK, idx_BK = masked.topk(k, dim=-1)
    codes_BN = torch.zeros_like(pre_BN).scatter(-1, idx_BK, torch.relu(vals_BK))
    err_BD = (x_BD - recon_BD).detach()
    return nmse(err_BD, codes_BN @ atoms_ND)


def archetypal_dictionary(sae) -> Tensor:  # noqa: ANN001
    """Dense W C (+ Lambda): the mixing weights scattered into an [N, C] matrix first."""
    N = sae.n_latents
    C = sae.candidates_CD.shape[0]
    W_NC = torch.zeros(N, C, dtype=sae.mix_NM.dtype).scatter_add(1, sae.neighbors_NM, sae.mix_NM)
    atoms_ND = W_NC @ sae.candidates_CD
    return atoms_ND + sae.relax_ND if sae.cfg.delta > 0 else atoms_ND


def reference_loss(sae, x_BD: Tensor, dead_N: Tensor | None = None) -> Tensor:  # noqa: ANN001
    """The total training loss of ``sae`` on normalised ``x_BD``, computed densely.

    Parameters
    ----------
    sae : BaseSAE
        A TopK-family SAE (topk, batchtopk, matryoshka_k, matryoshka_prefix, archetypal).
    x_BD : Tensor
        Normalised inputs.
    dead_N : Tensor, optional
        Dead-latent mask enabling AuxK.

    Returns
    -------
    Tensor
        Scalar loss, differentiable w.r.t. every parameter.
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
