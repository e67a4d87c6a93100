"""Run an extraction slowly so that test_extract can kill it midway (SIGKILL).

Usage: python tests/extract_kill_worker.py IMAGE_DIR OUT_DIR
"""

import sys
import time

from vsae.encoders import from_spec
from vsae.extract import extract

if __name__ == "__main__":
    src = from_spec(
        "timm:vit_tiny_patch16_224", hookpoints=["blocks.1"], tokens="all", image_size=32
    )
    call = src.__call__

    class Slow(type(src)):
        def __call__(self, batch):  # pace the run so that the kill lands mid-extraction
            time.sleep(0.5)
            return call(batch)

    src.__class__ = Slow
    extract(src, sys.argv[1], sys.argv[2], batch_size=2, shard_size=3, progress=False)
