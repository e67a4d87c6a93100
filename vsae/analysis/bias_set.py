"""A bias set on disk: embeddings and per-image attributes of a training split (what a probe
learns from) and a test split (what is analysed), for :func:`vsae.analysis.analyse_bias`.

A folder holds ``bias_set.json`` (format version, sizes, width, free ``meta``),
``embeddings.safetensors`` (``train`` [N, D] and ``test`` [M, D], float32) and ``labels.json``
(``{"train": [{attribute: value, ...}, ...], "test": [...]}``, one record per row). The demo's
Bias tab reads one; ``vsae demo`` builds a biased tiny-world one on first start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsae.analysis.bias_labels import BiasError
from vsae.analysis.bias_probe import ProbeConfig

if TYPE_CHECKING:
    from vsae.analysis.bias import BiasResult

FORMAT_VERSION = 1
META_JSON, EMBEDDINGS, LABELS = "bias_set.json", "embeddings.safetensors", "labels.json"


class BiasSetError(ValueError):
    """A bias set folder that is missing, truncated or inconsistent (names the file)."""


@dataclass(frozen=True)
class BiasSet:
    """Embeddings with attributes, split into the probe's training data and the analysed data.

    Parameters
    ----------
    train_x_ND : Tensor [N, D]
        Training embeddings (the probe learns the target from them).
    train_labels : list of dict
        Their attributes, e.g. ``{"shape": "square", "colour": "red"}``.
    test_x_MD : Tensor [M, D]
        Analysed embeddings.
    test_labels : list of dict
        Their attributes.
    meta : dict
        Free JSON (how it was made; ``target`` and ``group`` suggest a first analysis).

    Raises
    ------
    BiasSetError
        Label counts that differ from the rows, or splits of different widths.
    """

    train_x_ND: torch.Tensor
    train_labels: list[dict]
    test_x_MD: torch.Tensor
    test_labels: list[dict]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, x, labels in (
            ("train", self.train_x_ND, self.train_labels),
            ("test", self.test_x_MD, self.test_labels),
        ):
            if x.ndim != 2 or len(labels) != x.shape[0]:
                raise BiasSetError(
                    f"bias set {split}: {len(labels)} label records for embeddings of shape "
                    f"{tuple(x.shape)}; expected one record per row of an [N, D] tensor"
                )
        if self.train_x_ND.shape[1] != self.test_x_MD.shape[1]:
            raise BiasSetError(
                f"bias set: train width {self.train_x_ND.shape[1]} != test width "
                f"{self.test_x_MD.shape[1]}"
            )

    @property
    def d(self) -> int:
        """Embedding width ``D``."""
        return int(self.test_x_MD.shape[1])

    def attributes(self) -> dict[str, list[str]]:
        """Each attribute of the test labels with its values (sorted), for choosing a target.

        Returns
        -------
        dict of str to list of str
        """
        out: dict[str, set[str]] = {}
        for rec in self.test_labels:
            for k, v in rec.items():
                out.setdefault(str(k), set()).add(str(v))
        return {k: sorted(v) for k, v in out.items()}

    def probe_config(self) -> ProbeConfig:
        """The probe settings the set records (``meta["probe"]``), else the defaults.

        Returns
        -------
        ProbeConfig

        Raises
        ------
        BiasError
            A field that ``ProbeConfig`` does not have.
        """
        try:
            return ProbeConfig(**self.meta.get("probe", {}))
        except TypeError as e:
            raise BiasError(
                f"bias_set.json: 'probe' holds an unknown ProbeConfig field ({e})"
            ) from e

    def analyse(
        self, sae, target: str, group: str | None, concepts, n_boot: int = 200
    ) -> BiasResult:
        """Train the probe on the training split and analyse it on the test split.

        Parameters
        ----------
        sae : BaseSAE
            The SAE on the embeddings.
        target : str
            ``attribute=value``.
        group : str or None
            The group attribute.
        concepts : mapping
            Concept name -> latents (:func:`vsae.analysis.load_concepts`).
        n_boot : int
            Bootstrap replicates.

        Returns
        -------
        BiasResult
            With the probe settings of :meth:`probe_config`.

        Raises
        ------
        BiasError
            A bad ``meta["probe"]`` (:meth:`probe_config`), or any error of
            :func:`vsae.analysis.analyse_bias`.
        """
        from vsae.analysis.bias import BiasConfig, analyse_bias

        return analyse_bias(
            sae,
            self.test_x_MD,
            self.test_labels,
            target,
            group=group,
            concepts=concepts,
            train_x=self.train_x_ND,
            train_labels=self.train_labels,
            cfg=BiasConfig(n_boot=n_boot, probe=self.probe_config()),
        )

    def save(self, folder: str | Path) -> Path:
        """Write the folder (created if needed; ``bias_set.json`` last, so a stamp means done).

        Parameters
        ----------
        folder : str or Path

        Returns
        -------
        Path
            The folder.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "train": self.train_x_ND.float().contiguous(),
            "test": self.test_x_MD.float().contiguous(),
        }
        save_file(tensors, str(folder / EMBEDDINGS))
        labels = {"train": self.train_labels, "test": self.test_labels}
        (folder / LABELS).write_text(json.dumps(labels))
        info = {
            "format_version": FORMAT_VERSION,
            "n_train": len(self.train_labels),
            "n_test": len(self.test_labels),
            "d": self.d,
            "meta": self.meta,
        }
        (folder / META_JSON).write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BiasSet:
        """Read a folder written by :meth:`save` (or by hand in the same layout).

        Parameters
        ----------
        folder : str or Path

        Returns
        -------
        BiasSet

        Raises
        ------
        BiasSetError
            A missing or unreadable file, another format version, or sizes that disagree
            with ``bias_set.json``.
        """
        folder = Path(folder)
        try:
            info = json.loads((folder / META_JSON).read_text())
            labels = json.loads((folder / LABELS).read_text())
            tensors = load_file(str(folder / EMBEDDINGS))
        except (OSError, json.JSONDecodeError, SafetensorError) as e:
            raise BiasSetError(f"bias set {folder}: cannot read it ({e})") from None
        if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
            raise BiasSetError(
                f"{folder / META_JSON}: format_version {info.get('format_version')!r}, "
                f"expected {FORMAT_VERSION}"
            )
        missing = {"train", "test"} - set(tensors)
        if missing or not isinstance(labels, dict) or {"train", "test"} - set(labels):
            raise BiasSetError(
                f"bias set {folder}: {EMBEDDINGS} and {LABELS} need 'train' and 'test' entries"
            )
        for split in ("train", "test"):
            if len(labels[split]) != info.get(f"n_{split}"):
                raise BiasSetError(
                    f"{folder / LABELS}: {len(labels[split])} {split} records, "
                    f"{META_JSON} says n_{split}={info.get(f'n_{split}')}"
                )
        return cls(
            tensors["train"],
            labels["train"],
            tensors["test"],
            labels["test"],
            dict(info.get("meta") or {}),
        )
