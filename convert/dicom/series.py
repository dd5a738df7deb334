"""Series assembly: group instances into volumes, sort slices in space, check the geometry.

Rules (each one a real-world quirk with its own test):

* Group by StudyInstanceUID + SeriesInstanceUID, then split where the
  acquisition or geometry differs: orientation (IOP), matrix size, pixel
  spacing, echo (EchoNumbers, and EchoTime), ImageType (magnitude/phase/real/
  imaginary, derived...), colour samples, and AcquisitionNumber when each
  acquisition is a complete volume of its own at *different* positions (two CT
  ranges in one series). Repeated positions with the same geometry are time
  points (4D), not separate series.
* Split series get dcm2niix's file-name postfixes (:func:`postfix`, the one
  place that names them): ``e<N>`` per echo, ``ph``/``real``/``imaginary`` per
  complex part, ``fieldmaphz`` for a field map; a Philips classic DWI series
  with derived isotropic (trace) volumes becomes the DWI without them plus an
  ``ADC`` series holding every volume (derived ones last), as dcm2niix writes it.
* Slices are sorted by their position along the slice normal
  ``cross(row cosine, column cosine)`` (never by file name or InstanceNumber).
* At each position, time points are ordered by TemporalPositionIdentifier,
  AcquisitionNumber, TriggerTime, AcquisitionTime, then InstanceNumber.
* The same instance twice (same SOPInstanceUID, byte-identical files: a
  DICOMDIR media copy beside the folder) is skipped and counted in
  :attr:`Series.duplicates`, not warned about. Same SOPInstanceUID with
  different content, or different files at the same position *and* time keys:
  the later one is dropped with a warning naming both.
* Gaps larger than 1.5x the median spacing that are close to a whole multiple
  of it are **missing slices** (reported; the reader refuses them unless asked).
  Other deviations from the median (> 1 % + 0.01 mm) are **uneven spacing**.
* The **even grid** of a series (:meth:`Series.even_grid`) runs from the first to
  the last stored slice. Uneven spacing: its step is the smallest stored gap
  (as dcm2niix's ``_Eq`` output), except that the grid never holds more than
  :data:`EVEN_GRID_MAX_FACTOR` times the stored slices (the step is then the
  span over that count). Missing slices only: the median spacing.
* **Gantry/detector tilt**: the line through the slice positions is not
  parallel to the slice normal (angle > 0.1 degree).
* Enhanced multi-frame files are one series each (split later by
  :mod:`convert.dicom.multiframe`); Siemens mosaics form a time series of files.
* **Images without a position** (no ImagePositionPatient or
  ImageOrientationPatient: screen captures, dose reports such as Philips
  "Exam Summary", secondary captures) cannot be stacked: each one becomes its
  own single-image series (split ``"image N"``, N its InstanceNumber), placed
  at the origin with identity axes and a warning that its placement is
  unknown; the images of the group that do have a position form the stack.
* **United Imaging (UIH) grid images** (ImageType VFRAME, or a UIH file with
  the grid count (0065,1050)) tile the slices of one volume in a single image
  and keep the slice geometry in UIH private tags, which are not read: such a
  series is refused with :attr:`Series.problem` saying so (never written as
  2D images or stacked as slices).

Positions are in DICOM LPS+ mm.
"""

from __future__ import annotations

import dataclasses
import math

from collections import defaultdict
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from convert.dicom.scan import Instance
from convert.errors import GeometryError
from convert.geometry import slice_normal

#: Two slice positions closer than this along the normal (mm) are the same position.
POSITION_TOLERANCE_MM = 0.02
#: A spacing larger than this many times the median is a gap.
GAP_FACTOR = 1.5
#: Tilt below this angle (degrees) is rounding noise, not gantry tilt.
TILT_THRESHOLD_DEG = 0.1
#: The even grid of an unevenly spaced series holds at most this many times the stored slices (dcm2niix's cap).
EVEN_GRID_MAX_FACTOR = 2


