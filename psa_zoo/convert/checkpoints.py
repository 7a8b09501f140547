"""Convert an official checkpoint file into a psa_zoo folder (``model.safetensors`` + ``config.json`` +
model card) that ``psa_zoo.from_pretrained`` loads.

``.pth`` files are read with ``torch.load(..., weights_only=True)``: nothing but tensors and plain
containers is unpickled.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import warnings
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


def _torch_reason(error: BaseException) -> str:
    """The telling sentence of a ``torch.load`` error, on one line (torch's own messages span several,
    with advice on ``weights_only=False`` that psa_zoo never follows)."""
    text = str(error).split("WeightsUnpickler error:", 1)[-1]
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return first_line.split(". ", 1)[0].rstrip(".")


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` with errors that say what went wrong.

    Every failure to read is a ``ValueError`` (a missing file a ``FileNotFoundError``): torch's restricted
    unpickler raises about anything (``IndexError``, ``KeyError``, ...) on bytes that are no checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist, expected an official .pth file")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file, expected an official .pth file")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of the file before it refuses or reads it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error):  # not a pickle at all, or a damaged one
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint ({_torch_reason(error)})"
            ) from error
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers; psa_zoo never unpickles those "
            f"(weights_only=True). Re-save its state dict with plain torch.save. ({_torch_reason(error)})"
        ) from error
    except Exception as error:  # garbage bytes: RuntimeError, EOFError, IndexError, KeyError, ...
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({_torch_reason(error)})") from error
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
    from ..models._builder import attach_cfg
    from ..models._loading import load_state_dict_checked

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
            attach_cfg(model, get_pretrained_cfg(name))
    load_state_dict_checked(model, state, f"{fmt} checkpoint")
    return model.eval(), config


def check_out_available(out: str | Path, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` when ``out`` cannot take the converted model: a file, a folder that
    already holds a model (unless ``overwrite``), or one holding other files (see ``save_pretrained``)."""
    from ..models._serialization import MODEL_FILES, check_save_target

    out = Path(out)
    held = [name for name in MODEL_FILES if (out / name).exists()] if out.is_dir() else []
    if held and not overwrite:
        raise FileExistsError(
            f"{out} already holds a model ({', '.join(held)}); pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another folder"
        )
    check_save_target(out, overwrite)


def check_tag(architecture: str, tag: str) -> None:
    """Raise ``ValueError`` unless ``tag`` is a pretrained tag of ``architecture`` (a registered name)."""
    from ..models import list_tags

    tags = list_tags(architecture)  # unknown names raise, with the close ones
    if not tags:
        raise ValueError(
            f"tag {tag!r} given, but {architecture} has no pretrained tags; drop the tag (CLI: --tag)"
        )
    if tag not in tags:
        raise ValueError(
            f"unknown tag {tag!r} for {architecture}, expected one of {', '.join(tags)}; pick one of those "
            "(CLI: --tag)"
        )


def check_model_kwargs(fmt: str, model_kwargs: dict) -> None:
    """Raise ``ValueError`` for a constructor argument that the model class of ``fmt`` does not take."""
    from ..models import MODEL_CLASSES

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}, expected one of {', '.join(FORMATS)}")
    class_name = FORMATS[fmt][1]
    accepted = inspect.signature(MODEL_CLASSES[class_name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return  # takes anything: the constructor itself decides
    for name, value in model_kwargs.items():
        if name not in accepted:
            option = "--" + name.replace("_", "-")
            raise ValueError(
                f"{name}={value!r} given, but format {fmt} converts to {class_name}, which takes no {name}; "
                f"drop it (CLI: {option})"
            )


def convert_checkpoint(
    src: str | Path,
    fmt: str,
    out: str | Path,
    arch: str | None = None,
    tag: str | None = None,
    overwrite: bool = False,
    **model_kwargs,
) -> Path:
    """Convert the official checkpoint ``src`` (format ``fmt``) and write ``out`` for
    ``psa_zoo.from_pretrained(out)``. ``tag`` names the pretrained tag the card describes.

    The arguments are checked before the checkpoint is read: ``out`` must be neither a file nor a folder
    that already holds a model (unless ``overwrite``) or other files, ``tag`` must be a tag of ``arch``,
    and ``model_kwargs`` arguments of the format's model class. Raises ``FileExistsError``,
    ``FileNotFoundError`` (``src``) or ``ValueError``.
    """
    from ..models import get_pretrained_cfg, save_pretrained
    from ..models._builder import attach_cfg

    check_model_kwargs(fmt, model_kwargs)
    check_out_available(out, overwrite)
    if arch is not None and tag is not None:
        check_tag(arch, tag)
    model, _ = build_converted_model(read_checkpoint(src), fmt, arch, **model_kwargs)
    name = getattr(model, "model_name", None)
    if tag is not None and name is None:
        raise ValueError(
            f"tag {tag!r} given, but {src} matches no registered architecture (its widths or depths differ), "
            "expected no tag; drop the tag (CLI: --tag)"
        )
    if tag is not None and arch is None:
        check_tag(name, tag)
    card = None
    if name:
        cfg = get_pretrained_cfg(f"{name}.{tag}" if tag else name)
        attach_cfg(model, cfg)
        try:
            from ..publish.cards import render_model_card

            card = render_model_card(cfg)
        except ImportError:
            card = None
    return save_pretrained(model, out, model_card=card, overwrite=overwrite)
