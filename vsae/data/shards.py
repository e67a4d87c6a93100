"""Activation shards: WebDataset tars of half-precision arrays, a writer and a streaming reader.

Layout of a dataset directory::

    meta.json              model, hookpoints/dims/fields, dtype, counts, normalisation stats
    shard-000000.tar       complete shards only (written as ``.tar.partial`` then renamed);
                           ``.tar.gz`` when gzip-compressed (small samples, see ``compress``)
    writer_state.json      the writer's resume state (running sums, committed shards)

Each sample in a tar is one input (an image, or a prompt at one timestep)::

    000000042.json         {"source_key": ..., "input_index": ..., "caption": ..., "labels": ...}
    000000042.<field>.npy  float16 array [T, D] per hookpoint (T tokens, T = 1 for embeddings)

Arrays are ``.npy`` bytes, read with ``allow_pickle=False``; see docs/activations.md.
"""

from .shard_format import (
    AUTO_COMPRESS_BELOW,
    FORMAT_VERSION,
    META_NAME,
    STATE_NAME,
    STORE_DTYPE,
    RunningStats,
    ShardError,
    decode_array,
    encode_array,
    field_name,
    read_meta,
    shard_name,
)
from .shard_reader import ShardBatches, ShardConfig, open_batches
from .shard_samples import iter_shard_samples, iter_tar_samples, load_all
from .shard_writer import ActivationWriter

__all__ = [
    "AUTO_COMPRESS_BELOW",
    "FORMAT_VERSION",
    "META_NAME",
    "STATE_NAME",
    "STORE_DTYPE",
    "ActivationWriter",
    "RunningStats",
    "ShardBatches",
    "ShardConfig",
    "ShardError",
    "decode_array",
    "encode_array",
    "field_name",
    "iter_shard_samples",
    "iter_tar_samples",
    "load_all",
    "open_batches",
    "read_meta",
    "shard_name",
]
