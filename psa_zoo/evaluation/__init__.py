"""Evaluation metrics: COCO keypoint AP/AR (pycocotools) with a per-keypoint report; the dataset-level
confusion matrix of segmentation (IoU, mIoU, pixel and mean accuracy)."""

from __future__ import annotations

from .coco_keypoints import (
    STAT_NAMES,
    KeypointEvaluation,
    evaluate_keypoints,
    evaluate_results_file,
    format_per_keypoint,
    format_stats,
    object_keypoint_similarity,
    oks_nms,
    postprocess_predictions,
    rescore,
)
from .segmentation import ConfusionMatrix, SegmentationMetrics, evaluate_prediction_folders

__all__ = [
    "STAT_NAMES",
    "ConfusionMatrix",
    "KeypointEvaluation",
    "SegmentationMetrics",
    "evaluate_keypoints",
    "evaluate_prediction_folders",
    "evaluate_results_file",
    "format_per_keypoint",
    "format_stats",
    "object_keypoint_similarity",
    "oks_nms",
    "postprocess_predictions",
    "rescore",
]
