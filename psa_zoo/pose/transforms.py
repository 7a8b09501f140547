"""Top-down crop geometry: box → centre/scale, the crop's affine warp, flips and training augmentation.

Conventions (the cv2 / HRNet ones):

* Coordinates are continuous pixels where an integer is a pixel **centre**: pixel ``(0, 0)`` covers
  ``[-0.5, 0.5]²``.
* Sizes are ``(width, height)``; points are ``(x, y)``.
* ``scale`` is the size **in pixels** ``(w, h)`` of the padded, aspect-fixed person box (mmpose 1.x
  style). HRNet stores ``scale / 200`` (``pixel_std``) and multiplies by 200 again in
  ``get_affine_transform``: only a unit change.
* ``rotation`` is in degrees; a positive angle turns the image content counter-clockwise on screen in the
  crop, the sign of HRNet ``lib/utils/transforms.py::get_affine_transform`` and of
  ``cv2.getRotationMatrix2D``. Both warps here use it. (mmpose's ``get_udp_warp_matrix`` rotates the
  other way; training samples rotations symmetrically, so no recipe depends on the sign.)

Two warps:

* :func:`get_affine_transform` — the standard (HRNet / SimpleBaseline) warp: a similarity that sends the
  box centre to ``(W/2, H/2)`` and the box width ``scale[0]`` to ``W`` (the box edge ``cx ± w/2`` to
  ``0`` and ``W``). It only reads ``scale[0]``: the height follows from the output aspect ratio.
* :func:`get_udp_warp_matrix` — UDP's unit-length warp (Huang et al., CVPR 2020): the box's continuous
  extent goes to the pixel-centre grid ``[0, W-1] × [0, H-1]``.

:func:`crop_matrix` picks one of them, so callers have one entry point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..metadata import KeypointSet

__all__ = [
    "AugmentParams",
    "TopDownAugmentation",
    "affine_points",
    "box_to_center_scale",
    "crop_matrix",
    "flip_image_and_keypoints",
    "get_affine_transform",
    "get_udp_warp_matrix",
    "hflip_keypoints",
    "warp_image",
]


def _vector2(value, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (2,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be 2 finite numbers (x, y) / (w, h), got {value!r}")
    return array


def _output_size(output_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(output_size) if isinstance(output_size, Sequence | np.ndarray) else ()
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise ValueError(f"output_size must be (width, height) of positive ints, got {output_size!r}")
    return int(size[0]), int(size[1])


def _points(points, what: str = "points") -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim < 1 or array.shape[-1] != 2:
        raise ValueError(f"{what} must have shape [..., 2] (x, y), got shape {array.shape}")
    return array


def _keypoints_and_visible(keypoints, visible) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = np.asarray(visible)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"keypoints must have shape [K, 2] (x, y), got shape {keypoints.shape}")
    if visible.shape != (keypoints.shape[0],):
        raise ValueError(
            f"visible must have shape [K] = [{keypoints.shape[0]}] (one flag per keypoint), got shape "
            f"{visible.shape}"
        )
    return keypoints, visible


def _fix_aspect(width: np.ndarray, height: np.ndarray, aspect_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Widen w or h so that w / h == aspect_ratio (HRNet ``_xywh2cs`` and ``half_body_transform``)."""
    wider = width > aspect_ratio * height
    return np.where(wider, width, height * aspect_ratio), np.where(wider, width / aspect_ratio, height)


def _check_aspect_ratio(aspect_ratio: float) -> float:
    if not (isinstance(aspect_ratio, int | float) and math.isfinite(aspect_ratio) and aspect_ratio > 0):
        raise ValueError(
            f"aspect_ratio must be a positive number (crop width / height), got {aspect_ratio!r}"
        )
    return float(aspect_ratio)


