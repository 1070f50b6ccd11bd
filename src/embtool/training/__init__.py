"""The trainer: ``train(TrainConfig) -> run folder`` (DESIGN §4), used by `embtool train` and `experiment`."""

from embtool.model import ModelConfig
from embtool.training.config import TASK_DEFAULTS, TrainConfig
from embtool.training.loop import resume_config, train

__all__ = ["ModelConfig", "TASK_DEFAULTS", "TrainConfig", "resume_config", "train"]
