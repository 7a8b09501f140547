"""Datasets: COCO-format keypoint annotations (checked up front), their keypoint records, segmentation
layouts (VOC aug, Cityscapes, an own folder; checked up front), image reading, the embedded generators."""

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
from .segmentation import (
    CITYSCAPES_ID_TO_TRAIN_ID,
    SegDatasetError,
    SegmentationDataset,
    SegSample,
    load_cityscapes,
    load_folder,
    load_voc,
)

__all__ = [
    "CITYSCAPES_ID_TO_TRAIN_ID",
    "DatasetError",
    "ImageNotFoundError",
    "ImageReadError",
    "KeypointDataset",
    "KeypointMetaError",
    "PersonInstance",
    "SegDatasetError",
    "SegSample",
    "SegmentationDataset",
    "find_coco_split",
    "keypoint_set_from_category",
    "load_cityscapes",
    "load_folder",
    "load_keypoint_annotations",
    "load_keypoint_meta",
    "load_voc",
    "read_image",
    "sanitize_box",
]
