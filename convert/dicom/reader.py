"""Read DICOM series into Volumes; the ``DICOM`` format adapter; the files of one converted series
(image, JSON sidecar, ``.bval``/``.bvec``). Whole-tree conversion and naming live in :mod:`convert.batch`.

Geometry (DICOM PS3.3 C.7.6.2, all in LPS+ mm before the one conversion to RAS+; the affine is
:func:`convert.geometry.slice_affine_lps`, slice regridding and tilt correction are the steps
:func:`convert.process.geometry.regrid_slices` / :func:`~convert.process.geometry.correct_tilt`):

* ImageOrientationPatient = (row cosine, column cosine). The row cosine is the
  direction of increasing **column index** (our ``i``); the column cosine the
  direction of increasing **row index** (our ``j``).
* PixelSpacing = (spacing between rows = along ``j``, spacing between columns =
  along ``i``): the classic swap.
* The slice axis ``k`` runs from the first to the last slice sorted along the
  normal ``cross(row, col)``; its vector is ``(IPP_last - IPP_first) / (n - 1)``,
  so gantry tilt is kept exactly as a shear unless tilt correction is asked for.
  A single slice uses the normal times SpacingBetweenSlices, SliceThickness or 1 mm.
* ``pixel_array[row, col]`` becomes ``array[i=col, j=row]``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.atomic import check_writable
from convert.dicom.elements import IMPLICIT_VR_LE, NATIVE_SYNTAXES
from convert.dicom.header import read_header
from convert.dicom.pixels import (
    check_file_size,
    check_philips_scaling,
    decode_frames,
    fix_stored_bits,
    is_colour,
    native_frames,
    philips_precise_scaling,
    philips_scale_slope,
    philips_scaling_fields,
    rescale_plan,
    seek_native_pixels,
    stored_dtype,
    stored_values,
)
from convert.dicom.scan import Instance, Listing, looks_like_dicom, scan
from convert.dicom.series import (
    TILT_THRESHOLD_DEG,
    LazyHeaders,
    Series,
    assemble,
    median,
)
from convert.errors import (
    CorruptFileError,
    DicomError,
    InputNotFoundError,
    NoDicomError,
    UnsupportedDataError,
    spell,
)
from convert.geometry import lps_to_ras, slice_affine_lps
from convert.proxy import ByteSpan, SliceProxy
from convert.volume import RGB_DTYPE, Meta, Volume


def _optional_module(name: str) -> Any:
    """``convert.dicom.<name>`` (owned by the multi-frame helper), imported on first use; None if absent.

    Lazy so that importing this module (every ``medconvert`` command does, via the
    format registry) does not pay for pydicom.
    """
    import importlib

    try:
        return importlib.import_module(f"convert.dicom.{name}")
    except ImportError:  # pragma: no cover - depends on the other helper's progress
        return None


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class ReadOptions:
    """How to treat imperfect series.

    Attributes:
        tilt_correct: resample a gantry-tilted (sheared) series onto an
            orthogonal grid (in-plane linear interpolation, field of view
            extended so nothing is cut off), as dcm2niix's ``_Tilt`` output.
        allow_gaps: read a series with missing slices by resampling it onto a
            regular grid at the median spacing (values in the gap are linearly
            interpolated from its neighbours: flagged in warnings). Default: refuse.
        stack_uneven: stack unevenly spaced slices as stored, one slice per
            file, with the mean spacing from the first to the last slice in the
            affine: the slices in between are then misplaced (the warning says
            by how many mm). Default: resample them onto the series' even grid
            (:meth:`convert.dicom.series.Series.even_grid`; linear
            interpolation between the two stored slices around each grid plane),
            so every voxel is at its true world position.
        workers: decoding threads (default 2).
        philips_scaling: Philips MR values: ``"precise"`` (default, as dcm2niix:
            the scanner's floating-point values, using the private ScaleSlope
            2005,xx0E) or ``"display"`` (RescaleSlope/Intercept only, what the
            scanner console shows). Other vendors are unaffected.
    """

    tilt_correct: bool = False
    allow_gaps: bool = False
    stack_uneven: bool = False
    workers: int | None = None
    philips_scaling: str = "precise"


def _meta_for(ds: Any, series: Series | None = None) -> Meta:
    _sidecar = _optional_module("sidecar")
    if _sidecar is not None:
        try:
            return _sidecar.meta_from_dataset(ds)
        except Exception:  # a sidecar bug must not stop a conversion
            pass
    modality = str(ds.get("Modality", "") or "") or None
    units = "HU" if modality == "CT" else None
    return Meta(modality=modality, manufacturer=str(ds.get("Manufacturer", "") or "") or None,
                series_description=str(ds.get("SeriesDescription", "") or "") or None, units=units)


def _time_step(series: Series) -> float | None:
    if series.n_times < 2:
        return None
    return time_step_seconds(series, series.first.load_header().get("RepetitionTime"))


def time_step_seconds(series: Series, tr: Any) -> float | None:
    """Seconds between the volumes of a 4D ``series``: the median step of the first slice's
    AcquisitionTime when it increases, else RepetitionTime ``tr`` (ms) / 1000, else None."""
    if series.n_times < 2:
        return None
    times = [inst.acquisition_time for inst in series.grid[0]]
    if all(t is not None for t in times):
        diffs = np.diff(np.asarray(times, dtype=np.float64))
        if len(diffs) and np.all(diffs > 0):
            return median(diffs)
    try:
        if tr is not None and float(tr) > 0:
            return float(tr) / 1000.0
    except (TypeError, ValueError):
        pass
    return None


# --------------------------------------------------------------------------- reading
def _decode_into(target: np.ndarray, index: tuple, inst: Instance, expected: tuple[int, int]) -> tuple[float, float]:
    frames, ds = decode_frames(inst.path, expected=expected)
    if frames.shape[0] != 1:
        raise DicomError(f"expected one frame, found {frames.shape[0]}", inst.path)
    frame = frames[0]
    if frame.dtype.kind == "f" and target.dtype.kind != "f":
        raise UnsupportedDataError("floating-point pixel data in a series is not supported", inst.path)
    target[(slice(None), slice(None)) + index] = frame.T
    if target.dtype == RGB_DTYPE:
        return 1.0, 0.0  # RescaleSlope/Intercept do not apply to colour
    return inst.rescale_slope, inst.rescale_intercept  # the scan's values, checked by the series assembly


def _native_fast_path_ok(series: Series, dtype: np.dtype) -> bool:
    """True when every file is uncompressed little endian MONOCHROME2 with a known pixel offset."""
    if dtype.itemsize * 8 not in (8, 16, 32):
        return False
    for inst in series.instances:
        if (inst.pixel_offset is None or inst.transfer_syntax not in NATIVE_SYNTAXES or inst.number_of_frames != 1
                or inst.samples_per_pixel != 1 or inst.photometric != "MONOCHROME2"
                or inst.bits_allocated != dtype.itemsize * 8):
            return False
    return True


def _read_native_into(array: np.ndarray, jobs: list[tuple[tuple, Instance]], first: Instance) -> list[tuple[float, float]]:
    """Read uncompressed little-endian pixel data straight into the Fortran-ordered volume.

    In an F-ordered ``[i, j, k(, t)]`` array, slice ``(k, t)`` is one contiguous block
    whose byte order is exactly DICOM's row-major frame (column index fastest), so
    each file's pixel bytes are ``readinto`` their place: no second header parse,
    no temporary arrays, no transpose. Stored bits are then masked/sign-extended
    per slice when BitsStored < BitsAllocated.
    """
    nk = array.shape[2]
    npix = array.shape[0] * array.shape[1]
    nbytes = npix * array.itemsize
    flat = array.reshape(-1, order="F")  # a view: array is F-contiguous
    for index, inst in jobs:
        block = index[0] + (index[1] * nk if len(index) > 1 else 0)
        target = memoryview(flat[block * npix:(block + 1) * npix]).cast("B")
        implicit = inst.transfer_syntax == IMPLICIT_VR_LE
        try:
            with open(inst.path, "rb") as fh:
                seek_native_pixels(fh, inst.path, inst.pixel_offset or 0, implicit, nbytes,
                                   f"{first.columns}x{first.rows} pixels of {array.itemsize * 8} bits")
                got = fh.readinto(target)
        except OSError as exc:
            raise CorruptFileError(f"cannot read pixel data: {exc.strerror or exc}", inst.path) from exc
        if got != nbytes:
            raise CorruptFileError(f"file ends after {got} of {nbytes} pixel bytes: the file is truncated", inst.path)
        bits = inst.bits_stored or inst.bits_allocated
        if bits < inst.bits_allocated:
            view = flat[block * npix:(block + 1) * npix]
            view[...] = fix_stored_bits(view, bits, inst.pixel_representation == 1)
    return [(inst.rescale_slope, inst.rescale_intercept) for _, inst in jobs]


def _value_range(array: np.ndarray, scalings: Sequence[tuple[float, float]] | None = None) -> tuple[float, float]:
    """(min, max) of the stored values actually present (0, 0 for an empty array).

    Skipped (returns (0, 0)) when every slice shares one slope/intercept: the range is then unused.
    """
    if scalings is not None and len(set(scalings)) <= 1:
        return (0.0, 0.0)
    if array.size == 0:
        return (0.0, 0.0)
    return (float(array.min()), float(array.max()))


def read_series(series: Series, *, tilt_correct: bool = False, allow_gaps: bool = False,
                stack_uneven: bool = False, workers: int | None = None,
                philips_scaling: str = "precise") -> Volume:
    """Decode one series into a Volume (RAS+ affine, ``[i, j, k(, t)]``).

    Args:
        series: from :func:`convert.dicom.series.assemble`.
        tilt_correct, allow_gaps, stack_uneven, workers, philips_scaling: see :class:`ReadOptions`
            (``philips_scaling`` applies to classic and enhanced Philips MR files alike).

    Raises:
        DicomError: the series cannot be assembled (missing slices without
            ``allow_gaps``, inconsistent 4D...), or a file cannot be decoded;
            the message names the file(s).
        CorruptFileError: a file is truncated.
        UnsupportedDataError: colour data we cannot decode (see :func:`convert.dicom.pixels.decode_colour_frames`).

    Colour series (RGB, YBR, PALETTE COLOR) become RGB volumes (dtype
    :data:`~convert.volume.RGB_DTYPE`) with the same geometry rules, never scaled.
    """
    opts = ReadOptions(tilt_correct=tilt_correct, allow_gaps=allow_gaps, stack_uneven=stack_uneven,
                       workers=workers, philips_scaling=check_philips_scaling(philips_scaling))
    where = series.first.path
    if series.problem:
        raise DicomError(f"series {series.label}: {series.problem}", where)
    if series.kind == "multiframe":
        volumes = _read_multiframe_series(series, philips_scaling=philips_scaling)
        if len(volumes) != 1:
            raise DicomError(
                f"series {series.label} holds {len(volumes)} volumes (stacks/echoes/image types); convert it to "
                "an output FOLDER to get them all", where)
        return volumes[0]
    if series.kind == "mosaic":
        return _read_mosaic(series, opts)
    if series.missing and not opts.allow_gaps:
        k, n = series.missing[0]
        before, after = series.grid[k][0].path, series.grid[k + 1][0].path
        raise DicomError(
            f"series {series.label} has missing slices: {n} slice(s) missing between {before} and {after} "
            f"({sum(m for _, m in series.missing)} in total); refusing to stack it with a wrong geometry. "
            "Find the missing files, or pass --allow-gaps to resample across the gap",
            where,
        )
    return _read_slices(series, opts)


def _read_slices(series: Series, opts: ReadOptions) -> Volume:
    """A classic (one image per file) series as a Volume.

    Lazy when nothing needs the whole array first (one slope/intercept for the series,
    no regridding, no tilt correction, grey values): the Volume's voxels are a
    :class:`~convert.proxy.SliceProxy` that decodes each slice when a writer asks for it,
    so a conversion streams the series through memory. Otherwise every slice is decoded
    now, then rescaled / resampled as the options say.
    """
    first = series.first
    nk, nt = series.n_slices, series.n_times
    colour = is_colour(first.samples_per_pixel, first.photometric)
    dtype = RGB_DTYPE if colour else stored_dtype(first.bits_allocated or 16, first.bits_stored or 16,
                                                  first.pixel_representation == 1)
    shape = (first.columns, first.rows, nk) + ((nt,) if nt > 1 else ())
    jobs = []
    for k, column in enumerate(series.grid):
        for t, inst in enumerate(column):
            jobs.append(((k, t) if nt > 1 else (k,), inst))
    expected = (first.rows, first.columns)
    for _, inst in jobs:  # before anything is allocated: every file can hold the pixels its header describes
        check_file_size(inst.path, inst.rows, inst.columns, inst.number_of_frames, inst.samples_per_pixel,
                        inst.bits_allocated or 16, inst.transfer_syntax, inst.photometric)
    n_workers = opts.workers or min(2, os.cpu_count() or 1)
    regrid = bool((series.missing and opts.allow_gaps) or (series.uneven and not opts.stack_uneven))
    tilt = bool(opts.tilt_correct and series.tilt_deg > TILT_THRESHOLD_DEG and nk > 1)
    header_scalings = [(1.0, 0.0) if colour else (inst.rescale_slope, inst.rescale_intercept) for _, inst in jobs]
    philips = _philips_record(first, header_scalings[0], opts.philips_scaling) if not colour else None
    if philips is not None and opts.philips_scaling == "precise":
        header_scalings = [_precise(sc, inst) for sc, (_, inst) in zip(header_scalings, jobs)]
    one_scaling = len(set(header_scalings)) == 1

    affine = slice_affine_lps(first, series.grid[-1][0], nk)
    if one_scaling and not regrid and not tilt and not colour:
        array: Any = _slice_proxy(series, shape, dtype, n_workers)
        slope, intercept = header_scalings[0]
    else:
        array, (slope, intercept) = _decode_all(series, jobs, shape, dtype, expected, n_workers, colour, philips,
                                                opts)
    warnings = list(series.warnings)
    if regrid or tilt:
        from convert.process.geometry import correct_tilt, per_channel, regrid_slices
    if regrid:
        n_even = series.even_grid()[0]
        array, affine = per_channel(lambda a: regrid_slices(a, affine, series.distances, n_even), array)
    if tilt:
        fill = (0.0 if colour else float(np.min(array))) if array.size else 0.0  # colour: black outside
        array, affine = per_channel(lambda a: correct_tilt(a, affine, fill), array)
        warnings.append(f"gantry tilt of {series.tilt_deg:.2f} degrees corrected by resampling")
    if series.uneven or (series.missing and opts.allow_gaps):
        warnings.append(spacing_note(series, stacked=not regrid, slice_step_mm=float(np.linalg.norm(affine[:3, 2]))))

    header = first.load_header()
    meta = _meta_for(header, series)
    step = _time_step(series)
    if step is not None:
        meta = meta.replace(time_step=step)
    if philips is not None:
        meta = meta.replace(acquisition={**meta.acquisition, **philips})
    return Volume(array=array, affine=lps_to_ras(affine), meta=meta, slope=slope, intercept=intercept,
                  source=header, warnings=tuple(warnings))


def _decode_all(series: Series, jobs: list[tuple[tuple, Instance]], shape: tuple[int, ...], dtype: np.dtype,
                expected: tuple[int, int], n_workers: int, colour: bool, philips: dict[str, Any] | None,
                opts: ReadOptions) -> tuple[np.ndarray, tuple[float, float]]:
    """Every slice decoded into one F-ordered array, rescaled per slice when slopes differ.

    Returns ``(array, (slope, intercept))``: the common scaling to carry, (1, 0) when applied.
    """
    array = np.empty(shape, dtype=dtype, order="F")

    def work(job: tuple[tuple, Instance]) -> tuple[float, float]:
        return _decode_into(array, job[0], job[1], expected)

    if not colour and _native_fast_path_ok(series, dtype):
        scalings = _read_native_into(array, jobs, series.first)
    elif n_workers > 1 and len(jobs) > 4:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            scalings = list(pool.map(work, jobs))
    else:
        scalings = [work(job) for job in jobs]
    if philips is not None and opts.philips_scaling == "precise":
        scalings = [_precise(s, inst) for s, (_, inst) in zip(scalings, jobs)]

    mode, out_dtype, slope, intercept = rescale_plan([s for s, _ in scalings], [b for _, b in scalings],
                                                     array.dtype, _value_range(array, scalings))
    if mode == "apply":  # per-slice scaling: in place when the stored dtype holds the results
        scaled = array if out_dtype == array.dtype else np.empty(shape, dtype=out_dtype, order="F")
        for (index, _), (s, b) in zip(jobs, scalings):
            sl = (slice(None), slice(None)) + index
            values = array[sl].astype(np.float64) * s + b
            scaled[sl] = np.round(values) if out_dtype.kind in "iu" else values
        array = scaled
    return array, (slope, intercept)


#: Uncompressed slices smaller than this are read by one thread (starting threads cost more).
NATIVE_THREADED_SLICE_BYTES = 256 * 1024


def _slice_proxy(series: Series, shape: tuple[int, ...], dtype: np.dtype, n_workers: int) -> SliceProxy:
    """Lazy voxels of a classic series: each slice decoded (or read natively) when asked for.

    Native uncompressed little-endian slices whose stored bits fill their words are exactly
    the output's bytes: their spans let writers copy them without decoding. Truncated files
    are found now from their sizes (cheap), not halfway through writing.
    """
    first = series.first
    nk, nt = series.n_slices, series.n_times
    expected = (first.rows, first.columns)
    nbytes = first.rows * first.columns * dtype.itemsize
    native = _native_fast_path_ok(series, dtype)
    spans: list[ByteSpan | None] = []
    for t in range(nt):
        for k in range(nk):
            inst = series.grid[k][t]
            if not native:
                spans.append(None)
                continue
            header_bytes = 8 if inst.transfer_syntax == IMPLICIT_VR_LE else 12
            value_offset = (inst.pixel_offset or 0) + header_bytes
            try:
                size = inst.path.stat().st_size
            except OSError as exc:
                raise CorruptFileError(f"cannot read pixel data: {exc.strerror or exc}", inst.path) from exc
            if size < value_offset + nbytes:
                raise CorruptFileError(
                    f"file ends {max(0, size - value_offset)} bytes into pixel data of {nbytes} bytes "
                    f"({first.columns}x{first.rows} pixels of {dtype.itemsize * 8} bits): the file is truncated",
                    inst.path)
            bits = inst.bits_stored or inst.bits_allocated
            exact = bits == inst.bits_allocated and inst.pixel_representation == first.pixel_representation
            spans.append(ByteSpan(inst.path, value_offset, nbytes) if exact else None)

    def read(k: int, t: int) -> np.ndarray:
        inst = series.grid[k][t]
        out = np.empty((first.columns, first.rows, 1), dtype=dtype, order="F")
        if native:
            _read_native_into(out, [((0,), inst)], first)
        else:
            _decode_into(out, (0,), inst, expected)
        return out[:, :, 0]

    # Native slices are file reads (a memcpy from the page cache): threads only pay off for big ones;
    # decoding compressed slices releases the GIL, so it always gets the workers.
    workers = n_workers if not native or nbytes >= NATIVE_THREADED_SLICE_BYTES else 1
    return SliceProxy(shape, dtype, read, spans=spans, workers=workers)


def _precise(scaling: tuple[float, float], inst: Instance) -> tuple[float, float]:
    """A slice's (slope, intercept) for Philips precise values (unchanged without a private ScaleSlope)."""
    if inst.philips_scale_slope is None:
        return scaling
    return philips_precise_scaling(scaling[0], scaling[1], inst.philips_scale_slope)


