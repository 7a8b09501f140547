"""Official SimpleBaseline (pose_resnet) checkpoints → :class:`psa_zoo.models.simplebaseline.SimpleBaseline`.

Source layout: leoxiaobin/deep-high-resolution-net.pytorch ``lib/models/pose_resnet.py``; the model-zoo
files and ``final_state.pth`` are plain state dicts of ``PoseResNet``: the trunk at the top level
(``conv1, bn1, layer1..4``), then ``deconv_layers.{0,1,3,4,6,7}`` and ``final_layer``. The conversion
prefixes the trunk keys with ``backbone.``; the head keys are unchanged. A ``{"state_dict": ...}``
checkpoint and a ``module.`` (DataParallel) prefix are accepted. Pure functions: no file I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from psa_zoo.convert._common import rename_checked, unwrap_state_dict
from psa_zoo.models.backbones.resnet import RESNET_PRESETS
from psa_zoo.models.simplebaseline import DECONV_KERNEL, SimpleBaseline

__all__ = ["convert_state_dict", "infer_config"]

_TRUNK_KEY = re.compile(r"^(conv1|bn1|layer[1-4])\.")
_HEAD_KEY = re.compile(r"^(deconv_layers\.\d+|final_layer)\.")


def infer_config(state_dict: Mapping) -> dict:
    """Constructor arguments of :class:`SimpleBaseline` for an official pose_resnet state dict.

    Returns ``{"depth": 18 | 34 | 50 | 101 | 152, "num_classes": K, "in_chans": C,
    "deconv_channels": (256, 256, 256)}`` (the last from the ``deconv_layers`` weights). Raises
    ``ValueError`` for missing parts, a block layout of no ResNet depth, deconvolution kernels other than
    4 or a final conv other than 1×1.
    """
    sd = unwrap_state_dict(state_dict)
    for key in ("conv1.weight", "layer1.0.conv1.weight", "final_layer.weight"):
        if key not in sd:
            raise ValueError(f"not a pose_resnet state dict: {key} missing")
    bottleneck = "layer1.0.conv3.weight" in sd
    counts = tuple(
        len({int(m.group(1)) for k in sd if (m := re.match(rf"^layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
    )
    depths = [
        d for d, p in RESNET_PRESETS.items() if p.layers == counts and (p.block == "bottleneck") == bottleneck
    ]
    if not depths:
        raise ValueError(f"trunk with blocks per layer {counts} matches no ResNet depth")
    deconvs = sorted(
        int(m.group(1))
        for k in sd
        if (m := re.match(r"^deconv_layers\.(\d+)\.weight$", k)) and sd[k].ndim == 4
    )
    if not deconvs:
        raise ValueError("not a pose_resnet state dict: no deconv_layers weights")
    weights = [sd[f"deconv_layers.{i}.weight"] for i in deconvs]
    if any(tuple(w.shape[2:]) != (DECONV_KERNEL, DECONV_KERNEL) for w in weights):
        raise ValueError(f"only {DECONV_KERNEL}×{DECONV_KERNEL} deconvolutions are supported")
    if tuple(sd["final_layer.weight"].shape[2:]) != (1, 1):
        raise ValueError("only a 1×1 final_layer is supported (FINAL_CONV_KERNEL 1)")
    return {
        "depth": depths[0],
        "num_classes": int(sd["final_layer.weight"].shape[0]),
        "in_chans": int(sd["conv1.weight"].shape[1]),
        "deconv_channels": tuple(int(w.shape[1]) for w in weights),  # ConvTranspose2d: [in, out, k, k]
    }


def _rename(key: str) -> str | None:
    if _TRUNK_KEY.match(key):
        return f"backbone.{key}"
    if _HEAD_KEY.match(key):
        return key
    return None


def convert_state_dict(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Official pose_resnet state dict → state dict of ``SimpleBaseline(**infer_config(sd))``.

    Every source key must map onto a key of the target model with the same shape, and every target key
    must be filled; otherwise ``ValueError`` lists the unused, missing and mis-shaped keys.
    """
    sd = unwrap_state_dict(state_dict)
    config = infer_config(sd)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in SimpleBaseline(**config).state_dict().items()}
    return rename_checked(sd, _rename, expected, f"SimpleBaseline({config})")
