"""Export a psa_zoo model to ONNX or to a ``torch.export`` program, and prove the file computes what the
model computes.

:func:`export_model` traces the model with ``torch.export`` (batch and image size dynamic where the model
allows), writes the artifact — ONNX through torch's dynamo exporter (``pip install 'psa_zoo[export]'``:
onnx, onnxscript, onnxruntime) or a ``.pt2`` program (``torch.export.save``) — loads it back
(``onnxruntime.InferenceSession`` / ``torch.export.load``), runs it on a real input (and, when dynamic,
on a second input of another batch and image size) and compares every output with eager PyTorch. Above
the tolerance it raises :class:`ExportParityError` with the numbers and writes nothing.

Pose models can carry their decode step (``decode=True``): :class:`HeatmapDecoder` ports the numpy
decoders of :mod:`psa_zoo.pose.codecs` (MSRA, DARK, UDP, UDP combined) to exportable torch ops, so the
exported model returns keypoints in input-crop pixels and their scores next to the heatmaps. That is where
ports in other toolkits go wrong (DARK keypoints off by pixels), so the check decodes the artifact's own
heatmaps in PyTorch and compares the artifact's keypoints with that.

Facts found while writing this (torch 2.14):

* an example batch of 1 makes ``torch.export`` specialise the batch to 1, so a dynamic batch is traced
  with a batch of 2;
* each family's coarsest map (stride 32 in HRNet and ResNet, 16 in DeepLabV3+'s MobileNetV2) must be at
  least 2 pixels wide — a 1-pixel map lets torch specialise broadcasting — so dynamic height and width
  start at :data:`MIN_DYNAMIC_SIDE` = 33; any size from there works (no multiple of 4 or 32 needed: the
  models round up and resize to exact sizes);
* under ``torch.no_grad`` the PSA gate products used to take their ``out=`` branch, which
  ``torch.export`` recorded as it was (such a ``.pt2`` failed when called with autograd enabled); the gate
  helpers (``psa_zoo.layers._helpers.apply_parallel_gates``) now use plain products whenever
  ``torch.compiler.is_compiling()``, and the trace here runs with autograd enabled as well.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._atomic import fsync_dir
from .pose.codecs import HeatmapCodec
from .pose.inference import codec_for

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_KEYPOINT_ATOL",
    "DEFAULT_RTOL",
    "FORMATS",
    "MIN_DYNAMIC_SIDE",
    "DecodedPoseModel",
    "ExportDependencyError",
    "ExportParityError",
    "ExportReport",
    "HeatmapDecoder",
    "export_model",
]

FORMATS: dict[str, str] = {"onnx": ".onnx", "torch-export": ".pt2"}  # format → file suffix
MIN_DYNAMIC_SIDE = 33  # smallest dynamic height / width: the stride-32 maps must be ≥ 2 px (see above)
# Scale-relative by default: an untrained HRNet (N(0, 0.001) convs, BN at its initial statistics) gives
# heatmaps near 1e-10, where any absolute floor would pass every difference.
DEFAULT_ATOL = 0.0
DEFAULT_RTOL = 1e-4  # of the largest reference magnitude of each output
DEFAULT_KEYPOINT_ATOL = 1e-2  # input-crop pixels
ONNX_OPSET = 18
_SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights an ONNX file holds without external data (2 GiB cap)
_INPUT_NAME = "input"
_METADATA_KEY = "psa_zoo"  # ONNX metadata_props key / .pt2 extra file with the model's metadata (JSON)


class ExportParityError(ValueError):
    """The exported artifact's outputs differ from PyTorch's by more than the tolerance.

    Attributes:
        errors: per output name, ``{"max_abs": ..., "max_rel": ..., "limit": ..., "input_shape": ...}``
            (keypoints: pixels).
    """

    def __init__(self, message: str, errors: dict[str, dict]):
        super().__init__(message)
        self.errors = errors


class ExportDependencyError(ImportError, ValueError):
    """An optional package the export needs is missing (a ``ValueError`` too, so the CLI prints one line)."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how well it matched PyTorch.

    Attributes:
        path: the artifact.
        format: ``"onnx"`` or ``"torch-export"``.
        input_shape: the first checked input [N, C, H, W].
        checked_shapes: every input shape the artifact was run on (two when dynamic).
        dynamic_axes: names of the input's dynamic dims (``("batch", "height", "width")``, ``()`` static).
        output_names: ``("heatmaps",)``, ``("heatmaps", "keypoints", "scores")`` or ``("logits",)``.
        max_abs_error / max_rel_error: over every value output (heatmaps, logits, scores) and input; rel
            is the error over the output's largest reference magnitude.
        keypoint_max_px_error: decode only: the artifact's keypoints vs PyTorch's decode of the
            artifact's heatmaps, in input-crop pixels.
        atol / rtol / keypoint_atol: the tolerance: an output passes when max abs ≤ atol + rtol · max|ref|;
            keypoints when their error ≤ keypoint_atol.
        passed: every comparison was within the tolerance (a failing export raises instead).
        codec: the decoded codec's name (decode only).
        notes: what was adapted, e.g. a dimension that could not be dynamic.
    """

    path: Path
    format: str
    input_shape: tuple[int, ...]
    checked_shapes: tuple[tuple[int, ...], ...]
    dynamic_axes: tuple[str, ...]
    output_names: tuple[str, ...]
    max_abs_error: float
    max_rel_error: float
    keypoint_max_px_error: float | None
    atol: float
    rtol: float
    keypoint_atol: float
    passed: bool
    codec: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def format_table(self) -> str:
        """A short two-column table for the command line."""
        shapes = ", ".join("×".join(map(str, s)) for s in self.checked_shapes)
        rows = [
            ("format", self.format),
            ("path", str(self.path)),
            ("inputs checked", shapes),
            ("dynamic axes", ", ".join(self.dynamic_axes) or "none (static)"),
            ("outputs", ", ".join(self.output_names) + (f" (codec {self.codec})" if self.codec else "")),
            ("max abs error", f"{self.max_abs_error:.3g}"),
            ("max rel error", f"{self.max_rel_error:.3g} (of the largest output magnitude)"),
            ("tolerance", f"abs ≤ {self.atol:g} + {self.rtol:g} · max|output|"),
        ]
        if self.keypoint_max_px_error is not None:
            rows.append(("keypoint error", f"{self.keypoint_max_px_error:.3g} px (≤ {self.keypoint_atol:g})"))
        rows.append(("parity", "pass" if self.passed else "FAIL"))
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# --- decode in torch ---------------------------------------------------------------------------------------
def _gather(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, width) -> torch.Tensor:
    """flat [N, K, h·w], integer x, y [N, K] → the values there [N, K]."""
    return flat.gather(-1, (y * width + x).unsqueeze(-1)).squeeze(-1)


def _argmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer x, y [N, K] and value of each map's maximum (the first one in row-major order, as numpy);
    maps whose maximum is ≤ 0 get (0, 0), as HRNet ``get_max_preds``. ``%`` is avoided: the ONNX exporter
    cannot lower a remainder by a symbolic size."""
    width = maps.shape[-1]
    flat = maps.flatten(2)
    index = flat.argmax(dim=-1)
    score = flat.amax(dim=-1)
    y = torch.div(index, width, rounding_mode="floor")
    x = index - y * width
    empty = score <= 0
    return torch.where(empty, 0, x), torch.where(empty, 0, y), score