def box_to_center_scale(
    box_xywh, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale (pixels) of a person box, as HRNet ``lib/dataset/coco.py::_xywh2cs``.

    centre = (x + w/2, y + h/2); w or h is widened so that w / h = ``aspect_ratio`` (the crop's
    width / height, e.g. 192 / 256); scale = (w, h) · ``padding``.

    Args:
        box_xywh: [4] or [N, 4] boxes (x, y, w, h).
        aspect_ratio: crop width / crop height.
        padding: context factor (1.25 in HRNet and mmpose).
    Returns:
        center [2] (or [N, 2]), scale [2] (or [N, 2]) in pixels, float64.
    """
    aspect_ratio = _check_aspect_ratio(aspect_ratio)
    boxes = np.asarray(box_xywh, dtype=np.float64)
    if boxes.shape[-1:] != (4,) or boxes.ndim > 2:
        raise ValueError(f"box_xywh must have shape [4] or [N, 4] (x, y, w, h), got shape {boxes.shape}")
    x, y, w, h = np.moveaxis(boxes, -1, 0)
    if not np.all(np.isfinite(boxes)) or np.any(w < 0) or np.any(h < 0) or np.any(np.maximum(w, h) <= 0):
        raise ValueError(f"boxes need finite values with w, h ≥ 0 and not both 0, got {boxes.tolist()}")
    if not (math.isfinite(padding) and padding > 0):
        raise ValueError(f"padding must be a positive number, got {padding!r}")
    center = np.stack([x + 0.5 * w, y + 0.5 * h], axis=-1)
    w, h = _fix_aspect(w, h, aspect_ratio)
    scale = np.stack([w, h], axis=-1) * padding
    return center, scale


def _rotate(vector: np.ndarray, radians: float) -> np.ndarray:
    sin, cos = math.sin(radians), math.cos(radians)
    return np.array([vector[0] * cos - vector[1] * sin, vector[0] * sin + vector[1] * cos])


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b + (a − b) turned by 90°: the third point of the 3-point construction (HRNet ``get_3rd_point``)."""
    direction = a - b
    return b + np.array([-direction[1], direction[0]])


def get_affine_transform(
    center, scale, rotation: float, output_size: Sequence[int], inverse: bool = False
) -> np.ndarray:
    """The standard top-down crop warp, as HRNet ``lib/utils/transforms.py::get_affine_transform``.

    Three point pairs define it: the box centre → ``(W/2, H/2)``; the point ``scale[0]/2`` above the
    centre, turned by ``rotation`` about it → ``(W/2, H/2 − W/2)``; and the point perpendicular to these
    two in each frame. ``scale[1]`` is not read (the output aspect ratio sets the height).

    Args:
        center: [2] box centre (x, y), image pixels.
        scale: [2] box size (w, h) in pixels.
        rotation: degrees; positive turns the content counter-clockwise in the crop.
        output_size: (W, H) of the crop (or of the heatmap, for a heatmap-sized warp).
        inverse: return the crop → image matrix instead.
    Returns:
        [2, 3] float64 matrix for :func:`affine_points` / :func:`warp_image`.
    """
    center, scale = _vector2(center, "center"), _vector2(scale, "scale")
    width, height = _output_size(output_size)
    if scale[0] <= 0:
        raise ValueError(f"scale width must be positive, got scale {scale.tolist()}")
    src_dir = _rotate(np.array([0.0, -0.5 * scale[0]]), math.radians(rotation))
    dst_center = np.array([0.5 * width, 0.5 * height])
    src = np.stack([center, center + src_dir, _third_point(center, center + src_dir)])
    dst_top = dst_center + np.array([0.0, -0.5 * width])
    dst = np.stack([dst_center, dst_top, _third_point(dst_center, dst_top)])
    # cv2 wants float32 points (as HRNet passes them); the inverse swaps the point sets, as HRNet inv=1.
    src, dst = src.astype(np.float32), dst.astype(np.float32)
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def _invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear_inv, -linear_inv @ matrix[:, 2:]], axis=1)


