"""Crop geometry: expected values are the defining points / formulas written out here, or cv2's own
rotation matrix (``cv2.getRotationMatrix2D``) for the sign convention."""

from __future__ import annotations

import math
import random

import cv2
import numpy as np
import pytest

from psa_zoo.labels import COCO_KEYPOINT_SET
from psa_zoo.metadata import KeypointSet
from psa_zoo.pose import (
    TopDownAugmentation,
    affine_points,
    box_to_center_scale,
    crop_matrix,
    flip_image_and_keypoints,
    get_affine_transform,
    get_udp_warp_matrix,
    hflip_keypoints,
    warp_image,
)

OUT = (192, 256)  # (W, H) of the input crop
PERM = COCO_KEYPOINT_SET.flip_permutation()


def _random_crop(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    center = rng.uniform([100, 100], [500, 400])
    scale = rng.uniform(60, 400) * np.array([1.0, 256 / 192])
    return center, scale, float(rng.uniform(-80, 80))


# ---- box → centre / scale


def test_box_to_center_scale_follows_hrnet_xywh2cs():
    # tall box: w = 30 < 0.75·100 → w = 75; × 1.25
    center, scale = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75)
    np.testing.assert_allclose(center, [25, 70])
    np.testing.assert_allclose(scale, [75 * 1.25, 100 * 1.25])
    # wide box: w = 200 > 0.75·100 → h = 200 / 0.75
    center, scale = box_to_center_scale([0, 0, 200, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(center, [100, 50])
    np.testing.assert_allclose(scale, [200, 200 / 0.75])
    both_c, both_s = box_to_center_scale([[10, 20, 30, 100], [0, 0, 200, 100]], 0.75, padding=1.0)
    np.testing.assert_allclose(both_c, [[25, 70], [100, 50]])
    np.testing.assert_allclose(both_s, [[75, 100], [200, 200 / 0.75]])


@pytest.mark.parametrize(
    ("box", "aspect_ratio"),
    [([0, 0, 10], 0.75), ([0, 0, -1, 10], 0.75), ([0, 0, 0, 0], 0.75), ([0, 0, 1, 1], 0)],
)
def test_box_to_center_scale_rejects_bad_boxes(box, aspect_ratio):
    with pytest.raises(ValueError, match=r"box|aspect_ratio"):
        box_to_center_scale(box, aspect_ratio)


# ---- the standard warp


def test_get_affine_transform_maps_its_three_defining_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        center, scale, rot = _random_crop(rng)
        out_w, out_h = OUT
        r, half = math.radians(rot), scale[0] / 2
        # src: centre; the point half a box width above it turned by rot; the third point perpendicular
        src_up = center + np.array([half * math.sin(r), -half * math.cos(r)])
        src_third = center + np.array(
            [half * math.sin(r) - half * math.cos(r), -half * math.cos(r) - half * math.sin(r)]
        )
        dst = np.array(
            [[out_w / 2, out_h / 2], [out_w / 2, out_h / 2 - out_w / 2], [0, out_h / 2 - out_w / 2]]
        )
        matrix = get_affine_transform(center, scale, rot, OUT)
        np.testing.assert_allclose(
            affine_points(np.stack([center, src_up, src_third]), matrix), dst, atol=1e-3
        )


def test_rotation_sign_is_cv2s_counter_clockwise():
    rng = np.random.default_rng(1)
    for _ in range(10):
        center, scale, rot = _random_crop(rng)
        expected = cv2.getRotationMatrix2D(tuple(center), rot, OUT[0] / scale[0])
        np.testing.assert_allclose(
            get_affine_transform(center, scale, rot, OUT)[:, :2], expected[:, :2], atol=1e-5
        )
        # UDP with equal x / y factors is the same rotation with (W − 1) / scale_w
        udp_scale = np.array([scale[0], scale[0] * (OUT[1] - 1) / (OUT[0] - 1)])
        expected = cv2.getRotationMatrix2D(tuple(center), rot, (OUT[0] - 1) / scale[0])
        np.testing.assert_allclose(
            get_udp_warp_matrix(center, udp_scale, rot, OUT)[:, :2], expected[:, :2], atol=1e-9
        )
    # +90°: the point right of the centre appears above the crop centre (counter-clockwise on screen)
    matrix = get_affine_transform([100, 100], [192, 256], 90, OUT)
    np.testing.assert_allclose(affine_points([110, 100], matrix), [96, 128 - 10], atol=1e-3)


def test_udp_warp_sends_the_box_extent_to_the_pixel_centre_grid():
    center, scale = np.array([320.5, 211.25]), np.array([150.0, 210.0])
    out_w, out_h = OUT
    matrix = get_udp_warp_matrix(center, scale, 0.0, OUT)
    corners = center + np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * scale / 2
    np.testing.assert_allclose(
        affine_points(corners, matrix),
        [[0, 0], [out_w - 1, 0], [0, out_h - 1], [out_w - 1, out_h - 1]],
        atol=1e-9,
    )
    np.testing.assert_allclose(affine_points(center, matrix), [(out_w - 1) / 2, (out_h - 1) / 2], atol=1e-9)
    # rotated: the crop's right-edge middle is the centre + scale_w/2 · (cos r, sin r) in the image
    r = math.radians(30.0)
    matrix = get_udp_warp_matrix(center, scale, 30.0, OUT)
    right = center + scale[0] / 2 * np.array([math.cos(r), math.sin(r)])
    bottom = center + scale[1] / 2 * np.array([-math.sin(r), math.cos(r)])
    np.testing.assert_allclose(affine_points(right, matrix), [out_w - 1, (out_h - 1) / 2], atol=1e-9)
    np.testing.assert_allclose(affine_points(bottom, matrix), [(out_w - 1) / 2, out_h - 1], atol=1e-9)


@pytest.mark.parametrize("udp", [False, True])
def test_points_go_to_the_crop_and_back(udp):
    rng = np.random.default_rng(2)
    for _ in range(50):
        center, scale, rot = _random_crop(rng)
        points = rng.uniform(-200, 900, size=(17, 2))
        forward = crop_matrix(center, scale, rot, OUT, udp=udp)
        backward = crop_matrix(center, scale, rot, OUT, udp=udp, inverse=True)
        np.testing.assert_allclose(affine_points(affine_points(points, forward), backward), points, atol=1e-3)
    assert np.array_equal(
        crop_matrix(center, scale, rot, OUT, udp=True), get_udp_warp_matrix(center, scale, rot, OUT)
    )
    assert np.array_equal(
        crop_matrix(center, scale, rot, OUT, udp=False), get_affine_transform(center, scale, rot, OUT)
    )


@pytest.mark.parametrize("udp", [False, True])
def test_warp_image_puts_a_bright_pixel_where_affine_points_says(udp):
    rng = np.random.default_rng(3)
    image = np.zeros((480, 640, 3), np.uint8)
    bright = np.array([301.0, 187.0])
    image[187, 301] = (255, 128, 64)
    for _ in range(5):
        _, scale, rot = _random_crop(rng)
        target = rng.integers(20, 170, size=2).astype(np.float64)  # an integer crop pixel
        # choose the centre so that the bright pixel lands on `target`: M p = A (p − c) + (where c goes)
        centre_goes_to = np.array([OUT[0] - 1, OUT[1] - 1]) / 2 if udp else np.array(OUT) / 2
        linear = crop_matrix([0, 0], scale, rot, OUT, udp=udp)[:, :2]
        center = bright - np.linalg.solve(linear, target - centre_goes_to)
        matrix = crop_matrix(center, scale, rot, OUT, udp=udp)
        landed = affine_points(bright, matrix)
        np.testing.assert_allclose(landed, target, atol=1e-3)
        crop = warp_image(image, matrix, OUT)
        assert crop.shape == (OUT[1], OUT[0], 3) and crop.dtype == np.uint8
        x, y = np.round(landed).astype(int)
        assert tuple(crop[y, x]) == (255, 128, 64)
        others = crop[..., 0].astype(int)
        others[y, x] = 0
        assert others.max() < 255  # any other pixel samples off the bright one
        # and only pixels that sample within one source pixel of it see any of it
        lit_y, lit_x = np.nonzero(crop[..., 0])
        src = affine_points(
            np.stack([lit_x, lit_y], axis=-1), crop_matrix(center, scale, rot, OUT, udp, True)
        )
        assert np.abs(src - bright).max() < 1 + 1 / 32


@pytest.mark.parametrize("udp", [False, True])
def test_warp_image_samples_at_the_pixel_centres_affine_points_gives(udp):
    # a linear ramp is reproduced exactly by bilinear sampling: crop[q] = ramp(inverse(q)); cv2 quantises
    # source positions to 1/32 px, i.e. ≤ (0.5 + 0.25) / 64 here
    height, width = 300, 400
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = (0.5 * xs + 0.25 * ys + 3.0)[..., None]
    center, scale, rot = np.array([200.3, 150.7]), np.array([150.0, 200.0]), 25.0
    crop = warp_image(image, crop_matrix(center, scale, rot, OUT, udp), OUT)
    assert crop.shape == (OUT[1], OUT[0], 1)
    qy, qx = np.mgrid[0 : OUT[1], 0 : OUT[0]]
    src = affine_points(np.stack([qx, qy], axis=-1), crop_matrix(center, scale, rot, OUT, udp, inverse=True))
    inside = (
        (src[..., 0] >= 0) & (src[..., 0] <= width - 1) & (src[..., 1] >= 0) & (src[..., 1] <= height - 1)
    )
    expected = 0.5 * src[..., 0] + 0.25 * src[..., 1] + 3.0
    assert inside.mean() > 0.5
    np.testing.assert_allclose(crop[..., 0][inside], expected[inside], atol=0.015)
    assert np.all(crop[..., 0][~inside & (np.abs(src[..., 0] - 200) > width)] == 0)  # constant 0 border


# ---- flip


def test_hflip_keypoints_mirrors_x_and_swaps_left_right():
    keypoints = np.arange(34, dtype=np.float64).reshape(17, 2)
    visible = np.arange(17)
    flipped, flipped_visible = hflip_keypoints(keypoints, visible, 100, PERM)
    # left_eye (1) takes the right eye's (2) mirrored position
    np.testing.assert_allclose(flipped[1], [100 - 1 - keypoints[2, 0], keypoints[2, 1]])
    np.testing.assert_allclose(flipped[0], [100 - 1 - keypoints[0, 0], keypoints[0, 1]])
    assert flipped_visible[1] == 2 and flipped_visible[2] == 1 and flipped_visible[0] == 0


@pytest.mark.parametrize(("udp", "mirror_offset"), [(False, 0), (True, 1)])
def test_flip_before_the_crop_mirrors_crop_coordinates(udp, mirror_offset):
    # standard: x_crop → W − x_crop; UDP: x_crop → W − 1 − x_crop (rotation negated in the flipped image)
    rng = np.random.default_rng(4)
    image = np.zeros((480, 640, 3), np.uint8)
    for rot in (0.0, 33.0):
        center, scale, _ = _random_crop(rng)
        keypoints = rng.uniform([0, 0], [639, 479], size=(17, 2))
        visible = np.ones(17)
        crop = affine_points(keypoints, crop_matrix(center, scale, rot, OUT, udp))
        _, kp_f, _, center_f = flip_image_and_keypoints(image, keypoints, visible, center, PERM)
        np.testing.assert_allclose(center_f, [640 - 1 - center[0], center[1]])
        crop_f = affine_points(kp_f, crop_matrix(center_f, scale, -rot, OUT, udp))
        np.testing.assert_allclose(crop_f[:, 0], OUT[0] - mirror_offset - crop[PERM, 0], atol=2e-3)
        np.testing.assert_allclose(crop_f[:, 1], crop[PERM, 1], atol=2e-3)


def test_flipped_crops_are_the_mirrored_crops_up_to_the_one_pixel_shift():
    rng = np.random.default_rng(5)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, size=(480, 640, 3)).astype(np.float32), (0, 0), 3)
    image = np.clip((noise - noise.min()) * (255 / np.ptp(noise)), 0, 255).astype(np.uint8)
    center, scale = np.array([300.0, 250.0]), np.array([200.0, 200 * 256 / 192])
    flipped, _, _, center_f = flip_image_and_keypoints(image, np.zeros((17, 2)), np.zeros(17), center, PERM)
    for udp in (False, True):
        crop = warp_image(image, crop_matrix(center, scale, 0.0, OUT, udp), OUT).astype(int)
        crop_f = warp_image(flipped, crop_matrix(center_f, scale, 0.0, OUT, udp), OUT).astype(int)
        if udp:  # column j of the flipped crop is column W − 1 − j of the crop
            assert np.abs(crop_f - crop[:, ::-1]).max() <= 2
        else:  # column j is column W − j: one pixel off
            assert np.abs(crop_f[:, 1:] - crop[:, ::-1][:, :-1]).max() <= 2
            assert np.abs(crop_f - crop[:, ::-1]).mean() > 0.5


