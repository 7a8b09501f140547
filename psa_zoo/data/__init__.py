"""Datasets: COCO-format keypoint annotations (checked up front), their keypoint records, image reading."""

from .coco_keypoints import (
    DatasetError,
    KeypointDataset,
    PersonInstance,
    find_coco_split,
    load_keypoint_annotations,
    sanitize_box,
)
from .images import ImageNotFoundError, ImageReadError, read_image
from .keypoint_meta import KeypointMetaError, keypoint_set_from_category, load_keypoint_meta

__all__ = [
    "DatasetError",
    "ImageNotFoundError",
    "ImageReadError",
    "KeypointDataset",
    "KeypointMetaError",
    "PersonInstance",
    "find_coco_split",
    "keypoint_set_from_category",
    "load_keypoint_annotations",
    "load_keypoint_meta",
    "read_image",
    "sanitize_box",
]
