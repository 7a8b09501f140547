"""transformers configurations of psa_zoo models: psa_zoo's own saved record plus the task settings.

A configuration *is* psa_zoo's ``config.json`` record (:func:`psa_zoo.models._serialization.model_config`):
``model_class`` and ``model_args`` (the constructor arguments), ``architecture`` (the registered name),
``source_tag`` and ``metadata`` (labels, input size, normalisation), beside transformers' fields
(``model_type``, ``id2label`` / ``label2id``, ``ignore_index``, ...). So one ``config.json`` serves both
libraries: ``psa_zoo.from_pretrained(dir)`` and ``AutoModelFor*.from_pretrained(dir)`` read the same file.

A new configuration is made from a registered architecture, ``PsaSegConfig(arch=..., attn=...,
model_kwargs=...)``: the record is read from the model those arguments build (on the meta device, no
memory spent). Labels are ``id2label``: their count and names win over the record's (``num_classes``,
metadata label names), which follow them; left out, they are the record's (VOC classes, Cityscapes train
ids, COCO keypoints for the registered architectures).

This file is also copied next to the weights by the remote-code route (``psa_zoo.hf.prepare_remote_code``),
so it imports only ``psa_zoo``, torch and transformers, never ``psa_zoo.hf``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedConfig

import psa_zoo
from psa_zoo.metadata import ModelMetadata
from psa_zoo.models._loading import build_saved
from psa_zoo.models._serialization import (
    CONFIG_FORMAT_VERSION,
    TRANSFORMERS_MODEL_TYPES,
    check_record,
    model_config,
)

__all__ = ["PsaPoseConfig", "PsaSegConfig"]

# create_model arguments a config must not carry in ``model_kwargs``, and what to use instead. Loading
# weights or placing the model is from_pretrained's job: a saved config that says
# pretrained_backbone=True would fetch ImageNet weights on every load, only to overwrite them.
_RESERVED_MODEL_KWARGS = {
    "num_classes": "set num_labels / id2label (segmentation) or num_keypoints / keypoint_names (pose)",
    "attn": "use the config's own attn argument",
    "pretrained": "load weights with from_pretrained",
    "pretrained_cfg": "load weights with from_pretrained",
    "pretrained_backbone": (
        "load backbone weights once into model.model (see docs/transformers.md), not on every from_pretrained"
    ),
    "cache_dir": "pass cache_dir to from_pretrained",
    "device": "use from_pretrained(device_map=...) or model.to()",
    "dtype": "use from_pretrained(dtype=...) or model.to()",
}

# psa_zoo's record as the config keeps it. The rest of what psa_zoo's save writes is a fact of one saved
# folder, written again from the live model by every save: weights_sha256, psa_zoo_version, timm's
# pretrained_cfg view, num_classes (= num_labels); torch_dtype becomes transformers' dtype.
RECORD_FIELDS = ("architecture", "source_tag", "model_class", "model_args", "metadata")
_FILE_FIELDS = ("format_version", "psa_zoo_version", "num_classes", "pretrained_cfg", "weights_sha256")


def _architecture_cfg(arch: str, task: str):
    """The psa_zoo configuration record of ``arch``; unknown names and the wrong task raise ``ValueError``."""
    cfg = psa_zoo.get_pretrained_cfg(arch)  # unknown names raise with the closest registered ones
    if cfg.task != task:
        options = ", ".join(
            name for name in psa_zoo.list_models() if psa_zoo.get_pretrained_cfg(name).task == task
        )
        raise ValueError(f"{arch!r} is a {cfg.task} model; a {task} config takes one of: {options}")
    return cfg


def _check_model_kwargs(model_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    model_kwargs = dict(model_kwargs or {})
    for key, instead in _RESERVED_MODEL_KWARGS.items():
        if key in model_kwargs:
            raise ValueError(f"model_kwargs must not contain {key!r}: {instead}")
    return model_kwargs


def _new_record(
    arch: str, attn: str | None, model_kwargs: Mapping[str, Any] | None, num_labels: int | None, task: str
) -> dict[str, Any]:
    """The record of the model ``psa_zoo.create_model(arch, ...)`` builds, read from it on the meta device."""
    _architecture_cfg(arch, task)
    if attn is not None and not isinstance(attn, str):
        raise TypeError(
            f"attn must be a name of psa_zoo.list_attn(), 'none' or None, got {type(attn).__name__}"
        )
    kwargs = _check_model_kwargs(model_kwargs)
    if attn is not None:  # None keeps the architecture's own block; create_model reads "none" as None
        kwargs["attn"] = attn
    if num_labels is not None:
        kwargs["num_classes"] = num_labels
    with torch.device("meta"):
        return model_config(psa_zoo.create_model(arch, **kwargs))


def labelled_metadata(metadata: Mapping[str, Any] | ModelMetadata, names: Sequence[str]) -> ModelMetadata:
    """``metadata`` with the label names ``names`` in output-channel order (generic labels first when the
    count changes; the rest of the label record, e.g. a skeleton, is kept when it does not)."""
    if not isinstance(metadata, ModelMetadata):
        metadata = ModelMetadata.from_dict(metadata)
    metadata = metadata.with_num_outputs(len(names))
    names = tuple(str(name) for name in names)
    if names == metadata.label_names:
        return metadata
    if metadata.keypoints is not None:
        return metadata.with_labels(dataclasses.replace(metadata.keypoints, keypoint_names=names))
    return metadata.with_labels(dataclasses.replace(metadata.classes, class_names=names))


def _old_format_error(config_dict: Mapping[str, Any], cls: type[_PsaConfig]) -> ValueError:
    if "arch" not in config_dict:
        return ValueError(
            f"this config.json (model_type {config_dict.get('model_type')!r}) has no psa_zoo record "
            "(model_class, model_args): it was not written by the save_pretrained of psa_zoo or psa_zoo.hf"
        )
    recipe = ", ".join(
        f"{key}={config_dict[key]!r}" for key in ("arch", "attn", "model_kwargs") if key in config_dict
    )
    return ValueError(
        "this config.json is in the format of an older psa_zoo.hf (arch / attn / model_kwargs, no "
        "model_class / model_args), which this version no longer reads. Convert the folder once: "
        f"model = {cls.model_class_name}({cls.__name__}({recipe}, id2label=<its id2label>)); "
        "model.load_state_dict(safetensors.torch.load_file('<folder>/model.safetensors')); "
        "model.save_pretrained('<new folder>'), a folder both psa_zoo and transformers read "
        "(docs/transformers.md, 'Saved format')"
    )


class _PsaConfig(PreTrainedConfig):
    """Fields shared by the segmentation and the pose configuration (see the subclasses)."""

    _task = ""
    model_class_name = ""  # the model class of psa_zoo.hf that this configuration builds

    def __init__(
        self,
        arch: str | None = None,
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        *,
        model_class: str | None = None,
        model_args: Mapping[str, Any] | None = None,
        architecture: str | None = None,
        source_tag: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        for key in _FILE_FIELDS:
            kwargs.pop(key, None)
        kwargs.pop("model_type", None)  # the class's own
        if model_class is None:  # a new model: the record of what create_model builds
            record = _new_record(arch, attn, model_kwargs, _label_count(kwargs), self._task)
        else:  # a saved one (config.json): the recipe arguments have no say
            if (arch is not None and arch != architecture) or attn is not None or model_kwargs:
                raise ValueError(
                    "give either a saved record (model_class, model_args, ...) or arch / attn / "
                    "model_kwargs to build a new model, not both"
                )
            record = {
                "model_class": model_class,
                "model_args": model_args,
                "architecture": architecture,
                "source_tag": source_tag,
                "metadata": metadata,
            }
        check_record(record, f"{type(self).__name__}")
        if record.get("metadata") is None:  # a hand-written record: the metadata the model starts with
            with torch.device("meta"):
                record["metadata"] = build_saved(record, type(self).__name__).metadata.to_dict()
        for key in RECORD_FIELDS:
            setattr(self, key, record.get(key))
        self._default_labels(kwargs)
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        """transformers' reader of ``config.json``; a config without psa_zoo's record is refused with what
        to do (the format of psa_zoo.hf before the record: ``arch`` / ``attn`` / ``model_kwargs``)."""
        if "model_class" not in config_dict:
            raise _old_format_error(config_dict, cls)
        return super().from_dict(config_dict, **kwargs)

    def _default_labels(self, kwargs: dict[str, Any]) -> None:
        """``id2label`` (and ``label2id``) from the record when not given; a ``num_labels`` that differs
        from them gives generic labels (``class_<i>`` / ``keypoint_<i>``) of that count."""
        saved = self._record_metadata()
        names = saved.label_names
        if kwargs.get("id2label") is not None:
            names = _names_in_order(kwargs["id2label"])
        count = kwargs.get("num_labels")
        if count is not None and count != len(names):
            names = saved.with_num_outputs(count).label_names  # the record's names when their count fits
        kwargs["id2label"] = dict(enumerate(names))
        kwargs["label2id"] = {name: i for i, name in enumerate(names)}  # always the inverse of id2label

    def _record_metadata(self) -> ModelMetadata:
        return ModelMetadata.from_dict(self.metadata)

    # --- psa_zoo's view ----------------------------------------------------------------------------------
    @property
    def arch(self) -> str | None:
        """The registered architecture: the record's ``architecture`` (None for a class-built model)."""
        return self.architecture

    @arch.setter
    def arch(self, value: Any) -> None:
        raise AttributeError(
            "arch is read from the saved record (architecture); build a new configuration with "
            f"{type(self).__name__}(arch=...) instead"
        )

    @property
    def label_names(self) -> list[str]:
        """The label names in output-channel order (``id2label``)."""
        return [self.id2label[i] for i in range(self.num_labels)]

    def psa_record(self) -> dict[str, Any]:
        """psa_zoo's record of this configuration, labels as ``id2label`` says: the ``config.json`` fields
        ``psa_zoo.from_pretrained`` reads (``model_args`` with ``num_classes`` = ``num_labels``, the metadata
        with these label names)."""
        metadata = labelled_metadata(self.metadata, self.label_names)
        return {
            "format_version": CONFIG_FORMAT_VERSION,
            "model_class": self.model_class,
            "model_args": {**self.model_args, "num_classes": self.num_labels},
            "architecture": self.architecture,
            "source_tag": self.source_tag,
            "metadata": metadata.to_dict(),
            "num_classes": self.num_labels,
        }

    def to_dict(self) -> dict[str, Any]:
        """transformers' fields and psa_zoo's record, labels in agreement (see :meth:`psa_record`)."""
        return {**super().to_dict(), **self.psa_record()}


