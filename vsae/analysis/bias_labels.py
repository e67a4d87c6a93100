"""Per-image attributes for the bias analysis: reading a labels file, matching it to images,
and the target (``attribute=value``) and group masks.

Three label formats are read:

- ``labels.jsonl`` (``vsae world export``): one JSON object per line with ``key`` and the
  attributes (string values; nested objects and the caption are ignored);
- CelebA's ``list_attr_celeba.txt``: a first line with the image count, a second line with
  the attribute names, then ``FILENAME v1 v2 ...`` rows (values ``-1`` / ``1``);
- a CSV with a header row whose first column (or a column named ``key``, ``image_id``,
  ``filename`` or ``image``) is the image's file name or key.

An image matches a label record by its key, its file name or its file stem.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

KEY_COLUMNS = ("key", "image_id", "filename", "image", "file")


class BiasError(ValueError):
    """Bad input to the bias analysis: labels, target, groups or probe that do not fit."""


def _jsonl(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise BiasError(f"{path} line {n}: not JSON ({err.msg})") from err
        if not isinstance(rec, dict) or "key" not in rec:
            raise BiasError(f"{path} line {n}: expected a JSON object with a 'key' field")
        out[str(rec["key"])] = {
            k: str(v)
            for k, v in rec.items()
            if k not in ("key", "caption") and isinstance(v, (str, int)) and not isinstance(v, bool)
        }
    return out


def _celeba(path: Path, lines: list[str]) -> dict[str, dict]:
    names = lines[1].split()
    out: dict[str, dict] = {}
    for n, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise BiasError(
                f"{path} line {n}: {len(parts) - 1} values for {len(names)} attributes "
                "(CelebA format: FILENAME then one value per attribute of line 2)"
            )
        out[parts[0]] = dict(zip(names, parts[1:], strict=True))
    return out


def _csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise BiasError(f"{path}: empty labels file")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    key_col = next((lower.index(k) for k in KEY_COLUMNS if k in lower), 0)
    out: dict[str, dict] = {}
    for n, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != len(header):
            raise BiasError(f"{path} line {n}: {len(row)} fields, the header has {len(header)}")
        out[row[key_col].strip()] = {
            h: v.strip() for i, (h, v) in enumerate(zip(header, row, strict=True)) if i != key_col
        }
    return out


def read_labels(path: str | Path) -> dict[str, dict]:
    """Read a labels file: ``labels.jsonl``, CelebA ``list_attr_celeba.txt`` or a CSV.

    Parameters
    ----------
    path : str or Path
        The file; ``.jsonl`` is read as JSON lines, a file whose first line is a single
        integer as CelebA's attribute list, anything else as a CSV with a header.

    Returns
    -------
    dict of str to dict
        Image key (as written in the file) -> attribute -> value (strings).

    Raises
    ------
    BiasError
        A missing, empty or malformed file (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise BiasError(f"labels file {path} does not exist")
    if path.suffix == ".jsonl":
        out = _jsonl(path)
    else:
        lines = path.read_text().splitlines()
        if len(lines) >= 2 and lines[0].strip().isdigit():
            out = _celeba(path, lines)
        else:
            out = _csv(path)
    if not out:
        raise BiasError(f"{path}: no label records")
    return out


def align_labels(keys: Sequence[str], table: dict[str, dict], source: str = "labels") -> list[dict]:
    """The label record of each image, matched by key, file name or file stem.

    Parameters
    ----------
    keys : sequence of str
        Image keys or paths, in data order.
    table : dict
        From :func:`read_labels`.
    source : str
        The labels file's name, for the error message.

    Returns
    -------
    list of dict
        One record per key.

    Raises
    ------
    BiasError
        When an image has no record; the message names the first missing key and how many
        are missing.
    """
    by_name: dict[str, dict] = {}
    for k, v in table.items():
        by_name.setdefault(Path(k).name, v)
        by_name.setdefault(Path(k).stem, v)
    out, missing = [], []
    for key in keys:
        rec = table.get(key)
        if rec is None:
            rec = by_name.get(Path(key).name, by_name.get(Path(key).stem))
        if rec is None:
            missing.append(key)
            rec = {}
        out.append(rec)
    if missing:
        example = next(iter(table))
        raise BiasError(
            f"{source} does not cover the images: no record for {missing[0]!r} "
            f"({len(missing)} of {len(keys)} images missing); expected a record whose key is "
            f"the image's key, file name or stem (the file has keys like {example!r})"
        )
    return out


def parse_target(text: str) -> tuple[str, str]:
    """Split ``attribute=value`` (``shape=circle``, ``Blond_Hair=1``).

    Parameters
    ----------
    text : str

    Returns
    -------
    (str, str)
        The attribute and the value.

    Raises
    ------
    BiasError
        When the text is not of that form.
    """
    attr, sep, value = text.partition("=")
    if not sep or not attr.strip() or not value.strip():
        raise BiasError(
            f"target {text!r}: expected ATTRIBUTE=VALUE, e.g. shape=circle or Blond_Hair=1"
        )
    return attr.strip(), value.strip()


def target_mask(labels: Sequence[dict], target: str) -> np.ndarray:
    """Whether each image has the target value.

    Parameters
    ----------
    labels : sequence of dict
        Per-image attributes.
    target : str
        ``attribute=value``.

    Returns
    -------
    np.ndarray of bool [N]

    Raises
    ------
    BiasError
        An attribute some image lacks, a value that never occurs (the message lists the
        values seen), or a value every image has (nothing to classify).
    """
    attr, value = parse_target(target)
    seen = Counter()
    for i, lab in enumerate(labels):
        if attr not in lab:
            have = sorted(lab)
            raise BiasError(
                f"target attribute {attr!r} missing from the labels of image {i}; "
                f"its attributes are {have}"
            )
        seen[str(lab[attr])] += 1
    if value not in seen:
        raise BiasError(
            f"target value {attr}={value!r} never occurs in the {len(labels)} images; "
            f"values of {attr!r} seen: {sorted(seen)}"
        )
    if seen[value] == len(labels):
        raise BiasError(f"target {attr}={value}: every image has it, so there is no negative class")
    return np.array([str(lab[attr]) == value for lab in labels], dtype=bool)


def group_values(labels: Sequence[dict], group: str) -> list[str]:
    """Each image's value of the group attribute.

    Parameters
    ----------
    labels : sequence of dict
    group : str
        An attribute name.

    Returns
    -------
    list of str

    Raises
    ------
    BiasError
        When an image lacks the attribute.
    """
    out = []
    for i, lab in enumerate(labels):
        if group not in lab:
            raise BiasError(
                f"group attribute {group!r} missing from the labels of image {i}; "
                f"its attributes are {sorted(lab)}"
            )
        out.append(str(lab[group]))
    return out


def group_names(labels: Sequence[dict], target: str, group: str | None) -> list[str]:
    """The evaluation group of each image: ``GROUPVALUE|TARGET`` or ``...|not TARGET``.

    Without a group attribute the groups are the target's two classes.

    Parameters
    ----------
    labels : sequence of dict
    target : str
        ``attribute=value``.
    group : str or None
        Group attribute.

    Returns
    -------
    list of str
        E.g. ``"red|circle"`` and ``"red|not circle"`` for target ``shape=circle`` and group
        ``colour``.
    """
    _, value = parse_target(target)
    pos = target_mask(labels, target)
    cls = [value if p else f"not {value}" for p in pos]
    if group is None:
        return cls
    return [f"{g}|{c}" for g, c in zip(group_values(labels, group), cls, strict=True)]
