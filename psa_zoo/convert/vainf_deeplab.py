"""VainF/DeepLabV3Plus-Pytorch checkpoints → :class:`psa_zoo.models.deeplabv3plus.DeepLabV3Plus`.

Source layout (VainF ``network/modeling.py``, ``_deeplab.py``, ``backbone/mobilenetv2.py``): the training
script saves ``{"model_state": state_dict, "optimizer_state": ..., ...}``; the model is ``backbone``
(torchvision ResNet names, or MobileNetV2 split into ``low_level_features`` = features 0-3 and
``high_level_features`` = features 4-17, which keep their feature indices) and ``classifier``
(``DeepLabHeadV3Plus``: ``project``, ``aspp``, ``classifier.{0,1,3}``).

Renames (see the table in ``psa_zoo/models/deeplabv3plus.py``): ResNet backbone keys are unchanged;
MobileNetV2 feature ``f`` becomes ``blocks.{stage}.{index}`` with timm's layer names; the head moves to
``decoder.project``, ``decoder.aspp``, ``decoder.fuse`` and ``head``.

The output stride is not visible in the keys (dilation changes no shape): VainF's released models use 16,
the default of :class:`DeepLabV3Plus`; pass another one yourself. Pure functions: no file I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from psa_zoo.convert._common import rename_checked, unwrap_state_dict
from psa_zoo.models.backbones.mobilenetv2 import MOBILENETV2_STAGES
from psa_zoo.models.backbones.resnet import RESNET_PRESETS
from psa_zoo.models.deeplabv3plus import DeepLabV3Plus

__all__ = ["convert_state_dict", "infer_config"]

_HEAD_RENAMES = (
    ("classifier.project.", "decoder.project."),
    ("classifier.aspp.", "decoder.aspp."),
    ("classifier.classifier.0.", "decoder.fuse.0."),
    ("classifier.classifier.1.", "decoder.fuse.1."),
    ("classifier.classifier.3.", "head."),
)
# Layers inside a VainF InvertedResidual's ``conv`` Sequential → timm names.
_MBV2_NO_EXPANSION = {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"}
_MBV2_EXPANSION = {
    "0.0": "conv_pw",
    "0.1": "bn1",
    "1.0": "conv_dw",
    "1.1": "bn2",
    "2": "conv_pwl",
    "3": "bn3",
}
_MBV2_STEM = {"0": "conv_stem", "1": "bn1"}
_MBV2_FEATURE = re.compile(r"^backbone\.(?:low|high)_level_features\.(\d+)\.(.+)$")


def _resnet_depth(sd: Mapping[str, torch.Tensor]) -> int:
    bottleneck = "backbone.layer1.0.conv3.weight" in sd
    counts = tuple(
        len({int(m.group(1)) for k in sd if (m := re.match(rf"^backbone\.layer{i}\.(\d+)\.", k))})
        for i in range(1, 5)
    )
    for depth, preset in RESNET_PRESETS.items():
        if preset.layers == counts and (preset.block == "bottleneck") == bottleneck:
            return depth
    raise ValueError(f"ResNet backbone with blocks per layer {counts} matches no ResNet depth")


def infer_config(state_dict: Mapping) -> dict:
    """Constructor arguments of :class:`DeepLabV3Plus` for a VainF DeepLabV3+ state dict.

    Returns ``{"encoder": "mobilenetv2" | "resnet50" | "resnet101" | ..., "num_classes": K,
    "in_chans": C}``. ``output_stride`` is not in the keys: leave it to the caller (default 16).
    Raises ``ValueError`` for other VainF models (DeepLabV3 without "+", HRNet / Xception backbones,
    separable-conv heads).
    """
    sd = unwrap_state_dict(state_dict)
    if "classifier.classifier.3.weight" not in sd or "classifier.project.0.weight" not in sd:
        raise ValueError(
            "not a VainF DeepLabV3+ state dict: classifier.project.0.weight or "
            "classifier.classifier.3.weight missing (DeepLabV3 without '+' is not supported)"
        )
    if any(".body." in k for k in sd):
        raise ValueError("separable-conv DeepLabV3+ (VainF --separable_conv) is not supported")
    if "backbone.low_level_features.0.0.weight" in sd:
        encoder, stem = "mobilenetv2", "backbone.low_level_features.0.0.weight"
    elif "backbone.layer4.0.conv1.weight" in sd:
        encoder, stem = f"resnet{_resnet_depth(sd)}", "backbone.conv1.weight"
    else:
        raise ValueError("unsupported backbone: only VainF's MobileNetV2 and ResNet DeepLabV3+ are supported")
    return {
        "encoder": encoder,
        "num_classes": int(sd["classifier.classifier.3.weight"].shape[0]),
        "in_chans": int(sd[stem].shape[1]),
    }


def _mbv2_block_names() -> dict[int, tuple[str, dict[str, str]]]:
    """VainF feature index (1..17) → (``backbone.blocks.{stage}.{i}``, layer-name map)."""
    names, feature = {}, 1
    for s, stage in enumerate(MOBILENETV2_STAGES):
        layer_map = _MBV2_NO_EXPANSION if stage.expand == 1 else _MBV2_EXPANSION
        for i in range(stage.num_blocks):
            names[feature] = (f"backbone.blocks.{s}.{i}", layer_map)
            feature += 1
    return names


def _rename_mbv2(key: str, blocks: dict[int, tuple[str, dict[str, str]]]) -> str | None:
    m = _MBV2_FEATURE.match(key)
    if m is None:
        return None
    feature, rest = int(m.group(1)), m.group(2)
    if feature == 0:  # stem ConvBNReLU: .0 conv, .1 BN
        layer, _, param = rest.partition(".")
        return f"backbone.{_MBV2_STEM[layer]}.{param}" if layer in _MBV2_STEM else None
    if feature not in blocks or not rest.startswith("conv."):
        return None
    prefix, layer_map = blocks[feature]
    for src, dst in layer_map.items():
        if rest.startswith(f"conv.{src}."):
            return f"{prefix}.{dst}.{rest[len(f'conv.{src}.') :]}"
    return None


def _rename(key: str, encoder: str, blocks: dict) -> str | None:
    for src, dst in _HEAD_RENAMES:
        if key.startswith(src):
            return dst + key[len(src) :]
    if encoder == "mobilenetv2":
        return _rename_mbv2(key, blocks)
    return key if re.match(r"^backbone\.(conv1|bn1|layer[1-4])\.", key) else None


def convert_state_dict(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """VainF DeepLabV3+ state dict (or training checkpoint) → state dict of
    ``DeepLabV3Plus(**infer_config(sd))``.

    Every source key must map onto a key of the target model with the same shape, and every target key
    must be filled; otherwise ``ValueError`` lists the unused, missing and mis-shaped keys.
    """
    sd = unwrap_state_dict(state_dict)
    config = infer_config(sd)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in DeepLabV3Plus(**config).state_dict().items()}
    blocks = _mbv2_block_names()
    return rename_checked(
        sd, lambda key: _rename(key, config["encoder"], blocks), expected, f"DeepLabV3Plus({config})"
    )
