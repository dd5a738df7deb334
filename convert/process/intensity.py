"""Intensity steps: Hounsfield units, display windows, clipping and casting.

All values are *real* values (``stored * slope + intercept``); CT values are
Hounsfield units (HU). Every step returns a new :class:`~convert.volume.Volume`
(slope 1, intercept 0 unless said otherwise) and records itself in ``history``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from convert.errors import UnsupportedDataError
from convert.process.steps import AIR_HU, record, smallest_dtype
from convert.volume import Volume

#: Named CT windows as ``(center, width)`` in HU (fastai's set, given there as width/level).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (100.0, 254.0),
    "stroke": (32.0, 8.0),
    "bone": (600.0, 2800.0),
    "soft-tissue": (40.0, 375.0),
    "lungs": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "liver": (30.0, 150.0),
    "spine-soft": (50.0, 250.0),
    "spine-bone": (400.0, 1800.0),
}

#: Stored CT values at or below this (in HU) are the scanner's padding outside its circular field of view.
PADDING_THRESHOLD_HU: float = -2000.0

WindowOutput = Literal["hu", "unit", "uint8"]


def hu(volume: Volume, *, padding: float = AIR_HU, padding_threshold: float = PADDING_THRESHOLD_HU) -> Volume:
    """CT values in Hounsfield units, with the padding outside the field of view set to ``padding``.

    The reader has already applied RescaleSlope/RescaleIntercept per slice where
    slices differ; what is left is the volume's one ``slope``/``intercept``, applied
    here. Voxels whose value is at or below ``padding_threshold`` (-2000 HU: the
    -2000 / -3024 padding scanners write outside the circular field of view; nothing
    physical is below air, -1000 HU) become ``padding`` (default air, -1024 HU).

    The output dtype is chosen from the value range, never by wrapping: int16 when
    slope and intercept are integers and the values fit, else int32, else float32
    (an intercept of -1024 on uint16 values up to 65535 gives int32, not a wrapped
    int16). ``meta.units`` becomes ``"HU"``.

    Raises:
        UnsupportedDataError: the volume is not CT (its modality is known and is not
            ``CT``, or its units are something other than HU), or colour.
    """
    volume.require_scalar("--hu")
    modality = (volume.meta.modality or "").upper()
    if modality and modality != "CT":
        raise UnsupportedDataError(f"--hu applies to CT only; this volume's modality is {volume.meta.modality}")
    if volume.meta.units not in (None, "HU"):
        raise UnsupportedDataError(f"--hu applies to CT only; this volume's values are in {volume.meta.units}")
    stored = volume.voxels()
    slope, intercept = volume.slope, volume.intercept
    integral = (np.issubdtype(stored.dtype, np.integer) and float(slope).is_integer()
                and float(intercept).is_integer())
    lo_hi = [float(np.min(stored)) * slope + intercept, float(np.max(stored)) * slope + intercept] \
        if stored.size else [0.0, 0.0]
    lo, hi = min(lo_hi), max(lo_hi)
    has_padding = lo <= padding_threshold
    if has_padding:
        lo = min(padding, padding_threshold)  # every value left is above the threshold
    dtype = smallest_dtype(lo, hi, integral and float(padding).is_integer())
    out = np.empty(stored.shape, dtype=dtype, order="F")
    work = np.int64 if dtype.kind == "i" else np.float64
    n_padding = 0
    step = max(1, (1 << 24) // max(1, stored.shape[0] * stored.shape[1]))  # slabs of ~16 M voxels
    for k0 in range(0, stored.shape[2], step):
        slab = stored[:, :, k0:k0 + step].astype(work)
        if slope != 1.0:
            slab *= work(slope)
        if intercept != 0.0:
            slab += work(intercept)
        if has_padding:
            pad = slab <= padding_threshold
            n_padding += int(np.count_nonzero(pad))
            slab[pad] = padding
        out[:, :, k0:k0 + step] = slab
    history = record(volume, "hu", slope=slope, intercept=intercept, padding_threshold_hu=padding_threshold,
                     padding_hu=padding, padding_voxels=n_padding, dtype=str(dtype))
    return volume.replace(array=out, slope=1.0, intercept=0.0, meta=volume.meta.replace(units="HU"),
                          history=history)


def resolve_window(spec: str | tuple[float, float], volume: Volume | None = None) -> tuple[float, float, str]:
    """``(center, width, label)`` for a window given as a preset name, ``"dicom"``, ``"C,W"`` or a pair.

    ``"dicom"`` is the series' first WindowCenter/WindowWidth (``volume.meta.window``).

    Raises:
        UnsupportedDataError: unknown preset, width <= 0, or ``"dicom"`` without a stored window.
    """
    if isinstance(spec, str):
        text = spec.strip().lower().replace("_", "-").replace(" ", "-")
        if text in WINDOW_PRESETS:
            center, width = WINDOW_PRESETS[text]
            label = text
        elif text == "dicom":
            windows = volume.meta.window if volume is not None else ()
            if not windows:
                raise UnsupportedDataError("--window dicom: this volume has no WindowCenter/WindowWidth; "
                                           "give a preset name or CENTER,WIDTH")
            center, width = (float(v) for v in windows[0])
            label = "dicom"
        else:
            parts = text.split(",")
            try:
                center, width = (float(p) for p in parts)
            except ValueError:
                raise UnsupportedDataError(
                    f"unknown window '{spec}': use CENTER,WIDTH (e.g. 40,80), 'dicom' or a preset: "
                    + ", ".join(WINDOW_PRESETS)) from None
            label = f"{center:g},{width:g}"
    else:
        center, width = (float(v) for v in spec)
        label = f"{center:g},{width:g}"
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise UnsupportedDataError(f"window width must be > 0 (got center {center:g}, width {width:g})")
    return center, width, label


def window(volume: Volume, spec: str | tuple[float, float], output: WindowOutput = "hu") -> Volume:
    """Apply a display window ``spec`` (see :func:`resolve_window`) to the real values.

    The window spans ``[center - width/2, center + width/2]``. ``output``:

    * ``"hu"``: values clipped to the window, in the input's units (int16 kept
      when the input and the bounds are integers, else float32);
    * ``"unit"``: float32 in ``[0, 1]`` (low bound -> 0, high bound -> 1);
    * ``"uint8"``: ``round(unit * 255)`` as uint8, for ML pipelines and pictures.
    """
    volume.require_scalar("--window")
    center, width, label = resolve_window(spec, volume)
    lo, hi = center - width / 2.0, center + width / 2.0
    if output not in ("hu", "unit", "uint8"):
        raise UnsupportedDataError(f"window output must be 'hu', 'unit' or 'uint8', not '{output}'")
    real = volume.scaled()
    meta = volume.meta
    if output == "hu":
        keep = np.issubdtype(real.dtype, np.integer) and float(lo).is_integer() and float(hi).is_integer()
        target = real.dtype if keep else np.float32
        lo_c, hi_c = (lo, hi) if not keep else _fit(lo, hi, real.dtype)
        out = np.clip(real, lo_c, hi_c).astype(target, copy=False)
    else:
        unit = (np.clip(real.astype(np.float32, copy=False), lo, hi) - np.float32(lo)) / np.float32(width)
        out = unit if output == "unit" else np.rint(unit * 255.0).astype(np.uint8)
        meta = meta.replace(units=None)
    history = record(volume, "window", window=label, center=center, width=width, low=lo, high=hi, output=output)
    return volume.replace(array=np.asarray(out), slope=1.0, intercept=0.0, meta=meta, history=history)


def _fit(lo: float, hi: float, dtype: np.dtype) -> tuple[float, float]:
    info = np.iinfo(dtype)
    return max(lo, info.min), min(hi, info.max)


def clip(volume: Volume, low: float | None = None, high: float | None = None) -> Volume:
    """Real values limited to ``[low, high]`` (either may be None); dtype kept when the bounds fit it."""
    volume.require_scalar("clip")
    if low is not None and high is not None and low > high:
        raise UnsupportedDataError(f"clip: low {low:g} is above high {high:g}")
    real = volume.scaled()
    integral = np.issubdtype(real.dtype, np.integer) and all(
        b is None or float(b).is_integer() for b in (low, high))
    out = np.clip(real, low, high)
    if not integral:
        out = out.astype(np.float32 if real.dtype.itemsize <= 4 or volume.is_scaled else real.dtype, copy=False)
    else:
        out = out.astype(real.dtype, copy=False)
    return volume.replace(array=out, slope=1.0, intercept=0.0, history=record(volume, "clip", low=low, high=high))


def cast(volume: Volume, dtype: Any, *, round_values: bool = True) -> Volume:
    """Real values stored as ``dtype`` (slope 1, intercept 0).

    Integer targets are rounded (``round_values``) and checked: values outside the
    dtype's range, or NaN/infinite values, raise instead of wrapping around.

    Raises:
        UnsupportedDataError: values do not fit ``dtype``, or ``dtype`` is not a voxel dtype.
    """
    volume.require_scalar("cast")
    target = np.dtype(dtype)
    real = volume.scaled()
    if target.kind in "iu":
        if real.size and np.issubdtype(real.dtype, np.floating) and not np.all(np.isfinite(real)):
            raise UnsupportedDataError(f"cannot cast to {target}: the volume has NaN or infinite values")
        info = np.iinfo(target)
        lo, hi = (float(real.min()), float(real.max())) if real.size else (0.0, 0.0)
        if lo < info.min or hi > info.max:
            raise UnsupportedDataError(
                f"values {lo:g}..{hi:g} do not fit {target} ({info.min}..{info.max}); "
                "clip them first or choose a wider dtype")
        if round_values and np.issubdtype(real.dtype, np.floating):
            real = np.rint(real)
    elif target.kind == "f" and real.size and target.itemsize < real.dtype.itemsize:
        finfo = np.finfo(target)
        lo, hi = float(np.nanmin(real)), float(np.nanmax(real))
        if lo < float(finfo.min) or hi > float(finfo.max):
            raise UnsupportedDataError(f"values {lo:g}..{hi:g} do not fit {target}")
    out = real.astype(target)
    return volume.replace(array=out, slope=1.0, intercept=0.0, history=record(volume, "cast", dtype=str(target)))
