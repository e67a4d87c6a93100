"""The activation-source interface shared by every encoder family."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch

TOKEN_MODES = ("cls", "patches", "all")
BLOCK_RE = re.compile(r"^blocks\.(\d+)$")


class SourceError(ValueError):
    """Bad source spec, hookpoint or option; the message names the value and what is valid."""


class ActivationSource:
    """An activation source: call it on a prepared batch to get {hookpoint: [N, T, D]}.

    Attributes
    ----------
    spec : str
        The spec string it was built from (``open_clip:ViT-B-32`` ...).
    pretrained : str or None
        Weights tag or local path (None: random weights).
    hookpoints : list of str
        Hookpoints this source returns, in order.
    d_out : dict
        Hookpoint -> vector dimension D.
    input_kind : str
        ``"image"`` (needs ``item.image``), ``"text"`` or ``"prompt"`` (needs ``item.text``).
    samples_per_input : int
        Samples produced per input (timesteps for diffusion; 1 otherwise). The output rows are
        input-major: row ``i * samples_per_input + j`` is input ``i``, sample ``j``.
    """

    spec: str = ""
    pretrained: str | None = None
    hookpoints: list[str]
    d_out: dict[str, int]
    input_kind: str = "image"
    samples_per_input: int = 1
    device: torch.device = torch.device("cpu")

    def prepare(self, items: Sequence[Any]) -> dict:
        """Turn a list of :class:`vsae.data.images.InputItem` into a model-ready batch."""
        raise NotImplementedError

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        """Run the model; return {hookpoint: float tensor [N, T, D]} on the CPU."""
        raise NotImplementedError

    def forward_bare(self, batch: dict) -> Any:
        """The plain model forward on the same batch, without hooks (benchmark baseline)."""
        raise NotImplementedError

    def sample_info(self, j: int) -> dict:
        """Extra JSON metadata of the ``j``-th sample of an input (e.g. its timestep)."""
        return {}

    def options(self) -> dict:
        """JSON-serialisable options that define the activations (stored in meta.json)."""
        return {}

    def describe(self) -> dict:
        """Source description for meta.json."""
        return {"source": self.spec, "pretrained": self.pretrained, "options": self.options()}


def parse_pretrained(pretrained: str | os.PathLike | None) -> str | None:
    """Normalise ``pretrained``: None / "none" / "" -> None; paths and tags as str."""
    if pretrained is None:
        return None
    s = str(pretrained)
    return None if s.strip().lower() in ("", "none", "random") else s


def check_tokens(tokens: str) -> str:
    """Validate a token mode (cls / patches / all)."""
    if tokens not in TOKEN_MODES:
        raise SourceError(f"tokens={tokens!r}; expected one of {TOKEN_MODES}")
    return tokens


def select_tokens(x_BLD: torch.Tensor, n_prefix: int, tokens: str, name: str) -> torch.Tensor:
    """Select CLS (first prefix token), patch tokens (after the prefix) or all tokens."""
    assert x_BLD.ndim == 3, x_BLD.shape
    if tokens == "cls":
        if n_prefix < 1:
            raise SourceError(f"{name}: the model has no class token; use tokens='patches'")
        return x_BLD[:, :1]
    if tokens == "patches":
        return x_BLD[:, n_prefix:]
    return x_BLD


def block_index(hookpoint: str, n_blocks: int, spec: str) -> int:
    """Parse ``blocks.<i>`` (negative i counts from the end) into a block index."""
    m = re.match(r"^blocks\.(-?\d+)$", hookpoint)
    if not m:
        raise SourceError(f"{spec}: unknown hookpoint {hookpoint!r}")
    i = int(m.group(1))
    i = i + n_blocks if i < 0 else i
    if not 0 <= i < n_blocks:
        raise SourceError(
            f"{spec}: hookpoint {hookpoint!r} out of range; the model has "
            f"{n_blocks} blocks (blocks.0 .. blocks.{n_blocks - 1})"
        )
    return i


class StopForward(Exception):
    """Raised by a hook to end a forward pass once every needed activation is captured."""


@contextlib.contextmanager
def capture_outputs(
    modules: dict[str, torch.nn.Module], stop_after: torch.nn.Module | None = None
) -> Iterator[dict[str, Any]]:
    """Forward hooks storing each module's output under its name while the context is open.

    With ``stop_after``, that module's hook raises :class:`StopForward` (the caller catches it)
    so that layers after the deepest needed block are not computed.
    """
    store: dict[str, Any] = {}
    handles = []
    for name, mod in modules.items():

        def hook(_m, _inp, out, name=name):
            store[name] = out[0] if isinstance(out, (tuple, list)) else out

        handles.append(mod.register_forward_hook(hook))
    if stop_after is not None:

        def stop(_m, _inp, _out):
            raise StopForward

        handles.append(stop_after.register_forward_hook(stop))
    try:
        yield store
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
