"""A synthetic COCO-keypoints dataset that the package draws itself: stick figures on varied backgrounds.

``make_pose_dataset(out)`` writes a folder in the standard COCO layout (``annotations/
person_keypoints_{train,val}2017.json``, ``train2017/*.png``, ``val2017/*.png``), so the loader, training and
evaluation run on a fresh machine with nothing to download. The figures are made to be *learnable* by a
small model in minutes on a CPU, and their labels to be *exact*:

* each of the 17 COCO keypoints is a dot of its own saturated colour (:data:`JOINT_COLORS`; a left joint
  and its right partner have opposite hues), with a dark ring on the body joints; limbs are thick lines of
  per-limb colours (:data:`LIMB_COLORS`), the torso a filled quadrilateral, the head a filled disc that
  holds the nose, eyes and ears;
* a pose is random but plausible: limb lengths are fixed fractions of the figure height (a slightly large
  head), each limb is foreshortened by up to 25 %, the joint angles stay in ranges a body reaches, the upper
  body leans, the head tilts, the whole figure tilts in the image plane;
* figures face the viewer, so a figure's left side is on the image right, as for a person facing the
  camera. Both sides are drawn independently from mirror-symmetric ranges, so the pose distribution is
  symmetric under a horizontal flip — but the colours are not: a flipped image with left/right labels
  swapped shows a left-coloured dot labelled as a right joint. Sides stay readable from the geometry (the
  shoulders and hips of a figure never swap sides), which is what a model trained with flip augmentation
  learns;
* keypoint coordinates are multiples of 1/16 px, the sub-pixel precision cv2 draws with (``shift=4``), so a
  label is exactly where its dot is drawn; a pixel's centre is at integer coordinates;
* visibility follows COCO and is read from the drawing: ``v=2`` when the joint's own dot is on top at its
  pixel (the pixel nearest the joint) in its own colour, ``v=1`` when something drawn later covers or
  tints that pixel (a figure in front, an occluder patch, another dot of the same figure), ``v=0`` with
  ``x=y=0`` when the joint lies outside the image (inside: ``0 <= x <= W-1`` and ``0 <= y <= H-1``);
* ``bbox`` is the tight box of the figure's whole silhouette (also where others cover it) clipped to the
  image, plus a 2-px margin; ``area`` is that silhouette's pixel count (COCOeval's OKS scale, as COCO's
  segmentation area is for real people; a figure fills about a third of its box, a COCO person a third to
  two thirds);
* backgrounds are smooth two-colour gradients, sometimes with a soft blob, under a few muted rectangles
  and ellipses; every image gets mild Gaussian noise (σ of 0.5 to 3 grey levels).

:func:`render_scene` draws one image and returns, besides the labels, an instance mask and a person/background
label mask, for a segmentation dataset built from the same scenes.

``make_seg_dataset(out)`` writes those scenes as a semantic segmentation dataset in the own-data layout
(``images/{train,val}/*.png``, ``masks/{train,val}/*.png``, ``classes.json``). Its classes
(:data:`SEG_CLASS_NAMES`) are what the renderer draws, each labelled from the drawing itself:
``background`` (the gradient and its blob), ``person`` (a figure's whole silhouette: head, neck, torso, limbs,
feet, dots and rings), ``box`` (the rectangles, behind and in front of the figures) and ``ball`` (the
ellipses). :func:`render_seg_scene` draws the scene :func:`render_scene` draws for the same generator state
(the same random numbers: figures, shapes and noise in the same places, the same person masks) with one
change, so that a small model learns the classes in minutes on a CPU: the rectangles are vivid blue to
violet and the ellipses vivid yellow to orange (:data:`SEG_SHAPE_HUES`) instead of muted, against muted
backgrounds. It adds the class mask:

* a pixel belongs to the class of the last shape that covers its centre (the rule the person masks follow);
* every shape's anti-aliased coverage of each pixel is tracked too, so the share of a pixel's colour (before
  the noise) that its class makes is known; where that share is under :data:`SEG_PURE_SHARE` — the blended
  edge pixels between two classes, a band about one pixel wide — the mask holds :data:`IGNORE_INDEX` (255),
  as Pascal VOC marks its object borders void. Edges between two shapes of one class (a limb over the torso,
  two overlapping boxes) are not ambiguous and keep their class.

Randomness comes only from ``np.random.SeedSequence(seed)``: the train and val splits are two children, and
each image a child of its split, so an image depends only on (seed, split, index) — the same arguments give
byte-identical files (with the same numpy, OpenCV and zlib), and the global numpy RNG is never touched.
The folder appears whole or not at all: it is written beside the target and renamed into place.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..labels import COCO_KEYPOINT_SET
from ..metadata import default_class_palette
from ..models._serialization import _TMP_MARK, _put_in_place, _remove_stale_temporaries
from ..version import __version__

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IGNORE_INDEX",
    "JOINT_COLORS",
    "LIMBS",
    "LIMB_COLORS",
    "SEG_CLASS_NAMES",
    "SEG_PALETTE",
    "SEG_PURE_SHARE",
    "SEG_SHAPE_HUES",
    "DatasetExistsError",
    "Scene",
    "SegScene",
    "make_pose_dataset",
    "make_seg_dataset",
    "render_scene",
    "render_seg_scene",
]

DEFAULT_IMAGE_SIZE = (192, 160)  # (W, H): the smallest figure (35 % of H) is 56 px tall, eyes 4.5 px apart
NUM_JOINTS = COCO_KEYPOINT_SET.num_keypoints
README_MARKER = "<!-- psa_zoo synthetic pose dataset -->"  # what overwrite=True looks for before deleting
SPLITS = ("train2017", "val2017")

SEG_CLASS_NAMES = ("background", "person", "box", "ball")
BACKGROUND, PERSON, BOX, BALL = range(len(SEG_CLASS_NAMES))
SEG_PALETTE: tuple[tuple[int, int, int], ...] = default_class_palette(len(SEG_CLASS_NAMES))  # VOC colours
IGNORE_INDEX = 255
IGNORE_COLOR = (224, 224, 192)  # the colour of 255 in the mask PNGs' palette, as in Pascal VOC's
# Rectangles are blue to violet, ellipses yellow to orange (both more saturated than any background), so that
# a small model tells the classes apart in minutes; the hues avoid the skin tones' (20-30°).
SEG_SHAPE_HUES = {"box": (200.0, 260.0), "ball": (35.0, 65.0)}
SEG_PURE_SHARE = 0.75  # a pixel keeps its class when at least this share of its colour is that class's
SEG_README_MARKER = "<!-- psa_zoo synthetic segmentation dataset -->"
SEG_SPLITS = ("train", "val")

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn (and labelled) in steps of 1/16 px
_ONE = 1 << _SHIFT
_BOX_MARGIN = 2
_MIN_IMAGE_SIDE = 64
_MAX_PEOPLE = 10
_MIN_JOINTS_IN_FRAME = 5
_RING = (25, 25, 25)
_TINT = 8  # a dot whose pixel is tinted more than this (L∞, 0..255) by a neighbour's edge counts as covered


def _hsv(hue_deg: float, sat: float, val: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


# Hue slots of the left/right pairs, 22.5° apart: left joints take hues 0°..157.5° (red → green), their right
# partners the opposite hue (cyan → pink). Neighbouring slots hold joints far apart on the body and alternate
# brightness, so nearby dots never look alike.
_PAIR_SLOTS = ((1, 2), (11, 12), (7, 8), (3, 4), (13, 14), (9, 10), (5, 6), (15, 16))


def _joint_colors() -> np.ndarray:
    colors = np.zeros((NUM_JOINTS, 3), np.uint8)
    colors[0] = (255, 255, 255)  # nose: white on the skin-coloured head
    for slot, (left, right) in enumerate(_PAIR_SLOTS):
        val = 1.0 if slot % 2 == 0 else 0.78
        colors[left] = _hsv(22.5 * slot, 1.0, val)
        colors[right] = _hsv(180.0 + 22.5 * slot, 1.0, val)
    return colors


JOINT_COLORS: np.ndarray = _joint_colors()  # [17, 3] uint8 RGB, in COCO keypoint order
JOINT_COLORS.flags.writeable = False

# Limbs drawn as lines (0-based COCO indices), each in a paler shade of its far joint's hue.
LIMBS: tuple[tuple[int, int], ...] = (
    (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip


def _limb_colors() -> np.ndarray:
    colors = []
    for _, far in LIMBS:
        r, g, b = (int(c) for c in JOINT_COLORS[far])
        hue, _, _ = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        colors.append(_hsv(hue * 360.0, 0.45, 0.88))
    return np.array(colors, np.uint8)


LIMB_COLORS: np.ndarray = _limb_colors()  # [8, 3] uint8 RGB, one per entry of LIMBS
LIMB_COLORS.flags.writeable = False

_SKIN_TONES = ((224, 182, 148), (196, 148, 108), (160, 112, 80), (120, 84, 60), (236, 200, 170))

# Figure proportions, in units of the figure height H (head top to feet).
_SHOULDER_HALF, _HIP_HALF, _SPINE = 0.12, 0.085, 0.30
_NECK, _HEAD_R = 0.055, 0.09
_UPPER_ARM, _FOREARM, _THIGH, _SHANK, _FOOT = 0.165, 0.15, 0.24, 0.24, 0.06
_LEG_T, _UPPER_ARM_T, _FOREARM_T, _NECK_T, _FOOT_T = 0.08, 0.062, 0.054, 0.06, 0.05


class DatasetExistsError(FileExistsError, ValueError):
    """The output folder exists and may not (or cannot safely) be replaced."""


@dataclasses.dataclass(frozen=True)
class Scene:
    """One rendered image and its labels (N people, K = 17 COCO keypoints).

    Attributes:
        image: [H, W, 3] uint8 RGB.
        keypoints: [N, K, 2] float64 (x, y) in pixels, pixel centres at integers; 0 where visibility is 0.
        visibility: [N, K] int64 COCO flags: 2 visible, 1 covered, 0 outside the image.
        boxes: [N, 4] float64 xywh, the silhouette's tight box plus a 2-px margin, inside the image.
        areas: [N] float64 silhouette pixel counts (inside the image, including covered parts).
        person_masks: [N, H, W] bool, each figure's whole silhouette inside the image.
        instance_mask: [H, W] int32, 0 background, i + 1 where person i is seen (after occlusion).
    """

    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    person_masks: np.ndarray
    instance_mask: np.ndarray

    @property
    def label_mask(self) -> np.ndarray:
        """[H, W] uint8: 1 on person pixels, 0 on background."""
        return (self.instance_mask > 0).astype(np.uint8)

    @property
    def num_people(self) -> int:
        return int(self.keypoints.shape[0])


# --- geometry ---------------------------------------------------------------------------------------------


def _rot(deg: float) -> np.ndarray:
    """[2, 2] rotation in image coordinates (y down): positive angles turn 'up' towards +x."""
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _outward(side: int, deg: float) -> np.ndarray:
    """Unit vector of a limb hanging straight down (0°) turned ``deg`` away from the body on ``side``
    (+1: the figure's left, on the image right)."""
    a = math.radians(deg)
    return np.array([side * math.sin(a), math.cos(a)])


@dataclasses.dataclass(frozen=True)
class _Figure:
    """A posed figure: joints [K, 2], head centre [2], feet [2, 2] (toe of left, right), radius and size in
    one unit (figure heights before placement, pixels after)."""

    joints: np.ndarray
    head: np.ndarray
    feet: np.ndarray
    head_radius: float
    height: float

    def transformed(self, scale: float, offset: np.ndarray) -> _Figure:
        joints, head, feet = (p * scale + offset for p in (self.joints, self.head, self.feet))
        return _Figure(joints, head, feet, self.head_radius * scale, scale)

    def extent(self) -> np.ndarray:
        """[4] x0, y0, x1, y1 of everything drawn, with room for the limb thickness."""
        r = self.head_radius
        pts = np.concatenate([self.joints, self.feet, self.head + np.array([[-r, -r], [r, r]])])
        pad = 0.04 * self.height
        return np.concatenate([pts.min(0) - pad, pts.max(0) + pad])


def _arm_angles(rng: np.random.Generator) -> tuple[float, float]:
    """Upper arm and forearm, degrees away from the body (0 = hanging down, 180 = straight up)."""
    pick = rng.random()
    if pick < 0.6:
        upper = rng.uniform(5, 60)
    elif pick < 0.9:
        upper = rng.uniform(60, 150)
    else:
        upper = rng.uniform(-15, 5)  # slightly in front of the body
    fore = float(np.clip(upper + rng.uniform(-100, 110), -45, 175))  # never across the chest
    return upper, fore


def _leg_angles(rng: np.random.Generator) -> tuple[float, float]:
    thigh = rng.uniform(-8, 35) if rng.random() < 0.9 else rng.uniform(35, 75)
    shank = float(np.clip(thigh + rng.uniform(-35, 25), -12, 80))
    return thigh, shank


def _sample_pose(rng: np.random.Generator) -> _Figure:
    """A random plausible pose, in figure heights, origin at the hip centre, y down."""
    joints = np.zeros((NUM_JOINTS, 2))
    lean, tilt = float(np.clip(rng.normal(0, 5), -12, 12)), rng.uniform(-15, 15)
    torso = _rot(lean)
    shoulder_half = _SHOULDER_HALF * rng.uniform(0.8, 1.1)  # < 1: the body turned a little
    hip_half = _HIP_HALF * rng.uniform(0.85, 1.1)
    neck_base = torso @ [0.0, -_SPINE * rng.uniform(0.9, 1.05)]
    feet = np.zeros((2, 2))
    for side, (sh, el, wr, hip, kn, an) in ((1, (5, 7, 9, 11, 13, 15)), (-1, (6, 8, 10, 12, 14, 16))):
        joints[sh] = neck_base + torso @ [side * shoulder_half, 0.0]
        joints[hip] = [side * hip_half, 0.0]
        upper, fore = _arm_angles(rng)
        joints[el] = joints[sh] + torso @ _outward(side, upper) * _UPPER_ARM * rng.uniform(0.75, 1)
        joints[wr] = joints[el] + torso @ _outward(side, fore) * _FOREARM * rng.uniform(0.75, 1)
        thigh, shank = _leg_angles(rng)
        joints[kn] = joints[hip] + _outward(side, thigh) * _THIGH * rng.uniform(0.8, 1)
        joints[an] = joints[kn] + _outward(side, shank) * _SHANK * rng.uniform(0.85, 1)
        feet[0 if side == 1 else 1] = joints[an] + _outward(side, 75) * _FOOT
    head_rot = torso @ _rot(rng.uniform(-20, 20))
    head = neck_base + head_rot @ [0.0, -(_NECK + _HEAD_R)]
    turn = rng.uniform(-0.15, 0.15)  # the face turned a little sideways
    face = {
        0: (0.6 * turn, 0.35),
        1: (turn + 0.45, -0.2),
        2: (turn - 0.45, -0.2),
        3: (1.0, 0.15),
        4: (-1.0, 0.15),
    }
    for j, offset in face.items():
        joints[j] = head + head_rot @ np.array(offset) * _HEAD_R
    whole = _rot(tilt)
    return _Figure(joints @ whole.T, head @ whole.T, feet @ whole.T, _HEAD_R, 1.0)


# --- drawing ------------------------------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates → cv2's fixed point (``shift=_SHIFT``), int32."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _point(xy: Any) -> tuple[int, int]:
    """One point in cv2's fixed point (plain floats: numpy would cost more than the drawing)."""
    return round(float(xy[0]) * _ONE), round(float(xy[1]) * _ONE)


class _ClassPainter:
    """The class map of a drawing, kept beside it: per pixel, the class of the last shape covering its centre
    and the share of the pixel's colour that this class makes (from each shape's anti-aliased coverage,
    which is the blend weight cv2 uses on the image)."""

    def __init__(self, height: int, width: int) -> None:
        self.label = np.full((height, width), BACKGROUND, np.uint8)
        self.share = np.ones((height, width), np.float32)
        self._cover = np.zeros((height, width), np.uint8)  # scratch: one shape's coverage, 0..255
        self._centre = np.zeros((height, width), np.uint8)  # scratch: the pixels whose centre it covers

    def paint(self, cls: int, kind: str, geom: Any) -> None:
        """Record one shape of class ``cls``, drawn (anti-aliased) on top of everything so far."""
        _shape(self._cover, kind, geom, 255, cv2.LINE_AA)
        _shape(self._centre, kind, geom, 1, cv2.LINE_8)
        boxes = [b for b in map(cv2.boundingRect, (self._cover, self._centre)) if b[2] and b[3]]
        if not boxes:
            return  # entirely outside the image
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
        win = np.s_[y0:y1, x0:x1]  # only the shape's box: a figure is ~40 small shapes
        alpha = self._cover[win].astype(np.float32) / 255.0
        centre = self._centre[win] > 0
        label, share = self.label[win], self.share[win]
        same = label == cls
        # Over its own class a shape adds to that class's share; over another class that share is taken
        # as 0 (it may be more where several classes mix), so doubt only ever widens the ignore band.
        grown = alpha + (1.0 - alpha) * np.where(same, share, 0.0)
        self.share[win] = np.where(centre | same, grown, (1.0 - alpha) * share)
        self.label[win] = np.where(centre, np.uint8(cls), label)
        self._cover[win] = 0
        self._centre[win] = 0

    def mask(self) -> np.ndarray:
        """[H, W] uint8 class indices, :data:`IGNORE_INDEX` where the class makes too little of the colour."""
        return np.where(self.share >= SEG_PURE_SHARE, self.label, np.uint8(IGNORE_INDEX)).astype(np.uint8)


@dataclasses.dataclass
class _Canvas:
    """The image and what the labels are read from: per-pixel code of the dot on top (0: not a dot), and
    for segmentation the class map."""

    image: np.ndarray  # [H, W, 3] uint8
    dots: np.ndarray  # [H, W] int32, person * K + joint + 1 where that dot is the last thing drawn
    painter: _ClassPainter | None = None

    def draw(self, silhouette: np.ndarray, kind: str, geom: Any, color: Any, code: int = 0) -> None:
        """Draw one shape on the image (anti-aliased), on ``silhouette`` (1) and on the dot map (``code``,
        0 for anything but a dot), each time on the pixels whose centre it covers."""
        _shape(self.image, kind, geom, tuple(int(c) for c in color), cv2.LINE_AA)
        _shape(silhouette, kind, geom, 1, cv2.LINE_8)
        _shape(self.dots, kind, geom, int(code), cv2.LINE_8)
        if self.painter is not None:
            self.painter.paint(PERSON, kind, geom)


def _shape(target: np.ndarray, kind: str, geom: Any, value: Any, line: int) -> None:
    """Draw a filled ``disc`` (centre, radius), ``line`` (a, b, thickness), ``poly`` [P, 2] or ``ellipse``
    (centre, half-axes, degrees) in pixels."""
    if kind == "disc":
        centre, radius = geom
        cv2.circle(target, _point(centre), round(radius * _ONE), value, -1, line, _SHIFT)
    elif kind == "line":
        a, b, thickness = geom
        width = max(1, round(thickness))
        cv2.line(target, _point(a), _point(b), value, width, line, _SHIFT)
    elif kind == "poly":
        cv2.fillPoly(target, [_fixed(geom)], value, line, _SHIFT)
    else:
        centre, axes, angle = geom
        axes = _point(axes)
        cv2.ellipse(target, _point(centre), axes, angle, 0, 360, value, -1, line, _SHIFT)


def _draw_figure(canvas: _Canvas, fig: _Figure, person: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one figure in pixels; returns its silhouette [H, W] uint8."""
    silhouette = np.zeros(canvas.dots.shape, np.uint8)
    h, j = fig.height, fig.joints
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
    shirt = _hsv(rng.uniform(0, 360), rng.uniform(0.15, 0.5), rng.uniform(0.3, 0.7))
    limb = dict(zip(LIMBS, LIMB_COLORS, strict=True))
    for hip, knee, ankle, foot in ((11, 13, 15, 0), (12, 14, 16, 1)):
        for a, b in ((hip, knee), (knee, ankle)):
            canvas.draw(silhouette, "line", (j[a], j[b], _LEG_T * h), limb[(a, b)])
        canvas.draw(silhouette, "line", (j[ankle], fig.feet[foot], _FOOT_T * h), limb[(knee, ankle)])
    canvas.draw(silhouette, "poly", j[[5, 6, 12, 11]], shirt)
    neck_base = (j[5] + j[6]) / 2
    canvas.draw(silhouette, "line", (neck_base, fig.head, _NECK_T * h), skin)
    canvas.draw(silhouette, "disc", (fig.head, fig.head_radius), skin)
    for a, b, thickness in (
        (5, 7, _UPPER_ARM_T),
        (7, 9, _FOREARM_T),
        (6, 8, _UPPER_ARM_T),
        (8, 10, _FOREARM_T),
    ):
        canvas.draw(silhouette, "line", (j[a], j[b], thickness * h), limb[(a, b)])
    body_r, face_r = max(1.5, 0.026 * h), max(1.5, 0.016 * h)
    ring = body_r + max(1.0, 0.012 * h)
    for joint in (11, 12, 13, 14, 15, 16, 5, 6, 7, 8, 9, 10):  # wrists last: hands are often in front
        canvas.draw(silhouette, "disc", (j[joint], ring), _RING)
        canvas.draw(
            silhouette, "disc", (j[joint], body_r), JOINT_COLORS[joint], person * NUM_JOINTS + joint + 1
        )
    for joint in (3, 4, 0, 1, 2):
        canvas.draw(
            silhouette, "disc", (j[joint], face_r), JOINT_COLORS[joint], person * NUM_JOINTS + joint + 1
        )
    return silhouette


def _muted_hsv(rng: np.random.Generator) -> tuple[float, float, float]:
    return rng.uniform(0, 360), rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.9)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    return _hsv(*_muted_hsv(rng))


def _class_color(cls: int, hue: float, sat: float, val: float) -> tuple[int, int, int]:
    """A shape's colour in the segmentation scenes: the muted draw (same random numbers) moved into its
    class's hue range (:data:`SEG_SHAPE_HUES`) and made vivid, saturation 0.55..0.8 and value 0.5..0.95."""
    lo, hi = SEG_SHAPE_HUES[SEG_CLASS_NAMES[cls]]
    return _hsv(lo + (hi - lo) * hue / 360.0, 0.55 + (sat - 0.05) * 0.625, 0.5 + (val - 0.25) * 0.7)


def _background(
    rng: np.random.Generator, width: int, height: int, *, painter: _ClassPainter | None = None
) -> np.ndarray:
    """[H, W, 3] uint8: a smooth two-colour gradient, sometimes a soft blob, then a few muted shapes."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * math.pi)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = (np.array(_muted(rng), np.float32) for _ in range(2))
    image = c0 + t[..., None] * (c1 - c0)
    if rng.random() < 0.5:
        cx, cy, sigma = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.15, 0.5) * width
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))[..., None]
        image = image * (1 - 0.6 * weight) + np.array(_muted(rng), np.float32) * (0.6 * weight)
    image = np.ascontiguousarray(image.round().astype(np.uint8))
    for _ in range(int(rng.integers(2, 8))):
        _random_patch(image, rng, size=rng.uniform(0.08, 0.4) * min(width, height), painter=painter)
    return image


def _random_patch(
    target: np.ndarray,
    rng: np.random.Generator,
    size: float,
    centre: np.ndarray | None = None,
    canvas: _Canvas | None = None,
    instance: np.ndarray | None = None,
    *,
    painter: _ClassPainter | None = None,
) -> None:
    """A muted rectangle or ellipse of about ``size`` px on ``target``; when it occludes figures, it is also
    drawn (as 0) on the canvas' dot map and on the ``instance`` mask. With a ``painter`` (by default the
    canvas'), it takes its class's colour instead and its class goes to the painter."""
    h, w = target.shape[:2]
    if centre is None:
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    half = np.array([size, size * rng.uniform(0.5, 1.5)]) / 2
    angle = rng.uniform(0, 180)
    hsv = _muted_hsv(rng)
    if rng.random() < 0.5:
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        geom, kind, cls = centre + corners @ _rot(angle).T, "poly", BOX
    else:
        geom, kind, cls = (centre, half, angle), "ellipse", BALL
    if canvas is not None:
        painter = painter or canvas.painter
    color = _hsv(*hsv) if painter is None else _class_color(cls, *hsv)
    _shape(target, kind, geom, color, cv2.LINE_AA)
    if canvas is not None:
        _shape(canvas.dots, kind, geom, 0, cv2.LINE_8)
    if instance is not None:
        _shape(instance, kind, geom, 0, cv2.LINE_8)
    if painter is not None:
        painter.paint(cls, kind, geom)


# --- scenes -------------------------------------------------------------------------------------------------


def _in_frame(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return (
        (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
    )


def _place(
    fig: _Figure, height_px: float, rng: np.random.Generator, width: int, height: int, cut: bool
) -> _Figure:
    """Scale the figure to ``height_px`` and move it into the image; ``cut``: partly past one edge."""
    x0, y0, x1, y1 = fig.extent() * height_px
    lo = np.array([-x0, -y0])
    hi = np.array([width - x1, height - y1])
    offset = np.where(hi >= lo, lo + rng.random(2) * np.maximum(hi - lo, 0), (lo + hi) / 2)
    if cut:
        edge = rng.choice(4, p=[0.5, 0.2, 0.2, 0.1])  # bottom, left, right, top
        size = np.array([x1 - x0, y1 - y0])
        past = rng.uniform(0.1, 0.45) * (size[0] if edge in (1, 2) else size[1])
        if edge == 0:
            offset[1] = height - y1 + past
        elif edge == 1:
            offset[0] = -x0 - past
        elif edge == 2:
            offset[0] = width - x1 + past
        else:
            offset[1] = -y0 - past
    return fig.transformed(height_px, offset)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _sample_people(rng: np.random.Generator, width: int, height: int, max_people: int) -> list[_Figure]:
    """Placed figures, far (small) to near (large); each has enough joints in the image, and no two
    overlap so much that one could vanish behind the other."""
    count = 1 if max_people == 1 or rng.random() < 0.4 else int(rng.integers(2, max_people + 1))
    lo, hi = (0.55, 0.95) if count == 1 else (0.35, 0.8)
    people: list[_Figure] = []
    for _ in range(count):
        for attempt in range(20):
            last = attempt == 19
            cut = rng.random() < 0.25 and not last  # the last try of the first figure always fits
            fig = _place(_sample_pose(rng), rng.uniform(lo, hi) * height, rng, width, height, cut)
            fig = _Figure(_fixed(fig.joints) / _ONE, fig.head, fig.feet, fig.head_radius, fig.height)
            enough = _in_frame(fig.joints, width, height).sum() >= _MIN_JOINTS_IN_FRAME
            apart = all(_iou(fig.extent(), other.extent()) < 0.35 for other in people)
            if (enough and apart) or (last and not people):
                people.append(fig)
                break
    return sorted(people, key=lambda f: f.height)


def render_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    max_people: int = 3,
    occluder_prob: float = 0.3,
) -> Scene:
    """Draw one image of 1..``max_people`` figures and return it with its labels and masks.

    One image in 40 % (when ``max_people > 1``) holds a single figure of 55-95 % of the image height; the
    others hold 2..``max_people`` figures of 35-80 %, partly overlapping; a quarter of the figures are
    partly out of the image.

    Args:
        rng: the only source of randomness.
        image_size: (W, H) in pixels, 64..4096 each.
        max_people: most figures in the image, 1..10 (at least one is always drawn).
        occluder_prob: chance that one or two patches are drawn over joints (in front of everything).
    """
    scene, _ = _render(rng, image_size, max_people, occluder_prob, classes=False)
    return scene


@dataclasses.dataclass(frozen=True)
class SegScene:
    """One rendered image with its class mask, and the pose labels of the same drawing.

    Attributes:
        scene: the labels of this drawing, read from it as :func:`render_scene` reads its own: the same
            keypoints, boxes, areas and masks as :func:`render_scene` gives for the same generator state; the
            image differs in the shapes' colours (and so, at most rarely, a joint's visibility where a shape's
            edge tints its dot).
        class_mask: [H, W] uint8, indices into :data:`SEG_CLASS_NAMES`, :data:`IGNORE_INDEX` on blended edges.
    """

    scene: Scene
    class_mask: np.ndarray

    @property
    def image(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB (the scene's image)."""
        return self.scene.image


def render_seg_scene(
    rng: np.random.Generator,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    max_people: int = 3,
    occluder_prob: float = 0.3,
) -> SegScene:
    """Draw the scene :func:`render_scene` draws with the same arguments and generator state, its rectangles
    and ellipses in their class colours, and label every pixel with its class (see the module docstring for
    the rule and the ignore band).

    Args: as :func:`render_scene`.
    """
    scene, painter = _render(rng, image_size, max_people, occluder_prob, classes=True)
    assert painter is not None
    return SegScene(scene, painter.mask())


def _render(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    max_people: int,
    occluder_prob: float,
    *,
    classes: bool,
) -> tuple[Scene, _ClassPainter | None]:
    """The scene, and with ``classes`` the class map beside it. The map draws no random numbers, so the scene
    is the same either way, but for the shapes' colours."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy Generator, got {type(rng).__name__}; pass np.random.default_rng(seed)"
        )
    width, height = _check_image_size(image_size)
    max_people = _check_int(max_people, "max_people", 1, _MAX_PEOPLE)
    if not 0 <= occluder_prob <= 1:
        raise ValueError(f"occluder_prob must be a probability in [0, 1], got {occluder_prob!r}")
    painter = _ClassPainter(height, width) if classes else None
    background = _background(rng, width, height, painter=painter)
    canvas = _Canvas(background, np.zeros((height, width), np.int32), painter)
    people = _sample_people(rng, width, height, max_people)
    instance = np.zeros((height, width), np.int32)
    silhouettes = []
    for person, fig in enumerate(people):
        silhouette = _draw_figure(canvas, fig, person, rng)
        instance[silhouette > 0] = person + 1
        silhouettes.append(silhouette > 0)
    if people and rng.random() < occluder_prob:
        for _ in range(int(rng.integers(1, 3))):
            fig = people[int(rng.integers(len(people)))]
            inside = np.flatnonzero(_in_frame(fig.joints, width, height))
            size = max(4.0, rng.uniform(0.08, 0.16) * fig.height)
            centre = fig.joints[rng.choice(inside)] + rng.uniform(-0.3, 0.3, 2) * size
            _random_patch(canvas.image, rng, size, centre, canvas, instance)
    sigma = rng.uniform(0.5, 3.0)  # mild sensor noise
    noisy = canvas.image + rng.standard_normal(canvas.image.shape, dtype=np.float32) * sigma
    image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    scene = _labels(canvas, people, silhouettes, instance)
    return dataclasses.replace(scene, image=image), painter


def _labels(
    canvas: _Canvas, people: list[_Figure], silhouettes: list[np.ndarray], instance: np.ndarray
) -> Scene:
    """Labels read from the drawing: a joint is visible when its own dot is on top at its pixel, untinted."""
    height, width = canvas.dots.shape
    n = len(people)
    keypoints = np.zeros((n, NUM_JOINTS, 2))
    visibility = np.zeros((n, NUM_JOINTS), np.int64)
    boxes = np.zeros((n, 4))
    areas = np.zeros(n)
    for person, (fig, silhouette) in enumerate(zip(people, silhouettes, strict=True)):
        inside = _in_frame(fig.joints, width, height)
        cols, rows = np.round(fig.joints[inside]).astype(int).T
        joints = np.flatnonzero(inside)
        on_top = canvas.dots[rows, cols] == person * NUM_JOINTS + joints + 1
        tint = np.abs(canvas.image[rows, cols].astype(int) - JOINT_COLORS[joints]).max(axis=1)
        shown = on_top & (tint <= _TINT)
        visibility[person, inside] = np.where(shown, 2, 1)
        keypoints[person, inside] = fig.joints[inside]
        ys, xs = np.nonzero(silhouette)
        x0, y0 = max(0, xs.min() - _BOX_MARGIN), max(0, ys.min() - _BOX_MARGIN)
        x1, y1 = min(width, xs.max() + 1 + _BOX_MARGIN), min(height, ys.max() + 1 + _BOX_MARGIN)
        boxes[person] = (x0, y0, x1 - x0, y1 - y0)
        areas[person] = float(silhouette.sum())
    masks = np.stack(silhouettes) if silhouettes else np.zeros((0, height, width), bool)
    return Scene(canvas.image, keypoints, visibility, boxes, areas, masks, instance)


# --- the COCO folder ----------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < low
        or (high and value > high)
    ):
        upper = f" and at most {high}" if high else ""
        raise ValueError(f"{name} must be an integer of at least {low}{upper}, got {value!r}")
    return int(value)


def _check_image_size(image_size: Any) -> tuple[int, int]:
    try:
        width, height = image_size
    except (TypeError, ValueError):
        width = height = None
    ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (width, height))
    if not ok or min(width, height) < _MIN_IMAGE_SIDE or max(width, height) > 4096:
        raise ValueError(
            f"image_size must be (width, height) with integers from {_MIN_IMAGE_SIDE} to 4096, got "
            f"{image_size!r}; e.g. image_size={DEFAULT_IMAGE_SIZE}"
        )
    return int(width), int(height)


_MARKERS = {"pose": README_MARKER, "segmentation": SEG_README_MARKER}


def _generated_kind(folder: Path) -> str | None:
    """``"pose"`` or ``"segmentation"`` when ``folder`` holds a dataset written here (its README's marker)."""
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    except OSError:
        return None
    return next((kind for kind, marker in _MARKERS.items() if marker in text), None)


def _check_target(out: Path, overwrite: bool, kind: str = "pose") -> None:
    """Refuse a file, a non-empty folder unless ``overwrite``, and even then any folder but a ``kind`` dataset
    written here: a pose dataset never replaces a segmentation one, nor the other way round."""
    if out.exists() and not out.is_dir():
        raise DatasetExistsError(f"{out} is a file, not a folder; choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DatasetExistsError(
            f"{out} exists and is not empty; pass overwrite=True (CLI: --overwrite) or choose another --out"
        )
    found = _generated_kind(out)
    if found is None:
        raise DatasetExistsError(
            f"{out} exists and is not a psa_zoo synthetic dataset (no README.md with its marker), so "
            "overwrite=True would delete files that are not ours; remove it yourself or choose another --out"
        )
    if found != kind:
        raise DatasetExistsError(
            f"{out} holds a psa_zoo synthetic {found} dataset, and overwrite=True only replaces a {kind} "
            "dataset; remove it yourself or choose another --out"
        )


def _annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """The COCO annotations of one scene, ids from ``first_id``."""
    annotations = []
    for person in range(scene.num_people):
        flat = np.concatenate([scene.keypoints[person], scene.visibility[person][:, None]], axis=1)
        annotations.append(
            {
                "id": first_id + person,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [float(v) for v in scene.boxes[person]],
                "area": float(scene.areas[person]),
                "iscrowd": 0,
                "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(flat.ravel())],
                "num_keypoints": int((scene.visibility[person] > 0).sum()),
            }
        )
    return annotations


def _split_json(
    split: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINT_SET.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINT_SET.skeleton],
    }
    info = {
        "description": f"psa_zoo synthetic pose dataset, {split}",
        "version": __version__,
        "contributor": "generated by psa_zoo.data.synthetic.make_pose_dataset",
    }
    licenses = [{"id": 1, "name": "Generated data: may be used freely, no restrictions", "url": ""}]
    return {
        "info": info,
        "licenses": licenses,
        "images": images,
        "annotations": annotations,
        "categories": [category],
    }


def _readme(
    seed: int, image_size: tuple[int, int], max_people: int, counts: dict[str, tuple[int, int]], args: str
) -> str:
    width, height = image_size
    splits = "\n".join(f"- `{s}/`: {n} images, {p} people" for s, (n, p) in counts.items())
    return f"""{README_MARKER}
# Synthetic pose dataset (psa_zoo)

Synthetic stick figures labelled with the 17 COCO person keypoints — not photographs of people. Generated by
psa_zoo {__version__} (`psa_zoo.data.synthetic.make_pose_dataset`) with seed {seed}: {width}×{height} images,
1 to {max_people} figures each.

{splits}
- `annotations/person_keypoints_{{train,val}}2017.json`: COCO keypoint annotations (visibility 2 visible,
  1 covered, 0 outside the image with x = y = 0; bbox = silhouette box + 2 px; area = silhouette pixels).

Each keypoint is drawn as a dot of its own colour; figures face the viewer (a figure's left is on the image
right). With the same numpy and OpenCV versions, this call writes identical files again:

    from psa_zoo.data.synthetic import make_pose_dataset
    make_pose_dataset(out, {args})

License: the generated data may be used freely, for any purpose, without restrictions.
"""


def make_pose_dataset(
    out_dir: str | Path,
    *,
    num_train: int = 400,
    num_val: int = 100,
    seed: int = 0,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    max_people: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic COCO-keypoints dataset to ``out_dir`` and return it.

    Layout: ``annotations/person_keypoints_{train,val}2017.json``, ``train2017/*.png``, ``val2017/*.png`` and
    a ``README.md`` (see the module docstring for what is drawn and how it is labelled). The defaults take a
    few seconds (500 images, about 28 MB). An existing non-empty ``out_dir`` is an error unless
    ``overwrite``, and even then only a folder this function wrote is replaced.

    Args:
        out_dir: the folder to create.
        num_train / num_val: images per split (≥ 1).
        seed: non-negative integer; the same arguments give byte-identical files.
        image_size: (W, H) of every image, 64..4096 each.
        max_people: most figures per image, 1..10.
        overwrite: replace ``out_dir`` if it holds a dataset written here.

    Raises:
        ValueError: a bad argument.
        DatasetExistsError: (a ``FileExistsError`` and ``ValueError``) ``out_dir`` may not be replaced.
    """
    num_train = _check_int(num_train, "num_train", 1)
    num_val = _check_int(num_val, "num_val", 1)
    seed = _check_int(seed, "seed", 0)
    image_size = _check_image_size(image_size)
    max_people = _check_int(max_people, "max_people", 1, _MAX_PEOPLE)
    overwrite = _check_overwrite(overwrite)

    def fill(tmp: Path) -> None:
        counts = {}
        streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
        for split, stream, count in zip(SPLITS, streams, (num_train, num_val), strict=True):
            counts[split] = _write_split(tmp, split, stream, count, image_size, max_people)
        args = (
            f"num_train={num_train}, num_val={num_val}, seed={seed}, image_size={image_size}, "
            f"max_people={max_people}"
        )
        (tmp / "README.md").write_text(_readme(seed, image_size, max_people, counts, args), encoding="utf-8")

    _write_folder(Path(out_dir).absolute(), overwrite, "pose", fill)
    return Path(out_dir)


def _check_overwrite(overwrite: Any) -> bool:
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}")
    return overwrite


def _write_folder(out: Path, overwrite: bool, kind: str, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write a hidden folder beside ``out``, then rename it into place: whole or not at all."""
    _check_target(out, overwrite, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_MARK}", dir=out.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        _check_target(out, overwrite, kind)  # nobody filled it meanwhile
        _put_in_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_split(
    root: Path,
    split: str,
    stream: np.random.SeedSequence,
    count: int,
    image_size: tuple[int, int],
    max_people: int,
) -> tuple[int, int]:
    """Render and write one split's PNGs and json; returns (images, people)."""
    image_dir = root / split
    image_dir.mkdir()
    (root / "annotations").mkdir(exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, child in enumerate(stream.spawn(count)):
        scene = render_scene(np.random.default_rng(child), image_size, max_people)
        image_id = index + 1
        name = f"{image_id:012d}.png"
        if not cv2.imwrite(str(image_dir / name), scene.image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {image_dir / name}")
        width, height = image_size
        images.append({"id": image_id, "file_name": name, "width": width, "height": height, "license": 1})
        annotations += _annotations(scene, image_id, len(annotations) + 1)
    text = json.dumps(_split_json(split, images, annotations), separators=(",", ":")) + "\n"
    (root / "annotations" / f"person_keypoints_{split}.json").write_text(text, encoding="utf-8")
    return count, len(annotations)


# --- the segmentation folder --------------------------------------------------------------------------------


def make_seg_dataset(
    out_dir: str | Path,
    *,
    num_train: int = 300,
    num_val: int = 60,
    seed: int = 0,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic semantic segmentation dataset to ``out_dir`` (own-data layout) and return it.

    Layout::

        images/{train,val}/000001.png   # [H, W, 3] RGB, 1 to 3 figures among rectangles and ellipses
        masks/{train,val}/000001.png    # [H, W] palette PNG ("P"): class index per pixel, 255 = ignore
        classes.json                    # {"class_names", "palette": [[r, g, b], ...], "ignore_index": 255}
        README.md

    The classes are :data:`SEG_CLASS_NAMES` with the colours :data:`SEG_PALETTE` (see the module docstring for
    how each pixel is labelled and where 255 goes). The scenes are those of :func:`make_pose_dataset` with the
    same ``seed`` and ``image_size`` (and ``max_people=3``), the shapes in their class colours. The defaults
    take a few seconds (360 images, about 20 MB). An existing non-empty ``out_dir`` is an error unless
    ``overwrite``, and even then only a segmentation folder this function wrote is replaced (never a pose
    one).

    Args:
        out_dir: the folder to create.
        num_train / num_val: images per split (≥ 1).
        seed: non-negative integer; the same arguments give byte-identical files.
        image_size: (W, H) of every image, 64..4096 each.
        overwrite: replace ``out_dir`` if it holds a segmentation dataset written here.

    Raises:
        ValueError: a bad argument.
        DatasetExistsError: (a ``FileExistsError`` and ``ValueError``) ``out_dir`` may not be replaced.
    """
    num_train = _check_int(num_train, "num_train", 1)
    num_val = _check_int(num_val, "num_val", 1)
    seed = _check_int(seed, "seed", 0)
    image_size = _check_image_size(image_size)
    overwrite = _check_overwrite(overwrite)

    def fill(tmp: Path) -> None:
        pixels = {}
        streams = np.random.SeedSequence(seed).spawn(len(SEG_SPLITS))  # as the pose splits: the same scenes
        for split, stream, count in zip(SEG_SPLITS, streams, (num_train, num_val), strict=True):
            pixels[split] = _write_seg_split(tmp, split, stream, count, image_size)
        classes = {
            "class_names": list(SEG_CLASS_NAMES),
            "palette": [list(c) for c in SEG_PALETTE],
            "ignore_index": IGNORE_INDEX,
        }
        (tmp / "classes.json").write_text(_classes_json(classes), encoding="utf-8")
        args = f"num_train={num_train}, num_val={num_val}, seed={seed}, image_size={image_size}"
        counts = {"train": num_train, "val": num_val}
        (tmp / "README.md").write_text(_seg_readme(seed, image_size, counts, pixels, args), encoding="utf-8")

    _write_folder(Path(out_dir).absolute(), overwrite, "segmentation", fill)
    return Path(out_dir)


def _classes_json(classes: dict[str, Any]) -> str:
    """``classes.json`` with one line per class colour."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in classes.items() if k != "palette"]
    colors = ",\n".join(f"    {json.dumps(c)}" for c in classes["palette"])
    lines.insert(1, f'  "palette": [\n{colors}\n  ]')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _mask_palette() -> list[int]:
    """The 256-entry PNG palette of the masks: the class colours, VOC's cream for the ignore index."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(SEG_PALETTE)] = SEG_PALETTE
    palette[IGNORE_INDEX] = IGNORE_COLOR
    return palette.ravel().tolist()


def _write_seg_split(
    root: Path, split: str, stream: np.random.SeedSequence, count: int, image_size: tuple[int, int]
) -> np.ndarray:
    """Render and write one split's images and masks; returns the pixel count of each class and of 255."""
    image_dir, mask_dir = root / "images" / split, root / "masks" / split
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    palette = _mask_palette()
    pixels = np.zeros(len(SEG_CLASS_NAMES) + 1, np.int64)
    for index, child in enumerate(stream.spawn(count)):
        seg = render_seg_scene(np.random.default_rng(child), image_size)
        name = f"{index + 1:06d}.png"
        if not cv2.imwrite(str(image_dir / name), seg.image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {image_dir / name}")
        mask = Image.fromarray(seg.class_mask)  # mode "L"; the palette makes it "P"
        mask.putpalette(palette)
        mask.save(mask_dir / name, format="PNG")
        values = np.bincount(seg.class_mask.ravel(), minlength=256)
        pixels += np.append(values[: len(SEG_CLASS_NAMES)], values[IGNORE_INDEX])
    return pixels


def _seg_readme(
    seed: int,
    image_size: tuple[int, int],
    counts: dict[str, int],
    pixels: dict[str, np.ndarray],
    args: str,
) -> str:
    width, height = image_size
    splits = "\n".join(f"- `images/{s}/`, `masks/{s}/`: {n} images each" for s, n in counts.items())
    header = "| index | class | mask colour | " + " | ".join(f"{s} pixels" for s in pixels) + " |"
    rows = [header, "|---|---|---|" + "---|" * len(pixels)]
    shares = {s: p / max(int(p.sum()), 1) for s, p in pixels.items()}
    for index, (name, color) in enumerate(
        [*zip(SEG_CLASS_NAMES, SEG_PALETTE, strict=True), ("(ignore)", IGNORE_COLOR)]
    ):
        label = IGNORE_INDEX if index == len(SEG_CLASS_NAMES) else index
        cells = " | ".join(f"{100 * shares[s][index]:.1f} %" for s in pixels)
        rows.append(f"| {label} | {name} | {tuple(color)} | {cells} |")
    table, pure = "\n".join(rows), round(100 * SEG_PURE_SHARE)
    return f"""{SEG_README_MARKER}
# Synthetic segmentation dataset (psa_zoo)

Synthetic stick figures, rectangles and ellipses on smooth backgrounds, labelled per pixel — not photographs
of people. Generated by psa_zoo {__version__} (`psa_zoo.data.synthetic.make_seg_dataset`) with seed {seed}:
{width}×{height} images, 1 to 3 figures each. They are the scenes of the synthetic pose dataset with the same
seed, but that the rectangles (`box`) are drawn blue to violet and the ellipses (`ball`) yellow to orange.

{splits}
- `classes.json`: class names, palette and the ignore index (255).

Masks are palette PNGs: the pixel values are the class indices (read them without converting to RGB).

{table}

A pixel takes the class of the last shape drawn over its centre. Where that class makes less than {pure} %
of the pixel's colour (the anti-aliased edges between classes, about one pixel wide), the mask holds 255, to
be ignored by the loss and the metric as Pascal VOC's border pixels are. With the same numpy, OpenCV, Pillow
and zlib versions, this call writes identical files again:

    from psa_zoo.data.synthetic import make_seg_dataset
    make_seg_dataset(out, {args})

License: the generated data may be used freely, for any purpose, without restrictions.
"""