def _philips_record(first: Instance, scaling: tuple[float, float], philips_scaling: str) -> dict[str, Any] | None:
    """The sidecar fields of a Philips series' scaling (first slice's factors), or None for other files."""
    if first.philips_scale_slope is None:
        return None
    return philips_scaling_fields(scaling[0], scaling[1], first.philips_scale_slope, philips_scaling)


def volume_warnings(volume: Volume) -> list[str]:
    """Warnings recorded while reading ``volume`` (tilt, gaps, uneven spacing, duplicates).

    Options are named for the context (:func:`convert.errors.spell`): ``--stack-uneven``
    on the command line, ``stack_uneven=True`` in Python.
    """
    return [spell(w) for w in volume.warnings]


def spacing_note(series: Series, *, stacked: bool, slice_step_mm: float, planned: bool = False) -> str:
    """The one line telling what was done with an unevenly spaced (or gapped) ``series``.

    ``slice_step_mm`` is the length of the output's slice vector (NIfTI pixdim[3]),
    the one spacing figure every message, ``info`` and the written file share.
    ``planned`` words it for ``info`` (what ``convert`` will do). Names the CLI
    flag; :func:`convert.errors.spell` renders it as an API keyword outside the CLI.
    """
    d = series.distances
    diffs = np.diff(d)
    what = (f"uneven slice spacing ({float(diffs.min()):.3f} to {float(diffs.max()):.3f} mm between slices)"
            if series.uneven else f"{sum(n for _, n in series.missing)} missing slice(s)")
    if stacked:
        verb = "will be stacked" if planned else "stacked"
        return (f"{what}: {verb} as stored every {round(slice_step_mm, 4):g} mm, so slices are misplaced by up to "
                f"{series.stack_error_mm():.2f} mm; drop --stack-uneven to resample them onto an even grid")
    n_new, _ = series.even_grid()
    verb = "will be resampled" if planned else "resampled"
    how = "--stack-uneven stacks the stored slices instead" if series.uneven else "values in the gap are interpolated"
    return (f"{what}: {verb} onto {n_new} even slices every {round(slice_step_mm, 4):g} mm (linear interpolation, "
            f"voxels at their true positions); {how}")


