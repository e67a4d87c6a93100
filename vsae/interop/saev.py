"""saev checkpoints (OSU-NLP-Group/saev): one JSON header line, then a torch state dict.

Read from saev's ``src/saev/nn/modeling.py`` (``dump``, ``load``, ``SparseAutoencoder``): the
header is ``{"schema": 5, "cfg": {"d_model", "d_sae", "activation": {"cls", "params"}}, ...}``
(schemas 2-4 alike; schema 1 and the schema-less header of the first releases give ``d_vit``,
``exp_factor`` and a ``cls`` of ``Relu``/``TopK``/``BatchTopK``). Tensors: ``W_enc``
[d_model, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_model], ``b_dec`` [d_model], and
``activation.threshold`` (a scalar) for BatchTopK. Encode: ``act(x W_enc + b_enc)`` with
``Relu``, ``TopK`` (the k largest pre-activations kept as they are, negative ones too) or
``BatchTopK`` (at inference ``pre`` where ``pre > threshold``, ReLU when the threshold is
<= 0); decode: ``codes W_dec + b_dec`` (the Matryoshka prefixes only split the training loss).
Until saev commit e7ca004 (2025-07-31) encoding subtracted ``b_dec`` first; headers of that
time (schema 1 and before) do not say which code wrote them: pass ``b_dec_on_input=True`` for
a checkpoint trained before that change. saev's activation scaling (``scale_mean``,
``scale_norm``) happens in its data loader and is not stored with the SAE: inputs are in that
space.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from vsae.interop.common import (
    InteropError,
    SAEFormat,
    as_state_dict,
    assemble,
    base_provenance,
    check_names,
    check_shape,
    read_torch,
)
from vsae.sae.base import BaseSAE

FILE = "sae.pt"
ACTIVATIONS = ("Relu", "TopK", "BatchTopK")


def _header(path: Path) -> tuple[dict, bytes]:
    """The JSON header and the torch payload bytes of a saev file."""
    if not path.is_file():
        raise InteropError(f"{path}: no such file; a saev checkpoint is one file (sae.pt)")
    raw = path.read_bytes()
    line, sep, payload = raw.partition(b"\n")
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not sep or not isinstance(header, dict):
        raise InteropError(f"{path}: not a saev checkpoint (a JSON header line, then torch data)")
    return header, payload


def _config(header: dict, where: str) -> tuple[int, int, str, int]:
    """``(d_model, d_sae, activation class, top_k)`` from any saev header schema."""
    schema = header.get("schema")
    cfg = dict(header.get("cfg", header)) if schema is not None else dict(header)
    act = cfg.get("activation")
    if isinstance(act, dict) and "cls" in act:
        cls, params = act["cls"], act.get("params", {})
    else:  # schema 1 "format 1A" names the activation in "cls"; schema-less: ReLU
        cls = header.get("cls", "Relu") if schema == 1 else "Relu"
        params = {"top_k": cfg.get("top_k", 32)}
    if cls not in ACTIVATIONS:
        raise InteropError(f"{where}: activation {cls!r} is not supported; expected {ACTIVATIONS}")
    d_model = cfg.get("d_model", cfg.get("d_vit"))
    d_sae = cfg.get("d_sae")
    if d_sae is None and "exp_factor" in cfg and isinstance(d_model, int):
        d_sae = d_model * cfg["exp_factor"]
    if not isinstance(d_model, int) or not isinstance(d_sae, int):
        raise InteropError(f"{where}: header lacks integer d_model/d_vit and d_sae/exp_factor")
    return d_model, d_sae, cls, int(params.get("top_k", 32))


class SaevFormat(SAEFormat):
    """Read saev ``sae.pt`` files."""

    name = "saev"

    def matches(self, path: Path) -> bool:
        """A file (or a folder's ``sae.pt``) that starts with a JSON header line.

        Parameters
        ----------
        path : Path
            A folder or a file.

        Returns
        -------
        bool
        """
        path = path / FILE if path.is_dir() else path
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            line = fh.readline(1 << 16)
        try:
            header = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return isinstance(header, dict) and bool({"schema", "d_vit", "d_model"} & set(header))

    def read(self, path: Path, b_dec_on_input: bool | None = None, **options: Any) -> BaseSAE:
        """Load a saev checkpoint.

        Parameters
        ----------
        path : Path
            The ``sae.pt`` file, or a folder holding it.
        b_dec_on_input : bool, optional
            Subtract ``b_dec`` before encoding, as saev did before 2025-07-31. By default
            only what saev's code does today (no subtraction).

        Returns
        -------
        BaseSAE
            ReLU, TopK or BatchTopK (at its inference threshold).

        Raises
        ------
        InteropError
            An unknown option or activation, a file needing pickle of code, missing/extra
            tensors, shapes against the header.
        """
        if options:
            raise InteropError(f"format 'saev' takes only b_dec_on_input; got {sorted(options)}")
        path = path / FILE if path.is_dir() else path
        where = str(path)
        header, payload = _header(path)
        D, N, cls, top_k = _config(header, where)
        t = as_state_dict(read_torch(payload, where), where)
        need = {"W_enc", "b_enc", "W_dec", "b_dec"}
        need |= {"activation.threshold"} if cls == "BatchTopK" else set()
        check_names(t, need, where)
        shapes = {"W_enc": (D, N), "b_enc": (N,), "W_dec": (N, D), "b_dec": (D,)}
        shapes["activation.threshold"] = ()
        for name in t:
            check_shape(t[name], shapes[name], name, where)
        schema = header.get("schema")
        legacy = schema is None or schema == 1
        if b_dec_on_input is None and legacy and bool(t["b_dec"].abs().max() > 0):
            warnings.warn(
                f"{where}: a schema-{schema} saev header; saev subtracted b_dec before encoding "
                "until 2025-07-31 and does not today. Loaded as saev loads it today; pass "
                "b_dec_on_input=True if it was trained before that change",
                stacklevel=3,
            )
        subtract = bool(b_dec_on_input)
        prov = base_provenance(self.name, path, schema=schema, source_architecture=cls)
        prov["b_dec_on_input"] = subtract
        prov.update({k: header[k] for k in ("commit", "lib") if k in header})
        pre = t["b_dec"] if subtract else None
        args = (t["W_enc"].t().contiguous(), t["b_enc"], t["W_dec"], t["b_dec"], pre, prov)
        if cls == "Relu":
            return assemble("relu", *args)
        if cls == "BatchTopK":
            return assemble(
                "batchtopk", *args, k=top_k, batch_threshold=float(t["activation.threshold"])
            )
        warnings.warn(
            f"{where}: saev's TopK keeps the k largest pre-activations even when negative; vsae's "
            "TopK applies ReLU to them. Codes agree whenever a sample has at least k positive "
            "pre-activations",
            stacklevel=3,
        )
        prov["notes"] = ["TopK: negative codes among the top k become 0 (vsae applies ReLU)"]
        return assemble("topk", *args, k=top_k)