def _blur(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each map [N, K, h, w] with zero padding: ``codecs.gaussian_blur``
    (``cv2.sepFilter2D``, ``BORDER_CONSTANT``) as two convolutions."""
    k, size = maps.shape[1], kernel.shape[0]
    # one depthwise conv per direction: no reshape of the batch (a reshape of symbolic sizes adds guards)
    maps = F.conv2d(maps, kernel.view(1, 1, 1, size).expand(k, 1, 1, size), padding=(0, size // 2), groups=k)
    return F.conv2d(maps, kernel.view(1, 1, size, 1).expand(k, 1, size, 1), padding=(size // 2, 0), groups=k)


def _blur_factor(blurred: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """[N, K] factors that rescale each blurred map to the original maximum (``codecs._blur_to_max``)."""
    blurred_max = blurred.flatten(2).amax(dim=-1)
    positive = blurred_max > 0
    return torch.where(positive, score / torch.where(positive, blurred_max, 1.0), 1.0)


def _decode_msra(maps: torch.Tensor, decoder: HeatmapDecoder) -> tuple[torch.Tensor, torch.Tensor]:
    """``MSRAHeatmap._decode``: argmax, a quarter pixel toward the larger neighbour (HRNet
    ``get_final_preds``)."""
    maps = maps[:, :, 0]
    h, w = maps.shape[-2:]
    flat = maps.flatten(2)
    x, y, score = _argmax(maps)
    refine = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
    xc, yc = x.clamp(1, w - 2), y.clamp(1, h - 2)
    step_x = 0.25 * torch.sign(_gather(flat, xc + 1, yc, w) - _gather(flat, xc - 1, yc, w))
    step_y = 0.25 * torch.sign(_gather(flat, xc, yc + 1, w) - _gather(flat, xc, yc - 1, w))
    zero = torch.zeros_like(step_x)
    xy = torch.stack([x + torch.where(refine, step_x, zero), y + torch.where(refine, step_y, zero)], -1)
    return xy, score


def _newton_step(
    dx: torch.Tensor, dy: torch.Tensor, hxx: torch.Tensor, hyy: torch.Tensor, hxy: torch.Tensor, ok
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """−H⁻¹∇ with H⁻¹ = [[hyy, −hxy], [−hxy, hxx]] / det where ``ok`` and det ≠ 0 (0 elsewhere)."""
    det = hxx * hyy - hxy**2
    ok = ok & (det != 0)
    det = torch.where(ok, det, 1.0)
    zero = torch.zeros_like(dx)
    step_x = torch.where(ok, -(hyy * dx - hxy * dy) / det, zero)
    step_y = torch.where(ok, -(hxx * dy - hxy * dx) / det, zero)
    return step_x, step_y, ok


def _decode_dark(maps: torch.Tensor, decoder: HeatmapDecoder) -> tuple[torch.Tensor, torch.Tensor]:
    """``DarkHeatmap._decode``: Taylor step on the log of the blurred map (DarkPose ``taylor``)."""
    maps = maps[:, :, 0]
    h, w = maps.shape[-2:]
    x, y, score = _argmax(maps)
    blurred = _blur(maps, decoder.kernel)
    factor, flat = _blur_factor(blurred, score), blurred.flatten(2)
    xc, yc = x.clamp(2, w - 3), y.clamp(2, h - 3)

    def at(dx: int, dy: int) -> torch.Tensor:
        return torch.log(torch.clamp_min(_gather(flat, xc + dx, yc + dy, w) * factor, 1e-10))

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (score > 0)
    step_x, step_y, _ = _newton_step(dx, dy, dxx, dyy, dxy, inside)
    return torch.stack([x + step_x, y + step_y], -1), score


def _decode_udp(maps: torch.Tensor, decoder: HeatmapDecoder) -> tuple[torch.Tensor, torch.Tensor]:
    """``UDPHeatmap._decode`` (Gaussian): edge-clamped differences of the clipped log blur, Newton step
    with H + εI (mmpose ``refine_keypoints_dark_udp``)."""
    maps = maps[:, :, 0]
    h, w = maps.shape[-2:]
    x, y, score = _argmax(maps)
    blurred = _blur(maps, decoder.kernel)
    factor, flat = _blur_factor(blurred, score), blurred.flatten(2)

    def at(dx: int, dy: int) -> torch.Tensor:
        values = _gather(flat, (x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1), w) * factor
        return torch.log(values.clamp(1e-3, 50.0))

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = at(1, 0) - 2 * centre + at(-1, 0)
    dyy = at(0, 1) - 2 * centre + at(0, -1)
    dxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * centre - at(-1, 0) - at(0, -1) + at(-1, -1))
    eps = float(np.finfo(np.float32).eps)
    step_x, step_y, _ = _newton_step(dx, dy, dxx + eps, dyy + eps, dxy, torch.ones_like(x, dtype=torch.bool))
    return torch.stack([x + step_x, y + step_y], -1), score


def _decode_udp_combined(maps: torch.Tensor, decoder: HeatmapDecoder) -> tuple[torch.Tensor, torch.Tensor]:
    """``UDPHeatmap._decode`` (combined): argmax of the blurred disk map plus offset · radius there."""
    w = maps.shape[-1]
    x, y, score = _argmax(_blur(maps[:, :, 0], decoder.kernel))
    offset_x = _gather(maps[:, :, 1].flatten(2), x, y, w)
    offset_y = _gather(maps[:, :, 2].flatten(2), x, y, w)
    return torch.stack([x + offset_x * decoder.radius, y + offset_y * decoder.radius], -1), score


_DECODERS: dict[str, Callable] = {
    "msra": _decode_msra,
    "dark": _decode_dark,
    "udp": _decode_udp,
    "udp_combined": _decode_udp_combined,
}


class HeatmapDecoder(nn.Module):
    """The decode of a :class:`~psa_zoo.pose.codecs.HeatmapCodec` in exportable torch ops.

    Reproduces ``codec.decode`` (the numpy reference) for ``msra``, ``dark``, ``udp`` and
    ``udp_combined``: the same argmax (first maximum; (0, 0) for a map whose maximum is ≤ 0), the same
    blur kernel (``cv2.getGaussianKernel(size, 0)``, zero padding), conditions and Newton steps, in
    float32 (numpy mixes in float64, so results agree to ~1e-5 px on well-conditioned maps).

    The blur kernel and the combined target's radius are the codec's (fixed at its heatmap size); the
    scaling to input pixels comes from the actual sizes, so the decoder follows a dynamic input size.

    Forward: ``heatmaps`` [N, K·c, h, w], ``input_size`` (H, W) of the crop → keypoints [N, K, 2] float32
    (x, y in input-crop pixels), scores [N, K] float32.
    """

    def __init__(self, codec: HeatmapCodec):
        super().__init__()
        if codec.name not in _DECODERS:
            raise ValueError(f"no torch decoder for codec {codec.name!r}; supported: {sorted(_DECODERS)}")
        self.codec_name = codec.name
        self.channels_per_keypoint = codec.channels_per_keypoint
        self.unit_length = codec.udp_warp  # UDP: input = heatmap · (input − 1) / (heatmap − 1)
        size = 2 * codec.blur_kernel_size + 1 if codec.name == "udp_combined" else codec.blur_kernel_size
        kernel = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_32F)[:, 0]
        self.register_buffer("kernel", torch.from_numpy(np.ascontiguousarray(kernel)), persistent=False)
        self.radius = float(getattr(codec, "radius", 0.0))

    def forward(self, heatmaps: torch.Tensor, input_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        n, channels, h, w = heatmaps.shape
        c = self.channels_per_keypoint
        maps = heatmaps.float().reshape(n, channels // c, c, h, w)
        xy, scores = _DECODERS[self.codec_name](maps, self)
        height, width = input_size
        if self.unit_length:
            scale_x, scale_y = (width - 1) / (w - 1), (height - 1) / (h - 1)
        else:
            scale_x, scale_y = width / w, height / h
        keypoints = torch.stack([xy[..., 0] * scale_x, xy[..., 1] * scale_y], dim=-1)
        return keypoints, scores

    def extra_repr(self) -> str:
        return f"codec={self.codec_name!r}"


class DecodedPoseModel(nn.Module):
    """A pose model followed by its decode: x [N, C, H, W] → (heatmaps [N, K·c, h, w], keypoints
    [N, K, 2] in input-crop pixels, scores [N, K])."""

    def __init__(self, model: nn.Module, decoder: HeatmapDecoder):
        super().__init__()
        self.model, self.decoder = model, decoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heatmaps = self.model(x)
        keypoints, scores = self.decoder(heatmaps, x.shape[-2:])
        return heatmaps, keypoints, scores


def _pose_codec(model: nn.Module) -> HeatmapCodec:
    """The codec a pose model predicts with (``PoseEstimator``'s: the metadata's, at its input size)."""
    _, height, width = model.metadata.input_size
    heatmap_h, heatmap_w = model.output_size((height, width))
    return codec_for(model.metadata, (heatmap_w, heatmap_h))


# --- checks ------------------------------------------------------------------------------------------------
def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ExportDependencyError(
            f"ONNX export needs {', '.join(missing)}, which {verb} not installed, expected onnx, onnxscript "
            "and onnxruntime; pip install 'psa_zoo[export]' (or use format torch-export)"
        )


def _check_out(out: str | Path, fmt: str, overwrite: bool) -> Path:
    path = Path(out)
    suffix = FORMATS[fmt]
    if path.suffix != suffix:
        raise ValueError(
            f"output {path} has suffix {path.suffix or 'none'!r}, expected {suffix!r} for {fmt}; name the "
            f"file {path.stem}{suffix}"
        )
    if path.is_dir():
        raise ValueError(f"output {path} is a folder, expected a file path; give a file name inside it")
    if not path.parent.is_dir():
        raise ValueError(
            f"output folder {path.parent} does not exist, expected an existing folder; create it"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    return path


def _input_hw(model: nn.Module, input_size: Sequence[int] | None, dynamic: bool) -> tuple[int, int]:
    height, width = model.metadata.input_size[1:] if input_size is None else input_size
    if any(int(v) != v or v < 1 for v in (height, width)):
        raise ValueError(f"input_size must be (height, width) of positive ints, got {input_size!r}")
    if dynamic and min(height, width) < MIN_DYNAMIC_SIDE:
        raise ValueError(
            f"input size {height}×{width} is below {MIN_DYNAMIC_SIDE} px, expected ≥ {MIN_DYNAMIC_SIDE} "
            "for a dynamic height and width (the stride-32 maps must be ≥ 2 px); give a larger input size "
            "or export static (dynamic=False, CLI: --static)"
        )
    return int(height), int(width)


def _example_input(metadata, batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic random image [batch, C, height, width] (uniform pixels in [0, 1]) normalised with
    the metadata's mean / std, as a predictor feeds the model."""
    channels = metadata.input_size[0]
    image = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(metadata.mean).view(1, channels, 1, 1)
    std = torch.tensor(metadata.std).view(1, channels, 1, 1)
    return (image - mean) / std


def _second_side(side: int) -> int:
    """Another, odd-offset side for the dynamic check (smaller when that stays ≥ the minimum)."""
    return side - 7 if side - 7 >= MIN_DYNAMIC_SIDE else side + 7


# --- tracing and writing -----------------------------------------------------------------------------------
_AXES = {"batch": 0, "height": 2, "width": 3}


def _dynamic_shapes(axes: Sequence[str]) -> tuple[dict] | None:
    if not axes:
        return None
    dims = {
        "batch": torch.export.Dim("batch", min=1),
        "height": torch.export.Dim("height", min=MIN_DYNAMIC_SIDE),
        "width": torch.export.Dim("width", min=MIN_DYNAMIC_SIDE),
    }
    return ({_AXES[a]: dims[a] for a in axes},)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and raise many warnings about their internals: keep them out."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        for module in (r"torch(\..*)?", r"onnxscript(\..*)?", r"onnx_ir(\..*)?", r"onnx(\..*)?"):
            warnings.filterwarnings("ignore", module=module)
        yield


def _trace(
    module: nn.Module, example: torch.Tensor, batch_size: int, axes: tuple[str, ...], notes: list[str]
):
    """``torch.export.export`` with ``axes`` dynamic; a dimension the model does not allow (torch names
    it in a constraint violation) is made static and the trace repeated. ``example`` has a batch of at
    least 2 (a batch of 1 would be specialised); a static batch is traced at ``batch_size``. Returns the
    program, the axes used and the traced input."""
    from torch._dynamo.exc import UserError

    axes = tuple(axes)
    while True:
        shaped = example if "batch" in axes else example[:batch_size]
        try:
            with _quiet():  # autograd enabled on purpose (see the module docstring)
                program = torch.export.export(module, (shaped,), dynamic_shapes=_dynamic_shapes(axes))
            return program, axes, shaped
        except UserError as error:
            first = _first_line(error)
            if not axes or "Constraints violated" not in first:
                raise _failed("torch.export could not trace the model", error) from error
            named = first[first.find("(") + 1 : first.find(")")].split(", ") if "(" in first else []
            lost = tuple(a for a in axes if a in named) or axes  # unnamed: give up every dynamic axis
            notes.append(f"{', '.join(lost)} kept static: torch.export says {first}")
            axes = tuple(a for a in axes if a not in lost)
        except Exception as error:  # unsupported Python or ops: one line for the CLI, the cause chained
            raise _failed("torch.export could not trace the model", error) from error


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _failed(what: str, error: Exception) -> ValueError:
    return ValueError(
        f"{what} ({type(error).__name__}: {_first_line(error)}), expected an exportable model; the chained "
        "traceback (Python API) has the details — try static shapes (--static) or the other format"
    )


def _metadata_json(model: nn.Module, output_names: Sequence[str], codec: str | None) -> str:
    record = {
        "model_name": getattr(model, "model_name", None),
        "input": f"{_INPUT_NAME} [N, C, H, W] float32, normalised with metadata mean/std",
        "outputs": list(output_names),
        "keypoints": "input-crop pixels (x, y)" if codec else None,
        "codec": codec,
        "metadata": model.metadata.to_dict(),
    }
    return json.dumps(record)


def _write_onnx(program, example: torch.Tensor, axes, names, target: Path, meta: str) -> None:
    _require("onnx", "onnxscript", "onnxruntime")
    with _quiet():
        try:
            onnx_program = _to_onnx(program, example, axes, names)
        except Exception as error:  # a missing translation: one line for the CLI, the cause chained
            raise _failed("the ONNX exporter could not translate the program", error) from error
        onnx_program.model.metadata_props[_METADATA_KEY] = meta
        onnx_program.save(str(target), external_data=False)


def _to_onnx(program, example: torch.Tensor, axes, names):
    return torch.onnx.export(
        program,
        (example,),
        dynamic_shapes=_dynamic_shapes(axes),  # names the ONNX dims batch / height / width
        input_names=[_INPUT_NAME],
        output_names=list(names),
        opset_version=ONNX_OPSET,
        dynamo=True,
        verbose=False,
        report=False,
        optimize=True,
    )


def _write_pt2(program, target: Path, meta: str) -> None:
    with _quiet():
        torch.export.save(program, str(target), extra_files={_METADATA_KEY: meta})


def _put_in_place(tmp: Path, path: Path) -> None:
    """Mode 0644 whatever the umask (mkstemp makes 0600), data on disk, then one rename into place."""
    tmp.chmod(0o644)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _runner(path: Path, fmt: str) -> Callable[[torch.Tensor], list[np.ndarray]]:
    """The artifact loaded back: a function from an input tensor to its outputs (numpy)."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {_INPUT_NAME: x.numpy()})
    with _quiet():
        program = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> list[np.ndarray]:  # autograd on, as a user calls it
        out = program(x)
        return [t.detach().numpy() for t in (out if isinstance(out, tuple | list) else (out,))]

    return run


# --- parity ------------------------------------------------------------------------------------------------
@dataclass
class _Tolerance:
    atol: float
    rtol: float
    keypoint_atol: float


def _errors(got: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """max abs error, max abs error / max|ref|, and max|ref| (float64)."""
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(ref.astype(np.float64)), initial=0.0))
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
    return diff, rel, scale


def _check_parity(
    run: Callable[[torch.Tensor], list[np.ndarray]],
    reference: nn.Module,
    inputs: Sequence[torch.Tensor],
    output_names: Sequence[str],
    tolerance: _Tolerance,
    decoder: HeatmapDecoder | None = None,
    what: str = "the export",
) -> dict[str, dict]:
    """Run ``run`` (an artifact) and ``reference`` (eager) on each input and compare every output.

    Value outputs (heatmaps, logits, scores) pass when max abs ≤ atol + rtol · max|ref|. Keypoints are
    compared with ``decoder`` applied in PyTorch to the artifact's own heatmaps: that checks the exported
    decode, while a near-tie of two heatmap maxima (which tiny heatmap differences may break either way)
    stays a heatmap matter. Raises :class:`ExportParityError` when a shape or a value is off; returns the
    worst numbers per output.
    """
    worst: dict[str, dict] = {}
    failures: list[str] = []
    for x in inputs:
        with torch.no_grad():
            expected = reference(x)
        expected = [t.numpy() for t in (expected if isinstance(expected, tuple | list) else (expected,))]
        got = run(x)
        shape = tuple(x.shape)
        if [g.shape for g in got] != [e.shape for e in expected]:
            raise ExportParityError(
                f"{what} gives outputs of shapes {[g.shape for g in got]} for input {list(shape)}, expected "
                f"PyTorch's {[e.shape for e in expected]}; the exported program does not follow this input "
                "size (export it static at this size, or report the model)",
                {},
            )
        for name, g, e in zip(output_names, got, expected, strict=True):
            if name == "keypoints":
                heatmaps = torch.from_numpy(got[output_names.index("heatmaps")])
                with torch.no_grad():
                    decoded = decoder(heatmaps, shape[-2:])[0].numpy()
                diff, rel, _ = _errors(g, decoded)
                limit = tolerance.keypoint_atol
            else:
                diff, rel, scale = _errors(g, e)
                limit = tolerance.atol + tolerance.rtol * scale
            if name not in worst or diff > worst[name]["max_abs"]:
                worst[name] = {"max_abs": diff, "max_rel": rel, "limit": limit, "input_shape": shape}
            if not diff <= limit:
                unit = " px" if name == "keypoints" else ""
                failures.append(
                    f"{name} max abs error {diff:.3g}{unit} (rel {rel:.3g}) > {limit:.3g}{unit} on input "
                    f"{list(shape)}"
                )
    if failures:
        raise ExportParityError(
            f"{what} does not match PyTorch: {'; '.join(failures)}; the exporter translated some op "
            "differently — inspect the model, or raise atol/rtol (CLI: --atol/--rtol) if that difference "
            "is acceptable",
            worst,
        )
    return worst


# --- the public function -----------------------------------------------------------------------------------
def _prepared(model: nn.Module) -> nn.Module:
    """The model to export: itself when on CPU in float32, else a CPU float32 copy (the user's model is
    left where it is)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.int64) for t in tensors):
        return model
    return copy.deepcopy(model).to("cpu", torch.float32)


