"""The interface every SAE shares: normalisation, encode/decode, constraints, save."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from vsae.config import SAEConfig
from vsae.sae import sparse
from vsae.sae.io import save_sae
from vsae.sae.losses import nmse


class SAEOutput(NamedTuple):
    """What ``sae(x)`` returns: the raw-space reconstruction and the dense codes."""

    recon: Tensor
    codes: Tensor


class LossOutput(NamedTuple):
    """One training forward pass, in normalised space.

    ``terms`` holds detached scalars for logging; ``fired_N`` marks latents with a
    positive code in this batch (dead-latent tracking).
    """

    loss: Tensor
    terms: dict[str, Tensor]
    recon_BD: Tensor
    fired_N: Tensor
    l0: Tensor


class BaseSAE(nn.Module):
    """Sparse autoencoder with a learned encoder and a unit-norm-row decoder.

    Subclasses implement ``codes_normalized`` (inference) and ``loss`` (training).
    Public ``encode``/``decode``/``forward`` work in the raw activation space; the
    normalisation statistics live in the buffers ``norm_mean_D`` and ``norm_scale``.
    """

    arch: ClassVar[str] = ""
    # Scale of W_enc = scale * W_dec^T at init; dense-code SAEs shrink it (see ReLUSAE).
    dense_codes: ClassVar[bool] = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        assert cfg.arch == self.arch, f"config arch {cfg.arch!r} != {self.arch!r}"
        self.cfg = cfg
        self.d_in = cfg.d_in
        self.n_latents = cfg.num_latents
        D, N = self.d_in, self.n_latents
        gen = torch.Generator().manual_seed(cfg.seed)
        W_dec_ND = torch.randn(N, D, generator=gen)
        W_dec_ND /= W_dec_ND.norm(dim=-1, keepdim=True)
        # With dense codes about half of N random atoms fire, summing to ~ N / (2 D) x:
        # shrink the encoder so the first reconstructions have the data's scale.
        enc_scale = min(1.0, 2.0 * D / N) if self.dense_codes else 1.0
        self.W_enc_ND = nn.Parameter(W_dec_ND * enc_scale)
        self.b_enc_N = nn.Parameter(torch.zeros(N))
        self.W_dec_ND = nn.Parameter(W_dec_ND)
        self.b_dec_D = nn.Parameter(torch.zeros(D))
        self.register_buffer("norm_mean_D", torch.zeros(D))
        self.register_buffer("norm_scale", torch.ones(()))

    # ----- normalisation ------------------------------------------------------------
    def normalize(self, x_BD: Tensor) -> Tensor:
        """Raw activations to the normalised space the SAE trains in."""
        return (x_BD - self.norm_mean_D) * self.norm_scale

    def denormalize(self, x_BD: Tensor) -> Tensor:
        """Normalised space back to raw activations."""
        return x_BD / self.norm_scale + self.norm_mean_D

    @torch.no_grad()
    def init_from_data(self, sample_BD: Tensor) -> None:
        """Data-dependent init from a raw sample: normalisation stats and ``b_dec``."""
        assert sample_BD.ndim == 2 and sample_BD.shape[1] == self.d_in, (
            f"sample shape {tuple(sample_BD.shape)}; expected [S, {self.d_in}]"
        )
        sample_BD = sample_BD.to(self.b_dec_D.device, torch.float32)
        if self.cfg.normalize:
            mean_D = sample_BD.mean(0)
            dist = (sample_BD - mean_D).norm(dim=-1).mean().clamp_min(1e-12)
            self.norm_mean_D.copy_(mean_D)
            self.norm_scale.fill_(math.sqrt(self.d_in) / dist.item())
        x_BD = self.normalize(sample_BD)
        if self.cfg.b_dec_init == "mean":
            self.b_dec_D.copy_(x_BD.mean(0))
        elif self.cfg.b_dec_init == "median":
            self.b_dec_D.copy_(geometric_median(x_BD))
        else:
            self.b_dec_D.zero_()

    # ----- the model in normalised space ---------------------------------------------
    def dictionary(self) -> Tensor:
        """Decoder atoms [N, D] in normalised space."""
        return self.W_dec_ND

    def pre_acts(self, x_BD: Tensor) -> Tensor:
        """Encoder pre-activations of normalised inputs, ``(x - b_dec) W_enc^T + b_enc``.

        Computed as ``x W_enc^T + (b_enc - W_enc b_dec)``: the same value, but the backward
        of a dense encoder then needs no [B, N] x [N, D] product for the gradient of
        ``b_dec`` (only a matrix-vector product), one GEMM fewer per step. Inputs are
        centred by the normalisation, so folding ``b_dec`` into the bias loses no precision.
        """
        bias_N = torch.addmv(self.b_enc_N, self.W_enc_ND, self.b_dec_D, alpha=-1.0)
        return torch.addmm(bias_N, x_BD, self.W_enc_ND.t())

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Dense inference codes [B, N] of normalised inputs."""
        raise NotImplementedError

    def decode_normalized(self, codes_BN: Tensor) -> Tensor:
        """Normalised reconstruction of dense codes."""
        return codes_BN @ self.dictionary() + self.b_dec_D

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Training loss of a normalised batch; ``dead_N`` enables the AuxK term."""
        raise NotImplementedError

    # ----- public raw-space API ---------------------------------------------------
    def encode(self, x_BD: Tensor) -> Tensor:
        """Dense codes [B, n_latents] of raw activations [B, d_in]."""
        _check_input(x_BD, self.d_in)
        return self.codes_normalized(self.normalize(x_BD))

    def decode(self, codes_BN: Tensor) -> Tensor:
        """Raw-space reconstruction [B, d_in] of codes [B, n_latents]."""
        assert codes_BN.ndim == 2 and codes_BN.shape[1] == self.n_latents, (
            f"codes shape {tuple(codes_BN.shape)}; expected [B, {self.n_latents}]"
        )
        return self.denormalize(self.decode_normalized(codes_BN))

    def forward(self, x_BD: Tensor) -> SAEOutput:
        """Reconstruction and codes of raw activations."""
        codes_BN = self.encode(x_BD)
        return SAEOutput(self.decode(codes_BN), codes_BN)

    def decoder_directions(self) -> Tensor:
        """Unit atom directions [n_latents, d_in] in raw space.

        The normalisation is a shift plus a scalar scale, so directions are unchanged by it.
        """
        atoms_ND = self.dictionary().detach()
        return atoms_ND / atoms_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    # ----- constraints around the optimiser step ------------------------------------
    @torch.no_grad()
    def before_step(self) -> None:
        """Remove the gradient component parallel to each decoder row."""
        grad = self.W_dec_ND.grad
        if grad is None:
            return
        W_ND = self.W_dec_ND
        # In place, without [N, D] temporaries: this runs on the whole decoder every step.
        grad.addcmul_(W_ND, torch.linalg.vecdot(grad, W_ND).unsqueeze(-1), value=-1.0)

    @torch.no_grad()
    def after_step(self) -> None:
        """Project back onto the constraint set: unit-norm decoder rows."""
        self.W_dec_ND /= self.W_dec_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    # ----- persistence -------------------------------------------------------------
    def save(self, path: str | Path, provenance: dict | None = None) -> Path:
        """Write ``cfg.json`` and ``sae.safetensors`` into the folder ``path``.

        Parameters
        ----------
        path : str or Path
            The folder, created if needed.
        provenance : dict, optional
            Where the model comes from, kept in cfg.json (see ``vsae.sae.io.save_sae``).

        Returns
        -------
        Path
            The folder.
        """
        return save_sae(self, path, provenance)


class TopKFamilySAE(BaseSAE):
    """Shared pieces of SAEs whose codes are a sparse selection: gather, decode, AuxK."""

    def sparse_codes(self, x_BD: Tensor, pre_BN: Tensor, sel: sparse.Selection) -> Tensor:
        """ReLU of the selected pre-activations, differentiable through the sparse gather."""
        vals_M = sparse.gather_pre(x_BD, self.b_dec_D, self.W_enc_ND, self.b_enc_N, pre_BN, sel)
        return torch.relu(vals_M)

    def decode_selection(self, sel: sparse.Selection, vals_M: Tensor) -> Tensor:
        """Sparse decode (no ``b_dec``) of selected codes; subclasses with a derived
        dictionary override it to build only the atoms the selection uses."""
        return sparse.sparse_decode(sel, vals_M, self.dictionary())

    def auxk_loss(
        self,
        x_BD: Tensor,
        recon_BD: Tensor,
        pre_BN: Tensor,
        dead_N: Tensor | None,
        atoms_ND: Tensor | None = None,
    ) -> Tensor | None:
        """AuxK: dead latents reconstruct the (detached) residual with their own top-k."""
        k_aux = self.cfg.num_aux_k
        if dead_N is None or k_aux == 0:
            return None
        n_dead = int(dead_N.sum())
        if n_dead == 0:
            return None
        masked_BN = pre_BN.detach().masked_fill(~dead_N, float("-inf"))
        sel = sparse.topk_select(masked_BN, min(k_aux, n_dead))
        vals_M = self.sparse_codes(x_BD, pre_BN, sel)
        err_BD = (x_BD - recon_BD).detach()
        if atoms_ND is None:
            return nmse(err_BD, self.decode_selection(sel, vals_M))
        return nmse(err_BD, sparse.sparse_decode(sel, vals_M, atoms_ND))

    def finish_loss(
        self,
        x_BD: Tensor,
        main: Tensor,
        recon_BD: Tensor,
        pre_BN: Tensor,
        sel: sparse.Selection,
        vals_M: Tensor,
        dead_N: Tensor | None,
        terms: dict[str, Tensor] | None = None,
        atoms_ND: Tensor | None = None,
    ) -> LossOutput:
        """Add AuxK to the main loss and package the outputs."""
        terms = dict(terms or {})
        terms["recon"] = main.detach()
        loss = main
        aux = self.auxk_loss(x_BD, recon_BD, pre_BN, dead_N, atoms_ND)
        if aux is not None:
            terms["auxk"] = aux.detach()
            loss = loss + self.cfg.aux_coef * aux
        l0 = (vals_M.detach() > 0).sum() / x_BD.shape[0]
        return LossOutput(loss, terms, recon_BD, sparse.fired(sel, vals_M), l0)


def geometric_median(x_SD: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm for the point minimising the sum of Euclidean distances."""
    median_D = x_SD.mean(0)
    for _ in range(iters):
        w_S = 1.0 / (x_SD - median_D).norm(dim=-1).clamp_min(1e-8)
        new_D = (w_S[:, None] * x_SD).sum(0) / w_S.sum()
        if (new_D - median_D).norm() < tol * (1 + median_D.norm()):
            return new_D
        median_D = new_D
    return median_D


def _check_input(x_BD: Tensor, d_in: int) -> None:
    if x_BD.ndim != 2 or x_BD.shape[1] != d_in:
        raise ValueError(f"activations have shape {tuple(x_BD.shape)}; expected [B, {d_in}]")
