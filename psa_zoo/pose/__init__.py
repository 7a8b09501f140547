"""Top-down pose: crop geometry (:mod:`.transforms`), heatmap codecs (:mod:`.codecs`), person-crop datasets
(:mod:`.dataset`), prediction (:mod:`.predictor`) and COCO evaluation of a model (:mod:`.evaluate`)."""

from .codecs import (
    CODECS,
    DarkHeatmap,
    HeatmapCodec,
    MSRAHeatmap,
    UDPHeatmap,
    average_flip,
    build_codec,
    default_blur_kernel_size,
    default_sigma,
    flip_back,
    gaussian_blur,
)
from .dataset import TopDownPoseDataset
from .evaluate import evaluate_pose_model, predict_instances
from .predictor import PoseEstimator, PosePrediction
from .transforms import (
    AugmentParams,
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

__all__ = [
    "CODECS",
    "AugmentParams",
    "DarkHeatmap",
    "HeatmapCodec",
    "MSRAHeatmap",
    "PoseEstimator",
    "PosePrediction",
    "TopDownAugmentation",
    "TopDownPoseDataset",
    "UDPHeatmap",
    "affine_points",
    "average_flip",
    "box_to_center_scale",
    "build_codec",
    "crop_matrix",
    "default_blur_kernel_size",
    "default_sigma",
    "evaluate_pose_model",
    "flip_back",
    "flip_image_and_keypoints",
    "gaussian_blur",
    "get_affine_transform",
    "get_udp_warp_matrix",
    "hflip_keypoints",
    "predict_instances",
    "warp_image",
]
