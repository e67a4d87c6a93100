"""Text forms of SAEs and edits, shared by the command line and the demo.

- ``DIR@BLOCK``: an SAE folder and the U-Net block it hooks (CONTRACTS.md); ``DIR`` alone uses
  the block its ``cfg.json`` provenance records.
- A latent: ``12``, ``#12`` or a concept name from the SAE's ``concepts.json``; ``I:REF`` picks
  the I-th ``--sae`` (default: the first).
- ``--steer REF=STRENGTH[@MASK.png]``, ``--clamp REF=VALUE``, ``--icon REF[=STRENGTH]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vsae.analysis.concepts import CONCEPTS_JSON, ConceptError, load_concepts, resolve
from vsae.sae.io import read_provenance

from .errors import InterventionError


@dataclass(frozen=True)
class SAERef:
    """A parsed ``DIR@BLOCK``.

    Attributes
    ----------
    path : Path
        The SAE folder or checkpoint.
    block : str
        The U-Net block.
    """

    path: Path
    block: str


def parse_sae_ref(text: str) -> SAERef:
    """Split ``DIR@BLOCK``; without ``@BLOCK`` the block is a vsae folder's provenance
    ``hookpoint``. ``DIR`` may be any checkpoint ``vsae.load`` reads (docs/interop.md).

    Parameters
    ----------
    text : str

    Returns
    -------
    SAERef

    Raises
    ------
    InterventionError
        A folder without ``cfg.json``, or no block given and none recorded.
    """
    path_text, _, block = text.rpartition("@") if "@" in text else (text, "", "")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise InterventionError(f"{path}: no such SAE folder or file; expected DIR@BLOCK")
    if not block and (path / "cfg.json").is_file():
        block = str(read_provenance(path).get("hookpoint") or "")
    if not block:
        raise InterventionError(
            f"{text}: name the U-Net block (DIR@BLOCK, e.g. {path}@mid_block.attentions.0); "
            "the SAE's cfg.json records none"
        )
    return SAERef(path, block)


def resolve_latent(ref: str, sae_dirs: list[Path], n_latents: list[int]) -> tuple[int, int]:
    """``[I:]ID|#ID|NAME`` -> (SAE index, latent id).

    Parameters
    ----------
    ref : str
        The reference.
    sae_dirs : list of Path
        The attached SAEs' folders (names are looked up in their ``concepts.json``).
    n_latents : list of int
        Their widths.

    Returns
    -------
    (int, int)

    Raises
    ------
    InterventionError
        An SAE index or latent id out of range, or an unknown name (with close matches).
    """
    text = ref.strip()
    sae = 0
    head, sep, tail = text.partition(":")
    if sep and head.isdigit():
        sae, text = int(head), tail
    if not 0 <= sae < len(sae_dirs):
        raise InterventionError(f"{ref}: SAE index {sae}; {len(sae_dirs)} --sae given")
    n = n_latents[sae]
    bare = text.lstrip("#")
    if bare.isdigit():
        latent = int(bare)
        if not 0 <= latent < n:
            raise InterventionError(f"{ref}: latent id {latent} out of range; expected 0..{n - 1}")
        return sae, latent
    if not (sae_dirs[sae] / CONCEPTS_JSON).is_file():
        raise InterventionError(
            f"{ref}: not a latent id, and {sae_dirs[sae]} has no {CONCEPTS_JSON} to look names "
            "up in (run `vsae concepts name` first)"
        )
    try:
        return sae, resolve(load_concepts(sae_dirs[sae]), text)
    except ConceptError as exn:
        raise InterventionError(f"{ref}: {exn}") from None


def split_value(text: str, what: str, default: float | None = None) -> tuple[str, float, str]:
    """``REF=NUMBER[@PATH]`` -> (REF, NUMBER, PATH or "").

    Parameters
    ----------
    text : str
    what : str
        The option, for messages (``--steer``).
    default : float, optional
        The number when ``=NUMBER`` is left out (None: it is required).

    Returns
    -------
    (str, float, str)

    Raises
    ------
    InterventionError
        A missing or non-numeric value.
    """
    body, _, mask = text.partition("@")
    ref, eq, value = body.partition("=")
    if not eq:
        if default is None:
            raise InterventionError(f"{what} {text!r}: expected REF=NUMBER")
        return ref, float(default), mask
    try:
        number = float(value)
    except ValueError:
        raise InterventionError(f"{what} {text!r}: {value!r} is not a number") from None
    return ref, number, mask


def parse_steps(text: str | None, num_steps: int) -> tuple[int, int] | None:
    """``A:B`` -> the schedule [A, B) of denoising steps (None: every step).

    Parameters
    ----------
    text : str or None
    num_steps : int
        Steps of the run.

    Returns
    -------
    (int, int) or None

    Raises
    ------
    InterventionError
        Not ``A:B`` of integers, or outside ``0 <= A < B <= num_steps``.
    """
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        lo, hi = int(a) if a else 0, int(b) if b else num_steps
    except ValueError:
        raise InterventionError(f"--steps {text!r}: expected A:B (integers)") from None
    if not sep or not 0 <= lo < hi <= num_steps:
        raise InterventionError(
            f"--steps {text!r} outside the schedule: need 0 <= A < B <= {num_steps}"
        )
    return lo, hi
