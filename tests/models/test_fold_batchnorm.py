"""Folding eval-mode BatchNorm into the convolution before it (psa_zoo.models._fold_batchnorm).

The expected values are the BatchNorm formula written out here (``(y − μ) / √(σ² + ε) · γ + β`` applied to
the convolution's output) and the unfolded model's own eval-mode output: folding must not change the
function a model computes, only how many passes it takes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from psa_zoo.models._fold_batchnorm import fold_batchnorm, foldable_pairs
from psa_zoo.models._runtime import inference_module
from tests.models._tiny import TINY_FAMILIES, tiny_model


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity (a fresh BatchNorm folds trivially)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.3)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.3)
    return model


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _logits(output) -> torch.Tensor:
    return output if torch.is_tensor(output) else output.logits


def test_folded_weights_follow_the_batchnorm_formula():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    bn = nn.BatchNorm2d(4, eps=1e-3)
    model = _randomise_batchnorm(nn.Sequential(conv, bn, nn.ReLU()))
    folded = fold_batchnorm(model)

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # γ / √(σ² + ε), per output channel
    expected_weight = conv.weight * scale[:, None, None, None]
    expected_bias = (conv.bias - bn.running_mean) * scale + bn.bias
    torch.testing.assert_close(folded[0].weight, expected_weight)
    torch.testing.assert_close(folded[0].bias, expected_bias)
    assert isinstance(folded[1], nn.Identity)
    x = torch.randn(2, 3, 9, 7)
    torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-5, atol=1e-6)


def test_a_transposed_convolution_folds_per_output_channel():
    model = _randomise_batchnorm(
        nn.Sequential(nn.ConvTranspose2d(6, 5, 4, stride=2, padding=1), nn.BatchNorm2d(5))
    )
    folded = fold_batchnorm(model)
    assert _count(folded, nn.BatchNorm2d) == 0
    x = torch.randn(2, 6, 5, 4)
    torch.testing.assert_close(folded(x), model.eval()(x), rtol=1e-5, atol=1e-6)


def test_a_batchnorm_without_affine_parameters_folds():
    model = _randomise_batchnorm(
        nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4, affine=False))
    )
    folded = fold_batchnorm(model)
    x = torch.randn(1, 3, 5, 5)
    mean, var = model[1].running_mean, model[1].running_var
    expected = (model[0](x) - mean[:, None, None]) / torch.sqrt(var[:, None, None] + model[1].eps)
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-6)


class _ConvFeedsTwo(nn.Module):
    """The convolution's output is normalised *and* used raw: folding would change the raw use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _SharedBatchNorm(nn.Module):
    """One BatchNorm after two convolutions: it cannot be folded into both."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.bn = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.a(x)) + self.bn(self.b(x))


class _ConvCalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(self.conv(x)))


@pytest.mark.parametrize(
    "model",
    [
        _ConvFeedsTwo(),
        _SharedBatchNorm(),
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4)),  # not directly after the conv
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)),  # batch statistics
        nn.Sequential(nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2), nn.BatchNorm2d(4)),
    ],
    ids=[
        "conv-output-used-twice",
        "shared-batchnorm",
        "relu-between",
        "no-running-stats",
        "grouped-transposed",
    ],
)
def test_pairs_that_cannot_fold_are_left_alone(model):
    model = _randomise_batchnorm(model).eval()
    assert foldable_pairs(model) == []
    folded = fold_batchnorm(model)
    assert _count(folded, nn.BatchNorm2d) == _count(model, nn.BatchNorm2d)
    in_channels = next(
        m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ).in_channels
    x = torch.randn(2, in_channels, 6, 6)
    torch.testing.assert_close(folded(x), model(x))


def test_a_convolution_called_twice_is_not_folded():
    model = _randomise_batchnorm(_ConvCalledTwice()).eval()
    assert foldable_pairs(model) == []
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(fold_batchnorm(model)(x), model(x))


@pytest.mark.parametrize("name", list(TINY_FAMILIES))
def test_every_family_folds_every_batchnorm_and_computes_the_same(name):
    torch.manual_seed(0)
    model = _randomise_batchnorm(tiny_model(name)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batchnorms = _count(model, nn.BatchNorm2d)

    folded = fold_batchnorm(model)

    # In psa_zoo's families every BatchNorm directly follows a convolution of its own; the OCR model's
    # scale-attention head is not in forward() (forward_multiscale only) and keeps its two.
    unused = {"hrnetv2_w48_ocr_psa_s": {"scale_attn.bn0", "scale_attn.bn1"}}.get(name, set())
    left = {n for n, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert batchnorms > len(unused) and left == unused
    assert type(folded) is type(model) and not folded.training
    # the model itself is untouched: still training, same tensors, its BatchNorm layers in place
    assert model.training and _count(model, nn.BatchNorm2d) == batchnorms
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)

    x = torch.randn(2, 3, *model.metadata.input_size[1:])
    with torch.no_grad():
        expected = _logits(model.eval()(x))
        got = _logits(folded(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_inplace_folds_the_model_itself():
    model = _randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    assert fold_batchnorm(model, inplace=True) is model
    assert isinstance(model[1], nn.Identity)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.bn(self.conv(x))


def test_an_untraceable_model_is_a_clear_error_and_runs_unfolded_for_inference():
    model = _Untraceable().eval()
    with pytest.raises(ValueError, match=r"_Untraceable does not trace with torch.fx.*fold_batchnorm=False"):
        fold_batchnorm(model)
    assert isinstance(model.bn, nn.BatchNorm2d)
    with pytest.warns(UserWarning, match="runs unfolded"):
        assert inference_module(model) is model


def test_inference_module_folds_a_copy_in_the_asked_layout_or_returns_the_model():
    model = _randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))).eval()
    folded = inference_module(model, memory_format=torch.channels_last)
    assert folded is not model and isinstance(model[1], nn.BatchNorm2d)
    assert folded[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert inference_module(model, fold=False) is model
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    unfoldable = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert inference_module(plain) is plain  # nothing to fold: no copy
        assert inference_module(unfoldable) is unfoldable


def test_a_layer_with_a_forward_hook_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    model = _randomise_batchnorm(model).eval()
    seen = []
    model[1].register_forward_hook(lambda module, args, output: seen.append(output))
    assert foldable_pairs(model) == [("2", "3")]  # the hooked BatchNorm stays, and its hook still runs
    folded = fold_batchnorm(model)
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)
    assert len(seen) == 2 and isinstance(folded[1], nn.BatchNorm2d)


def test_the_pose_estimator_predicts_the_same_keypoints_folded_and_unfolded():
    from psa_zoo.pose.predictor import PoseEstimator

    torch.manual_seed(0)
    model = _randomise_batchnorm(tiny_model("hrnet_w18_psa_p"))
    image = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    boxes = [[5, 10, 60, 90], [20, 0, 50, 100]]
    folded = PoseEstimator(model, flip_test=True)
    plain = PoseEstimator(model, flip_test=True, fold_batchnorm=False)
    assert plain._forward is model and folded._forward is not model
    assert folded.model is model and _count(model, nn.BatchNorm2d) > 0
    a, b = folded.predict(image, boxes), plain.predict(image, boxes)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-6)  # heatmap maxima: continuous
    # an untrained model's heatmaps are flat: a near-tie may move a maximum to another pixel, rarely
    same = np.all(np.abs(a.keypoints - b.keypoints) < 1e-3, axis=-1)
    assert same.shape == (2, 17) and same.mean() >= 0.9, same.mean()


@pytest.mark.parametrize(
    ("name", "mode"), [("deeplabv3plus_mbv2_psa", "whole"), ("hrnetv2_w48_ocr_psa_s", "hierarchical")]
)
def test_the_segmenter_gives_the_same_probabilities_folded_and_unfolded(name, mode):
    from psa_zoo.seg.predictor import Segmenter

    torch.manual_seed(0)
    model = _randomise_batchnorm(tiny_model(name))
    scales = (0.5, 1.0) if mode == "hierarchical" else (1.0,)
    image = np.random.default_rng(1).integers(0, 255, (67, 81, 3), dtype=np.uint8)
    folded = Segmenter(model, mode=mode, scales=scales)
    plain = Segmenter(model, mode=mode, scales=scales, fold_batchnorm=False)
    assert folded._forward is not model and plain._forward is model
    a = folded.predict(image, return_probabilities=True)
    b = plain.predict(image, return_probabilities=True)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def _runners(model: nn.Module) -> list[nn.Module]:
    """The modules that run as ``model``'s forward: ``model`` itself, or a copy (a deep copy keeps the
    forward hook; the hook is told which module ran). A hook on the whole model blocks no folding."""
    ran: list[nn.Module] = []
    model.register_forward_hook(lambda module, args, output: ran.append(module))
    return ran


def test_pose_evaluation_predicts_with_the_folded_copy_and_scores_the_same(tmp_path):
    from psa_zoo.data.coco_keypoints import find_coco_split, load_keypoint_annotations
    from psa_zoo.data.synthetic import make_pose_dataset
    from psa_zoo.pose import evaluate_pose_model

    data = make_pose_dataset(tmp_path / "data", num_train=1, num_val=3, seed=2, image_size=(96, 80))
    dataset = load_keypoint_annotations(*find_coco_split(data, "val"))
    torch.manual_seed(0)
    model = _randomise_batchnorm(tiny_model("hrnet_w18_psa_p")).eval()
    ran = _runners(model)
    folded, folded_results = evaluate_pose_model(model, dataset, flip_test=False)
    assert ran and all(m is not model and type(m) is type(model) for m in ran)  # the folded copy predicted
    plain, plain_results = evaluate_pose_model(model, dataset, flip_test=False, fold_batchnorm=False)
    assert ran[-1] is model  # ... and here the model itself
    assert len(folded_results) == len(plain_results) > 0
    a = np.stack([r["keypoints"] for r in folded_results])  # [P, K, 3]: x, y, score
    b = np.stack([r["keypoints"] for r in plain_results])
    # the scores are heatmap maxima: continuous in the weights, equal to float rounding
    np.testing.assert_allclose(a[..., 2], b[..., 2], rtol=1e-4, atol=1e-6)
    # an untrained model's heatmaps are flat: a near-tie may move a maximum to another pixel, rarely
    same = np.all(np.abs(a[..., :2] - b[..., :2]) < 1e-3, axis=-1)
    assert same.mean() >= 0.9, same.mean()
    assert np.isfinite(folded.stats["AP"]) and np.isfinite(plain.stats["AP"])


def test_segmentation_evaluation_predicts_with_the_folded_copy_and_scores_the_same(tmp_path):
    from psa_zoo.data.synthetic import make_seg_dataset
    from psa_zoo.seg import evaluate_seg_model
    from psa_zoo.train.seg import load_seg_split

    data = make_seg_dataset(tmp_path / "data", num_train=1, num_val=3, seed=5, image_size=(72, 64))
    dataset = load_seg_split(data, "val")
    torch.manual_seed(0)
    model = _randomise_batchnorm(tiny_model("deeplabv3plus_mbv2_psa")).eval()
    ran = _runners(model)
    folded = evaluate_seg_model(model, dataset)
    assert ran and all(m is not model for m in ran)
    plain = evaluate_seg_model(model, dataset, fold_batchnorm=False)
    assert ran[-1] is model
    # a pixel whose two best classes tie to float rounding may flip: a few pixels of 3 × 72 × 64 at most
    assert folded.aacc == pytest.approx(plain.aacc, abs=1e-3)
    assert folded.miou == pytest.approx(plain.miou, abs=1e-2)
