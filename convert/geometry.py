"""Every geometry conversion medconvert does, in one place.

Conventions (see ``docs/coordinates.md``):

* An affine is a 4x4 float64 matrix mapping voxel indices ``(i, j, k, 1)`` to
  world millimetres. ``Volume.affine`` maps to **RAS+** (+x right, +y anterior,
  +z superior: NIfTI/nibabel). DICOM, ITK and most NRRD files use **LPS+**
  (+x left, +y posterior, +z superior); the only conversions between the two are
  :func:`lps_to_ras` / :func:`ras_to_lps` (and :func:`lps_to_ras_point` for
  points and directions). :func:`affine_to_ras` maps the other frames a file
  may declare (LPS, LAS, RAS).
* ``origin`` is the world position of voxel ``(0, 0, 0)`` (mm), ``spacing`` the
  length of each voxel axis (mm), ``direction`` the 3x3 matrix whose column
  ``n`` is the unit vector of voxel axis ``n`` (:func:`affine_from_geometry`,
  :func:`geometry_from_affine`).
* Orientation codes name where each voxel axis points (``"RAS"``: i increases
  towards Right, j towards Anterior, k towards Superior): :func:`orientation_code`,
  :func:`check_code`.
* DICOM slices (PS3.3 C.7.6.2, LPS+): ImageOrientationPatient = (row cosine,
  column cosine); the row cosine is the direction of increasing column index
  (our ``i``), the column cosine that of increasing row index (``j``);
  PixelSpacing = (between rows = along ``j``, between columns = along ``i``).
  The slice normal is ``cross(row, col)`` (:func:`slice_normal`); a stack's
  affine is :func:`stack_affine_lps` / :func:`slice_affine_lps`.

This module imports nothing from medconvert except :mod:`convert.errors`.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from convert.errors import GeometryError, UnsupportedDataError

#: Flip between LPS+ and RAS+ world coordinates (its own inverse).
LPS_RAS_FLIP: np.ndarray = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_RAS_FLIP.setflags(write=False)

#: Flip between LAS+ and RAS+ world coordinates (x negated; its own inverse).
LAS_RAS_FLIP: np.ndarray = np.diag([-1.0, 1.0, 1.0, 1.0])
LAS_RAS_FLIP.setflags(write=False)


# --------------------------------------------------------------------------- world frames
def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel->LPS+ affine (DICOM/ITK) to voxel->RAS+ (NIfTI). Returns a new array."""
    return LPS_RAS_FLIP @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel->RAS+ affine to voxel->LPS+. Returns a new array."""
    return LPS_RAS_FLIP @ np.asarray(affine, dtype=np.float64)


def lps_to_ras_point(point: np.ndarray) -> np.ndarray:
    """Convert a point or direction (or N x 3 of them) from LPS+ to RAS+ (and back): x, y negated."""
    p = np.array(point, dtype=np.float64)
    p[..., :2] *= -1.0
    return p


#: RAS+ -> LPS+ for points and directions (the same flip).
ras_to_lps_point = lps_to_ras_point


def affine_to_ras(affine: np.ndarray, space: str) -> np.ndarray:
    """A voxel->``space`` affine as voxel->RAS+; ``space`` is ``"LPS"``, ``"LAS"`` or ``"RAS"``.

    Raises:
        UnsupportedDataError: another space name.
    """
    name = str(space).upper()
    if name == "LPS":
        return lps_to_ras(affine)
    if name == "LAS":
        return LAS_RAS_FLIP @ np.asarray(affine, dtype=np.float64)
    if name == "RAS":
        return np.array(affine, dtype=np.float64)
    raise UnsupportedDataError(f"unknown world space '{space}': expected LPS, LAS or RAS")


# --------------------------------------------------------------------------- affine <-> origin, spacing, direction
def affine_from_geometry(
    origin: np.ndarray, spacing: np.ndarray, direction: np.ndarray
) -> np.ndarray:
    """Build a 4x4 affine from origin (mm), spacing (mm) and a 3x3 direction matrix.

    ``direction[:, n]`` is the unit vector of voxel axis ``n`` in world space; the
    affine's column ``n`` is ``direction[:, n] * spacing[n]``. The world space of
    the result is whatever space origin and direction are given in.
    """
    direction = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(spacing, dtype=np.float64).reshape(3)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[np.newaxis, :]
    affine[:3, 3] = np.asarray(origin, dtype=np.float64).reshape(3)
    return affine


def geometry_from_affine(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a 4x4 affine into ``(origin, spacing, direction)``.

    ``origin`` is the world position of voxel (0, 0, 0) in mm, ``spacing`` the
    length of each voxel axis in mm, ``direction`` the 3x3 matrix of unit axis
    vectors (columns). Raises :class:`GeometryError` for a zero-length axis.
    """
    affine = np.asarray(affine, dtype=np.float64)
    columns = affine[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise GeometryError(f"affine has a zero-length or non-finite voxel axis: {affine.tolist()}")
    return affine[:3, 3].copy(), spacing, columns / spacing[np.newaxis, :]


def check_affine(affine: Any) -> np.ndarray:
    """Return ``affine`` as a read-only 4x4 float64 array, or raise :class:`GeometryError`.

    The affine must be finite, have last row ``[0, 0, 0, 1]`` and a non-singular
    3x3 part (every voxel axis has a length and they are not coplanar).
    """
    a = np.array(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine contains NaN or infinite values")
    if not np.allclose(a[3], [0, 0, 0, 1]):
        raise GeometryError(f"affine's last row must be [0, 0, 0, 1], got {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise GeometryError("affine is singular: voxel axes have zero length or are coplanar")
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- orientation codes
_AXIS_PAIRS = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


def voxel_axes(affine: np.ndarray) -> list[tuple[int, int] | None]:
    """Where each voxel axis of a voxel->RAS+ ``affine`` points: ``(world axis, sign)`` per axis
    (world axis 0 x/R, 1 y/A, 2 z/S; sign +1 towards R/A/S, -1 towards L/P/I), None for an axis
    with no direction.

    Oblique axes get the closest world axis, each world axis used once, with nibabel's
    ``io_orientation`` rule (tested against it): shears and zooms are removed by a polar
    decomposition, then the voxel axes, strongest first, take the world axis they change most.
    Numpy only (no nibabel import, ~0.3 s).
    """
    rzs = np.asarray(affine, dtype=np.float64)[:3, :3]
    zooms = np.sqrt((rzs * rzs).sum(axis=0))
    zooms[zooms == 0] = 1.0
    u, singular, vt = np.linalg.svd(rzs / zooms, full_matrices=False)
    keep = singular > singular.max() * 3 * np.finfo(np.float64).eps
    rotation = u[:, keep] @ vt[keep]  # the closest shear-free matrix
    axes: list[tuple[int, int] | None] = [None, None, None]
    for axis in np.argsort(np.min(-(rotation ** 2), axis=0), kind="stable"):
        column = rotation[:, axis]
        if np.allclose(column, 0):
            continue
        world = int(np.argmax(np.abs(column)))
        axes[int(axis)] = (world, -1 if column[world] < 0 else 1)
        rotation[world, :] = 0.0
    return axes


def orientation_code(affine: np.ndarray, space: str = "RAS") -> str:
    """Three-letter code naming where each voxel axis points (the direction of increase).

    ``"RAS"`` means i increases towards Right, j towards Anterior, k towards
    Superior. ``affine`` maps to RAS+ (default) or to LPS+ when ``space="LPS"``.
    Oblique axes get the closest world axis (:func:`voxel_axes`). An axis with no
    direction is ``"?"``.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if space.upper() == "LPS":
        affine = lps_to_ras(affine)
    return "".join("?" if a is None else ("LPI" if a[1] < 0 else "RAS")[a[0]] for a in voxel_axes(affine))


def reorientation(affine: np.ndarray, shape: Sequence[int], code: str) -> tuple[list[int], list[bool], np.ndarray]:
    """How to reorder voxels so that their axes point as ``code`` says (e.g. ``"LPS"``), no interpolation.

    Returns ``(order, flips, new_affine)``: output axis ``t`` is input axis ``order[t]``, reversed
    when ``flips[t]``; ``new_affine`` maps the reordered voxels to the same world positions as
    ``affine`` mapped the original ones (``shape``: the input's first three dimensions).

    Raises:
        UnsupportedDataError: a voxel axis of ``affine`` has no direction.
    """
    target = check_code(code)
    axes = voxel_axes(affine)
    if any(a is None for a in axes):
        raise UnsupportedDataError(f"cannot reorient: a voxel axis has no direction in the affine "
                                   f"{np.round(np.asarray(affine), 4).tolist()}")
    letters = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    order, flips = [], []
    for letter in target:
        world, sign = letters[letter]
        source = next(i for i, a in enumerate(axes) if a is not None and a[0] == world)
        order.append(source)
        flips.append(axes[source][1] != sign)  # type: ignore[index]
    mapping = np.zeros((4, 4))
    mapping[3, 3] = 1.0
    for t, (source, flipped) in enumerate(zip(order, flips)):
        mapping[source, t] = -1.0 if flipped else 1.0
        if flipped:
            mapping[source, 3] = float(shape[source] - 1)
    return order, flips, np.asarray(affine, dtype=np.float64) @ mapping

def check_code(code: str) -> str:
    """``code`` upper-cased when it is a valid 3-letter axis code (one of L/R, A/P, S/I each).

    Raises:
        UnsupportedDataError: anything else (the message shows valid codes).
    """
    text = str(code).strip().upper()
    if len(text) != 3 or any(c not in _AXIS_PAIRS for c in text) or len({_AXIS_PAIRS[c] for c in text}) != 3:
        raise UnsupportedDataError(
            f"'{code}' is not an axis code: give three letters, one of L/R, one of A/P and one of S/I "
            "(e.g. RAS, LPS, LAS)")
    return text


# --------------------------------------------------------------------------- DICOM slices
def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit slice normal ``cross(row, col)`` of an ImageOrientationPatient (6 floats, any world frame).

    Raises:
        GeometryError: the row and column cosines are parallel (or zero).
    """
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise GeometryError("ImageOrientationPatient row and column cosines are parallel")
    return normal / norm


def stack_affine_lps(row: np.ndarray, col: np.ndarray, pixel_spacing: Sequence[float], origin: np.ndarray,
                     slice_vector: np.ndarray) -> np.ndarray:
    """4x4 voxel -> LPS+ affine of a stack of DICOM slices.

    Column 0 is ``row * PixelSpacing[1]`` (``i``, along a row), column 1 is
    ``col * PixelSpacing[0]`` (``j``, down a column), column 2 the ``slice_vector``
    from one slice to the next (mm), column 3 the ``origin`` (ImagePositionPatient
    of the first slice, mm). No normalisation: the values are used as given.
    """
    affine = np.eye(4)
    affine[:3, 0] = row * pixel_spacing[1]
    affine[:3, 1] = col * pixel_spacing[0]
    affine[:3, 2] = slice_vector
    affine[:3, 3] = origin
    return affine


class SliceHeader(Protocol):
    """The Image Plane values of one DICOM slice (e.g. :class:`convert.dicom.scan.Instance`), LPS+ mm."""

    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    spacing_between_slices: float | None
    slice_thickness: float | None


def slice_affine_lps(first: SliceHeader, last: SliceHeader | None, n_slices: int) -> np.ndarray:
    """4x4 voxel -> LPS+ affine for a stack of 2D slices from ``first`` to ``last``.

    The slices are sorted along the normal ``cross(row, col)``; the slice vector
    is ``(IPP_last - IPP_first) / (n - 1)``, so gantry tilt is kept exactly as a
    shear. A single slice (or no positions) uses the normal times
    SpacingBetweenSlices, SliceThickness or 1 mm. Missing orientation: identity
    cosines; missing PixelSpacing: 1 mm; missing position: the world origin.
    """
    if first.orientation is None:
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    else:
        row = np.asarray(first.orientation[:3], dtype=np.float64)
        col = np.asarray(first.orientation[3:], dtype=np.float64)
        row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    spacing = first.pixel_spacing if first.pixel_spacing else (1.0, 1.0)
    origin = np.asarray(first.position, dtype=np.float64) if first.position is not None else np.zeros(3)
    if n_slices > 1 and last is not None and last.position is not None and first.position is not None:
        vector = (np.asarray(last.position, dtype=np.float64) - origin) / (n_slices - 1)
    else:
        thickness = first.spacing_between_slices or first.slice_thickness or 1.0
        vector = np.cross(row, col) * abs(thickness)
    return stack_affine_lps(row, col, spacing, origin, vector)


__all__ = ["LAS_RAS_FLIP", "LPS_RAS_FLIP", "SliceHeader", "affine_from_geometry", "affine_to_ras", "check_affine",
           "check_code", "geometry_from_affine", "lps_to_ras", "lps_to_ras_point", "orientation_code",
           "ras_to_lps", "ras_to_lps_point", "slice_affine_lps", "slice_normal", "stack_affine_lps"]
