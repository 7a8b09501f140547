"""Metadata records: the dataset facts against independent sources, and clear errors for bad records."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.cocoeval import Params

from psa_zoo.labels import CITYSCAPES_CLASS_SET, COCO_KEYPOINT_SET, VOC_CLASS_SET
from psa_zoo.metadata import ClassSet, KeypointSet, ModelMetadata


def test_coco_sigmas_are_pycocotools_own():
    expected = Params(iouType="keypoints").kpt_oks_sigmas
    np.testing.assert_allclose(np.array(COCO_KEYPOINT_SET.sigmas), expected, rtol=0, atol=1e-12)


def test_coco_skeleton_is_the_annotation_files_one_based_skeleton_minus_one():
    # person_keypoints_val2017.json, categories[0]["skeleton"]
    one_based = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                 [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip
    assert [list(p) for p in COCO_KEYPOINT_SET.skeleton] == [[a - 1, b - 1] for a, b in one_based]


def test_coco_flip_pairs_pair_every_left_with_its_right():
    names = COCO_KEYPOINT_SET.keypoint_names
    for left, right in COCO_KEYPOINT_SET.flip_pairs:
        assert names[left].replace("left_", "right_") == names[right]
    perm = COCO_KEYPOINT_SET.flip_permutation()
    assert perm[0] == 0 and sorted(perm) == list(range(17)) and [perm[p] for p in perm] == list(range(17))


def test_voc_palette_is_the_devkit_colour_map():
    # VOCdevkit labelcolormap: background black, aeroplane (128,0,0), bicycle (0,128,0), ..., person index 15
    assert VOC_CLASS_SET.palette[:5] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128))
    assert VOC_CLASS_SET.palette[15] == (192, 128, 128)
    assert CITYSCAPES_CLASS_SET.palette[0] == (128, 64, 128)  # cityscapesScripts labels.py: road


def test_records_round_trip_through_json_form():
    meta = ModelMetadata(task="pose", input_size=(3, 256, 192), output_stride=4, keypoints=COCO_KEYPOINT_SET)
    assert ModelMetadata.from_dict(meta.to_dict()) == meta
    seg = ModelMetadata(task="segmentation", input_size=(3, 513, 513), classes=CITYSCAPES_CLASS_SET)
    assert ModelMetadata.from_dict(seg.to_dict()) == seg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": (0.1, 0.2)}, r"sigmas has 2 entries, expected one per keypoint \(3\)"),
        ({"skeleton": ((0, 3),)}, r"skeleton refers to index \[3\] but there are 3 entries"),
        ({"flip_pairs": ((0, 1), (1, 2))}, "one flip pair at most"),
        ({"sigmas": (0.1, 0.0, 0.1)}, "sigmas must be positive"),
        ({"keypoint_names": ("a", "a", "b")}, "must be unique"),
    ],
)
def test_bad_keypoint_sets_are_clear_errors(kwargs, message):
    fields = {"name": "mine", "keypoint_names": ("a", "b", "c"), **kwargs}
    with pytest.raises(ValueError, match=message):
        KeypointSet(**fields)


def test_bad_class_sets_and_metadata_are_clear_errors():
    with pytest.raises(ValueError, match="ignore_index 1 is a class index"):
        ClassSet("x", ("a", "b"), ignore_index=1)
    with pytest.raises(ValueError, match="palette must hold 2 RGB colours"):
        ClassSet("x", ("a", "b"), palette=((0, 0, 0),))
    with pytest.raises(ValueError, match="channel_order must be one of"):
        ModelMetadata(task="pose", input_size=(3, 8, 8), channel_order="GBR", keypoints=COCO_KEYPOINT_SET)
    with pytest.raises(ValueError, match="mean and std need 1 entries"):
        ModelMetadata(task="pose", input_size=(1, 8, 8), keypoints=COCO_KEYPOINT_SET)
    with pytest.raises(ValueError, match="unknown fields"):
        ModelMetadata.from_dict({"task": "pose", "input_size": [3, 8, 8], "colour": "rgb"})
