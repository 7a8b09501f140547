"""Heatmap codecs: round trips on noise-free targets (crop and image space), the targets against their
formulas written out pixel by pixel, the decoders' rules, the flip test's algebra, and errors."""

from __future__ import annotations

import json
import math
import time

import cv2
import numpy as np
import pytest
import torch

from psa_zoo.labels import COCO_KEYPOINT_SET
from psa_zoo.pose import (
    DarkHeatmap,
    MSRAHeatmap,
    UDPHeatmap,
    affine_points,
    average_flip,
    box_to_center_scale,
    build_codec,
    crop_matrix,
    default_blur_kernel_size,
    flip_back,
    gaussian_blur,
)

INPUT, HEATMAP = (192, 256), (48, 64)  # (w, h)
PERM = COCO_KEYPOINT_SET.flip_permutation()
# max round-trip error in input-crop pixels (pipelines_anchors.md §1: DARK / UDP ≈ 0.05, MSRA < 3); the
# combined target decodes exactly (argmax pixel + its stored offset), so only float32 rounding remains
BOUNDS = {"msra": 3.0, "dark": 0.05, "udp": 0.05, "udp_combined": 1e-3}


def _crop_to_heatmap(name: str) -> np.ndarray:
    """Input pixels per heatmap pixel, from the definitions (stride; UDP: (input − 1) / (heatmap − 1))."""
    if name.startswith("udp"):
        return (np.array(INPUT) - 1) / (np.array(HEATMAP) - 1)
    return np.array(INPUT) / np.array(HEATMAP)