# --------------------------------------------------------------------------- multi-frame / mosaic
def _require_multiframe(path: Path) -> Any:
    _multiframe = _optional_module("multiframe")
    if _multiframe is None:
        raise DicomError("multi-frame and mosaic DICOM support (convert.dicom.multiframe) is not installed", path)
    return _multiframe


def read_multiframe(inst: Instance, *, philips_scaling: str = "precise") -> list[Volume]:
    """Every volume in one multi-frame file (enhanced objects via :mod:`convert.dicom.multiframe`).

    ``philips_scaling``: see :class:`ReadOptions`.
    """
    check_philips_scaling(philips_scaling)
    mf = _require_multiframe(inst.path)
    header = inst.load_header()
    if mf.is_enhanced(header):
        return list(mf.read_enhanced(inst.path, header, philips_scaling=philips_scaling,
                                     pixel_offset=inst.pixel_offset))
    # classic multi-frame (e.g. NM/US/old CT): frames are slices of one stack
    frames, _ = decode_frames(inst.path, expected=(inst.rows, inst.columns))
    array = np.asfortranarray(frames.transpose(2, 1, 0))
    affine = slice_affine_lps(inst, None, 1)
    slope, intercept = inst.rescale_slope, inst.rescale_intercept  # the scan's values (checked by the assembly)
    meta = _meta_for(header)
    scale_slope = philips_scale_slope(header)
    if array.dtype == RGB_DTYPE:
        slope, intercept = 1.0, 0.0  # colour (e.g. ultrasound cine): frames along k, never rescaled
    elif scale_slope is not None:
        meta = meta.replace(acquisition={**meta.acquisition,
                                         **philips_scaling_fields(slope, intercept, scale_slope, philips_scaling)})
        if philips_scaling == "precise":
            slope, intercept = philips_precise_scaling(slope, intercept, scale_slope)
    return [Volume(array=array, affine=lps_to_ras(affine), meta=meta, slope=slope,
                   intercept=intercept, source=header)]


