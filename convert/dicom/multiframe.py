"""Enhanced (multi-frame) DICOM and Siemens mosaic images.

Enhanced objects (Enhanced MR/CT/PET, legacy-converted enhanced...) hold a
whole series in one file; the geometry of each frame lives in functional group
sequences (PlanePosition, PlaneOrientation, PixelMeasures), either shared by all
frames or per frame. :func:`read_enhanced` splits the frames into the volumes
dcm2niix would produce (one per stack, echo, image type such as magnitude /
phase / field map, orientation and matrix), sorts each volume's frames along
the slice normal and stacks repeats at one position (temporal positions,
diffusion directions...) along a 4th axis.

Siemens mosaic images tile the slices of one volume into one 2D frame
(:func:`unmosaic`); the ImagePositionPatient of a mosaic refers to the corner
of the whole tile grid, which :func:`mosaic_affine_lps` corrects.

Conventions (see ``docs/dicom-multiframe.md``): arrays are ``[i, j, k(, t)]``
with ``i`` along a DICOM row (``pixel_array[..., row, col]`` is transposed),
affines map voxel indices to mm; DICOM geometry is LPS+ and converted to RAS+
only through :func:`convert.geometry.lps_to_ras`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from convert.dicom import validity
from convert.dicom.elements import IMPLICIT_VR_LE, NATIVE_SYNTAXES
from convert.dicom.keywords import KEYWORDS
from convert.dicom.pixels import (
    DECODING_PLUGIN,
    PHILIPS_MR_CREATOR,
    check_file_size,
    check_philips_scaling,
    check_pixel_data,
    decoder_panics,
    header_count,
    is_colour,
    native_frames,
    philips_precise_scaling,
    philips_scaling_fields,
    scale_slope_value,
)
from convert.dicom.sidecar import csa_image_header, meta_from_dataset
from convert.errors import (
    CorruptFileError,
    DicomError,
    GeometryError,
    UnsupportedDataError,
)
from convert.geometry import lps_to_ras, slice_normal, stack_affine_lps
from convert.volume import Meta, Volume, rgb_from_channels

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "is_enhanced",
    "is_mosaic",
    "mosaic_affine_lps",
    "mosaic_slice_count",
    "mosaic_tile_shape",
    "read_enhanced",
    "stack_volumes",
    "unmosaic",
]

#: Positions closer than this (mm) along the slice normal are the same slice.
POSITION_TOLERANCE_MM = 0.01
#: Allowed deviation of one slice step from the mean step, relative.
SPACING_TOLERANCE = 0.01


# =========================================================================== enhanced
def is_enhanced(ds: Dataset) -> bool:
    """True for an enhanced/multi-frame object with PerFrameFunctionalGroupsSequence.

    Enhanced MR/CT/PET/XA, legacy-converted enhanced and similar objects carry
    per-frame geometry in functional groups; a classic multi-frame object
    without that sequence (e.g. ultrasound cine) is not "enhanced".
    """
    return bool(ds.get("PerFrameFunctionalGroupsSequence"))


def _tag(keyword: str) -> int:
    return KEYWORDS[keyword][0]  # KeyError for a keyword outside the dictionary: a programming error


class _Groups:
    """Fast access to the functional groups of one enhanced dataset (per-frame first, then shared)."""

    def __init__(self, ds: Dataset) -> None:
        self.per_frame = ds.PerFrameFunctionalGroupsSequence
        shared = ds.get("SharedFunctionalGroupsSequence")
        self.shared: Dataset | None = shared[0] if shared else None
        self._shared_items: dict[str, Dataset | None] = {}

    def item(self, frame: int, sequence: str) -> Dataset | None:
        tag = _tag(sequence)
        per_frame = self.per_frame[frame]
        if tag in per_frame:
            seq = per_frame[tag].value
            if seq:
                return seq[0]
        if sequence not in self._shared_items:
            found = None
            if self.shared is not None and tag in self.shared:
                seq = self.shared[tag].value
                found = seq[0] if seq else None
            self._shared_items[sequence] = found
        return self._shared_items[sequence]

    def value(self, frame: int, sequence: str, keyword: str) -> Any:
        item = self.item(frame, sequence)
        if item is None:
            return None
        tag = _tag(keyword)
        if tag not in item:
            return None
        value = item[tag].value
        return None if value == "" else value


def _group_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    return _Groups(ds).value(frame, sequence, keyword)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        return None
    return values


@dataclass(frozen=True)
class _Frame:
    """What :func:`read_enhanced` needs to know about one frame."""

    index: int
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    spacing: tuple[float, float]
    thickness: float | None
    between: float | None
    stack: str
    temporal: int
    dims: tuple[int, ...]
    echo_time: float | None
    image_type: tuple[str, ...]
    slope: float
    intercept: float
    acq_time: float | None
    bvalue: float | None
    gradient: tuple[float, float, float] | None = None
    #: Philips (RescaleSlope, RescaleIntercept, private ScaleSlope) of the frame, display scaling (or None).
    philips: tuple[float, float, float] | None = None


_FRAME_TYPE_SEQUENCES = (
    "MRImageFrameTypeSequence",
    "CTImageFrameTypeSequence",
    "PETFrameTypeSequence",
    "MRSpectroscopyFrameTypeSequence",
    "XAXRFFrameCharacteristicsSequence",
)


def _frame_type(groups: _Groups, frame: int) -> tuple[str, ...]:
    for sequence in _FRAME_TYPE_SEQUENCES:
        item = groups.item(frame, sequence)
        if item is None:
            continue
        frame_type = [str(v).upper() for v in (item.get("FrameType") or [])]
        component = str(item.get("ComplexImageComponent", "") or "").upper()
        # value 1/2 (ORIGINAL/DERIVED, PRIMARY) do not split volumes; value 3+ and
        # the complex component (MAGNITUDE, PHASE, REAL, IMAGINARY) do.
        return tuple(frame_type[2:]) + ((component,) if component else ())
    return ()


def _philips_scale_slope(ds: Dataset, frame: int) -> float | None:
    """Philips private ScaleSlope (2005,xx0E) of ``frame`` (per-frame private group (2005,140F)).

    None for files whose Manufacturer is not Philips.
    """
    if "PHILIPS" not in str(ds.get("Manufacturer", "") or "").upper():
        return None
    per_frame = ds.PerFrameFunctionalGroupsSequence[frame]
    candidates = [per_frame]
    for element in per_frame:
        if element.tag.is_private and element.VR == "SQ" and element.value:
            candidates.append(element.value[0])
    candidates.append(ds)
    for item in candidates:
        try:
            value = item.private_block(0x2005, PHILIPS_MR_CREATOR)[0x0E].value
        except (KeyError, ValueError):
            continue
        number = scale_slope_value(value)
        if number is not None:
            return number
    return None


def _datetime_seconds(value: Any) -> float | None:
    """Seconds of a DICOM DT value since the start of its day (for relative timing only)."""
    text = str(value or "").strip()
    if len(text) < 10:
        return None
    time_part = text[8:].split("+")[0].split("-")[0]
    try:
        hours = int(time_part[0:2])
        minutes = int(time_part[2:4]) if len(time_part) >= 4 else 0
        seconds = float(time_part[4:]) if len(time_part) > 4 else 0.0
        day = int(text[6:8])
    except ValueError:
        return None
    return day * 86400 + hours * 3600 + minutes * 60 + seconds


def _position_dimension(ds: Dataset) -> int | None:
    """Index in DimensionIndexValues of the in-stack position / plane position dimension."""
    positions = {(0x0020, 0x9057), (0x0020, 0x0032), (0x0020, 0x9113)}
    for n, item in enumerate(ds.get("DimensionIndexSequence") or []):
        pointer = item.get("DimensionIndexPointer")
        if pointer is not None and tuple((int(pointer) >> 16, int(pointer) & 0xFFFF)) in positions:
            return n
    return None


def _diffusion_gradient(groups: _Groups, frame: int) -> tuple[float, float, float] | None:
    """Unit diffusion gradient (LPS) of a frame; (0, 0, 0) for non-directional (b=0, trace) frames."""
    item = groups.item(frame, "MRDiffusionSequence")
    if item is None:
        return None
    directionality = str(item.get("DiffusionDirectionality", "") or "").upper()
    seq = item.get("DiffusionGradientDirectionSequence")
    vector = _floats(seq[0].get("DiffusionGradientOrientation"), 3) if seq else None
    if vector is None or directionality in ("NONE", "ISOTROPIC"):
        return (0.0, 0.0, 0.0) if directionality in ("NONE", "ISOTROPIC") else None
    norm = math.sqrt(sum(v * v for v in vector))
    return tuple(v / norm for v in vector) if norm > 1e-6 else (0.0, 0.0, 0.0)  # type: ignore[return-value]


def _check_plane(orientation: tuple[float, ...], spacing: tuple[float, float], frame: int, path: Path) -> None:
    """Refuse a frame whose ImageOrientationPatient / PixelSpacing cannot describe a pixel grid."""
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if (abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01
            or abs(float(np.dot(row, col))) > 0.01):
        raise GeometryError(
            f"frame {frame + 1}: ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors",
            path,
        )
    if min(spacing) <= 0:
        raise GeometryError(f"frame {frame + 1}: PixelSpacing {list(spacing)} must be positive", path)


def _frames(ds: Dataset, path: Path, philips_scaling: str = "precise") -> list[_Frame]:
    n_frames = int(ds.get("NumberOfFrames") or 1)
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != n_frames:
        raise CorruptFileError(
            f"enhanced DICOM lists {len(per_frame)} per-frame functional groups for {n_frames} frames", path
        )
    position_dim = _position_dimension(ds)
    groups = _Groups(ds)
    frames = []
    for f in range(n_frames):
        position = _floats(groups.value(f, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(groups.value(f, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(groups.value(f, "PixelMeasuresSequence", "PixelSpacing"), 2)
        if position is None or orientation is None or spacing is None:
            missing = [name for name, v in (("ImagePositionPatient", position),
                                            ("ImageOrientationPatient", orientation),
                                            ("PixelSpacing", spacing)) if v is None]
            raise DicomError(
                f"frame {f + 1} has no usable {', '.join(missing)} in its functional groups; "
                "cannot place it in space",
                path,
            )
        thickness = _floats(groups.value(f, "PixelMeasuresSequence", "SliceThickness"), 1)
        between = _floats(groups.value(f, "PixelMeasuresSequence", "SpacingBetweenSlices"), 1)
        content = groups.item(f, "FrameContentSequence")
        stack = str(content.get("StackID", "") or "") if content is not None else ""
        temporal = int(content.get("TemporalPositionIndex") or 0) if content is not None else 0
        dims_raw = (content.get("DimensionIndexValues") if content is not None else None) or []
        if isinstance(dims_raw, int):
            dims_raw = [dims_raw]
        dims = tuple(int(v) for n, v in enumerate(dims_raw) if n != position_dim)
        acq_time = _datetime_seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None
        echo = _floats(groups.value(f, "MREchoSequence", "EffectiveEchoTime"), 1)
        _check_plane(orientation, spacing, f, path)  # type: ignore[arg-type]
        raw_slope = groups.value(f, "PixelValueTransformationSequence", "RescaleSlope")
        raw_intercept = groups.value(f, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = _floats(raw_slope, 1)
        intercept = _floats(raw_intercept, 1)
        if (raw_slope is not None and slope is None) or (raw_intercept is not None and intercept is None):
            raise DicomError(f"frame {f + 1} has an unusable RescaleSlope/RescaleIntercept "
                             f"({raw_slope!r}, {raw_intercept!r}); its real values are unknown", path)
        if slope is None and "RescaleSlope" in ds:
            slope = _floats(ds.RescaleSlope, 1)
        if intercept is None and "RescaleIntercept" in ds:
            intercept = _floats(ds.RescaleIntercept, 1)
        bvalue = _floats(groups.value(f, "MRDiffusionSequence", "DiffusionBValue"), 1)
        gradient = _diffusion_gradient(groups, f)
        rs = slope[0] if slope and slope[0] != 0 else 1.0
        ri = intercept[0] if intercept else 0.0
        ss = _philips_scale_slope(ds, f)
        philips = (rs, ri, ss) if ss is not None else None
        if ss is not None and philips_scaling == "precise":
            rs, ri = philips_precise_scaling(rs, ri, ss)
        frames.append(
            _Frame(
                index=f,
                position=position,  # type: ignore[arg-type]
                orientation=orientation,
                spacing=spacing,  # type: ignore[arg-type]
                thickness=thickness[0] if thickness else None,
                between=between[0] if between else None,
                stack=stack,
                temporal=temporal,
                dims=dims,
                echo_time=echo[0] if echo else None,
                image_type=_frame_type(groups, f),
                slope=rs,
                intercept=ri,
                acq_time=acq_time,
                bvalue=bvalue[0] if bvalue else None,
                gradient=gradient,
                philips=philips,
            )
        )
    return frames


#: Frames whose orientation cosines / pixel spacing differ by less than this share a volume.
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE_MM = 1e-3


def _split_key(frame: _Frame) -> tuple[Any, ...]:
    """Frames with different keys go to different volumes (as dcm2niix splits them)."""
    return (
        frame.stack,
        round(frame.echo_time, 3) if frame.echo_time is not None else None,
        frame.image_type,
    )


def _split(frames: Sequence[_Frame]) -> list[list[_Frame]]:
    """Group frames by stack, echo, image type, then orientation and pixel spacing (with tolerance)."""
    groups: list[tuple[tuple[Any, ...], _Frame, list[_Frame]]] = []
    for frame in frames:
        key = _split_key(frame)
        for group_key, leader, members in groups:
            if (group_key == key
                    and np.allclose(frame.orientation, leader.orientation, atol=ORIENTATION_TOLERANCE)
                    and np.allclose(frame.spacing, leader.spacing, atol=SPACING_TOLERANCE_MM)):
                members.append(frame)
                break
        else:
            groups.append((key, frame, [frame]))
    # order: stack, then image type (each by first appearance), then echo time, then file order
    stacks = list(dict.fromkeys(f.stack for f in frames))
    types = list(dict.fromkeys(f.image_type for f in frames))

    def order(group: tuple[tuple[Any, ...], _Frame, list[_Frame]]) -> tuple[Any, ...]:
        _, leader, members = group
        echo = leader.echo_time if leader.echo_time is not None else math.inf
        return (stacks.index(leader.stack), types.index(leader.image_type), echo, members[0].index)

    return [members for _, _, members in sorted(groups, key=order)]


def _stack_geometry(
    frames: Sequence[_Frame], path: Path
) -> tuple[np.ndarray, list[list[_Frame]]]:
    """LPS affine and frames grouped per slice (sorted along the normal), each slice's frames in time order."""
    first = frames[0]
    normal = slice_normal(first.orientation)
    distances = np.array([np.dot(f.position, normal) for f in frames])
    order = np.argsort(distances, kind="stable")
    slices: list[list[_Frame]] = []
    slice_pos: list[float] = []
    for idx in order:
        d = float(distances[idx])
        if slice_pos and abs(d - slice_pos[-1]) <= POSITION_TOLERANCE_MM:
            slices[-1].append(frames[idx])
        else:
            slices.append([frames[idx]])
            slice_pos.append(d)
    counts = {len(s) for s in slices}
    if len(counts) != 1:
        detail = ", ".join(f"{p:.2f} mm: {len(s)}" for p, s in list(zip(slice_pos, slices))[:6])
        raise DicomError(
            f"frames are not a complete grid: slice positions hold different numbers of frames ({detail}...); "
            "the file may be incomplete",
            path,
        )
    for s in slices:
        s.sort(key=lambda fr: (fr.temporal, fr.dims, fr.index))
    origin = np.asarray(slices[0][0].position, dtype=np.float64)
    if len(slices) > 1:
        last = np.asarray(slices[-1][0].position, dtype=np.float64)
        step = (last - origin) / (len(slices) - 1)
        steps = np.diff(np.array(slice_pos))
        mean = float(np.mean(steps))
        if np.max(np.abs(steps - mean)) > max(SPACING_TOLERANCE * mean, POSITION_TOLERANCE_MM):
            raise GeometryError(
                f"slices are not evenly spaced (steps from {steps.min():.3f} to {steps.max():.3f} mm); "
                "a single affine cannot describe them",
                path,
            )
        # all positions must lie on the line through the first along the step
        for s in slices:
            expected = np.dot(np.asarray(s[0].position) - origin, step) / np.dot(step, step)
            off = np.asarray(s[0].position) - (origin + expected * step)
            if np.linalg.norm(off) > max(0.01 * np.linalg.norm(step), 0.05):
                raise GeometryError(
                    "slice positions do not lie on one line (sheared or mixed stacks); cannot build one volume",
                    path,
                )
    else:
        thickness = first.between or first.thickness or 1.0
        step = normal * thickness
    # PixelSpacing = (between rows (j, down a column), between columns (i, along a row)).
    affine = stack_affine_lps(np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:]), first.spacing,
                              origin, step)
    return affine, slices


