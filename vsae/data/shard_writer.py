"""Resumable writer of activation shards (atomic renames, streaming statistics)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checks import DataError, find_nonfinite
from .shard_format import (
    AUTO_COMPRESS_BELOW,
    FORMAT_VERSION,
    FP16_MAX,
    META_NAME,
    SHARD_PATTERN,
    STATE_NAME,
    STORE_DTYPE,
    RunningStats,
    ShardError,
    encode_array,
    field_name,
    shard_name,
    write_json_atomic,
)


@dataclass
class _Pending:
    """Counters of the shard being written (not yet committed)."""

    n_samples: int = 0
    last_input: int = -1
    stats: dict = field(default_factory=dict)
    n_vectors: dict = field(default_factory=dict)
    n_clamped: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


class ActivationWriter:
    """Write activation samples to resumable WebDataset shards.

    A shard is written to ``shard-NNNNNN.tar.partial`` and renamed to ``.tar`` only when complete;
    ``writer_state.json`` is then updated atomically and is the source of truth on resume. A shard
    closes at the first input boundary after ``shard_size`` samples, so the samples of one input
    (e.g. several timesteps of one prompt) never straddle two shards.

    Parameters
    ----------
    out_dir : path
        Output directory (created).
    hookpoints : dict
        Hookpoint name -> dimension D.
    shard_size : int
        Samples per shard (a shard may exceed it by fewer than samples-per-input).
    info : dict
        Recorded in meta.json: ``source``, ``pretrained``, ``options`` and anything else.
    resume : bool
        Continue an existing dataset in ``out_dir`` (its hookpoints/source must match). If False
        and ``out_dir`` already holds shards, a ``FileExistsError`` is raised.
    compress : bool or None
        gzip the tars (``.tar.gz``; any tar reader opens them). None: decided on the first sample,
        compressing when its arrays total < 16 KiB, where the 512-byte tar headers and padding of
        each member would otherwise cost more than the half-precision saving.
    """

    def __init__(
        self,
        out_dir,
        hookpoints: dict[str, int],
        shard_size: int = 1000,
        info: dict | None = None,
        resume: bool = True,
        compress: bool | None = None,
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if not hookpoints:
            raise ValueError("hookpoints is empty")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.hookpoints = {str(k): int(v) for k, v in hookpoints.items()}
        self.fields = {hp: field_name(hp) for hp in self.hookpoints}
        if len(set(self.fields.values())) != len(self.fields):
            raise ValueError(f"hookpoint names collide after sanitising: {self.fields}")
        self.shard_size = int(shard_size)
        self.info = dict(info or {})
        self._tar = None
        self._file = None
        self._pending = _Pending()
        self._compress_arg = compress
        self.state = self._load_or_init_state(resume)

    # -- state ------------------------------------------------------------------------------

    def _fresh_state(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "hookpoints": self.hookpoints,
            "identity": self._identity(),
            "shards": [],
            "compress": None,
            "input_next": 0,
            "n_samples": 0,
            "stats": {hp: RunningStats(d).to_json() for hp, d in self.hookpoints.items()},
            "n_vectors": {hp: 0 for hp in self.hookpoints},
            "n_clamped": {hp: 0 for hp in self.hookpoints},
            "skipped": [],
            "complete": False,
        }

    def _identity(self) -> dict:
        # "data" (vsae.data.input_identity) and "data_spec" (its name, for messages) are set by
        # vsae.extract; resuming or reusing a folder with other data is refused
        keys = ("source", "pretrained", "options", "data", "data_spec")
        return {k: self.info.get(k) for k in keys}

    def _check_identity(self, state_path: Path, saved: dict, state: dict) -> None:
        """Refuse to continue a dataset made by another source or from other data."""
        now = json.loads(json.dumps(self._identity()))
        saved = dict(saved or {})
        saved.setdefault("data", None)  # folders written before the data was recorded
        saved.setdefault("data_spec", None)
        if saved["data"] is None:
            now["data"] = None
        if saved["data"] != now["data"]:
            what = "complete" if state.get("complete") else "interrupted"
            raise ValueError(
                f"{self.out_dir} holds an {what} extraction of --data {saved['data_spec']} "
                f"({saved['data']}); this run's --data is {now['data_spec']} ({now['data']}); "
                "refusing to mix datasets: use another --out, or the same --data"
            )
        keys = ("source", "pretrained", "options")
        if {k: saved.get(k) for k in keys} != {k: now[k] for k in keys}:
            raise ValueError(
                f"{state_path}: source { ({k: saved.get(k) for k in keys}) } differs from this "
                f"run's { ({k: now[k] for k in keys}) }; cannot resume"
            )

    def _load_or_init_state(self, resume: bool) -> dict:
        state_path = self.out_dir / STATE_NAME
        existing = sorted(p.name for p in self.out_dir.iterdir() if SHARD_PATTERN.match(p.name))
        for p in self.out_dir.glob("*.partial"):
            p.unlink()  # a partial shard is never complete
        if not state_path.is_file():
            if existing:
                raise FileExistsError(
                    f"{self.out_dir} holds shards ({existing[0]}, ...) but no {STATE_NAME}; "
                    "choose an empty directory"
                )
            return self._fresh_state()
        if not resume:
            raise FileExistsError(
                f"{self.out_dir} already holds an activation dataset; continue it with "
                "resume=True (the CLI's default: drop --no-resume) or choose another directory"
            )
        state = json.loads(state_path.read_text())
        if state.get("hookpoints") != self.hookpoints:
            raise ValueError(
                f"{state_path}: hookpoints {state.get('hookpoints')} differ from this run's "
                f"{self.hookpoints}; cannot resume"
            )
        self._check_identity(state_path, state.get("identity"), state)
        committed = {s["name"] for s in state["shards"]}
        for name in existing:  # renamed but never committed: killed between rename and state
            if name not in committed:
                (self.out_dir / name).unlink()
        for name in committed:
            if not (self.out_dir / name).is_file():
                raise ShardError(f"{self.out_dir / name}: listed in {STATE_NAME} but missing")
        return state

    @property
    def input_next(self) -> int:
        """Index of the first input not yet covered by a committed shard."""
        return int(self.state["input_next"])

    @property
    def complete(self) -> bool:
        """True once :meth:`finish` has committed the last shard."""
        return bool(self.state["complete"])

    # -- writing ----------------------------------------------------------------------------

    def _open_shard(self) -> None:
        import webdataset as wds

        name = shard_name(len(self.state["shards"]), bool(self.state["compress"]))
        self._file = open(self.out_dir / (name + ".partial"), "wb")
        # integer mtime: a float one makes tarfile add a 1 KiB PAX header to every member
        self._tar = wds.TarWriter(
            self._file, encoder=False, mtime=0, compress=bool(self.state["compress"])
        )
        old = self._pending  # skips recorded before the shard opened stay with it
        self._pending = _Pending(
            last_input=old.last_input,
            skipped=old.skipped,
            stats={hp: RunningStats(d) for hp, d in self.hookpoints.items()},
            n_vectors={hp: 0 for hp in self.hookpoints},
            n_clamped={hp: 0 for hp in self.hookpoints},
        )

    def skip(self, input_index: int, key: str, error: str) -> None:
        """Record an input that could not be read (reported in meta.json).

        Parameters
        ----------
        input_index : int
            The input's position in the input order.
        key : str
            Its source key (path, URL or shard key).
        error : str
            Why it was skipped.
        """
        self._pending.skipped.append({"input_index": int(input_index), "key": key, "error": error})
        self._pending.last_input = max(self._pending.last_input, int(input_index))

    def add(
        self,
        input_index: int,
        arrays: dict[str, np.ndarray | torch.Tensor],
        info: dict | None = None,
    ) -> None:
        """Append one sample.

        Parameters
        ----------
        input_index : int
            Position of the input in the (deterministic) input order; used for resume.
        arrays : dict
            Hookpoint -> array [T, D] (or [D]); stored as float16 (finite values beyond
            +-65504 are clamped and counted in meta.json ``n_clamped``).
        info : dict
            JSON-serialisable per-sample metadata (source key, caption, labels, timestep ...).

        Raises
        ------
        DataError
            An array holds NaN or inf (never stored: a shard folder holds finite values only).
        """
        if set(arrays) != set(self.hookpoints):
            raise ValueError(
                f"sample has hookpoints {sorted(arrays)}, expected {sorted(self.hookpoints)}"
            )
        p = self._pending
        if self._tar is not None and p.n_samples >= self.shard_size and input_index != p.last_input:
            self._commit(input_next=p.last_input + 1)
        if self.state["compress"] is None:
            if self._compress_arg is None:
                size = sum(np.asarray(a).size for a in arrays.values()) * 2
                self.state["compress"] = size < AUTO_COMPRESS_BELOW
            else:
                self.state["compress"] = bool(self._compress_arg)
        if self._tar is None:
            self._open_shard()
            p = self._pending
        sample = {"__key__": f"{self.state['n_samples'] + p.n_samples:09d}"}
        meta = {"input_index": int(input_index), **(info or {})}
        sample["json"] = json.dumps(meta).encode()
        for hp, arr in arrays.items():
            if isinstance(arr, torch.Tensor):
                arr = arr.detach().float().cpu().numpy()
            arr = np.asarray(arr)
            if arr.ndim == 1:
                arr = arr[None]
            d = self.hookpoints[hp]
            if arr.ndim != 2 or arr.shape[1] != d:
                raise ValueError(f"hookpoint {hp!r}: array shape {arr.shape}, expected [T, {d}]")
            found = find_nonfinite(arr)
            if found is not None:
                key = (info or {}).get("source_key", f"input {input_index}")
                raise DataError(
                    f"{key} (input {input_index}): the {hp!r} activations hold NaN or inf "
                    f"({found.n_bad} of {found.n_rows} rows; the first: row "
                    f"{int(found.bad_rows[0])}, column {found.first_col}); refusing to store "
                    "them (the shards already committed are kept)"
                )
            over = np.abs(arr) > FP16_MAX
            if over.any():
                p.n_clamped[hp] += int(over.sum())
                arr = np.clip(arr, -FP16_MAX, FP16_MAX)
            half = arr.astype(STORE_DTYPE)
            p.stats[hp].update(half)
            p.n_vectors[hp] += half.shape[0]
            sample[self.fields[hp] + ".npy"] = encode_array(half)
        self._tar.write(sample)
        p.n_samples += 1
        p.last_input = max(p.last_input, int(input_index))

    def _commit(self, input_next: int) -> None:
        p = self._pending
        name = shard_name(len(self.state["shards"]), bool(self.state["compress"]))
        if self._tar is not None:
            self._tar.close()  # closes self._file too
            self._tar = None
            self._file = None
        partial = self.out_dir / (name + ".partial")
        state = self.state
        if p.n_samples > 0:
            with open(partial, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(partial, self.out_dir / name)
            state["shards"].append(
                {
                    "name": name,
                    "n_samples": p.n_samples,
                    "n_vectors": dict(p.n_vectors),
                    "input_start": state["input_next"],
                    "input_end": int(input_next),
                }
            )
        elif partial.exists():
            partial.unlink()
        for hp in self.hookpoints:
            if hp not in p.stats:  # only skips since the last commit
                continue
            st = RunningStats.from_json(state["stats"][hp])
            st.merge(p.stats[hp])
            state["stats"][hp] = st.to_json()
            state["n_vectors"][hp] += p.n_vectors[hp]
            state["n_clamped"][hp] += p.n_clamped[hp]
        state["n_samples"] += p.n_samples
        state["skipped"].extend(p.skipped)
        state["input_next"] = int(input_next)
        write_json_atomic(self.out_dir / STATE_NAME, state)
        write_json_atomic(self.out_dir / META_NAME, self.meta())
        self._pending = _Pending()

    def finish(self, input_next: int | None = None) -> dict:
        """Commit the last shard, mark the dataset complete and return meta.json's content.

        Parameters
        ----------
        input_next : int, optional
            The index of the next input after this dataset (default: one past the last added
            or skipped input).

        Returns
        -------
        dict
            The content of meta.json (:meth:`meta`).
        """
        p = self._pending
        end = input_next if input_next is not None else max(p.last_input + 1, self.input_next)
        if self._tar is not None or p.skipped or end != self.input_next:
            self._commit(input_next=end)
        self.state["complete"] = True
        write_json_atomic(self.out_dir / STATE_NAME, self.state)
        meta = self.meta()
        write_json_atomic(self.out_dir / META_NAME, meta)
        return meta

    def abort(self) -> None:
        """Close and delete the shard in progress (committed shards stay)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        for p in self.out_dir.glob("*.partial"):
            p.unlink()

    def meta(self) -> dict:
        """The public dataset description (what meta.json holds).

        Returns
        -------
        dict
            Format version, source, dtype, hookpoints (d, field, n_vectors, mean, scale, ...),
            shards, counts, skipped inputs and extra info.
        """
        st = self.state
        hps = {}
        for hp, d in self.hookpoints.items():
            rs = RunningStats.from_json(st["stats"][hp])
            hps[hp] = {
                "d": d,
                "field": self.fields[hp] + ".npy",
                "n_vectors": st["n_vectors"][hp],
                "mean": rs.mean().tolist(),
                "scale": rs.scale(),
                "mean_sq_dist": rs.mean_sq_dist(),
                "n_clamped": st["n_clamped"][hp],
            }
        return {
            "format_version": FORMAT_VERSION,
            "source": self.info.get("source"),
            "pretrained": self.info.get("pretrained"),
            "options": self.info.get("options"),
            "dtype": np.dtype(STORE_DTYPE).name,
            "compression": "gzip" if st["compress"] else None,
            "normalisation": "x_norm = (x - mean) * scale, with E||x_norm||^2 = d",
            "hookpoints": hps,
            "n_samples": st["n_samples"],
            "n_inputs": st["input_next"],
            "shard_size": self.shard_size,
            "shards": st["shards"],
            "n_skipped": len(st["skipped"]),
            "skipped": st["skipped"],
            "complete": st["complete"],
            "extra": {
                k: v for k, v in self.info.items() if k not in ("source", "pretrained", "options")
            },
        }
