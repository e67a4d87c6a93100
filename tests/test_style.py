"""Style cannot drift: ``ruff check`` and ``ruff format --check`` over the repository.

Both run with the ruff that is installed next to this interpreter (the dev extra pins the
version, so every machine formats the same way). A failure shows ruff's own report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_is_the_pinned_version():
    # A regex, not tomllib: the package supports Python 3.10, which has no tomllib.
    pinned = re.findall(r'"ruff==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert len(pinned) == 1, f"pyproject.toml must pin ruff exactly once, got {pinned}"
    out = _ruff("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ruff", pinned[0]], (
        f"installed {out.stdout.strip()!r}, pyproject pins ruff=={pinned[0]}: run scripts/setup.sh"
    )


def test_ruff_check_is_clean():
    out = _ruff("check", "--no-cache", "--output-format", "concise", ".")
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"


def test_ruff_format_is_clean():
    out = _ruff("format", "--check", "--no-cache", ".")
    assert out.returncode == 0, (
        f"ruff format --check: these files need `ruff format`:\n{out.stdout}{out.stderr}"
    )