#: Multi-frame objects with functional groups that are not image volumes.
_NOT_IMAGES = {"SEG", "RTDOSE"}
_NOT_IMAGE_SOPS = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}  # Segmentation, Label Map Seg


#: Colour models of enhanced objects decoded to RGB (frames come out of pydicom as RGB).
_ENHANCED_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


def _check_pixel_module(ds: Dataset, path: Path) -> None:
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples != 1 or photometric.startswith(("RGB", "YBR", "PALETTE")):
        bits = int(ds.get("BitsAllocated", 8) or 8)
        if samples != 3 or photometric not in _ENHANCED_COLOUR or bits != 8:
            raise UnsupportedDataError(
                f"enhanced multi-frame colour ({photometric or '?'}, {samples} samples of {bits} bits) is not "
                f"supported; medconvert reads 8-bit {', '.join(_ENHANCED_COLOUR)} here (palette colour only in "
                "classic files)", path
            )
    if "Rows" not in ds or "Columns" not in ds:
        raise CorruptFileError("enhanced DICOM without Rows/Columns", path)
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    check_file_size(path, header_count(ds, "Rows", 0, path), header_count(ds, "Columns", 0, path),
                    header_count(ds, "NumberOfFrames", 1, path), samples, header_count(ds, "BitsAllocated", 16, path),
                    syntax, photometric)  # before any frame array is allocated


