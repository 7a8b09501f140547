"""The synthetic segmentation dataset: the own-data layout, masks that say what is drawn (checked against the
pixels and with cv2's shape measures), determinism, and a folder that is never half-written nor overwritten
unasked — nor replaced by the pose generator, or the other way round."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from psa_zoo import __version__
from psa_zoo.data.synthetic import (
    JOINT_COLORS,
    DatasetExistsError,
    make_pose_dataset,
    make_seg_dataset,
    render_scene,
    render_seg_scene,
)

NAMES = ["background", "person", "box", "ball"]
VOC_COLOURS = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]  # Pascal VOC's colour map, entries 0..3
VOC_VOID = (224, 224, 192)  # Pascal VOC's colour of label 255
IGNORE = 255
BACKGROUND, PERSON, BOX, BALL = range(4)
WIDTH, HEIGHT = 192, 160
JOINT_TOLERANCE = 12  # L∞ over RGB: the image noise is σ ≤ 3
BOX_HUES, BALL_HUES = (200, 260), (35, 65)  # degrees: blue to violet, yellow to orange (as documented)
HUE_SLACK = 10  # degrees: noise of σ 3 on the darkest, least saturated shape colour moves its hue up to ~8°


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic_seg") / "seg"
    make_seg_dataset(out, num_train=40, num_val=10, seed=5)
    return out


def _pairs(root: Path):
    """(split, stem, image [H, W, 3], mask [H, W]) of each sample; masks read as stored (not as RGB)."""
    for split in ("train", "val"):
        for path in sorted((root / "images" / split).glob("*.png")):
            image = np.asarray(Image.open(path).convert("RGB"))
            mask = np.asarray(Image.open(root / "masks" / split / path.name))
            yield split, path.stem, image, mask


def test_own_data_layout_and_classes_json(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == ["README.md", "classes.json", "images", "masks"]
    classes = json.loads((dataset / "classes.json").read_text())
    assert classes == {"class_names": NAMES, "palette": VOC_COLOURS, "ignore_index": IGNORE}
    for split, count in (("train", 40), ("val", 10)):
        images = sorted(p.name for p in (dataset / "images" / split).iterdir())
        masks = sorted(p.name for p in (dataset / "masks" / split).iterdir())
        assert len(images) == count and images == masks and all(n.endswith(".png") for n in images)
        for name in images:
            with Image.open(dataset / "images" / split / name) as image:
                assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)
            with Image.open(dataset / "masks" / split / name) as mask:
                assert mask.mode == "P" and mask.size == (WIDTH, HEIGHT)
                palette = np.array(mask.getpalette()).reshape(-1, 3)
                assert palette[:4].tolist() == VOC_COLOURS and tuple(palette[IGNORE]) == VOC_VOID
                values = set(np.unique(np.asarray(mask)).tolist())
                assert values <= {0, 1, 2, 3, IGNORE}


def test_every_class_occurs_and_ignore_is_a_thin_band(dataset):
    masks = np.stack([mask for *_, mask in _pairs(dataset)])
    assert masks.shape == (50, HEIGHT, WIDTH)
    share = {c: float((masks == c).mean()) for c in (BACKGROUND, PERSON, BOX, BALL, IGNORE)}
    assert share[BACKGROUND] > 0.4 and min(share[PERSON], share[BOX], share[BALL]) > 0.03  # none is tiny
    for c in (PERSON, BOX, BALL):
        assert ((masks == c).sum(axis=(1, 2)) > 0).sum() >= 25, c  # in most images, not in a few
    assert 0.002 < share[IGNORE] < 0.05
    # A band, not regions: an ignored pixel has a labelled one within 1 px, and touches two classes within 2.
    ignore = (masks == IGNORE).astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    core = np.stack([cv2.erode(m, cross, borderType=cv2.BORDER_REPLICATE) for m in ignore]) > 0
    assert core.sum() < 0.02 * ignore.sum()
    window = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
    near = np.zeros(masks.shape, np.int32)
    for c in (BACKGROUND, PERSON, BOX, BALL):
        near += np.stack([cv2.dilate((m == c).astype(np.uint8), window) for m in masks])
    assert (near[ignore > 0] >= 2).mean() > 0.97


def _shows_a_joint(image: np.ndarray) -> np.ndarray:
    """[H, W] bool: the pixel is one of the 17 saturated joint colours, within the noise."""
    dist = np.abs(image[:, :, None, :].astype(int) - JOINT_COLORS.astype(int)).max(axis=-1)
    return dist.min(axis=-1) <= JOINT_TOLERANCE


def _hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees, saturation and value in 0..1 (cv2's float conversion)."""
    hsv = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    return hsv[..., 0], hsv[..., 1], hsv[..., 2]


