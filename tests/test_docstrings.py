"""The public API has numpy-style docstrings (DEVELOPING.md), checked by walking it.

For every public function, class, method and property of the listed modules: a docstring;
a ``Parameters`` section (``Attributes`` for a class's fields) when it takes arguments; a
``Returns`` (or ``Yields``) section when it is annotated to return something. Section headers
are numpy's: the name, then a line of dashes as long as it.

``MODULES`` is explicit. A module joins it when its docstrings are written; it never leaves.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
import typing

import pytest

# Every public module of these packages, plus vsae.__all__ (below).
MODULES = (
    "vsae",
    "vsae.config",
    "vsae.analysis",
    "vsae.analysis.concepts",
    "vsae.encoders",
    "vsae.encoders.base",
    "vsae.encoders.diffusers_pipeline",
    "vsae.encoders.diffusers_prompts",
    "vsae.encoders.diffusers_source",
    "vsae.encoders.hooks",
    "vsae.encoders.openclip_source",
    "vsae.encoders.timm_source",
    "vsae.encoders.weights_cache",
    "vsae.encoders.world_source",
    "vsae.interop",
    "vsae.interop.common",
    "vsae.interop.detect",
    "vsae.interop.hub",
    "vsae.interop.msae",
    "vsae.interop.overcomplete",
    "vsae.interop.saelens",
    "vsae.interop.saev",
    "vsae.interop.sparsify",
    "vsae.interop.unbox",
    "vsae.interop.vsae_folder",
    "vsae.extract",
    "vsae.metrics",
    "vsae.sae",
    "vsae.sae.archetypal",
    "vsae.sae.base",
    "vsae.sae.io",
    "vsae.sae.jumprelu",
    "vsae.sae.kmeans",
    "vsae.sae.losses",
    "vsae.sae.registry",
    "vsae.sae.relu",
    "vsae.sae.sparse",
    "vsae.sae.topk",
    "vsae.world",
    "vsae.world.build",
    "vsae.world.captions",
    "vsae.world.clip",
    "vsae.world.diffusion",
    "vsae.world.evaluate",
    "vsae.world.export",
    "vsae.world.pairs",
    "vsae.world.render",
    "vsae.world.scenes",
    "vsae.world.tokens",
    "vsae.world.vocab",
    "vsae.world.zeroshot",
)


def _section(doc: str, *names: str) -> bool:
    return any(re.search(rf"^\s*{name}\n\s*-{{{len(name)}}}\s*$", doc, re.M) for name in names)


def _takes_arguments(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return any(name not in ("self", "cls") for name in params)


def _returns_something(fn) -> bool:
    ann = inspect.signature(fn).return_annotation
    if ann is inspect.Signature.empty:
        return False
    return ann not in (None, "None", type(None), typing.NoReturn, "NoReturn")


def problems_of_function(qualname: str, fn, is_init: bool = False) -> list[str]:
    """What the docstring of one function or method lacks (empty when it is complete)."""
    doc = inspect.getdoc(fn)
    if not doc:
        return [f"{qualname}: no docstring"]
    out = []
    if _takes_arguments(fn) and not _section(doc, "Parameters"):
        out.append(f"{qualname}: takes arguments but its docstring has no Parameters section")
    if not is_init and _returns_something(fn) and not _section(doc, "Returns", "Yields"):
        out.append(f"{qualname}: returns a value but its docstring has no Returns section")
    return out


def _own_init(cls):
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return klass.__init__ if klass.__module__.startswith("vsae") else None
    return None


def problems_of_class(qualname: str, cls) -> list[str]:
    """What the docstrings of a class, its constructor and its public members lack."""
    doc = inspect.getdoc(cls)
    if not doc or doc == inspect.getdoc(cls.__mro__[1]):
        return [f"{qualname}: no docstring of its own"]
    out = []
    init = _own_init(cls)
    simple = issubclass(cls, (BaseException, enum.Enum)) and init is None
    if init is not None and not simple and _takes_arguments(init):
        init_doc = inspect.getdoc(init) or ""
        fields = dataclasses.is_dataclass(cls) and _section(doc, "Attributes")
        if not (_section(doc, "Parameters") or _section(init_doc, "Parameters") or fields):
            out.append(f"{qualname}: its constructor takes arguments but no Parameters section")
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        where = f"{qualname}.{name}"
        if isinstance(member, property):
            if not inspect.getdoc(member):
                out.append(f"{where}: property without a docstring")
        elif isinstance(member, (staticmethod, classmethod)):
            out += problems_of_function(where, member.__func__)
        elif inspect.isfunction(member):
            out += problems_of_function(where, getattr(cls, name))
    return out


def _public_members(module):
    """``__all__`` when the module has one, else the public names it defines itself."""
    exported = getattr(module, "__all__", None)
    for name in exported if exported is not None else list(vars(module)):
        obj = getattr(module, name)
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants are described in the module docstring
        if exported is None and obj.__module__ != module.__name__:
            continue  # imported from elsewhere: checked where it is defined
        yield name, obj


def problems_of_module(module_name: str) -> list[str]:
    """Every gap in the docstrings of one module's public functions and classes."""
    module = importlib.import_module(module_name)
    out = [] if inspect.getdoc(module) else [f"{module_name}: no module docstring"]
    for name, obj in _public_members(module):
        qualname = f"{module_name}.{name}"
        if inspect.isclass(obj):
            out += problems_of_class(qualname, obj)
        else:
            out += problems_of_function(qualname, obj)
    return out


@pytest.mark.parametrize("module_name", MODULES)
def test_module_public_api_has_numpy_docstrings(module_name):
    problems = problems_of_module(module_name)
    assert not problems, f"{len(problems)} docstring gaps:\n" + "\n".join(problems)
