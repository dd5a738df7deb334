"""Masks: CT body (foreground) mask, head-CT brain mask, and applying a mask.

A mask is a :class:`~convert.volume.Volume` of ``uint8`` 0/1 on the same grid
(shape and affine) as the image it was made from. Thresholds are real values (HU
for CT); sizes are mm, turned into voxels per axis from the spacing.
"""

from __future__ import annotations

import math

import numpy as np

from convert.errors import UnsupportedDataError
from convert.process.steps import default_fill, real_float32, record, require_3d, stored_value
from convert.volume import Meta, Volume


def _mask_volume(volume: Volume, mask: np.ndarray, step: str, **params: object) -> Volume:
    return Volume(array=mask.astype(np.uint8), affine=volume.affine, meta=Meta(modality=volume.meta.modality),
                  history=record(volume, step, **params))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (all False when it is empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _axial_axis(volume: Volume) -> int:
    """The voxel axis closest to the superior-inferior direction (slices across it are axial)."""
    return int(np.argmax(np.abs(volume.direction[2, :])))


def fill_holes_in_slices(mask: np.ndarray, axis: int) -> np.ndarray:
    """Holes filled in every 2D slice across ``axis`` (air in lungs, bowel, trachea open at one end)."""
    from scipy import ndimage

    out = np.empty_like(mask, dtype=bool)
    for n in range(mask.shape[axis]):
        index = [slice(None)] * mask.ndim
        index[axis] = n
        out[tuple(index)] = ndimage.binary_fill_holes(mask[tuple(index)])
    return out


def _iterations(volume: Volume, mm: float, skip_axis: int | None = None) -> int:
    """How many steps of a one-voxel structuring element make about ``mm`` (finest spacing used)."""
    spacing = [s for n, s in enumerate(volume.spacing) if n != skip_axis]
    return max(1, int(math.ceil(round(mm / float(np.min(spacing)), 6)))) if mm > 0 else 0


def _in_plane_structure(axis: int) -> np.ndarray:
    """A 3x3 cross in the planes across ``axis`` (no reach along ``axis``)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    index = [slice(None)] * 3
    index[axis] = slice(1, 2)
    flat = np.zeros_like(cross)
    flat[tuple(index)] = cross[tuple(index)]
    return flat


def body_mask(volume: Volume, *, threshold: float = -500.0, opening_mm: float = 3.0) -> Volume:
    """The patient's body in a CT: threshold, opening, largest component, holes filled.

    1. voxels above ``threshold`` (HU; -500 keeps fat and soft tissue, not air);
    2. a binary opening of about ``opening_mm`` cuts thin bridges (a table touching
       the patient through a cushion, cables), then the largest 26-connected
       component is kept: the table, text markers and rulers are separate objects;
    3. the component is grown back within the thresholded voxels and holes are filled
       in every axial slice (lungs, bowel gas, the trachea).

    Returns a ``uint8`` 0/1 :class:`Volume` on the same grid.
    """
    from scipy import ndimage

    require_3d(volume, "body mask")
    foreground = volume.scaled() > threshold
    axial = _axial_axis(volume)
    iterations = _iterations(volume, opening_mm, axial)
    flat = _in_plane_structure(axial)  # opening in axial planes: the body's ends stay whole
    core = ndimage.binary_opening(foreground, structure=flat, iterations=iterations) if iterations else foreground
    body = largest_component(core)
    if iterations and body.any():
        body = ndimage.binary_dilation(body, structure=flat, iterations=iterations) & foreground
        body = largest_component(body)
    body = fill_holes_in_slices(body, axial)
    return _mask_volume(volume, body, "body_mask", threshold=threshold, opening_mm=opening_mm)


def foreground_mask(volume: Volume, threshold: float | None = None) -> Volume:
    """Largest connected component above ``threshold`` (default: the mean real value), holes filled.

    For volumes that are not CT (MR, PET): the object of interest without stray
    bright specks or markers.
    """
    from scipy import ndimage

    require_3d(volume, "foreground mask")
    real = volume.scaled()
    level = float(np.mean(real)) if threshold is None else float(threshold)
    mask = largest_component(real > level)
    mask = ndimage.binary_fill_holes(mask)
    return _mask_volume(volume, mask, "foreground_mask", threshold=level)


def brain_mask(volume: Volume, *, low: float = 0.0, high: float = 80.0, erosion_mm: float = 2.0) -> Volume:
    """The brain in a head CT, as in the classic recipe.

    Voxels in the brain window (``low``..``high`` HU, default 0..80: CSF to grey
    matter; bone and air excluded) are eroded by about ``erosion_mm`` to cut the
    thin links to scalp and muscle through the skull's openings, the largest
    component is kept (the intracranial contents: the skull surrounds it), dilated
    back within the window, and holes are filled in every axial slice.
    """
    from scipy import ndimage

    require_3d(volume, "brain mask")
    real = volume.scaled()
    window = (real >= low) & (real <= high)
    iterations = _iterations(volume, erosion_mm)
    core = ndimage.binary_erosion(window, iterations=iterations) if iterations else window
    brain = largest_component(core)
    if iterations and brain.any():
        brain = ndimage.binary_dilation(brain, iterations=iterations) & window
    brain = fill_holes_in_slices(brain, _axial_axis(volume))
    return _mask_volume(volume, brain, "brain_mask", low=low, high=high, erosion_mm=erosion_mm)


def apply_mask(volume: Volume, mask: Volume | np.ndarray, fill: float | None = None) -> Volume:
    """Voxels outside ``mask`` (zero) set to ``fill`` (real units; default air for CT, else 0).

    The stored dtype and scaling are kept when ``fill`` is representable in them,
    else the output holds float32 real values. A 4D volume is masked in every volume.
    """
    volume.require_scalar("apply mask")
    m = mask.voxels() if isinstance(mask, Volume) else np.asarray(mask)
    if m.shape != volume.shape[:3]:
        raise UnsupportedDataError(f"mask shape {m.shape} differs from the volume's {volume.shape[:3]}")
    fill_real = float(default_fill(volume) if fill is None else fill)
    stored = stored_value(volume, fill_real)
    if stored is not None:
        out = np.array(volume.voxels(), copy=True)
        value, slope, intercept = stored, volume.slope, volume.intercept
    else:
        out = real_float32(volume)
        value, slope, intercept = fill_real, 1.0, 0.0
    outside = ~m.astype(bool)
    if out.ndim == 4:
        out[outside, :] = value
    else:
        out[outside] = value
    return volume.replace(array=out, slope=slope, intercept=intercept,
                          history=record(volume, "apply_mask", fill=fill_real,
                                         masked_voxels=int(np.count_nonzero(outside))))
