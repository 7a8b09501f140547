"""The synthetic COCO-keypoints dataset: COCO-valid files, labels that mark what is drawn, determinism, and a
folder that is never half-written nor overwritten unasked."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from psa_zoo.data.synthetic import JOINT_COLORS, DatasetExistsError, make_pose_dataset, render_scene

# From the COCO annotation files / pycocotools (shared reference: pose_and_segmentation_recipes.md).
COCO_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
    [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip
COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
               0.087, 0.087, 0.089, 0.089]  # fmt: skip
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
COLOUR_TOLERANCE = 20  # L∞ over RGB: the image noise is σ ≤ 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "synth"
    make_pose_dataset(out, num_train=100, num_val=20, seed=3)
    return out


def _coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _splits(root: Path):
    for split in ("train2017", "val2017"):
        yield split, _coco(root / "annotations" / f"person_keypoints_{split}.json")


def _pixel(image: np.ndarray, x: float, y: float) -> np.ndarray:
    return image[round(y), round(x)].astype(int)


def _shows(pixel: np.ndarray, joint: int) -> bool:
    """The pixel is the joint's colour: nearest of the 17 and within the noise."""
    dist = np.abs(JOINT_COLORS.astype(int) - pixel).max(axis=1)
    return int(dist.argmin()) == joint and dist[joint] <= COLOUR_TOLERANCE


def test_files_are_valid_coco_keypoints(dataset):
    assert sorted(p.name for p in (dataset / "annotations").iterdir()) == [
        "person_keypoints_train2017.json",
        "person_keypoints_val2017.json",
    ]
    for (split, coco), count in zip(_splits(dataset), (100, 20), strict=True):
        assert len(coco.getImgIds()) == count
        assert len(list((dataset / split).glob("*.png"))) == count
        (category,) = coco.loadCats(coco.getCatIds())
        assert (category["id"], category["name"]) == (1, "person")
        assert category["keypoints"] == COCO_NAMES and category["skeleton"] == COCO_SKELETON
        raw = json.loads((dataset / "annotations" / f"person_keypoints_{split}.json").read_text())
        assert raw["licenses"] and raw["info"]
        for image_id in coco.getImgIds():
            info = coco.loadImgs(image_id)[0]
            width, height = info["width"], info["height"]
            with Image.open(dataset / split / info["file_name"]) as png:
                assert png.size == (width, height) and png.mode == "RGB"
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert anns, "every image holds at least one person"
            for ann in anns:
                assert ann["category_id"] == 1 and ann["iscrowd"] == 0 and ann["area"] > 0
                x, y, w, h = ann["bbox"]
                assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
                kp = np.array(ann["keypoints"], float).reshape(-1, 3)
                assert kp.shape == (17, 3) and set(kp[:, 2]) <= {0, 1, 2}
                labelled = kp[:, 2] > 0
                assert ann["num_keypoints"] == labelled.sum() > 0
                assert (kp[~labelled, :2] == 0).all()
                px, py = kp[labelled, 0], kp[labelled, 1]
                assert ((px >= 0) & (px <= width - 1) & (py >= 0) & (py <= height - 1)).all()
                assert ((px >= x - 1) & (px <= x + w + 1) & (py >= y - 1) & (py <= y + h + 1)).all()


def test_visible_joints_show_their_colour_and_covered_ones_do_not(dataset):
    assert all(np.abs(JOINT_COLORS[a].astype(int) - JOINT_COLORS[b]).max() >= 128 for a, b in FLIP_PAIRS)
    visible = hidden = hidden_showing = 0
    for split, coco in _splits(dataset):
        for info in coco.loadImgs(coco.getImgIds()):
            image = np.asarray(Image.open(dataset / split / info["file_name"]).convert("RGB"))
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=info["id"])):
                kp = np.array(ann["keypoints"], float).reshape(-1, 3)
                for joint, (x, y, v) in enumerate(kp):
                    if v == 2:
                        visible += 1
                        assert _shows(_pixel(image, x, y), joint), (info["file_name"], joint, x, y)
                    elif v == 1:
                        hidden += 1
                        hidden_showing += _shows(_pixel(image, x, y), joint)
    assert visible > 1000 and hidden > 0
    assert hidden_showing <= 0.1 * hidden  # covered joints show what covers them