def _mosaic_frame(inst: Instance, first: Instance) -> tuple[np.ndarray, Any]:
    """The stored values ``[row, col]`` of one mosaic file and its header: read straight from
    the file at the scan's pixel offset when uncompressed grey-level little endian (no pydicom
    parse), else decoded by :func:`convert.dicom.pixels.decode_frames`."""
    if (inst.pixel_offset is not None and inst.transfer_syntax in NATIVE_SYNTAXES and inst.bits_allocated in (8, 16, 32)
            and not is_colour(inst.samples_per_pixel, inst.photometric)):
        if (inst.rows, inst.columns) != (first.rows, first.columns):
            raise DicomError(f"image is {inst.columns}x{inst.rows} but the series is {first.columns}x{first.rows}",
                             inst.path)
        signed = inst.pixel_representation == 1
        bits_stored = inst.bits_stored or inst.bits_allocated
        (raw,) = native_frames(inst.path, inst.pixel_offset, inst.transfer_syntax == IMPLICIT_VR_LE, 1, inst.rows,
                               inst.columns, inst.bits_allocated, bits_stored, signed)
        return stored_values(raw, inst.bits_allocated, bits_stored, signed, inst.photometric), inst.load_header()
    frames, ds = decode_frames(inst.path, expected=(first.rows, first.columns))
    return frames[0], ds


