"""Whole-image, sliding-window, multi-scale and flip inference, checked against cases whose answer is known
exactly (per-pixel models, one window covering the image) and against the averaging written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from psa_zoo.seg.inference import num_windows, predict_probabilities, sliding_windows
from tests.models._tiny import tiny_model

K = 4


class PerPixel(nn.Module):
    """A 1×1 conv: each pixel's logits depend on that pixel only, so any tiling gives the same output."""

    def __init__(self, in_chans: int = 3, num_classes: int = K):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Shifted(nn.Module):
    """A 3×3 conv with a kernel that is not left/right symmetric: not flip-equivariant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, K, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 2] = torch.randn(K, 3) * 3  # reads the right neighbour only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Sharpened(nn.Module):
    """A model's logits × ``factor``: a freshly initialised tiny model has logits near 0, where the softmax
    is almost linear and averaging probabilities or logits would look alike."""

    def __init__(self, model: nn.Module, factor: float = 300.0):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


@pytest.fixture(scope="module")
def deeplab():
    return tiny_model("deeplabv3plus_mbv2_psa", num_classes=K).eval()


@pytest.fixture(scope="module")
def ocr():
    return tiny_model("hrnetv2_w48_ocr_psa_s", num_classes=K).eval()


def test_window_count_formula():
    # mmseg slide_inference: h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    for length, crop, stride in [
        (1024, 769, 513),
        (2048, 769, 513),
        (512, 512, 341),
        (100, 769, 513),
        (10, 3, 1),
    ]:
        assert num_windows(length, crop, stride) == max(length - crop + stride - 1, 0) // stride + 1
    assert num_windows(1024, 769, 513) == 2  # Cityscapes, mmseg's 769 / 513 windows
    assert num_windows(2048, 769, 513) == 4
    windows = sliding_windows(1024, 2048, 769, 513)
    assert len(windows) == 2 * 4
    # the last window of each axis ends on the border; every window has the crop size
    assert {(y1, y2) for y1, y2, _, _ in windows} == {(0, 769), (1024 - 769, 1024)}
    assert {(x1, x2) for _, _, x1, x2 in windows} == {(0, 769), (513, 1282), (1026, 1795), (2048 - 769, 2048)}


COVER_CASES = [
    ((1024, 2048), 769, 513),
    ((333, 500), (128, 96), (85, 64)),
    ((50, 40), 64, 64),
    ((37, 41), 7, 1),
]


@pytest.mark.parametrize(("size", "crop", "stride"), COVER_CASES)
def test_windows_cover_every_pixel(size, crop, stride):
    count = torch.zeros(size, dtype=torch.int64)
    crop_hw = (crop, crop) if isinstance(crop, int) else crop
    for y1, y2, x1, x2 in sliding_windows(*size, crop, stride):
        assert (y2 - y1, x2 - x1) == (min(crop_hw[0], size[0]), min(crop_hw[1], size[1]))
        assert 0 <= y1 < y2 <= size[0] and 0 <= x1 < x2 <= size[1]
        count[y1:y2, x1:x2] += 1
    assert count.min() >= 1


def test_stride_larger_than_crop_is_refused():
    with pytest.raises(ValueError, match=r"stride .* is larger than crop_size"):
        sliding_windows(100, 100, 10, 11)
    with pytest.raises(ValueError, match=r"stride .* is larger than crop_size"):
        predict_probabilities(PerPixel(), torch.zeros(1, 3, 8, 8), mode="slide", crop_size=4, stride=5)


def test_whole_is_the_softmax_of_the_model(deeplab):
    image = torch.randn(1, 3, 65, 81)
    probs = predict_probabilities(deeplab, image)
    torch.testing.assert_close(probs, deeplab(image).softmax(1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["deeplab", "ocr"])
def test_one_window_covering_the_image_is_whole_image_inference(name, request):
    model = request.getfixturevalue(name)
    image = torch.randn(1, 3, 61, 75)
    whole = predict_probabilities(model, image, mode="whole")
    for crop in [(61, 75), (64, 80), 200]:
        slide = predict_probabilities(model, image, mode="slide", crop_size=crop, stride=(1, 1))
        torch.testing.assert_close(slide, whole, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("crop", "stride", "window_batch"), [(16, 16, 1), (16, 5, 3), ((9, 31), (4, 30), 2), (7, None, 1)]
)
def test_slide_equals_whole_for_a_per_pixel_model(crop, stride, window_batch):
    model = PerPixel()
    image = torch.randn(1, 3, 45, 52)
    whole = predict_probabilities(model, image, scales=(0.75, 1.0, 1.5))
    slide = predict_probabilities(
        model, image, mode="slide", scales=(0.75, 1.0, 1.5), crop_size=crop, stride=stride,
        window_batch=window_batch,
    )  # fmt: skip
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def test_slide_on_a_cityscapes_frame_equals_whole():
    model = PerPixel(num_classes=3)
    image = torch.randn(1, 3, 1024, 2048)
    whole = predict_probabilities(model, image)
    slide = predict_probabilities(model, image, mode="slide", crop_size=769, stride=513, window_batch=2)
    assert slide.shape == (1, 3, 1024, 2048)
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def test_flip():
    image = torch.randn(1, 3, 20, 27)
    per_pixel = PerPixel()
    flipped = predict_probabilities(per_pixel, image, flip=True)
    torch.testing.assert_close(flipped, predict_probabilities(per_pixel, image), rtol=0, atol=1e-6)

    model = Shifted().eval().requires_grad_(False)
    plain, flipped = predict_probabilities(model, image), predict_probabilities(model, image, flip=True)
    assert (plain - flipped).abs().max() > 1e-2  # the flip changes a model that is not flip-equivariant
    expected = (model(image).softmax(1) + model(image.flip(-1)).flip(-1).softmax(1)) / 2
    torch.testing.assert_close(flipped, expected, rtol=0, atol=1e-6)
    slide = predict_probabilities(model, image, flip=True, mode="slide", crop_size=(20, 27))
    torch.testing.assert_close(slide, expected, rtol=0, atol=1e-6)


@torch.no_grad()
def test_multi_scale_averages_softmax_probabilities(deeplab):
    model = Sharpened(deeplab).eval()
    image = torch.randn(1, 3, 48, 70)
    size = (48, 70)

    def logits_at(s):
        scaled_size = (round(48 * s), round(70 * s))
        scaled = F.interpolate(image, size=scaled_size, mode="bilinear", align_corners=False)
        return F.interpolate(model(scaled), size=size, mode="bilinear", align_corners=False)

    expected = (logits_at(0.5).softmax(1) + logits_at(1.5).softmax(1)) / 2
    probs = predict_probabilities(model, image, scales=(0.5, 1.5))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    # averaging the logits first would be another result
    logits_mean = (logits_at(0.5) + logits_at(1.5)) / 2
    assert (probs - logits_mean.softmax(1)).abs().max() > 1e-2
    assert torch.allclose(probs.sum(1), torch.ones(1, *size), atol=1e-5)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_odd_sizes_keep_the_input_resolution(ocr, mode):
    image = torch.randn(1, 3, 333, 500)
    kwargs = {"crop_size": (160, 192), "stride": (100, 128)} if mode == "slide" else {}
    probs = predict_probabilities(
        ocr, image, mode=mode, scales=(0.5, 0.75), flip=True, num_classes=K, **kwargs
    )
    assert probs.shape == (1, K, 333, 500)
    assert probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(1, 333, 500), atol=1e-5)


def test_eval_mode_is_used_and_restored():
    model = nn.Sequential(nn.Conv2d(3, K, 1), nn.Dropout(0.9)).train()
    image = torch.randn(1, 3, 8, 8)
    first, second = predict_probabilities(model, image), predict_probabilities(model, image)
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # dropout off: eval mode
    assert model.training


def test_bad_arguments_are_clear_errors():
    model, image = PerPixel(), torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="float tensor"):
        predict_probabilities(model, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="mode must be one of"):
        predict_probabilities(model, image, mode="tile")
    with pytest.raises(ValueError, match="needs crop_size"):
        predict_probabilities(model, image, mode="slide")
    with pytest.raises(ValueError, match='for mode="slide"'):
        predict_probabilities(model, image, crop_size=4)
    with pytest.raises(ValueError, match="scales must be positive"):
        predict_probabilities(model, image, scales=(1.0, 0.0))
    with pytest.raises(ValueError, match=f"predicts {K} classes but num_classes=19"):
        predict_probabilities(model, image, num_classes=19)


@torch.no_grad()
def test_hierarchical_mode_is_the_models_own_scale_combination():
    ocr = tiny_model("hrnetv2_w48_ocr_psa_s", num_classes=K).eval()
    torch.manual_seed(0)
    for conv in (m for m in ocr.modules() if isinstance(m, nn.Conv2d)):
        nn.init.normal_(conv.weight, std=0.3)  # an untrained model's near-constant logits would hide the mode
    assert ocr.scale_attn is not None
    image = torch.randn(1, 3, 64, 96)
    scales = (0.5, 1.0, 2.0)
    plain = ocr.forward_multiscale(image, scales)
    mirrored = ocr.forward_multiscale(image.flip(-1), scales).flip(-1)
    probs = predict_probabilities(ocr, image, mode="hierarchical", scales=scales)
    torch.testing.assert_close(probs, plain.softmax(1), rtol=0, atol=1e-6)
    both = predict_probabilities(ocr, image, mode="hierarchical", scales=scales, flip=True)
    torch.testing.assert_close(both, (plain.softmax(1) + mirrored.softmax(1)) / 2, rtol=0, atol=1e-6)
    # it is not the averaged multi-scale test of mode="whole"
    averaged = predict_probabilities(ocr, image, mode="whole", scales=scales)
    assert (probs - averaged).abs().max() > 1e-4


def test_hierarchical_mode_needs_a_scale_attention_head(deeplab):
    with pytest.raises(ValueError, match="scale-attention head"):
        predict_probabilities(deeplab, torch.randn(1, 3, 32, 32), mode="hierarchical", scales=(0.5, 1.0))
