"""Registry of named model entrypoints (timm-style), with their configuration records.

``@register_model(cfg)`` records an entrypoint ``fn(pretrained=False, **kwargs)`` under ``fn.__name__``
in psa_zoo's registry and, where timm has no model of that name, in timm's too (so ``timm.create_model``
finds it after ``import psa_zoo``); a timm model is never shadowed.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections import deque
from collections.abc import Callable

import timm.models
from timm.models import PretrainedCfg as TimmPretrainedCfg
from timm.models._pretrained import DefaultCfg

from ._pretrained import PretrainedCfg

_ENTRYPOINTS: dict[str, Callable] = {}
_DEFAULT_CFGS: dict[str, PretrainedCfg] = {}
_TAGGED_CFGS: dict[str, dict[str, PretrainedCfg]] = {}
_IN_TIMM: set[str] = set()


def register_model(
    cfg: PretrainedCfg, tags: tuple[PretrainedCfg, ...] = ()
) -> Callable[[Callable], Callable]:
    """Decorator: register the entrypoint with its default configuration and its pretrained tags."""

    def decorator(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _ENTRYPOINTS:
            raise ValueError(f"model {name!r} is already registered")
        if cfg.architecture != name:
            raise ValueError(f"config architecture {cfg.architecture!r} does not match entrypoint {name!r}")
        _ENTRYPOINTS[name] = fn
        _DEFAULT_CFGS[name] = cfg
        _TAGGED_CFGS[name] = {t.tag: t for t in tags}
        if not timm.models.is_model(name):
            _set_timm_default_cfgs(fn, cfg, tags)
            timm.models.register_model(fn)
            _IN_TIMM.add(name)
        return fn

    return decorator


def _timm_cfg(cfg: PretrainedCfg) -> TimmPretrainedCfg:
    """timm's record of a psa_zoo config (weights only where psa_zoo can load them)."""
    published = cfg.status == "published" and cfg.hf_hub_id is not None
    return TimmPretrainedCfg(
        hf_hub_id=cfg.hf_hub_id if published else None,
        hf_hub_filename=cfg.filename if published else None,
        architecture=cfg.architecture,
        tag=cfg.tag,
        input_size=cfg.input_size,
        interpolation="bilinear",
        crop_pct=1.0,
        mean=cfg.mean,
        std=cfg.std,
        num_classes=cfg.num_classes,
        label_names=cfg.label_names or None,
        license=cfg.license,
        paper_ids="arXiv:2107.00782",
        notes=(cfg.source, f"status: {cfg.status}") if cfg.source else (f"status: {cfg.status}",),
    )


def _set_timm_default_cfgs(fn: Callable, cfg: PretrainedCfg, tags: tuple[PretrainedCfg, ...]) -> None:
    """timm's ``register_model`` reads ``default_cfgs`` of the entrypoint's module: one entry per tag, the
    first the default (``timm.list_pretrained``, ``timm.models.get_pretrained_cfg("name.tag")``)."""
    module = sys.modules[fn.__module__]
    default_cfgs = module.__dict__.setdefault("default_cfgs", {})
    ordered = [*tags] or [cfg]
    default_cfgs[fn.__name__] = DefaultCfg(
        tags=deque(t.tag or "" for t in ordered), cfgs={t.tag or "": _timm_cfg(t) for t in ordered}
    )


def _closest(name: str) -> str:
    close = difflib.get_close_matches(name, _ENTRYPOINTS, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"hrnet_w48_psa_p.coco_256x192"`` → ``("hrnet_w48_psa_p", "coco_256x192")``."""
    architecture, _, tag = name.partition(".")
    return architecture, tag or None


def model_entrypoint(architecture: str) -> Callable:
    """The entrypoint registered as ``architecture``; unknown names raise ``ValueError`` with close names."""
    try:
        return _ENTRYPOINTS[architecture]
    except KeyError:
        raise ValueError(
            f"unknown model {architecture!r}.{_closest(architecture)} See psa_zoo.list_models()."
        ) from None


def is_model(name: str) -> bool:
    return split_model_name(name)[0] in _ENTRYPOINTS


def registered_in_timm(name: str) -> bool:
    """True when psa_zoo registered ``name`` in timm's registry (False where timm has its own model)."""
    return name in _IN_TIMM


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Sorted registered names matching the shell pattern; with ``pretrained=True`` the ``name.tag``
    entries that have published weights (as :func:`list_pretrained`)."""
    if pretrained:
        return list_pretrained(pattern)
    return sorted(n for n in _ENTRYPOINTS if fnmatch.fnmatchcase(n, pattern))


def list_pretrained(pattern: str = "*") -> list[str]:
    """Sorted ``name.tag`` entries with published weights matching the shell pattern."""
    names = [cfg.name for tags in _TAGGED_CFGS.values() for cfg in tags.values() if cfg.has_weights]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def list_tags(architecture: str) -> list[str]:
    """Every pretrained tag recorded for ``architecture`` (published, convertible or not released)."""
    model_entrypoint(architecture)
    return sorted(_TAGGED_CFGS[architecture])


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The configuration of ``name`` (architecture) or ``name.tag`` (a pretrained tag)."""
    architecture, tag = split_model_name(name)
    model_entrypoint(architecture)
    if tag is None:
        return _DEFAULT_CFGS[architecture]
    try:
        return _TAGGED_CFGS[architecture][tag]
    except KeyError:
        available = ", ".join(sorted(_TAGGED_CFGS[architecture])) or "none"
        raise ValueError(f"unknown tag {tag!r} for {architecture!r}; available tags: {available}") from None
