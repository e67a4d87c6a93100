"""vsae: sparse autoencoders for vision and multimodal models.

The layers, bottom to top (docs/architecture.md; tests/test_layers.py enforces them):
configs, metrics and the tiny world -> SAE architectures -> data (synthetic, activation
shards) and interop -> encoders -> training and extraction -> this package's API ->
analysis -> interventions -> benchmarks -> apps -> commands -> cli.
"""

from vsae.config import ConfigError, SAEConfig, TrainConfig
from vsae.interop import InteropError, load
from vsae.sae import CheckpointError, build
from vsae.training import TrainingError, train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "InteropError",
    "SAEConfig",
    "TrainConfig",
    "TrainingError",
    "build",
    "load",
    "train",
    "__version__",
]