def _names_in_order(id2label: Mapping[Any, str]) -> tuple[str, ...]:
    """The names of ``id2label`` by output channel; its keys (int or, from JSON, str) must be 0..N-1."""
    by_index = {int(key): str(name) for key, name in id2label.items()}
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(
            f"id2label must map every output channel 0..{len(by_index) - 1} to a name, got keys "
            f"{sorted(by_index)}"
        )
    return tuple(by_index[i] for i in range(len(by_index)))


def _label_count(kwargs: Mapping[str, Any]) -> int | None:
    if kwargs.get("id2label") is not None:
        return len(kwargs["id2label"])
    return kwargs.get("num_labels")


class PsaSegConfig(_PsaConfig):
    """Configuration of :class:`~psa_zoo.hf.PsaForSemanticSegmentation`.

    Either a new model (``arch``, ``attn``, ``model_kwargs``) or a saved one (the fields of psa_zoo's
    ``config.json`` record, as ``from_pretrained`` passes them); see the module docstring.

    Args:
        arch: a segmentation architecture of ``psa_zoo.list_models()`` (DeepLabV3+, HRNetV2-OCR).
        attn: attention block of the residual blocks: None keeps the architecture's own (PSA_p for
            ``*_psa``), ``"none"`` builds none, any other name of ``psa_zoo.list_attn()`` replaces it.
        model_kwargs: further ``create_model`` arguments, JSON-serialisable (``output_stride``,
            ``attn_kwargs``, ``in_chans``, ``spec`` as a dict, OCR widths, ...). Not ``num_classes``
            (``num_labels``), ``attn``, nor weight loading or placement (``pretrained*``, ``device``,
            ``dtype``).
        ignore_index: label value left out of the cross-entropy (default: the metadata's, 255: VOC borders,
            Cityscapes void).
        aux_loss_weight: weight of the auxiliary (soft object region) cross-entropy of models that have
            one (HRNetV2-OCR; 0.4 as NVIDIA's ``LOSS.OCR_ALPHA``), added in training mode.
        **kwargs: psa_zoo's record (``model_class``, ``model_args``, ``architecture``, ``source_tag``,
            ``metadata``) and ``PreTrainedConfig`` fields: ``num_labels`` or ``id2label`` / ``label2id``
            (default: the record's classes), ``return_dict``, ...
    """

    model_type = TRANSFORMERS_MODEL_TYPES["segmentation"]
    model_class_name = "PsaForSemanticSegmentation"
    _task = "segmentation"

    def __init__(
        self,
        arch: str | None = None,
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        ignore_index: int | None = None,
        aux_loss_weight: float = 0.4,
        **kwargs,
    ):
        if arch is None and kwargs.get("model_class") is None:
            arch = "deeplabv3plus_r101_psa"
        super().__init__(arch=arch, attn=attn, model_kwargs=model_kwargs, **kwargs)
        if ignore_index is None:
            ignore_index = self._record_metadata().classes.ignore_index
        self.ignore_index = int(ignore_index)
        self.aux_loss_weight = float(aux_loss_weight)