def _fitting_keypoints(name: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Keypoints whose 3σ window (σ = 2: 6 heatmap px) plus one pixel lies inside the heatmap, so no
    border clips the target or the decoder's neighbourhood."""
    margin = 7
    per_pixel = _crop_to_heatmap(name)
    return rng.uniform(margin * per_pixel, (np.array(HEATMAP) - 1 - margin) * per_pixel, size=(count, 2))


def _round_trip(codec, keypoints: np.ndarray) -> np.ndarray:
    """keypoints [N, K, 2] → encode each instance → decode the batch → [N, K, 2]."""
    targets = np.stack([codec.encode(kp, np.ones(len(kp)))[0] for kp in keypoints])
    decoded, scores = codec.decode(targets)
    assert decoded.shape == keypoints.shape and scores.shape == keypoints.shape[:2]
    return decoded


def _report(name: str, space: str, error: np.ndarray) -> None:
    """The figures, for ``pytest -s`` / ``-rA``."""
    print(
        f"\n{name} {space} round trip over {error.size} keypoints: mean {error.mean():.3g} px, "
        f"max {error.max():.3g} px (bound {BOUNDS[name]} px)"
    )


@pytest.mark.parametrize("name", ["msra", "dark", "udp", "udp_combined"])
def test_round_trip_in_crop_space(name):
    codec = build_codec(name, INPUT, HEATMAP)
    assert codec.sigma == 2.0
    keypoints = _fitting_keypoints(name, 2000, np.random.default_rng(10)).reshape(125, 16, 2)
    error = np.linalg.norm(_round_trip(codec, keypoints) - keypoints, axis=-1)
    _report(name, "crop-space (192x256 crop, 48x64 heatmap, sigma 2)", error)
    assert error.max() <= BOUNDS[name]


@pytest.mark.parametrize("name", ["msra", "dark", "udp", "udp_combined"])
def test_round_trip_in_image_space_through_a_random_crop(name):
    # boxes of 40–150 × 50–200 px give scale_w ≤ 187.5 px ≤ 192: the crop magnifies, so an image pixel is
    # at least a crop pixel and the crop-pixel bound holds in image pixels
    codec = build_codec(name, INPUT, HEATMAP)
    udp = codec.udp_warp
    assert udp == name.startswith("udp")
    rng = np.random.default_rng(11)
    errors = []
    for _ in range(125):
        box = [*rng.uniform([0, 0], [400, 250]), *rng.uniform([40, 50], [150, 200])]
        center, scale = box_to_center_scale(box, INPUT[0] / INPUT[1])
        rotation = rng.uniform(-45, 45)
        to_image = crop_matrix(center, scale, rotation, INPUT, udp=udp, inverse=True)
        image_points = affine_points(_fitting_keypoints(name, 16, rng), to_image)  # the ground truth
        crop_points = affine_points(image_points, crop_matrix(center, scale, rotation, INPUT, udp=udp))
        heatmaps, _ = codec.encode(crop_points, np.ones(16))
        decoded, _ = codec.decode(heatmaps[None])
        errors.append(np.linalg.norm(affine_points(decoded[0], to_image) - image_points, axis=-1))
    error = np.concatenate(errors)
    _report(name, "image-space (random box and rotation)", error)
    assert error.max() <= BOUNDS[name]


def test_udp_decoder_inverts_the_unit_length_scaling():
    # unit length: the last heatmap pixel is the last input pixel, (47, 63) ↔ (191, 255)
    codec = build_codec("udp", INPUT, HEATMAP)
    heatmaps, _ = codec.encode(np.array([[191.0, 255.0], [0.0, 0.0]]), np.ones(2))
    assert heatmaps[0, 63, 47] == 1.0 and heatmaps[1, 0, 0] == 1.0
    # heatmap pixel (30, 40) is input (30 · 191 / 47, 40 · 255 / 63) = (121.91, 161.90); mmpose's
    # decode scaling (input / (heatmap − 1)) would give (122.55, 162.54)
    keypoint = np.array([[30 * 191 / 47, 40 * 255 / 63]])
    heatmaps, _ = codec.encode(keypoint, [1])
    assert heatmaps[0, 40, 30] == 1.0
    decoded, scores = codec.decode(heatmaps[None])
    np.testing.assert_allclose(decoded[0], keypoint, atol=1e-3)
    np.testing.assert_allclose(scores[0], [1.0])


# ---- targets against their definitions, pixel by pixel


def _expected_gaussian(mu, sigma, window_centre=None, radius=None):
    w, h = HEATMAP
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if (
                window_centre is not None
                and max(abs(x - window_centre[0]), abs(y - window_centre[1])) > radius
            ):
                continue
            out[y, x] = math.exp(-((x - mu[0]) ** 2 + (y - mu[1]) ** 2) / (2 * sigma**2))
    return out


def test_targets_follow_their_formulas():
    keypoint = np.array([[50.3, 70.9]])
    # MSRA: quantised centre int(kp / 4 + 0.5) = (13, 18), peak 1 there, 13×13 window
    msra, weight = build_codec("msra", INPUT, HEATMAP).encode(keypoint, [2])
    np.testing.assert_allclose(msra[0], _expected_gaussian((13, 18), 2, (13, 18), 6), atol=1e-6)
    assert weight.tolist() == [1.0] and msra.dtype == np.float32 and msra[0, 18, 13] == 1.0
    # DARK: exact sub-pixel point kp / 4, whole grid
    dark, _ = build_codec("dark", INPUT, HEATMAP).encode(keypoint, [1])
    np.testing.assert_allclose(dark[0], _expected_gaussian(keypoint[0] / 4, 2), atol=1e-6)
    # UDP: kp · 47 / 191, 63 / 255; window around the rounded point
    mu = keypoint[0] * [47 / 191, 63 / 255]
    udp, _ = build_codec("udp", INPUT, HEATMAP).encode(keypoint, [1])
    np.testing.assert_allclose(udp[0], _expected_gaussian(mu, 2, np.floor(mu + 0.5), 6), atol=1e-6)
    # UDP combined: disk of radius 0.0546875 · 64 = 3.5 and the normalised offsets on it
    combined, _ = build_codec("udp_combined", INPUT, HEATMAP).encode(keypoint, [1])
    assert combined.shape == (3, 64, 48)
    for y in range(64):
        for x in range(48):
            ox, oy = (mu[0] - x) / 3.5, (mu[1] - y) / 3.5
            on_disk = ox**2 + oy**2 <= 1
            assert combined[0, y, x] == float(on_disk)
            assert np.isclose(combined[1, y, x], ox * on_disk, atol=1e-6)
            assert np.isclose(combined[2, y, x], oy * on_disk, atol=1e-6)


def test_weights_are_zero_for_unlabelled_and_fully_outside_keypoints():
    ones = np.ones(2)
    edge = math.exp(-36 / 8)  # the window's last column: 6 px from its centre
    # MSRA: heatmap x −7 → window −13..−1, outside; −6 → window reaches column 0
    heatmaps, weights = build_codec("msra", INPUT, HEATMAP).encode(
        np.array([[-28.0, 100.0], [-24.0, 100.0]]), ones
    )
    assert weights.tolist() == [0.0, 1.0] and not heatmaps[0].any()
    np.testing.assert_allclose(heatmaps[1, 25, 0], edge, rtol=1e-6)
    assert not heatmaps[1, :, 1:].any()
    # right side: heatmap x 54 → window 48..60, outside the 0..47 columns
    assert build_codec("msra", INPUT, HEATMAP).encode(np.array([[216.0, 100.0]]), [1])[1].tolist() == [0.0]
    # DARK: the 3σ interval around the exact point
    heatmaps, weights = build_codec("dark", INPUT, HEATMAP).encode(
        np.array([[-24.04, 100], [-23.96, 100]]), ones
    )
    assert weights.tolist() == [0.0, 1.0] and not heatmaps[0].any()
    np.testing.assert_allclose(heatmaps[1, 25, 0], math.exp(-(5.99**2) / 8), rtol=1e-5)
    # UDP: heatmap x −7 / −6 (input x · 47 / 191)
    udp_x = np.array([-7.0, -6.0]) * 191 / 47
    heatmaps, weights = build_codec("udp", INPUT, HEATMAP).encode(np.stack([udp_x, [100, 100]], axis=1), ones)
    assert weights.tolist() == [0.0, 1.0] and not heatmaps[0].any()
    # combined: the disk (radius 3.5) misses column 0 at heatmap x −3.6, touches it at −3.4
    udp_x = np.array([-3.6, -3.4]) * 191 / 47
    heatmaps, weights = build_codec("udp_combined", INPUT, HEATMAP).encode(
        np.stack([udp_x, [100, 100]], axis=1), ones
    )
    assert weights.tolist() == [0.0, 1.0] and not heatmaps[:3].any() and heatmaps[3].any()
    # unlabelled or not finite: weight 0, empty maps
    for name in ("msra", "dark", "udp", "udp_combined"):
        heatmaps, weights = build_codec(name, INPUT, HEATMAP).encode(
            np.array([[96.0, 128.0], [96.0, 128.0], [np.nan, 1.0]]), np.array([0, 1, 2])
        )
        assert weights.tolist() == [0.0, 1.0, 0.0] and weights.dtype == np.float32
        c = heatmaps.shape[0] // 3
        assert not heatmaps[:c].any() and heatmaps[c : 2 * c].any() and not heatmaps[2 * c :].any()


# ---- decoder rules


def test_msra_decoder_quarter_pixel_shift_and_border_rule():
    maps = np.zeros((1, 3, 64, 48), np.float32)
    maps[0, 0, 20, 10], maps[0, 0, 20, 11], maps[0, 0, 20, 9] = 1.0, 0.5, 0.2  # right > left
    maps[0, 0, 19, 10], maps[0, 0, 21, 10] = 0.6, 0.3  # up > down
    maps[0, 1, 30, 1], maps[0, 1, 30, 2] = 0.9, 0.4  # x = 1: HRNet needs 1 < x < w − 1, no shift
    keypoints, scores = build_codec("msra", INPUT, HEATMAP).decode(maps)
    np.testing.assert_allclose(keypoints[0, 0], [10.25 * 4, 19.75 * 4])
    np.testing.assert_allclose(keypoints[0, 1], [1 * 4, 30 * 4])
    np.testing.assert_allclose(keypoints[0, 2], [0, 0])  # an empty map: (0, 0), score 0 (HRNet's mask)
    np.testing.assert_allclose(scores[0], [1.0, 0.9, 0.0])


def test_blur_kernel_and_sigma_rules():
    assert default_blur_kernel_size(2.0) == 11 and default_blur_kernel_size(3.0) == 17
    small, large = build_codec("dark", (192, 256), (48, 64)), build_codec("dark", (288, 384), (72, 96))
    assert (small.sigma, small.blur_kernel_size) == (2.0, 11)
    assert (large.sigma, large.blur_kernel_size) == (3.0, 17)
    assert build_codec("udp", INPUT, HEATMAP, sigma=3.0).blur_kernel_size == 17


def test_gaussian_blur_is_cv2_blur_with_zero_padding():
    maps = np.random.default_rng(12).uniform(size=(5, 64, 48)).astype(np.float32)
    blurred = gaussian_blur(maps, 11)
    for single, result in zip(maps, blurred, strict=True):
        padded = cv2.copyMakeBorder(single, 5, 5, 5, 5, cv2.BORDER_CONSTANT, value=0)
        np.testing.assert_allclose(result, cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5], atol=1e-5)


