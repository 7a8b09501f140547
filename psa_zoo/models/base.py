"""What every psa_zoo model shares: live configuration, metadata, head reset, the forward contract and
saving.

A family class (``HRNetPose``, ``SimpleBaseline``, ``DeepLabV3Plus``, ``HRNetOCR``) subclasses
:class:`PsaModel` and provides:

* ``get_config()``: its constructor arguments read from the live model (after ``reset_classifier`` the
  saved config has the new head size);
* ``_reset_head(num_classes)``: fresh output layer(s), initialised as the official code does;
* ``forward_features(x)`` and ``forward_head(features, ...)``; ``forward(x)`` returns a tensor (export
  friendly), ``forward(x, return_dict=True)`` a named output (:mod:`psa_zoo.models.outputs`).

Class attributes: ``task``, ``default_labels`` (the dataset of the family's default head size), the
default input size, the output stride, and the names of the first conv and the classifier (timm's
``pretrained_cfg`` fields).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch.fx
from torch import nn

from ..layers._helpers import check_positive_int
from ..metadata import ClassSet, KeypointSet, ModelMetadata
from ._pretrained import PretrainedCfg

__all__ = ["PsaModel", "check_drop_rate", "to_json_value", "wants_dict"]


def to_json_value(value: Any, name: str = "argument") -> Any:
    """A constructor argument in JSON form: spec objects through their ``to_dict``, tuples as lists.
    Callables (an attention constructor passed as a function) cannot be written: ``ValueError``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [to_json_value(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v, f"{name}[{k!r}]") for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(dataclasses.asdict(value), name)
    raise ValueError(
        f"{name}={value!r} cannot be saved in config.json; pass a registered name or plain values instead"
    )


def wants_dict(return_dict: Any) -> bool:
    """Whether a forward returns its named output; a ``torch.fx`` proxy counts as False.

    Plain ``torch.fx.symbolic_trace(model)`` makes every forward argument a proxy, ``return_dict`` too,
    and Python cannot branch on one; the traced graph then returns the tensor of ``model(x)``.
    """
    return False if isinstance(return_dict, torch.fx.Proxy) else bool(return_dict)


def check_drop_rate(value: Any, name: str = "drop_rate") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class PsaModel(nn.Module):
    """Base of every psa_zoo model (see the module docstring for what a family provides).

    Attributes:
        num_classes: output channels (keypoints K for pose, classes for segmentation).
        metadata: :class:`~psa_zoo.metadata.ModelMetadata` — saved with the weights, restored by
            ``from_pretrained``; ``set_metadata`` replaces it (a dataset's labels become the model's).
        pretrained_cfg / default_cfg: timm's dict form (``timm.data.resolve_model_data_config`` reads it).
        model_name: the registered name the model was built under (None for a class built directly).
    """

    task: ClassVar[str] = ""
    default_labels: ClassVar[KeypointSet | ClassSet | None] = None
    default_input_size: ClassVar[tuple[int, int]] = (224, 224)
    metadata_output_stride: ClassVar[int] = 1
    classifier_name: ClassVar[str] = ""
    first_conv_name: ClassVar[str] = ""

    num_classes: int
    in_chans: int
    model_name: str | None = None
    psa_cfg: PretrainedCfg | None = None  # the registry record (name, tag, provenance) it was built from
    _metadata: ModelMetadata | None = None

    # --- configuration ---------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model as it is now (JSON values)."""
        raise NotImplementedError

    # --- metadata --------------------------------------------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            self._metadata = self.default_metadata()
        return self._metadata

    def default_metadata(self) -> ModelMetadata:
        """The family's defaults: its dataset's labels when the head size fits, generic labels otherwise."""
        labels = self.default_labels
        count = getattr(labels, "num_keypoints", None) or getattr(labels, "num_classes", None)
        if labels is None or count != self.num_classes:
            labels = (KeypointSet if self.task == "pose" else ClassSet).generic(self.num_classes)
        rgb = self.in_chans == 3  # ImageNet statistics for RGB input, 0.5 / 0.5 otherwise
        return ModelMetadata(
            task=self.task,
            input_size=(self.in_chans, *self.default_input_size),
            mean=(0.485, 0.456, 0.406) if rgb else (0.5,) * self.in_chans,
            std=(0.229, 0.224, 0.225) if rgb else (0.5,) * self.in_chans,
            output_stride=self.metadata_output_stride,
            keypoints=labels if isinstance(labels, KeypointSet) else None,
            classes=labels if isinstance(labels, ClassSet) else None,
        )

    def set_metadata(self, metadata: ModelMetadata | KeypointSet | ClassSet) -> None:
        """Replace the metadata, or only its labels (a :class:`KeypointSet` / :class:`ClassSet`).

        Raises ``ValueError`` when the task, the number of labels or the input channels do not fit.
        """
        if isinstance(metadata, KeypointSet | ClassSet):
            metadata = self.metadata.with_labels(metadata)
        if not isinstance(metadata, ModelMetadata):
            raise TypeError(f"expected ModelMetadata, KeypointSet or ClassSet, got {type(metadata).__name__}")
        if metadata.task != self.task:
            raise ValueError(f"metadata is for task {metadata.task!r}; this model's task is {self.task!r}")
        if metadata.num_outputs != self.num_classes:
            raise ValueError(
                f"metadata names {metadata.num_outputs} outputs but the model has num_classes="
                f"{self.num_classes}; call reset_classifier({metadata.num_outputs}) first, or give "
                f"{self.num_classes} labels"
            )
        if metadata.input_size[0] != self.in_chans:
            raise ValueError(
                f"metadata input_size {metadata.input_size} has {metadata.input_size[0]} channels; the "
                f"model takes in_chans={self.in_chans}"
            )
        self._metadata = metadata

    # --- head ------------------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The output layer (timm API)."""
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int, labels: KeypointSet | ClassSet | None = None) -> None:
        """Replace the output layer(s) by freshly initialised ones for ``num_classes`` outputs.

        The metadata follows: ``labels`` when given (their count must be ``num_classes``), else the old
        labels when the count is unchanged, else generic names (``keypoint_<i>`` / ``class_<i>``).
        """
        check_positive_int(num_classes, "num_classes", type(self).__name__)
        self._reset_head(num_classes)
        self.num_classes = num_classes
        self._metadata = self.metadata.with_num_outputs(num_classes)
        if labels is not None:
            self.set_metadata(labels)

    def _reset_head(self, num_classes: int) -> None:
        raise NotImplementedError

    @property
    def head_hidden_size(self) -> int:
        """Channels of the classifier's input, i.e. of ``forward_head(..., pre_logits=True)`` (timm API)."""
        return self.num_features

    def feature_size(self, input_size: tuple[int, int]) -> tuple[int, int] | None:
        """(h, w) of the ``forward_features`` map for an input (H, W); timm's ``pool_size`` at the default
        input size. None where a family does not say (every psa_zoo family does)."""
        return None

    @property
    def ddp_find_unused_parameters(self) -> bool:
        """Whether a plain training forward leaves parameters without gradients (DDP must then be built
        with ``find_unused_parameters=True``)."""
        return False

    # --- timm's view -----------------------------------------------------------------------------------
    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's pretrained-cfg dict, built from the live model, its metadata and its registry record."""
        meta, cfg = self.metadata, self.psa_cfg
        out = {
            "architecture": self.model_name,
            "tag": cfg.tag if cfg is not None else None,
            "input_size": meta.input_size,
            "fixed_input_size": False,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": meta.mean,
            "std": meta.std,
            "num_classes": self.num_classes,
            "label_names": meta.label_names,
            "pool_size": self.feature_size(tuple(meta.input_size[1:])),  # the dense map, no pooling
            "first_conv": self.first_conv_name,
            "classifier": self.classifier_name,
        }
        if cfg is not None:
            out.update(
                {k: v for k, v in (("license", cfg.license), ("hf_hub_id", cfg.hf_hub_id)) if v is not None}
            )
            out["paper_ids"] = "arXiv:2107.00782"
        return out

    @property
    def default_cfg(self) -> dict[str, Any]:
        return self.pretrained_cfg

    # --- saving ----------------------------------------------------------------------------------------
    def save_pretrained(
        self, save_directory: str | Path, model_card: str | None = None, overwrite: bool = False
    ) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ ``README.md``) atomically; see
        :func:`psa_zoo.models.save_pretrained`."""
        from ._serialization import save_pretrained

        return save_pretrained(self, save_directory, model_card=model_card, overwrite=overwrite)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the saved model to the Hub repository ``repo_id`` (see ``psa_zoo.publish.push_to_hub``)."""
        from ..publish import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
