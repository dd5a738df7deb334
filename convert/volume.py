"""The one intermediate image model: :class:`Volume` (voxels, affine, metadata) and :class:`Meta`.

Conventions (see ``docs/coordinates.md``):

* ``Volume.array`` is indexed ``[i, j, k]`` or ``[i, j, k, t]``. For DICOM, ``i``
  runs along a row (first direction cosine of ImageOrientationPatient), ``j``
  down the columns and ``k`` across slices.
* ``Volume.affine`` is a 4x4 float64 matrix mapping voxel indices ``(i, j, k, 1)``
  to **RAS+ millimetres**: +x points towards the patient's **right**, +y towards
  **anterior**, +z towards **superior** (the NIfTI/nibabel convention).
* DICOM, ITK and most NRRD files use LPS+ (+x = left, +y = posterior,
  +z = superior). Every conversion between the two, and between an affine and
  (origin, spacing, direction), lives in :mod:`convert.geometry`
  (:func:`~convert.geometry.lps_to_ras` / :func:`~convert.geometry.ras_to_lps`,
  also importable from here as before).
* Colour: an RGB volume has the structured dtype :data:`RGB_DTYPE`
  (``[('R', 'u1'), ('G', 'u1'), ('B', 'u1')]``, nibabel's and NIfTI's RGB24),
  one 3-byte element per voxel, so the array is still ``[i, j, k(, t)]`` and
  every geometry rule is unchanged. Colour volumes are never scaled
  (slope 1, intercept 0). :func:`rgb_channels` / :func:`rgb_from_channels`
  convert to and from a plain ``uint8`` array with a trailing axis of 3.

This module imports nothing from medconvert except :mod:`convert.errors`,
:mod:`convert.geometry` and :mod:`convert.proxy` (lazy voxel data).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from convert.errors import UnsupportedDataError
from convert.geometry import (  # lps_to_ras / ras_to_lps: documented here before convert.geometry existed
    affine_from_geometry,
    check_affine,
    geometry_from_affine,
    lps_to_ras,
    orientation_code,
    ras_to_lps,
)
from convert.proxy import is_proxy

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

#: dtypes a Volume may hold (stored values, before any scaling).
SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in ("int8", "int16", "int32", "uint8", "uint16", "uint32", "float32", "float64")
)

#: Colour voxels: 8-bit red, green, blue (NIfTI datatype 128 RGB24, nibabel's ``RGB`` dtype).
RGB_DTYPE: np.dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def is_rgb_dtype(dtype: Any) -> bool:
    """True when ``dtype`` is :data:`RGB_DTYPE` (same field names and 8-bit unsigned fields)."""
    try:
        return np.dtype(dtype) == RGB_DTYPE
    except TypeError:
        return False


def rgb_channels(array: np.ndarray) -> np.ndarray:
    """A ``uint8`` array of shape ``array.shape + (3,)`` (R, G, B last) from an :data:`RGB_DTYPE` array."""
    array = np.asarray(array)
    if not is_rgb_dtype(array.dtype):
        raise UnsupportedDataError(f"expected an RGB array ({RGB_DTYPE}), got dtype {array.dtype}")
    out = np.empty(array.shape + (3,), dtype=np.uint8)
    for n, name in enumerate(RGB_DTYPE.names or ()):
        out[..., n] = array[name]
    return out


def rgb_from_channels(channels: np.ndarray) -> np.ndarray:
    """An :data:`RGB_DTYPE` array from a ``uint8`` array whose last axis holds R, G, B.

    Raises :class:`UnsupportedDataError` when the last axis is not 3 long or the
    values are not 8-bit unsigned integers.
    """
    channels = np.asarray(channels)
    if channels.ndim < 1 or channels.shape[-1] != 3:
        raise UnsupportedDataError(f"RGB channels must be the last axis, of length 3; got shape {channels.shape}")
    if channels.dtype != np.uint8:
        raise UnsupportedDataError(f"RGB channels must be uint8 (8 bits per sample), got {channels.dtype}")
    out = np.empty(channels.shape[:-1], dtype=RGB_DTYPE)
    for n, name in enumerate(RGB_DTYPE.names or ()):
        out[name] = channels[..., n]
    return out


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
            dtype one of :data:`SUPPORTED_DTYPES`, or :data:`RGB_DTYPE` for colour
            (one R, G, B triple of 8-bit values per voxel). Either a numpy array or a
            lazy proxy (:class:`convert.proxy.SliceProxy`: ``shape``, ``dtype``, slabs,
            ``np.asarray``) that readers return so writers can stream; use
            :meth:`voxels` for a numpy array in either case.
        affine: 4x4 float64 voxel-index -> RAS+ mm matrix (read-only copy).
        meta: non-identifying metadata, see :class:`Meta`.
        slope, intercept: real value = stored * slope + intercept (NIfTI
            scl_slope/scl_inter, DICOM RescaleSlope/RescaleIntercept).
        source: the raw source header (e.g. a pydicom Dataset or nibabel header).
            Never written to any output unless the user explicitly asks; not
            part of equality or repr.
        warnings: what the reader noticed and did (tilt kept or corrected, uneven
            slices resampled, duplicates skipped...), one line each; written with
            CLI flags (see :func:`convert.errors.spell` for the API spelling).
        history: the processing steps applied since reading (:mod:`convert.process`), one
            JSON-ready dict each (``{"step": "resample", ...}`` with the parameters and any
            statistics used), oldest first; written to the sidecar. Not part of equality.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: Meta = field(default_factory=Meta)
    slope: float = 1.0
    intercept: float = 0.0
    source: Any = field(default=None, repr=False, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    history: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        array = self.array
        if not isinstance(array, np.ndarray) and not is_proxy(array):
            array = np.asarray(array)
            object.__setattr__(self, "array", array)
        if array.ndim not in (3, 4):
            raise UnsupportedDataError(
                f"a Volume is 3D or 4D, got an array of {array.ndim} dimensions (shape {array.shape})"
            )
        rgb = is_rgb_dtype(array.dtype)
        if not rgb and (array.dtype.fields is not None or array.dtype.newbyteorder("=") not in SUPPORTED_DTYPES):
            raise UnsupportedDataError(
                f"voxel dtype {array.dtype} is not supported; use one of "
                + ", ".join(str(d) for d in SUPPORTED_DTYPES) + f", or RGB {RGB_DTYPE}"
            )
        if not rgb and not array.dtype.isnative:
            if is_proxy(array):
                raise UnsupportedDataError(f"a lazy voxel proxy must deliver native byte order, not {array.dtype}")
            object.__setattr__(self, "array", array.astype(array.dtype.newbyteorder("="), copy=False))
        object.__setattr__(self, "affine", check_affine(self.affine))
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))
        object.__setattr__(self, "history", tuple(dict(h) for h in self.history))
        slope, intercept = float(self.slope), float(self.intercept)
        if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0.0:
            slope, intercept = 1.0, 0.0  # NIfTI convention: slope 0/NaN means unscaled
        if rgb and (slope, intercept) != (1.0, 0.0):
            raise UnsupportedDataError(
                f"a colour (RGB) volume cannot carry scaling (slope {slope:g}, intercept {intercept:g}): "
                "RescaleSlope/Intercept do not apply to colour"
            )
        object.__setattr__(self, "slope", slope)
        object.__setattr__(self, "intercept", intercept)

    def __repr__(self) -> str:
        """Shape, dtype, spacing (mm), orientation and scaling: never the voxels (nor the source header)."""
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        dtype = "RGB24" if self.is_rgb else str(self.dtype)
        parts = [f"shape={self.shape}", f"dtype={dtype}", f"spacing=({spacing}) mm",
                 f"orientation={self.orientation}"]
        if self.is_scaled:
            parts.append(f"slope={self.slope:g}, intercept={self.intercept:g}")
        if self.meta.modality:
            parts.append(f"modality={self.meta.modality}")
        if self.is_lazy:
            parts.append("lazy")
        return f"Volume({', '.join(parts)})"

    # ---- voxel data (an ndarray, or a lazy proxy read from the source files on demand)
    @property
    def is_lazy(self) -> bool:
        """True when :attr:`array` is a lazy proxy (:mod:`convert.proxy`): voxels are read when asked for."""
        return is_proxy(self.array)

    def voxels(self) -> np.ndarray:
        """The stored voxel values as a numpy array (reads a lazy volume's files; an ndarray as is)."""
        return np.asarray(self.array)

    def materialized(self) -> "Volume":
        """This volume with its voxels in memory (itself when they already are)."""
        return self if not self.is_lazy else self.replace(array=self.voxels())

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
    def is_rgb(self) -> bool:
        """True for a colour volume (dtype :data:`RGB_DTYPE`)."""
        return is_rgb_dtype(self.array.dtype)

    def require_scalar(self, operation: str) -> None:
        """Raise :class:`UnsupportedDataError` naming ``operation`` when this is a colour volume.

        For steps that only make sense on one value per voxel (float scaling,
        windowing, HU...); the message says what to do instead.
        """
        if self.is_rgb:
            raise UnsupportedDataError(
                f"{operation} needs one value per voxel but this volume is colour (RGB); "
                "colour volumes are written as RGB to NIfTI, NRRD or Analyze only"
            )

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
        """Real values: ``array * slope + intercept`` (float64 when scaled, else the array).

        A colour volume is never scaled: its RGB array is returned.
        """
        if not self.is_scaled:
            return self.voxels()
        return self.voxels().astype(np.float64) * self.slope + self.intercept

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the real (scaled) values; NaNs ignored. Colour: over all three channels."""
        if self.array.size == 0:
            return (float("nan"), float("nan"))
        array = self.voxels()
        if self.is_rgb:
            channels = [array[name] for name in RGB_DTYPE.names or ()]
            return (float(min(c.min() for c in channels)), float(max(c.max() for c in channels)))
        lo, hi = np.nanmin(array), np.nanmax(array)
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
        ``meta.time_step`` (or 1). A colour volume becomes a 3-component
        ``uint8`` vector image (``sitkVectorUInt8``, RGB).
        """
        import SimpleITK as sitk

        if self.is_rgb:
            # [t, k, j, i, channel]: reverse the spatial axes, keep R, G, B last.
            channels = rgb_channels(self.voxels())
            reverse = tuple(range(channels.ndim - 2, -1, -1)) + (channels.ndim - 1,)
            image = sitk.GetImageFromArray(np.ascontiguousarray(channels.transpose(reverse)), isVector=True)
        else:
            data = self.scaled() if scaled else self.voxels()
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
        """Build a Volume from a 3D or 4D SimpleITK image (LPS+ geometry).

        Scalar images keep their pixel type; a 3-component ``uint8`` vector
        image (RGB) becomes a colour volume. Other vector images are refused.
        """
        import SimpleITK as sitk

        components = image.GetNumberOfComponentsPerPixel()
        rgb = components == 3 and image.GetPixelID() == sitk.sitkVectorUInt8
        if components != 1 and not rgb:
            raise UnsupportedDataError(
                f"{components}-component vector SimpleITK images are not supported (only scalar, or RGB uint8)")
        dim = image.GetDimension()
        if dim not in (3, 4):
            raise UnsupportedDataError(f"only 3D and 4D images are supported, got {dim}D")
        data = sitk.GetArrayFromImage(image)
        if rgb:
            spatial = tuple(range(data.ndim - 2, -1, -1))
            array = rgb_from_channels(data.transpose(spatial + (data.ndim - 1,)))
        else:
            array = data.transpose()
        direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
        spacing = np.array(image.GetSpacing())[:3]
        origin = np.array(image.GetOrigin())[:3]
        affine = lps_to_ras(affine_from_geometry(origin, spacing, direction))
        meta = meta or Meta()
        if dim == 4 and meta.time_step is None:
            meta = meta.replace(time_step=float(image.GetSpacing()[3]))
        return cls(array=array, affine=affine, meta=meta)
