"""Shared test fixtures: real-data locations, geometry helpers, tool availability."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: ``../shared`` beside the checkout (CI has it; a user's checkout may not). Override with MEDCONVERT_SHARED.
SHARED = Path(os.environ.get("MEDCONVERT_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "conformance"


def conformance_dir(name: str) -> Path:
    """Path to ``../shared/conformance/<name>``, or skip the test cleanly when absent."""
    path = CONFORMANCE / name
    if not path.is_dir():
        pytest.skip(f"real-data set {name} not available (needs ../shared/conformance)")
    return path


def require_tool(name: str) -> str:
    """Absolute path of command-line tool ``name``, or skip with a reason."""
    found = shutil.which(name)
    if not found:
        pytest.skip(f"command-line tool '{name}' is not installed")
    return found


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """3x3 rotation matrix from angles (radians) about x, then y, then z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_affine(spacing=(0.8, 1.1, 2.5), origin=(-91.5, 12.25, 40.0), angles=(0.3, -0.2, 0.45)) -> np.ndarray:
    """An oblique, non-isotropic RAS+ affine (rotation x spacing, no shear): what scanners produce."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def oblique() -> np.ndarray:
    return oblique_affine()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
