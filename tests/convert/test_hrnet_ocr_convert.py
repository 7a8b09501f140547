"""``hrnet-ocr`` format: HRNet/HRNet-Semantic-Segmentation (branch HRNet-OCR) ``seg_hrnet_ocr`` checkpoints.

There is no official-output fixture for this format, so these tests build official-layout state dicts
themselves: the trunk keys are the HRNet names that the pose and PSA fixtures already pin down, and the
head keys are written out below from ``lib/models/seg_hrnet_ocr.py`` (``conv3x3_ocr`` and ``aux_head`` with
BatchNorm straight in the Sequential, ``ModuleHelper.BNReLU`` pairs inside the OCR attention). The numbers
are checked against a functional re-statement of that file's ``forward`` written from the official keys.
"""

import pytest
import torch
import torch.nn.functional as F

from psa_zoo import from_pretrained
from psa_zoo.cli import main
from psa_zoo.convert import psa_nvidia
from psa_zoo.convert.checkpoints import build_converted_model
from psa_zoo.convert.hrnet_ocr import convert_state_dict, infer_config
from psa_zoo.models import create_model
from psa_zoo.models.backbones.hrnet import HRNet, HRNetSpec, hrnet_spec
from psa_zoo.models.hrnet_ocr import HRNetOCR

SPEC = hrnet_spec((8, 16, 32, 64), num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, stage1_width=16)
TRUNK_CHANNELS = 8 + 16 + 32 + 64
MID, KEY, CLASSES = 24, 12, 5


