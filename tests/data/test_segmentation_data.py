"""Segmentation datasets: VOC 2012 (+ SBD aug), Cityscapes, one's own folder and each broken variant, COCO
mini person masks."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psa_zoo.data.segmentation import (
    CITYSCAPES_ID_TO_TRAIN_ID,
    SegDatasetError,
    load_cityscapes,
    load_folder,
    load_voc,
)
from psa_zoo.labels import CITYSCAPES_CLASS_SET, VOC_CLASS_SET, VOC_CLASSES

H, W = 6, 8

# The first VOC devkit colours (VOCdevkit VOCcode/VOClabelcolormap.m): background, aeroplane, bicycle, bird.
VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]


def save_palette_png(path: Path, labels: np.ndarray, colours=VOC_COLOURS) -> None:
    """An index PNG with a palette, as VOC's SegmentationClass files are stored."""
    image = Image.fromarray(labels.astype(np.uint8), "P")
    flat = [v for colour in colours for v in colour]
    image.putpalette(flat + [224, 224, 192] * (256 - len(colours)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def save_grey_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), "L").save(path)


def save_image(path: Path, height: int = H, width: int = W, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path, quality=95)


def labels_with(value: int, void: bool = True) -> np.ndarray:
    """Background with a block of ``value`` and (optionally) a void border row of 255."""
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[1:4, 2:6] = value
    if void:
        labels[4, :] = 255
    return labels


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- Pascal VOC ----------------------------------------------------------------------------------------

VOC_TRAIN = ["2007_000032", "2007_000033"]
VOC_VAL = ["2007_000039"]
SBD_ONLY = ["2008_000002", "2008_000003"]


@pytest.fixture
def voc(tmp_path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sets / "trainval.txt").write_text("\n".join(VOC_TRAIN + VOC_VAL) + "\n")
    (root / "train_aug.txt").write_text("\n".join(SBD_ONLY + VOC_TRAIN) + "\n")
    for n, image_id in enumerate(VOC_TRAIN + VOC_VAL):
        save_image(root / "JPEGImages" / f"{image_id}.jpg")
        save_palette_png(root / "SegmentationClass" / f"{image_id}.png", labels_with(n + 1))
    for n, image_id in enumerate(SBD_ONLY + VOC_TRAIN):
        save_image(root / "JPEGImages" / f"{image_id}.jpg")
        # SBD labels as DrSleep's grey index PNGs; other values than SegmentationClass to tell them apart
        save_grey_png(root / "SegmentationClassAug" / f"{image_id}.png", labels_with(10 + n, void=False))
    return root


def test_voc_splits_read_palette_indices_not_colours(voc):
    dataset = load_voc(voc, "train")
    assert dataset.class_set is VOC_CLASS_SET and dataset.class_set.ignore_index == 255
    assert [s.name for s in dataset.samples] == VOC_TRAIN
    assert dataset.samples[0].mask_file == voc / "SegmentationClass" / "2007_000032.png"
    assert dataset.samples[0].image_file == voc / "JPEGImages" / "2007_000032.jpg"
    image, mask = dataset.read(1)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, labels_with(2))  # indices 0, 2, 255, not the colour (0, 128, 0)
    with Image.open(dataset.samples[1].mask_file) as stored:
        assert stored.mode == "P"
    assert [s.name for s in load_voc(voc, "val").samples] == VOC_VAL
    assert len(load_voc(voc, "trainval")) == 3


def test_voc_train_aug_takes_sbd_masks_and_accepts_the_vocdevkit_folder(voc):
    dataset = load_voc(voc.parent, "train_aug")  # VOCdevkit/, the folder above VOC2012/
    assert dataset.root == voc
    assert [s.name for s in dataset.samples] == sorted(SBD_ONLY + VOC_TRAIN)
    assert all(s.mask_file.parent == voc / "SegmentationClassAug" for s in dataset.samples)
    by_name = {s.name: i for i, s in enumerate(dataset.samples)}
    _, mask = dataset.read(by_name["2007_000033"])  # listed 4th in train_aug.txt → value 13, no void row
    np.testing.assert_array_equal(mask, labels_with(13, void=False))
    assert len(load_voc(voc, "train_aug", check_masks=True)) == 4  # every mask opened: all fine
    # the list may live in ImageSets/Segmentation, and hold DrSleep's "image label" path pairs
    (voc / "train_aug.txt").unlink()
    lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in SBD_ONLY]
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines) + "\n")
    assert [s.name for s in load_voc(voc, "train_aug").samples] == SBD_ONLY