def export_model(
    model: nn.Module,
    format: str,
    out: str | Path,
    *,
    input_size: Sequence[int] | None = None,
    batch_size: int = 1,
    dynamic: bool = True,
    decode: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    keypoint_atol: float = DEFAULT_KEYPOINT_ATOL,
    overwrite: bool = False,
) -> ExportReport:
    """Export ``model`` to ``out`` and check the written file against eager PyTorch.

    Args:
        model: a psa_zoo model (``task``, ``metadata``); exported in eval mode on the CPU in float32 (its
            own mode is restored; a model elsewhere is copied).
        format: ``"onnx"`` (``.onnx``, opset 18, one file) or ``"torch-export"`` (``.pt2``).
        out: the file to write (suffix ``.onnx`` / ``.pt2``); written atomically, only after the check.
        input_size: (H, W) of the example input; default the metadata's input size.
        batch_size: N of the checked input.
        dynamic: batch, height and width dynamic (height and width ≥ :data:`MIN_DYNAMIC_SIDE`); a
            dimension the model does not allow stays static (``report.notes`` says so). The artifact is
            then also run on a second input with another batch and size.
        decode: pose models only: add the codec's decode (:class:`HeatmapDecoder`); outputs heatmaps,
            keypoints [N, K, 2] (input-crop pixels) and scores [N, K].
        atol / rtol: an output passes when max abs error ≤ atol + rtol · max|reference|.
        keypoint_atol: keypoint tolerance in input-crop pixels (decode only).
        overwrite: replace an existing ``out``.

    Returns:
        :class:`ExportReport`.

    Raises:
        ExportParityError: the artifact's outputs differ (nothing is written).
        ExportDependencyError: ONNX without onnx / onnxscript / onnxruntime.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        ValueError: bad arguments (unknown format, wrong suffix, decode of a segmentation model, ...).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}, expected one of {sorted(FORMATS)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    task = getattr(model, "task", None)
    if task not in ("pose", "segmentation") or not hasattr(model, "metadata"):
        raise ValueError(
            f"export_model needs a psa_zoo model (pose or segmentation), got {type(model).__name__}"
        )
    if decode and task != "pose":
        raise ValueError(
            f"decode=True (CLI: --decode) is for pose models, got a {task} model; export it without decode"
        )
    path = _check_out(out, format, overwrite)
    if format == "onnx":
        _require("onnx", "onnxscript", "onnxruntime")
    height, width = _input_hw(model, input_size, dynamic)
    tolerance = _Tolerance(float(atol), float(rtol), float(keypoint_atol))
    if not all(0 <= v < math.inf for v in (tolerance.atol, tolerance.rtol, tolerance.keypoint_atol)):
        raise ValueError(
            f"tolerances must be finite numbers ≥ 0, got atol={atol!r}, rtol={rtol!r}, "
            f"keypoint_atol={keypoint_atol!r}"
        )

    was_training = model.training
    try:
        model.eval()
        return _export(_prepared(model), format, path, height, width, batch_size, dynamic, decode, tolerance)
    finally:
        model.train(was_training)


def _eager_failure(module: nn.Module, x: torch.Tensor) -> str | None:
    """None when ``module`` runs on ``x`` in PyTorch, else the first line of its error."""
    try:
        with torch.no_grad():
            module(x)
    except Exception as error:  # any failure means: this size is not for the model
        return _first_line(error)
    return None


def _second_input(metadata, batch_size: int, height: int, width: int, axes: Sequence[str]) -> torch.Tensor:
    """The dynamic check's input: batch + 1 when the batch is dynamic, other sides when they are."""
    height = _second_side(height) if "height" in axes else height
    width = _second_side(width) if "width" in axes else width
    return _example_input(metadata, batch_size + ("batch" in axes), height, width, seed=2)