def get_udp_warp_matrix(
    center, scale, rotation: float, output_size: Sequence[int], inverse: bool = False
) -> np.ndarray:
    """UDP's unit-length crop warp (facts from mmpose ``structures/bbox/transforms.py``).

    Rotation by ``rotation`` about the box centre, then scale_x = (W − 1) / scale_w and
    scale_y = (H − 1) / scale_h along the crop's axes; the box centre goes to ((W − 1)/2, (H − 1)/2), so
    the box's continuous extent covers the pixel-centre grid [0, W − 1] × [0, H − 1]. The rotation sign
    is the one of :func:`get_affine_transform` (see the module docstring).

    Args:
        center: [2] box centre (x, y), image pixels.
        scale: [2] box size (w, h) in pixels.
        rotation: degrees; positive turns the content counter-clockwise in the crop.
        output_size: (W, H) of the crop, each ≥ 2.
        inverse: return the crop → image matrix instead.
    Returns:
        [2, 3] float64 matrix.
    """
    center, scale = _vector2(center, "center"), _vector2(scale, "scale")
    width, height = _output_size(output_size)
    if min(scale) <= 0 or min(width, height) < 2:
        raise ValueError(
            f"the UDP warp needs a positive scale and an output of at least 2×2 pixels, got scale "
            f"{scale.tolist()} and output_size {(width, height)}"
        )
    radians = math.radians(rotation)
    sin, cos = math.sin(radians), math.cos(radians)
    # R(−rotation) then per-axis scaling: the linear part of get_affine_transform, with (W−1, H−1).
    linear = np.diag([(width - 1) / scale[0], (height - 1) / scale[1]]) @ np.array([[cos, sin], [-sin, cos]])
    offset = np.array([(width - 1) / 2, (height - 1) / 2]) - linear @ center
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    return _invert_affine(matrix) if inverse else matrix


def crop_matrix(
    center, scale, rotation: float, output_size: Sequence[int], udp: bool, inverse: bool = False
) -> np.ndarray:
    """The crop warp of a recipe: :func:`get_udp_warp_matrix` when ``udp``, else :func:`get_affine_transform`.

    Returns:
        [2, 3] float64 image → crop matrix (crop → image when ``inverse``).
    """
    warp = get_udp_warp_matrix if udp else get_affine_transform
    return warp(center, scale, rotation, output_size, inverse=inverse)


def _matrix(matrix) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (2, 3):
        raise ValueError(f"an affine matrix must have shape [2, 3], got shape {array.shape}")
    return array


def affine_points(points, matrix) -> np.ndarray:
    """Apply a [2, 3] affine matrix to points.

    Args:
        points: [..., 2] (x, y).
        matrix: [2, 3].
    Returns:
        [..., 2] float64.
    """
    points, matrix = _points(points), _matrix(matrix)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: np.ndarray, matrix, output_size: Sequence[int]) -> np.ndarray:
    """Cut a crop: ``cv2.warpAffine`` with bilinear sampling and a constant 0 border (as HRNet).

    Args:
        image: [H, W, C] (or [H, W]) uint8 or float32.
        matrix: [2, 3] image → crop matrix.
        output_size: (w, h) of the crop.
    Returns:
        [h, w, C] (or [h, w]) of the image's dtype.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(f"image must have shape [H, W, C] or [H, W], got shape {image.shape}")
    width, height = _output_size(output_size)
    crop = cv2.warpAffine(
        np.ascontiguousarray(image),
        _matrix(matrix),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return crop[..., None] if image.ndim == 3 and crop.ndim == 2 else crop  # cv2 drops a single channel


def _permutation(flip_permutation: Sequence[int], count: int) -> np.ndarray:
    perm = np.asarray(flip_permutation)
    if perm.shape != (count,) or sorted(perm.tolist()) != list(range(count)):
        raise ValueError(
            f"flip_permutation must be a permutation of 0..{count - 1} (KeypointSet.flip_permutation()), "
            f"got {list(flip_permutation)!r}"
        )
    return perm


def hflip_keypoints(
    keypoints, visible, image_width: int, flip_permutation: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of the horizontally flipped image: x → width − 1 − x, left/right swapped.

    As HRNet ``lib/utils/transforms.py::fliplr_joints``.

    Args:
        keypoints: [K, 2] (x, y) image pixels.
        visible: [K] visibility flags.
        image_width: width of the image being flipped.
        flip_permutation: [K] channel order after a flip (``KeypointSet.flip_permutation()``).
    Returns:
        keypoints [K, 2] float64, visible [K].
    """
    keypoints, visible = _keypoints_and_visible(keypoints, visible)
    perm = _permutation(flip_permutation, keypoints.shape[0])
    flipped = keypoints[perm].copy()
    flipped[:, 0] = image_width - 1 - flipped[:, 0]
    return flipped, visible[perm].copy()