class PsaPoseConfig(_PsaConfig):
    """Configuration of :class:`~psa_zoo.hf.PsaForPoseEstimation` (top-down heatmap pose estimation).

    Keypoints are the labels: ``id2label`` maps heatmap channel → keypoint name, so ``num_keypoints`` equals
    ``num_labels`` and ``keypoint_names`` the names in channel order.

    Args:
        arch: a pose architecture of ``psa_zoo.list_models()`` (SimpleBaseline, HRNet).
        attn: as in :class:`PsaSegConfig`.
        model_kwargs: as in :class:`PsaSegConfig` (``spec`` as a dict, ``attn_kwargs``, ``in_chans``, ...).
        num_keypoints: heatmap channels K (default: the record's, 17 COCO keypoints).
        keypoint_names: K names (default: the record's when K matches, else ``keypoint_<i>``).
        **kwargs: psa_zoo's record and ``PreTrainedConfig`` fields, as in :class:`PsaSegConfig`.
    """

    model_type = TRANSFORMERS_MODEL_TYPES["pose"]
    model_class_name = "PsaForPoseEstimation"
    _task = "pose"

    def __init__(
        self,
        arch: str | None = None,
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        num_keypoints: int | None = None,
        keypoint_names: Sequence[str] | None = None,
        **kwargs,
    ):
        if arch is None and kwargs.get("model_class") is None:
            arch = "hrnet_w48_psa_p"
        if keypoint_names is not None:
            keypoint_names = [str(name) for name in keypoint_names]
            if num_keypoints is not None and num_keypoints != len(keypoint_names):
                raise ValueError(
                    f"num_keypoints={num_keypoints} but {len(keypoint_names)} keypoint_names given"
                )
            kwargs["id2label"] = dict(enumerate(keypoint_names))
            kwargs.pop("label2id", None)
        elif num_keypoints is not None:
            kwargs["num_labels"] = num_keypoints
        super().__init__(arch=arch, attn=attn, model_kwargs=model_kwargs, **kwargs)

    @property
    def num_keypoints(self) -> int:
        """Heatmap channels K (= ``num_labels``)."""
        return self.num_labels

    @property
    def keypoint_names(self) -> list[str]:
        """Keypoint names in heatmap channel order."""
        return self.label_names
