"""Geometry steps: reorient, flip, resample (SimpleITK), crop and pad; slice regridding and tilt correction.

World space is RAS+ mm (:mod:`convert.volume`); ITK's LPS+ is reached only through
:meth:`Volume.to_sitk` / :func:`convert.geometry.ras_to_lps`. No step reorients
silently: :func:`resample` keeps the voxel axes' directions; only :func:`reorient`
and :func:`flip` change them, by permuting and flipping voxels (exact).

**Resampling grid rule** (:func:`output_grid`): the output covers the same world
extent as the input (``n * spacing`` along each voxel axis, measured between
outer voxel *edges*) and is centred on the input's geometric centre, with the same
axis directions. For a target spacing ``s'`` the size is
``m = max(1, round(n * s / s'))`` (halves round up); for a target shape ``m`` the
spacing is ``s' = n * s / m`` exactly. The first voxel centre is at
``centre - (m - 1) / 2 * s'`` along each axis. Because the grid is defined by its
centre, ``flip(resample(x)) == resample(flip(x))`` and 1 mm -> 0.5 mm -> 1 mm
returns the input grid.

**Slice stacks** (:func:`regrid_slices`, :func:`correct_tilt`): array-level steps on
a stack of 2D slices ``[i, j, k(, ...)]`` and its affine, which the DICOM reader
runs before it builds the Volume (``--allow-gaps``, uneven spacing, ``--tilt-correct``).
Both work in any world frame (LPS+ or RAS+: the flip between them keeps lengths,
angles and the handedness of ``cross``) and keep ``i`` and ``j``; run them on each
channel of a colour array with :func:`per_channel`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Literal, Sequence

import numpy as np

from convert.errors import UnsupportedDataError
from convert.geometry import affine_from_geometry, check_code, geometry_from_affine, ras_to_lps, reorientation
from convert.process.steps import default_fill, record, require_3d, stored_value, three_numbers
from convert.volume import RGB_DTYPE, Volume, rgb_channels, rgb_from_channels

Interpolation = Literal["linear", "nearest", "bspline", "lanczos"]


def reorient(volume: Volume, code: str) -> Volume:
    """Voxels permuted and flipped so that the axes point as ``code`` says (e.g. ``"RAS"``: i increases
    towards Right, j towards Anterior, k towards Superior). No interpolation: every voxel keeps its value
    and its world position; the affine is updated. Oblique axes go to their closest world axis
    (:func:`convert.geometry.voxel_axes`, nibabel's rule); a 4D volume keeps its fourth axis.
    """
    target = check_code(code)
    before = volume.orientation
    order, flips, affine = reorientation(volume.affine, volume.shape[:3], target)
    # recorded per input axis: the output axis it became and whether it was reversed
    history = record(volume, "reorient", code=target, from_code=before,
                     axes=[order.index(i) for i in range(3)], flips=[flips[order.index(i)] for i in range(3)])
    if order == [0, 1, 2] and not any(flips):
        return volume.replace(history=history)
    array = volume.voxels()
    array = np.transpose(array, order + list(range(3, array.ndim)))
    reversed_axes = tuple(t for t in range(3) if flips[t])
    if reversed_axes:
        array = np.flip(array, axis=reversed_axes)
    return volume.replace(array=array, affine=affine, history=history)


def flip(volume: Volume, axis: int) -> Volume:
    """Voxels reversed along voxel axis ``axis`` (0, 1 or 2), affine updated: the same image in world space."""
    if axis not in (0, 1, 2):
        raise UnsupportedDataError(f"flip axis must be 0, 1 or 2, not {axis}")
    array = np.flip(volume.voxels(), axis=axis)
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, axis] * (volume.shape[axis] - 1)
    affine[:3, axis] *= -1.0
    return volume.replace(array=array, affine=affine, history=record(volume, "flip", axis=axis))


def output_grid(volume: Volume, spacing: Sequence[float] | float | None = None,
                shape: Sequence[int] | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, RAS+ affine)`` of the resampled grid (the rule in this module's docstring).

    Raises:
        UnsupportedDataError: neither or both of ``spacing``/``shape``, spacing <= 0, shape < 1.
    """
    if (spacing is None) == (shape is None):
        raise UnsupportedDataError("resample: give either a spacing (mm) or a shape (voxels)")
    origin, old_spacing, direction = geometry_from_affine(volume.affine)
    n = np.asarray(volume.shape[:3], dtype=np.float64)
    extent = n * old_spacing
    if spacing is not None:
        new_spacing = three_numbers(spacing, "resample spacing (mm)")
        m = np.array([max(1, math.floor(round(e / s, 6) + 0.5)) for e, s in zip(extent, new_spacing)])
    else:
        m = three_numbers(shape, "resample shape (voxels)").astype(np.float64)
        if np.any(m < 1) or np.any(m != np.round(m)):
            raise UnsupportedDataError(f"resample shape must be three whole numbers >= 1, got {list(shape)}")
        new_spacing = extent / m
    centre = volume.affine[:3, :3] @ ((n - 1) / 2.0) + origin
    new_origin = centre - (direction * new_spacing[np.newaxis, :]) @ ((m - 1) / 2.0)
    # the direction columns of a sheared affine keep their (unit) lengths: same axes, new spacing
    affine = affine_from_geometry(new_origin, new_spacing, direction)
    return (int(m[0]), int(m[1]), int(m[2])), affine


_SITK_INTERPOLATORS = {"linear": "sitkLinear", "nearest": "sitkNearestNeighbor", "bspline": "sitkBSpline",
                       "lanczos": "sitkLanczosWindowedSinc"}


def resample(volume: Volume, spacing: Sequence[float] | float | None = None, *,
             shape: Sequence[int] | None = None, interpolation: Interpolation | None = None,
             fill: float | None = None, labels: bool = False) -> Volume:
    """The volume on a new grid of ``spacing`` mm or ``shape`` voxels, same extent and axes (:func:`output_grid`).

    Interpolation through SimpleITK: ``linear`` (default), ``nearest``, ``bspline``
    (cubic) or ``lanczos`` (windowed sinc). ``labels=True`` (a label map) keeps the
    stored integer labels: by default with nearest neighbour (every output voxel takes
    the label found at its centre, so no label covering an output voxel centre
    disappears), or with ``interpolation="linear"`` label-aware (each label's one-hot
    mask resampled linearly, the largest wins: smoother borders). Points outside
    the input get ``fill`` (real units; default air, -1024 HU, for CT, else 0).
    Linear, B-spline and Lanczos give float32 real values; nearest keeps the stored
    dtype and scaling when ``fill`` is representable.

    Raises:
        UnsupportedDataError: 4D or colour input, spacing <= 0, unknown interpolation,
            or ``labels`` with an interpolation other than nearest or linear.
    """
    require_3d(volume, "resample")
    new_shape, affine = output_grid(volume, spacing, shape)
    out = _resample_onto(volume, new_shape, affine, interpolation, fill, labels)
    return out.replace(history=record(volume, "resample", spacing_mm=[float(s) for s in out.spacing],
                                      shape=list(new_shape), interpolation=_interpolation(interpolation, labels),
                                      fill=_fill(volume, fill), labels=labels))


def resample_to(volume: Volume, reference: Volume, *, interpolation: Interpolation | None = None,
                fill: float | None = None, labels: bool = False) -> Volume:
    """``volume`` resampled onto ``reference``'s grid (its shape and affine); options as :func:`resample`."""
    require_3d(volume, "resample_to")
    shape = tuple(int(n) for n in reference.shape[:3])
    out = _resample_onto(volume, shape, reference.affine, interpolation, fill, labels)  # type: ignore[arg-type]
    return out.replace(history=record(volume, "resample_to", shape=list(shape),
                                      affine=np.round(reference.affine, 6),
                                      interpolation=_interpolation(interpolation, labels),
                                      fill=_fill(volume, fill), labels=labels))


def _interpolation(interpolation: str | None, labels: bool) -> str:
    name = interpolation or ("nearest" if labels else "linear")
    if name not in _SITK_INTERPOLATORS:
        raise UnsupportedDataError(f"unknown interpolation '{name}': use " + ", ".join(_SITK_INTERPOLATORS))
    if labels and name not in ("nearest", "linear"):
        raise UnsupportedDataError(f"label maps are resampled with nearest neighbour or label-aware linear "
                                   f"(one-hot), not {name}")
    return name


def _fill(volume: Volume, fill: float | None) -> float:
    return float(default_fill(volume) if fill is None else fill)


#: Output voxels resampled per SimpleITK call: the output is made in slabs along its k axis, each
#: from the part of the input it needs, so memory stays near input + output (no full-size copies).
SLAB_VOXELS: int = 1 << 23
#: Input voxels kept around each slab's footprint (Lanczos' radius is 3; linear/nearest need 1).
_SLAB_MARGIN = 4


def _resample_onto(volume: Volume, shape: tuple[int, int, int], affine: np.ndarray, interpolation: str | None,
                   fill: float | None, labels: bool) -> Volume:
    import SimpleITK as sitk

    name = _interpolation(interpolation, labels)
    if labels and name == "linear":
        return _resample_labels_one_hot(volume, shape, affine, fill)
    fill_real = _fill(volume, fill)
    fill_stored = stored_value(volume, fill_real)
    keep_stored = name == "nearest" and fill_stored is not None
    default = fill_stored if keep_stored else (fill_real - volume.intercept) / volume.slope
    source = volume.materialized()
    f = sitk.ResampleImageFilter()
    f.SetInterpolator(getattr(sitk, _SITK_INTERPOLATORS[name]))
    f.SetDefaultPixelValue(float(default))
    f.SetTransform(sitk.Transform())
    _, spacing, direction = geometry_from_affine(ras_to_lps(affine))
    f.SetOutputSpacing(tuple(float(v) for v in spacing))
    f.SetOutputDirection(tuple(float(v) for v in direction.ravel()))
    if name == "bspline":  # its coefficients come from the whole image: one call
        array = _resample_slab(f, source, affine, shape, 0, shape[2], keep_stored, whole=True)
    else:
        array = np.empty(shape, dtype=source.dtype if keep_stored else np.float32, order="F")
        step = max(1, SLAB_VOXELS // max(1, shape[0] * shape[1]))
        for k0 in range(0, shape[2], step):
            k1 = min(shape[2], k0 + step)
            part = _resample_slab(f, source, affine, shape, k0, k1, keep_stored)
            if part is None:
                array[:, :, k0:k1] = default
            else:
                array[:, :, k0:k1] = part
    if keep_stored:
        return volume.replace(array=array, affine=affine)
    if volume.is_scaled:
        array *= np.float32(volume.slope)
        array += np.float32(volume.intercept)
    return volume.replace(array=array, affine=affine, slope=1.0, intercept=0.0)


def _resample_labels_one_hot(volume: Volume, shape: tuple[int, int, int], affine: np.ndarray,
                             fill: float | None) -> Volume:
    """Label-aware resampling: each label's 0/1 mask resampled linearly; each output voxel takes the label
    with the largest value (ties: the smaller label); outside the input the ``fill`` label (default 0)."""
    if not np.issubdtype(volume.dtype, np.integer) or volume.is_scaled:
        raise UnsupportedDataError("a label map must hold unscaled integer labels")
    stored = volume.materialized()
    values = stored.voxels()
    outside = int(0 if fill is None else fill)
    best = np.zeros(shape, np.float32, order="F")
    out = np.full(shape, outside, dtype=values.dtype, order="F")
    for label in np.unique(values):
        mask = stored.replace(array=(values == label).astype(np.uint8), slope=1.0, intercept=0.0)
        weight = _resample_onto(mask, shape, affine, "linear", 0.0, False).voxels()
        better = weight > best
        out[better] = label
        best[better] = weight[better]
    return volume.replace(array=out, affine=affine)


def _resample_slab(f: Any, source: Volume, affine: np.ndarray, shape: tuple[int, int, int], k0: int, k1: int,
                   keep_stored: bool, whole: bool = False) -> np.ndarray | None:
    """Output slices ``k0:k1`` (``[i, j, k]``) from the input box they need, or None when it is all outside."""
    import SimpleITK as sitk

    if whole:
        part = source
    else:
        corners = np.array(list(itertools.product((0, shape[0] - 1), (0, shape[1] - 1), (k0, k1 - 1))), float)
        world = corners @ affine[:3, :3].T + affine[:3, 3]
        index = (world - source.affine[:3, 3]) @ np.linalg.inv(source.affine[:3, :3]).T
        start = np.maximum(np.floor(index.min(axis=0)).astype(int) - _SLAB_MARGIN, 0)
        stop = np.minimum(np.ceil(index.max(axis=0)).astype(int) + _SLAB_MARGIN + 1, source.shape[:3])
        if np.any(stop <= start):
            return None
        part = crop(source, start, stop)
    image = part.to_sitk(scaled=False)  # stored values: no float64 copy
    origin = ras_to_lps(affine)[:3, :3] @ np.array([0.0, 0.0, float(k0)]) + ras_to_lps(affine)[:3, 3]
    f.SetSize([int(shape[0]), int(shape[1]), int(k1 - k0)])
    f.SetOutputOrigin(tuple(float(v) for v in origin))
    f.SetOutputPixelType(image.GetPixelID() if keep_stored else sitk.sitkFloat32)
    result = f.Execute(image)
    del image
    return np.asarray(ImageBuffer(result)).transpose()  # no copy: the array owns the output image


class ImageBuffer:
    """A SimpleITK image's pixel buffer as a writable numpy array without a copy (``np.asarray(ImageBuffer(img))``).

    The array keeps this object, and so the image, alive for as long as it is used:
    resampling a large CT then needs the output's memory once, not twice.
    """

    def __init__(self, image: Any) -> None:
        import SimpleITK as sitk

        self._image = image
        view = sitk.GetArrayViewFromImage(image)  # [k, j, i]; the image made its buffer its own
        interface = dict(view.__array_interface__)
        interface["data"] = (interface["data"][0], False)  # writable: nothing else uses this buffer
        self.__array_interface__ = interface


# --------------------------------------------------------------------------- slice stacks
def regrid_slices(array: np.ndarray, affine: np.ndarray, positions_mm: Sequence[float],
                  n_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """A stack of slices at uneven positions resampled along ``k`` onto ``n_slices`` even ones.

    Args:
        array: ``[i, j, k(, ...)]``, slice ``k`` stored at ``positions_mm[k]`` (mm along the
            slice normal, ascending; gaps and uneven steps allowed).
        affine: 4x4 voxel -> world affine of the stored stack (any frame) whose slice column
            is the mean step, ``(last - first) / (n - 1)``.
        n_slices: slices of the even grid (at least 2), from the first to the last position
            (e.g. :meth:`convert.dicom.series.Series.even_grid`).

    Returns:
        ``(array, affine)``: plane ``k`` at ``positions_mm[0] + k * step`` holds the two stored
        slices around it, linearly weighted by distance; the dtype is kept (integers rounded);
        the affine's slice column becomes ``(last - first) / (n_slices - 1)``. F-ordered.
    """
    d = np.asarray(positions_mm, dtype=np.float64)
    n_new = int(n_slices)
    targets = d[0] + np.arange(n_new) * ((d[-1] - d[0]) / (n_new - 1))
    idx = np.clip(np.searchsorted(d, targets, side="right") - 1, 0, len(d) - 2)
    w = np.clip((targets - d[idx]) / (d[idx + 1] - d[idx]), 0.0, 1.0)
    shape = array.shape[:2] + (n_new,) + array.shape[3:]
    out = np.empty(shape, dtype=array.dtype, order="F")
    for k in range(n_new):
        lo, hi, wk = array[:, :, idx[k]], array[:, :, idx[k] + 1], float(w[k])
        if wk <= 1e-9:
            out[:, :, k] = lo
        elif wk >= 1 - 1e-9:
            out[:, :, k] = hi
        else:
            vals = lo.astype(np.float64) * (1 - wk) + hi.astype(np.float64) * wk
            out[:, :, k] = np.round(vals) if array.dtype.kind in "iu" else vals
    new_affine = np.array(affine, dtype=np.float64)
    total = new_affine[:3, 2] * (len(d) - 1)  # first -> last slice vector
    new_affine[:3, 2] = total / (n_new - 1)
    return out, new_affine


def correct_tilt(array: np.ndarray, affine: np.ndarray, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """A sheared (gantry-tilted) stack resampled onto an orthogonal grid, ``k`` along the slice normal.

    Voxel ``(i, j, k)`` of the sheared stack sits at ``o + i*ci + j*cj + k*s`` (``ci``, ``cj``,
    ``s``: the affine's columns, mm; ``ci`` and ``cj`` orthogonal, as in valid DICOM). The
    orthogonal grid uses ``k*s_perp`` (``s_perp`` = the part of ``s`` along the normal
    ``cross(ci, cj)``); slice ``k`` is shifted in-plane by ``-k*(s - s_perp)`` with bilinear
    interpolation (SciPy). The in-plane field of view grows so no voxel is cut off; new voxels
    get ``fill`` (stored units). The dtype is kept (integers rounded). Returns ``(array, affine)``.
    """
    from scipy import ndimage

    affine = np.asarray(affine, dtype=np.float64)
    ci, cj, s = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    normal = np.cross(ci, cj)
    normal /= np.linalg.norm(normal)
    s_perp = normal * float(np.dot(s, normal))
    shear = s - s_perp
    # shear in voxel units along i and j (ci, cj are orthogonal for valid DICOM)
    si = float(np.dot(shear, ci) / np.dot(ci, ci))
    sj = float(np.dot(shear, cj) / np.dot(cj, cj))
    nk = array.shape[2]
    shifts_i, shifts_j = si * np.arange(nk), sj * np.arange(nk)
    lo_i, hi_i = int(np.floor(min(0.0, shifts_i.min()) + 1e-6)), int(np.ceil(max(0.0, shifts_i.max()) - 1e-6))
    lo_j, hi_j = int(np.floor(min(0.0, shifts_j.min()) + 1e-6)), int(np.ceil(max(0.0, shifts_j.max()) - 1e-6))
    ni, nj = array.shape[0] + hi_i - lo_i, array.shape[1] + hi_j - lo_j
    out_dtype = array.dtype
    shape = (ni, nj) + array.shape[2:]
    out = np.empty(shape, dtype=out_dtype, order="F")
    extra = array.shape[3:]
    for k in range(nk):
        for t in np.ndindex(*extra) if extra else [()]:
            src = array[(slice(None), slice(None), k) + t].astype(np.float64)
            canvas = np.full((ni, nj), fill, dtype=np.float64)
            canvas[-lo_i : -lo_i + array.shape[0], -lo_j : -lo_j + array.shape[1]] = src
            # orthogonal voxel (i', j') holds sheared voxel (i' + lo_i + k*si ... ): world o + i ci + j cj + k s
            shifted = ndimage.shift(canvas, (shifts_i[k], shifts_j[k]), order=1, mode="grid-constant", cval=fill)
            if out_dtype.kind in "iu":
                shifted = np.round(shifted)
            out[(slice(None), slice(None), k) + t] = shifted
    new_affine = affine.copy()
    new_affine[:3, 2] = s_perp
    new_affine[:3, 3] = affine[:3, 3] + lo_i * ci + lo_j * cj
    return out, new_affine


def per_channel(step: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run an array step (``array -> (array, affine)``, e.g. :func:`correct_tilt`) on a scalar array,
    or on each channel of an :data:`~convert.volume.RGB_DTYPE` array (the affine of the first channel)."""
    if array.dtype != RGB_DTYPE:
        return step(array)
    channels = rgb_channels(array)
    results = [step(np.asfortranarray(channels[..., n])) for n in range(3)]
    stacked = np.stack([r[0] for r in results], axis=-1)
    return np.asfortranarray(rgb_from_channels(stacked)), results[0][1]


# --------------------------------------------------------------------------- crop and pad
def crop(volume: Volume, start: Sequence[int], stop: Sequence[int]) -> Volume:
    """Voxels ``start[n]:stop[n]`` along each spatial axis (a view; 4D keeps every volume); affine moved
    so every kept voxel keeps its world position."""
    start_a = [int(v) for v in start]
    stop_a = [int(v) for v in stop]
    for n, (a, b) in enumerate(zip(start_a, stop_a)):
        if not 0 <= a < b <= volume.shape[n]:
            raise UnsupportedDataError(f"crop box {start_a}..{stop_a} is outside shape {volume.shape[:3]}")
    index = tuple(slice(a, b) for a, b in zip(start_a, stop_a))
    array = volume.voxels()[index]
    affine = volume.affine.copy()
    affine[:3, 3] = volume.world_coordinates(np.asarray(start_a, dtype=np.float64))
    return volume.replace(array=array, affine=affine, history=record(volume, "crop", start=start_a, stop=stop_a))


def foreground_box(mask: np.ndarray, spacing: np.ndarray, margin_mm: float = 0.0) -> tuple[list[int], list[int]]:
    """``(start, stop)`` voxel box around the non-zero voxels of ``mask``, grown by ``margin_mm`` on
    every side (``ceil(margin_mm / spacing)`` voxels) and kept inside the array.

    Raises:
        UnsupportedDataError: the mask is empty.
    """
    nonzero = np.nonzero(mask)
    if not nonzero[0].size:
        raise UnsupportedDataError("no foreground found: the mask is empty (lower the threshold or give a mask)")
    if margin_mm < 0:
        raise UnsupportedDataError(f"margin must be >= 0 mm, got {margin_mm:g}")
    grow = [int(math.ceil(round(margin_mm / s, 6))) for s in spacing]
    start = [max(0, int(ax.min()) - g) for ax, g in zip(nonzero, grow)]
    stop = [min(n, int(ax.max()) + 1 + g) for ax, n, g in zip(nonzero, mask.shape, grow)]
    return start, stop


def crop_to_foreground(volume: Volume, *, threshold: float | None = None, mask: Volume | np.ndarray | None = None,
                       margin_mm: float = 0.0) -> Volume:
    """The smallest box holding the foreground, plus ``margin_mm`` on every side.

    The foreground is ``mask`` when given (same grid), else the body: for CT the
    :func:`convert.process.masks.body_mask` (largest connected component above
    ``threshold``, default -500 HU, with the table and text markers left out), for
    other volumes the largest connected component above ``threshold`` (default: the
    mean of the volume's real values). Small separate objects (text markers, the CT
    table, a ruler) therefore never enlarge the box.

    Raises:
        UnsupportedDataError: 4D input, an empty foreground, a mask of another shape.
    """
    from convert.process.masks import body_mask, foreground_mask

    require_3d(volume, "crop to foreground")
    if mask is not None:
        m = mask.voxels() if isinstance(mask, Volume) else np.asarray(mask)
        if m.shape != volume.shape:
            raise UnsupportedDataError(f"mask shape {m.shape} differs from the volume's {volume.shape}")
        source = "mask"
    elif default_fill(volume) != 0.0:
        m = body_mask(volume, threshold=-500.0 if threshold is None else threshold).voxels()
        source = "body mask"
    else:
        m = foreground_mask(volume, threshold).voxels()
        source = "largest component above threshold"
    start, stop = foreground_box(m, volume.spacing, margin_mm)
    out = crop(volume, start, stop)
    return out.replace(history=record(volume, "crop_to_foreground", foreground=source, threshold=threshold,
                                      margin_mm=margin_mm, start=start, stop=stop))


def pad_to(volume: Volume, shape: Sequence[int], value: float | None = None) -> Volume:
    """The volume centred in an array of ``shape`` voxels (spatial axes), the rest set to ``value``.

    Centring as the usual notebook recipe: ``(target - n) // 2`` voxels before, the
    rest after. ``value`` is in real units (default air, -1024 HU, for CT, else 0);
    the affine moves so every voxel keeps its world position. An axis already
    longer than the target is an error (crop it first), never a silent crop.
    """
    target = [int(v) for v in shape]
    if len(target) != 3 or any(t < 1 for t in target):
        raise UnsupportedDataError(f"pad shape must be three whole numbers >= 1, got {list(shape)}")
    volume.require_scalar("pad")
    n = volume.shape[:3]
    if any(t < s for t, s in zip(target, n)):
        raise UnsupportedDataError(f"cannot pad shape {tuple(n)} to {tuple(target)}: it is larger along an axis; "
                                   "crop it first (--crop-foreground) or resample to a coarser spacing")
    before = [(t - s) // 2 for t, s in zip(target, n)]
    value_real = float(default_fill(volume) if value is None else value)
    stored = stored_value(volume, value_real)
    if stored is not None:
        data, fill_value, slope, intercept = volume.voxels(), stored, volume.slope, volume.intercept
    else:
        from convert.process.steps import real_float32

        data, fill_value, slope, intercept = real_float32(volume), value_real, 1.0, 0.0
    out = np.full(tuple(target) + tuple(volume.shape[3:]), fill_value, dtype=data.dtype, order="F")
    out[tuple(slice(b, b + s) for b, s in zip(before, n))] = data
    affine = volume.affine.copy()
    affine[:3, 3] = volume.world_coordinates(-np.asarray(before, dtype=np.float64))
    return volume.replace(array=out, affine=affine, slope=slope, intercept=intercept,
                          history=record(volume, "pad_to", shape=target, value=value_real, before=before))


__all__ = ["correct_tilt", "crop", "crop_to_foreground", "flip", "foreground_box", "output_grid", "pad_to",
           "per_channel", "regrid_slices", "reorient", "resample", "resample_to"]