def flip_image_and_keypoints(
    image: np.ndarray, keypoints, visible, center, flip_permutation: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training flip of HRNet ``JointsDataset.__getitem__``, applied before the crop.

    ``image[:, ::-1]``; joints x → width − 1 − x with left/right swapped; centre x → width − 1 − cx. A
    crop of the flipped image (same scale, rotation negated) is then the mirror of the unflipped crop:
    x_crop → W_out − x_crop with :func:`get_affine_transform` (hence the 1-px heatmap shift of the flip
    test) and x_crop → W_out − 1 − x_crop with :func:`get_udp_warp_matrix` (exact).

    Args:
        image: [H, W, C] (or [H, W]).
        keypoints: [K, 2] (x, y) image pixels.
        visible: [K].
        center: [2] box centre.
        flip_permutation: [K] (``KeypointSet.flip_permutation()``).
    Returns:
        image [H, W, C] (contiguous copy), keypoints [K, 2], visible [K], center [2].
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape [H, W, C] or [H, W], got shape {image.shape}")
    width = image.shape[1]
    keypoints, visible = hflip_keypoints(keypoints, visible, width, flip_permutation)
    center = _vector2(center, "center").copy()
    center[0] = width - 1 - center[0]
    return np.ascontiguousarray(image[:, ::-1]), keypoints, visible, center


@dataclass(frozen=True)
class AugmentParams:
    """One sample's crop parameters.

    ``center`` and ``scale`` are in the **original** (unflipped) image; when ``flip`` is True the caller
    mirrors the centre together with the image and joints (:func:`flip_image_and_keypoints`) before
    :func:`crop_matrix`. ``half_body`` says whether the half-body box replaced the person box.
    """

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flip: bool
    half_body: bool = False


@dataclass
class TopDownAugmentation:
    """HRNet's top-down training augmentation (``JointsDataset.__getitem__``; ``experiments/coco/hrnet``).

    All randomness comes from the ``rng`` handed to :meth:`sample` (never numpy's or Python's global
    generators), so an engine that seeds one generator per sample reproduces every crop exactly.

    Args:
        flip_prob: probability of a horizontal flip.
        half_body_prob: probability of the half-body box when more than ``num_joints_half_body``
            joints are visible.
        num_joints_half_body: visible joints needed (strictly more) for half-body.
        half_body_padding: factor on the aspect-fixed extent of the chosen joints (1.5).
        scale_factor: sf; scale *= clip(N(0, 1)·sf + 1, 1 − sf, 1 + sf).
        rotation_factor: rf (degrees); rotation = clip(N(0, 1)·rf, −2rf, 2rf) ...
        rotation_prob: ... with this probability, else 0.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    num_joints_half_body: int = 8
    half_body_padding: float = 1.5
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "rotation_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(
                f"scale_factor must be in [0, 1) (the scale stays positive), got {self.scale_factor!r}"
            )
        if self.rotation_factor < 0 or self.half_body_padding <= 0 or self.num_joints_half_body < 0:
            raise ValueError(
                "rotation_factor must be ≥ 0, half_body_padding > 0 and num_joints_half_body ≥ 0, got "
                f"{self.rotation_factor!r}, {self.half_body_padding!r}, {self.num_joints_half_body!r}"
            )

    def sample(
        self,
        rng: np.random.Generator,
        keypoints,
        visible,
        center,
        scale,
        keypoint_set: KeypointSet,
        image_width: int,
        aspect_ratio: float,
    ) -> AugmentParams:
        """Draw one sample's crop parameters.

        Order of draws and steps (HRNet's): half-body on the unflipped joints (a uniform draw when more
        than ``num_joints_half_body`` joints are visible and the set has half-body groups, then a normal
        draw for the group), the scale (normal), the rotation (uniform, then normal when rotating), the
        flip (uniform). The returned centre and scale are in the original image; the caller applies
        the flip to image, joints and centre together, as HRNet does after scale and rotation::

            params = augmentation.sample(rng, keypoints, visible, center, scale, keypoint_set, width, ar)
            center = params.center
            if params.flip:
                image, keypoints, visible, center = flip_image_and_keypoints(
                    image, keypoints, visible, center, keypoint_set.flip_permutation()
                )
            matrix = crop_matrix(center, params.scale, params.rotation, input_size, udp)

        (Half-body before or after the flip gives the same box: the groups are flip-symmetric and the
        box is built from the joints' mean and extent.)

        Args:
            rng: the sample's generator.
            keypoints: [K, 2] image pixels.
            visible: [K] (> 0 = labelled).
            center: [2] person-box centre; scale: [2] its size in pixels (:func:`box_to_center_scale`).
            keypoint_set: supplies the half-body groups (``upper_body`` / ``lower_body``).
            image_width: width of the image (only checked here: the flip, which needs it, is
                :func:`flip_image_and_keypoints`'s).
            aspect_ratio: crop width / height.
        """
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                "rng must be a numpy.random.Generator (np.random.default_rng(seed)), got "
                f"{type(rng).__name__}"
            )
        keypoints, visible = _keypoints_and_visible(keypoints, visible)
        if keypoints.shape[0] != keypoint_set.num_keypoints:
            raise ValueError(
                f"keypoints has {keypoints.shape[0]} rows but keypoint set {keypoint_set.name!r} has "
                f"{keypoint_set.num_keypoints} keypoints"
            )
        aspect_ratio = _check_aspect_ratio(aspect_ratio)
        if int(image_width) != image_width or image_width < 1:
            raise ValueError(f"image_width must be a positive int (pixels), got {image_width!r}")
        center, scale = _vector2(center, "center").copy(), _vector2(scale, "scale").copy()
        labelled = visible > 0
        half_body = False
        has_groups = bool(keypoint_set.upper_body or keypoint_set.lower_body)
        if has_groups and labelled.sum() > self.num_joints_half_body and rng.random() < self.half_body_prob:
            box = self._half_body_box(rng, keypoints, labelled, keypoint_set, aspect_ratio)
            if box is not None:
                (center, scale), half_body = box, True
        sf, rf = self.scale_factor, self.rotation_factor
        scale = scale * float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
        rotation = 0.0
        if rng.random() < self.rotation_prob:
            rotation = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
        flip = bool(rng.random() < self.flip_prob)
        return AugmentParams(center=center, scale=scale, rotation=rotation, flip=flip, half_body=half_body)

    def _half_body_box(
        self,
        rng: np.random.Generator,
        keypoints: np.ndarray,
        labelled: np.ndarray,
        keypoint_set: KeypointSet,
        aspect_ratio: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """HRNet ``JointsDataset.half_body_transform``: centre = mean of the chosen labelled joints,
        size = their extent with the aspect fixed, × ``half_body_padding``; None when < 2 joints."""
        upper = [i for i in keypoint_set.upper_body if labelled[i]]
        lower = [i for i in keypoint_set.lower_body if labelled[i]]
        # HRNet: `np.random.randn() < 0.5` picks the upper body (≈ 69 %) when it has more than 2 joints.
        if rng.standard_normal() < 0.5 and len(upper) > 2:
            chosen = upper
        else:
            chosen = lower if len(lower) > 2 else upper
        if len(chosen) < 2:
            return None
        joints = keypoints[chosen]
        width, height = joints.max(axis=0) - joints.min(axis=0)
        if width <= 0 and height <= 0:
            return None  # coincident joints: no box to build
        width, height = _fix_aspect(np.float64(width), np.float64(height), aspect_ratio)
        scale = np.array([width, height], dtype=np.float64) * self.half_body_padding
        return joints.mean(axis=0), scale
