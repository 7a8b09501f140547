"""Construction of registered models: argument checks, device/dtype, metadata, pretrained and backbone
weights. Both ``psa_zoo.create_model`` and ``timm.create_model`` end here (through the entrypoints)."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metadata import ClassSet, KeypointSet
from ._pretrained import PretrainedCfg
from ._registry import get_pretrained_cfg
from .backbones._common import take_indices

_DOWNLOAD_KWARGS = ("cache_dir", "local_files_only", "force_download")


def _check_arguments(name: str, model_cls: Callable, model_kwargs: dict) -> None:
    accepted = inspect.signature(model_cls).parameters
    unknown = sorted(k for k in model_kwargs if k not in accepted)
    if unknown:
        options = ", ".join(k for k in accepted if k not in ("device", "dtype"))
        raise ValueError(
            f"{name} does not take {', '.join(unknown)}; it takes: {options}, and labels / label_names, "
            "pretrained_backbone, device, dtype"
        )


def _apply_overlay(cfg: PretrainedCfg, overlay: dict | None) -> PretrainedCfg:
    """timm-style ``pretrained_cfg_overlay``: ``{"file": path}`` loads a local safetensors file,
    ``{"hf_hub_id": "user/repo", "hf_hub_revision": ..., "sha256": ...}`` another Hub repository (your own
    upload, say); either makes the weights loadable."""
    if not overlay:
        return cfg
    known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    unknown = sorted(set(overlay) - known)
    if unknown:
        raise ValueError(f"pretrained_cfg_overlay has unknown fields {unknown}; known: {sorted(known)}")
    overlay = dict(overlay)
    if "hf_hub_id" in overlay or "file" in overlay:
        overlay.setdefault("status", "published")
        overlay.setdefault("sha256", None)  # the recorded checksum belongs to the recorded file
    return dataclasses.replace(cfg, **overlay)


def _resolve_tag(name: str, pretrained_cfg: Any) -> tuple[str | None, str | None]:
    """(tag, local folder) from the ``pretrained_cfg`` that ``create_model("name.tag")`` passes: a tag
    string, or timm's dict / ``PretrainedCfg`` (its ``tag``; ``file`` + ``source="local-dir"`` for
    ``timm.create_model("local-dir:DIR")``)."""
    if pretrained_cfg is None or pretrained_cfg == "":
        return None, None
    if isinstance(pretrained_cfg, str):
        get_pretrained_cfg(f"{name}.{pretrained_cfg}")  # an unknown tag fails here, naming the known ones
        return pretrained_cfg, None
    cfg = pretrained_cfg if isinstance(pretrained_cfg, Mapping) else getattr(pretrained_cfg, "__dict__", {})
    if cfg.get("source") == "local-dir" and cfg.get("file"):
        return None, str(cfg["file"])
    tag = cfg.get("tag") or None
    if tag is not None:
        get_pretrained_cfg(f"{name}.{tag}")
    return tag, None


def _labels_from_kwargs(kwargs: dict) -> KeypointSet | ClassSet | None:
    labels, names = kwargs.pop("labels", None), kwargs.pop("label_names", None)
    if labels is not None and names is not None:
        raise ValueError("give labels (a KeypointSet / ClassSet) or label_names, not both")
    if names is not None:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(f"label_names must be a list of names, got {names!r}")
        return tuple(str(n) for n in names)  # type: ignore[return-value]  # made a record once the task is known
    if labels is not None and not isinstance(labels, KeypointSet | ClassSet):
        raise ValueError(f"labels must be a KeypointSet or a ClassSet, got {type(labels).__name__}")
    return labels


def _initial_metadata(model: nn.Module, cfg: PretrainedCfg, labels: Any) -> None:
    """The registry record's metadata, adapted to the model as built (head size, input channels), then the
    caller's labels."""
    meta = cfg.model_metadata(model.metadata_output_stride) if cfg.labels is not None else model.metadata
    meta = meta.with_num_outputs(model.num_classes)
    if meta.input_size[0] != model.in_chans:
        default = model.default_metadata()
        meta = meta.replace(input_size=default.input_size, mean=default.mean, std=default.std)
    model.set_metadata(meta)
    if isinstance(labels, tuple):
        record = KeypointSet if model.task == "pose" else ClassSet
        labels = record("custom", labels)
    if labels is not None:
        model.set_metadata(labels)


def attach_cfg(model: nn.Module, cfg: PretrainedCfg, labels: Any = None) -> None:
    """Record the registry record ``cfg`` on the model and start its metadata from it."""
    model.psa_cfg = cfg
    _initial_metadata(model, cfg, labels)


