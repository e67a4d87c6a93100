"""``python -m vsae`` (also under torchrun)."""

import sys

from vsae.cli import main

sys.exit(main())
