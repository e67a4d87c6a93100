"""Named concepts as groups of latents, and editing them in an embedding through the SAE with
the error term kept: ``x_edited = x + decode(z_edited) - decode(z)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from vsae.analysis.bias_labels import BiasError


def concept_latents(concepts) -> dict[str, tuple[int, ...]]:
    """Concept name -> its latents, from a ``ConceptTable`` (its valid named latents) or a
    mapping.

    Parameters
    ----------
    concepts : ConceptTable or Mapping[str, Sequence[int]]
        Latents sharing a name form one concept.

    Returns
    -------
    dict of str to tuple of int
        Sorted by name.

    Raises
    ------
    BiasError
        When no concept is named.
    """
    if isinstance(concepts, Mapping):
        out = {str(k): tuple(int(i) for i in v) for k, v in concepts.items() if len(v)}
    else:
        groups: dict[str, list[int]] = {}
        for c in concepts.valid:
            if c.name:
                groups.setdefault(c.name, []).append(int(c.id))
        out = {k: tuple(v) for k, v in groups.items()}
    if not out:
        raise BiasError(
            "no named concepts to analyse: the SAE's concepts.json has no valid latent "
            "(run `vsae concepts name` first, or lower its thresholds)"
        )
    return dict(sorted(out.items()))


@torch.no_grad()
def encode(sae, x_ND: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """SAE codes of embeddings, in batches.

    Parameters
    ----------
    sae : BaseSAE
    x_ND : Tensor [N, D]
    batch : int

    Returns
    -------
    Tensor [N, L] float32

    Raises
    ------
    BiasError
        When the embedding width is not the SAE's ``d_in``.
    """
    if x_ND.ndim != 2 or x_ND.shape[1] != sae.d_in:
        raise BiasError(
            f"embeddings of shape {tuple(x_ND.shape)} do not fit the SAE: expected "
            f"[N, {sae.d_in}] (was it trained on another model or hookpoint?)"
        )
    return torch.cat([sae.encode(x_ND[i : i + batch].float()) for i in range(0, len(x_ND), batch)])


@torch.no_grad()
def edit_delta(
    sae,
    codes_NL: torch.Tensor,
    latents: Sequence[int],
    values_K: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    batch: int = 4096,
    project_DP: torch.Tensor | None = None,
) -> torch.Tensor:
    """``decode(z_edited) - decode(z)``: what editing a concept adds to each embedding.

    Only the edited rows are decoded, ``batch`` at a time; with ``project_DP`` each batch is
    projected at once, so an ``[N, D]`` delta is never held (a probe and its bootstrap refits
    need only ``[N, P]``).

    Parameters
    ----------
    sae : BaseSAE
    codes_NL : Tensor [N, L]
        The SAE codes of the embeddings.
    latents : sequence of int
        The concept's latents.
    values_K : Tensor [K], optional
        Values to set them to (one per latent); default 0 (switched off).
    rows : Tensor [N] bool, optional
        Edit only these rows (others get a zero delta).
    batch : int
        Rows decoded per call.
    project_DP : Tensor [D, P], optional
        Return ``delta @ project_DP`` instead of the delta.

    Returns
    -------
    Tensor [N, D] (or [N, P] with ``project_DP``)
        Add it to the embedding (the SAE's error term is kept).
    """
    ids = torch.as_tensor(list(latents), dtype=torch.long)
    n = len(codes_NL)
    idx_R = torch.arange(n) if rows is None else rows.nonzero().squeeze(1)
    width = sae.d_in if project_DP is None else project_DP.shape[1]
    out = torch.zeros(n, width)
    for lo in range(0, len(idx_R), batch):
        r = idx_R[lo : lo + batch]
        z = codes_NL[r]
        z2 = z.clone()
        z2[:, ids] = 0.0 if values_K is None else values_K.to(z2)
        d = (sae.decode(z2) - sae.decode(z)).float()
        out[r] = d if project_DP is None else d @ project_DP.float()
    return out


def remove_concepts(
    sae, x_ND: torch.Tensor, concepts: Mapping[str, Sequence[int]], names: Sequence[str]
) -> torch.Tensor:
    """Embeddings with the named concepts switched off (error term kept).

    Parameters
    ----------
    sae : BaseSAE
    x_ND : Tensor [N, D]
    concepts : mapping
        Name -> latents (:func:`concept_latents`).
    names : sequence of str
        The concepts to remove.

    Returns
    -------
    Tensor [N, D]

    Raises
    ------
    BiasError
        An unknown concept name (the message lists the known ones).
    """
    ids: list[int] = []
    for n in names:
        if n not in concepts:
            raise BiasError(f"unknown concept {n!r} to remove; named concepts: {sorted(concepts)}")
        ids += list(concepts[n])
    if not ids:
        return x_ND.clone()
    codes_NL = encode(sae, x_ND)
    return x_ND.float() + edit_delta(sae, codes_NL, sorted(set(ids)))
