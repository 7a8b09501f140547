"""From person crops to keypoints in image coordinates: normalise, run the model (with the flip test),
decode with the codec, map back through the inverse crop.

Used by the training engine's evaluation and by :class:`psa_zoo.pose.PoseEstimator`, so both predict the
same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..metadata import ModelMetadata
from .codecs import HeatmapCodec, average_flip, build_codec
from .transforms import affine_points, crop_matrix

__all__ = ["codec_for", "crops_to_image", "predict_heatmaps"]

DEFAULT_CODEC = "msra"


def codec_for(metadata: ModelMetadata, heatmap_size: tuple[int, int]) -> HeatmapCodec:
    """The codec a pose model was trained with (``metadata.extra["codec"]``; MSRA when not recorded)."""
    spec = metadata.extra.get("codec", DEFAULT_CODEC)
    _, height, width = metadata.input_size
    return build_codec(spec, (width, height), heatmap_size)


@torch.no_grad()
def predict_heatmaps(
    model: nn.Module, inputs: torch.Tensor, codec: HeatmapCodec, flip_permutation: list[int] | None
) -> np.ndarray:
    """Heatmaps [N, K, h, w] (float32 numpy) of normalised crops ``inputs`` [N, C, H, W]; with a
    ``flip_permutation`` the flipped crops' heatmaps are flipped back and averaged (the flip test).
    The arrays are C-contiguous whatever the memory format the model ran in (the decoders index them)."""
    heatmaps = _as_array(model(inputs))
    if flip_permutation is not None:
        flipped = _as_array(model(inputs.flip(-1)))
        return average_flip(heatmaps, flipped, codec, flip_permutation)
    return heatmaps


def _as_array(heatmaps: torch.Tensor) -> np.ndarray:
    # a channels_last model returns channels_last heatmaps: one small copy to the [N, K, h, w] layout
    return heatmaps.float().cpu().contiguous().numpy()


def crops_to_image(
    keypoints: np.ndarray,
    centers: np.ndarray,
    scales: np.ndarray,
    rotations: np.ndarray,
    input_size: tuple[int, int],
    udp: bool,
) -> np.ndarray:
    """Keypoints [N, K, 2] in crop pixels → image pixels, through each crop's inverse matrix."""
    out = np.empty_like(keypoints, dtype=np.float64)
    for i in range(len(keypoints)):
        inverse = crop_matrix(centers[i], scales[i], float(rotations[i]), input_size, udp=udp, inverse=True)
        out[i] = affine_points(keypoints[i].astype(np.float64), inverse)
    return out
