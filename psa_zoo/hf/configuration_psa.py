"""transformers configurations of psa_zoo models: the registered architecture to build and the task settings.

A configuration names a psa_zoo architecture (``arch``, a name of ``psa_zoo.list_models()``) and the
keyword arguments it is built with; the weights live beside it in ``model.safetensors``. Labels travel
through the standard ``id2label`` / ``label2id`` fields; left out, they default to the architecture's
own label names (VOC classes, Cityscapes train ids, COCO keypoints).

This file is also copied next to the weights by the remote-code route (``psa_zoo.hf.prepare_remote_code``),
so it imports only ``psa_zoo`` and transformers, never ``psa_zoo.hf``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedConfig

import psa_zoo

__all__ = ["PsaPoseConfig", "PsaSegConfig"]

# create_model arguments a config must not carry in ``model_kwargs``, and what to use instead. Loading
# weights or placing the model is from_pretrained's job: a saved config that says
# pretrained_backbone=True would fetch ImageNet weights on every load, only to overwrite them.
_RESERVED_MODEL_KWARGS = {
    "num_classes": "set num_labels / id2label (segmentation) or num_keypoints / keypoint_names (pose)",
    "attn": "use the config's own attn field",
    "pretrained": "load weights with from_pretrained",
    "pretrained_cfg": "load weights with from_pretrained",
    "pretrained_backbone": (
        "load backbone weights once into model.model (see docs/transformers.md), not on every from_pretrained"
    ),
    "cache_dir": "pass cache_dir to from_pretrained",
    "device": "use from_pretrained(device_map=...) or model.to()",
    "dtype": "use from_pretrained(dtype=...) or model.to()",
}


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


def _default_labels(names: Sequence[str], num_labels: int | None) -> dict[int, str] | None:
    """``{i: name}`` from the architecture's names when the count fits (or is not given), else None."""
    if names and (num_labels is None or num_labels == len(names)):
        return dict(enumerate(names))
    return None


class _PsaConfig(PreTrainedConfig):
    """Fields shared by the segmentation and the pose configuration (see the subclasses)."""

    _task = ""

    def __init__(
        self,
        arch: str,
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        cfg = _architecture_cfg(arch, self._task)
        if attn is not None and not isinstance(attn, str):
            raise TypeError(
                f"attn must be a name of psa_zoo.list_attn(), 'none' or None, got {type(attn).__name__}"
            )
        self.arch = arch
        # None: the architecture's own block (e.g. psa_p for *_psa_p); "none": no attention module at all
        self.attn = attn
        self.model_kwargs = _check_model_kwargs(model_kwargs)
        if kwargs.get("id2label") is None:
            labels = _default_labels(cfg.label_names, kwargs.get("num_labels"))
            if labels is not None:
                kwargs["id2label"] = labels
                kwargs["label2id"] = {name: i for i, name in labels.items()}
        super().__init__(**kwargs)

    def create_model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``psa_zoo.create_model(self.arch, **kwargs)`` for this configuration."""
        kwargs = {**self.model_kwargs, "num_classes": self.num_labels}
        if (
            self.attn is not None
        ):  # None keeps the architecture's own block; create_model reads "none" as None
            kwargs["attn"] = self.attn
        return kwargs


class PsaSegConfig(_PsaConfig):
    """Configuration of :class:`~psa_zoo.hf.PsaForSemanticSegmentation`.

    Args:
        arch: a segmentation architecture of ``psa_zoo.list_models()`` (DeepLabV3+, HRNetV2-OCR).
        attn: attention block of the residual blocks: None keeps the architecture's own (PSA_p for
            ``*_psa``), ``"none"`` builds none, any other name of ``psa_zoo.list_attn()`` replaces it.
        model_kwargs: further ``create_model`` arguments, JSON-serialisable (``output_stride``,
            ``attn_kwargs``, ``in_chans``, ``spec`` as a dict, OCR widths, ...). Not ``num_classes``
            (``num_labels``), ``attn``, nor weight loading or placement (``pretrained*``, ``device``,
            ``dtype``).
        ignore_index: label value left out of the cross-entropy (255: VOC borders, Cityscapes void).
        aux_loss_weight: weight of the auxiliary (soft object region) cross-entropy of models that have
            one (HRNetV2-OCR; 0.4 as NVIDIA's ``LOSS.OCR_ALPHA``), added in training mode.
        **kwargs: ``PreTrainedConfig`` fields: ``num_labels`` or ``id2label`` / ``label2id`` (default: the
            architecture's classes), ``return_dict``, ...
    """

    model_type = "psa_seg"
    _task = "segmentation"

    def __init__(
        self,
        arch: str = "deeplabv3plus_r101_psa",
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        ignore_index: int = 255,
        aux_loss_weight: float = 0.4,
        **kwargs,
    ):
        self.ignore_index = int(ignore_index)
        self.aux_loss_weight = float(aux_loss_weight)
        super().__init__(arch=arch, attn=attn, model_kwargs=model_kwargs, **kwargs)


class PsaPoseConfig(_PsaConfig):
    """Configuration of :class:`~psa_zoo.hf.PsaForPoseEstimation` (top-down heatmap pose estimation).

    Keypoints are the labels: ``id2label`` maps heatmap channel → keypoint name, so ``num_keypoints`` equals
    ``num_labels`` and ``keypoint_names`` the names in channel order.

    Args:
        arch: a pose architecture of ``psa_zoo.list_models()`` (SimpleBaseline, HRNet).
        attn: as in :class:`PsaSegConfig`.
        model_kwargs: as in :class:`PsaSegConfig` (``spec`` as a dict, ``attn_kwargs``, ``in_chans``, ...).
        num_keypoints: heatmap channels K (default: the architecture's, 17 COCO keypoints).
        keypoint_names: K names (default: the architecture's when K matches, else ``keypoint_<i>``).
        **kwargs: ``PreTrainedConfig`` fields (``id2label`` as saved in config.json, ``return_dict``, ...).
    """

    model_type = "psa_pose"
    _task = "pose"

    def __init__(
        self,
        arch: str = "hrnet_w48_psa_p",
        attn: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        num_keypoints: int | None = None,
        keypoint_names: Sequence[str] | None = None,
        **kwargs,
    ):
        if keypoint_names is not None:
            keypoint_names = [str(name) for name in keypoint_names]
            if num_keypoints is not None and num_keypoints != len(keypoint_names):
                raise ValueError(
                    f"num_keypoints={num_keypoints} but {len(keypoint_names)} keypoint_names given"
                )
            kwargs["id2label"] = dict(enumerate(keypoint_names))
        elif num_keypoints is not None:
            names = _default_labels(_architecture_cfg(arch, self._task).label_names, num_keypoints)
            kwargs["id2label"] = names or {i: f"keypoint_{i}" for i in range(num_keypoints)}
        if "id2label" in kwargs and kwargs["id2label"] is not None:
            kwargs["label2id"] = {name: int(i) for i, name in kwargs["id2label"].items()}
        super().__init__(arch=arch, attn=attn, model_kwargs=model_kwargs, **kwargs)

    @property
    def num_keypoints(self) -> int:
        """Heatmap channels K (= ``num_labels``)."""
        return self.num_labels

    @property
    def keypoint_names(self) -> list[str]:
        """Keypoint names in heatmap channel order."""
        return [self.id2label[i] for i in range(self.num_labels)]