@dataclass
class Series:
    """One volume to be read: its instances in spatial (and temporal) order, plus diagnostics.

    Attributes:
        kind: ``"slices"`` (one 2D image per file), ``"mosaic"`` (Siemens mosaic,
            one time point per file), ``"multiframe"`` (one file holding all frames).
        grid: ``grid[k][t]``: the instance at slice ``k`` (sorted along the normal,
            ascending) and time point ``t``. For mosaics and multi-frame files
            ``grid[0][t]`` (one file per time point, e.g. Siemens XA fMRI).
        series_uid, series_number, description, modality: from the first instance.
        split: why this series was split from others with the same UID (e.g.
            ``"echo 2"``), "" when not split.
        suffix: dcm2niix's file-name postfix for this series, without the leading
            underscore (``"e2_ph"``, ``"real"``, ``"ADC"``...), "" for none (see :func:`postfix`).
        derived_appended: a Philips DWI series kept with its derived isotropic volumes
            (last along t; the ``_ADC`` file): no gradient table is written for it.
        normal: unit slice normal ``cross(row, col)`` in LPS+, or None.
        distances: position of each slice along ``normal`` (mm), ascending.
        missing: ``(k, n)`` pairs: ``n`` slices appear missing after slice ``k``.
        uneven: spacing varies more than the tolerance (and not only by missing slices).
        tilt_deg: angle (degrees) between the slice-position line and the normal.
        warnings: human-readable notes (duplicates dropped, gaps, tilt...).
        problem: why this series cannot be read at all (inconsistent 4D...), or None.
        duplicates: files skipped as copies of a kept file (same SOPInstanceUID, identical bytes).
        mosaic_tile: for mosaics, the unpacked ``(columns, rows, slices)`` of one tile stack.
    """

    kind: str
    grid: list[list[Instance]]
    series_uid: str = ""
    series_number: int | None = None
    description: str = ""
    modality: str = ""
    split: str = ""
    suffix: str = ""
    derived_appended: bool = False
    normal: np.ndarray | None = None
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    missing: list[tuple[int, int]] = field(default_factory=list)
    uneven: bool = False
    tilt_deg: float = 0.0
    warnings: list[str] = field(default_factory=list)
    problem: str | None = None
    mosaic_tile: tuple[int, int, int] | None = None
    duplicates: list[Path] = field(default_factory=list)

    # ---- derived
    @property
    def instances(self) -> list[Instance]:
        """Every instance in volume order (time-major within each slice: k outer, t inner)."""
        return [inst for column in self.grid for inst in column]

    @property
    def first(self) -> Instance:
        """The first instance (slice 0, time 0)."""
        return self.grid[0][0]

    @property
    def paths(self) -> list[Path]:
        """Files of this series, in volume order."""
        return [inst.path for inst in self.instances]

    @property
    def n_slices(self) -> int:
        """Number of slice positions (for mosaics/multi-frame: not known before decoding; 1)."""
        return len(self.grid)

    @property
    def n_times(self) -> int:
        """Number of time points (repeats per position)."""
        return len(self.grid[0]) if self.grid else 0

    @property
    def shape(self) -> tuple[int, ...]:
        """Expected array shape ``(columns, rows, slices[, times])`` (best guess for mosaics/multi-frame)."""
        first = self.first
        if self.kind == "multiframe":
            base = (first.columns, first.rows, first.number_of_frames)
            return base + (self.n_times,) if self.n_times > 1 else base
        if self.kind == "mosaic":
            tile = self.mosaic_tile or (first.columns, first.rows, 1)
            return tile + (self.n_times,) if self.n_times > 1 else tile
        base = (first.columns, first.rows, self.n_slices)
        return base + (self.n_times,) if self.n_times > 1 else base

    @property
    def slice_spacing(self) -> float | None:
        """Median distance between adjacent slices along the normal (mm), None for one slice."""
        if len(self.distances) < 2:
            return None
        return median(np.diff(self.distances))

    def even_grid(self) -> tuple[int, float]:
        """``(slices, step)`` of the regular grid from the first to the last stored slice (step in mm along the normal).

        Uneven spacing: the step is the smallest stored gap, so no stored slice
        falls between two grid planes without one of them next to it, unless that
        would make more than :data:`EVEN_GRID_MAX_FACTOR` times the stored slices
        (the step is then ``span / (slices - 1)``): dcm2niix's rule for its
        ``_Eq`` volumes. Otherwise (regular or missing slices) the median spacing.
        A single slice: ``(1, 0.0)``.
        """
        return even_grid(self.distances, self.uneven)

    def stack_error_mm(self) -> float:
        """Largest distance (world mm) between a stored slice and where an even stack of the stored slices puts it.

        An even stack from the first to the last slice (what ``stack_uneven``
        writes) puts slice ``k`` at ``IPP_0 + k * (IPP_last - IPP_0) / (n - 1)``.
        """
        positions = [column[0].position for column in self.grid]
        if len(positions) < 3 or any(p is None for p in positions):
            return 0.0
        ipp = np.asarray(positions, dtype=np.float64)
        line = ipp[0] + np.outer(np.arange(len(ipp)), (ipp[-1] - ipp[0]) / (len(ipp) - 1))
        return float(np.max(np.linalg.norm(ipp - line, axis=1)))

    @property
    def label(self) -> str:
        """Short human description: ``"#3 'T1 MPRAGE' (echo 2) 256x256x176"``."""
        number = f"#{self.series_number}" if self.series_number is not None else "#?"
        split = f" ({self.split})" if self.split else ""
        shape = "x".join(str(n) for n in self.shape)
        return f"{number} '{self.description}'{split} {shape}"

    def file_summary(self, limit: int = 3) -> str:
        """First few file names, for error messages."""
        paths = self.paths
        names = ", ".join(str(p) for p in paths[:limit])
        return names + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


