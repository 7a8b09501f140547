"""Construction of registered models: argument checks, device/dtype, pretrained and backbone weights."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable

import torch
from torch import nn

from ._pretrained import PretrainedCfg
from ._registry import get_pretrained_cfg


def _check_arguments(name: str, model_cls: Callable, model_kwargs: dict) -> None:
    accepted = inspect.signature(model_cls).parameters
    unknown = sorted(k for k in model_kwargs if k not in accepted)
    if unknown:
        options = ", ".join(k for k in accepted if k not in ("device", "dtype"))
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it takes: {options}")


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


def build_model(
    name: str, model_cls: Callable[..., nn.Module], pretrained: bool, kwargs: dict, **arch_kwargs
) -> nn.Module:
    """Build ``model_cls(**arch_kwargs, **kwargs)`` for the registered ``name``.

    Recognised extra kwargs: ``pretrained_tag`` (from ``create_model("name.tag")``),
    ``pretrained_cfg_overlay`` (see :func:`_apply_overlay`), ``pretrained_backbone`` (timm's ImageNet
    weights in the backbone), ``cache_dir``, ``local_files_only``, ``force_download``, ``device``,
    ``dtype``. ``attn="none"`` means ``attn=None`` (``timm.create_model`` drops None-valued kwargs).
    """
    kwargs = dict(kwargs)
    tag = kwargs.pop("pretrained_tag", None)
    kwargs.pop("pretrained_cfg", None)  # timm.create_model passes its own cfg; psa_zoo resolves its own
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    download = {k: kwargs.pop(k) for k in ("cache_dir", "local_files_only", "force_download") if k in kwargs}
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    pretrained_backbone = kwargs.pop("pretrained_backbone", False)
    if isinstance(kwargs.get("attn"), str) and kwargs["attn"].lower() == "none":
        kwargs["attn"] = None
    model_kwargs = {**arch_kwargs, **kwargs}
    _check_arguments(name, model_cls, model_kwargs)
    cfg = _apply_overlay(get_pretrained_cfg(f"{name}.{tag}" if tag else name), overlay)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_cls(**model_kwargs)
    if dtype is not None:
        model.to(dtype=dtype)
    model.pretrained_cfg = cfg
    model.model_name = name
    if pretrained:
        from ._hub import load_pretrained

        load_pretrained(model, cfg, **download)
    elif pretrained_backbone:
        from ._hub import load_backbone_from_timm

        load_backbone_from_timm(model, cfg, cache_dir=download.get("cache_dir"))
    return model
