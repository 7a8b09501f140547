"""Spatial attention gates drawn over an image: one overlay, or a labelled grid of blocks as a PNG.

The gates come from :func:`psa_zoo.layers.record_attention`. A gate ``[1, h, w]`` covers the *input the
model saw*, so pass that image: for a top-down pose model the person crop (``warp_image`` of the box, at
the model's input size), not the whole photo; for segmentation the image at the scale it was fed (a
sliding window or a rescaled copy each has its own maps). Each map is min-max normalised on its own
before the colour map, so a nearly constant gate (PSA_p's spatial gate stays within (0.5, 0.731], and
within about 1e-4 of 0.5 at realistic sizes) shows its small variation at full contrast; the grid labels
give every map's minimum and range so that the contrast is not misread. A gate constant to float
precision (an untrained near-identity PSA) comes out as the colour map's minimum everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from ._atomic import replace_atomically
from .data.images import read_image
from .layers.attention_maps import AttentionMaps

__all__ = ["overlay_attention", "save_attention_grid"]

_LABEL_HEIGHT = 14  # px of the strip above each tile (PIL's default font is ~11 px high)


def _gate_2d(spatial_gate: Any) -> np.ndarray:
    """[h, w], [1, h, w] or [1, 1, h, w] tensor / array → finite float32 [h, w]."""
    if isinstance(spatial_gate, torch.Tensor):
        spatial_gate = spatial_gate.detach().float().cpu().numpy()
    gate = np.asarray(spatial_gate, dtype=np.float32)
    while gate.ndim > 2 and gate.shape[0] == 1:
        gate = gate[0]
    if gate.ndim != 2 or gate.size == 0:
        raise ValueError(
            f"spatial_gate must be one map [h, w] or [1, h, w] (one sample: maps.spatial_gate[i]), got shape "
            f"{tuple(np.shape(spatial_gate))}"
        )
    if not np.isfinite(gate).all():
        raise ValueError("spatial_gate holds NaN or infinite values; a gate of a finite forward is finite")
    return gate


def _normalised(gate: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes 0 everywhere."""
    low, span = float(gate.min()), float(gate.max() - gate.min())
    return (gate - low) / span if span > 0 else np.zeros_like(gate)