def test_voc_train_aug_falls_back_to_segmentation_class_with_a_warning(voc):
    (voc / "SegmentationClassAug" / "2007_000032.png").unlink()
    with pytest.warns(UserWarning, match=r"1 of the 4 train_aug masks are not in .*2007_000032"):
        dataset = load_voc(voc, "train_aug")
    sample = next(s for s in dataset.samples if s.name == "2007_000032")
    assert sample.mask_file == voc / "SegmentationClass" / "2007_000032.png"
    index = dataset.samples.index(sample)
    np.testing.assert_array_equal(dataset.read(index)[1], labels_with(1))


def test_voc_errors_name_the_files(voc):
    with pytest.raises(
        SegDatasetError, match=r"split must be one of \['train_aug', 'train', 'val', 'trainval'\]"
    ):
        load_voc(voc, "test")
    with pytest.raises(SegDatasetError, match=r"has no JPEGImages/ folder .*pass the VOCdevkit/VOC2012"):
        load_voc(voc / "ImageSets", "train")
    (voc / "SegmentationClassAug" / "2008_000003.png").unlink()  # SBD-only: in neither folder
    with pytest.raises(
        SegDatasetError, match=r"1 train_aug masks missing: .*2008_000003\.png.*SegmentationClassAug"
    ):
        load_voc(voc, "train_aug")
    (voc / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(
        SegDatasetError, match=r"1 images missing: .*2007_000039\.jpg; expected JPEGImages/<id>\.jpg"
    ):
        load_voc(voc, "val")
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(SegDatasetError, match=r"no val list: .*val\.txt does not exist"):
        load_voc(voc, "val")
    (voc / "train_aug.txt").unlink()
    before = snapshot(voc.parent)
    with pytest.raises(
        SegDatasetError, match=r"no train_aug list: .*train_aug\.txt or .*Segmentation/train_aug\.txt"
    ):
        load_voc(voc, "train_aug")
    assert snapshot(voc.parent) == before


def test_voc_train_aug_list_must_not_hold_val_ids(voc):
    (voc / "SegmentationClassAug" / "2007_000039.png").write_bytes(
        (voc / "SegmentationClass" / "2007_000039.png").read_bytes()
    )
    (voc / "train_aug.txt").write_text("\n".join([*SBD_ONLY, *VOC_TRAIN, "2007_000039"]) + "\n")
    with pytest.raises(
        SegDatasetError, match=r"shares 1 ids with .*val\.txt \(2007_000039\).*inflates the val mIoU"
    ):
        load_voc(voc, "train_aug")
    (voc / "train_aug.txt").write_text("2008_000002\n2008_000002\n")
    with pytest.raises(SegDatasetError, match=r"lists 1 ids more than once \(2008_000002\)"):
        load_voc(voc, "train_aug")


def test_voc_bad_values_are_caught_up_front_or_when_read(voc):
    bad = labels_with(1)
    bad[0, 0] = 30  # VOC has 21 classes (0..20)
    save_palette_png(voc / "SegmentationClass" / "2007_000033.png", bad)
    dataset = load_voc(voc, "train")  # not scanned by default: the read finds it
    with pytest.raises(SegDatasetError, match=r"2007_000033\.png: values 30 are neither a class \(0\.\.20"):
        dataset.read(1)
    with pytest.raises(SegDatasetError, match=r"2007_000033\.png: values 30 are neither a class"):
        load_voc(voc, "train", check_masks=True)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[1:4, 2:6] = VOC_COLOURS[1]
    Image.fromarray(rgb).save(voc / "SegmentationClass" / "2007_000033.png")
    with pytest.raises(SegDatasetError, match=r"RGB colour image, expected class indices .*palette PNGs"):
        load_voc(voc, "train").read(1)


# --- Cityscapes ----------------------------------------------------------------------------------------

# Label id → train id, written out from the reference table (HRNet lib/datasets/cityscapes.py label_mapping,
# cityscapesScripts labels.py): the 19 trained ids; every other id is void (255).
TRAINED = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
           27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def expected_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: TRAINED.get(int(v), 255))(label_ids).astype(np.uint8)


