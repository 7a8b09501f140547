"""Read the fixtures' key lists (``key<TAB>[shape]<TAB>dtype`` per line) into state dicts of meta tensors."""

from __future__ import annotations

from pathlib import Path

import torch


def read_key_list(path: Path, strip_prefix: str = "") -> dict[str, torch.Tensor]:
    """Each line → an empty meta tensor of that shape and dtype (keys and shapes only, no memory), in the
    file's order; ``strip_prefix`` is removed from the keys that start with it (e.g. ``"module."``)."""
    state = {}
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        state[key.removeprefix(strip_prefix)] = torch.empty(dims, dtype=getattr(torch, dtype), device="meta")
    return state


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def rows(state: dict[str, torch.Tensor]) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) per entry, in order: compares order, shapes and dtypes at once."""
    return [(k, tuple(v.shape), v.dtype) for k, v in state.items()]