def _read_mosaic(series: Series, opts: ReadOptions) -> Volume:
    first = series.first
    mf = _require_multiframe(first.path)
    stacks = None
    scalings = []
    for t, inst in enumerate(series.grid[0]):
        frame, ds = _mosaic_frame(inst, first)
        stack = np.asarray(mf.unmosaic(frame, ds))  # [row, col, slice]
        if stacks is None:
            shape = (stack.shape[1], stack.shape[0], stack.shape[2]) + ((series.n_times,) if series.n_times > 1 else ())
            stacks = np.empty(shape, dtype=stack.dtype, order="F")
        if stack.shape[:3] != (stacks.shape[1], stacks.shape[0], stacks.shape[2]):
            raise DicomError(f"mosaic holds {stack.shape} but the series expects "
                             f"{(stacks.shape[1], stacks.shape[0], stacks.shape[2])}", inst.path)
        target = (slice(None), slice(None), slice(None)) + ((t,) if series.n_times > 1 else ())
        stacks[target] = stack.transpose(1, 0, 2)
        scalings.append((inst.rescale_slope, inst.rescale_intercept))  # the scan's, checked by the assembly
    assert stacks is not None
    mode, out_dtype, slope, intercept = rescale_plan([s for s, _ in scalings], [b for _, b in scalings],
                                                     stacks.dtype, _value_range(stacks, scalings))
    if mode == "apply":
        out = np.empty(stacks.shape, dtype=out_dtype, order="F")
        for t, (s, b) in enumerate(scalings):
            sl = (Ellipsis, t) if stacks.ndim == 4 else (Ellipsis,)
            vals = stacks[sl].astype(np.float64) * s + b
            out[sl] = np.round(vals) if out_dtype.kind in "iu" else vals
        stacks = out
    header = first.load_header()
    affine = np.asarray(mf.mosaic_affine_lps(header), dtype=np.float64)
    meta = _meta_for(header, series)
    step = _time_step(series)
    if step is not None:
        meta = meta.replace(time_step=step)
    return Volume(array=stacks, affine=lps_to_ras(affine), meta=meta, slope=slope, intercept=intercept,
                  source=header, warnings=tuple(series.warnings))