def cityscapes_name(city: str, frame: int) -> str:
    return f"{city}_000000_{frame:06d}"


@pytest.fixture
def cityscapes(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    for split in ("train", "val"):
        for city, frame in (("aachen", 19), ("aachen", 20), ("bremen", 7)):
            name = cityscapes_name(city, frame)
            save_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", 16, 16)
            all_ids = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every stored value once
            save_grey_png(
                root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", np.roll(all_ids, frame)
            )
    return root


def test_cityscapes_label_ids_are_mapped_to_train_ids(cityscapes):
    assert {k: v for k, v in CITYSCAPES_ID_TO_TRAIN_ID.items() if v != 255} == TRAINED
    assert sorted(CITYSCAPES_ID_TO_TRAIN_ID) == list(range(34))
    dataset = load_cityscapes(cityscapes, "train", check_masks=True)
    assert dataset.class_set is CITYSCAPES_CLASS_SET
    names = [cityscapes_name("aachen", 19), cityscapes_name("aachen", 20), cityscapes_name("bremen", 7)]
    assert [s.name for s in dataset.samples] == names
    for index, frame in enumerate((19, 20, 7)):
        image, mask = dataset.read(index)
        stored = np.roll(np.arange(256, dtype=np.uint8).reshape(16, 16), frame)
        assert image.shape == (16, 16, 3) and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, expected_train_ids(stored))
        # spot checks: unlabeled 0, ego vehicle 1, parking 9, caravan 29, license-plate-free 34+, 255 → void
        for label_id, train_id in (
            (0, 255),
            (1, 255),
            (7, 0),
            (9, 255),
            (26, 13),
            (29, 255),
            (33, 18),
            (34, 255),
        ):
            assert set(mask[stored == label_id].tolist()) == {train_id}
    assert len(load_cityscapes(cityscapes, "val")) == 3
    # loader workers started with "spawn" get a pickled copy: it must decode the same
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dataset)).read(2)[1], dataset.read(2)[1])


def test_cityscapes_prefers_label_train_ids_when_present(cityscapes):
    city = cityscapes / "gtFine" / "train" / "bremen"
    train_ids = np.full((16, 16), 255, dtype=np.uint8)
    train_ids[:8] = 18
    name = cityscapes_name("bremen", 7)
    save_grey_png(city / f"{name}_gtFine_labelTrainIds.png", train_ids)
    dataset = load_cityscapes(cityscapes, "train")
    assert dataset.samples[2].mask_file.name == f"{name}_gtFine_labelTrainIds.png"
    np.testing.assert_array_equal(dataset.read(2)[1], train_ids)  # as stored, not mapped again
    assert dataset.samples[0].mask_file.name.endswith("_gtFine_labelIds.png")  # per image


def test_cityscapes_errors(cityscapes):
    with pytest.raises(SegDatasetError, match=r"test labels are not public.*split='val'"):
        load_cityscapes(cityscapes, "test")
    with pytest.raises(SegDatasetError, match=r"leftImg8bit.train does not exist; pass the Cityscapes root"):
        load_cityscapes(cityscapes / "leftImg8bit", "train")
    city = cityscapes / "gtFine" / "val" / "aachen"
    name = cityscapes_name("aachen", 20)
    (city / f"{name}_gtFine_labelIds.png").rename(city / f"{name}_gtFine_color.png")
    with pytest.raises(
        SegDatasetError, match=rf"1 label files missing: .*{name}_gtFine_labelIds\.png.*only "
    ):
        load_cityscapes(cityscapes, "val")
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[:, :, 0] = 128
    Image.fromarray(rgb).save(city / f"{name}_gtFine_labelIds.png")
    with pytest.raises(SegDatasetError, match=r"RGB colour image.*not the \*_gtFine_color\.png previews"):
        load_cityscapes(cityscapes, "val", check_masks=True)
    shutil.rmtree(cityscapes / "gtFine" / "train")
    with pytest.raises(
        SegDatasetError, match=r"gtFine.train does not exist; .*extract gtFine_trainvaltest\.zip"
    ):
        load_cityscapes(cityscapes, "train")