@pytest.mark.parametrize("name", ["msra", "dark", "udp", "udp_combined"])
def test_decode_accepts_torch_and_is_fast(name):
    codec = build_codec(name, INPUT, HEATMAP)
    maps = np.random.default_rng(13).uniform(size=(64, 17 * codec.channels_per_keypoint, 64, 48))
    maps = maps.astype(np.float32)
    from_numpy = codec.decode(maps)
    from_torch = codec.decode(torch.from_numpy(maps))
    np.testing.assert_array_equal(from_numpy[0], from_torch[0])
    assert from_numpy[0].dtype == np.float32 and from_numpy[1].dtype == np.float32
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        codec.decode(maps)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05, f"{name}: decoding 64 × 17 heatmaps took {min(timings) * 1000:.1f} ms"


# ---- flip test


def _flipped_keypoints(keypoints: np.ndarray, mirror: float) -> np.ndarray:
    """The flipped crop's keypoints: x → mirror − x, left/right swapped."""
    flipped = keypoints[PERM].copy()
    flipped[:, 0] = mirror - flipped[:, 0]
    return flipped


@pytest.mark.parametrize("name", ["udp", "udp_combined"])
def test_udp_flip_back_recovers_the_target_exactly(name):
    # UDP flip: x_crop → W − 1 − x_crop, i.e. heatmap x → w − 1 − x: reversing the width undoes it
    codec = build_codec(name, INPUT, HEATMAP)
    keypoints = _fitting_keypoints(name, 17, np.random.default_rng(14))
    target, _ = codec.encode(keypoints, np.ones(17))
    flipped, _ = codec.encode(_flipped_keypoints(keypoints, INPUT[0] - 1), np.ones(17))
    back = flip_back(flipped[None], PERM, shift=codec.flip_shift, combined=name == "udp_combined")
    np.testing.assert_allclose(back[0], target, atol=1e-6)
    np.testing.assert_allclose(average_flip(target[None], flipped[None], codec, PERM)[0], target, atol=1e-6)