# ---- augmentation


def _person() -> tuple[np.ndarray, np.ndarray]:
    """COCO joints: an upper body at y ≤ 150 and a lower body at y ≥ 300, both left/right symmetric."""
    upper = [(100, 50), (90, 40), (110, 40), (80, 45), (120, 45), (60, 80), (140, 80), (50, 120), (150, 120),
             (55, 150), (145, 150)]  # fmt: skip
    lower = [(80, 300), (120, 300), (78, 350), (122, 350), (76, 400), (124, 400)]
    return np.array(upper + lower, dtype=np.float64), np.full(17, 2)


def test_augmentation_is_reproducible_from_the_rng_and_leaves_global_rngs_alone():
    keypoints, visible = _person()
    center, scale = box_to_center_scale([40, 30, 120, 380], 0.75)
    aug = TopDownAugmentation()
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    first = [
        aug.sample(np.random.default_rng(s), keypoints, visible, center, scale, COCO_KEYPOINT_SET, 640, 0.75)
        for s in range(50)
    ]
    again = [
        aug.sample(np.random.default_rng(s), keypoints, visible, center, scale, COCO_KEYPOINT_SET, 640, 0.75)
        for s in range(50)
    ]
    after = np.random.get_state()
    assert (
        after[0] == numpy_state[0]
        and np.array_equal(after[1], numpy_state[1])
        and after[2:] == numpy_state[2:]
    )
    assert random.getstate() == python_state
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.center, b.center) and np.array_equal(a.scale, b.scale)
        assert (a.rotation, a.flip, a.half_body) == (b.rotation, b.flip, b.half_body)
    # different seeds differ (a few may coincide when clipped scale, no rotation and no flip meet)
    assert len({(p.rotation, p.flip, tuple(p.scale), tuple(p.center)) for p in first}) > 40


