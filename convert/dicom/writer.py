"""Write a Volume as a DICOM series: classic single-frame (one file per slice) or one enhanced file.

Geometry (PS3.3 C.7.6.2; the one RAS+ -> LPS+ conversion is :func:`convert.geometry.ras_to_lps`):

* ImageOrientationPatient = (unit vector of ``i``, unit vector of ``j``) in LPS+:
  the row cosine is our ``i`` axis (column index), the column cosine our ``j``
  axis (row index), exactly as the reader reads them back.
* PixelSpacing = (spacing along ``j``, spacing along ``i``) in mm (the classic swap).
* ImagePositionPatient of slice ``k`` = LPS+ world position of voxel ``(0, 0, k)``;
  the slice vector is the affine's ``k`` column, so any shear (gantry tilt) is
  kept in the positions. SliceThickness and SpacingBetweenSlices are the distance
  between slices along the plane normal (mm). InstanceNumber runs ``1..n`` along
  ``k`` (spatial order), time-major for 4D (all slices of volume 0, then 1...).
* A slice's pixels are ``array[:, :, k].T``: Rows = ``nj``, Columns = ``ni``.

Values (:func:`choose_storage`): pixels are 16-bit (BitsAllocated = BitsStored =
16, HighBit 15), signed or unsigned, with one RescaleSlope/RescaleIntercept for
the whole series (readers then need no per-slice scaling):

* integer data whose stored values fit int16/uint16 are written as stored, with
  the volume's slope/intercept: **bit-exact**;
* other integer data spanning at most 65536 values are written as
  ``stored - min`` (uint16) with the intercept moved by ``min * slope``: exact;
* float data whose real values are all integers within int16/uint16: exact;
* anything else is quantised to uint16 over ``[min, max]`` of the real values:
  ``slope = (max - min) / 65535``, ``intercept = min``; every voxel is then within
  :attr:`Storage.max_error` = ``slope / 2`` (plus the 16-character DS rounding of
  slope and intercept, well below 1e-9 of the range) of its real value.

Colour (RGB) volumes become RGB Secondary Capture images (3 x 8 bits, interleaved), as stored.

CT output is in HU through RescaleIntercept/RescaleSlope (RescaleType ``HU``).
Window Center/Width come from the volume's presets (``meta.window``) or else
from the data range. UIDs are new ``2.25.<uuid>`` UIDs (PS3.5 B.2); with a
``template`` series, patient and study identifiers and the Frame of Reference
are copied from it so the output joins that study. Every file gets complete
File Meta Information (explicit VR little endian). Text values are cut to
their VR's maximum length (SH 16, LO 64 characters).

4D volumes become **one series** whose slices repeat the same positions once
per time point, with TemporalPositionIdentifier / NumberOfTemporalPositions
and AcquisitionTime stepping by ``meta.time_step``: a PACS shows one dynamic
series, and readers (ours, dcm2niix, SimpleITK by position) rebuild one 4D
volume; a series per volume would lose that grouping.

Output is atomic: every file goes into a hidden temporary folder that is renamed
to the output folder when the series is complete (:func:`convert.atomic.atomic_folder`).
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from convert.atomic import atomic_folder
from convert.errors import ConvertError, DicomError, UnsupportedDataError
from convert.proxy import iter_slabs
from convert.geometry import geometry_from_affine, ras_to_lps, ras_to_lps_point, slice_normal
from convert.volume import Volume, rgb_channels

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: SOP class per ``--modality`` (OT: Secondary Capture, for data that is not CT or MR).
SOP_CLASSES: dict[str, str] = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE, "OT": SECONDARY_CAPTURE_STORAGE}
#: Our ImplementationClassUID (a fixed 2.25 UUID-derived UID) and version name (SH, <= 16 characters).
IMPLEMENTATION_CLASS_UID = "2.25.229628744123957218532796466389104711471"
IMPLEMENTATION_VERSION_NAME = "MEDCONVERT_01"
#: Maximum characters per value of the text VRs we write (PS3.5 Table 6.2-1).
VR_MAX_LENGTH: dict[str, int] = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240,
                                 "UI": 64, "DS": 16, "IS": 12}
#: Patient and study attributes a ``template`` series lends to the output (so it lands in the same study).
TEMPLATE_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "PatientPosition", "BodyPartExamined", "Laterality")


# --------------------------------------------------------------------------- small rules
def new_uid() -> str:
    """A new UID under the ``2.25`` root (UUID-derived, PS3.5 B.2): at most 44 characters, digits and dots."""
    import uuid

    return f"2.25.{uuid.uuid4().int}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def fit_text(value: Any, vr: str) -> str:
    """``value`` as a legal single value of text ``vr``: control characters and backslashes
    (the value delimiter) become spaces, and it is cut to the VR's maximum length."""
    text = _CONTROL.sub(" ", str(value if value is not None else "")).strip()
    limit = VR_MAX_LENGTH.get(vr)
    return text[:limit].rstrip() if limit else text


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