@pytest.mark.parametrize("name", ["msra", "dark"])
def test_standard_flip_back_needs_the_one_pixel_shift(name):
    # standard flip: x_crop → W − x_crop, heatmap x → w − x; reversing gives x − 1, the shift restores
    # x everywhere but column 0 (which keeps the reversed map's value)
    codec = build_codec(name, INPUT, HEATMAP)
    keypoints = _fitting_keypoints(name, 17, np.random.default_rng(15))
    target, _ = codec.encode(keypoints, np.ones(17))
    flipped, _ = codec.encode(_flipped_keypoints(keypoints, INPUT[0]), np.ones(17))
    back = flip_back(flipped[None], PERM, shift=True)
    np.testing.assert_allclose(back[0, ..., 1:], target[..., 1:], atol=1e-6)
    assert not np.allclose(flip_back(flipped[None], PERM, shift=False)[0], target, atol=1e-3)
    average = average_flip(target[None], flipped[None], codec, PERM)
    np.testing.assert_allclose(average[0, ..., 1:], target[..., 1:], atol=1e-6)
    np.testing.assert_allclose(codec.decode(average)[0][0], codec.decode(target[None])[0][0], atol=1e-3)


@pytest.mark.parametrize("combined", [False, True])
def test_flip_back_works_on_torch_and_numpy_alike(combined):
    c = 3 if combined else 1
    maps = np.random.default_rng(16).normal(size=(2, 17 * c, 8, 6)).astype(np.float32)
    original = maps.copy()
    as_numpy = flip_back(maps, PERM, shift=True, combined=combined)
    tensor = torch.from_numpy(maps.copy())
    as_torch = flip_back(tensor, PERM, shift=True, combined=combined)
    assert isinstance(as_numpy, np.ndarray) and isinstance(as_torch, torch.Tensor)
    np.testing.assert_array_equal(as_torch.numpy(), as_numpy)
    np.testing.assert_array_equal(maps, original)  # input untouched
    np.testing.assert_array_equal(tensor.numpy(), original)
    # written out: channel group k of the result is group PERM[k] reversed, shifted right by one
    grouped = original.reshape(2, 17, c, 8, 6)
    expected = grouped[:, PERM, :, :, ::-1].copy()
    if combined:
        expected[:, :, 1] *= -1
    expected[..., 1:] = expected[..., :-1].copy()
    np.testing.assert_array_equal(as_numpy, expected.reshape(maps.shape))