class _Target:
    """Where the frames of one output volume go: a Fortran-ordered [i, j, k, t] array."""

    def __init__(self, slices: list[list[_Frame]]) -> None:
        self.slices = slices
        self.nk, self.nt = len(slices), len(slices[0])
        frames = [f for s in slices for f in s]
        self.common_scaling = len({f.slope for f in frames}) == 1 and len({f.intercept for f in frames}) == 1
        self.slope = frames[0].slope if self.common_scaling else 1.0
        self.intercept = frames[0].intercept if self.common_scaling else 0.0
        self.array: np.ndarray | None = None
        # real values as float32, unless a (pathological) scaling could overflow it
        bound = max(abs(f.slope) for f in frames) * 2.0**32 + max(abs(f.intercept) for f in frames)
        self.real_dtype = np.dtype(np.float32 if bound < float(np.finfo(np.float32).max) else np.float64)

    def put(self, frame: _Frame, k: int, t: int, pixels: np.ndarray) -> None:
        """Store one decoded frame ``[row, col]`` at (k, t); real values when scalings differ.

        Colour frames (:data:`~convert.volume.RGB_DTYPE`) are stored as they are: no rescaling.
        """
        if pixels.dtype.fields is not None and self.array is None:
            self.common_scaling, self.slope, self.intercept = True, 1.0, 0.0
        if self.array is None:
            dtype = pixels.dtype if self.common_scaling else self.real_dtype
            rows, cols = pixels.shape
            # F order: [:, :, k, t] is one contiguous block, laid out like the frame itself
            self.array = np.empty((cols, rows, self.nk, self.nt), dtype=dtype, order="F")
        if self.common_scaling:
            self.array[:, :, k, t] = pixels.T
        else:
            real = self.real_dtype.type
            self.array[:, :, k, t] = pixels.T.astype(self.real_dtype) * real(frame.slope) + real(frame.intercept)

    def result(self) -> np.ndarray:
        assert self.array is not None
        return self.array[..., 0] if self.nt == 1 else self.array


