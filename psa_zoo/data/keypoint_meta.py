"""A dataset's keypoint record from its COCO category and the small ``keypoint_meta.json`` beside it.

A COCO keypoint annotation file names its keypoints (``categories[i]["keypoints"]``) and its limbs
(``categories[i]["skeleton"]``, 1-based), but not what training and evaluation also need: which keypoints
swap under a horizontal flip, the OKS sigmas of COCO evaluation, loss weights, half-body groups. For the COCO
person keypoints those come from :data:`psa_zoo.labels.COCO_KEYPOINT_SET`; for a dataset of one's own they
come from ``keypoint_meta.json`` in the same folder as the annotation file (one file serves the train and
val jsons there), a JSON object with these optional fields::

    {
      "name": "mouse",
      "flip_pairs": [["left_ear", "right_ear"], [3, 4]],    # names or 0-based indices
      "sigmas": [0.025, 0.035, 0.035, 0.05, 0.05],          # one OKS sigma per keypoint
      "joint_weights": [1, 1, 1, 1.5, 1.5],                 # one loss weight per keypoint
      "upper_body": ["nose", "left_ear", "right_ear"],      # names or 0-based indices
      "lower_body": [3, 4]
    }

Flip pairs not given are inferred from the names, for names that follow one of three patterns (the side
marker in lower case, capitalised or upper case; the separator ``_``, ``-`` or a space):

* ``left_X`` ↔ ``right_X``
* ``l_X`` ↔ ``r_X``
* ``X_left`` ↔ ``X_right``

A name is paired when it follows exactly one pattern and its partner (the same name with the side marker
swapped) is among the names and follows exactly one pattern too. Anything else (``X_l``, ``leftX``, a name
matching two patterns such as ``l_knee_left``, a partner missing) stays unpaired, i.e. maps to itself under a
flip; write ``flip_pairs`` when that is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..labels import COCO_KEYPOINT_SET
from ..metadata import KeypointSet

__all__ = [
    "META_FIELDS",
    "META_FILE_NAME",
    "KeypointMetaError",
    "infer_flip_pairs",
    "keypoint_set_from_category",
    "load_keypoint_meta",
]

META_FILE_NAME = "keypoint_meta.json"
META_FIELDS = ("name", "flip_pairs", "sigmas", "joint_weights", "upper_body", "lower_body")

# (regex, replacement builder): the marker word is group "side"; "sep" the separator.
_SIDES = {"left": "right", "right": "left", "l": "r", "r": "l"}
_PATTERNS = (
    re.compile(r"^(?P<side>left|right)(?P<sep>[_\- ])(?P<rest>.+)$", re.IGNORECASE),
    re.compile(r"^(?P<side>l|r)(?P<sep>[_\- ])(?P<rest>.+)$", re.IGNORECASE),
    re.compile(r"^(?P<rest>.+)(?P<sep>[_\- ])(?P<side>left|right)$", re.IGNORECASE),
)


class KeypointMetaError(ValueError):
    """A keypoint category or ``keypoint_meta.json`` that cannot make a :class:`KeypointSet`."""


def load_keypoint_meta(folder: str | Path) -> dict[str, Any] | None:
    """Read ``folder/keypoint_meta.json``; ``None`` when there is none.

    Raises :class:`KeypointMetaError` (naming the file) for a file that is not JSON, not a JSON object, or
    has fields other than :data:`META_FIELDS`. Values are checked by :func:`keypoint_set_from_category`.
    """
    path = Path(folder) / META_FILE_NAME
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KeypointMetaError(f"{path} is not valid JSON ({err}); fix or remove the file") from None
    _check_meta_fields(meta, path)
    return meta


def keypoint_set_from_category(
    category: Mapping[str, Any], meta: Mapping[str, Any] | None, source: str
) -> KeypointSet:
    """The :class:`KeypointSet` of one COCO keypoint category, completed by ``keypoint_meta.json``.

    Args:
        category: a ``categories`` entry with ``keypoints`` (K names) and optionally ``skeleton``
            (1-based index pairs, converted to 0-based).
        meta: the parsed ``keypoint_meta.json`` (see :func:`load_keypoint_meta`) or ``None``.
        source: the annotation file the category comes from; messages name it, and name
            ``<its folder>/keypoint_meta.json`` as the place for missing fields.

    When the names are the 17 COCO names in COCO order, flip pairs, sigmas, joint weights and half-body
    groups default to :data:`~psa_zoo.labels.COCO_KEYPOINT_SET`'s and the name to ``"coco"``. Otherwise flip
    pairs are inferred from the names (module docstring), joint weights default to 1, half-body groups to
    none, and the OKS sigmas must be given. Fields of ``meta`` override the defaults.

    Raises:
        KeypointMetaError: no keypoint names, a skeleton index out of 1..K, sigmas missing for a
            non-COCO set, unknown meta fields, wrong lengths, unknown names or indices.
    """
    meta_path = Path(source).parent / META_FILE_NAME
    where = f"category id {category.get('id')!r} in {source}"
    names = _category_names(category, where)
    k = len(names)
    skeleton = _category_skeleton(category, k, where)
    meta = dict(meta or {})
    _check_meta_fields(meta, meta_path)

    if names == COCO_KEYPOINT_SET.keypoint_names:
        fields = {**COCO_KEYPOINT_SET.to_dict(), "skeleton": skeleton or COCO_KEYPOINT_SET.skeleton}
    else:
        fields = {
            "name": str(category.get("name") or meta_path.parent.name or "custom"),
            "keypoint_names": names,
            "skeleton": skeleton,
            "flip_pairs": infer_flip_pairs(names),
        }
        if "sigmas" not in meta:
            raise KeypointMetaError(
                f'K={k} keypoints and no OKS sigmas: add "sigmas": [...] ({k} values) to {meta_path}; '
                "COCO uses 0.025–0.107 (small for precise points like eyes, large for hips); "
                f"needed for {where}"
            )

    lookup = {name: i for i, name in enumerate(names)}
    if "name" in meta:
        fields["name"] = str(meta["name"])
    if "flip_pairs" in meta:
        fields["flip_pairs"] = _meta_pairs(meta["flip_pairs"], lookup, meta_path)
    for key in ("sigmas", "joint_weights"):
        if key in meta:
            fields[key] = _meta_floats(meta[key], key, k, meta_path)
    for key in ("upper_body", "lower_body"):
        if key in meta:
            fields[key] = _meta_indices(meta[key], key, lookup, meta_path)
    try:
        return KeypointSet(**fields)
    except ValueError as err:  # e.g. a sigma ≤ 0 or a keypoint in two flip pairs
        raise KeypointMetaError(f"{meta_path}: {err}") from None


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """0-based (left, right) pairs inferred from names by the patterns of the module docstring.

    Pairs are ordered by the index of their left keypoint.
    """
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        parsed = _side_partner(name)
        if parsed is None or parsed[0] != "left":
            continue
        j = index.get(parsed[1])
        if j is not None and _side_partner(names[j]) == ("right", name):
            pairs.append((i, j))
    return tuple(pairs)


def _side_partner(name: str) -> tuple[str, str] | None:
    """("left" or "right", the partner's name) when ``name`` follows exactly one pattern, else None."""
    matches = [m for m in (p.match(name) for p in _PATTERNS) if m]
    if len(matches) != 1:
        return None
    match = matches[0]
    side = match["side"]
    other = _SIDES[side.lower()]
    if side.isupper():  # "LEFT" → "RIGHT", "L" → "R"
        other = other.upper()
    elif side[0].isupper():  # "Left" → "Right"
        other = other.capitalize()
    start, end = match.span("side")
    partner = name[:start] + other + name[end:]
    return ("left" if side.lower() in ("left", "l") else "right"), partner


def _check_meta_fields(meta: Any, path: Path) -> None:
    if not isinstance(meta, Mapping):
        raise KeypointMetaError(
            f"{path} must hold a JSON object with fields {list(META_FIELDS)}, got {type(meta).__name__}"
        )
    unknown = sorted(set(meta) - set(META_FIELDS))
    if unknown:
        raise KeypointMetaError(
            f"{path} has unknown fields {unknown}; the known fields are {list(META_FIELDS)} (all optional)"
        )


def _category_names(category: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise KeypointMetaError(
            f'{where} has no keypoint names: a keypoint category needs "keypoints": [name, ...], '
            f"got {names!r}"
        )
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise KeypointMetaError(f"{where}: keypoint names must be unique, {dupes} appear more than once")
    return tuple(names)


def _category_skeleton(category: Mapping[str, Any], k: int, where: str) -> tuple[tuple[int, int], ...]:
    skeleton = category.get("skeleton") or []
    if not isinstance(skeleton, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(_is_int(i) for i in p) for p in skeleton
    ):
        raise KeypointMetaError(
            f'{where}: "skeleton" must be a list of [a, b] index pairs (1-based), got {skeleton!r}'
        )
    bad = [list(p) for p in skeleton if not all(1 <= i <= k for i in p)]
    if bad:
        raise KeypointMetaError(
            f"{where}: skeleton pairs {bad[:5]} are out of range; COCO skeleton indices are 1-based "
            f"(1..{k} for {k} keypoints): if the file uses 0-based indices, add 1 to each"
        )
    return tuple((a - 1, b - 1) for a, b in skeleton)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_index(value: Any, key: str, lookup: Mapping[str, int], path: Path) -> int:
    """A keypoint given by name or 0-based index → its index."""
    k = len(lookup)
    if isinstance(value, str):
        if value not in lookup:
            raise KeypointMetaError(
                f'{path}: "{key}" names keypoint {value!r}, which is not one of the annotation file\'s '
                f"keypoints {list(lookup)}"
            )
        return lookup[value]
    if _is_int(value) and 0 <= value < k:
        return value
    raise KeypointMetaError(
        f'{path}: "{key}" entry {value!r} is neither a keypoint name nor a 0-based index 0..{k - 1}'
    )


def _meta_pairs(values: Any, lookup: Mapping[str, int], path: Path) -> tuple[tuple[int, int], ...]:
    if not isinstance(values, list) or not all(isinstance(p, list) and len(p) == 2 for p in values):
        raise KeypointMetaError(
            f'{path}: "flip_pairs" must be a list of [a, b] pairs (names or 0-based indices), got {values!r}'
        )
    return tuple(
        (_meta_index(a, "flip_pairs", lookup, path), _meta_index(b, "flip_pairs", lookup, path))
        for a, b in values
    )


def _meta_indices(values: Any, key: str, lookup: Mapping[str, int], path: Path) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise KeypointMetaError(f'{path}: "{key}" must be a list of names or 0-based indices, got {values!r}')
    return tuple(_meta_index(v, key, lookup, path) for v in values)


def _meta_floats(values: Any, key: str, k: int, path: Path) -> tuple[float, ...]:
    numbers = isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
    if not numbers or len(values) != k:
        found = f"{len(values)} values" if isinstance(values, list) else repr(values)
        raise KeypointMetaError(
            f'{path}: "{key}" must be a list of {k} numbers (one per keypoint, in the order of the '
            f'annotation file\'s "keypoints"), found {found}'
        )
    return tuple(float(v) for v in values)
