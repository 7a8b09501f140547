"""How a model runs: the memory format of its weights and inputs, and ``torch.compile``.

One place decides, for the predictors (:class:`psa_zoo.pose.PoseEstimator`, :class:`psa_zoo.seg.Segmenter`)
and the training engine:

* **memory format** ``"auto"`` (the default everywhere) is ``channels_last`` for a model with 2-D
  convolutions on the CPU (oneDNN) or a CUDA GPU (cuDNN), whose convolution kernels prefer it (every
  psa_zoo family runs faster in it on the CPU); contiguous elsewhere (other devices, models without
  convolutions). ``"channels_last"`` and ``"contiguous"`` force one. Only the layout changes: outputs
  agree to float rounding (the convolutions sum in another order), and a state dict saved from either
  loads into either. Element-wise dropout draws its mask in memory order, so one seed gives other masks
  in the two layouts: a run is reproducible in its own layout.
* **BatchNorm folding** (on by default for inference: the predictors and the evaluations): a copy of the
  model with each eval-mode BatchNorm folded into the convolution before it
  (:mod:`psa_zoo.models._fold_batchnorm`), one pass over every normalised activation less; outputs agree
  with the unfolded model to float rounding. The copy is made once, when the predictor is built or the
  evaluation starts; it does not follow later changes of the model's weights.
* **compile** is an option, off by default: ``torch.compile`` (inductor) needs a C++ compiler on the CPU
  and minutes of compilation for the large models, and a compiled module does not see attention-map
  recording (:mod:`psa_zoo.layers.attention_maps` hooks act in eager mode only), so callers keep the eager
  module for that.
"""

from __future__ import annotations

import shutil
import warnings
from typing import Any

import torch
from torch import nn

from ._fold_batchnorm import fold_pairs, foldable_pairs

__all__ = [
    "MEMORY_FORMATS",
    "format_images",
    "inference_module",
    "maybe_compile",
    "memory_format_name",
    "preferred_memory_format",
    "resolve_memory_format",
    "to_memory_format",
]

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
_BY_NAME = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
_FAST_DEVICES = ("cpu", "cuda")  # channels_last kernels: oneDNN on the CPU, cuDNN on CUDA


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())


def preferred_memory_format(
    model: nn.Module, device: str | torch.device | None = None
) -> torch.memory_format:
    """``torch.channels_last`` for a model with 2-D convolutions on the CPU or CUDA, else contiguous.

    Args:
        model: the model to run.
        device: where it will run (default: where its parameters are).
    """
    if _device_of(model, device).type in _FAST_DEVICES and _has_conv2d(model):
        return torch.channels_last
    return torch.contiguous_format


def resolve_memory_format(
    memory_format: str | torch.memory_format, model: nn.Module, device: str | torch.device | None = None
) -> torch.memory_format:
    """``"auto"`` (:func:`preferred_memory_format`), ``"channels_last"``, ``"contiguous"`` or one of
    ``torch.channels_last`` / ``torch.contiguous_format`` → the ``torch.memory_format`` to use."""
    if memory_format in (torch.channels_last, torch.contiguous_format):
        return memory_format
    if memory_format == "auto":
        return preferred_memory_format(model, device)
    if isinstance(memory_format, str) and memory_format in _BY_NAME:
        return _BY_NAME[memory_format]
    raise ValueError(
        f"memory_format must be one of {MEMORY_FORMATS} (or torch.channels_last / torch.contiguous_format), "
        f"got {memory_format!r}; use 'auto' to let psa_zoo choose"
    )


def memory_format_name(memory_format: torch.memory_format) -> str:
    """``"channels_last"`` or ``"contiguous"`` (the names the command line and run records use)."""
    return "channels_last" if memory_format == torch.channels_last else "contiguous"


def to_memory_format(
    model: nn.Module,
    memory_format: str | torch.memory_format = "auto",
    device: str | torch.device | None = None,
) -> torch.memory_format:
    """Lay out the 4-D parameters and buffers of ``model`` (convolution weights) in the resolved format,
    in place as ``model.to(memory_format=...)``; returns the format.

    Parameters stay the same objects (an optimiser built before keeps them) and their values are
    unchanged. ``device`` only informs ``"auto"`` (the model is not moved).
    """
    resolved = resolve_memory_format(memory_format, model, device)
    model.to(memory_format=resolved)
    return resolved


def format_images(images: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """A 4-D batch [N, C, H, W] in ``memory_format`` (itself, without a copy, when it already is); other
    ranks pass unchanged."""
    if images.ndim != 4:
        return images
    return images.contiguous(memory_format=memory_format)


def inference_module(
    model: nn.Module, *, fold: bool = True, memory_format: torch.memory_format | None = None
) -> nn.Module:
    """What inference runs: with ``fold`` a BatchNorm-folded eval-mode copy of ``model``
    (:func:`~psa_zoo.models._fold_batchnorm.fold_batchnorm`) laid out in ``memory_format`` (default: as
    ``model``), else ``model`` itself.

    ``model`` is not changed (it stays the module to record attention maps on, to train or to save). A
    model with nothing to fold, or one that does not trace with ``torch.fx``, runs as it is (the latter
    with a warning saying why).
    """
    if not fold or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    try:
        pairs = foldable_pairs(model)
    except ValueError as error:
        warnings.warn(f"{error}; it runs unfolded", stacklevel=2)
        return model
    if not pairs:
        return model  # nothing to fold: no copy
    folded = fold_pairs(model, pairs)
    if memory_format is not None:
        folded.to(memory_format=memory_format)
    return folded


def maybe_compile(model: nn.Module, enabled: bool, **compile_kwargs: Any) -> nn.Module:
    """``torch.compile(model, **compile_kwargs)`` when ``enabled``, else ``model`` itself.

    The compiled module shares the parameters and the train / eval mode of ``model``; keep ``model`` for
    what needs eager mode (recording attention maps, ``torch.fx`` tracing). Compilation happens on the first
    call (and again for new input shapes or modes); on the CPU inductor needs a C++ compiler (``g++``).
    ``compile_kwargs``: ``backend``, ``mode``, ``fullgraph``, ``dynamic`` as ``torch.compile``.
    """
    if not enabled:
        return model
    backend = compile_kwargs.get("backend") or "inductor"
    if backend == "inductor" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ValueError(
            "torch.compile's inductor backend needs a C++ compiler on this machine and none was found "
            "(g++, c++, clang++); install one, or leave --compile off (or use backend='aot_eager')"
        )
    return torch.compile(model, **compile_kwargs)