def _has_transfer_syntax(ds: Any) -> bool:
    """True when the file meta of ``ds`` (a Dataset or a header view) holds a TransferSyntaxUID."""
    part10 = getattr(ds, "part10", None)
    if part10 is not None:
        return 0x00020010 in part10.meta
    return "TransferSyntaxUID" in (getattr(ds, "file_meta", None) or ())


def _read_full(path: Path) -> Dataset:
    import pydicom

    validity.install()  # an unknown VR is a CorruptFileError naming the file

    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises several types for broken files
        raise CorruptFileError(f"not a readable DICOM file: {exc}", path) from exc


def _tag_at(path: Path, offset: int) -> bytes:
    """The 4 bytes at ``offset`` (an element's tag, little endian), b"" when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(4)
    except OSError:
        return b""


def _pixel_frames(ds: Any, source: Any, path: Path, pixel_offset: int | None) -> Any:
    """The file's frames one at a time: read straight from the bytes when the pixel data is
    uncompressed little endian grey-level PixelData (not Float/DoubleFloatPixelData) whose
    element starts at ``pixel_offset`` (the scan found it there: no second header parse), else decoded by ``pydicom.pixels.iter_pixels``."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    bits_allocated = int(ds.get("BitsAllocated", 0) or 0)
    if (pixel_offset is not None and source is path and syntax in NATIVE_SYNTAXES
            and not is_colour(ds.get("SamplesPerPixel", 1), ds.get("PhotometricInterpretation"))
            and bits_allocated in (8, 16, 32) and _tag_at(path, pixel_offset) == b"\xe0\x7f\x10\x00"):
        return native_frames(path, pixel_offset, syntax == IMPLICIT_VR_LE, int(ds.get("NumberOfFrames", 1) or 1),
                             int(ds.Rows), int(ds.Columns), bits_allocated,
                             int(ds.get("BitsStored", bits_allocated) or bits_allocated),
                             int(ds.get("PixelRepresentation", 0) or 0) == 1)
    from pydicom.pixels import iter_pixels

    if not isinstance(source, Path):
        check_pixel_data(source, path)  # the header adds up before a decoder sees the frames
    return iter_pixels(source, decoding_plugin=DECODING_PLUGIN)


