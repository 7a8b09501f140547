"""Reading images into ``[H, W, 3] uint8`` arrays in the channel order a model wants.

Files are read with PIL: the EXIF orientation is applied (a phone photo comes out upright, as it is shown),
and grey, grey + alpha, palette, RGBA and CMYK images become RGB. Alpha is dropped, not composited: the
stored colour of a transparent pixel is kept, as PIL's ``convert("RGB")`` and ``cv2.imread`` do. 16-bit and
float images are refused rather than clipped to 8 bits.

Arrays are taken as they are: ``[H, W]`` grey, ``[H, W, 1]``, ``[H, W, 3]`` **assumed RGB** (an array from
``cv2.imread`` is BGR: pass ``img[..., ::-1]``) or ``[H, W, 4]`` RGBA (alpha dropped), of dtype uint8 only.
A float array is refused rather than guessed at (``[0, 1]`` and ``[0, 255]`` floats both occur): convert it
with ``(img * 255).round().astype(np.uint8)`` or ``img.round().astype(np.uint8)`` as fits.

The result is always a new C-contiguous array, never a view of the input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "CHANNEL_ORDERS",
    "ImageNotFoundError",
    "ImageReadError",
    "normalize_images",
    "read_image",
]

CHANNEL_ORDERS = ("RGB", "BGR")

# PIL modes whose samples do not fit 8 bits: convert("RGB") would clip them silently.
_WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")

ImageSource = str | os.PathLike | Image.Image | np.ndarray


class ImageReadError(ValueError):
    """An image that cannot be read: not an image, truncated, or an array of the wrong shape or dtype."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """An image path that does not exist (also a ``FileNotFoundError``)."""


def read_image(source: ImageSource, channel_order: str = "RGB") -> np.ndarray:
    """Read a path, PIL image or array as ``[H, W, 3] uint8`` in ``channel_order``.

    Args:
        source: an image file path; a PIL image (its EXIF orientation is applied too); or an array
            ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) of uint8.
        channel_order: ``"RGB"`` or ``"BGR"``, the order the model's metadata names.

    Returns:
        ``[H, W, 3]`` uint8, C-contiguous, a new array.

    Raises:
        ImageNotFoundError: the path does not exist.
        ImageReadError: not an image, a truncated file, an unsupported mode, shape or dtype.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    if isinstance(source, np.ndarray):
        rgb = _rgb_from_array(source)
    elif isinstance(source, Image.Image):
        rgb = _rgb_from_pil(source, "the PIL image given")
    elif isinstance(source, str | os.PathLike):
        rgb = _rgb_from_file(Path(source))
    else:
        raise ImageReadError(
            f"cannot read an image from a {type(source).__name__}; pass a file path, a PIL image or a "
            "[H, W, 3] uint8 numpy array"
        )
    if channel_order == "BGR":
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)


def _rgb_from_file(path: Path) -> np.ndarray:
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise ImageNotFoundError(
            f"image {path} {what}; check the path (and the image folder it was joined to)"
        )
    try:
        with Image.open(path) as image:
            return _rgb_from_pil(image, str(path))
    except UnidentifiedImageError as err:
        raise ImageReadError(
            f"{path} is not an image PIL can read ({err}); re-download or remove it"
        ) from None
    except PermissionError:
        raise ImageReadError(f"{path} cannot be read: permission denied; fix its file mode") from None


def _rgb_from_pil(image: Image.Image, what: str) -> np.ndarray:
    if image.mode in _WIDE_MODES:
        raise ImageReadError(
            f"{what} has PIL mode {image.mode!r} (16-bit or float samples); converting it to 8-bit RGB would "
            "clip it: convert it to 8 bits yourself (scaled as your data needs) and save as PNG/JPEG"
        )
    try:
        image = ImageOps.exif_transpose(image)  # a copy, upright as viewers show it (decodes the pixels)
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.array(image, dtype=np.uint8)
    except OSError as err:  # PIL reports truncated or corrupt data as OSError
        raise ImageReadError(
            f"{what} could not be decoded (PIL: {err}); the file is probably truncated or corrupt: "
            "re-download or remove it"
        ) from None
    except ValueError as err:
        raise ImageReadError(f"{what}: PIL cannot convert mode {image.mode!r} to RGB ({err})") from None


def _rgb_from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageReadError(
            f"image array has dtype {array.dtype}, expected uint8 (0..255); convert it first, e.g. "
            "(img * 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise ImageReadError(
            f"image array has shape {tuple(array.shape)}, expected [H, W] (grey), [H, W, 3] (RGB) or "
            "[H, W, 4] (RGBA) with H, W ≥ 1"
        )
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3].copy()


def normalize_images(images: torch.Tensor, metadata, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, C, H, W] uint8 (already in the model's channel order) → normalised floats."""
    mean = torch.tensor(metadata.mean, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(metadata.std, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    return (images.to(dtype) / 255.0 - mean) / std
