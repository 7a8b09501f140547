"""Evaluation metrics: COCO keypoint AP/AR (pycocotools) with a per-keypoint report."""

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

__all__ = [
    "STAT_NAMES",
    "KeypointEvaluation",
    "evaluate_keypoints",
    "evaluate_results_file",
    "format_per_keypoint",
    "format_stats",
    "object_keypoint_similarity",
    "oks_nms",
    "postprocess_predictions",
    "rescore",
]