def _fill(targets: list[_Target], frames: Any, n_frames: int, path: Path) -> None:
    """Put the decoded ``frames`` (an iterator, one ``[row, col]`` frame at a time) into their targets.

    Memory: the outputs plus one decoded frame; the encoded pixel data is never
    held in memory as a whole when frames come from a path.
    """
    slot: dict[int, tuple[_Target, int, int]] = {}
    for target in targets:
        for k, frames_at_k in enumerate(target.slices):
            for t, frame in enumerate(frames_at_k):
                slot[frame.index] = (target, k, t)
    decoded = 0
    try:
        with decoder_panics(path):  # a decoder's Rust panic (pylibjpeg-rle) is a CorruptFileError
            for index, pixels in enumerate(frames):
                if index >= n_frames:
                    break
                if pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8:
                    pixels = rgb_from_channels(pixels)  # colour: pydicom gives RGB (YBR converted) [row, col, 3]
                elif pixels.ndim != 2:
                    raise UnsupportedDataError(f"frame {index + 1} has shape {pixels.shape}; only grey-level "
                                               "and 8-bit RGB frames are supported", path)
                target, k, t = slot[index]
                target.put(target.slices[k][t], k, t, pixels)
                decoded += 1
    except (DicomError, CorruptFileError, UnsupportedDataError):
        raise
    except Exception as exc:  # pydicom/decoders raise many types for broken or truncated data
        raise DicomError(f"cannot decode pixel data of frame {decoded + 1}: {exc}", path) from exc
    if decoded != n_frames:
        raise CorruptFileError(
            f"pixel data holds {decoded} frames but the header describes {n_frames}; the file may be truncated",
            path,
        )


def _float_values(value: Any) -> list[float]:
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return []


def _real_world_units(ds: Dataset, frame: _Frame) -> str | None:
    """UCUM units of the real-world value mapping when it equals the scaling we carry (e.g. "Hz")."""
    item = _Groups(ds).item(frame.index, "RealWorldValueMappingSequence")
    if item is None:
        return None
    slope = _floats(item.get("RealWorldValueSlope"), 1)
    intercept = _floats(item.get("RealWorldValueIntercept"), 1)
    if slope is None or intercept is None:
        return None
    if not (math.isclose(slope[0], frame.slope, rel_tol=1e-5) and
            math.isclose(intercept[0], frame.intercept, rel_tol=1e-5, abs_tol=1e-6)):
        return None
    codes = item.get("MeasurementUnitsCodeSequence")
    code = str(codes[0].get("CodeValue", "") or "").strip() if codes else ""
    return code if code and code != "1" else None


