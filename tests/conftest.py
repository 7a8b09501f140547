"""Shared test fixtures. ``../shared`` (beside the checkpoint) holds official-format fixtures; tests that
need it skip cleanly when it is absent (a user's fresh clone has none) — except under ``CI=true``, where a
missing ``../shared`` fails them: a green CI must mean the fidelity tests ran."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {SHARED_DIR} is absent: the fidelity tests cannot run")
        pytest.skip("../shared is absent (official-format fixtures are only in the development checkout)")
    return SHARED_DIR


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ (Frobenius), in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in: a chmod 555 one, or (as root, who ignores modes) /sys."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for candidate in (folder, Path("/sys")):
            try:
                with tempfile.TemporaryFile(dir=candidate):
                    pass
            except OSError:
                yield candidate
                return
        pytest.skip("no read-only folder on this machine")
    finally:
        folder.chmod(0o755)


def cli_error_line(capsys, argv: list[str]) -> str:
    """Run ``psa-zoo argv`` expecting a usage error; return its single stderr line (stdout must be empty:
    nothing ran, not even the benchmarks' "Machine:" line)."""
    from psa_zoo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"psa-zoo {argv[0]}: error: ") and "Traceback" not in captured.err
    return lines[0]
