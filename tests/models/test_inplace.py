"""In-place residual sums change nothing but memory: every family gives the bits of the same forward done
out of place (every residual sum and every ReLU out of place), in eval and in train mode, with the same
gradients and batch-norm statistics; and the sums really land in the block's batch-norm output."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import psa_zoo
from psa_zoo.models.backbones import _inplace
from psa_zoo.models.backbones.hrnet import BasicBlock as HRNetBasicBlock
from psa_zoo.models.backbones.hrnet import HRNetModule, StageSpec
from psa_zoo.models.backbones.mobilenetv2 import InvertedResidual
from psa_zoo.models.backbones.resnet import BasicBlock, Bottleneck
from tests.models._tiny import TINY_FAMILIES, tiny_model

# name → (model factory, input size); the full-width SimpleBaseline-R50 covers the Bottleneck blocks
MODELS = {
    **{name: (lambda name=name: tiny_model(name), (2, 3, 65, 49)) for name in TINY_FAMILIES},
    "simplebaseline_r50": (lambda: psa_zoo.create_model("simplebaseline_r50"), (2, 3, 64, 48)),
}


def _out_of_place(model: nn.Module) -> nn.Module:
    """A copy that runs the same forward with every ReLU out of place (the sums: ``inplace_adds(False)``)."""
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return reference


def _forward(model: nn.Module, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    torch.manual_seed(1)  # the same dropout masks in both runs
    with _inplace.inplace_adds(inplace):
        return model(x)


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_outputs_are_the_out_of_place_bits_and_the_input_is_untouched(name):
    factory, size = MODELS[name]
    model = factory().eval()
    reference = _out_of_place(model)
    x = torch.randn(size)
    kept = x.clone()
    with torch.no_grad():
        got = _forward(model, x, inplace=True)
        expected = _forward(reference, x, inplace=False)
    assert torch.equal(got, expected)
    assert torch.equal(x, kept)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_training_step_gives_the_out_of_place_outputs_gradients_and_statistics(name):
    factory, size = MODELS[name]
    model = factory().train()
    reference = _out_of_place(model)
    x = torch.randn(size)
    got = _forward(model, x, inplace=True)
    expected = _forward(reference, x, inplace=False)
    assert torch.equal(got, expected)
    weight = torch.randn_like(got)  # a loss whose gradient differs per element
    (got * weight).sum().backward()
    (expected * weight).sum().backward()
    params, ref_params = dict(model.named_parameters()), dict(reference.named_parameters())
    differing = [
        n for n, p in params.items() if p.grad is not None and not torch.equal(p.grad, ref_params[n].grad)
    ]
    assert not differing, differing[:5]
    assert all((p.grad is None) == (ref_params[n].grad is None) for n, p in params.items())
    ref_buffers = dict(reference.named_buffers())
    assert all(torch.equal(b, ref_buffers[n]) for n, b in model.named_buffers())


def test_bf16_autocast_gives_the_out_of_place_bits():
    model = tiny_model("hrnetv2_w48_ocr_psa_s").eval()
    reference = _out_of_place(model)
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = _forward(model, x, inplace=True)
        expected = _forward(reference, x, inplace=False)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(got, expected)


def _block_output_and_bn_output(block: nn.Module, bn: nn.Module, x: torch.Tensor, inplace: bool):
    captured = []
    handle = bn.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.no_grad(), _inplace.inplace_adds(inplace):
            out = block(x)
    finally:
        handle.remove()
    return out, captured[-1]


@pytest.mark.parametrize(
    "block, bn_name, x",
    [
        (Bottleneck(64, 16), "bn3", torch.randn(2, 64, 9, 7)),  # identity shortcut
        (Bottleneck(32, 16, stride=2), "bn3", torch.randn(2, 32, 9, 7)),  # projected shortcut
        (BasicBlock(16, 16), "bn2", torch.randn(2, 16, 9, 7)),
        (InvertedResidual(16, 16, expand=6), "bn3", torch.randn(2, 16, 9, 7)),
        (HRNetBasicBlock(16, 16), "bn2", torch.randn(2, 16, 9, 7)),
    ],
    ids=["bottleneck", "bottleneck_projected", "basic", "inverted_residual", "hrnet_basic"],
)
def test_the_shortcut_is_added_into_the_batch_norm_output(block, bn_name, x):
    block.eval()
    out, bn_out = _block_output_and_bn_output(block, getattr(block, bn_name), x, inplace=True)
    assert out.data_ptr() == bn_out.data_ptr()  # no tensor allocated for the sum
    out, bn_out = _block_output_and_bn_output(block, getattr(block, bn_name), x, inplace=False)
    assert out.data_ptr() != bn_out.data_ptr()  # the switch gives a really different (allocating) forward


def test_hrnet_fuse_sums_into_a_path_output_and_never_into_a_branch_map():
    module = HRNetModule((8, 16, 32), StageSpec(1, (1, 1, 1), (8, 16, 32)), None, fuse_upsample="bilinear")
    module.eval()
    xs = [torch.randn(2, c, 16 // 2**b, 12 // 2**b) for b, c in enumerate((8, 16, 32))]
    branch_maps, first_paths = [], {}
    hooks = [b.register_forward_hook(lambda m, a, out: branch_maps.append(out)) for b in module.branches]
    hooks += [
        paths[0].register_forward_hook(lambda m, a, out, i=i: first_paths.__setitem__(i, out))
        for i, paths in enumerate(module.fuse_layers)
    ]
    with torch.no_grad():
        outs = module(xs)
        kept = [b.clone() for b in branch_maps]
        # output 0 starts from branch map 0 itself: its sum needs a tensor of its own
        assert outs[0].data_ptr() != branch_maps[0].data_ptr()
        # outputs 1, 2 start from branch 0 brought down by conv + BN: the sum is written there
        assert outs[1].data_ptr() == first_paths[1].data_ptr()
        assert outs[2].data_ptr() == first_paths[2].data_ptr()
        # the branch maps every output reads are those the branches returned (nothing wrote into them)
        recomputed = [branch(x) for branch, x in zip(module.branches, xs, strict=True)]
    for hook in hooks:
        hook.remove()
    assert all(torch.equal(a, b) for a, b in zip(kept, recomputed, strict=True))


def test_the_switch_comes_back_after_the_block():
    assert _inplace.ENABLED
    with _inplace.inplace_adds(False):
        assert not _inplace.ENABLED
    assert _inplace.ENABLED