def _echo_numbers(leaders: Sequence[_Frame]) -> list[int | None]:
    """1-based echo number of each volume: the rank of its echo time among the file's echo times.

    Echo times are ranked in order of first appearance (as dcm2niix numbers them:
    a Philips B0 file's magnitude at 1.52 ms is echo 1, its field map at 0 ms
    echo 2); set only when the file holds several echo times (a multi-echo split).
    """
    times = list(dict.fromkeys(round(f.echo_time, 3) for f in leaders if f.echo_time is not None))
    if len(times) < 2:
        return [None] * len(leaders)
    return [times.index(round(f.echo_time, 3)) + 1 if f.echo_time is not None else None for f in leaders]


def _volume_meta(ds: Dataset, slices: list[list[_Frame]], echo_number: int | None = None) -> Meta:
    """Meta of one volume: the dataset's allow-listed fields, with this volume's own echo, type, window, timing."""
    nt = len(slices[0])
    meta = meta_from_dataset(ds)
    acquisition = dict(meta.acquisition)
    first = slices[0][0]
    if first.echo_time is not None:
        if first.echo_time > 0:
            acquisition["EchoTime"] = round(first.echo_time / 1000.0, 9)
        else:  # 0 means "not applicable" (e.g. a computed field map): None hides the header's value
            acquisition["EchoTime"] = None
    if echo_number is not None:
        acquisition["EchoNumber"] = echo_number
    if first.image_type:
        base = [str(v) for v in (ds.get("ImageType") or [])][:2]
        acquisition["ImageType"] = base + list(first.image_type)
    centers = _group_value(ds, first.index, "FrameVOILUTSequence", "WindowCenter")
    widths = _group_value(ds, first.index, "FrameVOILUTSequence", "WindowWidth")
    window = meta.window
    if centers is not None and widths is not None:
        window = tuple((c, w) for c, w in zip(_float_values(centers), _float_values(widths)) if w > 0)
    units = _real_world_units(ds, first)
    if units is not None:
        meta = meta.replace(units=units)
    times = [s[0].acq_time for s in slices]
    if len(slices) > 1 and meta.modality == "MR" and all(t is not None for t in times):
        start = min(times)  # type: ignore[type-var]
        rel = [round(t - start, 6) for t in times]  # type: ignore[operator]
        tr = acquisition.get("RepetitionTime")
        if max(rel) > 0 and (tr is None or max(rel) < tr):
            acquisition["SliceTiming"] = rel
    bvalues = [frame.bvalue for frame in slices[0]]  # one per time point; None: no b-value element
    if any(b is not None for b in bvalues) and (nt > 1 or any(b for b in bvalues)):
        # frames without a b-value are kept as None: convert.dicom.diffusion decides (b0 in a DWI series)
        acquisition["DiffusionBValue"] = [None if b is None else float(b) for b in bvalues]
        acquisition["DiffusionGradientOrientation"] = [None if frame.gradient is None else list(frame.gradient)
                                                       for frame in slices[0]]
    time_step = None
    if nt > 1:
        time_step = acquisition.get("RepetitionTime")
        starts = [slices[0][t].acq_time for t in range(nt)]
        if all(s is not None for s in starts):
            diffs = np.diff(np.array(starts, dtype=np.float64))
            if diffs.size and np.all(diffs > 0):
                time_step = round(float(np.median(diffs)), 6)
    return meta.replace(acquisition=acquisition, time_step=time_step, window=window)