def _bn(prefix: str, channels: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 0.5 + torch.rand(channels, generator=gen),
        f"{prefix}.bias": 0.1 * torch.randn(channels, generator=gen),
        f"{prefix}.running_mean": 0.1 * torch.randn(channels, generator=gen),
        f"{prefix}.running_var": 0.5 + torch.rand(channels, generator=gen),
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def _conv(key: str, c_out: int, c_in: int, k: int, gen: torch.Generator, bias: bool) -> dict:
    out = {f"{key}.weight": torch.randn(c_out, c_in, k, k, generator=gen) / (c_in * k * k) ** 0.5}
    if bias:
        out[f"{key}.bias"] = 0.1 * torch.randn(c_out, generator=gen)
    return out


def official_head(c: int, mid: int, key: int, classes: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The head keys of ``HighResolutionNet`` in seg_hrnet_ocr.py, with random values."""
    head = {
        **_conv("conv3x3_ocr.0", mid, c, 3, gen, bias=True),
        **_bn("conv3x3_ocr.1", mid, gen),
        **_conv("aux_head.0", c, c, 1, gen, bias=True),
        **_bn("aux_head.1", c, gen),
        **_conv("aux_head.3", classes, c, 1, gen, bias=True),
        **_conv("cls_head", classes, mid, 1, gen, bias=True),
    }
    ocb = "ocr_distri_head.object_context_block"
    for path, c_in, c_out in (
        ("f_pixel.0", mid, key), ("f_pixel.2", key, key),
        ("f_object.0", mid, key), ("f_object.2", key, key),
        ("f_down.0", mid, key), ("f_up.0", key, mid),
    ):  # fmt: skip
        seq, index = path.split(".")
        head |= _conv(f"{ocb}.{path}", c_out, c_in, 1, gen, bias=False)
        head |= _bn(f"{ocb}.{seq}.{int(index) + 1}.0", c_out, gen)
    head |= _conv("ocr_distri_head.conv_bn_dropout.0", mid, 2 * mid, 1, gen, bias=False)
    head |= _bn("ocr_distri_head.conv_bn_dropout.1.0", mid, gen)
    return head


def official_full_model_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """What ``tools/train.py`` saves (``FullModel.state_dict()``): ``model.*`` + ``loss.criterion.weight``."""
    gen = torch.Generator().manual_seed(seed)
    trunk = HRNet(SPEC, fuse_upsample="bilinear_align_corners").state_dict()
    for key, value in trunk.items():
        if value.is_floating_point():
            trunk[key] = value + 0.05 * torch.randn(value.shape, generator=gen)
            if key.endswith("running_var"):
                trunk[key] = trunk[key].abs() + 0.5
    model = trunk | official_head(TRUNK_CHANNELS, MID, KEY, CLASSES, gen)
    return {f"model.{k}": v for k, v in model.items()} | {"loss.criterion.weight": torch.rand(CLASSES)}


def reference_forward(official: dict[str, torch.Tensor], branches: list[torch.Tensor], size) -> tuple:
    """seg_hrnet_ocr.py ``forward`` from the trunk outputs on, in plain functional form (eval mode);
    returns (main logits, aux logits) bilinearly resized to ``size`` with align_corners=True."""
    w = {k.removeprefix("model."): v for k, v in official.items()}

    def bn(x, p):
        mean, var = w[f"{p}.running_mean"], w[f"{p}.running_var"]
        return F.batch_norm(x, mean, var, w[f"{p}.weight"], w[f"{p}.bias"], training=False, eps=1e-5)

    def conv(x, p, padding=0):
        return F.conv2d(x, w[f"{p}.weight"], w.get(f"{p}.bias"), padding=padding)

    def conv_bn_relu(x, conv_key, bn_key):
        return F.relu(bn(conv(x, conv_key), bn_key))

    h, w0 = branches[0].shape[-2:]
    up = [F.interpolate(b, size=(h, w0), mode="bilinear", align_corners=True) for b in branches[1:]]
    feats = torch.cat([branches[0], *up], dim=1)
    aux = conv(F.relu(bn(conv(feats, "aux_head.0"), "aux_head.1")), "aux_head.3")
    pixels = F.relu(bn(conv(feats, "conv3x3_ocr.0", padding=1), "conv3x3_ocr.1"))
    n = pixels.shape[0]
    probs = aux.flatten(2).softmax(dim=2)  # [N, K, HW]
    proxy = (probs @ pixels.flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(3)  # [N, C, K, 1]
    ocb = "ocr_distri_head.object_context_block"
    query = conv_bn_relu(conv_bn_relu(pixels, f"{ocb}.f_pixel.0", f"{ocb}.f_pixel.1.0"),
                         f"{ocb}.f_pixel.2", f"{ocb}.f_pixel.3.0")  # fmt: skip
    key = conv_bn_relu(conv_bn_relu(proxy, f"{ocb}.f_object.0", f"{ocb}.f_object.1.0"),
                       f"{ocb}.f_object.2", f"{ocb}.f_object.3.0")  # fmt: skip
    value = conv_bn_relu(proxy, f"{ocb}.f_down.0", f"{ocb}.f_down.1.0")
    sim = (query.flatten(2).transpose(1, 2) @ key.flatten(2) * KEY**-0.5).softmax(dim=-1)
    context = (sim @ value.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, KEY, h, w0)
    context = conv_bn_relu(context, f"{ocb}.f_up.0", f"{ocb}.f_up.1.0")
    fused = conv_bn_relu(torch.cat([context, pixels], 1), "ocr_distri_head.conv_bn_dropout.0",
                         "ocr_distri_head.conv_bn_dropout.1.0")  # fmt: skip
    logits = conv(fused, "cls_head")

    def resize(t):
        return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=True)

    return resize(logits), resize(aux)


@pytest.fixture(scope="module")
def official():
    return official_full_model_state()


def test_infer_config_reads_widths_and_classes_and_sets_the_plain_layout(official):
    config = infer_config(official)
    assert HRNetSpec.from_dict(config.pop("spec")) == SPEC
    assert config == dict(
        attn=None, in_chans=3, num_classes=CLASSES, ocr_mid_channels=MID, ocr_key_channels=KEY,
        scale_attn_channels=None, align_corners=True,
    )  # fmt: skip


def test_every_model_key_maps_once_and_the_criterion_is_left_out(official, caplog):
    with caplog.at_level("INFO", logger="psa_zoo.convert.hrnet_ocr"):
        converted = convert_state_dict(official)
    assert len(converted) == len(official) - 1
    assert "loss.criterion.weight" in caplog.text
    renamed = {
        "model.conv3x3_ocr.1.running_var": "ocr.conv3x3_ocr.1.0.running_var",
        "model.aux_head.1.weight": "ocr.aux_head.1.0.weight",
        "model.aux_head.3.weight": "ocr.aux_head.2.weight",
        "model.stage4.0.fuse_layers.3.0.2.1.weight": "backbone.stage4.0.fuse_layers.3.0.2.1.weight",
    }
    for old, new in renamed.items():
        assert converted[new] is official[old]
    model = HRNetOCR(**infer_config(official))
    model.load_state_dict(converted, strict=True)
    assert model.scale_attn is None


@pytest.mark.parametrize("hw", [(64, 96), (70, 45)])
def test_converted_model_computes_the_official_forward(official, hw):
    model, _ = build_converted_model(official, "hrnet-ocr")
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        out = model(x, return_dict=True)
        logits, aux = reference_forward(official, model.backbone(x), hw)
    assert out.scale_attn is None
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.aux_logits, aux, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # align_corners matters: the NVIDIA setting gives other numbers
        model.align_corners = False
        assert not torch.allclose(model(x), logits, atol=1e-4)


def test_bare_and_wrapped_state_dicts_convert_alike(official):
    bare = {k.removeprefix("model."): v for k, v in official.items() if k.startswith("model.")}
    wrapped = {"state_dict": {f"module.{k}": v for k, v in official.items()}, "epoch": torch.tensor(3)}
    assert convert_state_dict(bare).keys() == convert_state_dict(official).keys()
    assert convert_state_dict(wrapped).keys() == convert_state_dict(official).keys()


def test_other_layouts_and_incomplete_files_are_clear_errors(official):
    without_ocr = dict(official, **{"model.last_layer.0.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="without OCR"):
        convert_state_dict(without_ocr)
    nvidia_layout = psa_nvidia.convert_state_dict(
        {f"module.{k}": v for k, v in HRNetOCR(SPEC, num_classes=CLASSES).state_dict().items()}
    )
    with pytest.raises(ValueError, match="psa-nvidia"):
        convert_state_dict(nvidia_layout)
    incomplete = {k: v for k, v in official.items() if k != "model.aux_head.3.bias"}
    with pytest.raises(ValueError, match=r"ocr\.aux_head\.2\.bias"):
        build_converted_model(incomplete, "hrnet-ocr")


def test_full_w48_layout_is_the_registered_plain_model():
    meta = official_full_w48_state()
    converted = convert_state_dict(meta)
    model = create_model("hrnetv2_w48_ocr_plain", device="meta")
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in model.state_dict().items()}
    config = infer_config(meta)
    assert config["ocr_mid_channels"] == 512 and config["ocr_key_channels"] == 256
    assert HRNetSpec.from_dict(config["spec"]) == model.backbone.spec


def official_full_w48_state() -> dict[str, torch.Tensor]:
    """Keys and shapes of the released W48 file, as meta tensors (no values)."""
    with torch.device("meta"):
        trunk = HRNet("w48").state_dict()
    head = official_head(720, 512, 256, 19, torch.Generator().manual_seed(0))
    state = {f"model.{k}": v for k, v in (trunk | head).items()} | {"loss.criterion.weight": torch.empty(19)}
    return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in state.items()}


def test_cli_converts_a_file_that_from_pretrained_loads(official, tmp_path):
    src = tmp_path / "hrnet_ocr_cs.pth"
    torch.save(official, src)
    out = tmp_path / "converted"
    assert main(["convert", str(src), "--format", "hrnet-ocr", "--out", str(out)]) == 0
    loaded = from_pretrained(out).eval()
    assert loaded.align_corners is True and loaded.scale_attn is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, _ = reference_forward(official, loaded.backbone(x), (64, 64))
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-4)