def test_augmentation_ranges_and_probabilities():
    keypoints, visible = _person()
    center, scale = box_to_center_scale([40, 30, 120, 380], 0.75)
    aug = TopDownAugmentation(half_body_prob=0.0)
    params = [
        aug.sample(np.random.default_rng(s), keypoints, visible, center, scale, COCO_KEYPOINT_SET, 640, 0.75)
        for s in range(3000)
    ]
    ratios = np.array([p.scale / scale for p in params])
    np.testing.assert_allclose(ratios[:, 0], ratios[:, 1])
    assert ratios.min() >= 1 - 0.35 - 1e-12 and ratios.max() <= 1 + 0.35 + 1e-12
    assert np.isclose(ratios.min(), 0.65) and np.isclose(ratios.max(), 1.35)  # N(0,1)·0.35 is clipped
    rotations = np.array([p.rotation for p in params])
    assert np.abs(rotations).max() <= 90 and np.isclose(np.abs(rotations).max(), 90)
    assert abs(np.mean(rotations != 0) - 0.6) < 0.04
    flips = np.array([p.flip for p in params])
    assert abs(flips.mean() - 0.5) < 0.04
    # without half-body the centre stays the box centre in the original image (the caller flips it)
    for p in params[:50]:
        np.testing.assert_array_equal(p.center, center)


