"""PoseEstimator: boxes in, keypoints in image pixels out, as the model's metadata says.

The model here is a real module whose answer is known in advance: every heatmap peaks (the codec's own
noise-free target) at the brightest pixel of the crop's first input channel. A marker drawn in the image
therefore tells where the predicted keypoints must land, through the crop, the decode and the inverse
crop — the predictor's whole path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from psa_zoo.labels import COCO_KEYPOINT_SET
from psa_zoo.metadata import ModelMetadata
from psa_zoo.models import PsaModel
from psa_zoo.pose import build_codec
from psa_zoo.pose.predictor import PoseEstimator


class MarkerModel(PsaModel):
    """Heatmaps peaking where input channel 0 is largest (heatmap stride 4)."""

    task = "pose"

    def __init__(self, codec: str, channel_order: str = "RGB", input_hw=(128, 96)) -> None:
        super().__init__()
        self.num_classes, self.in_chans = COCO_KEYPOINT_SET.num_keypoints, 3
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter: the predictor reads device/dtype
        h, w = input_hw
        self.codec = build_codec(codec, (w, h), (math.ceil(w / 4), math.ceil(h / 4)))
        self.set_metadata(ModelMetadata(task="pose", input_size=(3, h, w), channel_order=channel_order,
                                        output_stride=4, keypoints=COCO_KEYPOINT_SET,
                                        extra={"codec": self.codec.to_dict()}))  # fmt: skip

    @staticmethod
    def output_size(input_size):
        return math.ceil(input_size[0] / 4), math.ceil(input_size[1] / 4)

    def forward(self, x):
        k = self.num_classes
        maps = []
        for crop in x[:, 0]:
            y, x_ = divmod(int(crop.argmax()), crop.shape[1])
            target, _ = self.codec.encode(np.tile([[x_, y]], (k, 1)).astype(np.float64), np.ones(k))
            maps.append(torch.from_numpy(target))
        return torch.stack(maps) + 0 * self.anchor


def _blob(xy, size=(200, 150), sigma=4.0):
    """A smooth bright spot centred on ``xy``: the crop's brightest pixel is the one nearest to it."""
    ys, xs = np.mgrid[: size[1], : size[0]]
    return np.exp(-((xs - xy[0]) ** 2 + (ys - xy[1]) ** 2) / (2 * sigma**2))


def _image_with_marker(xy, colour=(255, 0, 0), size=(200, 150)):
    image = np.full((size[1], size[0], 3), 20.0)
    image += _blob(xy, size)[..., None] * (np.asarray(colour, float) - 20.0).clip(0)
    return image.round().astype(np.uint8)


@pytest.mark.parametrize(("codec", "flip_test"), [("dark", False), ("udp", True), ("udp", False)])
def test_keypoints_land_on_the_marker_in_image_pixels(codec, flip_test):
    marker = (83, 61)
    box = [40.0, 20.0, 90.0, 120.0]  # crop 96×128 of a 112.5×150 padded box: 1.17 image px per crop px
    estimator = PoseEstimator(MarkerModel(codec), flip_test=flip_test)
    prediction = estimator.predict(_image_with_marker(marker), boxes=[box])
    error = np.abs(prediction.keypoints[0] - marker).max()
    # the crop's brightest pixel is the crop pixel nearest the marker (≤ 0.5 crop px per axis away), and
    # the codec decodes its own noise-free target to ≤ 0.05 crop px (σ = 1 at 24×32 heatmaps)
    assert error <= (0.5 + 0.05) * 150 / 128, error
    assert prediction.keypoint_set.keypoint_names == COCO_KEYPOINT_SET.keypoint_names


def test_no_boxes_means_the_whole_image_and_an_empty_list_means_nobody():
    estimator = PoseEstimator(MarkerModel("dark"), flip_test=False)
    image = _image_with_marker((120, 70))
    whole = estimator.predict(image)
    assert len(whole) == 1 and whole.boxes.tolist() == [[0, 0, 200, 150]]
    assert np.abs(whole.keypoints[0] - (120, 70)).max() <= (0.5 + 0.05) * 200 / 96
    nobody = estimator.predict(image, boxes=[])
    assert len(nobody) == 0 and nobody.keypoints.shape == (0, 17, 2) and nobody.to_dict()["people"] == []


def test_channel_order_comes_from_the_metadata():
    image = _image_with_marker((50, 40), colour=(255, 0, 0))
    image[..., 2] = np.maximum(image[..., 2], (235 * _blob((150, 100))).round().astype(np.uint8))  # blue
    rgb = PoseEstimator(MarkerModel("dark", "RGB"), flip_test=False).predict(image)
    bgr = PoseEstimator(MarkerModel("dark", "BGR"), flip_test=False).predict(image)
    assert np.abs(rgb.keypoints[0] - (50, 40)).max() < 2.3  # the red marker is channel 0 in RGB
    assert np.abs(bgr.keypoints[0] - (150, 100)).max() < 2.3  # the blue one is channel 0 in BGR


def test_many_boxes_are_batched_and_draw_writes_a_png(tmp_path):
    estimator = PoseEstimator(MarkerModel("dark"), flip_test=False, batch_size=2)
    boxes = [[10, 10, 60, 80], [100, 20, 50, 100], [20, 60, 80, 80]]
    prediction = estimator.predict(_image_with_marker((60, 70)), boxes=boxes, box_scores=[0.9, 0.5, 0.7])
    assert prediction.keypoints.shape == (3, 17, 2) and prediction.box_scores.tolist() == [0.9, 0.5, 0.7]
    out = tmp_path / "overlay.png"
    image = _image_with_marker((60, 70))
    estimator.draw(image, prediction, out=out, score_threshold=0.0)
    drawn = np.asarray(Image.open(out))
    assert drawn.shape == (150, 200, 3) and (drawn != image).any(axis=2).sum() > 100  # boxes, limbs, joints


@pytest.mark.parametrize(
    ("boxes", "message"),
    [([[0, 0, 10]], r"boxes must be \[P, 4\]"), ([[0, 0, -5, 10]], "positive, finite width and height")],
)
def test_bad_boxes_are_clear_errors(boxes, message):
    with pytest.raises(ValueError, match=message):
        PoseEstimator(MarkerModel("dark")).predict(_image_with_marker((5, 5)), boxes=boxes)


def test_a_segmentation_model_is_refused():
    from tests.models._tiny import tiny_model

    with pytest.raises(ValueError, match="needs a pose model"):
        PoseEstimator(tiny_model("deeplabv3plus_mbv2_psa"))
