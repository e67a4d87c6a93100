"""Training-speed benchmark; prints JSON. Code: vsae.bench.speed (also `vsae bench speed`).

Usage: PYTHONPATH=. python benchmarks/speed.py [--quick] [--out FILE]   (see --help)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vsae.bench.speed import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