def _shape_colour(image: np.ndarray, hues: tuple[float, float]) -> np.ndarray:
    """[H, W] bool: a vivid colour of the hue range (saturation 0.55-0.8, value ≥ 0.5), noise allowed."""
    hue, sat, val = _hsv(image)
    lo, hi = hues
    return (hue >= lo - HUE_SLACK) & (hue <= hi + HUE_SLACK) & (sat >= 0.49) & (sat <= 0.86) & (val >= 0.47)


def test_labels_match_the_colours_drawn(dataset):
    """Read off the image: boxes are vivid blue-violet, balls vivid yellow-orange, backgrounds muted
    (saturation ≤ 0.45), joint dots saturated and part of a person."""
    dot_pixels = dot_person = 0
    for _, stem, image, mask in _pairs(dataset):
        dots = _shows_a_joint(image)
        assert set(np.unique(mask[dots]).tolist()) <= {PERSON, IGNORE}, stem
        dot_pixels += dots.sum()
        dot_person += (mask[dots] == PERSON).sum()
        box_colour, ball_colour = _shape_colour(image, BOX_HUES), _shape_colour(image, BALL_HUES)
        for cls, colour in ((BOX, box_colour), (BALL, ball_colour)):
            if (mask == cls).sum() > 200:
                assert colour[mask == cls].mean() > 0.97, (stem, cls)
            assert (colour & (mask == BACKGROUND)).sum() <= 20, (stem, cls)  # noise on dark muted pixels
        assert (box_colour & (mask == BALL)).sum() == 0 and (ball_colour & (mask == BOX)).sum() == 0, stem
        _, sat, _ = _hsv(image)
        assert (sat[mask == BACKGROUND] <= 0.5).mean() > 0.999, stem
    assert dot_pixels > 5000 and dot_person > 0.95 * dot_pixels


def _fill_ratios(mask: np.ndarray, cls: int) -> list[float]:
    """Pixels / cv2.minAreaRect area of the sizeable, convex (not cut by another class) parts of class ``cls``
    off the image border."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask == cls).astype(np.uint8), connectivity=4)
    ratios = []
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        if area < 150 or x == 0 or y == 0 or x + w == mask.shape[1] or y + h == mask.shape[0]:
            continue
        part = (labels == index).astype(np.uint8)
        (contour, *_), _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if area < 0.97 * cv2.contourArea(cv2.convexHull(contour)):
            continue
        ys, xs = np.nonzero(part)
        (_, _), (rw, rh), _ = cv2.minAreaRect(np.stack([xs, ys], axis=1).astype(np.float32))
        ratios.append(area / ((rw + 1) * (rh + 1)))  # +1: the rectangle runs through pixel centres
    return ratios


def test_boxes_are_rectangles_and_balls_are_ellipses(dataset):
    """A rectangle fills its minimum-area bounding rectangle, an ellipse π/4 of it."""
    boxes, balls = [], []
    for *_, mask in _pairs(dataset):
        boxes += _fill_ratios(mask, BOX)
        balls += _fill_ratios(mask, BALL)
    assert len(boxes) >= 15 and len(balls) >= 15
    assert np.median(boxes) > 0.85
    assert 0.7 < np.median(balls) < np.pi / 4 + 0.02


def test_seg_scenes_are_the_pose_scenes_with_classes():
    """The figures, shapes and noise of render_scene; only the shapes' colours change. Person pixels are the
    pose scene's figures, visible joints are person pixels."""
    changed = changed_away = 0
    for index in range(30):
        seg = render_seg_scene(np.random.default_rng(index), (WIDTH, HEIGHT), 3)
        pose = render_scene(np.random.default_rng(index), (WIDTH, HEIGHT), 3)
        for field in ("keypoints", "boxes", "areas", "person_masks", "instance_mask"):
            assert np.array_equal(getattr(seg.scene, field), getattr(pose, field)), field
        assert (seg.scene.visibility == pose.visibility).mean() > 0.99
        mask = seg.class_mask
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
        assert seg.image is seg.scene.image and seg.image.shape == (HEIGHT, WIDTH, 3)
        labelled = mask != IGNORE
        assert np.array_equal((mask == PERSON)[labelled], (pose.instance_mask > 0)[labelled])
        shown = pose.visibility == 2
        cols, rows = np.round(pose.keypoints[shown]).astype(int).T
        assert (mask[rows, cols] == PERSON).all()  # a visible joint's pixel is pure person
        diff = (seg.image != pose.image).any(axis=-1)
        shapes = np.isin(mask, (BOX, BALL))
        assert diff[shapes].all()  # every shape pixel is recoloured ...
        near = cv2.dilate(np.isin(mask, (BOX, BALL, IGNORE)).astype(np.uint8), np.ones((3, 3), np.uint8))
        changed += diff.sum()
        changed_away += (diff & (near == 0)).sum()
    assert changed > 0 and changed_away <= 1e-3 * changed  # ... and little else: their blended edges


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs_global_rng_untouched(tmp_path):
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    a = _tree(make_seg_dataset(tmp_path / "a", num_train=4, num_val=2, seed=7))
    b = _tree(make_seg_dataset(tmp_path / "b", num_train=4, num_val=2, seed=7))
    c = _tree(make_seg_dataset(tmp_path / "c", num_train=4, num_val=2, seed=8))
    assert len(a) == 2 * (4 + 2) + 2 and a == b
    assert set(a) == set(c)
    assert all(a[name] != c[name] for name in a if name.endswith(".png"))
    assert a["images/train/000001.png"] != a["images/val/000001.png"]  # splits draw different streams
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert random.getstate() == python_state


