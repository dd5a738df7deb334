"""ML-ready outputs: intensity normalisation and folders of PNG slices.

``.npy``/``.npz`` files (voxels with the affine and spacing) are a format like any
other, written by :mod:`convert.formats.numpy` through the one writer path
(``convert.save`` / ``convert.convert`` / ``medconvert convert x.nii.gz x.npz``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from convert.errors import OutputExistsError, OutputWriteError, UnsupportedDataError
from convert.process.steps import real_float32, record
from convert.volume import Volume

Normalization = Literal["zscore", "minmax", "percentile"]


def normalize(volume: Volume, method: Normalization = "zscore", *, mask: Volume | np.ndarray | None = None,
              percentiles: Sequence[float] = (0.5, 99.5)) -> Volume:
    """float32 values normalised with statistics over the whole volume (or the voxels inside ``mask``).

    * ``zscore``: ``(x - mean) / std``;
    * ``minmax``: ``(x - min) / (max - min)``, in [0, 1];
    * ``percentile``: clipped to the ``percentiles`` (default 0.5 and 99.5) and
      scaled to [0, 1] between them.

    The statistics used (mean/std, min/max, percentile values, voxel count) are
    recorded in ``history`` and so in the JSON sidecar. ``meta.units`` becomes None.

    Raises:
        UnsupportedDataError: unknown method, a constant volume, an empty mask.
    """
    volume.require_scalar("--normalize")
    if method not in ("zscore", "minmax", "percentile"):
        raise UnsupportedDataError(f"unknown normalisation '{method}': use zscore, minmax or percentile")
    real = real_float32(volume)
    if mask is not None:
        m = (mask.voxels() if isinstance(mask, Volume) else np.asarray(mask)).astype(bool)
        if m.shape != volume.shape[:3]:
            raise UnsupportedDataError(f"mask shape {m.shape} differs from the volume's {volume.shape[:3]}")
        values = real[m] if real.ndim == 3 else real[m, :]
    else:
        values = real.ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        raise UnsupportedDataError("--normalize: no finite voxel to compute statistics from (empty mask?)")
    stats: dict[str, float | int | list[float]] = {"voxels": int(values.size)}
    if method == "zscore":
        mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
        stats.update(mean=mean, std=std)
        lo, scale = mean, std
    elif method == "minmax":
        lo, hi = float(values.min()), float(values.max())
        stats.update(min=lo, max=hi)
        scale = hi - lo
    else:
        p = [float(v) for v in percentiles]
        if len(p) != 2 or not 0 <= p[0] < p[1] <= 100:
            raise UnsupportedDataError(f"percentiles must be two numbers 0 <= low < high <= 100, got {p}")
        lo, hi = (float(v) for v in np.percentile(values, p))
        stats.update(percentiles=p, low=lo, high=hi)
        scale = hi - lo
        np.clip(real, lo, hi, out=real)
    if not scale > 0:
        raise UnsupportedDataError(f"--normalize {method}: the values are constant ({lo:g}); nothing to scale")
    real -= np.float32(lo)
    real /= np.float32(scale)
    if method == "percentile":
        np.clip(real, 0.0, 1.0, out=real)  # float32 rounding must not leave [0, 1]
    return volume.replace(array=real, slope=1.0, intercept=0.0, meta=volume.meta.replace(units=None),
                          history=record(volume, "normalize", method=method, masked=mask is not None, **stats))


def png_scaling(volume: Volume, bits: int, value_range: tuple[float, float] | None) -> tuple[float, float]:
    """The ``(low, high)`` real values mapped to 0 and ``2**bits - 1``.

    ``value_range`` when given; else, for integer values that already fit the PNG
    depth (uint8 into 8 bits, 0..65535 into 16 bits), the identity (no scaling);
    else the volume's own min..max: a float or 16-bit volume is scaled explicitly,
    never truncated. The choice is written to ``slices.json``.
    """
    if value_range is not None:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise UnsupportedDataError(f"PNG value range must have high > low, got {lo:g}..{hi:g}")
        return lo, hi
    top = float(2 ** bits - 1)
    lo, hi = volume.value_range()
    integral = np.issubdtype(volume.dtype, np.integer) and not volume.is_scaled
    if integral and lo >= 0 and hi <= top:
        return 0.0, top
    if not hi > lo:
        return lo, lo + 1.0
    return lo, hi


def write_png_slices(volume: Volume, folder: str | Path, *, axis: int = 2, bits: int = 8,
                     window: str | tuple[float, float] | None = None,
                     value_range: tuple[float, float] | None = None, overwrite: bool = False) -> list[Path]:
    """One greyscale PNG per slice across voxel ``axis`` into ``folder`` (``slice_0000.png``...).

    Each image shows the slice with rows along the next voxel axis and columns along
    the other (for ``axis=2``: rows ``j``, columns ``i``, as the DICOM pixel grid),
    no reorientation. Values are mapped linearly from ``window`` (a preset, ``dicom``
    or ``C,W``: :func:`convert.process.intensity.resolve_window`) or ``value_range``
    or :func:`png_scaling`'s choice onto ``0..2**bits-1`` (8 or 16 bit), values
    outside clipped. ``slices.json`` records the mapping, the axis and the affine.
    The folder appears complete or not at all (written under a temporary name).

    Raises:
        OutputExistsError: ``folder`` exists and ``overwrite`` is False.
        UnsupportedDataError: 4D or colour input, bits not 8/16, axis not 0..2.
    """
    from PIL import Image

    from convert.atomic import temporary_name
    from convert.process.intensity import resolve_window
    from convert.process.steps import require_3d

    require_3d(volume, "PNG slices")
    if bits not in (8, 16):
        raise UnsupportedDataError(f"PNG slices are 8 or 16 bit, not {bits}")
    if axis not in (0, 1, 2):
        raise UnsupportedDataError(f"slice axis must be 0, 1 or 2, not {axis}")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputExistsError("output already exists; pass --overwrite to replace it", folder)
    if not folder.parent.is_dir():
        raise OutputWriteError(f"output folder {folder.parent} does not exist; create it first", folder)
    if window is not None:
        center, width, _ = resolve_window(window, volume)
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        lo, hi = png_scaling(volume, bits, value_range)
    top = 2 ** bits - 1
    real = volume.scaled()
    temp = temporary_name(folder)
    temp.mkdir()
    try:
        names = []
        for n in range(volume.shape[axis]):
            plane = np.take(real, n, axis=axis).astype(np.float64)
            scaled = np.rint((np.clip(plane, lo, hi) - lo) / (hi - lo) * top)
            pixels = scaled.astype(np.uint8 if bits == 8 else np.uint16).T  # rows: the second remaining axis
            name = f"slice_{n:04d}.png"
            Image.fromarray(pixels).save(temp / name)
            names.append(name)
        info = {"axis": axis, "bits": bits, "low": lo, "high": hi, "files": names,
                "mapping": f"pixel = round((clip(value, low, high) - low) / (high - low) * {top})",
                "rows_columns": [v for v in ("ijk"[a] for a in range(3)) if v != "ijk"[axis]][::-1],
                "affine_ras": np.round(volume.affine, 6).tolist(), "history": list(volume.history)}
        (temp / "slices.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return [folder / name for name in names] + [folder / "slices.json"]