def overlay_attention(image: Any, spatial_gate: Any, alpha: float = 0.5) -> Image.Image:
    """``image`` blended with a spatial gate in the jet colour map (blue = the map's minimum, red = max).

    Args:
        image: path, PIL image or [H, W, 3] uint8 RGB array: the input the model saw (see module doc).
        spatial_gate: [h, w] or [1, h, w] tensor or array, resized bilinearly (half-pixel centres, as
            ``F.interpolate(align_corners=False)``) to H × W after min-max normalisation.
        alpha: weight of the colour, in [0, 1] (0: the image, 1: the colour map alone).

    Returns: an RGB PIL image of the image's size.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1] (the colour's weight), got {alpha!r}")
    pixels = read_image(image, "RGB")
    height, width = pixels.shape[:2]
    gate = cv2.resize(_normalised(_gate_2d(spatial_gate)), (width, height), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(np.rint(gate * 255), 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(levels, cv2.COLORMAP_JET)[..., ::-1]  # cv2 returns BGR
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colour.astype(np.float32)
    return Image.fromarray(np.rint(blended).astype(np.uint8))


def _short_name(name: str, kind: str) -> str:
    """``backbone.blocks.3.1.attn`` → ``blocks.3.1``, ``stage4.0.branches.2.0.deattn`` → ``stage4.0.br2.0``;
    the model itself (``""``) → its kind."""
    parts = name.split(".")
    if parts and parts[0] == "backbone":
        parts = parts[1:]
    if parts and parts[-1] in ("attn", "deattn"):
        parts = parts[:-1]
    return ".".join(parts).replace("branches.", "br") or kind


def _fit_label(pen: ImageDraw.ImageDraw, name: str, suffix: str, width: int) -> str:
    """``name + suffix`` if it fits ``width`` px, else ``name``, else the name cut from the left (``..``)."""
    for text in (name + suffix, name):
        if pen.textlength(text) <= width - 4:
            return text
    while len(name) > 1 and pen.textlength(".." + name) > width - 4:
        name = name[1:]
    return ".." + name


def _pick(names: list[str], max_blocks: int) -> list[str]:
    """At most ``max_blocks`` names spread evenly over ``names`` (first and last kept)."""
    if len(names) <= max_blocks:
        return names
    index = np.unique(np.linspace(0, len(names) - 1, max_blocks).round().astype(int))
    return [names[i] for i in index]


def save_attention_grid(
    image: Any,
    maps: Mapping[str, AttentionMaps],
    out: str | Path,
    *,
    sample: int = 0,
    max_blocks: int = 16,
    tile_size: int = 256,
    alpha: float = 0.5,
) -> Path:
    """One PNG with a tile per block: the spatial gate of ``sample`` over ``image``, labelled with the
    block's short name and the gate's minimum and range (``stage4.0.branches.0.0 [0.500 +0.0003]``).

    Args:
        image: the input the model saw for ``sample`` (path, PIL image or [H, W, 3] uint8 RGB array).
        maps: block name → :class:`AttentionMaps`, e.g. an ``AttentionRecord``; blocks without a spatial
            gate (SE) are left out.
        out: the PNG path; its folder must exist. Written to a temporary file beside it and renamed, so it
            is never half-written; an existing file is replaced (as the predictors' ``draw`` does).
        sample: which item of the batch the gates are taken from.
        max_blocks: at most this many tiles, spread evenly over the blocks in ``maps`` order.
        tile_size: the longer side of each tile in pixels (the image is resized to it).
        alpha: the colour's weight in [0, 1] (see :func:`overlay_attention`).

    Returns: ``out`` as a Path.
    """
    for value, arg in ((max_blocks, "max_blocks"), (tile_size, "tile_size")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"out {str(out)!r} is a folder; pass the path of the PNG file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of out {str(out)!r} does not exist; create it first")
    names = [name for name, m in maps.items() if m.spatial_gate is not None]
    if not names:
        raise ValueError(
            f"none of the {len(maps)} recorded blocks has a spatial gate (SE records a channel gate only); "
            "record PSA or CBAM blocks for a spatial map"
        )
    names = _pick(names, max_blocks)
    pixels = read_image(image, "RGB")
    height, width = pixels.shape[:2]
    scale = tile_size / max(height, width)
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (tile_w, tile_h) != (width, height):
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        pixels = cv2.resize(pixels, (tile_w, tile_h), interpolation=shrink)
    columns = math.ceil(math.sqrt(len(names)))
    rows = math.ceil(len(names) / columns)
    canvas = Image.new("RGB", (columns * tile_w, rows * (tile_h + _LABEL_HEIGHT)))
    for i, name in enumerate(names):
        gate = maps[name].spatial_gate
        if not -gate.shape[0] <= sample < gate.shape[0]:
            raise ValueError(
                f"sample {sample} is out of range: block {name!r} recorded {gate.shape[0]} samples"
            )
        gate = gate[sample]
        x, y = (i % columns) * tile_w, (i // columns) * (tile_h + _LABEL_HEIGHT)
        canvas.paste(overlay_attention(pixels, gate, alpha), (x, y + _LABEL_HEIGHT))
        low, high = float(gate.min()), float(gate.max())
        span = f" [{low:.3f} +{high - low:.2g}]"  # min and range: PSA_p's gates vary by ~1e-4 only
        strip = Image.new("RGB", (tile_w, _LABEL_HEIGHT))  # its own image: a long label is cut at the tile
        pen = ImageDraw.Draw(strip)
        pen.text((2, 1), _fit_label(pen, _short_name(name, maps[name].kind), span, tile_w), fill="white")
        canvas.paste(strip, (x, y))
    return replace_atomically(out, lambda tmp: canvas.save(tmp, format="PNG"))
