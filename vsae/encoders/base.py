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
        """Turn input items into a model-ready batch.

        Parameters
        ----------
        items : sequence of vsae.data.images.InputItem
            Images (``item.image``, PIL) or texts / prompts (``item.text``), as
            ``input_kind`` says.

        Returns
        -------
        dict
            What ``__call__`` and ``forward_bare`` take (pixel tensors, token ids, ...).

        Raises
        ------
        SourceError
            When an item lacks what this source reads.
        """
        raise NotImplementedError

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        """Run the model and capture every hookpoint.

        Parameters
        ----------
        batch : dict
            A batch from ``prepare``.

        Returns
        -------
        dict of str to Tensor
            Hookpoint -> float tensor [N * samples_per_input, T, D] on the CPU (T tokens
            per sample: 1 for pooled embeddings, spatial positions for U-Net blocks).
        """
        raise NotImplementedError

    def forward_bare(self, batch: dict) -> Any:
        """The plain model forward on the same batch, without hooks (benchmark baseline).

        Parameters
        ----------
        batch : dict
            A batch from ``prepare``.

        Returns
        -------
        Any
            Whatever the model returns; only its cost matters.
        """
        raise NotImplementedError

    def sample_info(self, j: int) -> dict:
        """Extra JSON metadata of the ``j``-th sample of an input (e.g. its timestep).

        Parameters
        ----------
        j : int
            0 <= j < ``samples_per_input``.

        Returns
        -------
        dict
            Empty for one-sample sources.
        """
        return {}

    def options(self) -> dict:
        """JSON-serialisable options that define the activations (stored in meta.json).

        Returns
        -------
        dict
            Option name -> value (token mode, timesteps, guidance, ...).
        """
        return {}

    def describe(self) -> dict:
        """Source description for meta.json.

        Returns
        -------
        dict
            ``source`` (the spec), ``pretrained`` and ``options``.
        """
        return {"source": self.spec, "pretrained": self.pretrained, "options": self.options()}


def parse_pretrained(pretrained: str | os.PathLike | None) -> str | None:
    """Normalise ``pretrained``: None / "none" / "random" / "" -> None; paths and tags as str.

    Parameters
    ----------
    pretrained : str, path or None
        A weights tag, a local checkpoint path, or one of the random-weights spellings.

    Returns
    -------
    str or None
        None means random weights.
    """
    if pretrained is None:
        return None
    s = str(pretrained)
    return None if s.strip().lower() in ("", "none", "random") else s


def check_tokens(tokens: str) -> str:
    """Validate a token mode.

    Parameters
    ----------
    tokens : str
        ``cls`` (the class token), ``patches`` (every patch token) or ``all``.

    Returns
    -------
    str
        ``tokens`` itself.

    Raises
    ------
    SourceError
        For any other value.
    """
    if tokens not in TOKEN_MODES:
        raise SourceError(f"tokens={tokens!r}; expected one of {TOKEN_MODES}")
    return tokens


def select_tokens(x_BLD: torch.Tensor, n_prefix: int, tokens: str, name: str) -> torch.Tensor:
    """Select CLS (first prefix token), patch tokens (after the prefix) or all tokens.

    Parameters
    ----------
    x_BLD : Tensor
        Token activations [B, L, D] of a ViT block.
    n_prefix : int
        Prefix tokens before the patches (class and register tokens).
    tokens : str
        ``cls``, ``patches`` or ``all``.
    name : str
        The model's name, for the message.

    Returns
    -------
    Tensor
        [B, 1, D], [B, L - n_prefix, D] or [B, L, D].

    Raises
    ------
    ValueError
        When ``x_BLD`` is not 3-D.
    SourceError
        ``cls`` on a model without a class token.
    """
    if x_BLD.ndim != 3:
        raise ValueError(
            f"{name}: token activations have shape {tuple(x_BLD.shape)}; expected [B, L, D]"
        )
    if tokens == "cls":
        if n_prefix < 1:
            raise SourceError(f"{name}: the model has no class token; use tokens='patches'")
        return x_BLD[:, :1]
    if tokens == "patches":
        return x_BLD[:, n_prefix:]
    return x_BLD


def block_index(hookpoint: str, n_blocks: int, spec: str) -> int:
    """Parse ``blocks.<i>`` (negative i counts from the end) into a block index.

    Parameters
    ----------
    hookpoint : str
        ``blocks.<i>``.
    n_blocks : int
        Blocks in the model.
    spec : str
        The source spec, for the message.

    Returns
    -------
    int
        0 <= index < ``n_blocks``.

    Raises
    ------
    SourceError
        When the hookpoint is not ``blocks.<i>`` or i is out of range.
    """
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

    With ``stop_after``, that module's hook raises :class:`StopForward` (caught when it
    leaves the ``with`` body) so that layers after the deepest needed block are not computed.

    Parameters
    ----------
    modules : dict of str to torch.nn.Module
        Name -> module whose output to keep (the first element of a tuple output).
    stop_after : torch.nn.Module, optional
        The module after which the forward pass stops.

    Yields
    ------
    dict of str to Any
        Filled with name -> output as the forward pass runs; the hooks are removed on exit.
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
