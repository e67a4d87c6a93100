"""The layer rule holds by itself: no module imports a higher layer (docs/architecture.md).

Every module of ``vsae/`` and ``apps/`` is parsed with ``ast`` (not imported) and each import
statement is checked, including imports inside functions, ``TYPE_CHECKING`` blocks and relative
imports. A package may import itself and any package of a strictly lower rank; packages of the
same rank are independent. ``apps/`` may import only ``vsae.analysis`` and ``vsae.interventions``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; one entry per rank. docs/architecture.md shows the same table.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vsae.config", "vsae.metrics", "vsae.world"),
    ("vsae.sae",),
    ("vsae.data", "vsae.interop"),
    ("vsae.encoders",),
    ("vsae.training", "vsae.extract", "vsae.runconfig", "vsae.report"),
    ("vsae",),  # vsae/__init__.py: the public API of the layers below
    ("vsae.analysis",),
    ("vsae.interventions",),
    ("vsae.bench",),
    ("apps",),
    ("vsae.commands",),
    ("vsae.cli",),
    ("vsae.__main__",),  # python -m vsae
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
APPS_MAY_IMPORT = ("vsae.analysis", "vsae.interventions")


def unit_of(module: str) -> str | None:
    """The layer table entry a dotted module belongs to (None when it is in no entry)."""
    if module == "vsae":
        return "vsae"
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANK and prefix != "vsae":
            return prefix
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str, root: Path) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool, root: Path) -> list[tuple[int, str]]:
    """Every ``(line, dotted module)`` that ``source`` imports, relative imports resolved.

    ``from pkg import name`` yields ``pkg.name`` when that is a module under ``root`` (a
    subpackage, as in ``from vsae import world``) and ``pkg`` otherwise.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub, root) else base))
    return found


def violations(path: Path, root: Path) -> list[str]:
    """The imports of one file that break the layer rule, each naming module, line and import."""
    module = module_name(path, root)
    own = unit_of(module)
    if own is None:
        return [f"{module}: not in the layer table (add it to docs/architecture.md and LAYERS)"]
    found = imports_of(path.read_text(), module, path.name == "__init__.py", root)
    bad = []
    for line, target in found:
        top = target.split(".")[0]
        if top not in ("vsae", "apps"):
            continue  # third-party and standard library
        unit = unit_of(target)
        where = f"{module} (line {line}) imports {target}"
        if unit is None:
            bad.append(f"{where}: {target} is not in the layer table")
        elif unit == own:
            continue
        elif own == "apps" and unit not in APPS_MAY_IMPORT:
            bad.append(f"{where}: apps/ may import only {', '.join(APPS_MAY_IMPORT)}")
        elif RANK[unit] >= RANK[own] and own != "apps":
            what = "a higher layer" if RANK[unit] > RANK[own] else "a layer of the same rank"
            bad.append(f"{where}: {what} ({unit} is rank {RANK[unit]}, {own} is {RANK[own]})")
    return bad


def _sources() -> list[Path]:
    return sorted([*(ROOT / "vsae").rglob("*.py"), *(ROOT / "apps").rglob("*.py")])


def test_no_module_imports_a_higher_layer():
    paths = _sources()
    assert ROOT / "vsae" / "sae" / "base.py" in paths, f"no vsae sources under {ROOT}"
    assert ROOT / "apps" / "demo" / "app.py" in paths, f"no apps sources under {ROOT}"
    bad = [v for path in paths for v in violations(path, ROOT)]
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_docs_show_the_same_layers():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for rank, units in enumerate(LAYERS):
        row = f"| {rank} | " + ", ".join(f"`{u}`" for u in units) + " |"
        assert row in text, f"docs/architecture.md has no layer row {row!r}"


@pytest.fixture
def tree(tmp_path):
    """A throwaway package tree to check that the checker catches what it must."""

    def write(rel: str, text: str) -> Path:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    for pkg in ("vsae", "vsae/sae", "vsae/training", "vsae/analysis", "apps", "apps/demo"):
        write(f"{pkg}/__init__.py", "")
    write("vsae/config.py", "")
    return write


def test_checker_catches_an_import_inside_a_function(tree, tmp_path):
    path = tree("vsae/sae/io.py", "import os\n\ndef f():\n    from vsae.training import x\n")
    assert violations(path, tmp_path) == [
        "vsae.sae.io (line 4) imports vsae.training: a higher layer "
        "(vsae.training is rank 4, vsae.sae is 1)"
    ]


def test_checker_resolves_relative_and_subpackage_imports(tree, tmp_path):
    path = tree("vsae/sae/base.py", "from ..training import loop\nfrom vsae import analysis\n")
    bad = violations(path, tmp_path)
    assert [b.split(":")[0] for b in bad] == [
        "vsae.sae.base (line 1) imports vsae.training",
        "vsae.sae.base (line 2) imports vsae.analysis",
    ]
    ok = tree("vsae/training/t.py", "from ..sae import base\nfrom . import t\nimport vsae.config\n")
    assert violations(ok, tmp_path) == []


def test_checker_holds_apps_to_analysis_and_interventions(tree, tmp_path):
    path = tree("apps/demo/app.py", "from vsae.analysis import c\nfrom vsae.sae import b\n")
    assert violations(path, tmp_path) == [
        "apps.demo.app (line 2) imports vsae.sae: apps/ may import only "
        "vsae.analysis, vsae.interventions"
    ]


def test_checker_names_a_package_missing_from_the_table(tree, tmp_path):
    path = tree("vsae/newpkg/__init__.py", "")
    assert violations(path, tmp_path) == [
        "vsae.newpkg: not in the layer table (add it to docs/architecture.md and LAYERS)"
    ]
    user = tree("vsae/training/u.py", "import vsae.newpkg\n")
    assert "vsae.newpkg is not in the layer table" in violations(user, tmp_path)[0]
