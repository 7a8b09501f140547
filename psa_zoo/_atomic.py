"""Files written whole or not at all.

Every file psa_zoo writes for a user (JSON reports and metrics, CSV tables, PNG images) goes through
:func:`replace_atomically`: the content is written to ``.NAME.tmp`` beside the target, flushed to disk, and
renamed over the target in one step, then the folder entry is flushed too. A reader (or a run killed at any
moment) sees the old file or the new one, never a part; a failed write leaves the old file as it was and
no temporary behind. Folders of files (saved models, checkpoints, exports) have their own protocol in
``models/_serialization.py``, ``train/checkpoint.py`` and ``export.py``, built on the same two steps.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "replace_atomically", "temporary_name", "write_json_atomic", "write_text_atomic"]


def temporary_name(path: Path) -> Path:
    """Where the content of ``path`` is written before the rename: ``.NAME.tmp`` in the same folder (the
    same file system, so the rename is atomic; hidden, so listings and globs skip it)."""
    return path.with_name(f".{path.name}.tmp")


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform can open folders."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to create the new content in a temporary file, then put it at ``path`` in one
    rename. Returns ``path``. Whatever ``write`` raises propagates, with the temporary removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, via :func:`replace_atomically`."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: Any, **dump_options: Any) -> Path:
    """``data`` as JSON at ``path``, via :func:`replace_atomically`. ``dump_options`` go to ``json.dumps``
    over the defaults ``indent=2``, ``ensure_ascii=False`` and ``default=str`` (a path or another value JSON
    has no type for is written as its string)."""
    text = json.dumps(data, **{"indent": 2, "ensure_ascii": False, "default": str, **dump_options})
    return write_text_atomic(path, text + "\n")
