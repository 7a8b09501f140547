"""Heatmap codecs of top-down pose: keypoints ↔ target heatmaps, and the flip test's heatmap flip.

A codec encodes keypoints given in **input-crop pixels** (the crop the network sees, e.g. 192×256, with
the conventions of :mod:`psa_zoo.pose.transforms`) into heatmaps of ``heatmap_size``, and decodes heatmaps
back into input-crop pixels; :func:`~psa_zoo.pose.transforms.crop_matrix` with ``inverse=True`` then maps
them into the image.

* :class:`MSRAHeatmap` — the standard target and decoder of SimpleBaseline / HRNet (HRNet
  ``JointsDataset.generate_target`` and ``lib/core/inference.py::get_final_preds``).
* :class:`DarkHeatmap` — DARK (Zhang et al., CVPR 2020): unbiased target and the Taylor-expansion
  decoder (ilovepose/DarkPose; mmpose ``refine_keypoints_dark``).
* :class:`UDPHeatmap` — UDP (Huang et al., CVPR 2020): unit-length scaling (input − 1) / (heatmap − 1),
  Gaussian or ``combined`` (classification + offset) targets (mmpose ``UDPHeatmap``; UDP-Pose
  ``CombinedTarget``). Unlike mmpose's decoder, which maps back with ``input / (heatmap − 1)``, the
  decoder here inverts the encoder exactly.

``sigma`` defaults to 2 at a heatmap width of 48 and grows with the width (σ = 2 · w / 48: 2 for 64×48,
3 for 96×72, HRNet's configs). The decoders' blur kernel is 6σ − 1 rounded to odd (11 for σ = 2, 17 for
σ = 3, DarkPose's and mmpose 0.x's settings).

:func:`flip_back` / :func:`average_flip` implement the flip test: reverse the width, swap left/right
channels and, for the standard warp, shift one pixel right (its flip maps x → W − x, not W − 1 − x).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "CODECS",
    "DarkHeatmap",
    "HeatmapCodec",
    "MSRAHeatmap",
    "UDPHeatmap",
    "average_flip",
    "build_codec",
    "default_blur_kernel_size",
    "default_sigma",
    "flip_back",
    "gaussian_blur",
]

# UDP-Pose's "KPD = 3.5" at 64 px: radius of the combined target's positive disk / max(heatmap w, h).
UDP_RADIUS_FACTOR = 0.0546875


def _size(value, what: str, minimum: int = 1) -> tuple[int, int]:
    size = tuple(value) if isinstance(value, Sequence | np.ndarray) else ()
    if len(size) != 2 or any(int(v) != v or v < minimum for v in size):
        raise ValueError(f"{what} must be (width, height) of ints ≥ {minimum}, got {value!r}")
    return int(size[0]), int(size[1])


def default_sigma(heatmap_size: Sequence[int]) -> float:
    """Gaussian σ for a heatmap size: 2 at width 48, proportional to the width (3 at width 72)."""
    return 2.0 * _size(heatmap_size, "heatmap_size")[0] / 48.0


def default_blur_kernel_size(sigma: float) -> int:
    """Decoder blur kernel for σ: 6σ − 1 rounded, made odd (11 for σ = 2, 17 for σ = 3)."""
    size = max(3, round(6.0 * sigma - 1.0))
    return size if size % 2 else size + 1


def gaussian_blur(heatmaps: np.ndarray, kernel_size: int) -> np.ndarray:
    """Gaussian blur of each map with zero padding (mmpose ``gaussian_blur``, DarkPose), no rescaling.

    The kernel is ``cv2.getGaussianKernel(kernel_size, 0)`` (σ from the size by OpenCV's rule, as the
    official code passes σ = 0). All maps are blurred in one ``cv2.sepFilter2D`` call: each map gets
    kernel-radius zero rows above and below, so the vertical pass cannot mix neighbouring maps.

    Args:
        heatmaps: [M, h, w] float32.
        kernel_size: odd size.
    Returns:
        [M, h, w] float32.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel size must be a positive odd int, got {kernel_size!r}")
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps to blur must have shape [M, h, w], got shape {maps.shape}")
    count, height, width = maps.shape
    border = kernel_size // 2
    kernel = cv2.getGaussianKernel(kernel_size, 0, ktype=cv2.CV_32F)
    stacked = np.pad(maps, ((0, 0), (border, border), (0, 0))).reshape(count * (height + 2 * border), width)
    blurred = cv2.sepFilter2D(stacked, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    return blurred.reshape(count, height + 2 * border, width)[:, border : border + height]


def _argmax(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer x, y and value of each map's maximum; maps whose maximum is ≤ 0 get (0, 0), as HRNet
    ``get_max_preds`` (its ``pred_mask``)."""
    flat = maps.reshape(maps.shape[0], -1)
    index = flat.argmax(axis=1)
    score = np.take_along_axis(flat, index[:, None], axis=1)[:, 0]
    x, y = index % maps.shape[2], index // maps.shape[2]
    empty = score <= 0
    x[empty], y[empty] = 0, 0
    return x, y, score


def _to_numpy_heatmaps(heatmaps) -> np.ndarray:
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.detach().to("cpu", torch.float32).numpy()
    return np.asarray(heatmaps, dtype=np.float32)


def _gaussian_1d(grid: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """[K, n] exp(−(grid − μ)² / 2σ²): one axis of a separable Gaussian."""
    return np.exp(-((grid[None, :] - mu[:, None]) ** 2) / (2.0 * sigma**2))


class HeatmapCodec:
    """Base class: shapes, checks and the input ↔ heatmap scaling shared by the codecs.

    Attributes:
        name: registry name (:data:`CODECS`).
        input_size: (W, H) of the input crop.
        heatmap_size: (w, h) of the heatmaps.
        sigma: Gaussian σ in heatmap pixels.
        flip_shift: whether the flip test shifts the flipped-back heatmap one pixel right.
        udp_warp: whether the crop must be cut with the UDP warp (``crop_matrix(..., udp=codec.udp_warp)``):
            True for both UDP codecs.
        channels_per_keypoint: heatmap channels per keypoint (3 for UDP's combined target).
    """

    name: str = ""
    flip_shift: bool = True
    udp_warp: bool = False
    channels_per_keypoint: int = 1
    _min_heatmap_side = 1  # UDP's (heatmap − 1) scaling needs 2

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float | None = None,
        blur_kernel_size: int | None = None,
    ) -> None:
        self.input_size = _size(input_size, "input_size")
        self.heatmap_size = _size(heatmap_size, "heatmap_size", minimum=self._min_heatmap_side)
        self.sigma = default_sigma(self.heatmap_size) if sigma is None else float(sigma)
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a positive number (heatmap pixels), got {sigma!r}")
        if blur_kernel_size is None:
            blur_kernel_size = default_blur_kernel_size(self.sigma)
        if int(blur_kernel_size) != blur_kernel_size or blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd int, got {blur_kernel_size!r}")
        self.blur_kernel_size = int(blur_kernel_size)

    # ---- scaling between input-crop pixels and heatmap pixels (standard: the stride input / heatmap)
    def _input_per_heatmap_pixel(self) -> np.ndarray:
        return np.array(self.input_size, dtype=np.float64) / np.array(self.heatmap_size, dtype=np.float64)

    def to_heatmap(self, keypoints: np.ndarray) -> np.ndarray:
        """[..., 2] input-crop pixels → heatmap pixels."""
        return np.asarray(keypoints, dtype=np.float64) / self._input_per_heatmap_pixel()

    def to_input(self, keypoints: np.ndarray) -> np.ndarray:
        """[..., 2] heatmap pixels → input-crop pixels."""
        return np.asarray(keypoints, dtype=np.float64) * self._input_per_heatmap_pixel()

    # ---- public API
    def encode(self, keypoints, visible) -> tuple[np.ndarray, np.ndarray]:
        """Target heatmaps of one instance.

        Args:
            keypoints: [K, 2] (x, y) in input-crop pixels.
            visible: [K]; > 0 marks a labelled keypoint.
        Returns:
            heatmaps [K·c, h, w] float32 (c = ``channels_per_keypoint``), weights [K] float32: 1 for a
            labelled keypoint, 0 when unlabelled, not finite or when its window (the 3σ square, the
            combined target's disk) lies fully outside the heatmap.
        """
        keypoints = np.asarray(keypoints, dtype=np.float64)
        visible = np.asarray(visible)
        if keypoints.ndim != 2 or keypoints.shape[1] != 2:
            raise ValueError(
                f"{self.name} encode: keypoints must have shape [K, 2] (x, y input-crop pixels), got shape "
                f"{keypoints.shape}"
            )
        if visible.shape != (keypoints.shape[0],):
            raise ValueError(
                f"{self.name} encode: visible must have shape [K] = [{keypoints.shape[0]}], got shape "
                f"{visible.shape}"
            )
        valid = (visible > 0) & np.all(np.isfinite(keypoints), axis=1)
        mu = np.where(valid[:, None], self.to_heatmap(keypoints), 0.0)
        heatmaps, inside = self._encode(mu)
        weights = valid & inside
        heatmaps = heatmaps.reshape(len(mu), self.channels_per_keypoint, *heatmaps.shape[-2:])
        heatmaps[~weights] = 0.0
        w, h = self.heatmap_size
        return heatmaps.reshape(-1, h, w).astype(np.float32), weights.astype(np.float32)

    def decode(self, heatmaps) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints and scores from heatmaps (a torch tensor is copied to CPU float32 first).

        Args:
            heatmaps: [N, K·c, h, w].
        Returns:
            keypoints [N, K, 2] float32 in input-crop pixels, scores [N, K] float32.
        """
        maps = _to_numpy_heatmaps(heatmaps)
        w, h = self.heatmap_size
        c = self.channels_per_keypoint
        if maps.ndim != 4 or maps.shape[2:] != (h, w) or maps.shape[1] % c or maps.shape[1] == 0:
            raise ValueError(
                f"{self.name} decode: heatmaps must have shape [N, K·{c}, {h}, {w}] (heatmap_size "
                f"{self.heatmap_size} is (w, h)), got shape {tuple(maps.shape)}"
            )
        n, k = maps.shape[0], maps.shape[1] // c
        keypoints, scores = self._decode(maps.reshape(n * k, c, h, w))
        keypoints = self.to_input(keypoints)
        return keypoints.reshape(n, k, 2).astype(np.float32), scores.reshape(n, k).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record a saved model's metadata stores; :func:`build_codec` rebuilds the codec from it."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
            "sigma": self.sigma,
            "blur_kernel_size": self.blur_kernel_size,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({fields})"

    # ---- per codec
    def _encode(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu [K, 2] heatmap pixels → (heatmaps [K·c, h, w], window-inside flags [K])."""
        raise NotImplementedError

    def _decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """maps [M, c, h, w] → (keypoints [M, 2] heatmap pixels, scores [M])."""
        raise NotImplementedError

    def _window_target(self, mu: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian at ``mu`` cut to the square of radius ⌊3σ⌋ around the integer ``centre`` (HRNet /
        mmpose UDP window); also whether that square meets the heatmap."""
        w, h = self.heatmap_size
        radius = math.floor(3.0 * self.sigma)
        xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
        gx = _gaussian_1d(xs, mu[:, 0], self.sigma) * (np.abs(xs[None] - centre[:, :1]) <= radius)
        gy = _gaussian_1d(ys, mu[:, 1], self.sigma) * (np.abs(ys[None] - centre[:, 1:]) <= radius)
        inside = np.all((centre + radius >= 0) & (centre - radius <= np.array([w - 1, h - 1])), axis=1)
        return gy[:, :, None] * gx[:, None, :], inside


class MSRAHeatmap(HeatmapCodec):
    """The standard target and decoder (HRNet ``generate_target`` / ``get_final_preds``).

    Encode: stride = input / heatmap; centre ⌊kp / stride + 0.5⌋ (quantised; HRNet's ``int()`` truncates
    toward 0, which differs only for keypoints more than half a heatmap pixel left of or above the crop);
    unnormalised Gaussian, peak 1, cut to the square of radius 3σ. Decode: argmax, a quarter pixel toward
    the larger neighbour in x and y when 1 < x < w − 1 and 1 < y < h − 1 (HRNet's condition), score = the
    maximum, then × stride.
    """

    name = "msra"

    def _encode(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centre = np.floor(mu + 0.5)
        return self._window_target(centre, centre)

    def _decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = maps[:, 0]
        m, h, w = maps.shape
        x, y, score = _argmax(maps)
        refine = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
        i, xc, yc = np.arange(m), np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
        step_x = 0.25 * np.sign(maps[i, yc, xc + 1] - maps[i, yc, xc - 1])
        step_y = 0.25 * np.sign(maps[i, yc + 1, xc] - maps[i, yc - 1, xc])
        keypoints = np.stack([x + step_x * refine, y + step_y * refine], axis=1)
        return keypoints, score


class DarkHeatmap(HeatmapCodec):
    """DARK: unbiased target and Taylor-expansion decoder (DarkPose; mmpose ``MSRAHeatmap(unbiased=True)``).

    Encode: Gaussian at the exact sub-pixel point kp / stride over the whole grid. Decode: argmax of the
    heatmap; blur (zero padding, kernel ``blur_kernel_size``) rescaled to the heatmap's maximum; log of
    max(·, 1e-10); one Newton step −H⁻¹∇ with central differences (second derivatives over ±2 px × 0.25,
    DarkPose ``taylor``), applied where 1 < x < w − 2, 1 < y < h − 2 and det H ≠ 0; score = the
    heatmap's maximum; × stride.
    """

    name = "dark"

    def _encode(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.heatmap_size
        radius = 3.0 * self.sigma
        xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
        gx, gy = _gaussian_1d(xs, mu[:, 0], self.sigma), _gaussian_1d(ys, mu[:, 1], self.sigma)
        inside = np.all((mu + radius >= 0) & (mu - radius <= np.array([w - 1, h - 1])), axis=1)
        return gy[:, :, None] * gx[:, None, :], inside

    def _decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = maps[:, 0]
        m, h, w = maps.shape
        x, y, score = _argmax(maps)
        blurred, factor = _blur_to_max(maps, self.blur_kernel_size, score)
        i, xc, yc = np.arange(m), np.clip(x, 2, w - 3), np.clip(y, 2, h - 3)

        def at(dx: int, dy: int) -> np.ndarray:  # log of the rescaled blur, clamped at 1e-10
            return np.log(np.maximum(blurred[i, yc + dy, xc + dx] * factor, 1e-10))

        dx = 0.5 * (at(1, 0) - at(-1, 0))
        dy = 0.5 * (at(0, 1) - at(0, -1))
        dxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
        dyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        refine = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (det != 0) & (score > 0)
        det = np.where(refine, det, 1.0)
        # −H⁻¹∇ with H⁻¹ = [[dyy, −dxy], [−dxy, dxx]] / det
        step_x = -(dyy * dx - dxy * dy) / det
        step_y = -(dxx * dy - dxy * dx) / det
        keypoints = np.stack([x + step_x * refine, y + step_y * refine], axis=1)
        return keypoints, score


def _blur_to_max(
    maps: np.ndarray, kernel_size: int, original_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Blurred maps [M, h, w] and the factors [M] that rescale each to its original maximum (DarkPose /
    mmpose ``gaussian_blur``). The factor is applied only where the Newton step reads the map."""
    blurred = gaussian_blur(maps, kernel_size)
    blurred_max = blurred.reshape(len(maps), -1).max(axis=1).astype(np.float64)
    positive = blurred_max > 0
    factor = np.where(positive, original_max / np.where(positive, blurred_max, 1.0), 1.0)
    return blurred, factor


class UDPHeatmap(HeatmapCodec):
    """UDP: unit-length target and decoder (mmpose ``UDPHeatmap``; HuangJunJie2017/UDP-Pose).

    input pixel = heatmap pixel · (input − 1) / (heatmap − 1) along each axis — the same map in encode
    and decode (mmpose decodes with ``input / (heatmap − 1)``, off by up to one input pixel).

    Gaussian (``combined=False``): Gaussian at the sub-pixel point, cut to the square of radius 3σ
    around the rounded point. Decode: argmax; blur (zero padding) rescaled to the heatmap's maximum;
    clip to [1e-3, 50]; log; edge-padded central differences; Newton step −(H + εI)⁻¹∇ (ε = float32
    eps), always applied (mmpose ``refine_keypoints_dark_udp``); score = the heatmap's maximum.

    Combined (``combined=True``, UDP-Pose's ``CombinedTarget``): per keypoint 3 channels — a binary disk
    of radius R = 0.0546875 · max(w, h) around the point, and its x / y offsets (point − pixel) / R on
    the disk (0 elsewhere, as UDP-Pose; mmpose 1.x fills the whole grid, which its loss masks by the
    disk anyway). Decode: blur the disk map (kernel 2·``blur_kernel_size`` + 1, mmpose's),
    argmax, add offset · R there; score = the blurred maximum.
    """

    flip_shift = False
    udp_warp = True
    _min_heatmap_side = 2

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float | None = None,
        blur_kernel_size: int | None = None,
        combined: bool = False,
    ) -> None:
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size)
        if min(self.input_size) < 2:
            raise ValueError(f"UDP needs an input of at least 2×2 pixels, got input_size {self.input_size}")
        self.combined = bool(combined)
        self.name = "udp_combined" if self.combined else "udp"
        self.channels_per_keypoint = 3 if self.combined else 1
        self.radius = UDP_RADIUS_FACTOR * max(self.heatmap_size)

    def _input_per_heatmap_pixel(self) -> np.ndarray:
        return (np.array(self.input_size, dtype=np.float64) - 1) / (np.array(self.heatmap_size) - 1)

    def _encode(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.combined:
            return self._window_target(mu, np.floor(mu + 0.5))
        w, h = self.heatmap_size
        offset_x = (mu[:, 0, None, None] - np.arange(w, dtype=np.float64)[None, None, :]) / self.radius
        offset_y = (mu[:, 1, None, None] - np.arange(h, dtype=np.float64)[None, :, None]) / self.radius
        disk = (offset_x**2 + offset_y**2 <= 1.0).astype(np.float64)
        heatmaps = np.stack([disk, offset_x * disk, offset_y * disk], axis=1)
        return heatmaps, disk.reshape(len(mu), -1).any(axis=1)

    def _decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(maps.shape[0])
        if self.combined:
            x, y, score = _argmax(gaussian_blur(maps[:, 0], 2 * self.blur_kernel_size + 1))
            offset = np.stack([maps[i, 1, y, x], maps[i, 2, y, x]], axis=1).astype(np.float64)
            return np.stack([x, y], axis=1) + offset * self.radius, score
        maps = maps[:, 0]
        x, y, score = _argmax(maps)
        blurred, factor = _blur_to_max(maps, self.blur_kernel_size, score)
        h, w = maps.shape[1:]

        def at(dx: int, dy: int) -> np.ndarray:  # edge padding by 1 px = clamping the neighbour's index
            values = blurred[i, np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)] * factor
            return np.log(np.clip(values, 1e-3, 50.0))

        dx = 0.5 * (at(1, 0) - at(-1, 0))
        dy = 0.5 * (at(0, 1) - at(0, -1))
        dxx = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
        dyy = at(0, 1) - 2 * at(0, 0) + at(0, -1)
        dxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * at(0, 0) - at(-1, 0) - at(0, -1) + at(-1, -1))
        eps = float(np.finfo(np.float32).eps)
        hxx, hyy = dxx + eps, dyy + eps
        det = hxx * hyy - dxy**2
        solvable = det != 0  # where H + εI is singular (mmpose's inv would raise) the argmax stays
        det = np.where(solvable, det, 1.0)
        step_x = -(hyy * dx - dxy * dy) / det
        step_y = -(hxx * dy - dxy * dx) / det
        return np.stack([x + step_x * solvable, y + step_y * solvable], axis=1), score


CODECS: dict[str, tuple[type[HeatmapCodec], dict[str, Any]]] = {
    "msra": (MSRAHeatmap, {}),
    "dark": (DarkHeatmap, {}),
    "udp": (UDPHeatmap, {}),
    "udp_combined": (UDPHeatmap, {"combined": True}),
}
_SPEC_KEYS = ("name", "input_size", "heatmap_size", "sigma", "blur_kernel_size")


def build_codec(
    spec: str | Mapping[str, Any],
    input_size: Sequence[int] | None = None,
    heatmap_size: Sequence[int] | None = None,
    sigma: float | None = None,
) -> HeatmapCodec:
    """A codec from its name (``"msra"``, ``"dark"``, ``"udp"``, ``"udp_combined"``) or its
    :meth:`HeatmapCodec.to_dict` record.

    Args:
        spec: name, or a dict with ``name`` and optionally ``input_size``, ``heatmap_size``, ``sigma``,
            ``blur_kernel_size``.
        input_size / heatmap_size: (w, h); required unless the dict holds them (an argument that
            disagrees with the dict is an error).
        sigma: heatmap pixels; default :func:`default_sigma` (2 at heatmap width 48).
    """
    fields: dict[str, Any]
    if isinstance(spec, str):
        fields = {"name": spec}
    elif isinstance(spec, Mapping):
        fields = dict(spec)
        unknown = sorted(set(fields) - set(_SPEC_KEYS))
        if unknown or "name" not in fields:
            raise ValueError(
                f"codec spec needs 'name' and may hold {list(_SPEC_KEYS[1:])}; got keys {sorted(fields)}"
            )
    else:
        raise ValueError(f"codec spec must be a name or a dict, got {type(spec).__name__}")
    name = fields.pop("name")
    if name not in CODECS:
        raise ValueError(f"unknown heatmap codec {name!r}; known codecs: {sorted(CODECS)}")
    for key, value in (("input_size", input_size), ("heatmap_size", heatmap_size), ("sigma", sigma)):
        if value is None:
            continue
        if key in fields and fields[key] is not None and not np.allclose(fields[key], value):
            raise ValueError(f"codec spec has {key}={fields[key]!r} but the argument says {value!r}")
        fields[key] = value
    missing = [key for key in ("input_size", "heatmap_size") if fields.get(key) is None]
    if missing:
        raise ValueError(f"codec {name!r} needs {missing} (width, height); pass them or put them in the spec")
    cls, extra = CODECS[name]
    return cls(**fields, **extra)


def flip_back(heatmaps_flipped, flip_permutation: Sequence[int], shift: bool, combined: bool = False):
    """Heatmaps of a horizontally flipped crop, brought back to the unflipped crop.

    Reverse the width, put the channels back in left/right order (``flip_permutation``, per keypoint
    group of 3 when ``combined``; the x-offset channel is negated), and when ``shift`` move everything
    one pixel right (``hm[..., 1:] = hm[..., :-1]``; column 0 keeps its value): HRNet ``flip_back`` +
    ``SHIFT_HEATMAP``, mmpose ``flip_heatmaps`` (``'udp_combined'``).

    Args:
        heatmaps_flipped: [N, K·c, h, w] numpy array or torch tensor (not modified).
        flip_permutation: [K] (``KeypointSet.flip_permutation()``).
        shift: True for the standard warp (MSRA / DARK), False for UDP.
        combined: 3 channels per keypoint (class, x offset, y offset).
    Returns:
        the same type and shape as ``heatmaps_flipped``.
    """
    is_torch = isinstance(heatmaps_flipped, torch.Tensor)
    maps = heatmaps_flipped if is_torch else np.asarray(heatmaps_flipped)
    c = 3 if combined else 1
    if maps.ndim != 4 or maps.shape[1] % c:
        raise ValueError(
            f"flip_back: heatmaps must have shape [N, K·{c}, h, w], got shape {tuple(maps.shape)}"
        )
    n, channels, h, w = maps.shape
    k = channels // c
    perm = list(flip_permutation)
    if sorted(perm) != list(range(k)):
        raise ValueError(
            f"flip_back: flip_permutation must be a permutation of 0..{k - 1} ({k} keypoints in "
            f"{channels} channels), got {perm!r}"
        )
    maps = maps.flip(-1) if is_torch else maps[..., ::-1]
    maps = maps.reshape(n, k, c, h, w)[:, perm]  # fancy indexing copies: the input stays untouched
    if combined:
        maps[:, :, 1] = -maps[:, :, 1]
    maps = maps.reshape(n, channels, h, w)
    if shift:
        maps[..., 1:] = maps[..., :-1].clone() if is_torch else maps[..., :-1].copy()
    return maps


def average_flip(heatmaps, heatmaps_flipped, codec: HeatmapCodec, flip_permutation: Sequence[int]):
    """Flip-test heatmaps: 0.5 · (heatmaps + flip_back(heatmaps_flipped)), shifting as ``codec.flip_shift``.

    Args:
        heatmaps / heatmaps_flipped: [N, K·c, h, w] (numpy or torch, both the same).
    """
    if tuple(heatmaps.shape) != tuple(heatmaps_flipped.shape):
        raise ValueError(
            f"average_flip: heatmaps {tuple(heatmaps.shape)} and flipped heatmaps "
            f"{tuple(heatmaps_flipped.shape)} must have the same shape"
        )
    back = flip_back(heatmaps_flipped, flip_permutation, codec.flip_shift, codec.channels_per_keypoint == 3)
    return 0.5 * (heatmaps + back)
