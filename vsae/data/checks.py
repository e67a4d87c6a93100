"""Checks of activation data before it trains or evaluates anything: dtype, shape, finiteness.

Every data path (a ``.npy`` file, an in-memory array, a batch from a shard folder or an
iterable) goes through these functions, so bad data fails with one message that names the
file, the dtype, or the first non-finite row and column and how many rows are bad, instead of
training silently (integers, booleans, strings), emitting warnings (complex numbers) or
failing later with "the loss is nan". Non-finite rows can be dropped instead
(``skip_nonfinite=True``, the CLI's ``--skip-nonfinite``); the count is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# dtypes that hold activations; anything else is refused rather than cast silently
ACCEPTED_DTYPES = ("float16", "bfloat16", "float32", "float64")
NPY_MAGIC = b"\x93NUMPY"
_SCAN_ROWS = 65536  # rows read per chunk when scanning a (memory-mapped) array


class DataError(ValueError):
    """Activation data of the wrong type, shape or content; the message names where."""


def dtype_name(dtype: np.dtype | torch.dtype) -> str:
    """The dtype's short name: ``float32`` for both ``np.float32`` and ``torch.float32``.

    Parameters
    ----------
    dtype : numpy or torch dtype

    Returns
    -------
    str
    """
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return np.dtype(dtype).name


def check_dtype(dtype: np.dtype | torch.dtype, where: str) -> None:
    """Refuse a dtype that is not a real floating type.

    Parameters
    ----------
    dtype : numpy or torch dtype
    where : str
        The file or object named in the message.

    Raises
    ------
    DataError
        For integer, boolean, string, object or complex data (``ACCEPTED_DTYPES`` pass).
    """
    name = dtype_name(dtype)
    if name not in ACCEPTED_DTYPES:
        raise DataError(
            f"{where}: dtype {name} is not activation data; expected one of "
            f"{', '.join(ACCEPTED_DTYPES)} (convert it first, e.g. arr.astype('float32'))"
        )


def check_shape(shape: tuple[int, ...], where: str) -> None:
    """Refuse anything but a non-empty ``[N, D]`` array.

    Parameters
    ----------
    shape : tuple of int
    where : str
        The file or object named in the message.

    Raises
    ------
    DataError
        When the array is not 2-D, has no rows (``(0, D)``: the file is empty) or no columns.
    """
    if len(shape) != 2:
        raise DataError(f"{where}: array has shape {tuple(shape)}; expected [N, D]")
    if shape[0] == 0:
        raise DataError(f"{where}: the array is empty (shape {tuple(shape)}): it holds no rows")
    if shape[1] == 0:
        raise DataError(f"{where}: the array has no columns (shape {tuple(shape)})")


def open_npy(path: str | Path) -> np.ndarray:
    """Memory-map a ``.npy`` file of activations after checking its header, never unpickling.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file holding one ``[N, D]`` float array.

    Returns
    -------
    ndarray [N, D]
        Read-only memory map (values not yet checked: see :func:`check_array`).

    Raises
    ------
    DataError
        The file is missing, is not a numeric ``.npy`` array (e.g. a text or pickle file named
        ``.npy``, or an object array), has another shape than ``[N, D]``, is empty, or has a
        dtype outside ``ACCEPTED_DTYPES``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    not_numeric = f"{path}: not a numeric .npy array"
    with path.open("rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise DataError(f"{not_numeric} (no .npy header: a text or other file named .npy?)")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
        except ValueError as err:
            raise DataError(f"{not_numeric} (bad header: {err})") from None
    if dtype.hasobject:
        raise DataError(f"{not_numeric} (it holds Python objects, dtype {dtype})")
    check_shape(shape, str(path))
    check_dtype(dtype, str(path))
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # e.g. shorter than its header says
        raise DataError(f"{not_numeric} ({err})") from None


@dataclass(frozen=True)
class NonFinite:
    """Where the non-finite values of an array are.

    Attributes
    ----------
    bad_rows : ndarray of int64
        Indices of the rows holding NaN or inf, ascending.
    first_col : int
        Column of the first non-finite value in the first bad row.
    n_rows : int
        Rows scanned.
    """

    bad_rows: np.ndarray
    first_col: int
    n_rows: int

    @property
    def n_bad(self) -> int:
        """How many rows hold a non-finite value."""
        return int(len(self.bad_rows))

    def message(self, where: str) -> str:
        """The error text: file, first bad row and column, count, and the way out.

        Parameters
        ----------
        where : str
            The file or stream, as the message names it.

        Returns
        -------
        str
        """
        row = int(self.bad_rows[0])
        return (
            f"{where}: {self.n_bad} of {self.n_rows} rows hold NaN or inf values (the first: "
            f"row {row}, column {self.first_col}); fix the data, or drop those rows with "
            "--skip-nonfinite (skip_nonfinite=True)"
        )


def find_nonfinite(arr_ND: np.ndarray | Tensor) -> NonFinite | None:
    """Scan an array for NaN and inf, chunk by chunk (a memory map is read once).

    Parameters
    ----------
    arr_ND : ndarray or Tensor [N, D]
        Float data (see :func:`check_dtype`).

    Returns
    -------
    NonFinite or None
        None when every value is finite.
    """
    bad: list[np.ndarray] = []
    first_col = -1
    n = int(arr_ND.shape[0])
    for start in range(0, n, _SCAN_ROWS):
        chunk = arr_ND[start : start + _SCAN_ROWS]
        if isinstance(chunk, Tensor):
            finite_BD = torch.isfinite(chunk).cpu().numpy()
        else:
            finite_BD = np.isfinite(np.asarray(chunk))
        rows = np.flatnonzero(~finite_BD.all(axis=1))
        if len(rows) == 0:
            continue
        if first_col < 0:
            first_col = int(np.argmin(finite_BD[rows[0]]))
        bad.append(rows.astype(np.int64) + start)
    if not bad:
        return None
    return NonFinite(bad_rows=np.concatenate(bad), first_col=first_col, n_rows=n)


@dataclass(frozen=True)
class ArrayCheck:
    """The result of :func:`check_array`.

    Attributes
    ----------
    keep_rows : ndarray of int64 or None
        The rows to use when some were dropped (ascending); None: every row.
    n_dropped : int
        Rows dropped for non-finite values.
    """

    keep_rows: np.ndarray | None
    n_dropped: int


def check_array(
    arr_ND: np.ndarray | Tensor, where: str, skip_nonfinite: bool = False
) -> ArrayCheck:
    """Check a whole ``[N, D]`` array: shape, dtype and (one full scan) finiteness.

    Parameters
    ----------
    arr_ND : ndarray or Tensor [N, D]
        The data (a memory map is read once, in chunks).
    where : str
        The file or object named in messages.
    skip_nonfinite : bool
        Drop rows with NaN or inf (returned as ``keep_rows``) instead of raising.

    Returns
    -------
    ArrayCheck

    Raises
    ------
    DataError
        Bad shape or dtype; non-finite rows without ``skip_nonfinite`` (the message names the
        first bad row and column and the count); every row non-finite even with it.
    """
    check_shape(tuple(arr_ND.shape), where)
    check_dtype(arr_ND.dtype, where)
    found = find_nonfinite(arr_ND)
    if found is None:
        return ArrayCheck(keep_rows=None, n_dropped=0)
    if not skip_nonfinite:
        raise DataError(found.message(where))
    if found.n_bad == found.n_rows:
        raise DataError(f"{where}: every one of its {found.n_rows} rows holds NaN or inf")
    keep = np.setdiff1d(np.arange(found.n_rows, dtype=np.int64), found.bad_rows)
    return ArrayCheck(keep_rows=keep, n_dropped=found.n_bad)


def check_batch(x_BD: Tensor | np.ndarray, where: str, skip_nonfinite: bool = False) -> Tensor:
    """Check one batch of a stream (shard folder or iterable) and return it as a tensor.

    Parameters
    ----------
    x_BD : Tensor or ndarray [B, D]
    where : str
        The shard, sample or batch named in messages.
    skip_nonfinite : bool
        Return the batch without its non-finite rows instead of raising.

    Returns
    -------
    Tensor [B', D]
        The batch (the same object when nothing was dropped; B' < B rows when some were).

    Raises
    ------
    DataError
        Bad shape or dtype; non-finite rows without ``skip_nonfinite``.
    """
    x_BD = torch.as_tensor(x_BD)
    if x_BD.ndim != 2:
        raise DataError(f"{where}: batch has shape {tuple(x_BD.shape)}; expected [B, D]")
    check_dtype(x_BD.dtype, where)
    finite_B = torch.isfinite(x_BD).all(dim=1)
    if bool(finite_B.all()):
        return x_BD
    if not skip_nonfinite:
        found = find_nonfinite(x_BD)
        raise DataError(found.message(where))
    return x_BD[finite_B]


def check_metrics(metrics: Mapping[str, float], where: str) -> None:
    """Refuse non-finite metrics (they would be written as invalid JSON ``NaN``).

    Parameters
    ----------
    metrics : mapping of str to float
    where : str
        What was evaluated (the evaluation set, a file), named in the message.

    Raises
    ------
    DataError
        Naming the non-finite metrics.
    """
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        listed = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise DataError(
            f"{where}: non-finite metrics ({listed}); the evaluation rows or the model hold "
            "NaN or inf values"
        )


__all__ = [
    "ACCEPTED_DTYPES",
    "ArrayCheck",
    "DataError",
    "NonFinite",
    "check_array",
    "check_batch",
    "check_dtype",
    "check_metrics",
    "check_shape",
    "dtype_name",
    "find_nonfinite",
    "open_npy",
]
