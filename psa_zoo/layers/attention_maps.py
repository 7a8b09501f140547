"""Record the gates of the attention blocks in a model for an input, without changing its output.

>>> with record_attention(model, ["stage4.*"]) as record:
...     out = model(x)
>>> record["stage4.0.branches.0.0.deattn"].spatial_gate.shape      # [N, 1, H, W]

What each block kind records (the tensors that multiply the features, detached copies):

* ``PsaP`` / ``PsaPaperP`` (parallel): ``out = x ⊙ channel_gate + x ⊙ spatial_gate``; both gates.
* ``PsaS`` / ``PsaPaperS`` (sequential): ``out = (x ⊙ channel_gate) ⊙ spatial_gate``; the spatial gate is
  the one computed from ``y = x ⊙ channel_gate``.
* ``Cbam``: the same sequential form (channel gate, then the spatial gate of the channel-gated features).
* ``SqueezeExcite`` (and any timm ``SEModule``): ``out = x ⊙ channel_gate``; ``spatial_gate`` is None.

Blocks without a gate are not recorded and not listed: ``GlobalContext`` and ``SimplifiedNonLocal2d`` add
one context vector to every position, ``NonLocal2d``, ``DualAttention`` (PAM / CAM) and
``EfficientAttention`` mix the features through an affinity matrix (HW × HW, C × C or its low-rank form),
which no [N, C] or [N, 1, H, W] map summarises. Naming one of them is an error that says so.

Cost: a gating block consults one class attribute per forward (``_gate_hook``, None unless recorded), so
nothing is computed or allocated when no recording is on. While recording, each call of a recorded block
adds a detached copy of its gates (small: [N, C] and [N, 1, H, W]); the output, the autograd graph and the
gradients are those of an unrecorded forward. Leaving the context removes every hook. Recording works in
eager mode; a ``torch.compile``'d model must be recompiled to see it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from timm.layers.squeeze_excite import SEModule
from torch import nn

from .cbam import Cbam
from .dual_attention import ChannelAttention, DualAttention, PositionAttention
from .efficient_attention import EfficientAttention
from .global_context import GlobalContext
from .non_local import NonLocal2d
from .psa import _PsaOfficialBase
from .psa_paper import _PsaPaperBase
from .simplified_non_local import SimplifiedNonLocal2d

__all__ = ["AttentionMaps", "AttentionRecord", "list_attention_blocks", "record_attention"]

_GATING = (_PsaOfficialBase, _PsaPaperBase, Cbam, SEModule)

_NO_GATE = {
    GlobalContext: "adds a context vector to every position and has no gate",
    SimplifiedNonLocal2d: "adds a context vector to every position and has no gate",
    NonLocal2d: "mixes positions through an HW × HW affinity, not a gate",
    PositionAttention: "mixes positions through an HW × HW affinity, not a gate",
    ChannelAttention: "mixes channels through a C × C affinity, not a gate",
    DualAttention: "mixes features through HW × HW and C × C affinities, not gates",
    EfficientAttention: "mixes features through a low-rank affinity, not a gate",
}


@dataclass
class AttentionMaps:
    """The gates one call of a block applied.

    Attributes:
        kind: the block's class name, e.g. ``"PsaP"``.
        channel_gate: [N, C], or None for a block without one.
        spatial_gate: [N, 1, H, W] over the block's input positions, or None (SE).

    Detached copies on the block's device, in the dtype the block computed them in (the PSA gates are
    cast to the features' dtype only when applied).
    """

    kind: str
    channel_gate: torch.Tensor | None = None
    spatial_gate: torch.Tensor | None = None


class AttentionRecord(Mapping[str, AttentionMaps]):
    """Qualified block name → :class:`AttentionMaps` of the block's *first* call in the recording.

    Keys are the recorded blocks that ran, in model order. A block that ran more than once (a flip test,
    several scales, sliding windows, batches in chunks) keeps every call in :meth:`calls`; for maps of one
    view of an image, run the model once on it inside the context.
    """

    def __init__(self, kinds: Mapping[str, str]):
        self._kinds = dict(kinds)
        self._calls: dict[str, list[AttentionMaps]] = {name: [] for name in kinds}

    @property
    def blocks(self) -> list[str]:
        """Every block the recording watches, in model order (also those that did not run)."""
        return list(self._kinds)

    def calls(self, name: str) -> list[AttentionMaps]:
        """All calls of block ``name``, in order (empty when it did not run)."""
        if name not in self._calls:
            raise KeyError(f"{name!r} is not recorded; recorded blocks: {_some(self.blocks)}")
        return list(self._calls[name])

    def __getitem__(self, name: str) -> AttentionMaps:
        calls = self._calls.get(name)
        if not calls:
            raise KeyError(name)
        return calls[0]

    def __iter__(self) -> Iterator[str]:
        return (name for name, calls in self._calls.items() if calls)

    def __len__(self) -> int:
        return sum(1 for calls in self._calls.values() if calls)

    def __repr__(self) -> str:
        return f"AttentionRecord({len(self)} of {len(self._kinds)} blocks ran)"


def _gating_blocks(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _GATING)}


def list_attention_blocks(model: nn.Module) -> list[str]:
    """Qualified names (``model.named_modules()``) of the blocks whose gates can be recorded, in model
    order; the model itself, when it is such a block, is ``""``."""
    return list(_gating_blocks(model))


def _some(names: list[str], count: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:count])
    return f"{shown}, … ({len(names)} in all)" if len(names) > count else shown or "none"


def _select(model: nn.Module, blocks: str | Iterable[str] | None) -> dict[str, nn.Module]:
    gating = _gating_blocks(model)
    if not gating:
        kinds = sorted({type(m).__name__ for m in model.modules() if type(m) in _NO_GATE})
        found = f" (its {', '.join(kinds)} blocks have none)" if kinds else ""
        raise ValueError(
            f"{type(model).__name__} has no attention block with gates (PSA, SE or CBAM){found}, so there "
            "is nothing to record; use a model built with one of them (e.g. attn='psa_p')"
        )
    if blocks is None:
        return gating
    wanted = [blocks] if isinstance(blocks, str) else list(blocks)
    if not wanted:
        raise ValueError("blocks is empty, so nothing would be recorded; pass None to record every block")
    chosen, unmatched = set(), []
    for entry in wanted:
        if not isinstance(entry, str):
            raise ValueError(f"blocks must be qualified module names or patterns (str), got {entry!r}")
        hits = [n for n in gating if n == entry or fnmatch.fnmatchcase(n, entry)]
        chosen.update(hits)
        if not hits:
            unmatched.append(entry)
    if unmatched:
        gateless = [
            f"{name!r} is a {type(m).__name__}, which {_NO_GATE[type(m)]}"
            for name, m in model.named_modules()
            if type(m) in _NO_GATE and any(n == name or fnmatch.fnmatchcase(name, n) for n in unmatched)
        ]
        why = f" ({'; '.join(gateless[:3])})" if gateless else ""
        example = ".".join(next(iter(gating)).split(".")[:2]) + ".*"  # e.g. 'backbone.stage2.*'
        raise ValueError(
            f"no attention block with gates matches {', '.join(map(repr, unmatched))}{why}. Blocks with "
            f"gates in this model: {_some(list(gating))}. Pass qualified names from "
            f"list_attention_blocks(model) or fnmatch patterns of them (e.g. {example!r})."
        )
    return {n: m for n, m in gating.items() if n in chosen}


class _BlockRecorder:
    """Collects the gates of one block: a new entry per forward call, filled by the gate reports."""

    def __init__(self, kind: str, calls: list[AttentionMaps]):
        self.kind, self.calls = kind, calls

    def start(self, module: nn.Module, args: tuple) -> None:  # forward pre-hook of the block
        self.calls.append(AttentionMaps(self.kind))

    def report(self, channel_gate: torch.Tensor | None = None, spatial_gate: torch.Tensor | None = None):
        maps = self.calls[-1]
        if channel_gate is not None:  # applied as [N, C, 1, 1]
            maps.channel_gate = channel_gate.detach().flatten(1).clone()
        if spatial_gate is not None:
            maps.spatial_gate = spatial_gate.detach().clone()

    def report_se_gate(self, module: nn.Module, args: tuple, gate: torch.Tensor) -> None:  # forward hook
        self.report(channel_gate=gate)


def _install(block: nn.Module, recorder: _BlockRecorder) -> Callable[[], None]:
    """Hook ``recorder`` into ``block``; returns the function that takes every hook out again."""
    handles = [block.register_forward_pre_hook(recorder.start)]
    if isinstance(block, SEModule):  # timm's forward: x * self.gate(x_se); the gate module's output
        handles.append(block.gate.register_forward_hook(recorder.report_se_gate))
        sources = []
    elif isinstance(block, Cbam):
        sources = [block.channel_gate, block.spatial_gate]
    else:
        sources = [block]
    if any("_gate_hook" in vars(source) for source in sources):
        for handle in handles:
            handle.remove()
        raise RuntimeError(
            f"a {type(block).__name__} block is already being recorded: leave the enclosing "
            "record_attention context before recording it again"
        )
    for source in sources:
        source._gate_hook = recorder.report

    def remove() -> None:
        for handle in handles:
            handle.remove()
        for source in sources:
            vars(source).pop("_gate_hook", None)  # back to the class attribute (None)

    return remove


@contextmanager
def record_attention(
    model: nn.Module, blocks: str | Iterable[str] | None = None
) -> Iterator[AttentionRecord]:
    """Record the gates of the attention blocks of ``model`` while the context is open.

    Args:
        model: any module holding PSA (either flavour), SE or CBAM blocks (or one such block).
        blocks: None (all of them), or qualified names / fnmatch patterns over
            :func:`list_attention_blocks` (a single string is one pattern). An entry that matches no
            block with gates raises ``ValueError``, naming the blocks there are.

    Yields:
        An :class:`AttentionRecord`, filled as the recorded blocks run; it stays readable after the
        context, which leaves no hook behind (also when the body raises).
    """
    selected = _select(model, blocks)
    record = AttentionRecord({name: type(m).__name__ for name, m in selected.items()})
    removers: list[Callable[[], None]] = []
    try:
        for name, block in selected.items():
            removers.append(_install(block, _BlockRecorder(type(block).__name__, record._calls[name])))
        yield record
    finally:
        for remove in removers:
            remove()