def _read_multiframe_series(series: Series, *, philips_scaling: str = "precise") -> list[Volume]:
    """Volumes of a multi-frame series; several files with one same-geometry volume each become 4D.

    Files are stacked only with files of the same echo time and image type (e.g.
    Siemens XA multi-echo runs store each echo of each time point in a file of its
    own): one 4D volume per echo / image type, each echo numbered by ascending
    echo time when the files hold several (as :func:`convert.dicom.series.postfix` names them).
    """
    per_file = [read_multiframe(inst, philips_scaling=philips_scaling) for inst in series.grid[0]]
    if len(per_file) == 1:
        return per_file[0]
    singles = [vols[0] for vols in per_file if len(vols) == 1]
    if len(singles) != len(per_file):
        return [v for vols in per_file for v in vols]
    groups: dict[tuple, list[Volume]] = {}
    for volume in singles:
        acquisition = volume.meta.acquisition
        key = (acquisition.get("EchoTime"), tuple(str(t) for t in (acquisition.get("ImageType") or ())))
        groups.setdefault(key, []).append(volume)
    out = []
    for members in groups.values():
        stacked = _stack_files(series, members)
        out.extend(stacked if stacked is not None else members)
    times = sorted({t for t, _ in groups if isinstance(t, (int, float))})
    if len(times) > 1:
        numbered = []
        for volume in out:
            acquisition = dict(volume.meta.acquisition)
            if acquisition.get("EchoNumber") is None and acquisition.get("EchoTime") in times:
                acquisition["EchoNumber"] = times.index(acquisition["EchoTime"]) + 1
                volume = volume.replace(meta=volume.meta.replace(acquisition=acquisition))
            numbered.append(volume)
        out = numbered
    return out


def _stack_files(series: Series, singles: list[Volume]) -> list[Volume] | None:
    """One 4D volume from same-geometry 3D volumes (one per file, in time order), or None if they differ."""
    if len(singles) == 1:
        return singles
    ref = singles[0]
    same = all(v.array.ndim == 3 and v.shape == ref.shape and np.allclose(v.affine, ref.affine, atol=1e-3)
               and v.dtype == ref.dtype for v in singles)
    if not same:
        return None
    array = np.empty(ref.shape + (len(singles),), dtype=ref.dtype, order="F")
    slopes = [v.slope for v in singles]
    intercepts = [v.intercept for v in singles]
    for t, v in enumerate(singles):
        array[..., t] = v.array
    value_range = (0.0, 0.0) if ref.is_rgb else (float(array.min()), float(array.max()))
    mode, out_dtype, slope, intercept = rescale_plan(slopes, intercepts, ref.dtype, value_range)
    if mode == "apply":
        scaled = np.empty(array.shape, dtype=out_dtype, order="F")
        for t, (s_, b_) in enumerate(zip(slopes, intercepts)):
            vals = array[..., t].astype(np.float64) * s_ + b_
            scaled[..., t] = np.round(vals) if out_dtype.kind in "iu" else vals
        array = scaled
    meta = ref.meta
    step = _time_step(series)
    if step is not None:
        meta = meta.replace(time_step=step)
    return [Volume(array=array, affine=ref.affine, meta=meta, slope=slope, intercept=intercept, source=ref.source)]


