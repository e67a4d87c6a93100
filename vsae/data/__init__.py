"""Data: synthetic ground truth, activation shards, and one way in for batches (``open_source``).

``open_source(x, batch_size=..., ...)`` opens an [N, D] array, a ``.npy`` file, a shard folder
or an iterable of [b, D] batches as a batch source (see :mod:`vsae.data.sources`); the data is
checked on the way in (:mod:`vsae.data.checks`).
"""

from vsae.data.array_source import ArraySource
from vsae.data.checks import DataError
from vsae.data.iterable_source import IterableSource
from vsae.data.sources import BatchSource, SourceConfig, open_source, source_width

__all__ = [
    "ArraySource",
    "BatchSource",
    "DataError",
    "IterableSource",
    "SourceConfig",
    "open_source",
    "source_width",
]
