"""Training on accelerate: one engine (:mod:`.engine`), one checkpoint mechanism (:mod:`.checkpoint`), one
configuration (:mod:`.config`) for every task; the tasks in :mod:`.pose`."""

from .checkpoint import CheckpointError, TrainState
from .config import ConfigError, TrainConfig
from .engine import Trainer, TrainTask
from .recipes import RECIPES

__all__ = ["RECIPES", "CheckpointError", "ConfigError", "TrainConfig", "TrainState", "TrainTask", "Trainer"]