def _feature_net(model: nn.Module, name: str, out_indices: Any, feature_cls: Any) -> nn.Module:
    """timm's ``features_only=True``: the model's trunk (HRNet pose: the model itself; the other families:
    their ``backbone``, without the decoder or head) behind timm's ``FeatureGetterNet``, which returns the
    ``forward_intermediates`` maps of ``out_indices`` (default: every ``feature_info`` level) and carries
    the selected ``feature_info``."""
    from timm.models._features import FeatureGetterNet

    if feature_cls not in (None, "getter"):
        raise ValueError(
            f"{name}: feature_cls={feature_cls!r} is not supported; psa_zoo models give their features "
            "through forward_intermediates: leave feature_cls unset (or 'getter')"
        )
    trunk = getattr(model, "backbone", None) or model
    levels = len(trunk.feature_info)
    indices = tuple(range(levels)) if out_indices is None else out_indices
    take_indices(levels, indices)  # out-of-range indices: a clear ValueError now, not at the first forward
    net = FeatureGetterNet(trunk, out_indices=indices, prune=False)
    net.pretrained_cfg = net.default_cfg = getattr(model, "pretrained_cfg", None)
    net.psa_cfg = getattr(model, "psa_cfg", None)
    return net


def build_model(
    name: str, model_cls: Callable[..., nn.Module], pretrained: bool, kwargs: dict, **arch_kwargs
) -> nn.Module:
    """Build ``model_cls(**arch_kwargs, **kwargs)`` for the registered ``name``.

    Recognised extra kwargs: ``pretrained_cfg`` (a tag, from ``create_model("name.tag")``; timm passes it
    so too), ``pretrained_cfg_overlay`` (see :func:`_apply_overlay`), ``pretrained_backbone`` (timm's
    ImageNet weights in the backbone), ``labels`` (a ``KeypointSet`` / ``ClassSet``) or ``label_names``
    (``num_classes`` follows from them when not given), ``cache_dir``, ``local_files_only``,
    ``force_download``, ``device``, ``dtype``, and timm's ``features_only`` / ``out_indices`` /
    ``feature_cls`` (:func:`_feature_net`). ``attn="none"`` means ``attn=None`` (``timm.create_model``
    drops None-valued kwargs). timm's ``drop_rate`` and ``drop_path_rate`` are model arguments.
    """
    kwargs = {
        k: v for k, v in kwargs.items() if not (v is None and k in ("cache_dir", "pretrained_cfg_overlay"))
    }
    tag, local_dir = _resolve_tag(name, kwargs.pop("pretrained_cfg", None))
    kwargs.pop("pretrained_model_args", None)  # timm's record of the saved args, already in kwargs
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    download = {k: kwargs.pop(k) for k in _DOWNLOAD_KWARGS if k in kwargs}
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    pretrained_backbone = kwargs.pop("pretrained_backbone", False)
    features_only = kwargs.pop("features_only", False)
    out_indices, feature_cls = kwargs.pop("out_indices", None), kwargs.pop("feature_cls", None)
    labels = _labels_from_kwargs(kwargs)
    explicit_classes = "num_classes" in kwargs
    if labels is not None and not explicit_classes:
        kwargs["num_classes"] = len(labels) if isinstance(labels, tuple) else _count(labels)
    if isinstance(kwargs.get("attn"), str) and kwargs["attn"].lower() == "none":
        kwargs["attn"] = None
    model_kwargs = {**arch_kwargs, **kwargs}
    _check_arguments(name, model_cls, model_kwargs)
    cfg = _apply_overlay(get_pretrained_cfg(f"{name}.{tag}" if tag else name), overlay)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_cls(**model_kwargs)
    if dtype is not None:
        model.to(dtype=dtype)
    model.model_name = name
    attach_cfg(model, cfg, labels)
    if local_dir is not None and pretrained:
        _load_local_dir(model, Path(local_dir))
    elif pretrained:
        from ._loading import load_pretrained

        load_pretrained(model, cfg, **download, allow_head_resize=explicit_classes)
    elif pretrained_backbone:
        from ._loading import load_backbone_from_timm

        load_backbone_from_timm(model, cfg, cache_dir=download.get("cache_dir"))
    if features_only:
        return _feature_net(model, name, out_indices, feature_cls)
    return model


def _count(labels: KeypointSet | ClassSet) -> int:
    return labels.num_keypoints if isinstance(labels, KeypointSet) else labels.num_classes


def _load_local_dir(model: nn.Module, folder: Path) -> None:
    """``timm.create_model("local-dir:DIR", pretrained=True)``: the weights and metadata of a saved folder,
    verified as ``from_pretrained`` does."""
    from ._download import CONFIG_NAME, WEIGHTS_NAME
    from ._loading import restore_saved
    from ._serialization import read_config

    config = read_config(folder / CONFIG_NAME)
    restore_saved(model, config, folder / WEIGHTS_NAME, str(folder), allow_head_resize=False)
