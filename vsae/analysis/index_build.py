"""Build a concept index of an image collection: faiss embeddings, CSR SAE codes, keys, labels.

Folder layout (``/work/shared/CONTRACTS.md``, "An index")::

    embeddings.faiss   unit-norm model embeddings (inner product = cosine)
    norms.npy          each embedding's norm before normalising (to rebuild SAE inputs)
    codes.npz          SAE codes, scipy.sparse CSR [n_images, n_latents] (float32)
    keys.json          image path or key per id
    labels.jsonl       one JSON object of labels per id (when any image has labels)
    index.json         format, SAE hash and path, model spec, sizes, faiss type
    build.json         what ``vsae index build`` did, with its arguments

Building streams chunks (embeddings go into faiss as they come; codes stay sparse), so a
collection larger than memory as dense codes can be indexed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from vsae.analysis.concepts import ConceptError
from vsae.analysis.latent_stats import pooled_codes
from vsae.analysis.models import ModelSpec, file_fingerprint

INDEX_FORMAT = 1
INDEX_TYPES = ("flat", "fp16", "ivf")


class ConceptIndexError(ValueError):
    """An index folder is missing, corrupt, or was built with another SAE or model."""


def make_faiss(d: int, kind: str = "flat", nlist: int = 1024) -> faiss.Index:
    """An empty inner-product faiss index.

    Parameters
    ----------
    d : int
        Embedding width.
    kind : str
        ``flat`` (exact, float32), ``fp16`` (exact scan of float16 codes:
        ``IndexScalarQuantizer`` QT_fp16, half the bytes) or ``ivf`` (``IndexIVFFlat``,
        approximate; needs training).
    nlist : int
        IVF cells.

    Returns
    -------
    faiss.Index
    """
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "fp16":
        return faiss.IndexScalarQuantizer(
            d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    raise ConceptError(f"index type {kind!r}; expected one of {INDEX_TYPES}")


def embeddings_of(acts: torch.Tensor) -> np.ndarray:
    """The embedding stored per image: the SAE input (tokens mean-pooled).

    Parameters
    ----------
    acts : Tensor
        ``[B, D]`` or ``[B, T, D]``.

    Returns
    -------
    np.ndarray
        ``[B, D]`` float32.
    """
    x = acts.float()
    if x.ndim == 3:
        x = x.mean(1)
    return x.numpy()


class IndexBuilder:
    """Accumulates chunks of (SAE inputs, keys, labels) into an index folder.

    Parameters
    ----------
    sae : BaseSAE
    kind : str
        faiss type (see :func:`make_faiss`).
    nlist : int
        IVF cells (``ivf`` only); trained on the first ``40 * nlist`` embeddings.
    pool : str
        Pooling of token codes (``max`` / ``mean``).
    """

    def __init__(self, sae, kind: str = "flat", nlist: int = 1024, pool: str = "max"):
        self.sae = sae
        self.kind = kind
        self.nlist = nlist
        self.pool = pool
        self.index: faiss.Index | None = None
        self._pending: list[np.ndarray] = []
        self.codes: list[sp.csr_matrix] = []
        self.norms: list[np.ndarray] = []
        self.keys: list[str] = []
        self.labels: list[dict] = []

    @torch.no_grad()
    def add(self, acts: torch.Tensor, keys: list[str], labels: list[dict] | None = None) -> None:
        """Add a chunk.

        Parameters
        ----------
        acts : Tensor
            SAE inputs ``[B, D]`` (or ``[B, T, D]``).
        keys : list of str
        labels : list of dict, optional

        Raises
        ------
        ConceptError
            If the width is not the SAE's ``d_in``.
        """
        if acts.shape[-1] != self.sae.d_in:
            raise ConceptError(
                f"activations of width {acts.shape[-1]}; the SAE expects d_in={self.sae.d_in}"
            )
        emb_BD = embeddings_of(acts)
        norms_B = np.linalg.norm(emb_BD, axis=1).clip(1e-12)
        unit_BD = np.ascontiguousarray(emb_BD / norms_B[:, None], dtype=np.float32)
        codes_BN = pooled_codes(self.sae, acts, self.pool).clamp_min(0).numpy()
        self.codes.append(sp.csr_matrix(codes_BN.astype(np.float32)))
        self.norms.append(norms_B.astype(np.float32))
        self.keys.extend(keys)
        self.labels.extend(labels or [{}] * len(keys))
        self._add_embeddings(unit_BD)

    def _add_embeddings(self, unit_BD: np.ndarray) -> None:
        if self.index is None:
            self.index = make_faiss(unit_BD.shape[1], self.kind, self.nlist)
        if self.index.is_trained:
            self.index.add(unit_BD)
            return
        self._pending.append(unit_BD)
        if sum(len(p) for p in self._pending) >= 40 * self.nlist:
            self._train_and_flush()

    def _train_and_flush(self) -> None:
        data = np.concatenate(self._pending)
        self._pending = []
        if not self.index.is_trained:
            if isinstance(self.index, faiss.IndexIVF) and len(data) < self.index.nlist:
                raise ConceptError(
                    f"ivf index with nlist={self.index.nlist} needs at least that many images; "
                    f"got {len(data)} (lower --nlist or use --type flat)"
                )
            self.index.train(data)
        self.index.add(data)

    def finish(self) -> None:
        """Train (IVF) and add whatever is pending."""
        if self._pending:
            self._train_and_flush()

    def save(self, out: str | Path, sae_dir: str | Path, spec: ModelSpec, extra: dict) -> Path:
        """Write the index folder (files first, ``index.json`` last: it marks completeness).

        Parameters
        ----------
        out : str or Path
        sae_dir : str or Path
            The SAE (its hash is recorded).
        spec : ModelSpec
        extra : dict
            More ``index.json`` fields.

        Returns
        -------
        Path
        """
        self.finish()
        if self.index is None or not self.keys:
            raise ConceptError("no images were indexed (all unreadable, or empty data)")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / "embeddings.faiss"))
        np.save(out / "norms.npy", np.concatenate(self.norms), allow_pickle=False)
        codes = sp.vstack(self.codes, format="csr")
        sp.save_npz(out / "codes.npz", codes, compressed=False)
        (out / "keys.json").write_text(json.dumps(self.keys))
        if any(self.labels):
            with open(out / "labels.jsonl", "w") as fh:
                for lab in self.labels:
                    fh.write(json.dumps(lab) + "\n")
        meta = {
            "format_version": INDEX_FORMAT,
            "sae": {"path": str(Path(sae_dir).resolve()), "sha256": sae_hash(sae_dir)},
            "model": spec.to_dict(),
            "n_images": len(self.keys),
            "d": int(self.index.d),
            "n_latents": int(codes.shape[1]),
            "nnz": int(codes.nnz),
            "faiss_type": self.kind,
            "nlist": self.nlist if self.kind == "ivf" else None,
            "pool": self.pool,
            **extra,
        }
        tmp = out / "index.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmp, out / "index.json")
        return out


def sae_hash(sae_dir: str | Path) -> str:
    """SHA-256 of the SAE's weights file (what an index and a query must share).

    Parameters
    ----------
    sae_dir : str or Path

    Returns
    -------
    str
    """
    return file_fingerprint(Path(sae_dir) / "sae.safetensors")


def build_index(
    sae_dir: str | Path,
    data,
    out: str | Path,
    spec: ModelSpec,
    kind: str = "flat",
    nlist: int = 1024,
    pool: str = "max",
    progress: bool = False,
    chunks: Iterable | None = None,
) -> Path:
    """Index an image collection with an SAE.

    Parameters
    ----------
    sae_dir : str or Path
        The SAE folder.
    data : str or Path
        ``world:N:SEED``, an image folder, ``.tar`` image shards, or activation shards.
    out : str or Path
        The index folder.
    spec : ModelSpec
        The SAE's model (see :func:`vsae.analysis.models.sae_model_spec`).
    kind, nlist, pool
        See :class:`IndexBuilder`.
    progress : bool
    chunks : iterable of Chunk, optional
        Already prepared chunks (instead of reading ``data``).

    Returns
    -------
    Path
        The index folder.
    """
    import vsae
    from vsae.analysis.name import chunks_of

    if kind not in INDEX_TYPES:
        raise ConceptError(f"--type {kind!r}; expected one of {INDEX_TYPES}")
    sae = vsae.load(sae_dir)
    builder = IndexBuilder(sae, kind, nlist, pool)
    source = chunks if chunks is not None else chunks_of(data, spec, progress)
    for ch in source:
        builder.add(ch.acts, ch.keys, ch.labels)
    if progress:
        print(f"indexed {len(builder.keys)} images", file=sys.stderr)
    return builder.save(out, sae_dir, spec, {"data": str(data)})
