"""What every processing step shares: the history record, argument checks, real-value helpers.

A step is a pure function ``Volume -> Volume`` (:mod:`convert.process`); it never
changes its input (Volumes are frozen; voxels are copied or viewed, never written
to) and appends one JSON-ready dict to :attr:`convert.volume.Volume.history`.
Values are *real* values (``stored * slope + intercept``) unless a step says
otherwise; lengths are mm; the world space is RAS+ (:mod:`convert.volume`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from convert.errors import UnsupportedDataError
from convert.volume import Volume

#: Air in Hounsfield units: the default fill of CT volumes (padding, resampling, masks).
AIR_HU: float = -1024.0


def record(volume: Volume, step: str, **params: Any) -> tuple[dict[str, Any], ...]:
    """``volume.history`` plus one entry ``{"step": step, **params}`` (values made JSON-ready)."""
    return tuple(volume.history) + ({"step": step, **{k: json_ready(v) for k, v in params.items()}},)


def json_ready(value: Any) -> Any:
    """numpy scalars/arrays and tuples as plain Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    return value


def is_ct(volume: Volume) -> bool:
    """True when the volume is CT (modality ``CT``) or its values are already Hounsfield units."""
    return (volume.meta.modality or "").upper() == "CT" or volume.meta.units == "HU"


def default_fill(volume: Volume) -> float:
    """The background value in real units: air (-1024 HU) for CT, else 0."""
    return AIR_HU if is_ct(volume) else 0.0


def require_3d(volume: Volume, operation: str) -> None:
    """Raise :class:`UnsupportedDataError` for a 4D (or colour) volume given to a 3D-only step."""
    volume.require_scalar(operation)
    if len(volume.shape) != 3:
        raise UnsupportedDataError(
            f"{operation} works on 3D volumes; this one is 4D (shape {volume.shape}): "
            "split it into its 3D volumes first")


def three_numbers(values: Sequence[float] | float, what: str, *, positive: bool = True) -> np.ndarray:
    """``values`` as 3 finite floats (one number is repeated), each > 0 when ``positive``."""
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        raise UnsupportedDataError(
            f"{what} must be three {'positive ' if positive else ''}numbers (i, j, k), got "
            + ",".join(f"{float(v):g}" for v in np.ravel(values)))
    return arr


def stored_value(volume: Volume, real: float) -> float | None:
    """The stored value that means ``real``, when it is exactly representable in the stored dtype, else None."""
    stored = (real - volume.intercept) / volume.slope
    dtype = volume.dtype
    if np.issubdtype(dtype, np.floating):
        return float(stored)
    info = np.iinfo(dtype)
    if float(stored).is_integer() and info.min <= stored <= info.max:
        return float(stored)
    return None


def real_float32(volume: Volume) -> np.ndarray:
    """Real values as float32 (one copy; the stored values are not changed)."""
    out = np.array(volume.voxels(), dtype=np.float32, order="K", copy=True)
    if volume.is_scaled:
        out *= np.float32(volume.slope)
        out += np.float32(volume.intercept)
    return out


def smallest_dtype(lo: float, hi: float, integral: bool) -> np.dtype:
    """The dtype for values in ``[lo, hi]``: int16, else int32 when integral and they fit, else float32.

    This is how :func:`convert.process.intensity.hu` avoids the wrap-around of an
    intercept of -1024 applied to uint16 values (or -(-32768) on int16).
    """
    if integral and np.isfinite(lo) and np.isfinite(hi):
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
    return np.dtype(np.float32)