def test_readme_says_what_it_is(dataset):
    text = (dataset / "README.md").read_text()
    assert "synthetic" in text.lower() and "seed 5" in text and __version__ in text
    assert "make_seg_dataset(out, num_train=40, num_val=10, seed=5, image_size=(192, 160))" in text
    assert "may be used freely" in text
    assert all(name in text for name in NAMES) and "255" in text


def test_refuses_to_overwrite_unless_asked_and_only_its_own_kind(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine to fill
    make_seg_dataset(out, num_train=2, num_val=1, seed=0)
    first = (out / "images" / "train" / "000001.png").read_bytes()
    with pytest.raises(FileExistsError, match=r"exists.*overwrite=True \(CLI: --overwrite\).*another --out"):
        make_seg_dataset(out, num_train=2, num_val=1, seed=1)
    assert (out / "images" / "train" / "000001.png").read_bytes() == first

    make_seg_dataset(out, num_train=1, num_val=1, seed=1, overwrite=True)
    assert (out / "images" / "train" / "000001.png").read_bytes() != first
    assert (
        len(list((out / "images" / "train").iterdir())) == 1 and "seed 1" in (out / "README.md").read_text()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind

    # A pose dataset never replaces a segmentation one, nor the other way round.
    pose = make_pose_dataset(tmp_path / "pose", num_train=1, num_val=1, seed=0)
    seg_files, pose_files = _tree(out), _tree(pose)
    with pytest.raises(
        DatasetExistsError, match=r"segmentation dataset.*only replaces a pose.*another --out"
    ):
        make_pose_dataset(out, num_train=1, num_val=1, overwrite=True)
    with pytest.raises(
        DatasetExistsError, match=r"pose dataset.*only replaces a segmentation.*another --out"
    ):
        make_seg_dataset(pose, num_train=1, num_val=1, overwrite=True)
    assert _tree(out) == seg_files and _tree(pose) == pose_files

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    for overwrite in (False, True):
        with pytest.raises(DatasetExistsError, match="choose another --out") as info:
            make_seg_dataset(foreign, num_train=1, num_val=1, overwrite=overwrite)
        assert isinstance(info.value, ValueError)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos", "pose"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": -1}, "num_val"),
        ({"num_train": 2.5}, "num_train"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"image_size": (32, 32)}, "image_size"),
        ({"image_size": (192,)}, "image_size"),
        ({"overwrite": "yes"}, "overwrite"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_seg_dataset(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []
