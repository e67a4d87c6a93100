"""Benchmarks driven from ``vsae bench``: training speed and reconstruction/stability quality.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and
prints one JSON object; ``benchmarks/*.py`` are thin script entry points to the same code.
"""