@dataclass(frozen=True)
class Storage:
    """How real values are stored: ``real = stored * slope + intercept``.

    Attributes:
        dtype: ``int16`` or ``uint16`` (PixelRepresentation 1 or 0).
        slope, intercept: RescaleSlope / RescaleIntercept, exactly as written (DS strings).
        offset: subtracted from stored integer values before writing (exact re-basing).
        exact: True when every voxel's real value survives unchanged.
        max_error: bound on ``|written real value - real value|`` (0.0 when exact), real units.
        value_range: (min, max) of the real values (None when the data were not looked at).
        quantise: values are requantised (real value -> ``round((real - intercept) / slope)``).
        nan_fill: stored value written for NaN voxels (the minimum).
    """

    dtype: np.dtype
    slope: str
    intercept: str
    offset: int = 0
    exact: bool = True
    max_error: float = 0.0
    value_range: tuple[float, float] | None = None
    quantise: bool = False
    nan_fill: float = 0.0


#: Colour volumes: 8-bit R, G, B as stored (no rescale).
RGB_STORAGE = Storage(np.dtype("uint8"), "1", "0")


def _stored_range(volume: Volume) -> tuple[float, float, bool, int]:
    """(min, max) of the stored values (NaN ignored), whether they are all integers, NaN count."""
    lo, hi, integral, nans = np.inf, -np.inf, True, 0
    is_float = volume.dtype.kind == "f"
    for _t, _k0, _k1, slab in iter_slabs(volume.array):
        if slab.size == 0:
            continue
        if is_float:
            finite = np.isfinite(slab)
            if not finite.all():
                if np.isinf(slab).any():
                    raise UnsupportedDataError("the volume holds infinite values, which DICOM pixels cannot "
                                               "represent; clip or mask them first")
                nans += int((~finite).sum())
                slab = slab[finite]
                if slab.size == 0:
                    continue
            if integral and volume.slope == 1.0 and volume.intercept == 0.0:
                integral = bool(np.all(slab == np.round(slab)))
            else:
                integral = False
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
    if lo > hi:  # empty or all NaN
        lo = hi = 0.0
    return lo, hi, integral, nans


def choose_storage(volume: Volume) -> Storage:
    """The 16-bit representation of ``volume``'s values (see the module doc for the rules)."""
    dtype = volume.dtype
    slope, inter = volume.slope, volume.intercept
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        target = np.dtype("int16") if dtype.kind == "i" else np.dtype("uint16")
        return Storage(target, _ds(slope), _ds(inter), value_range=None)  # stored as is: no pass over the data
    lo, hi, integral, nans = _stored_range(volume)
    if nans:
        warnings.warn(f"{nans} NaN voxel(s) written as the minimum value {lo * slope + inter:g} "
                      "(DICOM pixels cannot hold NaN)", UserWarning, stacklevel=3)
    real = sorted((lo * slope + inter, hi * slope + inter))
    if dtype.kind in "iu" or integral:
        if lo >= -32768 and hi <= 32767:
            return Storage(np.dtype("int16"), _ds(slope), _ds(inter), value_range=(real[0], real[1]), nan_fill=lo)
        if lo >= 0 and hi <= 65535:
            return Storage(np.dtype("uint16"), _ds(slope), _ds(inter), value_range=(real[0], real[1]), nan_fill=lo)
        if hi - lo <= 65535 and abs(lo) < 2 ** 53:
            offset = int(lo)
            intercept = inter + offset * slope
            if float(_ds(intercept)) == intercept:
                return Storage(np.dtype("uint16"), _ds(slope), _ds(intercept), offset=offset,
                               value_range=(real[0], real[1]), nan_fill=lo)
    # lossy: uint16 over [min, max] of the real values
    rlo, rhi = real
    step = (rhi - rlo) / 65535.0 if rhi > rlo else 1.0
    slope_text = _ds(step)
    while float(slope_text) < step:  # never round the step down: the top value must still fit
        step = np.nextafter(step, np.inf) if float(slope_text) == step else step * (1 + 1e-14)
        slope_text = _ds(step)
    inter_text = _ds(rlo)
    a, b = float(slope_text), float(inter_text)
    bound = a / 2.0 + abs(b - rlo) + 1e-12 * max(abs(rlo), abs(rhi), 1.0)
    if dtype.kind in "iu":
        warnings.warn(f"integer values span {hi - lo:.0f} steps, more than 16-bit DICOM pixels hold: requantised "
                      f"(each voxel within {bound:.4g} of its value)", UserWarning, stacklevel=3)
    return Storage(np.dtype("uint16"), slope_text, inter_text, exact=False, max_error=bound,
                   value_range=(rlo, rhi), quantise=True)