# --------------------------------------------------------------------------- grouping
def _round_tuple(values: Sequence[float] | None, ndigits: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    return tuple(round(float(v), ndigits) + 0.0 for v in values)


#: ImageType values that make a different kind of image (split into separate series).
IMAGE_KIND_TOKENS = frozenset({"M", "P", "R", "I", "MAGNITUDE", "PHASE", "REAL", "IMAGINARY", "LOCALIZER",
                               "MIP", "MPR", "PROJECTION IMAGE", "REFORMATTED", "FIELD_MAP", "B0", "ADC",
                               "TRACEW", "TRACE", "FA", "DIFFUSION", "SCOUT", "SECONDARY", "CALC_BVALUE",
                               "T1 MAP", "T2 MAP", "SUBTRACTION", "COLLAPSE", "MOCO", "DERIVED"})


def image_kind(image_type: Sequence[str]) -> tuple[str, ...]:
    """The ImageType values that distinguish kinds of image (magnitude/phase, derived, localizer...).

    Vendor-specific extras (GE's ``ADD``, Siemens' ``NORM``/``ND``) do not split a series.
    """
    return tuple(v for v in image_type if v in IMAGE_KIND_TOKENS)


#: GE private image type (0043,102F) -> part: 0 magnitude, 1 phase, 2 real, 3 imaginary.
_GE_PARTS = {0: "", 1: "ph", 2: "real", 3: "imaginary"}


def complex_part(image_type: Sequence[str], ge_image_type: int | None = None) -> str:
    """dcm2niix's postfix for the part of the signal an image holds, from its ImageType (or FrameType).

    ``"fieldmaphz"`` (a ``FIELD_MAP``, e.g. Philips B0 map in Hz), ``"ph"`` (``P`` or
    ``PHASE``), ``"real"`` (``R`` or ``REAL``), ``"imaginary"`` (``I`` or ``IMAGINARY``),
    else ``""`` (magnitude, or anything else: no postfix). Values are compared whole
    and case-insensitively (Philips' ``PHASE MAP`` token is not ``PHASE``, its ``P`` is).
    ``ge_image_type``, GE's private (0043,102F) when known (0-3), decides instead: GE
    phase, real and imaginary images often carry only ``ORIGINAL\\PRIMARY\\OTHER``.
    """
    if ge_image_type in _GE_PARTS:
        return _GE_PARTS[ge_image_type]  # type: ignore[index]
    values = {str(v).strip().upper() for v in image_type}
    if "FIELD_MAP" in values:
        return "fieldmaphz"
    if values & {"P", "PHASE"}:
        return "ph"
    if values & {"R", "REAL"}:
        return "real"
    if values & {"I", "IMAGINARY"}:
        return "imaginary"
    return ""


def echo_label(echo_number: int | None, echo_time: float | None) -> str:
    """How dcm2niix names an echo: EchoNumbers when stored (> 0), else EchoTime (ms, ``%g``), else ``""``."""
    if echo_number is not None and echo_number > 0:
        return str(echo_number)
    if echo_time is not None:
        return f"{echo_time:g}"
    return ""


def postfix(echo_number: int | None, echo_time: float | None, multi_echo: bool, image_type: Sequence[str],
            *, derived_appended: bool = False, ge_image_type: int | None = None) -> str:
    """The one rule for dcm2niix's file-name postfixes (without the leading ``_``), e.g. ``"e2_ph"``.

    * ``e<echo>`` (:func:`echo_label`) for every echo of a multi-echo acquisition
      (``multi_echo``: the series holds more than one echo), and for a lone echo
      whose EchoNumbers is above 1; a single echo 1 (or one echo time) gets none;
    * then :func:`complex_part` (``ph``, ``real``, ``imaginary``, ``fieldmaphz``; from
      ``image_type``, or GE's private ``ge_image_type``);
    * then ``ADC`` for a Philips DWI series written with its derived isotropic
      volumes appended (``derived_appended``).
    """
    parts = []
    label = echo_label(echo_number, echo_time)
    if label and (multi_echo or (echo_number is not None and echo_number > 1)):
        parts.append(f"e{label}")
    part = complex_part(image_type, ge_image_type)
    if part:
        parts.append(part)
    if derived_appended:
        parts.append("ADC")
    return "_".join(parts)


def _group_key(inst: Instance) -> tuple:
    return (
        inst.study_uid,
        inst.series_uid,
        _round_tuple(inst.orientation, 3),
        inst.rows,
        inst.columns,
        _round_tuple(inst.pixel_spacing, 4),
        (inst.echo_number, echo_label(None, inst.echo_time)),
        (image_kind(inst.image_type), complex_part(inst.image_type, inst.ge_image_type)),
        # palette colour has one sample per pixel like grey: keep it apart from grey images
        "palette" if (inst.photometric or "").upper() == "PALETTE COLOR" else inst.samples_per_pixel,
        inst.series_number,
        inst.mosaic,
    )


def _time_key(inst: Instance) -> tuple:
    def part(value: float | int | None) -> tuple[int, float]:
        return (1, 0.0) if value is None else (0, float(value))

    return (part(inst.temporal_position), part(inst.acquisition_number), part(inst.trigger_time),
            part(inst.acquisition_time), part(inst.instance_number))


def _normal(orientation: Sequence[float]) -> np.ndarray:
    """:func:`convert.geometry.slice_normal`, or the zero vector for parallel cosines (every slice then
    sits at distance 0: the assembly reports duplicates instead of failing on one file)."""
    try:
        return slice_normal(orientation)
    except GeometryError:
        return np.zeros(3)


def _split_by_acquisition(instances: list[Instance]) -> list[list[Instance]]:
    """Split when each AcquisitionNumber is a complete volume at positions no other acquisition has."""
    by_acq: dict[int | None, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_acq[inst.acquisition_number].append(inst)
    if len(by_acq) < 2 or any(len(v) < 2 for v in by_acq.values()):
        return [instances]
    if any(inst.position is None or inst.orientation is None for inst in instances):
        return [instances]
    normal = _normal(instances[0].orientation)  # type: ignore[arg-type]
    sets = []
    for group in by_acq.values():
        d = sorted(round(float(np.dot(normal, inst.position)) / POSITION_TOLERANCE_MM) for inst in group)  # type: ignore[arg-type]
        if len(set(d)) != len(d):  # repeated positions inside one acquisition: not a plain volume
            return [instances]
        sets.append(frozenset(d))
    if len(set(sets)) == 1:  # same positions in every acquisition: time points of a 4D series
        return [instances]
    union = frozenset().union(*sets)
    if sum(len(s) for s in sets) != len(union):  # overlapping ranges: still separate volumes
        return [list(v) for _, v in sorted(by_acq.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]
    # disjoint ranges: separate volumes only if each is itself multi-slice and they would form
    # an uneven stack together; contiguous ranges are one volume acquired in pieces (CT helical parts).
    return [instances]


def plane_name(orientation: Sequence[float]) -> str:
    """``"axial"``, ``"coronal"`` or ``"sagittal"`` (the closest plane), ``"oblique ..."`` when > 10 degrees off."""
    normal = _normal(orientation)
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    angle = float(np.degrees(np.arccos(min(1.0, abs(float(normal[axis]))))))
    return f"oblique {name}" if angle > 10 else name


def _describe_split(key: tuple, others: list[tuple]) -> str:
    """Which key fields differ from the other groups of the same series UID."""
    names = ["study", "series", "orientation", "rows", "columns", "pixel spacing", "echo", "image type",
             "samples", "number", "mosaic"]
    parts = []
    for idx, name in enumerate(names):
        if idx < 2:
            continue
        if any(other[idx] != key[idx] for other in others):
            value = key[idx]
            if name == "echo":
                number, time = value
                parts.append(f"echo {number}" if number is not None else f"TE {time or '?'} ms")
            elif name == "image type":
                kind, part = value
                parts.append("/".join(kind) or {"ph": "phase", "": "other image type"}.get(part, part))
            elif name == "number":
                continue
            elif name in ("rows", "columns"):
                parts.append(f"{key[4]}x{key[3]}")
            elif name == "orientation":
                parts.append(plane_name(value) if value else "no orientation")
            else:
                parts.append(f"{name} {value}")
    return ", ".join(dict.fromkeys(parts))


def assemble(instances: Iterable[Instance]) -> list[Series]:
    """Group instances into series and sort/check each one.

    Returns series ordered by (SeriesNumber, series UID, split). Never raises for
    bad geometry: problems are recorded in :attr:`Series.problem` and
    :attr:`Series.warnings` so a multi-series run can report and continue.
    """
    instances = list(instances)
    out: list[Series] = []
    groups: dict[tuple, list[Instance]] = defaultdict(list)
    multiframe: dict[tuple, list[Instance]] = defaultdict(list)
    for inst in instances:
        if inst.is_multiframe:
            multiframe[(inst.study_uid, inst.series_uid, inst.series_number, inst.rows, inst.columns,
                        inst.number_of_frames)].append(inst)
        else:
            groups[_group_key(inst)].append(inst)
    for members in multiframe.values():
        members = sorted(members, key=lambda i: _time_key(i) + ((0, 0.0),) + (str(i.path),))  # type: ignore[operator]
        kept, warnings, copies = _drop_duplicates(members)
        series = Series(kind="multiframe", grid=[kept], warnings=warnings, duplicates=copies)
        _fill_identity(series)
        out.append(series)

    by_uid: dict[tuple, list[tuple]] = defaultdict(list)
    for key in groups:
        by_uid[key[:2]].append(key)
    # multi-echo: more than one echo label (EchoNumbers, else EchoTime) or echo time in the series UID
    labels: dict[tuple, set[str]] = defaultdict(set)
    times: dict[tuple, set[str]] = defaultdict(set)
    for key, members in groups.items():
        labels[key[:2]].update(echo_label(i.echo_number, i.echo_time) for i in members)
        times[key[:2]].update(echo_label(None, i.echo_time) for i in members)

    for key, members in groups.items():
        siblings = [k for k in by_uid[key[:2]] if k != key]
        base_split = _describe_split(key, siblings) if siblings else ""
        grid_flags = [False] * len(members) if key[-1] else [is_uih_grid(i) for i in members]
        if any(grid_flags):
            grids = [i for i, grid in zip(members, grid_flags) if grid]
            members = [i for i, grid in zip(members, grid_flags) if not grid]
            out.append(_uih_grid_series(grids, base_split))
            if not members:
                continue
        if not key[-1] and len(members) > 1:
            members, unplaced = _split_unplaced(members)
            out.extend(_unplaced_series(unplaced, base_split, n_images=len(unplaced)))
            if not members:
                continue
        first = members[0]
        multi_echo = len(labels[key[:2]] - {""}) > 1 or len(times[key[:2]] - {""}) > 1
        # a Philips DWI series with derived isotropic volumes: the DWI without them, and (as dcm2niix) "_ADC"
        # with every volume, the derived ones last
        isotropic = [i for i in members if i.philips_isotropic]
        variants = [(members, False)]
        if isotropic and len(isotropic) < len(members) and not key[-1]:
            variants = [([i for i in members if not i.philips_isotropic], False), (members, True)]
        for variant, appended in variants:
            parts = [variant] if key[-1] else _split_by_acquisition(variant)
            for part in parts:
                split = base_split
                if len(parts) > 1:
                    acq = part[0].acquisition_number
                    split = ", ".join(p for p in (base_split, f"acquisition {acq}") if p)
                if appended:
                    split = ", ".join(p for p in (split, "with derived isotropic volumes") if p)
                series = _build_mosaic(part) if key[-1] else _build_slices(part)
                if appended:
                    for column in series.grid:  # stable: acquired volumes in order, then the derived ones
                        column.sort(key=lambda i: i.philips_isotropic)
                series.split, series.derived_appended = split, appended
                series.suffix = postfix(first.echo_number, first.echo_time, multi_echo, first.image_type,
                                        derived_appended=appended, ge_image_type=first.ge_image_type)
                _fill_identity(series)
                out.append(series)

    for series in out:
        _check_rescale(series)
    out.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid,
                            "DERIVED" in s.first.image_type, s.suffix, s.split, str(s.first.path)))
    return out


def is_uih_grid(inst: Instance) -> bool:
    """True for a United Imaging (UIH) grid ("VFRAME" mosaic) image: ImageType VFRAME, or a UIH header
    holding the grid count (0065,1050)."""
    if "VFRAME" in inst.image_type:
        return True
    if inst.modality != "MR" or inst.position is not None:
        return False
    header = inst.load_header()  # only for MR images without a position: few files
    manufacturer = str(header.get("Manufacturer", "") or "").upper()
    return ("UIH" in manufacturer or "UNITED IMAGING" in manufacturer) and 0x00651050 in header


def _uih_grid_series(grids: list[Instance], base_split: str) -> Series:
    """A UIH grid series, refused with a :attr:`Series.problem` that says why."""
    grids = sorted(grids, key=lambda i: _time_key(i) + ((0, 0.0),) + (str(i.path),))  # type: ignore[operator]
    series = Series(kind="slices", grid=[[i] for i in grids], split=base_split)
    series.problem = (
        f"{len(grids)} United Imaging (UIH) grid image(s) (ImageType VFRAME / grid count (0065,1050)): each file "
        "tiles the slices of a volume in one image and the position and orientation of each tile are stored only "
        "in UIH private tags (0065,xxxx), which medconvert does not read, so the slices cannot be placed in space and "
        f"the series is not converted (e.g. {grids[0].path}). dcm2niix reads this layout; or export the series "
        "from the scanner as single-slice (non-grid) images")
    _fill_identity(series)
    return series


def _split_unplaced(members: list[Instance]) -> tuple[list[Instance], list[Instance]]:
    """(images with a position and orientation, images without); later copies of one SOPInstanceUID dropped."""
    placed = [i for i in members if i.position is not None and i.orientation is not None]
    unplaced, seen = [], set()
    for inst in sorted((i for i in members if i.position is None or i.orientation is None),
                       key=lambda i: _time_key(i) + ((0, 0.0),) + (str(i.path),)):  # type: ignore[operator]
        if inst.sop_instance_uid and inst.sop_instance_uid in seen:
            continue
        seen.add(inst.sop_instance_uid)
        unplaced.append(inst)
    return placed, unplaced


def _unplaced_series(unplaced: list[Instance], base_split: str, n_images: int) -> list[Series]:
    """One single-image series per image without a position (see the module rules)."""
    out = []
    for n, inst in enumerate(unplaced, 1):
        series = _build_slices([inst])
        number = inst.instance_number if inst.instance_number is not None else n
        series.split = ", ".join(p for p in (base_split, f"image {number}") if p)
        generic = [w for w in series.warnings if not w.startswith("no ImagePositionPatient")]
        series.warnings = [f"no ImagePositionPatient/ImageOrientationPatient in {inst.path}: written as its own "
                           f"2D image{f' (one of {n_images} in its series)' if n_images > 1 else ''}, placed at the "
                           "origin with identity axes: its placement in space is unknown"] + generic
        _fill_identity(series)
        out.append(series)
    return out


def _check_rescale(series: Series) -> None:
    """Replace a RescaleSlope that is not a usable number (NaN, infinite, 0) by 1 and a non-finite
    RescaleIntercept by 0, in place, and say so in :attr:`Series.warnings` (never silently: the
    values of those slices are then the stored values, not what the scanner meant)."""
    bad: list[Instance] = []
    for column in series.grid:
        for n, inst in enumerate(column):
            slope_ok = math.isfinite(inst.rescale_slope) and inst.rescale_slope != 0.0
            intercept_ok = math.isfinite(inst.rescale_intercept)
            if not (slope_ok and intercept_ok):
                bad.append(inst)
                column[n] = dataclasses.replace(inst, rescale_slope=inst.rescale_slope if slope_ok else 1.0,
                                                rescale_intercept=inst.rescale_intercept if intercept_ok else 0.0)
    if bad:
        first = bad[0]
        series.warnings.append(
            f"RescaleSlope/RescaleIntercept is not a usable number in {len(bad)} of {len(series.instances)} file(s) "
            f"(first: {first.path}: slope {first.rescale_slope!r}, intercept {first.rescale_intercept!r}): "
            "a broken slope is taken as 1 and a broken intercept as 0, so those slices' values may be wrong; "
            "check them")


def _fill_identity(series: Series) -> None:
    first = series.first
    series.series_uid = first.series_uid
    series.series_number = first.series_number
    series.description = first.series_description
    series.modality = first.modality


def _build_mosaic(members: list[Instance]) -> Series:
    members = sorted(members, key=lambda i: _time_key(i) + ((0, 0.0),) + (str(i.path),))  # type: ignore[operator]
    kept, warnings, copies = _drop_duplicates(members)
    series = Series(kind="mosaic", grid=[kept], warnings=warnings, duplicates=copies)
    if kept[0].orientation is not None:
        series.normal = _normal(kept[0].orientation)
    try:
        from convert.dicom import multiframe

        header = kept[0].load_header()
        tile_rows, tile_cols, _ = multiframe.mosaic_tile_shape(header)
        series.mosaic_tile = (tile_cols, tile_rows, multiframe.mosaic_slice_count(header))
    except Exception as exc:  # reported when the series is read
        series.warnings.append(f"cannot tell the mosaic layout yet: {exc}")
    return series


def same_content(a: Path, b: Path) -> bool:
    """True when files ``a`` and ``b`` hold the same bytes (False if either cannot be read)."""
    import filecmp

    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _drop_duplicates(members: list[Instance]) -> tuple[list[Instance], list[str], list[Path]]:
    """Drop later copies of the same SOPInstanceUID, or of the same position and time keys.

    Returns ``(kept, warnings, copies)``: ``copies`` are byte-identical files with
    the SOPInstanceUID of a kept one (the same instance twice), skipped without a
    warning; other drops are warned about, naming both files.
    """
    kept: list[Instance] = []
    by_uid: dict[str, Instance] = {}
    by_key: dict[tuple, Instance] = {}
    copies: list[Path] = []
    conflicts: list[tuple[Instance, Instance]] = []
    dropped: list[Instance] = []
    for inst in members:
        key = (_round_tuple(inst.position, 2), _time_key(inst))
        original = by_uid.get(inst.sop_instance_uid) if inst.sop_instance_uid else None
        if original is not None:
            if same_content(original.path, inst.path):
                copies.append(inst.path)
            else:
                conflicts.append((inst, original))
            continue
        if key in by_key:
            dropped.append(inst)
            continue
        if inst.sop_instance_uid:
            by_uid[inst.sop_instance_uid] = inst
        by_key[key] = inst
        kept.append(inst)
    warnings = []
    if conflicts:
        names = "; ".join(f"{inst.path} (kept {original.path})" for inst, original in conflicts[:3])
        warnings.append(f"dropped {len(conflicts)} image(s) whose SOPInstanceUID is already used by a different "
                        f"file (same UID, different content: check which copy is right): {names}"
                        + (" ..." if len(conflicts) > 3 else ""))
    if dropped:
        names = ", ".join(str(i.path) for i in dropped[:3]) + (" ..." if len(dropped) > 3 else "")
        warnings.append(f"dropped {len(dropped)} duplicate image(s) (same position and time): {names}")
    return kept, warnings, copies


#: PixelSpacing above this (mm) or positions farther than this from the origin are not patient geometry.
MAX_SPACING_MM = 1e4
MAX_POSITION_MM = 1e7


def geometry_problem(inst: Instance) -> str | None:
    """Why an image's stored geometry is unusable, or None: PixelSpacing not in (0, :data:`MAX_SPACING_MM`],
    ImagePositionPatient beyond :data:`MAX_POSITION_MM`, or an ImageOrientationPatient without two
    perpendicular unit vectors. (Absent values are not a problem here; the callers warn about them.)"""
    if inst.pixel_spacing is not None and not all(0 < s <= MAX_SPACING_MM for s in inst.pixel_spacing):
        return (f"PixelSpacing {list(inst.pixel_spacing)} of {inst.path} is not a usable pixel size (mm, "
                "positive): the header is corrupt")
    if inst.position is not None and not all(abs(v) <= MAX_POSITION_MM for v in inst.position):
        return f"ImagePositionPatient {list(inst.position)} of {inst.path} is not a position in mm: the header is corrupt"
    if inst.orientation is not None:
        return _check_orientation(inst)
    return None


def _build_slices(members: list[Instance]) -> Series:
    members = sorted(members, key=lambda i: str(i.path))
    problem = next((p for p in map(geometry_problem, members) if p), None)
    if problem:
        return Series(kind="slices", grid=[[i] for i in members], problem=problem)
    if len(members) == 1:
        inst = members[0]
        series = Series(kind="slices", grid=[[inst]])
        if inst.orientation is None or inst.position is None:
            series.warnings.append("no ImagePositionPatient/ImageOrientationPatient: the image is placed at the "
                                   "origin with identity axes (its world position is unknown)")
        if inst.pixel_spacing is None:
            series.warnings.append("no PixelSpacing: 1 mm pixels assumed")
        if inst.orientation is not None:
            series.normal = _normal(inst.orientation)
            if inst.position is not None:
                series.distances = np.array([float(np.dot(series.normal, inst.position))])
        return series
    if any(inst.position is None or inst.orientation is None for inst in members):
        series = Series(kind="slices", grid=[[i] for i in sorted(members, key=_time_key)])
        missing = [i for i in members if i.position is None or i.orientation is None]
        series.problem = (f"{len(missing)} image(s) have no ImagePositionPatient/ImageOrientationPatient, so "
                          f"slices cannot be placed in space (e.g. {missing[0].path})")
        return series

    orientation_problem = _check_orientation(members[0])
    if orientation_problem:
        return Series(kind="slices", grid=[[i] for i in members], problem=orientation_problem)
    normal = _normal(members[0].orientation)  # type: ignore[arg-type]
    dist = {id(i): float(np.dot(normal, i.position)) for i in members}  # type: ignore[arg-type]
    ordered = sorted(members, key=lambda i: (dist[id(i)],) + _time_key(i) + (str(i.path),))  # type: ignore[operator]
    ordered, warnings, copies = _drop_duplicates(ordered)

    # cluster positions along the normal
    clusters: list[list[Instance]] = []
    last = None
    for inst in ordered:
        d = dist[id(inst)]
        if last is None or d - last > POSITION_TOLERANCE_MM:
            clusters.append([inst])
        else:
            clusters[-1].append(inst)
        last = d
    for cluster in clusters:
        cluster.sort(key=lambda i: _time_key(i) + ((0, 0.0),) + (str(i.path),))  # type: ignore[operator]

    series = Series(kind="slices", grid=clusters, normal=normal, warnings=warnings, duplicates=copies)
    counts = [len(c) for c in clusters]
    if len(set(counts)) > 1:
        bad = [k for k, c in enumerate(counts) if c != max(counts)]
        example = clusters[bad[0]][0].path
        series.problem = (f"inconsistent 4D series: {len(clusters)} slice positions hold between "
                          f"{min(counts)} and {max(counts)} images each (incomplete time points?), e.g. at "
                          f"{example}")
        return series
    series.distances = np.array([dist[id(c[0])] for c in clusters])
    if members[0].pixel_spacing is None:
        series.warnings.append("no PixelSpacing: 1 mm pixels assumed")
    _check_spacing(series)
    _check_tilt(series)
    return series


def _check_orientation(inst: Instance) -> str | None:
    """A reason when ImageOrientationPatient is unusable (zero/parallel/non-unit cosines)."""
    assert inst.orientation is not None
    row, col = np.asarray(inst.orientation[:3]), np.asarray(inst.orientation[3:])
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if nr < 0.5 or nc < 0.5 or abs(nr - 1) > 0.01 or abs(nc - 1) > 0.01:
        return f"ImageOrientationPatient {list(inst.orientation)} does not hold unit vectors ({inst.path})"
    if abs(float(np.dot(row, col))) / (nr * nc) > 0.01:
        return (f"ImageOrientationPatient {list(inst.orientation)}: row and column directions are not "
                f"perpendicular ({inst.path})")
    return None


def median(values: Iterable[float] | np.ndarray) -> float:
    """Median of a few numbers (``statistics.median``: avoids importing ``numpy.ma`` as ``np.median`` does)."""
    import statistics

    return float(statistics.median(float(v) for v in values))


def even_grid(distances: np.ndarray, uneven: bool) -> tuple[int, float]:
    """``(slices, step_mm)`` of the even grid over sorted slice ``distances`` (see :meth:`Series.even_grid`)."""
    d = np.asarray(distances, dtype=np.float64)
    if len(d) < 2:
        return len(d), 0.0
    span = float(d[-1] - d[0])
    diffs = np.diff(d)
    if uneven:
        smallest = float(diffs[diffs > POSITION_TOLERANCE_MM].min())
        n_new = min(int(np.ceil(span / smallest - 1e-6)) + 1, EVEN_GRID_MAX_FACTOR * len(d))
    else:
        n_new = int(round(span / median(diffs))) + 1
    n_new = max(n_new, 2)
    return n_new, span / (n_new - 1)


def _check_spacing(series: Series) -> None:
    d = series.distances
    if len(d) < 3:
        return
    diffs = np.diff(d)
    median_step = median(diffs)
    if median_step <= 0:
        return
    tolerance = 0.01 * median_step + 0.01
    for k, step in enumerate(diffs):
        ratio = step / median_step
        if ratio > GAP_FACTOR and abs(ratio - round(ratio)) < 0.25:
            series.missing.append((k, int(round(ratio)) - 1))
        elif abs(step - median_step) > tolerance:
            series.uneven = True
    if series.missing:
        where = "; ".join(
            f"{n} after {series.grid[k][0].path.name} (gap {diffs[k]:.2f} mm)" for k, n in series.missing[:3]
        )
        series.warnings.append(
            f"missing slice(s): {sum(n for _, n in series.missing)} missing ({where}); median spacing "
            f"{median_step:.3f} mm"
        )
    # uneven spacing is reported by the reader (or `info`), which knows whether it resamples or stacks


def _check_tilt(series: Series) -> None:
    first, last = series.grid[0][0], series.grid[-1][0]
    if first.position is None or last.position is None or series.normal is None:
        return
    step = np.asarray(last.position) - np.asarray(first.position)
    length = float(np.linalg.norm(step))
    if length <= 0:
        return
    cos = abs(float(np.dot(step, series.normal))) / length
    angle = float(np.degrees(np.arccos(min(1.0, cos))))
    series.tilt_deg = angle
    if angle > TILT_THRESHOLD_DEG:
        series.warnings.append(
            f"gantry/detector tilt of {angle:.2f} degrees (kept as a sheared affine; use --tilt-correct to "
            "resample onto an orthogonal grid)"
        )


class LazyHeaders(SequenceABC):
    """A read-only sequence of ``load(item)`` for each of ``items``, each computed on first use (memoised).

    The one lazy header sequence: a series' headers read from disk
    (:class:`convert.dicom.reader.SeriesHeaders`) or headers passed through a
    function (de-identified sidecar input).
    """

    def __init__(self, items: Sequence[Any], load: Callable[[Any], Any]) -> None:
        self._items, self._load = items, load
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # normalises negatives, raises IndexError
        if index not in self._cache:
            self._cache[index] = self._load(self._items[index])
        return self._cache[index]