def read_enhanced(path: Path, ds: Dataset | None = None, *, philips_scaling: str = "precise",
                  pixel_offset: int | None = None) -> list[Volume]:
    """All volumes in one enhanced multi-frame DICOM file.

    Frames are split into volumes by stack, echo time, image type (FrameType
    value 3+ and ComplexImageComponent, e.g. magnitude vs phase vs field map),
    orientation and pixel spacing, as dcm2niix does; volumes are ordered by
    stack and image type (in order of first appearance), then by echo time. Within a volume, frames are sorted
    along the slice normal (k increases along ``row x col`` of
    ImageOrientationPatient) and repeats at one position (temporal positions,
    diffusion directions, ...) become a 4th axis in TemporalPositionIndex /
    DimensionIndexValues order.

    Values: stored values are kept with one slope/intercept when every frame of
    the volume shares them; otherwise real values are computed as float32
    (float64 only if a pathological scaling could overflow float32).

    Args:
        path: the file (named in errors).
        ds: the header if already read (``stop_before_pixels`` is enough: the
            frames are decoded one at a time from ``path``).
        philips_scaling: ``"precise"`` (default, as dcm2niix): Philips' floating-point
            values from the private ScaleSlope (2005,xx0E) of each frame's private
            functional group, see :func:`convert.dicom.pixels.philips_precise_scaling`;
            ``"display"``: the DICOM RescaleSlope/RescaleIntercept only. Frames
            without the private tag (and other vendors) keep the DICOM scaling.
            The meta records the choice and the first frame's three factors
            (:func:`convert.dicom.pixels.philips_scaling_fields`).
        pixel_offset: byte offset of the PixelData element (its tag) as the scan found it
            (:attr:`convert.dicom.scan.Instance.pixel_offset`): uncompressed frames are then
            read straight from the file instead of pydicom parsing the header again.

    Returns:
        Volumes with RAS+ affines (mm), ``[i, j, k(, t)]`` arrays, allow-listed
        meta (:func:`convert.dicom.sidecar.meta_from_dataset`, with this
        volume's EchoTime, ImageType, SliceTiming); ``source`` is the dataset.

    Raises:
        DicomError: not enhanced, frames without geometry, incomplete 4D grid,
            undecodable pixels.
        GeometryError: unevenly spaced or non-collinear slices.
    """
    check_philips_scaling(philips_scaling)
    path = Path(path)
    if ds is None:
        import pydicom

        validity.install()  # an unknown VR is a CorruptFileError naming the file
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as exc:
            raise CorruptFileError(f"not a readable DICOM file: {exc}", path) from exc
    if not is_enhanced(ds):
        raise DicomError("not an enhanced multi-frame DICOM (no PerFrameFunctionalGroupsSequence)", path)
    if str(ds.get("Modality", "")).upper() in _NOT_IMAGES or str(ds.get("SOPClassUID", "")) in _NOT_IMAGE_SOPS:
        raise UnsupportedDataError(
            f"{ds.get('Modality', 'this object')} objects (segmentations, parametric maps of labels...) are not "
            "images of one volume; they are not converted",
            path,
        )
    validity.check_file_meta(ds, path)
    _check_pixel_module(ds, path)
    frames = _frames(ds, path, philips_scaling)
    geometry = [_stack_geometry(group, path) for group in _split(frames)]
    targets = [_Target(slices) for _, slices in geometry]
    has_pixels = any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels and not path.is_file():
        raise CorruptFileError("DICOM file has no pixel data", path)
    # decode from the file (memory: one frame at a time) unless only an in-memory dataset exists;
    # a deflated file must be inflated as a whole first (pydicom cannot stream frames from it)
    source: Any = path if path.is_file() else ds
    syntax = validity.transfer_syntax(ds, path) if _has_transfer_syntax(ds) else None
    if source is path and syntax is not None and (syntax.is_deflated or syntax.is_encapsulated):
        # compressed frames are checked against the header before decoding (check_pixel_data), which needs them
        source = ds if has_pixels else _read_full(path)
    _fill(targets, _pixel_frames(ds, source, path, pixel_offset), len(frames), path)
    volumes = []
    echo_numbers = _echo_numbers([slices[0][0] for _, slices in geometry])
    for (affine_lps, slices), target, echo_number in zip(geometry, targets, echo_numbers):
        meta = _volume_meta(ds, slices, echo_number)
        philips = slices[0][0].philips
        if philips is not None:
            meta = meta.replace(acquisition={**meta.acquisition,
                                             **philips_scaling_fields(*philips, philips_scaling)})
        volumes.append(
            Volume(array=target.result(), affine=lps_to_ras(affine_lps), meta=meta, slope=target.slope,
                   intercept=target.intercept, source=ds)
        )
    return volumes


def stack_volumes(volumes: Sequence[Volume], path: Path | None = None) -> Volume:
    """Stack same-geometry volumes (e.g. one enhanced file per time point) along t.

    Every volume must have the same shape, dtype, affine (within 1e-3 mm) and
    scaling; 4D inputs are concatenated. ``meta`` and ``source`` come from the
    first. Raises :class:`DicomError` (naming ``path``) when they differ.
    """
    if not volumes:
        raise DicomError("no volumes to stack", path)
    first = volumes[0]
    if len(volumes) == 1:
        return first
    parts = []
    for n, vol in enumerate(volumes):
        if vol.shape[:3] != first.shape[:3] or vol.dtype != first.dtype:
            raise DicomError(f"volume {n + 1} has shape {vol.shape} {vol.dtype}, the first "
                             f"{first.shape} {first.dtype}: cannot stack them in time", path)
        if not np.allclose(vol.affine, first.affine, atol=1e-3):
            raise DicomError(f"volume {n + 1} is not at the same place as the first: cannot stack them", path)
        if (vol.slope, vol.intercept) != (first.slope, first.intercept):
            raise DicomError(f"volume {n + 1} has different scaling: cannot stack them", path)
        parts.append(vol.array if vol.array.ndim == 4 else vol.array[..., np.newaxis])
    array = np.concatenate(parts, axis=3)
    meta = first.meta
    if meta.time_step is None and meta.acquisition.get("RepetitionTime"):
        meta = meta.replace(time_step=meta.acquisition["RepetitionTime"])
    return first.replace(array=array, meta=meta)


# =========================================================================== mosaic
_SIEMENS_MR_HEADER = "SIEMENS MR HEADER"


