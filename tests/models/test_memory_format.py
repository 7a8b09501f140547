"""channels_last changes the layout, not the results: every family and every attention block gives the
contiguous outputs and gradients to float rounding, and so do the predictors and a training run.

Tolerances (relative error ‖a − b‖ / ‖b‖, float32): 1e-5 in eval mode, for outputs and for the gradients
(input and all parameters as one vector); the two layouts run other convolution kernels, which sum in
another order (measured: around 1e-6). In train mode 1e-4 for outputs and batch-norm statistics: batch
norm over a batch of two amplifies rounding (float32 itself is ~1e-5 off a float64 run there, in either
layout), and train-mode gradients are not compared for the same reason (both layouts are ~1e-3 off
float64 on these tiny batches). Dropout is left out of the comparison: the same seed draws the mask in
memory order, so the layouts get other masks (each layout is reproducible on its own).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import psa_zoo
from psa_zoo.layers import create_attn, list_attn
from psa_zoo.models._runtime import (
    format_images,
    memory_format_name,
    preferred_memory_format,
    resolve_memory_format,
    to_memory_format,
)
from psa_zoo.pose import PoseEstimator
from psa_zoo.seg import Segmenter
from tests.conftest import relative_error
from tests.models._tiny import TINY_FAMILIES, TINY_HRNET, tiny_model
from tests.train._pose_run import make_data, weights

RTOL = 1e-5
CL = torch.channels_last

MODELS = {
    **{name: (lambda name=name: tiny_model(name)) for name in TINY_FAMILIES},
    # the ResNet encoder dilated (output stride 16) under the DeepLabV3+ decoder
    "deeplabv3plus_r18": lambda: psa_zoo.DeepLabV3Plus("resnet18", num_classes=5, attn="psa_p"),
}


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def _run(model: nn.Module, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Output, and the gradients of input and parameters as one vector (eval) or the batch-norm
    statistics (train)."""
    x = x.clone().requires_grad_(not train)
    out = model(x)
    if train:
        stats = [b.flatten() for n, b in model.named_buffers() if b.is_floating_point()]
        return out.detach(), torch.cat(stats) if stats else torch.zeros(1)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad for p in model.parameters() if p.grad is not None]
    return out.detach(), torch.cat([g.flatten() for g in grads])


def _compare_layouts(model: nn.Module, x: torch.Tensor, train: bool) -> None:
    """``model`` and its channels_last copy on ``x`` and its channels_last copy (see the module docstring)."""
    model.train(train)
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    last = copy.deepcopy(model).to(memory_format=CL)
    out, other = _run(model, x, train)
    out_cl, other_cl = _run(last, x.contiguous(memory_format=CL), train)
    tolerance = 1e-4 if train else RTOL
    assert relative_error(out_cl, out) <= tolerance
    assert relative_error(other_cl, other) <= tolerance


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_family_in_channels_last_gives_the_contiguous_results(name, train):
    model = MODELS[name]()
    converted = copy.deepcopy(model).to(memory_format=CL)
    assert _is_channels_last(converted.get_submodule(model.first_conv_name).weight)  # it did convert
    _compare_layouts(model, torch.randn(2, 3, 65, 49), train)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("attn", list_attn())
def test_every_attention_block_in_channels_last_gives_the_contiguous_results(attn, train):
    block = create_attn(attn, 64)
    _compare_layouts(block, torch.randn(2, 64, 16, 12), train)
    # and keeps the layout: a block does not turn channels_last features back (a copy per block)
    with torch.no_grad():
        out = block.eval().to(memory_format=CL)(torch.randn(2, 64, 16, 12).contiguous(memory_format=CL))
    assert _is_channels_last(out), attn


def test_auto_is_channels_last_for_conv_nets_on_cpu_and_cuda_only():
    model = tiny_model("hrnet_w18_psa_p")
    assert preferred_memory_format(model) == CL  # parameters on the CPU
    assert preferred_memory_format(model, "cuda") == CL
    assert preferred_memory_format(model, "mps") == torch.contiguous_format
    assert preferred_memory_format(nn.Linear(3, 3)) == torch.contiguous_format
    assert resolve_memory_format("contiguous", model) == torch.contiguous_format
    assert resolve_memory_format(CL, model) == CL
    assert memory_format_name(to_memory_format(model, "auto")) == "channels_last"
    assert _is_channels_last(model.conv1.weight)
    with pytest.raises(ValueError, match=r"memory_format must be one of.*got 'nhwc'"):
        resolve_memory_format("nhwc", model)


