"""read_image: channel order, colour modes, EXIF orientation, arrays, and clear errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from psa_zoo.data.images import ImageNotFoundError, ImageReadError, read_image

COLOUR = (200, 100, 50)  # R, G, B


@pytest.fixture
def colour_png(tmp_path):
    pixels = np.zeros((6, 8, 3), dtype=np.uint8)
    pixels[2, 3] = COLOUR
    path = tmp_path / "colour.png"
    Image.fromarray(pixels, "RGB").save(path)
    return path


def test_channel_order_rgb_and_bgr_against_cv2(colour_png):
    rgb = read_image(colour_png)
    bgr = read_image(str(colour_png), channel_order="BGR")
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[2, 3]) == COLOUR
    assert tuple(bgr[2, 3]) == COLOUR[::-1]
    np.testing.assert_array_equal(bgr, cv2.imread(str(colour_png), cv2.IMREAD_COLOR))  # cv2 reads BGR
    assert bgr.flags.c_contiguous and bgr.flags.writeable


def test_grey_rgba_and_palette_files_become_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(grey[:, :, None], 3, axis=2))

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (1, 2, 3, 0)  # fully transparent: its stored colour is kept (alpha dropped, as cv2 does)
    rgba[1, 1] = (9, 8, 7, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert tuple(out[0, 0]) == (1, 2, 3) and tuple(out[1, 1]) == (9, 8, 7)
    np.testing.assert_array_equal(out[..., ::-1], cv2.imread(str(tmp_path / "rgba.png"), cv2.IMREAD_COLOR))

    palette_image = Image.new("P", (3, 2))
    palette_image.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
    palette_image.putpixel((2, 1), 1)
    palette_image.save(tmp_path / "palette.png")
    out = read_image(tmp_path / "palette.png")
    assert tuple(out[1, 2]) == (10, 200, 30) and tuple(out[0, 0]) == (0, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide × 20 high, left half red, right half blue; EXIF orientation 6 = "rotate 90° clockwise to
    # display" (EXIF 2.3 tag 0x0112): upright it is 20 wide × 40 high with the red half on top.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    out = read_image(path).astype(int)
    assert out.shape == (40, 20, 3)
    assert np.abs(out[5, 10] - (255, 0, 0)).max() < 30 and np.abs(out[35, 10] - (0, 0, 255)).max() < 30
    upright_by_cv2 = cv2.imread(str(path), cv2.IMREAD_COLOR)  # cv2 applies the EXIF orientation too
    assert upright_by_cv2.shape == (40, 20, 3)
    assert np.abs(out[..., ::-1] - upright_by_cv2.astype(int)).max() <= 8  # two JPEG decoders


def test_pil_image_and_arrays(colour_png):
    with Image.open(colour_png) as image:
        assert tuple(read_image(image)[2, 3]) == COLOUR
    rgb = np.asarray(Image.open(colour_png)).copy()
    out = read_image(rgb)
    np.testing.assert_array_equal(out, rgb)
    out[...] = 0
    assert tuple(rgb[2, 3]) == COLOUR  # a new array, never a view of the input
    assert tuple(read_image(rgb, "BGR")[2, 3]) == COLOUR[::-1]

    grey = np.full((3, 5), 77, dtype=np.uint8)
    np.testing.assert_array_equal(read_image(grey), np.full((3, 5, 3), 77, dtype=np.uint8))
    np.testing.assert_array_equal(read_image(grey[:, :, None]), np.full((3, 5, 3), 77, dtype=np.uint8))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, dtype=np.uint8)])
    np.testing.assert_array_equal(read_image(rgba), rgb)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), r"dtype float32, expected uint8.*\* 255"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"shape \(4, 4, 2\), expected \[H, W\]"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), r"shape \(2, 4, 4, 3\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), r"H, W ≥ 1"),
    ],
)
def test_bad_arrays_are_clear_errors(array, message):
    with pytest.raises(ImageReadError, match=message):
        read_image(array)


def test_bad_channel_order_and_source_type(colour_png):
    with pytest.raises(ValueError, match=r"channel_order must be one of \('RGB', 'BGR'\), got 'RGBA'"):
        read_image(colour_png, channel_order="RGBA")
    with pytest.raises(ImageReadError, match="cannot read an image from a list"):
        read_image([[0, 1]])


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "img.jpg"
    with pytest.raises(ImageNotFoundError, match="does not exist") as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_truncated_and_non_image_files_say_what_to_do(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image(truncated)
    assert str(truncated) in str(info.value) and "re-download or remove it" in str(info.value)

    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match="not an image PIL can read") as info:
        read_image(text)
    assert str(text) in str(info.value) and "re-download or remove it" in str(info.value)


def test_sixteen_bit_images_are_refused_not_clipped(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.array([[0, 300], [1000, 65535]], dtype=np.uint16)).save(path)
    with pytest.raises(ImageReadError, match="16-bit or float samples"):
        read_image(path)