def read_series_volumes(series: Series, **options: Any) -> list[Volume]:
    """Like :func:`read_series` but returns every volume (a multi-frame file may hold several)."""
    if series.kind == "multiframe":
        if series.problem:
            raise DicomError(f"series {series.label}: {series.problem}", series.first.path)
        return _read_multiframe_series(series, philips_scaling=options.get("philips_scaling", "precise"))
    return [read_series(series, **options)]


# --------------------------------------------------------------------------- the Format adapter
def _folder_has_dicom(path: Path, limit: int = 64) -> bool:
    seen = 0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.lower() == "dicomdir":
                continue
            if looks_like_dicom(Path(dirpath) / name):
                return True
            seen += 1
            if seen >= limit:
                return False
    return False


def _sniff_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if path.name.lower().endswith(".gz"):
        return looks_like_dicom(path)
    if len(head) >= 8 and head[0:2] in (b"\x08\x00",):
        try:
            ds = read_header(path)
        except DicomError:
            return False
        return bool(ds.get("Rows")) and bool(ds.get("Columns"))
    return False


def describe_series(series: Sequence[Series]) -> str:
    """One line per series: number, description, shape."""
    return "; ".join(s.label for s in series)


def read_single(path: str | Path, *, listing: Listing | None = None, **options: Any) -> tuple[Volume, Series]:
    """The one volume in a DICOM file or single-series folder, and its :class:`Series`.

    Args:
        path: a DICOM file or a folder tree.
        listing: the files under ``path`` from a walk already made (:func:`convert.dicom.scan.list_files`):
            not walked again.
        **options: ``tilt_correct``, ``allow_gaps``, ``stack_uneven``, ``workers``, ``philips_scaling``
            (see :class:`ReadOptions`).

    Raises:
        DicomError: no DICOM image, or several series/volumes (the message lists them
            and says to give an output folder).
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file or folder; check the path", path)
    result = scan(path, listing=listing)
    if not result.instances:
        raise NoDicomError(path, len(result.skipped), result.skipped[0][1] if result.skipped else None)
    series = assemble(result.instances)
    if len(series) > 1:
        raise DicomError(
            f"found {len(series)} series: {describe_series(series)}. Give an output FOLDER "
            f"(medconvert convert {path} OUT_DIR) to convert them all", path)
    if series[0].kind == "multiframe":
        volumes = read_series_volumes(series[0], **options)
        if len(volumes) != 1:
            raise DicomError(
                f"file holds {len(volumes)} volumes; give an output FOLDER (medconvert convert {path} OUT_DIR) "
                "to convert them all", path)
        return volumes[0], series[0]
    return read_series(series[0], **options), series[0]


class DicomFormat:
    """DICOM adapter: reads a single file or a folder holding one series; writes a series into a folder
    (:func:`convert.dicom.writer.write_series`)."""

    name = "dicom"
    extensions: tuple[str, ...] = (".dcm", ".dicom", ".ima")
    description = ("DICOM file or folder of one series (read; folders of many series: medconvert convert DIR "
                   "OUTDIR); write: --to dicom OUT_DIR, one file per slice")
    can_read = True
    can_write = True
    #: A write goes into a folder (one file per slice), not to a file with an extension.
    writes_folder = True

    def __repr__(self) -> str:
        return "<Format dicom>"

    def sniff(self, path: Path) -> bool:
        """A DICOM file (preamble + DICM, or headerless with pixel data), or a folder holding some."""
        path = Path(path)
        if path.is_dir():
            return _folder_has_dicom(path)
        return _sniff_file(path)

    def read(self, path: Path, **options: Any) -> Volume:
        """One Volume from a file or a single-series folder; several series raise :class:`DicomError`."""
        return read_single(path, **options)[0]

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write ``volume`` as a DICOM series into the folder ``path``; options: see
        :func:`convert.dicom.writer.write_series` (``modality``, ``template``, ``enhanced``...)."""
        from convert.dicom.writer import write_series

        return write_series(volume, path, overwrite=overwrite, **options)

    def output_paths(self, path: Path) -> list[Path]:
        return []  # a folder: checked (exists, empty, writable) by convert.atomic.atomic_folder when written


DICOM = DicomFormat()


# --------------------------------------------------------------------------- a series' output files