def test_occluded_out_of_frame_crowded_and_single_large_people_occur(dataset):
    coco = _coco(dataset / "annotations" / "person_keypoints_train2017.json")
    flags = np.concatenate(
        [np.array(a["keypoints"]).reshape(-1, 3)[:, 2] for a in coco.loadAnns(coco.getAnnIds())]
    )
    assert (flags == 1).sum() > 0 and (flags == 0).sum() > 0 and (flags == 2).mean() > 0.7
    anns = {i: coco.loadAnns(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()}
    people = [len(a) for a in anns.values()]
    assert min(people) == 1 and max(people) == 3 and sum(p >= 2 for p in people) >= 20
    height = {
        a["id"]: a["bbox"][3] / coco.imgs[a["image_id"]]["height"] for a in coco.loadAnns(coco.getAnnIds())
    }
    single_large = [i for i, a in anns.items() if len(a) == 1 and height[a[0]["id"]] > 0.6]
    assert len(single_large) >= 10
    assert min(height.values()) < 0.45 and max(height.values()) > 0.85


def test_figures_in_front_cover_the_joints_of_those_behind():
    """v=1 where another figure's pixels are on top; masks and labels agree with each other."""
    covered_by_other = 0
    for index in range(40):
        scene = render_scene(np.random.default_rng(index), (192, 160), 3)
        h, w = scene.image.shape[:2]
        assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
        assert np.array_equal(scene.label_mask, (scene.instance_mask > 0).astype(np.uint8))
        for person in range(scene.num_people):
            mask = scene.person_masks[person]
            assert scene.areas[person] == mask.sum() > 0
            assert (scene.instance_mask != person + 1)[mask == 0].all()  # seen pixels are its own
            ys, xs = np.nonzero(mask)
            x, y, bw, bh = scene.boxes[person]
            assert x <= xs.min() and xs.max() < x + bw and y <= ys.min() and ys.max() < y + bh
            for joint in range(17):
                v = scene.visibility[person, joint]
                if v == 0:
                    continue
                owner = scene.instance_mask[
                    round(scene.keypoints[person, joint, 1]), round(scene.keypoints[person, joint, 0])
                ]
                if v == 2:
                    assert owner == person + 1
                elif owner not in (0, person + 1):
                    covered_by_other += 1
    assert covered_by_other > 0


def test_gt_as_predictions_scores_ap_1(dataset):
    gt = _coco(dataset / "annotations" / "person_keypoints_val2017.json")
    anns = gt.loadAnns(gt.getAnnIds())
    rng = np.random.default_rng(0)

    def average_precision(jitter: float) -> tuple[float, float]:
        dets = []
        for ann in anns:
            kp = np.array(ann["keypoints"], float).reshape(-1, 3)
            kp[:, :2] += rng.normal(0, jitter, (17, 2)) * (kp[:, 2:] > 0)
            dets.append(
                {"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 1}
            )
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(gt, gt.loadRes(dets), "keypoints")
            evaluator.params.kpt_oks_sigmas = np.array(COCO_SIGMAS)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator.stats[0], evaluator.stats[5]

    assert average_precision(0.0) == pytest.approx((1.0, 1.0))
    assert average_precision(3.0)[0] < 0.9  # the evaluator does look at the keypoints


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs_global_rng_untouched(tmp_path):
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    kwargs = {"num_train": 5, "num_val": 3, "max_people": 3}
    a = _tree(make_pose_dataset(tmp_path / "a", seed=7, **kwargs))
    b = _tree(make_pose_dataset(tmp_path / "b", seed=7, **kwargs))
    c = _tree(make_pose_dataset(tmp_path / "c", seed=8, **kwargs))
    assert len(a) == 5 + 3 + 2 + 1 and a == b
    assert set(a) == set(c) and all(a[name] != c[name] for name in a if name.endswith(".png"))
    assert a["train2017/000000000001.png"] != a["val2017/000000000001.png"]  # splits draw different streams
    after = np.random.get_state()
    assert (
        after[0] == numpy_state[0]
        and np.array_equal(after[1], numpy_state[1])
        and after[2:] == numpy_state[2:]
    )
    assert random.getstate() == python_state


def test_readme_says_what_it_is(dataset):
    from psa_zoo import __version__

    text = (dataset / "README.md").read_text()
    assert "synthetic" in text.lower() and "seed 3" in text and __version__ in text
    assert "may be used freely" in text


def test_refuses_to_overwrite_unless_asked_and_only_its_own(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine to fill
    make_pose_dataset(out, num_train=2, num_val=1, seed=0)
    first = (out / "train2017" / "000000000001.png").read_bytes()
    with pytest.raises(FileExistsError, match=r"exists.*overwrite=True \(CLI: --overwrite\).*another --out"):
        make_pose_dataset(out, num_train=2, num_val=1, seed=1)
    assert (out / "train2017" / "000000000001.png").read_bytes() == first

    make_pose_dataset(out, num_train=1, num_val=1, seed=1, overwrite=True)
    assert (out / "train2017" / "000000000001.png").read_bytes() != first
    assert len(list((out / "train2017").iterdir())) == 1 and "seed 1" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    for overwrite in (False, True):
        with pytest.raises(DatasetExistsError, match="choose another --out") as info:
            make_pose_dataset(foreign, num_train=1, num_val=1, overwrite=overwrite)
        assert isinstance(info.value, ValueError)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_train": 0}, "num_train"),
        ({"num_val": -1}, "num_val"),
        ({"num_train": 2.5}, "num_train"),
        ({"seed": -1}, "seed"),
        ({"image_size": (32, 32)}, "image_size"),
        ({"image_size": (192,)}, "image_size"),
        ({"max_people": 0}, "max_people"),
        ({"max_people": True}, "max_people"),
        ({"overwrite": "yes"}, "overwrite"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_pose_dataset(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []
