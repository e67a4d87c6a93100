"""The interface every SAE shares: normalisation, encode/decode, constraints, save."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from vsae.config import SAEConfig
from vsae.sae import sparse
from vsae.sae.io import EXPORTERS, CheckpointError, save_sae
from vsae.sae.losses import nmse


class SAEOutput(NamedTuple):
    """What ``sae(x)`` returns: the raw-space reconstruction and the dense codes.

    Attributes
    ----------
    recon : Tensor
        Reconstruction [B, d_in] in the raw activation space.
    codes : Tensor
        Dense codes [B, n_latents] (mostly zeros for sparse architectures).
    """

    recon: Tensor
    codes: Tensor


class LossOutput(NamedTuple):
    """One training forward pass, in normalised space.

    Attributes
    ----------
    loss : Tensor
        Scalar to minimise (reconstruction plus any penalty or AuxK term).
    terms : dict of str to Tensor
        Detached scalars for logging (``recon``, ``auxk``, ``l1``, ``l0``, ... by architecture).
    recon_BD : Tensor
        Normalised reconstruction [B, D] of the batch.
    fired_N : Tensor
        Bool [N]: latents with a positive code in this batch (dead-latent tracking).
    l0 : Tensor
        Scalar: mean number of positive codes per sample.
    """

    loss: Tensor
    terms: dict[str, Tensor]
    recon_BD: Tensor
    fired_N: Tensor
    l0: Tensor


class BaseSAE(nn.Module):
    """Sparse autoencoder with a learned encoder and a unit-norm-row decoder.

    Encoder ``pre = (x - b_dec) W_enc^T + b_enc``, codes ``z = act(pre)``, decoder
    ``x_hat = z W_dec + b_dec`` with unit-norm rows of ``W_dec`` (Bricken et al. 2023,
    "Towards Monosemanticity"; Gao et al. 2024, "Scaling and evaluating sparse
    autoencoders"). Inputs are normalised as in the Matryoshka-CLIP paper (Zaigrajew et al.
    2025): subtract the data mean, then scale so that ``E||x - mean||_2 = sqrt(d_in)``.

    Subclasses implement ``codes_normalized`` (inference) and ``loss`` (training).
    Public ``encode``/``decode``/``forward`` work in the raw activation space; the
    normalisation statistics live in the buffers ``norm_mean_D`` and ``norm_scale``.
    Public methods that take user data raise ``ValueError`` naming the shape received and the
    shape expected; the ``*_normalized`` internals trust their callers.

    Parameters
    ----------
    cfg : SAEConfig
        The architecture's config; ``cfg.arch`` must be this class's ``arch``. The decoder
        rows are drawn from ``cfg.seed`` and normalised; ``W_enc`` starts as ``W_dec``
        (scaled down for dense-code SAEs).

    Raises
    ------
    ValueError
        When ``cfg.arch`` names another architecture.
    """

    arch: ClassVar[str] = ""
    # Scale of W_enc = scale * W_dec^T at init; dense-code SAEs shrink it (see ReLUSAE).
    dense_codes: ClassVar[bool] = False

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if cfg.arch != self.arch:
            raise ValueError(f"config arch {cfg.arch!r}; {type(self).__name__} is {self.arch!r}")
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
        """Raw activations to the normalised space the SAE trains in.

        Parameters
        ----------
        x_BD : Tensor
            Raw activations [B, d_in].

        Returns
        -------
        Tensor
            ``(x - norm_mean_D) * norm_scale``, [B, d_in].
        """
        return (x_BD - self.norm_mean_D) * self.norm_scale

    def denormalize(self, x_BD: Tensor) -> Tensor:
        """Normalised space back to raw activations (the inverse of ``normalize``).

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Raw activations [B, d_in].
        """
        return x_BD / self.norm_scale + self.norm_mean_D

    @classmethod
    def min_hold(cls, cfg: SAEConfig) -> int:
        """Rows the data-dependent init needs at least, held out of an iterable's stream.

        The trainer holds out ``max(eval_samples, min_hold(cfg))`` rows of an iterable or
        shard folder; they are the evaluation set and the sample given to
        :meth:`init_from_data`.

        Parameters
        ----------
        cfg : SAEConfig
            The SAE's config.

        Returns
        -------
        int
            0: any sample will do (subclasses that fit something to the sample say more).
        """
        return 0

    @torch.no_grad()
    def init_from_data(self, sample_BD: Tensor) -> None:
        """Data-dependent init from a raw sample: normalisation stats and ``b_dec``.

        With ``cfg.normalize`` the mean and the scale ``sqrt(d_in) / E||x - mean||`` are
        stored (Matryoshka-CLIP preprocessing). ``b_dec`` then starts at zero, the normalised
        mean, or the geometric median (``cfg.b_dec_init``; Bricken et al. 2023).

        Parameters
        ----------
        sample_BD : Tensor
            Raw activations [S, d_in], a few thousand rows of the training data.

        Raises
        ------
        ValueError
            When the sample is not [S, d_in].
        """
        if sample_BD.ndim != 2 or sample_BD.shape[1] != self.d_in:
            raise ValueError(
                f"sample has shape {tuple(sample_BD.shape)}; expected [S, {self.d_in}]"
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
        """Decoder atoms in normalised space.

        Returns
        -------
        Tensor
            [n_latents, d_in]; the parameter itself, or built from parameters by
            architectures with a derived dictionary (Archetypal SAEs).
        """
        return self.W_dec_ND

    def pre_acts(self, x_BD: Tensor) -> Tensor:
        """Encoder pre-activations of normalised inputs, ``(x - b_dec) W_enc^T + b_enc``.

        Computed as ``x W_enc^T + (b_enc - W_enc b_dec)``: the same value, but the backward
        of a dense encoder then needs no [B, N] x [N, D] product for the gradient of
        ``b_dec`` (only a matrix-vector product), one GEMM fewer per step. Inputs are
        centred by the normalisation, so folding ``b_dec`` into the bias loses no precision.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].

        Returns
        -------
        Tensor
            Pre-activations [B, n_latents].
        """
        bias_N = torch.addmv(self.b_enc_N, self.W_enc_ND, self.b_dec_D, alpha=-1.0)
        return torch.addmm(bias_N, x_BD, self.W_enc_ND.t())

    def codes_normalized(self, x_BD: Tensor) -> Tensor:
        """Dense inference codes of normalised inputs (each architecture's activation).

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in] (not checked: ``encode`` is the public entry).

        Returns
        -------
        Tensor
            Codes [B, n_latents], non-negative.
        """
        raise NotImplementedError

    def decode_normalized(self, codes_BN: Tensor) -> Tensor:
        """Normalised reconstruction ``codes W_dec + b_dec`` of dense codes.

        Parameters
        ----------
        codes_BN : Tensor
            Codes [B, n_latents] (not checked: ``decode`` is the public entry).

        Returns
        -------
        Tensor
            Normalised reconstruction [B, d_in].
        """
        return codes_BN @ self.dictionary() + self.b_dec_D

    def loss(self, x_BD: Tensor, dead_N: Tensor | None = None) -> LossOutput:
        """Training loss of a normalised batch.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        dead_N : Tensor, optional
            Bool [n_latents]: latents that have not fired for a while. When given, TopK-family
            architectures add the AuxK term (Gao et al. 2024).

        Returns
        -------
        LossOutput
            The loss, its logged terms, the reconstruction, the latents that fired and L0.
        """
        raise NotImplementedError

    # ----- public raw-space API ---------------------------------------------------
    def encode(self, x_BD: Tensor) -> Tensor:
        """Dense codes of raw activations.

        Parameters
        ----------
        x_BD : Tensor
            Raw activations [B, d_in], on the SAE's device.

        Returns
        -------
        Tensor
            Codes [B, n_latents]; zero where a latent does not fire.

        Raises
        ------
        ValueError
            When ``x_BD`` is not [B, d_in].
        """
        _check_input(x_BD, self.d_in)
        return self.codes_normalized(self.normalize(x_BD))

    def decode(self, codes_BN: Tensor) -> Tensor:
        """Raw-space reconstruction of codes.

        Parameters
        ----------
        codes_BN : Tensor
            Codes [B, n_latents], as ``encode`` returns them or edited.

        Returns
        -------
        Tensor
            Reconstruction [B, d_in] in the raw activation space.

        Raises
        ------
        ValueError
            When ``codes_BN`` is not [B, n_latents].
        """
        if codes_BN.ndim != 2 or codes_BN.shape[1] != self.n_latents:
            raise ValueError(
                f"codes have shape {tuple(codes_BN.shape)}; expected [B, {self.n_latents}]"
            )
        return self.denormalize(self.decode_normalized(codes_BN))

    def forward(self, x_BD: Tensor) -> SAEOutput:
        """Reconstruction and codes of raw activations.

        Parameters
        ----------
        x_BD : Tensor
            Raw activations [B, d_in].

        Returns
        -------
        SAEOutput
            ``(recon [B, d_in], codes [B, n_latents])``.

        Raises
        ------
        ValueError
            When ``x_BD`` is not [B, d_in].
        """
        codes_BN = self.encode(x_BD)
        return SAEOutput(self.decode(codes_BN), codes_BN)

    def decoder_directions(self) -> Tensor:
        """Unit atom directions [n_latents, d_in] in raw space.

        The normalisation is a shift plus a scalar scale, so directions are unchanged by it.

        Returns
        -------
        Tensor
            Detached unit-norm rows [n_latents, d_in].
        """
        atoms_ND = self.dictionary().detach()
        return atoms_ND / atoms_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    # ----- constraints around the optimiser step ------------------------------------
    @torch.no_grad()
    def before_step(self) -> None:
        """Remove the gradient component parallel to each decoder row (call before
        ``optimizer.step()``), so the step keeps the rows near unit norm (Bricken et al.
        2023)."""
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
    def save(self, path: str | Path, provenance: dict | None = None, format: str = "vsae") -> Path:
        """Write the SAE into the folder ``path``.

        Parameters
        ----------
        path : str or Path
            The folder, created if needed.
        provenance : dict, optional
            Where the model comes from, kept in cfg.json (see ``vsae.sae.io.save_sae``);
            by default ``self.provenance`` when the SAE was imported by ``vsae.load``.
        format : str
            ``vsae`` (``cfg.json`` + ``sae.safetensors``), or another tool's layout
            registered by ``vsae.interop`` (``saelens``, ``sparsify``; they record the
            model and hookpoint of ``self.provenance`` where the layout has a field for it).

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        CheckpointError
            An unknown format, or one that cannot hold this SAE exactly.
        """
        if format == "vsae":
            return save_sae(self, path, provenance or getattr(self, "provenance", None) or None)
        if format not in EXPORTERS:
            known = ", ".join(["vsae", *sorted(EXPORTERS)])
            raise CheckpointError(f"format={format!r}; an SAE can be saved as {known}")
        return EXPORTERS[format](self, Path(path))


class TopKFamilySAE(BaseSAE):
    """Shared pieces of SAEs whose codes are a sparse selection: gather, decode, AuxK.

    Only the M = B * k selected codes are gathered and decoded (``vsae.sae.sparse``), at
    O(M * D) instead of the dense O(B * N * D). Dead latents learn through AuxK (Gao et al.
    2024): they reconstruct the residual with their own top-``num_aux_k``.

    Parameters
    ----------
    cfg : SAEConfig
        As for ``BaseSAE``.
    """

    def sparse_codes(self, x_BD: Tensor, pre_BN: Tensor, sel: sparse.Selection) -> Tensor:
        """ReLU of the selected pre-activations, differentiable through the sparse gather.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        pre_BN : Tensor
            Their pre-activations [B, n_latents] (``pre_acts``).
        sel : sparse.Selection
            The M kept entries of ``pre_BN``.

        Returns
        -------
        Tensor
            Code values [M], in the order of ``sel``.
        """
        vals_M = sparse.gather_pre(x_BD, self.b_dec_D, self.W_enc_ND, self.b_enc_N, pre_BN, sel)
        return torch.relu(vals_M)

    def decode_selection(self, sel: sparse.Selection, vals_M: Tensor) -> Tensor:
        """Sparse decode (no ``b_dec``) of selected codes.

        Subclasses with a derived dictionary override it to build only the atoms the
        selection uses.

        Parameters
        ----------
        sel : sparse.Selection
            The M selected (row, latent) entries.
        vals_M : Tensor
            Their code values [M].

        Returns
        -------
        Tensor
            ``sum_m vals_m W_dec[col_m]`` per row, [B, d_in].
        """
        return sparse.sparse_decode(sel, vals_M, self.dictionary())

    def auxk_loss(
        self,
        x_BD: Tensor,
        recon_BD: Tensor,
        pre_BN: Tensor,
        dead_N: Tensor | None,
        atoms_ND: Tensor | None = None,
    ) -> Tensor | None:
        """AuxK (Gao et al. 2024): dead latents reconstruct the detached residual.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        recon_BD : Tensor
            The main reconstruction [B, d_in]; the residual is ``x - recon``.
        pre_BN : Tensor
            Pre-activations [B, n_latents].
        dead_N : Tensor or None
            Bool [n_latents]; None turns the term off.
        atoms_ND : Tensor, optional
            A dictionary already built for this batch (derived-dictionary SAEs).

        Returns
        -------
        Tensor or None
            The NMSE of the residual against the top-``num_aux_k`` dead latents' decode, or
            None when there is no dead latent or ``num_aux_k`` is 0.
        """
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
        """Add ``aux_coef`` times AuxK to the main loss and package the outputs.

        Parameters
        ----------
        x_BD : Tensor
            Normalised activations [B, d_in].
        main : Tensor
            Scalar reconstruction loss.
        recon_BD : Tensor
            Normalised reconstruction [B, d_in].
        pre_BN : Tensor
            Pre-activations [B, n_latents].
        sel : sparse.Selection
            The kept entries; ``vals_M`` holds their values [M].
        vals_M : Tensor
            Code values [M].
        dead_N : Tensor or None
            Bool [n_latents] for AuxK, or None.
        terms : dict of str to Tensor, optional
            Extra logged terms (per-level losses, ...).
        atoms_ND : Tensor, optional
            A dictionary already built for this batch.

        Returns
        -------
        LossOutput
        """
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
    """The point minimising the sum of Euclidean distances (Weiszfeld's algorithm).

    Used to initialise ``b_dec`` (Bricken et al. 2023).

    Parameters
    ----------
    x_SD : Tensor
        Points [S, D].
    iters : int
        Most iterations.
    tol : float
        Stop when a step moves less than ``tol * (1 + |median|)``.

    Returns
    -------
    Tensor
        The median [D].
    """
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