def encode_slice(slab2d: np.ndarray, volume: Volume, storage: Storage) -> bytes:
    """PixelData of one ``[i, j]`` slice under ``storage``: little-endian 16-bit, DICOM row order (``.T``)."""
    data = np.asarray(slab2d)
    if data.dtype.fields is not None:  # RGB: [i, j] of (R, G, B) -> rows of interleaved R, G, B bytes
        return np.ascontiguousarray(rgb_channels(data).transpose(1, 0, 2)).tobytes()
    if storage.quantise:
        real = data.astype(np.float64) * volume.slope + volume.intercept
        a, b = float(storage.slope), float(storage.intercept)
        real = np.where(np.isnan(real), b, real)
        values = np.clip(np.rint((real - b) / a), 0, 65535)
    else:
        values = np.where(np.isnan(data), storage.nan_fill, data) if data.dtype.kind == "f" else data
        if storage.offset:
            values = values.astype(np.int64) - storage.offset
    return np.ascontiguousarray(values.T).astype(storage.dtype.newbyteorder("<"), copy=False).tobytes()


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class PlaneGeometry:
    """DICOM Image Plane values of a volume (LPS+ mm).

    Attributes:
        orientation: ImageOrientationPatient (row cosine = ``i`` axis, column cosine = ``j`` axis).
        pixel_spacing: PixelSpacing (along ``j``, along ``i``).
        positions: ImagePositionPatient of every slice ``k`` (``nk x 3``).
        slice_spacing: distance between slices along the normal (SliceThickness, SpacingBetweenSlices).
        normal: unit slice normal ``cross(row, column)``.
    """

    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    positions: np.ndarray
    slice_spacing: float
    normal: np.ndarray


def plane_geometry(affine_ras: np.ndarray, n_slices: int) -> PlaneGeometry:
    """Image Plane values for a voxel -> RAS+ affine with ``n_slices`` slices (see the module doc)."""
    lps = ras_to_lps(affine_ras)
    origin, spacing, direction = geometry_from_affine(lps)
    row, col = direction[:, 0], direction[:, 1]
    if abs(float(np.dot(row, col))) > 1e-4:
        raise UnsupportedDataError("the volume's i and j axes are not perpendicular (in-plane shear), which "
                                   "DICOM images cannot represent; resample it onto an orthogonal grid first")
    normal = slice_normal(np.concatenate([row, col]))
    step = lps[:3, 2]
    positions = origin[np.newaxis, :] + np.arange(n_slices)[:, np.newaxis] * step[np.newaxis, :]
    return PlaneGeometry(orientation=tuple(float(v) for v in np.concatenate([row, col])),
                         pixel_spacing=(float(spacing[1]), float(spacing[0])), positions=positions,
                         slice_spacing=float(abs(np.dot(step, normal))), normal=normal)