def series_sidecar(series: Series, volume: Volume, *, include_phi: bool = False,
                   deidentify: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The BIDS sidecar dict of ``volume`` read from ``series``.

    With ``deidentify`` the sidecar is built from de-identified headers
    (:func:`convert.dicom.sidecar.deidentified_sidecar`: only numeric timing and
    encoding values are derived from the original headers); ``include_phi``
    cannot be combined with it.
    """
    from convert.dicom import sidecar as _sidecar

    headers = SeriesHeaders(series)
    # per-slice timing inputs straight from the scan: no header read per slice of a long 4D run
    slice_times = [(inst.position, inst.acquisition_time, inst.trigger_time) for inst in headers.instances]
    if deidentify is None:
        return _sidecar.build_sidecar(headers, volume, include_phi=include_phi, slice_times=slice_times)
    if include_phi:
        raise ValueError("include_phi cannot be combined with deidentify")
    return _sidecar.deidentified_sidecar(headers, LazyHeaders(headers, deidentify), volume, slice_times=slice_times)


def deidentified_volume(volume: Volume, series: Series, deidentify: Callable[[Any], Any]) -> Volume:
    """``volume`` with metadata rebuilt from the de-identified header (text fields cleaned or dropped)."""
    from convert.dicom.sidecar import meta_from_dataset

    clean = meta_from_dataset(deidentify(series.first.load_header()))
    acquisition = {k: v for k, v in volume.meta.acquisition.items()
                   if isinstance(v, (int, float)) or clean.acquisition.get(k) == v}
    return volume.replace(meta=volume.meta.replace(series_description=clean.series_description,
                                                   manufacturer=clean.manufacturer, acquisition=acquisition))


class SeriesHeaders(LazyHeaders):
    """The headers of a series in volume order (t-major: all slices of volume 0, then volume 1...).

    Lazy: a header dropped by a large scan is re-read only when indexed, so a
    sidecar that looks at the first volume's slices does not re-read a whole 4D run.
    """

    def __init__(self, series: Series) -> None:
        nk, nt = series.n_slices, series.n_times
        instances = ([series.grid[k][t] for t in range(nt) for k in range(nk)]
                     if series.kind == "slices" else series.instances)
        self.instances: list[Instance] = list(instances)
        super().__init__(instances, Instance.load_header)


def diffusion_outputs(series: Series, volume: Volume) -> tuple[tuple[list[float], np.ndarray] | None, str | None]:
    """``((bvals, FSL bvecs in volume's voxel frame), None)`` for a diffusion series, else ``(None, warning)``.

    The warning (None when the series is simply not diffusion) says why a series that
    looks like diffusion gets no ``.bval``/``.bvec``. Rules: :mod:`convert.dicom.diffusion`.
    The bvecs follow ``volume.affine``: the output's voxel frame (also after tilt
    correction or regridding, which keep the in-plane axes). ``(None, None)`` for a
    Philips DWI kept with its derived isotropic volumes (the ``_ADC`` file): as
    dcm2niix, its gradient table is not written (the DWI without them has one).
    """
    from convert.dicom.diffusion import fsl_bvecs, table_for_volume

    if len(volume.shape) != 4 or getattr(series, "derived_appended", False):
        return None, None
    time_headers = None
    if series.kind in ("slices", "mosaic") and len(series.grid[0]) == volume.shape[3]:
        time_headers = [inst.load_header() for inst in series.grid[0]]
    table, reason = table_for_volume(volume, time_headers)
    if table is None:
        return None, (f"no .bval/.bvec written: {reason}" if reason else None)
    return (table.bvals, fsl_bvecs(table.gradients_lps, volume.affine)), None


def writes_gradient_files(fmt: Any) -> bool:
    """NIfTI outputs get JSON sidecars and FSL ``.bval``/``.bvec`` files (FSL's frame is NIfTI's)."""
    return fmt.name.startswith("nifti")


def output_stem(target: Path, fmt: Any) -> Path:
    """``target`` without the format's extension (``dwi.nii.gz`` -> ``dwi``): where sidecars go."""
    name = target.name
    for ext in sorted(fmt.extensions, key=len, reverse=True):
        if name.lower().endswith(ext.lower()):
            return target.with_name(name[: -len(ext)])
    return target.with_name(target.stem)


def write_series_outputs(series: Series, volume: Volume, fmt: Any, target: Path, *, overwrite: bool,
                          sidecar: bool, sidecar_phi: bool, deidentify: Callable[[Any], Any] | None,
                          warnings: list[str], write_options: dict[str, Any] | None = None) -> list[Path]:
    """Write ``volume`` to ``target`` plus its JSON sidecar and ``.bval``/``.bvec`` (NIfTI outputs).

    The one writer of a converted series' files, for the tree conversion, the
    single-file conversion and the Python API. Every output is checked for
    ``overwrite`` before anything is written. Appends to ``warnings`` (e.g. a
    diffusion series without a usable gradient table).
    """
    from convert.dicom import sidecar as sidecar_mod
    from convert.dicom.diffusion import gradient_paths, write_bval_bvec

    stem = output_stem(target, fmt)
    nifti = writes_gradient_files(fmt)
    json_path = stem.with_name(stem.name + ".json") if sidecar and nifti else None
    dwi, dwi_warning = diffusion_outputs(series, volume)
    if dwi_warning:
        warnings.append(dwi_warning)
    if dwi is not None and not nifti:
        warnings.append(f"diffusion gradient table not written: .bval/.bvec go beside NIfTI outputs "
                        f"(not {fmt.name}); convert to .nii.gz to get them")
        dwi = None
    extra = ([json_path] if json_path else []) + (gradient_paths(stem) if dwi is not None else [])
    check_writable(list(fmt.output_paths(target)) + extra, overwrite)
    written = list(fmt.write(volume, target, overwrite=overwrite, **(write_options or {})))
    if dwi is not None:
        written.extend(write_bval_bvec(stem, dwi[0], dwi[1], overwrite=overwrite))
    if json_path is not None:
        data = series_sidecar(series, volume, include_phi=sidecar_phi, deidentify=deidentify)
        if volume.history:
            from convert.process.pipeline import sidecar_with_history

            data, dropped = sidecar_with_history(data, volume.history)
            warnings.extend(dropped)
        written.append(sidecar_mod.write_sidecar(json_path, data, overwrite=overwrite))
    return written


