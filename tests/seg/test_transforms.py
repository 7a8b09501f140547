"""Segmentation transforms: image and mask stay aligned, padding is ignored, randomness only from the rng."""

from __future__ import annotations

import colorsys
import random

import cv2
import numpy as np
import pytest

from psa_zoo.seg.transforms import (
    MEAN_RGB_UINT8,
    SegEvalTransform,
    SegTrainTransform,
    colour_jitter,
    resize_long_side,
    resize_mask,
)

IGNORE = 255
RED = (255, 0, 0)


def scene(height: int = 60, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Black image with a red rectangle, off centre (so a missed flip shows); class 3 at the same place."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    image[20:36, 30:56] = RED
    mask[20:36, 30:56] = 3
    return image, mask


def test_resize_mask_is_cv2_nearest_exact_and_keeps_edges_within_half_a_pixel():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 21, size=(37, 53)).astype(np.uint8)
    for size in [(74, 106), (20, 30), (37, 53), (100, 13), (5, 200), (51, 71)]:
        expected = cv2.resize(labels, size[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(resize_mask(labels, size), expected)
    wide = labels.astype(np.int64) * 1000  # int64 values beyond uint8
    np.testing.assert_array_equal(
        resize_mask(wide, (51, 71)), resize_mask(labels, (51, 71)).astype(np.int64) * 1000
    )
    # A step at source row 20 (corner coordinates) lands at 20·s in the output; centre-aligned nearest puts
    # the mask edge within half an output pixel of it. cv2's plain INTER_NEAREST (floor(i · src / dst))
    # misses this by up to a whole pixel for the factors below.
    _, mask = scene()
    for s in (0.63, 0.9, 1.37, 1.77):
        size = (round(60 * s), round(80 * s))
        factor = size[0] / 60
        rows = np.flatnonzero(resize_mask(mask, size)[:, size[1] // 2] == 3)
        assert abs(rows[0] - 20 * factor) <= 0.5 + 1e-9 and abs(rows[-1] + 1 - 36 * factor) <= 0.5 + 1e-9


def edge_band(region: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of the region's border (inside or outside)."""
    kernel = np.ones((3, 3), np.uint8)
    region = region.astype(np.uint8)
    return cv2.dilate(region, kernel).astype(bool) & ~cv2.erode(region, kernel).astype(bool)


def test_image_and_mask_stay_aligned_through_scale_crop_and_flip():
    image, mask = scene()
    seen = 0
    for seed, flip_prob in [(s, p) for p in (0.0, 1.0) for s in range(20)]:
        transform = SegTrainTransform(crop_size=(48, 64), flip_prob=flip_prob, photometric=False)
        out_image, out_mask = transform(image, mask, np.random.default_rng(seed))
        assert out_image.shape == (48, 64, 3) and out_image.dtype == np.uint8
        assert out_mask.shape == (48, 64) and out_mask.dtype == np.uint8
        assert set(np.unique(out_mask).tolist()) <= {0, 3, IGNORE}
        coloured = out_image[..., 0] > 127
        labelled = out_mask == 3
        disagree = coloured ^ labelled
        assert not (disagree & ~edge_band(labelled)).any(), seed  # only edge pixels may differ
        if labelled.sum() > 20:
            seen += 1
            # which side the rectangle's centre lies on, in image and mask alike
            cols = np.flatnonzero(labelled.any(axis=0))
            red_cols = np.flatnonzero(coloured.any(axis=0))
            assert abs(cols.mean() - red_cols.mean()) <= 1.0
    assert seen >= 20


def test_flip_and_identity_are_exact():
    image, mask = scene()
    same = SegTrainTransform(crop_size=(60, 80), scale_range=(1, 1), flip_prob=0.0, photometric=False)
    out_image, out_mask = same(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_mask, mask)
    flipped = SegTrainTransform(crop_size=(60, 80), scale_range=(1, 1), flip_prob=1.0, photometric=False)
    out_image, out_mask = flipped(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])
    assert (out_mask[20:36, 80 - 56 : 80 - 30] == 3).all()  # columns 30..55 mirror to 24..49


def test_padding_is_the_ignore_index_never_class_0():
    image, mask = scene(20, 30)
    image[:] = (10, 20, 30)
    mask[:] = 0  # all background: any 0 outside the image would be padding trained as background
    for photometric in (False, True):
        transform = SegTrainTransform(
            crop_size=(64, 80), scale_range=(1, 1), flip_prob=0.0, photometric=photometric
        )
        out_image, out_mask = transform(image, mask, np.random.default_rng(3))
        assert (out_mask[:20, :30] == 0).all()
        assert (out_mask[20:, :] == IGNORE).all() and (out_mask[:, 30:] == IGNORE).all()
        assert (out_mask == 0).sum() == 20 * 30
        padding = out_mask == IGNORE
        assert (out_image[padding] == MEAN_RGB_UINT8).all()  # the mean colour, not jittered
    assert MEAN_RGB_UINT8 == (124, 116, 104)  # round(255 · ImageNet mean 0.485, 0.456, 0.406)
    flipped = SegTrainTransform(crop_size=(64, 80), scale_range=(1, 1), flip_prob=1.0, photometric=False)
    out_image, out_mask = flipped(image, mask, np.random.default_rng(3))
    assert (out_mask[:20, 80 - 30 :] == 0).all() and (out_mask[:, : 80 - 30] == IGNORE).all()
    # with random scales: the labelled area is one rectangle of the scaled size, the rest ignore
    transform = SegTrainTransform(crop_size=(100, 100), scale_range=(0.5, 2.0), photometric=True)
    for seed in range(20):
        _, out_mask = transform(image, mask, np.random.default_rng(seed))
        rows, cols = np.flatnonzero((out_mask == 0).any(axis=1)), np.flatnonzero((out_mask == 0).any(axis=0))
        assert (out_mask == 0).sum() == len(rows) * len(cols)
        assert 10 <= len(rows) <= 40 and 15 <= len(cols) <= 60  # 20·[0.5, 2], 30·[0.5, 2]


def test_scale_range_is_covered_and_the_aspect_kept():
    image, mask = scene(40, 60)
    mask[:] = 1
    transform = SegTrainTransform(crop_size=(128, 128), scale_range=(0.5, 2.0), photometric=False)
    heights = []
    for seed in range(200):
        _, out_mask = transform(image, mask, np.random.default_rng(seed))
        rows = np.flatnonzero((out_mask == 1).any(axis=1))
        cols = np.flatnonzero((out_mask == 1).any(axis=0))
        heights.append(len(rows))
        assert abs(len(cols) - len(rows) * 60 / 40) <= 1.0  # both sides scaled by one factor (rounded)
    assert min(heights) >= 20 and max(heights) <= 80  # 40 · [0.5, 2]
    assert min(heights) <= 24 and max(heights) >= 76  # the whole range is drawn


def test_same_seed_same_output_global_rngs_untouched():
    image, mask = scene()
    transform = SegTrainTransform(crop_size=(48, 48))
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    first = [transform(image, mask, np.random.default_rng(s)) for s in range(10)]
    again = [transform(image, mask, np.random.default_rng(s)) for s in range(10)]
    after = np.random.get_state()
    assert (
        after[0] == numpy_state[0]
        and np.array_equal(after[1], numpy_state[1])
        and after[2:] == numpy_state[2:]
    )
    assert random.getstate() == python_state
    for (a_image, a_mask), (b_image, b_mask) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a_image, b_image)
        np.testing.assert_array_equal(a_mask, b_mask)
    assert len({first[i][0].tobytes() for i in range(10)}) == 10  # other seeds, other samples


def test_photometric_jitter_changes_the_image_only():
    image, mask = scene()
    image[:] = (90, 140, 60)
    image[20:36, 30:56] = (200, 60, 40)
    geometric = SegTrainTransform(crop_size=(48, 64), photometric=False)
    jittered = SegTrainTransform(crop_size=(48, 64), photometric=True)
    changed = 0
    for seed in range(10):
        plain_image, plain_mask = geometric(image, mask, np.random.default_rng(seed))
        jit_image, jit_mask = jittered(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(jit_mask, plain_mask)  # same geometry: the jitter draws come last
        changed += not np.array_equal(jit_image, plain_image)
        # modest: brightness/contrast/saturation ±25 %, hue ±18° keep a colour near itself
        assert np.abs(jit_image.astype(int) - plain_image.astype(int)).mean() < 60
    assert changed == 10


def test_colour_jitter_factors_against_colorsys():
    rng = np.random.default_rng(5)
    image = rng.integers(30, 200, size=(8, 8, 3)).astype(np.uint8)
    np.testing.assert_array_equal(colour_jitter(image, rng, 0, 0, 0, 0), image)  # all factors 1
    out = colour_jitter(image, np.random.default_rng(1), brightness=0.25, contrast=0, saturation=0, hue=0)
    ratio = out.astype(float) / image.astype(float)  # one brightness factor for every pixel
    assert ratio.min() >= 0.75 - 0.02 and ratio.max() <= 1.25 + 0.02 and np.ptp(ratio) < 0.03
    out = colour_jitter(image, np.random.default_rng(2), brightness=0, contrast=0, saturation=0, hue=0.05)
    shifts = []
    for before, after in zip(image.reshape(-1, 3) / 255.0, out.reshape(-1, 3) / 255.0, strict=True):
        h0, s0, _ = colorsys.rgb_to_hsv(*before)
        h1, _, _ = colorsys.rgb_to_hsv(*after)
        if s0 > 0.3:  # hue is ill-defined for greyish pixels
            shifts.append((h1 - h0 + 0.5) % 1.0 - 0.5)
    shifts = np.array(shifts)
    assert np.abs(shifts).max() <= 0.05 + 0.02  # within ±hue turns, up to uint8 rounding
    assert np.ptp(shifts) < 0.03  # one shift for every pixel


def test_eval_transform_never_touches_the_mask():
    image, mask = scene(200, 300)
    same_image, same_mask = SegEvalTransform()(image, mask)
    np.testing.assert_array_equal(same_image, image)
    assert same_image is not image and same_mask is mask
    small_image, kept_mask = SegEvalTransform(resize_long=150)(image, mask)
    assert small_image.shape == (100, 150, 3)
    assert kept_mask is mask and kept_mask.shape == (200, 300)
    np.testing.assert_array_equal(small_image, cv2.resize(image, (150, 100), interpolation=cv2.INTER_LINEAR))
    assert resize_long_side(image[:, :100], 50).shape == (
        50,
        25,
        3,
    )  # tall image: the height is the long side
    assert SegEvalTransform(resize_long=150)(image)[1] is None


def test_bad_arguments_are_clear_errors():
    image, mask = scene()
    transform = SegTrainTransform(crop_size=(32, 32))
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator"):
        transform(image, mask, np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"mask is 60×79 \(H×W\) but the image is 60×80"):
        transform(image, mask[:, 1:], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"image must be a \[H, W, 3\] uint8 RGB array"):
        transform(image.astype(np.float32), mask, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"mask must be a \[H, W\] integer array"):
        transform(image, mask.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"cannot hold the ignore index 255"):
        transform(image, mask.astype(np.int8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"crop_size must be \(height, width\) of positive ints"):
        SegTrainTransform(crop_size=(0, 32))
    with pytest.raises(ValueError, match=r"scale_range must be \(low, high\) with 0 < low ≤ high"):
        SegTrainTransform(scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match=r"flip_prob must be a probability"):
        SegTrainTransform(flip_prob=1.5)
    with pytest.raises(ValueError, match=r"resize_long must be None or a positive int"):
        SegEvalTransform(resize_long=0)
