"""Forward hooks on diffusers ``Transformer2DModel`` blocks, shared by extraction and edits.

A **read** hook captures a block's input and output; a **write** hook replaces a block's output
by ``fn(input, output)``. Both see tensors [B, C, H, W] (the block's own layout) and always
remove themselves when their ``with`` block exits, also on an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

EditFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BlockError(ValueError):
    """A block name that is not a ``Transformer2DModel`` of the U-Net."""


def is_transformer2d(module: torch.nn.Module) -> bool:
    """Whether a module is a diffusers ``Transformer2DModel`` (by class name: no import).

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    bool
    """
    return type(module).__name__ == "Transformer2DModel"


def transformer_blocks(unet: torch.nn.Module) -> list[str]:
    """Names of every ``Transformer2DModel`` inside ``unet``, in module order.

    Parameters
    ----------
    unet : torch.nn.Module
        A diffusers ``UNet2DConditionModel`` (or any module holding such blocks).

    Returns
    -------
    list of str
        E.g. ``["down_blocks.1.attentions.0", ..., "mid_block.attentions.0", ...]``.
    """
    return [n for n, m in unet.named_modules() if is_transformer2d(m)]


def resolve_blocks(unet: torch.nn.Module, names: Sequence[str], where: str) -> dict:
    """Map block names to their modules.

    Parameters
    ----------
    unet : UNet2DConditionModel
        The U-Net.
    names : list of str
        Module names such as ``mid_block.attentions.0``.
    where : str
        Prefix of error messages (the spec).

    Returns
    -------
    dict
        name -> ``Transformer2DModel`` module.

    Raises
    ------
    BlockError
        A name that is not a ``Transformer2DModel`` of ``unet``; the valid names are listed.
    """
    modules = dict(unet.named_modules())
    for name in names:
        if name not in modules or not is_transformer2d(modules[name]):
            raise BlockError(
                f"{where}: {name!r} is not a Transformer2DModel block; "
                f"valid: {transformer_blocks(unet)}"
            )
    return {name: modules[name] for name in names}


def block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``hidden_states`` a block was called with.

    Parameters
    ----------
    args : tuple
        The positional arguments of the call.
    kwargs : dict
        Its keyword arguments.

    Returns
    -------
    Tensor
        [B, C, H, W].
    """
    return args[0] if args else kwargs["hidden_states"]


def block_output(out: Any) -> torch.Tensor:
    """The tensor a block returned.

    Parameters
    ----------
    out : Transformer2DModelOutput or tuple
        The block's return value.

    Returns
    -------
    Tensor
        ``out.sample``, or the first element of a tuple; [B, C, H, W].
    """
    return out.sample if hasattr(out, "sample") else out[0]


def replace_output(out: Any, new: torch.Tensor) -> Any:
    """The block's return value with its tensor replaced by ``new`` (same container type).

    Parameters
    ----------
    out : Transformer2DModelOutput or tuple
        The block's return value.
    new : Tensor
        The replacement, [B, C, H, W].

    Returns
    -------
    Transformer2DModelOutput or tuple
        ``out`` itself with ``.sample`` set, or a new tuple.
    """
    if hasattr(out, "sample"):
        out.sample = new
        return out
    return (new, *tuple(out)[1:])


class ReadHook:
    """Capture each call's (input, output) of one block: ``with ReadHook(m, fn): ...``.

    Parameters
    ----------
    module : torch.nn.Module
        The block.
    fn : callable
        Called as ``fn(x_in_BCHW, x_out_BCHW)`` after every forward of the block.
    """

    def __init__(self, module: torch.nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], None]):
        self.module, self.fn, self.handle = module, fn, None

    def _hook(self, _m, args, kwargs, out):
        self.fn(block_input(args, kwargs), block_output(out))

    def __enter__(self) -> ReadHook:
        self.handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


class WriteHook(ReadHook):
    """Replace one block's output by ``fn(x_in_BCHW, x_out_BCHW)`` while active.

    The base of steering, ablation and unlearning edits: ``with WriteHook(block, fn):``.
    A result of another shape raises ``ValueError`` inside the forward pass.

    Parameters
    ----------
    module : torch.nn.Module
        The block.
    fn : callable
        ``fn(x_in_BCHW, x_out_BCHW) -> new_out_BCHW``, same shape as the output (cast to its
        dtype).
    """

    def __init__(self, module: torch.nn.Module, fn: EditFn):
        super().__init__(module, fn)

    def _hook(self, _m, args, kwargs, out):
        x_in, x_out = block_input(args, kwargs), block_output(out)
        new = self.fn(x_in, x_out)
        if new.shape != x_out.shape:
            raise ValueError(f"edit returned shape {tuple(new.shape)}, block {tuple(x_out.shape)}")
        return replace_output(out, new.to(x_out.dtype))
