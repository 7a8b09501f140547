"""Convert an official checkpoint file into a psa_zoo folder (``model.safetensors`` + ``config.json`` +
model card) that ``psa_zoo.from_pretrained`` loads.

``.pth`` files are read with ``torch.load(..., weights_only=True)``: nothing but tensors and plain
containers is unpickled.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from . import hrnet_ocr, hrnet_pose, psa_nvidia, simplebaseline, vainf_deeplab

# format name → (key-map module, model class name in psa_zoo.models.MODEL_CLASSES)
FORMATS: dict[str, tuple[ModuleType, str]] = {
    "psa-nvidia": (psa_nvidia, "HRNetOCR"),  # DeLightCMU/PSA and NVIDIA semantic-segmentation MscaleOCR
    "hrnet-pose": (hrnet_pose, "HRNetPose"),  # leoxiaobin/deep-high-resolution-net.pytorch pose_hrnet
    "simplebaseline": (simplebaseline, "SimpleBaseline"),  # the same repository's pose_resnet
    "vainf-deeplab": (vainf_deeplab, "DeepLabV3Plus"),  # VainF/DeepLabV3Plus-Pytorch
    "hrnet-ocr": (hrnet_ocr, "HRNetOCR"),  # HRNet/HRNet-Semantic-Segmentation seg_hrnet_ocr (plain OCR)
}


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` with errors that say what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error):  # not a pickle at all, or a damaged one
            raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error})") from error
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers; psa_zoo never unpickles those "
            f"(weights_only=True). Re-save its state dict with plain torch.save. ({error})"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict")
    return checkpoint


@functools.lru_cache(maxsize=256)
def _registered_layout(name: str, num_classes: int, in_chans: int) -> tuple[type, tuple] | None:
    """(model class, ((key, shape), ...)) of the registered ``name`` built on the meta device, or None when
    it cannot take these arguments. Cached: every conversion compares against all registered models."""
    from ..models import model_entrypoint

    try:
        with torch.device("meta"):
            model = model_entrypoint(name)(num_classes=num_classes, in_chans=in_chans)
    except (TypeError, ValueError):
        return None
    return type(model), tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _matching_architecture(model: nn.Module, model_kwargs: dict) -> str | None:
    """The registered name whose model has exactly this state-dict layout (keys and shapes), if any."""
    from ..models import list_models

    own = (type(model), tuple((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    for name in list_models():
        if _registered_layout(name, model_kwargs["num_classes"], model_kwargs["in_chans"]) == own:
            return name
    return None


def build_converted_model(
    checkpoint: dict, fmt: str, arch: str | None = None, **model_kwargs
) -> tuple[nn.Module, dict]:
    """The psa_zoo model of an official checkpoint, with its weights loaded strictly.

    The architecture is inferred from the checkpoint's keys and shapes (widths, depths, PSA flavour,
    number of classes or keypoints) unless ``arch`` names a registered model. ``model_kwargs`` add what
    keys cannot tell (e.g. ``output_stride`` for DeepLabV3+). Returns the model and the constructor
    arguments used.
    """
    from ..models import MODEL_CLASSES, create_model, get_pretrained_cfg
    from ..models._hub import load_state_dict_checked

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    keymap, class_name = FORMATS[fmt]
    config = {**keymap.infer_config(checkpoint), **model_kwargs}
    state = keymap.convert_state_dict(checkpoint)
    if arch is not None:
        model = create_model(
            arch, num_classes=config["num_classes"], in_chans=config["in_chans"], **model_kwargs
        )
        if type(model).__name__ != class_name:
            raise ValueError(f"{arch} is a {type(model).__name__}; format {fmt} converts to {class_name}")
    else:
        model = MODEL_CLASSES[class_name](**config)
        name = _matching_architecture(model, config)
        model.model_name = name
        if name is not None:
            model.pretrained_cfg = get_pretrained_cfg(name)
    load_state_dict_checked(model, state, f"{fmt} checkpoint")
    return model.eval(), config


def convert_checkpoint(
    src: str | Path,
    fmt: str,
    out: str | Path,
    arch: str | None = None,
    tag: str | None = None,
    **model_kwargs,
) -> Path:
    """Convert the official checkpoint ``src`` (format ``fmt``) and write ``out`` for
    ``psa_zoo.from_pretrained(out)``. ``tag`` names the pretrained tag the card describes."""
    from ..models import get_pretrained_cfg
    from ..models._hub import save_pretrained

    model, _ = build_converted_model(read_checkpoint(src), fmt, arch, **model_kwargs)
    card = None
    if getattr(model, "model_name", None):
        cfg = get_pretrained_cfg(f"{model.model_name}.{tag}" if tag else model.model_name)
        model.pretrained_cfg = cfg
        try:
            from ..models.cards import render_model_card

            card = render_model_card(cfg)
        except ImportError:
            card = None
    return save_pretrained(model, out, model_card=card)