# --- one's own folder ----------------------------------------------------------------------------------

CLASSES = {"class_names": ["background", "cat", "dog"], "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]}


def write_own(root: Path, classes=CLASSES, masks: dict[str, np.ndarray] | None = None) -> Path:
    if classes is not None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "classes.json").write_text(json.dumps(classes))
    save_image(root / "images" / "train" / "a.jpg")
    save_image(root / "images" / "train" / "b.png")
    save_image(root / "images" / "val" / "c.jpg")
    for stem, labels in (masks or {"a": labels_with(1), "b": labels_with(2), "c": labels_with(1)}).items():
        split = "val" if stem == "c" else "train"
        save_grey_png(root / "masks" / split / f"{stem}.png", labels)
    return root


def test_own_folder_happy_path(tmp_path):
    root = write_own(tmp_path / "pets")
    dataset = load_folder(root, "train")
    assert [s.name for s in dataset.samples] == ["a", "b"]
    assert dataset.samples[1].image_file == root / "images" / "train" / "b.png"
    assert dataset.class_set.class_names == ("background", "cat", "dog")
    assert dataset.class_set.palette == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    assert dataset.class_set.ignore_index == 255 and dataset.class_set.name == "pets"
    image, mask = dataset.read(1)
    assert image.shape == (H, W, 3)
    np.testing.assert_array_equal(mask, labels_with(2))
    assert len(load_folder(root, "val")) == 1
    unlabelled = load_folder(root, "train", masks=False)
    assert unlabelled.samples[0].mask_file is None and unlabelled.read(0)[1] is None


def test_own_folder_palette_png_indices_and_16_bit_masks(tmp_path):
    root = write_own(tmp_path / "own")
    save_palette_png(root / "masks" / "train" / "a.png", labels_with(2), colours=[(9, 9, 9)] * 4)
    np.testing.assert_array_equal(
        load_folder(root, "train").read(0)[1], labels_with(2)
    )  # indices, not colours
    classes = {"class_names": [f"c{i}" for i in range(300)], "ignore_index": 65535}
    labels = np.zeros((H, W), dtype=np.uint16)
    labels[1:3, 1:3] = 299
    labels[5, :] = 65535
    (root / "classes.json").write_text(json.dumps(classes))
    Image.fromarray(labels).save(root / "masks" / "train" / "a.png")  # I;16
    mask = load_folder(root, "train").read(0)[1]
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, labels.astype(np.int64))


def test_own_folder_colour_masks_are_mapped_through_the_palette(tmp_path):
    root = write_own(tmp_path / "own")
    colours = np.zeros((H, W, 3), dtype=np.uint8)
    colours[1:4, 2:6] = (0, 255, 0)  # dog
    colours[0, :3] = (255, 0, 0)  # cat
    Image.fromarray(colours).save(root / "masks" / "train" / "a.png")
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[1:4, 2:6] = 2
    expected[0, :3] = 1
    dataset = load_folder(root, "train")
    np.testing.assert_array_equal(dataset.read(0)[1], expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dataset)).read(0)[1], expected)
    # a void colour, when classes.json names it
    colours[5, :] = (224, 224, 192)
    Image.fromarray(colours).save(root / "masks" / "train" / "a.png")
    (root / "classes.json").write_text(json.dumps({**CLASSES, "ignore_color": [224, 224, 192]}))
    expected[5, :] = 255
    np.testing.assert_array_equal(load_folder(root, "train").read(0)[1], expected)