def patient_orientation(orientation: Sequence[float]) -> tuple[str, str]:
    """PatientOrientation (0020,0020) letters of the row and column directions (PS3.3 C.7.6.1.1.1):
    L/R, P/A, H/F for LPS+ +x/-x, +y/-y, +z/-z, the largest component first (up to 3 letters when oblique)."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))

    def name(vector: Sequence[float]) -> str:
        v = np.asarray(vector, dtype=np.float64)
        order = np.argsort(-np.abs(v))
        return "".join(letters[a][0 if v[a] > 0 else 1] for a in order if abs(v[a]) > 1e-3) or "L"

    return name(orientation[:3]), name(orientation[3:])


# --------------------------------------------------------------------------- template
def template_attributes(template: str | Path, deidentify: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Patient/study identifiers and Frame of Reference of the first image series under ``template``.

    Returns ``{keyword: value}`` for :data:`TEMPLATE_KEYWORDS` present in the
    reference (de-identified first when ``deidentify`` is given, so the output
    carries only pseudonyms). Raises :class:`DicomError` when ``template`` holds no DICOM image.
    """
    return _read_template(template, deidentify)[0]


#: How far (mm) a volume may lie outside its template series' box before the writer warns.
TEMPLATE_MARGIN_MM = 10.0


def _slice_box(series: Any) -> np.ndarray | None:
    """``(2, 3)`` LPS+ min/max corner of the first and last slices of a classic ``series`` (None if unknown)."""
    corners = []
    for inst in (series.grid[0][0], series.grid[-1][0]):
        if inst.position is None or inst.orientation is None or not inst.pixel_spacing or series.kind != "slices":
            return None
        row, col = np.asarray(inst.orientation[:3], float), np.asarray(inst.orientation[3:], float)
        dj, di = inst.pixel_spacing
        for a in (0, inst.columns - 1):
            for b in (0, inst.rows - 1):
                corners.append(np.asarray(inst.position, float) + a * di * row + b * dj * col)
    points = np.asarray(corners)
    return np.stack([points.min(axis=0), points.max(axis=0)])


def _warn_if_apart(volume: Volume, box: np.ndarray | None, template: Path) -> None:
    """Warn when ``volume`` lies entirely outside the template series' box: it then probably is not in
    the template's scanner coordinates, and sharing its Frame of Reference would misplace it."""
    if box is None:
        return
    shape = np.asarray(volume.shape[:3]) - 1
    corners = np.array([[i, j, k] for i in (0, shape[0]) for j in (0, shape[1]) for k in (0, shape[2])], float)
    world = ras_to_lps_point(volume.world_coordinates(corners))
    lo, hi = world.min(axis=0), world.max(axis=0)
    if np.any(lo > box[1] + TEMPLATE_MARGIN_MM) or np.any(hi < box[0] - TEMPLATE_MARGIN_MM):
        warnings.warn(f"the volume lies outside the template series {template} in space (no overlap): the output "
                      "shares the template's Frame of Reference, which is right only if the volume is in that "
                      "scan's patient coordinates", UserWarning, stacklevel=3)


def reference_series_of(folder: Path, what: str) -> list[Any]:
    """The series (:class:`~convert.dicom.series.Series`) under a reference/template ``folder``: one scan.

    Raises:
        InputNotFoundError: ``folder`` does not exist (``what`` names it in the message).
        NoDicomError: no DICOM image in it.
    """
    from convert.dicom.scan import scan
    from convert.dicom.series import assemble
    from convert.errors import InputNotFoundError, NoDicomError

    if not folder.exists():
        raise InputNotFoundError(f"{what} not found; check the path", folder)
    result = scan(folder)
    if not result.instances:
        raise NoDicomError(folder, len(result.skipped))
    return assemble(result.instances)


def _read_template(template: str | Path, deidentify: Callable[[Any], Any] | None,
                   volume: Volume | None = None) -> tuple[dict[str, Any], int]:
    """(:func:`template_attributes`, the highest SeriesNumber under ``template`` or 0): one scan.
    With ``volume``, warn when it does not overlap the template series in space."""
    template = Path(template)
    series = reference_series_of(template, "template (reference DICOM series)")
    numbers = [s.series_number for s in series if s.series_number is not None]
    if volume is not None:
        _warn_if_apart(volume, _slice_box(series[0]), template)
    ds = series[0].first.load_header()
    if deidentify is not None:
        ds = deidentify(ds)
    out: dict[str, Any] = {}
    for keyword in TEMPLATE_KEYWORDS:
        value = ds.get(keyword)
        if value is not None and value != "":
            out[keyword] = value
    if "StudyInstanceUID" not in out:
        raise DicomError("template has no StudyInstanceUID; give a reference series from the target study",
                         series[0].first.path)
    return out, int(max(numbers)) if numbers else 0


