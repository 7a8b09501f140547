"""The model a training run starts from, fitted to its data's labels (shared by every task)."""

from __future__ import annotations

from pathlib import Path

from ..metadata import ClassSet, KeypointSet, ModelMetadata
from ..models import PsaModel, create_model, from_pretrained
from .config import ConfigError, TrainConfig

__all__ = ["load_model", "model_for_labels"]

_COMMANDS = {"pose": "train-pose", "segmentation": "train-seg"}


def load_model(name_or_dir: str, pretrained: bool, **kwargs) -> PsaModel:
    """A registered name (``create_model``) or a saved folder (``from_pretrained``)."""
    if Path(name_or_dir).is_dir():
        return from_pretrained(name_or_dir)
    return create_model(name_or_dir, pretrained=pretrained, **kwargs)


def model_for_labels(
    config: TrainConfig, task: str, labels: KeypointSet | ClassSet
) -> tuple[PsaModel, ModelMetadata]:
    """``config.model`` built or loaded, checked to be a ``task`` model, its head resized to the labels
    when their count differs; returns it and its metadata with the dataset's labels (not set yet: the
    task adds the input size and what else it records)."""
    model = load_model(config.model, config.pretrained, **config.model_kwargs)
    if model.task != task:
        raise ConfigError(
            f"--model {config.model} is a {model.task} model; {_COMMANDS[task]} needs a {task} model"
        )
    count = labels.num_keypoints if isinstance(labels, KeypointSet) else labels.num_classes
    if model.num_classes != count:
        model.reset_classifier(count, labels=labels)
    return model, model.metadata.with_labels(labels)
