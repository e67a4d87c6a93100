"""vsae: sparse autoencoders for vision and multimodal models.

The layers, bottom to top: configs and metrics -> SAE architectures -> data
(synthetic, activation shards) -> encoders -> training -> analysis -> apps.
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