def broken_cases():
    """(name, how to break a good folder, the message expected)."""

    def colour_unknown(root):
        colours = np.zeros((H, W, 3), dtype=np.uint8)
        colours[0, 0] = (1, 2, 3)
        colours[1, 1] = (255, 0, 0)
        Image.fromarray(colours).save(root / "masks" / "train" / "b.png")

    def colour_no_palette(root):
        colour_unknown(root)
        (root / "classes.json").write_text(json.dumps({"class_names": CLASSES["class_names"]}))

    def grey_rgb(root):
        (root / "classes.json").write_text(json.dumps({"class_names": CLASSES["class_names"]}))
        Image.fromarray(np.repeat(labels_with(1)[:, :, None], 3, axis=2)).save(
            root / "masks" / "train" / "a.png"
        )

    def binary_0_255(root):
        (root / "classes.json").write_text(json.dumps({"class_names": ["background", "crack"]}))
        for stem in ("a", "b"):
            labels = np.zeros((H, W), dtype=np.uint8)
            labels[2:4, 2:5] = 255
            save_grey_png(root / "masks" / "train" / f"{stem}.png", labels)

    def values_too_big(root):
        save_grey_png(root / "masks" / "train" / "a.png", labels_with(3))
        save_grey_png(root / "masks" / "train" / "b.png", labels_with(7))

    def size_mismatch(root):
        save_grey_png(root / "masks" / "train" / "b.png", np.zeros((H + 2, W), dtype=np.uint8))

    def unpaired(root):
        (root / "masks" / "train" / "a.png").rename(root / "masks" / "train" / "z.png")

    def jpeg_mask(root):
        Image.fromarray(labels_with(1)).save(root / "masks" / "train" / "x.jpg")

    def same_stem(root):
        save_image(root / "images" / "train" / "a.png")

    def no_classes(root):
        (root / "classes.json").unlink()

    def bad_palette(root):
        (root / "classes.json").write_text(json.dumps({**CLASSES, "palette": [[0, 0, 0]]}))

    def ignore_is_a_class(root):
        (root / "classes.json").write_text(json.dumps({**CLASSES, "ignore_index": 1}))

    def unknown_key(root):
        (root / "classes.json").write_text(json.dumps({"classes": ["a", "b"], "class_names": ["a", "b"]}))

    def not_json(root):
        (root / "classes.json").write_text("{class_names: [a]}")

    def corrupt_mask(root):
        (root / "masks" / "train" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

    return [
        ("colour_unknown", colour_unknown, r"mask .*b\.png: colours \(1, 2, 3\) are not in the palette"),
        (
            "colour_no_palette",
            colour_no_palette,
            r"b\.png: an RGB colour image.*give the colours as 'palette'",
        ),
        ("grey_rgb", grey_rgb, r"a\.png: an RGB image whose three channels are equal.*single-channel"),
        (
            "binary_0_255",
            binary_0_255,
            r"hold only the values 0 and 255 but there are 2 classes \(background, crack\): 255 is the "
            r"ignore index: a binary mask must use 1 for the foreground.*mask // 255",
        ),
        (
            "values_too_big",
            values_too_big,
            r"2 masks \(.*a\.png, .*b\.png\): values 3, 7 are neither a class \(0\.\.2",
        ),
        (
            "size_mismatch",
            size_mismatch,
            r"1 masks in .*train have another size .*: b\.png 8×8 vs image b\.png 8×6",
        ),
        (
            "unpaired",
            unpaired,
            r"unpaired files: 1 images .* no mask \(a\.jpg\); 1 masks .* no image \(z\.png\)",
        ),
        ("jpeg_mask", jpeg_mask, r"1 masks in .*train are JPEG \(x\.jpg\); JPEG compression"),
        ("same_stem", same_stem, r"several files with the same name stem \(a\.jpg and a\.png\)"),
        ("no_classes", no_classes, r"classes\.json does not exist; write the class names there"),
        ("bad_palette", bad_palette, r"classes\.json: class set 'own': palette must hold 3 RGB colours"),
        ("ignore_is_a_class", ignore_is_a_class, r"classes\.json: .*ignore_index 1 is a class index"),
        ("unknown_key", unknown_key, r"classes\.json has unknown keys \['classes'\]"),
        ("not_json", not_json, r"classes\.json is not valid JSON"),
        ("corrupt_mask", corrupt_mask, r"b\.png (is not an image PIL can read|could not be decoded)"),
    ]


@pytest.mark.parametrize(("name", "breaker", "message"), broken_cases(), ids=[c[0] for c in broken_cases()])
def test_own_folder_broken_variants(tmp_path, name, breaker, message):
    root = write_own(tmp_path / "own")
    breaker(root)
    before = snapshot(root)
    with pytest.raises(SegDatasetError, match=message) as info:
        load_folder(root, "train")
    assert "\n" not in str(info.value)
    assert snapshot(root) == before  # nothing written or changed


def test_own_folder_checks_deferred_to_read(tmp_path):
    root = write_own(tmp_path / "own")
    save_grey_png(root / "masks" / "train" / "b.png", labels_with(9))
    dataset = load_folder(root, "train", check_masks=False)
    dataset.read(0)
    with pytest.raises(SegDatasetError, match=r"b\.png: values 9 are neither a class"):
        dataset.read(1)
    save_grey_png(root / "masks" / "train" / "b.png", np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(SegDatasetError, match=r"b\.png is 3×3 \(W×H\) but its image .*b\.png is 8×6"):
        dataset.read(1)


def test_own_folder_split_and_mask_folder_errors(tmp_path):
    root = write_own(tmp_path / "own")
    with pytest.raises(
        SegDatasetError, match=r"images.test does not exist \(splits found .*\['train', 'val'\]\)"
    ):
        load_folder(root, "test")
    shutil.rmtree(root / "masks" / "val")
    with pytest.raises(SegDatasetError, match=r"masks.val does not exist.*masks=False"):
        load_folder(root, "val")


def test_exif_rotated_image_with_a_mask_of_the_stored_size(tmp_path):
    root = write_own(tmp_path / "own")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display: read upright as 6 wide × 8 high
    image = Image.fromarray(np.full((H, W, 3), 90, dtype=np.uint8))
    image.save(root / "images" / "train" / "a.jpg", exif=exif.tobytes())
    with pytest.raises(SegDatasetError, match=r"a\.png 8×6 vs image a\.jpg 6×8.*EXIF rotation"):
        load_folder(root, "train")


# --- real data: COCO mini person masks through load_folder --------------------------------------------


@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)  # pycocotools
def test_coco_mini_person_masks_through_load_folder(shared_dir, tmp_path):
    from pycocotools.coco import COCO

    coco_dir = shared_dir / "data" / "coco_mini"
    coco = COCO(str(coco_dir / "test_coco.json"))
    root = tmp_path / "coco_person"
    (root / "images" / "val").mkdir(parents=True)
    (root / "masks" / "val").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"class_names": list(VOC_CLASSES)}))
    expected = {}
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        person = np.zeros((info["height"], info["width"]), dtype=bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            person |= coco.annToMask(ann).astype(bool)
        labels = np.where(person, 15, 0).astype(np.uint8)  # VOC person = 15
        stem = Path(info["file_name"]).stem
        shutil.copy(coco_dir / info["file_name"], root / "images" / "val" / info["file_name"])
        Image.fromarray(labels, "L").save(root / "masks" / "val" / f"{stem}.png")
        expected[stem] = (labels, info)
    dataset = load_folder(root, "val")
    assert dataset.class_set.class_names == VOC_CLASSES
    assert sorted(s.name for s in dataset.samples) == sorted(expected) and len(dataset) == 4
    for index, sample in enumerate(dataset.samples):
        image, mask = dataset.read(index)
        labels, info = expected[sample.name]
        assert image.shape == (info["height"], info["width"], 3)
        np.testing.assert_array_equal(mask, labels)
        assert 0 < (mask == 15).sum() < mask.size and set(np.unique(mask).tolist()) == {0, 15}
