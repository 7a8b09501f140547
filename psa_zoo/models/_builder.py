"""Construction of registered models: argument checks, device/dtype, pretrained and backbone weights."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from ._registry import get_pretrained_cfg

# Arguments timm.create_model passes to every entrypoint; psa_zoo resolves weights itself.
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay")


def _check_arguments(name: str, model_cls: Callable, model_kwargs: dict) -> None:
    accepted = inspect.signature(model_cls).parameters
    unknown = sorted(k for k in model_kwargs if k not in accepted)
    if unknown:
        options = ", ".join(k for k in accepted if k not in ("device", "dtype"))
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it takes: {options}")


def build_model(
    name: str, model_cls: Callable[..., nn.Module], pretrained: bool, kwargs: dict, **arch_kwargs
) -> nn.Module:
    """Build ``model_cls(**arch_kwargs, **kwargs)`` for the registered ``name``.

    Recognised extra kwargs: ``pretrained_tag`` (from ``create_model("name.tag")``), ``pretrained_backbone``
    (load timm's ImageNet weights into the backbone), ``cache_dir``, ``device``, ``dtype``. ``attn="none"``
    means ``attn=None`` (``timm.create_model`` drops keyword arguments whose value is None).
    """
    kwargs = dict(kwargs)
    tag = kwargs.pop("pretrained_tag", None)
    for key in _TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    cache_dir = kwargs.pop("cache_dir", None)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    pretrained_backbone = kwargs.pop("pretrained_backbone", False)
    if isinstance(kwargs.get("attn"), str) and kwargs["attn"].lower() == "none":
        kwargs["attn"] = None
    model_kwargs = {**arch_kwargs, **kwargs}
    _check_arguments(name, model_cls, model_kwargs)
    cfg = get_pretrained_cfg(f"{name}.{tag}" if tag else name)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_cls(**model_kwargs)
    if dtype is not None:
        model.to(dtype=dtype)
    model.pretrained_cfg = cfg
    model.model_name = name
    if pretrained:
        from ._hub import load_pretrained

        load_pretrained(model, cfg, cache_dir=cache_dir)
    elif pretrained_backbone:
        from ._hub import load_backbone_from_timm

        load_backbone_from_timm(model, cfg, cache_dir=cache_dir)
    return model
