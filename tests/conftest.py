"""Shared fixtures: small synthetic data and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Tests default to both cores; VSAE_TEST_THREADS=1 avoids oversubscription on a busy machine.
torch.set_num_threads(int(os.environ.get("VSAE_TEST_THREADS", "2")))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m vsae ARGS`` and return the completed process (text output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vsae", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def flat_data():
    """A flat synthetic dataset: 128 true features in 32 dims, ~4 active per sample."""
    from vsae.data.synthetic import SyntheticConfig, generate

    return generate(SyntheticConfig(d=32, n_features=128, n_samples=24_000, active=4, offset=2.0))


@pytest.fixture(scope="module")
def page():
    """A headless Chromium page (Debian's chromium through playwright), one per test module."""
    from tests.browser import CHROMIUM, browser_page

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    with browser_page() as p:
        yield p


@pytest.fixture(scope="session")
def world_sae_dir(tmp_path_factory):
    """The shared tiny-world SAE of ``tests/world_sae.py`` (trained once per session, ~15 s;
    ``$VSAE_TEST_CACHE`` keeps it between sessions while developing)."""
    from tests.world_sae import world_sae

    keep = os.environ.get("VSAE_TEST_CACHE")
    return world_sae(Path(keep) if keep else tmp_path_factory.mktemp("world_sae"))


@pytest.fixture(scope="session")
def demo_world_sae(world_sae_dir, tmp_path_factory):
    """``(sae_dir, cache)``: the world SAE with provenance, ground-truth concept names and its
    demo gallery encoded (``tests/demo_world.py``); shared by the demo's tests."""
    from tests.demo_world import named_world_sae

    return named_world_sae(world_sae_dir, tmp_path_factory.mktemp("demo_world"))


@pytest.fixture(scope="session")
def demo_block_sae(tmp_path_factory):
    """``DIR@BLOCK``: a small SAE on the tiny U-Net's block, by the demo's first-start recipe."""
    from tests.demo_world import world_block_sae

    keep = os.environ.get("VSAE_TEST_CACHE")
    return world_block_sae(Path(keep) / "block" if keep else tmp_path_factory.mktemp("block"))


@pytest.fixture(scope="session")
def demo_bias_set(tmp_path_factory):
    """A bias set folder for the demo's Bias tab: the first-start biased tiny-world recipe with
    smaller splits (``tests/demo_world.py``)."""
    from tests.demo_world import world_bias_set

    keep = os.environ.get("VSAE_TEST_CACHE")
    return world_bias_set(Path(keep) / "bias" if keep else tmp_path_factory.mktemp("bias"))
