"""Training: the loop, batch sources, schedule and checkpoints."""

from vsae.training.trainer import TrainingError, train

__all__ = ["TrainingError", "train"]
