"""The one intermediate image model, and every geometry conversion we do.

Conventions (see ``docs/coordinates.md``):

* ``Volume.array`` is indexed ``[i, j, k]`` or ``[i, j, k, t]``. For DICOM, ``i``
  runs along a row (first direction cosine of ImageOrientationPatient), ``j``
  down the columns and ``k`` across slices.
* ``Volume.affine`` is a 4x4 float64 matrix mapping voxel indices ``(i, j, k, 1)``
  to **RAS+ millimetres**: +x points towards the patient's **right**, +y towards
  **anterior**, +z towards **superior** (the NIfTI/nibabel convention).
* DICOM, ITK and most NRRD files use LPS+ (+x = left, +y = posterior,
  +z = superior). The only conversions between the two live in this module:
  :func:`lps_to_ras` / :func:`ras_to_lps`.

This module imports nothing from medconvert except :mod:`convert.errors`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from convert.errors import GeometryError, UnsupportedDataError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

#: dtypes a Volume may hold (stored values, before any scaling).
SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in ("int8", "int16", "int32", "uint8", "uint16", "uint32", "float32", "float64")
)

#: Flip between LPS+ and RAS+ world coordinates (its own inverse).
LPS_RAS_FLIP: np.ndarray = np.diag([-1.0, -1.0, 1.0, 1.0])
LPS_RAS_FLIP.setflags(write=False)


# --------------------------------------------------------------------------- geometry
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


ras_to_lps_point = lps_to_ras_point


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


def orientation_code(affine: np.ndarray, space: str = "RAS") -> str:
    """Three-letter code naming where each voxel axis points (the direction of increase).

    ``"RAS"`` means i increases towards Right, j towards Anterior, k towards
    Superior. ``affine`` maps to RAS+ (default) or to LPS+ when ``space="LPS"``.
    Oblique axes get the closest world axis, each world axis used once
    (nibabel's ``io_orientation``).
    """
    from nibabel.orientations import aff2axcodes

    affine = np.asarray(affine, dtype=np.float64)
    if space.upper() == "LPS":
        affine = lps_to_ras(affine)
    return "".join(aff2axcodes(affine))


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


# --------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class Meta:
    """Typed, non-identifying metadata that writers may use.

    Nothing here may identify a patient: no names, IDs, dates, institutions or
    UIDs. Readers fill fields through an allow-list; writers may copy them into
    output headers and sidecars.

    Attributes:
        modality: DICOM modality code ("CT", "MR", ...).
        manufacturer: scanner manufacturer.
        series_description: free-text series description (may be cleared by
            de-identification, which treats it as a descriptor).
        units: physical units of the *scaled* values ("HU" for rescaled CT).
        time_step: seconds between successive volumes of a 4D series.
        window: default display windows as ``(center, width)`` pairs, in scaled units.
        acquisition: further acquisition parameters with BIDS names and units
            (seconds for times, degrees for angles, mm for lengths).
    """

    modality: str | None = None
    manufacturer: str | None = None
    series_description: str | None = None
    units: str | None = None
    time_step: float | None = None
    window: tuple[tuple[float, float], ...] = ()
    acquisition: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "Meta":
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- Volume
@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels + RAS+ affine + metadata: what every reader returns and every writer takes.

    Attributes:
        array: stored voxel values, indexed ``[i, j, k]`` or ``[i, j, k, t]``;
            dtype one of :data:`SUPPORTED_DTYPES`.
        affine: 4x4 float64 voxel-index -> RAS+ mm matrix (read-only copy).
        meta: non-identifying metadata, see :class:`Meta`.
        slope, intercept: real value = stored * slope + intercept (NIfTI
            scl_slope/scl_inter, DICOM RescaleSlope/RescaleIntercept).
        source: the raw source header (e.g. a pydicom Dataset or nibabel header).
            Never written to any output unless the user explicitly asks; not
            part of equality or repr.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: Meta = field(default_factory=Meta)
    slope: float = 1.0
    intercept: float = 0.0
    source: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        array = self.array
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
            object.__setattr__(self, "array", array)
        if array.ndim not in (3, 4):
            raise UnsupportedDataError(
                f"a Volume is 3D or 4D, got an array of {array.ndim} dimensions (shape {array.shape})"
            )
        if array.dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
            raise UnsupportedDataError(
                f"voxel dtype {array.dtype} is not supported; use one of "
                + ", ".join(str(d) for d in SUPPORTED_DTYPES)
            )
        if not array.dtype.isnative:
            object.__setattr__(self, "array", array.astype(array.dtype.newbyteorder("="), copy=False))
        object.__setattr__(self, "affine", check_affine(self.affine))
        slope, intercept = float(self.slope), float(self.intercept)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0.0:
            slope, intercept = 1.0, 0.0  # NIfTI convention: slope 0/NaN means unscaled
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "intercept", intercept)

    # ---- shape and geometry (all derived from array and affine)
    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape ``(ni, nj, nk[, nt])``."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the stored values."""
        return self.array.dtype

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return geometry_from_affine(self.affine)[1]

    @property
    def origin(self) -> np.ndarray:
        """RAS+ position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the RAS+ unit vectors of the i, j, k axes."""
        return geometry_from_affine(self.affine)[2]

    @property
    def orientation(self) -> str:
        """Three-letter axis code such as ``"RAS"`` or ``"LPS"`` (direction of increase)."""
        return orientation_code(self.affine)

    @property
    def is_scaled(self) -> bool:
        """True when stored values need ``slope``/``intercept`` to become real values."""
        return self.slope != 1.0 or self.intercept != 0.0

    def scaled(self) -> np.ndarray:
        """Real values: ``array * slope + intercept`` (float64 when scaled, else the array)."""
        if not self.is_scaled:
            return self.array
        return self.array.astype(np.float64) * self.slope + self.intercept

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the real (scaled) values; NaNs ignored."""
        if self.array.size == 0:
            return (float("nan"), float("nan"))
        lo, hi = np.nanmin(self.array), np.nanmax(self.array)
        lo, hi = float(lo) * self.slope + self.intercept, float(hi) * self.slope + self.intercept
        return (min(lo, hi), max(lo, hi))

    def replace(self, **changes: Any) -> "Volume":
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def world_coordinates(self, index: np.ndarray) -> np.ndarray:
        """RAS+ mm of voxel index/indices ``index`` (shape ``(..., 3)``)."""
        index = np.asarray(index, dtype=np.float64)
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

    # ---- SimpleITK
    def to_sitk(self, scaled: bool = True) -> "sitk.Image":
        """Convert to a SimpleITK image (LPS+, ``[k, j, i]`` buffer order) at the same world place.

        With ``scaled`` (default), slope/intercept are applied (float64 output when
        scaled). A 4D volume becomes a 4D image whose fourth axis has spacing
        ``meta.time_step`` (or 1).
        """
        import SimpleITK as sitk

        data = self.scaled() if scaled else self.array
        # SimpleITK's numpy view is [t, k, j, i]: reverse our axes.
        image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose()), isVector=False)
        origin, spacing, direction = geometry_from_affine(ras_to_lps(self.affine))
        if self.array.ndim == 4:
            d4 = np.eye(4)
            d4[:3, :3] = direction
            image.SetOrigin(tuple(origin) + (0.0,))
            image.SetSpacing(tuple(spacing) + (float(self.meta.time_step or 1.0),))
            image.SetDirection(tuple(d4.ravel()))
        else:
            image.SetOrigin(tuple(origin))
            image.SetSpacing(tuple(spacing))
            image.SetDirection(tuple(direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: "sitk.Image", meta: Meta | None = None) -> "Volume":
        """Build a Volume from a 3D or 4D scalar SimpleITK image (LPS+ geometry)."""
        import SimpleITK as sitk

        if image.GetNumberOfComponentsPerPixel() != 1:
            raise UnsupportedDataError("multi-component (vector/RGB) SimpleITK images are not supported")
        dim = image.GetDimension()
        if dim not in (3, 4):
            raise UnsupportedDataError(f"only 3D and 4D images are supported, got {dim}D")
        array = sitk.GetArrayFromImage(image).transpose()
        direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
        spacing = np.array(image.GetSpacing())[:3]
        origin = np.array(image.GetOrigin())[:3]
        affine = lps_to_ras(affine_from_geometry(origin, spacing, direction))
        meta = meta or Meta()
        if dim == 4 and meta.time_step is None:
            meta = meta.replace(time_step=float(image.GetSpacing()[3]))
        return cls(array=array, affine=affine, meta=meta)
