"""Name → constructor registry for the attention blocks.

Every registered constructor takes ``channels`` as its first argument and returns an ``nn.Module`` that
maps ``[N, C, H, W] → [N, C, H, W]``, so the class (or a ``functools.partial`` of it) also fits the
``attn_layer=`` slots of timm models.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from functools import partial

from torch import nn

AttnFactory = Callable[..., nn.Module]

_ATTN_REGISTRY: dict[str, AttnFactory] = {}


def register_attn(name: str, factory: AttnFactory, **defaults) -> AttnFactory:
    """Register ``factory`` (a class or function taking ``channels`` first) under ``name``.

    ``defaults`` are bound with ``functools.partial``; callers may still override them.
    """
    if name in _ATTN_REGISTRY:
        raise ValueError(f"attention block {name!r} is already registered")
    entry = partial(factory, **defaults) if defaults else factory
    _ATTN_REGISTRY[name] = entry
    return entry


def list_attn(pattern: str = "*") -> list[str]:
    """Sorted names of the registered attention blocks matching the shell-style ``pattern``."""
    return sorted(n for n in _ATTN_REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_attn(attn: str | AttnFactory | None) -> AttnFactory | None:
    """Resolve ``attn`` to a constructor ``f(channels, **kwargs) -> nn.Module``.

    Accepts a registered name, ``None`` (no attention: returns ``None``) or a callable, which is returned
    unchanged (a class or partial of your own). Unknown names raise ``ValueError`` with the closest names.
    """
    if attn is None or callable(attn):
        return attn
    if not isinstance(attn, str):
        raise ValueError(f"attn must be a block name, a callable or None, got {type(attn).__name__}")
    try:
        return _ATTN_REGISTRY[attn]
    except KeyError:
        close = difflib.get_close_matches(attn, _ATTN_REGISTRY, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown attention block {attn!r}.{hint} Available: {', '.join(list_attn())}."
        ) from None


def attn_factory(
    attn: str | AttnFactory | None, attn_kwargs: dict | None = None
) -> Callable[[int], nn.Module] | None:
    """What a model stores for its attention slots: ``f(channels) -> nn.Module``, or ``None`` for none.

    ``attn`` as in :func:`get_attn`; ``attn_kwargs`` are bound to it (e.g. ``{"init": "hrnet"}``).
    """
    factory = get_attn(attn)
    if factory is None:
        if attn_kwargs:
            raise ValueError(f"attn_kwargs {attn_kwargs} given without an attention block (attn=None)")
        return None
    return partial(factory, **attn_kwargs) if attn_kwargs else factory


def create_attn(attn: str | AttnFactory, channels: int, **kwargs) -> nn.Module:
    """Build the attention block ``attn`` for ``channels`` input channels.

    Args:
        attn: a name from :func:`list_attn` (e.g. ``"psa_p"``) or a constructor taking ``channels`` first.
        channels: C of the ``[N, C, H, W]`` input; the output has the same shape.
        **kwargs: passed to the block's constructor (e.g. ``init="hrnet"`` for PSA, ``rd_ratio`` for SE).
    """
    factory = get_attn(attn)
    if factory is None:
        raise ValueError("create_attn needs a block name or constructor, got None")
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    return factory(channels, **kwargs)