def _allowed_axes(module, metadata, batch_size, height, width, axes, notes) -> tuple[str, ...]:
    """``axes`` less those the model cannot vary in PyTorch itself (a Linear over the flattened image
    fixes height and width, say); ``notes`` says why."""
    for dropped in (("height", "width"), ("batch",)):
        if not set(dropped) & set(axes):
            continue
        second = _second_input(metadata, batch_size, height, width, axes)
        failure = _eager_failure(module, second)
        if failure is None:
            return axes
        shape = tuple(second.shape)
        notes.append(f"{', '.join(dropped)} kept static: the model does not run at {shape} ({failure})")
        axes = tuple(a for a in axes if a not in dropped)
    return axes


def _output_names(task: str, decode: bool) -> tuple[str, ...]:
    if decode:
        return ("heatmaps", "keypoints", "scores")
    return ("heatmaps",) if task == "pose" else ("logits",)


def _export(model, fmt, path, height, width, batch_size, dynamic, decode, tolerance) -> ExportReport:
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if fmt == "onnx" and weight_bytes > _SINGLE_FILE_LIMIT:
        raise ValueError(
            "the model's weights exceed what one ONNX file holds (2 GiB), expected a smaller model; export "
            "with format='torch-export'"
        )
    codec = _pose_codec(model) if decode else None
    decoder = HeatmapDecoder(codec) if codec is not None else None
    module = DecodedPoseModel(model, decoder).eval() if decoder is not None else model
    names = _output_names(model.task, decode)
    notes: list[str] = []
    axes = ("batch", "height", "width") if dynamic else ()
    axes = _allowed_axes(module, model.metadata, batch_size, height, width, axes, notes)
    example = _example_input(model.metadata, max(2, batch_size), height, width, seed=1)
    program, axes, traced = _trace(module, example, batch_size, axes, notes)
    inputs = [_example_input(model.metadata, batch_size, height, width)]
    if axes:
        inputs.append(_second_input(model.metadata, batch_size, height, width, axes))

    meta = _metadata_json(model, names, codec.name if codec else None)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=FORMATS[fmt])
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if fmt == "onnx":
            _write_onnx(program, traced, axes, names, tmp_path, meta)
        else:
            _write_pt2(program, tmp_path, meta)
        try:
            worst = _check_parity(
                _runner(tmp_path, fmt), module, inputs, names, tolerance, decoder, what=f"the {fmt} export"
            )
        except ExportParityError:
            raise
        except Exception as error:  # the runtime refused the file or failed on an input: one clear error
            raise _failed(f"the written {fmt} file could not be loaded back or run", error) from error
        _put_in_place(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)

    values = [v for k, v in worst.items() if k != "keypoints"]
    return ExportReport(
        path=path,
        format=fmt,
        input_shape=tuple(inputs[0].shape),
        checked_shapes=tuple(tuple(x.shape) for x in inputs),
        dynamic_axes=tuple(axes),
        output_names=names,
        max_abs_error=max(v["max_abs"] for v in values),
        max_rel_error=max(v["max_rel"] for v in values),
        keypoint_max_px_error=worst["keypoints"]["max_abs"] if "keypoints" in worst else None,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        keypoint_atol=tolerance.keypoint_atol,
        passed=True,
        codec=codec.name if codec else None,
        notes=tuple(notes),
    )
