"""The label records of the datasets the paper's models are trained on (orders as in the datasets' tools).

* ``COCO_KEYPOINT_SET``: COCO person keypoints — names and 1-based skeleton of the COCO annotation files
  (converted to 0-based), OKS sigmas of pycocotools' ``COCOeval``, flip pairs, joint weights and half-body
  groups of the HRNet code (leoxiaobin/deep-high-resolution-net.pytorch ``lib/dataset/coco.py``).
* ``VOC_CLASS_SET``: Pascal VOC 2012, 21 classes with the VOC devkit colour map, 255 = void.
* ``CITYSCAPES_CLASS_SET``: Cityscapes' 19 train ids with the colours of cityscapesScripts ``labels.py``.
"""

from .metadata import ClassSet, KeypointSet

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

_COCO_SKELETON_1_BASED = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip

_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip

COCO_KEYPOINT_SET = KeypointSet(
    name="coco",
    keypoint_names=COCO_KEYPOINTS,
    skeleton=tuple((a - 1, b - 1) for a, b in _COCO_SKELETON_1_BASED),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=_COCO_SIGMAS,
    joint_weights=(1, 1, 1, 1, 1, 1, 1, 1.2, 1.2, 1.5, 1.5, 1, 1, 1.2, 1.2, 1.5, 1.5),
    upper_body=tuple(range(11)),
    lower_body=tuple(range(11, 17)),
)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

VOC_CLASS_SET = ClassSet(name="voc", class_names=VOC_CLASSES, ignore_index=255)  # VOC colour map by default

# Cityscapes train ids 0..18 (cityscapesScripts labels.py).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

_CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip

CITYSCAPES_CLASS_SET = ClassSet(
    name="cityscapes",
    class_names=CITYSCAPES_CLASSES,
    palette=_CITYSCAPES_PALETTE,
    ignore_index=255,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