def test_images_laid_out_channels_last_are_not_copied():
    pixels = torch.randint(0, 255, (2, 20, 16, 3), dtype=torch.uint8)
    images = pixels.permute(0, 3, 1, 2)  # [N, 3, H, W] over HWC pixels: channels_last already
    assert format_images(images, CL).data_ptr() == pixels.data_ptr()
    contiguous = format_images(images, torch.contiguous_format)
    assert contiguous.is_contiguous() and torch.equal(contiguous, images)
    labels = torch.zeros(2, 20, 16)
    assert format_images(labels, CL) is labels  # only 4-D batches change


def _two_predictors(cls, model, **kwargs):
    return [cls(copy.deepcopy(model), memory_format=fmt, **kwargs) for fmt in ("contiguous", "channels_last")]


def test_pose_estimator_gives_the_same_keypoints_in_both_layouts():
    # full-width SimpleBaseline (Kaiming-initialised trunk: heatmaps with distinct maxima)
    model = psa_zoo.create_model("simplebaseline_r50")
    image = np.random.default_rng(0).integers(0, 255, (150, 120, 3), dtype=np.uint8)
    boxes = [[10, 20, 60, 100], [40, 5, 70, 130]]
    contiguous, last = _two_predictors(PoseEstimator, model, flip_test=True)
    assert last.memory_format == CL and _is_channels_last(last.model.backbone.conv1.weight)
    assert (
        contiguous.memory_format == torch.contiguous_format
        and contiguous.model.backbone.conv1.weight.is_contiguous()
    )
    a, b = contiguous.predict(image, boxes), last.predict(image, boxes)
    np.testing.assert_allclose(b.scores, a.scores, rtol=RTOL)
    np.testing.assert_allclose(b.keypoints, a.keypoints, atol=1e-3)
    _, inputs = last.input_crops(image, boxes)
    assert _is_channels_last(inputs)  # the crops reach the model in its layout


def test_segmenter_gives_the_same_probabilities_in_both_layouts():
    model = tiny_model("deeplabv3plus_mbv2_psa")
    image = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    contiguous, last = _two_predictors(Segmenter, model, flip=True, scales=(0.75, 1.0))
    a = contiguous.predict(image, return_probabilities=True)
    b = last.predict(image, return_probabilities=True)
    assert b.probabilities.flags.c_contiguous
    assert relative_error(torch.from_numpy(b.probabilities), torch.from_numpy(a.probabilities)) <= RTOL
    top2 = np.sort(a.probabilities, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-5  # pixels whose winner is not a near tie (20× the differences)
    assert clear.mean() > 0.8, clear.mean()
    assert np.array_equal(a.labels[clear], b.labels[clear])


def test_training_in_both_layouts_ends_at_the_same_weights(tmp_path):
    from psa_zoo.train import TrainConfig, Trainer
    from psa_zoo.train.pose import PoseTask

    data = make_data(tmp_path / "data", num_train=8, num_val=2)
    records = {}
    for fmt in ("contiguous", "auto"):
        # SGD: a gradient changed by the layout would show in the weights directly
        config = TrainConfig(
            task="pose", model="hrnet_w18_psa_p", model_kwargs={"spec": TINY_HRNET}, data=str(data),
            output_dir=str(tmp_path / fmt), recipe="embedded", input_size=[64, 48], batch_size=4,
            max_train_steps=4, optimizer="sgd", lr=0.05, num_workers=0, seed=5, memory_format=fmt,
        ).resolve()  # fmt: skip
        Trainer(PoseTask(config), config).fit()
        records[fmt] = json.loads((tmp_path / fmt / "train_config.json").read_text())
    assert records["contiguous"]["effective_memory_format"] == "contiguous"
    assert records["auto"]["effective_memory_format"] == "channels_last"  # auto on the CPU
    a, b = weights(tmp_path / "contiguous" / "model"), weights(tmp_path / "auto" / "model")
    assert a.keys() == b.keys()
    worst = max(relative_error(b[k], a[k]) for k in a if a[k].is_floating_point() and a[k].abs().max() > 0)
    assert worst <= 1e-4  # four SGD steps compound the 1e-7 per-step differences
