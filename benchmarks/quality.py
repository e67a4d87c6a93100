"""Script entry point of ``vsae bench quality`` (see vsae/bench/quality.py)."""

import argparse
import sys

from vsae.bench import quality

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=quality.__doc__)
    quality.add_arguments(parser)
    sys.exit(quality.run(parser.parse_args()))