# --------------------------------------------------------------------------- datasets
def _now() -> _dt.datetime:
    return _dt.datetime.now()


def _tm(moment: _dt.datetime) -> str:
    return moment.strftime("%H%M%S.%f")


def _modality_for(volume: Volume, modality: str | None) -> str:
    if volume.is_rgb:
        if modality and modality.upper() != "OT":
            raise UnsupportedDataError(f"a colour (RGB) volume is written as a Secondary Capture (--modality OT), "
                                       f"not as {modality.upper()}: CT and MR images hold one value per pixel")
        return "OT"
    chosen = (modality or volume.meta.modality or "OT").upper()
    if chosen not in SOP_CLASSES:
        if modality:
            raise ConvertError(f"modality '{modality}' cannot be written; choose one of: {', '.join(SOP_CLASSES)}")
        chosen = "OT"
    return chosen


def _windows(volume: Volume, storage: Storage) -> list[tuple[float, float]]:
    presets = [(float(c), float(w)) for c, w in volume.meta.window if w and w > 0]
    if presets:
        return presets
    if storage.value_range is not None:
        lo, hi = storage.value_range
    else:
        lo, hi, _integral, _nans = _stored_range(volume)
        lo, hi = sorted((lo * volume.slope + volume.intercept, hi * volume.slope + volume.intercept))
    return [((lo + hi) / 2.0, max(hi - lo, 1.0))]


def _base_dataset(volume: Volume, modality: str, storage: Storage, template: dict[str, Any], *,
                  series_description: str | None, series_number: int | None, moment: _dt.datetime) -> Any:
    """Attributes shared by every file of the series (everything but the per-slice ones)."""
    from pydicom.dataset import Dataset

    from convert.version import __version__

    ds = Dataset()
    date, time = moment.strftime("%Y%m%d"), _tm(moment)
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient (type 2: empty unless a template lends them)
    ds.PatientName = template.get("PatientName", "")
    ds.PatientID = fit_text(template.get("PatientID", ""), "LO")
    ds.PatientBirthDate = template.get("PatientBirthDate", "")
    ds.PatientSex = template.get("PatientSex", "")
    for keyword in ("IssuerOfPatientID", "PatientAge", "PatientWeight", "PatientSize"):
        if keyword in template:
            setattr(ds, keyword, template[keyword])
    # General Study
    ds.StudyInstanceUID = template.get("StudyInstanceUID") or new_uid()
    ds.StudyDate = template.get("StudyDate", date)
    ds.StudyTime = template.get("StudyTime", time)
    ds.ReferringPhysicianName = template.get("ReferringPhysicianName", "")
    ds.StudyID = fit_text(template.get("StudyID", ""), "SH")
    ds.AccessionNumber = fit_text(template.get("AccessionNumber", ""), "SH")
    if "StudyDescription" in template:
        ds.StudyDescription = fit_text(template["StudyDescription"], "LO")
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber = int(series_number) if series_number is not None else 1
    ds.SeriesDate, ds.SeriesTime = date, time
    description = series_description if series_description is not None else volume.meta.series_description
    ds.SeriesDescription = fit_text(description or "medconvert export", "LO")
    if modality in ("CT", "MR"):
        ds.PatientPosition = fit_text(template.get("PatientPosition", ""), "CS")
    if "BodyPartExamined" in template:
        ds.BodyPartExamined = fit_text(template["BodyPartExamined"], "CS")
    ds.Laterality = fit_text(template.get("Laterality", ""), "CS")  # type 2C: empty when not a paired part
    # Frame of Reference
    ds.FrameOfReferenceUID = template.get("FrameOfReferenceUID") or new_uid()
    ds.PositionReferenceIndicator = fit_text(template.get("PositionReferenceIndicator", ""), "LO")
    # General Equipment (the device that made these images: this software)
    ds.Manufacturer = "medconvert"
    ds.ManufacturerModelName = "medconvert"
    ds.SoftwareVersions = fit_text(__version__, "LO")
    # General Image
    ds.ImageType = ["DERIVED", "SECONDARY"] + (["AXIAL"] if modality == "CT" else ["OTHER"] if modality == "MR"
                                               else [])
    ds.ContentDate, ds.ContentTime = date, time
    derivation = "converted by medconvert " + __version__
    if not storage.exact:
        derivation += f"; values requantised to 16 bits (max error {storage.max_error:.3g})"
    ds.DerivationDescription = fit_text(derivation, "ST")
    ds.BurnedInAnnotation = "NO"
    # Image Pixel
    if volume.is_rgb:  # colour Secondary Capture: 8-bit R, G, B interleaved per pixel; no rescale, no window
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if storage.dtype.kind == "i" else 0
        # Rescale (CT Image / Modality LUT); MR only when the values need it
        scaled = (float(storage.slope), float(storage.intercept)) != (1.0, 0.0)
        if modality != "MR" or scaled:
            ds.RescaleIntercept = storage.intercept
            ds.RescaleSlope = storage.slope
            ds.RescaleType = "HU" if modality == "CT" else (fit_text(volume.meta.units, "LO") or "US")
        windows = _windows(volume, storage)
        ds.WindowCenter = [_ds(c) for c, _w in windows] if len(windows) > 1 else _ds(windows[0][0])
        ds.WindowWidth = [_ds(w) for _c, w in windows] if len(windows) > 1 else _ds(windows[0][1])
    acquisition = volume.meta.acquisition
    if modality == "CT":
        ds.KVP = ""
        ds.AcquisitionNumber = 1
    elif modality == "MR":
        ds.ScanningSequence = _enumerated(acquisition.get("ScanningSequence"), _SCANNING_SEQUENCES) or "RM"
        ds.SequenceVariant = _enumerated(acquisition.get("SequenceVariant"), _SEQUENCE_VARIANTS) or "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = fit_text(acquisition.get("MRAcquisitionType") or "", "CS")
        ds.RepetitionTime = _ms(acquisition.get("RepetitionTime"))
        ds.EchoTime = _ms(acquisition.get("EchoTime"))
        ds.EchoTrainLength = ""
        if isinstance(acquisition.get("MagneticFieldStrength"), (int, float)):
            ds.MagneticFieldStrength = _ds(acquisition["MagneticFieldStrength"])
        if isinstance(acquisition.get("FlipAngle"), (int, float)):
            ds.FlipAngle = _ds(acquisition["FlipAngle"])
        ds.AcquisitionNumber = 1
    else:
        ds.ConversionType = "WSD"  # SC Equipment: workstation
    if any(not str(element.value).isascii() for element in ds if element.VR in ("PN", "LO", "SH", "ST", "LT")):
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: a description or a template's name is not plain ASCII
    return ds