def test_half_body_box_covers_only_the_chosen_group():
    keypoints, visible = _person()
    center, scale = box_to_center_scale([40, 30, 120, 380], 0.75)
    aug = TopDownAugmentation(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0)
    upper, lower = list(COCO_KEYPOINT_SET.upper_body), list(COCO_KEYPOINT_SET.lower_body)
    chosen_upper = 0
    for seed in range(200):
        p = aug.sample(
            np.random.default_rng(seed), keypoints, visible, center, scale, COCO_KEYPOINT_SET, 640, 0.75
        )
        assert p.half_body
        is_upper = p.center[1] < 200
        chosen_upper += is_upper
        group, other = (upper, lower) if is_upper else (lower, upper)
        joints = keypoints[group]
        # HRNet half_body_transform: mean centre, extent with the aspect fixed, × 1.5
        w, h = np.ptp(joints, axis=0)
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        np.testing.assert_allclose(p.center, joints.mean(axis=0))
        np.testing.assert_allclose(p.scale, [1.5 * w, 1.5 * h])
        low, high = p.center - p.scale / 2, p.center + p.scale / 2
        assert np.all((keypoints[group] >= low) & (keypoints[group] <= high))
        assert not np.any(np.all((keypoints[other] >= low) & (keypoints[other] <= high), axis=1))
    assert 0.55 < chosen_upper / 200 < 0.83  # P(N(0,1) < 0.5) ≈ 0.69