def _private_images_in_mosaic(ds: Dataset) -> int | None:
    """Siemens private (0019,xx0A) NumberOfImagesInMosaic, or None."""
    try:
        block = ds.private_block(0x0019, _SIEMENS_MR_HEADER)
        value = block[0x0A].value
    except (KeyError, ValueError):
        return None
    try:
        if isinstance(value, bytes):
            value = int.from_bytes(value[:2], "little")
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def is_mosaic(ds: Dataset) -> bool:
    """True for a Siemens mosaic: ImageType contains MOSAIC, or the CSA/private headers say so."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" in image_type:
        return True
    if "SIEMENS" not in str(ds.get("Manufacturer", "")).upper():
        return False
    if is_enhanced(ds):
        return False
    count = _private_images_in_mosaic(ds)
    if count is None:
        csa = csa_image_header(ds)
        count = int(csa["NumberOfImagesInMosaic"]) if csa and csa.get("NumberOfImagesInMosaic") else None
    return bool(count and count > 1)


def mosaic_slice_count(ds: Dataset) -> int:
    """Number of slices in a mosaic: CSA NumberOfImagesInMosaic, else Siemens private (0019,100A).

    Raises :class:`DicomError` when neither is present.
    """
    csa = csa_image_header(ds)
    if csa:
        try:
            count = int(csa.get("NumberOfImagesInMosaic") or 0)
        except (TypeError, ValueError):
            count = 0
        if count > 0:
            return count
    count = _private_images_in_mosaic(ds)
    if count:
        return count
    raise DicomError(
        "Siemens mosaic without NumberOfImagesInMosaic (CSA header or (0019,100A)): cannot unpack its slices",
        getattr(ds, "filename", None) or None,
    )


def mosaic_tile_shape(ds: Dataset) -> tuple[int, int, int]:
    """``(tile_rows, tile_cols, tiles_per_side)`` of a mosaic.

    Siemens lays out ``n`` slices on a square grid of ``ceil(sqrt(n))`` tiles per side.
    """
    n = mosaic_slice_count(ds)
    per_side = int(math.ceil(math.sqrt(n)))
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows % per_side or cols % per_side:
        raise DicomError(
            f"mosaic of {rows}x{cols} pixels cannot hold a {per_side}x{per_side} grid of {n} slices",
            getattr(ds, "filename", None) or None,
        )
    return rows // per_side, cols // per_side, per_side


def unmosaic(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """Split one decoded mosaic frame ``[row, col]`` into a stack ``[row, col, slice]``.

    Slices keep the order in which they are tiled (left to right, top to
    bottom), which is the acquisition order of k that :func:`mosaic_affine_lps`
    describes. Returns a new array.
    """
    frame = np.asarray(frame)
    n = mosaic_slice_count(ds)
    tile_rows, tile_cols, per_side = mosaic_tile_shape(ds)
    if frame.shape != (tile_rows * per_side, tile_cols * per_side):
        raise DicomError(
            f"mosaic frame has shape {frame.shape}, expected {(tile_rows * per_side, tile_cols * per_side)}",
            getattr(ds, "filename", None) or None,
        )
    tiles = frame.reshape(per_side, tile_rows, per_side, tile_cols).transpose(1, 3, 0, 2)
    return tiles.reshape(tile_rows, tile_cols, per_side * per_side)[:, :, :n].copy()


def mosaic_affine_lps(ds: Dataset) -> np.ndarray:
    """4x4 voxel->LPS+ affine (mm) for the unpacked mosaic stack ``[i=col, j=row, k=slice]``.

    The ImagePositionPatient of a mosaic is the corner of the whole tile grid
    (as if it were one big image); the first slice's corner is
    ``IPP + row_cosine * dx * (mosaic_cols - cols) / 2 + col_cosine * dy * (mosaic_rows - rows) / 2``.
    k runs along the CSA ``SliceNormalVector`` (its sign gives the order of the
    tiles; default ``row x col``), with the step SpacingBetweenSlices (else
    SliceThickness).
    """
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    where = getattr(ds, "filename", None) or None
    if orientation is None or position is None or spacing is None:
        raise DicomError("mosaic without ImageOrientationPatient/ImagePositionPatient/PixelSpacing", where)
    row = np.array(orientation[:3])
    col = np.array(orientation[3:])
    normal = slice_normal(orientation)
    csa = csa_image_header(ds)
    if csa and csa.get("SliceNormalVector") is not None:
        vector = _floats(csa["SliceNormalVector"], 3)
        if vector is not None and np.linalg.norm(vector) > 0.5:
            normal = np.asarray(vector) / np.linalg.norm(vector)
    tile_rows, tile_cols, _ = mosaic_tile_shape(ds)
    mosaic_rows, mosaic_cols = int(ds.Rows), int(ds.Columns)
    dy, dx = spacing  # between rows, between columns
    step = _floats(ds.get("SpacingBetweenSlices"), 1) or _floats(ds.get("SliceThickness"), 1) or (1.0,)
    origin = (np.asarray(position)
              + row * dx * (mosaic_cols - tile_cols) / 2.0
              + col * dy * (mosaic_rows - tile_rows) / 2.0)
    return stack_affine_lps(row, col, spacing, origin, normal * float(step[0]))
