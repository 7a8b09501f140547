"""timm's model contract on the dense psa_zoo models, the checks of timm's ``tests/test_models.py`` that do
not assume a pooled classifier (docs/timm.md lists those that do, and why they are exempt):
``num_features`` / ``head_hidden_size`` are the channels of ``forward_features`` / ``forward_head(...,
pre_logits=True)``, ``pool_size`` is the ``forward_features`` map size at the default input size, the
classifier and first-conv names of the cfg are state-dict keys, and the head on the pre-logits gives the
model's output."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import psa_zoo
from tests.models._tiny import TINY_FAMILIES, tiny_model

SIZES = [(64, 48), (97, 75), (33, 65)]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: tiny_model(name).eval() for name in TINY_FAMILIES}


def _head_on(model, pre: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The classifier applied to the pre-logits, then resized as the family's forward does."""
    head = model.get_classifier()
    out = head(pre)
    if model.task == "segmentation":
        align = getattr(model, "align_corners", False)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=align)
    return out


@pytest.mark.parametrize("name", sorted(TINY_FAMILIES))
@pytest.mark.parametrize("size", SIZES)
def test_features_pre_logits_and_head_agree_with_the_forward(models, name, size):
    model = models[name]
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features = model.forward_features(x)
        pre = model.forward_head(features, pre_logits=True)
        out = model(x)
    assert isinstance(features, torch.Tensor) and features.shape[1] == model.num_features
    assert tuple(features.shape[-2:]) == model.feature_size(size)
    assert pre.shape[1] == model.head_hidden_size
    torch.testing.assert_close(_head_on(model, pre, size), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY_FAMILIES))
def test_the_cfg_names_real_tensors_and_the_default_feature_size(models, name):
    model = models[name]
    cfg, keys = model.default_cfg, model.state_dict().keys()
    assert f"{cfg['first_conv']}.weight" in keys and f"{cfg['classifier']}.weight" in keys
    assert cfg["num_classes"] == model.num_classes > 0
    assert model.num_features > 0 and model.head_hidden_size > 0
    h, w = cfg["input_size"][1:]  # 256×192 pose, 513×513 DeepLabV3+, 1024×2048 HRNetV2-OCR
    with torch.no_grad():
        assert tuple(model.forward_features(torch.randn(1, 3, h, w)).shape[-2:]) == tuple(cfg["pool_size"])


@pytest.mark.parametrize("name", sorted(TINY_FAMILIES))
def test_training_reaches_every_parameter_without_nan(name):
    """What timm's backward tests check before their pooled-output assertion, and what the exemption
    cuts short after it (docs/timm.md): every parameter gets a gradient from one training step (but the
    scale-attention head, used only by forward_multiscale), nothing is NaN, the gradient count is the
    parameter count."""
    torch.manual_seed(0)
    model = tiny_model(name, num_classes=42).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape[:2] == (2, 42) and not torch.isnan(out).any()
    out.mean().backward()
    unused = {n for n, _ in model.named_parameters() if n.startswith("scale_attn.")}
    assert bool(unused) == model.ddp_find_unused_parameters
    for n, p in model.named_parameters():
        assert (p.grad is None) == (n in unused), n
    counted = sum(p.grad.numel() for p in model.parameters() if p.grad is not None)
    assert counted == sum(p.numel() for n, p in model.named_parameters() if n not in unused)


def test_features_only_nets_carry_timms_cfg_dicts():
    net = timm.create_model("hrnet_w18_small_psa_p", pretrained=False, features_only=True)
    assert net.default_cfg is net.pretrained_cfg
    assert net.default_cfg["input_size"] == (3, 256, 192)
    assert net.feature_info.reduction() == [2, 4, 8, 16, 32]  # the pose HRNet exposes all its levels


def test_every_registered_name_has_a_pool_size():
    for name in psa_zoo.list_models():
        model = psa_zoo.create_model(name, device="meta")
        cfg = model.default_cfg
        assert len(cfg["pool_size"]) == 2 and min(cfg["pool_size"]) > 0, name