def test_documented_flow_flip_after_half_body_crops_the_mirrored_group():
    # sample() → flip_image_and_keypoints(…, params.center, …) → crop: the half-body box chosen on the
    # unflipped joints still frames the same (mirrored, left/right swapped) group
    keypoints, visible = _person()
    image = np.zeros((480, 640, 3), np.uint8)
    center, scale = box_to_center_scale([40, 30, 120, 380], 0.75)
    aug = TopDownAugmentation(half_body_prob=1.0, flip_prob=1.0, scale_factor=0.0, rotation_prob=0.0)
    for seed in range(20):
        params = aug.sample(
            np.random.default_rng(seed), keypoints, visible, center, scale, COCO_KEYPOINT_SET, 640, 0.75
        )
        assert params.flip and params.half_body
        _, kp_f, _, center_f = flip_image_and_keypoints(image, keypoints, visible, params.center, PERM)
        crop = affine_points(kp_f, crop_matrix(center_f, params.scale, params.rotation, OUT, udp=True))
        inside = np.all((crop >= 0) & (crop <= np.array(OUT) - 1), axis=1)
        group = COCO_KEYPOINT_SET.upper_body if params.center[1] < 200 else COCO_KEYPOINT_SET.lower_body
        assert inside.tolist() == [i in group for i in range(17)]


def test_half_body_needs_enough_joints_and_groups():
    keypoints, visible = _person()
    center, scale = box_to_center_scale([40, 30, 120, 380], 0.75)
    aug = TopDownAugmentation(half_body_prob=1.0)
    few = visible.copy()
    few[8:] = 0  # exactly 8 visible: not more than num_joints_half_body
    no_groups = KeypointSet.generic(17)
    for seed in range(30):
        rng = np.random.default_rng(seed)
        assert not aug.sample(rng, keypoints, few, center, scale, COCO_KEYPOINT_SET, 640, 0.75).half_body
        assert not aug.sample(rng, keypoints, visible, center, scale, no_groups, 640, 0.75).half_body


def test_augmentation_rejects_bad_arguments():
    keypoints, visible = _person()
    aug = TopDownAugmentation()
    with pytest.raises(ValueError, match=r"numpy\.random\.Generator"):
        aug.sample(np.random, keypoints, visible, [0, 0], [1, 1], COCO_KEYPOINT_SET, 640, 0.75)
    with pytest.raises(ValueError, match=r"shape \[K, 2\]"):
        aug.sample(
            np.random.default_rng(0), keypoints[:, :1], visible, [0, 0], [1, 1], COCO_KEYPOINT_SET, 640, 0.75
        )
    with pytest.raises(ValueError, match="17 keypoints"):
        aug.sample(
            np.random.default_rng(0), keypoints[:5], visible[:5], [0, 0], [1, 1], COCO_KEYPOINT_SET, 640, 0.75
        )
    with pytest.raises(ValueError, match="probability"):
        TopDownAugmentation(flip_prob=1.5)
    with pytest.raises(ValueError, match="scale_factor"):
        TopDownAugmentation(scale_factor=1.0)


# ---- errors


def test_geometry_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        affine_points([[0, 0]], np.eye(3))
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        affine_points([[0, 0, 0]], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="output_size"):
        get_affine_transform([0, 0], [10, 10], 0, (192,))
    with pytest.raises(ValueError, match="center"):
        get_udp_warp_matrix([0, 0, 0], [10, 10], 0, OUT)
    with pytest.raises(ValueError, match="image"):
        warp_image(np.zeros((2, 2, 2, 2), np.uint8), np.zeros((2, 3)), OUT)
    with pytest.raises(ValueError, match="permutation"):
        hflip_keypoints(np.zeros((17, 2)), np.zeros(17), 10, [0, 1])
    with pytest.raises(ValueError, match=r"visible must have shape \[K\]"):
        hflip_keypoints(np.zeros((17, 2)), np.zeros(16), 10, PERM)
