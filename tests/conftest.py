"""Shared test fixtures. ``../shared`` (beside the checkpoint) holds official-format fixtures; tests that
need it skip cleanly when it is absent (a user's fresh clone has none) — except under ``CI=true``, where a
missing ``../shared`` fails them: a green CI must mean the fidelity tests ran."""

from __future__ import annotations

import os
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