#: Enumerated values of MR ScanningSequence (0018,0020) and SequenceVariant (0018,0021), PS3.3 C.8.3.1.
_SCANNING_SEQUENCES = ("SE", "IR", "GR", "EP", "RM")
_SEQUENCE_VARIANTS = ("SK", "MTC", "SS", "TRSS", "SP", "MP", "OSP", "NONE")


def _enumerated(value: Any, allowed: Sequence[str]) -> list[str]:
    """The values of a multi-valued CS (a list, or text with backslashes, spaces or ``_`` between
    values, as sidecars spell them) that are among ``allowed``, in order; [] when none is."""
    parts = value if isinstance(value, (list, tuple)) else re.split(r"[\\\s_]+", str(value or ""))
    return [p for p in (str(v).strip().upper() for v in parts) if p in allowed]


def _ms(seconds: Any) -> str:
    return _ds(float(seconds) * 1000.0) if isinstance(seconds, (int, float)) else ""


def file_meta_for(sop_class: str, sop_instance: str) -> Any:
    """Complete File Meta Information for one object: explicit VR little endian, our implementation UID."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def iter_slice_datasets(volume: Volume, *, modality: str | None = None, template: dict[str, Any] | None = None,
                        series_description: str | None = None,
                        series_number: int | None = None) -> Iterator[Any]:
    """Every classic single-frame Dataset of ``volume``'s series (with file meta and pixel data), in
    InstanceNumber order, streaming one slab of slices at a time (see the module doc)."""
    from pydicom.dataset import Dataset

    shape = volume.shape
    if shape[0] > 65535 or shape[1] > 65535:
        raise UnsupportedDataError(f"slices of {shape[0]} x {shape[1]} voxels exceed DICOM's 65535 rows/columns")
    chosen = _modality_for(volume, modality)
    storage = RGB_STORAGE if volume.is_rgb else choose_storage(volume)
    geometry = plane_geometry(volume.affine, shape[2])
    nk, nt = shape[2], (shape[3] if len(shape) == 4 else 1)
    moment = _now()
    if nt > 1 and moment + _dt.timedelta(seconds=(volume.meta.time_step or 1.0) * nt) > moment.replace(
            hour=23, minute=59, second=59):
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)  # times stay within one day
    base = _base_dataset(volume, chosen, storage, template or {}, series_description=series_description,
                         series_number=series_number, moment=moment)
    base.Rows, base.Columns = shape[1], shape[0]
    base.ImageOrientationPatient = [_ds(v) for v in geometry.orientation]
    base.PixelSpacing = [_ds(v) for v in geometry.pixel_spacing]
    base.SliceThickness = _ds(geometry.slice_spacing)
    if chosen == "OT":  # Secondary Capture's IOD has no Image Plane module: orientation also as letters
        base.PatientOrientation = list(patient_orientation(geometry.orientation))
    base.SpacingBetweenSlices = _ds(geometry.slice_spacing)
    if nt > 1:
        base.NumberOfTemporalPositions = nt
    step = float(volume.meta.time_step or 1.0)
    for t, k0, k1, slab in iter_slabs(volume.array):
        acquired = moment + _dt.timedelta(seconds=step * t)
        for k in range(k0, k1):
            ds = Dataset(dict(base.items()))  # a new element dict (Dataset(base) would share it)
            instance = t * nk + k + 1
            ds.SOPInstanceUID = new_uid()
            ds.InstanceNumber = instance
            ds.ImagePositionPatient = [_ds(v) for v in geometry.positions[k]]
            ds.SliceLocation = _ds(float(np.dot(geometry.positions[k], geometry.normal)))
            if nt > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.AcquisitionTime = _tm(acquired)
            ds.PixelData = encode_slice(slab[:, :, k - k0], volume, storage)
            ds.file_meta = file_meta_for(ds.SOPClassUID, ds.SOPInstanceUID)
            yield ds


# --------------------------------------------------------------------------- writing
def write_series(volume: Volume, out_dir: str | Path, *, modality: str | None = None,
                 template: str | Path | None = None, enhanced: bool = False, overwrite: bool = False,
                 series_description: str | None = None, series_number: int | None = None,
                 deidentify: Callable[[Any], Any] | None = None) -> list[Path]:
    """Write ``volume`` as a DICOM series into the folder ``out_dir``; return the files written.

    Args:
        volume: a 3D or 4D volume (RAS+ affine, mm); a colour (RGB) one becomes an RGB Secondary Capture.
        out_dir: the output folder: created, or an existing empty one (a non-empty
            one only with ``overwrite``). Its parent folder must exist.
        modality: ``"CT"`` (CT Image Storage, HU), ``"MR"`` (MR Image Storage) or
            ``"OT"`` (Secondary Capture); default the volume's ``meta.modality`` if
            it is CT or MR, else OT.
        template: a reference DICOM series: patient/study identifiers and the
            Frame of Reference are copied from it (:data:`TEMPLATE_KEYWORDS`).
        enhanced: one multi-frame Legacy Converted Enhanced CT/MR file instead of
            one file per slice (built by highdicom; CT and MR only).
        series_description: of the new series (default: the volume's description, else
            "medconvert export").
        series_number: of the new series (default 1, or the template's highest number + 1000).
        deidentify: a function returning a de-identified copy of a pydicom
            Dataset, applied to the template's header before anything is copied.

    Raises:
        UnsupportedDataError: colour data as CT/MR, infinite values, in-plane shear, slices over 65535 voxels.
        OutputExistsError / OutputWriteError: the folder holds files, is a file, or cannot be written.
        DicomError: the template holds no DICOM image or no StudyInstanceUID.
    """
    out_dir = Path(out_dir)
    chosen = _modality_for(volume, modality)
    if enhanced and chosen == "OT":
        raise ConvertError("an enhanced (multi-frame) file is written for CT or MR only; give --modality CT or MR, "
                           "or drop --enhanced for a Secondary Capture series")
    attributes: dict[str, Any] = {}
    number = series_number
    if template is not None:
        attributes, highest = _read_template(template, deidentify, volume)
        if number is None:
            number = highest + 1000
    slices = iter_slice_datasets(volume, modality=chosen, template=attributes,
                                 series_description=series_description, series_number=number)
    written: list[Path] = []
    with atomic_folder(out_dir, overwrite=overwrite) as temp:
        if enhanced:
            enhanced_ds = _legacy_converted(list(slices), chosen)
            name = "MF0001.dcm"
            save_dataset(temp / name, enhanced_ds)
            written.append(out_dir / name)
        else:
            total = volume.shape[2] * (volume.shape[3] if len(volume.shape) == 4 else 1)
            width = max(4, len(str(total)))
            for ds in slices:
                name = f"IM{int(ds.InstanceNumber):0{width}d}.dcm"
                save_dataset(temp / name, ds)
                written.append(out_dir / name)
    return written


def save_dataset(path: Path, ds: Any) -> None:
    """Write one DICOM file (preamble, complete File Meta Information, explicit VR little endian)."""
    import pydicom

    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _legacy_converted(slices: Sequence[Any], modality: str) -> Any:
    """One Legacy Converted Enhanced CT/MR Image (highdicom's validated constructor) from classic slices."""
    try:
        from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConvertError("enhanced DICOM output needs the 'highdicom' package (pip install highdicom)") from exc
    if not slices:
        raise UnsupportedDataError("the volume has no slices")
    cls = LegacyConvertedEnhancedCTImage if modality == "CT" else LegacyConvertedEnhancedMRImage
    for ds in slices:  # enhanced Image Type: value 3 is the image flavour (VOLUME), value 4 NONE
        ds.ImageType = ["DERIVED", "SECONDARY", "VOLUME", "NONE"]
    first = slices[0]
    image = cls(legacy_datasets=list(slices), series_instance_uid=first.SeriesInstanceUID,
                series_number=int(first.SeriesNumber), sop_instance_uid=new_uid(), instance_number=1)
    # The classic slices were only the constructor's input, never stored: reference none of them.
    for frame in image.PerFrameFunctionalGroupsSequence:
        if "ConversionSourceAttributesSequence" in frame:
            del frame.ConversionSourceAttributesSequence
    if "ReferencedSeriesSequence" in image:
        del image.ReferencedSeriesSequence
    image.Laterality = first.get("Laterality", "")
    image.file_meta = file_meta_for(image.SOPClassUID, image.SOPInstanceUID)  # our implementation UID, not highdicom's
    organization = own_dimension_organization(image)
    n_times = int(first.get("NumberOfTemporalPositions", 1) or 1)
    if n_times > 1:
        _add_temporal_dimension(image, len(slices) // n_times, organization)
    return image


def own_dimension_organization(image: Any) -> str:
    """Give a highdicom-built multi-frame object a new 2.25 DimensionOrganizationUID (highdicom makes it
    under its own root; every UID we write is under 2.25). Returns the UID."""
    organization = new_uid()
    for item in list(image.get("DimensionOrganizationSequence", [])) + list(image.get("DimensionIndexSequence", [])):
        item.DimensionOrganizationUID = organization
    return organization


def _add_temporal_dimension(image: Any, n_slices: int, organization: str) -> None:
    """Index a 4D legacy-converted image by (in-stack position, temporal position), as Enhanced MR/CT do.

    highdicom's legacy conversion indexes frames by the converted InstanceNumber only, so readers
    such as dcm2niix would stack all frames as slices. Our InstanceNumber is ``t * n_slices + k + 1``.
    """
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    dimensions = []
    for pointer, label in (("InStackPositionNumber", "In-Stack Position"), ("TemporalPositionIndex",
                                                                           "Temporal Position Index")):
        item = Dataset()
        item.DimensionOrganizationUID = organization
        item.DimensionIndexPointer = Tag(pointer)
        item.FunctionalGroupPointer = Tag("FrameContentSequence")
        item.DimensionDescriptionLabel = label
        dimensions.append(item)
    image.DimensionIndexSequence = dimensions
    for frame in image.PerFrameFunctionalGroupsSequence:
        instance = int(frame.UnassignedPerFrameConvertedAttributesSequence[0].InstanceNumber)
        k, t = (instance - 1) % n_slices, (instance - 1) // n_slices
        content = frame.FrameContentSequence[0]
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        content.TemporalPositionIndex = t + 1
        content.DimensionIndexValues = [k + 1, t + 1]