# ---- records and errors


@pytest.mark.parametrize("name", ["msra", "dark", "udp", "udp_combined"])
def test_to_dict_round_trips_through_json(name):
    codec = build_codec(name, (288, 384), (72, 96))
    record = json.loads(json.dumps(codec.to_dict()))
    assert record["name"] == name and record["sigma"] == 3.0 and record["input_size"] == [288, 384]
    rebuilt = build_codec(record)
    assert type(rebuilt) is type(codec) and rebuilt.to_dict() == codec.to_dict()
    assert rebuilt.channels_per_keypoint == (3 if name == "udp_combined" else 1)
    assert rebuilt.flip_shift == (name in ("msra", "dark"))
    assert rebuilt.udp_warp == name.startswith("udp")


def test_codec_classes_and_names():
    assert type(build_codec("msra", INPUT, HEATMAP)) is MSRAHeatmap
    assert type(build_codec("dark", INPUT, HEATMAP)) is DarkHeatmap
    assert UDPHeatmap(INPUT, HEATMAP, combined=True).name == "udp_combined"


def test_build_codec_errors():
    with pytest.raises(ValueError, match=r"unknown heatmap codec 'simcc'; known codecs: \['dark', 'msra'"):
        build_codec("simcc", INPUT, HEATMAP)
    with pytest.raises(ValueError, match="may hold"):
        build_codec({"name": "msra", "input_size": INPUT, "heatmap_size": HEATMAP, "unbiased": True})
    with pytest.raises(ValueError, match="argument says"):
        build_codec(build_codec("msra", INPUT, HEATMAP).to_dict(), input_size=(288, 384))
    with pytest.raises(ValueError, match="needs"):
        build_codec("msra")
    with pytest.raises(ValueError, match="sigma"):
        build_codec("msra", INPUT, HEATMAP, sigma=0)
    with pytest.raises(ValueError, match="heatmap_size"):
        build_codec("udp", INPUT, (1, 64))


def test_encode_decode_and_flip_back_reject_wrong_shapes():
    codec = build_codec("udp_combined", INPUT, HEATMAP)
    with pytest.raises(ValueError, match=r"keypoints must have shape \[K, 2\]"):
        codec.encode(np.zeros((17, 3)), np.ones(17))
    with pytest.raises(ValueError, match=r"visible must have shape \[K\] = \[17\]"):
        codec.encode(np.zeros((17, 2)), np.ones(16))
    with pytest.raises(ValueError, match=r"\[N, K·3, 64, 48\]"):
        codec.decode(np.zeros((51, 64, 48), np.float32))
    with pytest.raises(ValueError, match=r"\[N, K·3, 64, 48\]"):
        codec.decode(np.zeros((1, 50, 64, 48), np.float32))
    with pytest.raises(ValueError, match=r"\[N, K·1, 64, 48\]"):
        build_codec("msra", INPUT, HEATMAP).decode(np.zeros((1, 17, 48, 64), np.float32))
    with pytest.raises(ValueError, match=r"permutation of 0\.\.16"):
        flip_back(np.zeros((1, 17, 8, 8)), PERM[:-1], shift=True)
    with pytest.raises(ValueError, match="same shape"):
        average_flip(
            np.zeros((1, 17, 8, 8)), np.zeros((1, 17, 8, 7)), build_codec("msra", INPUT, HEATMAP), PERM
        )
