"""BIDS-style JSON sidecars and non-identifying :class:`~convert.volume.Meta` from DICOM headers.

Everything written here comes from an **allow-list** (:data:`SIDECAR_FIELDS`):
an attribute that is not listed is never copied, whatever it contains. Patient
identifying attributes (names, IDs, dates and times, institution, station,
physicians, UIDs, device serial number) are only added with
``include_phi=True`` (:data:`PHI_FIELDS`).

Units follow BIDS: seconds for ``EchoTime``, ``RepetitionTime``,
``InversionTime`` and ``SliceTiming`` (DICOM stores milliseconds), degrees for
``FlipAngle``, mm for lengths, Tesla for ``MagneticFieldStrength``.

``PhaseEncodingDirection`` is relative to **our** voxel axes: ``i`` runs along a
DICOM row (``InPlanePhaseEncodingDirection == "ROW"``), ``j`` down the columns
(``"COL"``); a trailing ``-`` means the phase encoding runs towards decreasing
index. The sign comes from Siemens ``PhaseEncodingDirectionPositive`` (CSA
header, or the XA enhanced private field) or from GE's raw header block
(:func:`convert.dicom.ge.ge_phase_positive`); when no polarity is known only
``PhaseEncodingAxis`` is written. GE SliceTiming comes from
:func:`convert.dicom.ge.ge_slice_timing` (per-slice TriggerTime, else the
protocol block's slice order). Note that dcm2niix flips the row order of its
NIfTI output, so its ``j``/``j-`` are the opposite of ours for the same
acquisition; both describe the same direction in world space.

Values of enhanced (multi-frame) objects are looked up in the dataset, then in
the first frame's functional groups, then in the shared functional groups.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pydicom is imported by whoever reads the headers, not here (see _is_multi)
    from pydicom.dataset import Dataset

from convert.atomic import atomic_file
from convert.dicom import csa
from convert.dicom.ge import ge_phase_positive, ge_slice_timing, is_ge
from convert.dicom.header import dicom_time_seconds, is_multi
from convert.version import __version__
from convert.geometry import geometry_from_affine, lps_to_ras_point
from convert.volume import Meta, Volume

__all__ = [
    "DESCRIPTOR_KEYS",
    "PHI_FIELDS",
    "PHI_KEYS",
    "SIDECAR_FIELDS",
    "SIDECAR_KEYS",
    "build_sidecar",
    "csa_image_header",
    "find_value",
    "meta_from_dataset",
    "phase_encoding_direction",
    "readout_timing",
    "diffusion_table",
    "fsl_bvecs",
    "write_bval_bvec",
    "sidecar_for_affine",
    "write_sidecar",
]


# --------------------------------------------------------------------------- value helpers
def _str(value: Any) -> str | None:
    if value is None:
        return None
    if is_multi(value):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    return text or None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if is_multi(value):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    if number is None or number != int(number):
        return None
    return int(number)


def _ms_to_s(value: Any) -> float | None:
    number = _float(value)
    return None if number is None else round(number / 1000.0, 9)


def _float_list(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    values = value if is_multi(value) else [value]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if out and all(math.isfinite(v) for v in out) else None


def _str_list(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    values = value if is_multi(value) else [value]
    out = [str(v).strip() for v in values]
    return out or None


def _phase_axis(value: Any) -> str | None:
    text = _str(value)
    if text is None:
        return None
    text = text.upper()
    if text.startswith("ROW"):
        return "ROW"
    if text.startswith("COL"):
        return "COL"
    return None


# --------------------------------------------------------------------------- lookup
_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


def _search_order(item: Dataset, depth: int) -> list[Dataset]:
    """``item`` and the first items of the standard (non-private) sequences nested in it, down to
    ``depth`` levels, in the order :func:`find_value` looks in them: an item before the items of its
    sequences, those in element order (depth first)."""
    nodes = [item]
    if depth > 0:
        for element in item:
            if element.VR == "SQ" and not element.tag.is_private and element.value:
                nodes.extend(_search_order(element.value[0], depth - 1))
    return nodes


#: ``(data set, frame, items)``: the items :func:`find_value` searched in for the last data set and frame
#: asked (one entry: a sidecar asks about one header at a time, many keywords each). Replaced as a whole,
#: never changed in place, so threads building sidecars at once (a Dask worker's) each see one entry.
_last_order: tuple[Any, Any, list[Any]] = (None, None, [])


def _frame_items(ds: Dataset, frame: int | None) -> list[Dataset]:
    """The functional group items of frame ``frame`` (default the first) then the shared ones, each
    with its nested standard sequences (:func:`_search_order`, two levels); empty for a classic header."""
    global _last_order
    last = _last_order
    if last[0] is ds and last[1] == frame:
        return last[2]
    nodes: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        index = frame if frame is not None and 0 <= frame < len(per_frame) else 0
        nodes += _search_order(per_frame[index], 2)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        nodes += _search_order(shared[0], 2)
    _last_order = (ds, frame, nodes)
    return nodes


def _forget_frame_items() -> None:
    """Drop the entry of :func:`_frame_items` (and the data set it holds)."""
    global _last_order
    _last_order = (None, None, [])


def find_value(ds: Dataset, keyword: str, frame: int | None = None) -> Any:
    """Value of DICOM attribute ``keyword`` for ``ds`` (enhanced objects too), or None.

    Looks at the top level, then in the functional groups of frame ``frame``
    (0-based; default the first frame; per-frame values are the more specific),
    then in the shared functional groups, each down to two sequence levels.
    Private sequences are never searched.
    """
    for item in (ds, *_frame_items(ds, frame)):
        if keyword in item:
            value = item[keyword].value
            if value is not None and value != "":
                return value
    return None


def csa_image_header(ds: Dataset) -> dict[str, Any] | None:
    """Parsed Siemens CSA Image Header Info (0029,xx10) as ``{name: value}``, or None.

    Values are scalars (one item) or lists (several items); numbers are float/int.
    See :func:`convert.dicom.csa.image_header` (nibabel's reading rules, without nibabel);
    a broken CSA header gives None.
    """
    return csa.image_header(ds)


def _siemens_xa_phase_positive(ds: Dataset) -> int | None:
    """Siemens XA enhanced: PhaseEncodingDirectionPositive in private group (0021,11FE) of frame 1."""
    for groups in _FUNCTIONAL_GROUPS:
        seq = ds.get(groups)
        if not seq:
            continue
        item = seq[0]
        for element in item:
            if element.tag.is_private and element.VR == "SQ" and element.value:
                inner = element.value[0]
                try:
                    block = inner.private_block(0x0021, "SIEMENS MR SDI 02")
                    value = block[0x1C].value
                except (KeyError, ValueError):
                    continue
                parsed = _int(value)
                if parsed in (0, 1):
                    return parsed
    return None


def phase_encoding_direction(ds: Dataset) -> tuple[str | None, str | None]:
    """``(PhaseEncodingDirection, PhaseEncodingAxis)`` for our ``[i, j]`` axes.

    ``ROW`` -> ``i`` and ``COL`` -> ``j``; the direction gets a sign (``"j-"``) only
    when the polarity is known (Siemens CSA ``PhaseEncodingDirectionPositive``,
    the XA enhanced equivalent, or GE's raw header block), otherwise it is None
    and only the axis is given.
    """
    axis_dicom = _phase_axis(find_value(ds, "InPlanePhaseEncodingDirection"))
    if axis_dicom is None:
        return None, None
    axis = "i" if axis_dicom == "ROW" else "j"
    positive: int | None = None
    csa = csa_image_header(ds)
    if csa is not None:
        positive = _int(csa.get("PhaseEncodingDirectionPositive"))
    if positive is None:
        positive = _siemens_xa_phase_positive(ds)
    if positive is None:
        positive = ge_phase_positive(ds)
    if positive not in (0, 1):
        return None, axis
    return (axis if positive == 1 else axis + "-"), axis


# --------------------------------------------------------------------------- readout timing
def _private_value(ds: Dataset, group: int, creator: str, element: int, *, frame_groups: bool = False) -> Any:
    """Value of private element (group, creator, element) at the top level or, with
    ``frame_groups``, inside the private sequences of the first frame's / shared functional groups."""
    items: list[Dataset] = [ds]
    if frame_groups:
        for groups in _FUNCTIONAL_GROUPS:
            seq = ds.get(groups)
            if seq:
                items.extend(el.value[0] for el in seq[0]
                             if el.tag.is_private and el.VR == "SQ" and el.value)
    for item in items:
        try:
            return item.private_block(group, creator)[element].value
        except (KeyError, ValueError):
            continue
    return None


def _bandwidth_per_pixel_phase_encode(ds: Dataset) -> float | None:
    """Siemens BandwidthPerPixelPhaseEncode (Hz/pixel): CSA header, else the XA private field."""
    csa = csa_image_header(ds)
    value = _float(csa.get("BandwidthPerPixelPhaseEncode")) if csa else None
    if value is None:
        value = _float(_private_value(ds, 0x0021, "SIEMENS MR SDI 02", 0x53, frame_groups=True))
    return value if value and value > 0 else None


def _recon_matrix_pe(ds: Dataset, axis: str | None, volume: Volume | None) -> int | None:
    """Reconstructed matrix size along the phase-encoding axis (voxels)."""
    if axis is None:
        return None
    if volume is not None:
        return int(volume.shape[0 if axis == "i" else 1])
    if "MOSAIC" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
        return None  # the tile size is only known after unpacking
    value = ds.get("Columns" if axis == "i" else "Rows")
    return int(value) if value else None


def readout_timing(ds: Dataset, volume: Volume | None = None) -> dict[str, Any]:
    """EffectiveEchoSpacing and TotalReadoutTime (seconds) when the vendor tags allow them.

    * Siemens: ``1 / (BandwidthPerPixelPhaseEncode * ReconMatrixPE)`` (CSA header or
      XA private field; the bandwidth already includes in-plane acceleration).
    * GE: private "Effective echo spacing" (0043,xx2C, microseconds), only when
      the ASSET R factors (0043,xx83) are absent or 1 (no guessing of the
      acceleration convention).

    ``TotalReadoutTime = EffectiveEchoSpacing * (ReconMatrixPE - 1)``, the BIDS definition.
    """
    _, axis = phase_encoding_direction(ds)
    matrix = _recon_matrix_pe(ds, axis, volume)
    if not matrix or matrix < 2:
        return {}
    out: dict[str, Any] = {}
    spacing: float | None = None
    bandwidth = _bandwidth_per_pixel_phase_encode(ds)
    if bandwidth is not None:
        out["BandwidthPerPixelPhaseEncode"] = bandwidth
        spacing = 1.0 / (bandwidth * matrix)
    else:
        ge_spacing = _float(_private_value(ds, 0x0043, "GEMS_PARM_01", 0x2C))
        factors = _float_list(_private_value(ds, 0x0043, "GEMS_PARM_01", 0x83))
        if ge_spacing and ge_spacing > 0 and (factors is None or all(f == 1 for f in factors)):
            spacing = ge_spacing * 1e-6
    if spacing is None:
        return {}
    out["ReconMatrixPE"] = matrix
    out["EffectiveEchoSpacing"] = round(spacing, 9)
    out["TotalReadoutTime"] = round(spacing * (matrix - 1), 9)
    return out


# --------------------------------------------------------------------------- field tables
Converter = Callable[[Any], Any]

#: Allow-listed sidecar fields: (BIDS key, DICOM keywords tried in order, converter).
SIDECAR_FIELDS: tuple[tuple[str, tuple[str, ...], Converter], ...] = (
    ("Modality", ("Modality",), _str),
    ("Manufacturer", ("Manufacturer",), _str),
    ("ManufacturersModelName", ("ManufacturerModelName",), _str),
    ("SoftwareVersions", ("SoftwareVersions",), _str),
    ("MagneticFieldStrength", ("MagneticFieldStrength",), _float),
    ("ImagingFrequency", ("ImagingFrequency", "TransmitterFrequency"), _float),
    ("BodyPart", ("BodyPartExamined",), _str),
    ("PatientPosition", ("PatientPosition",), _str),
    ("MRAcquisitionType", ("MRAcquisitionType",), _str),
    ("SeriesDescription", ("SeriesDescription",), _str),
    ("ProtocolName", ("ProtocolName",), _str),
    ("ScanningSequence", ("ScanningSequence",), _str),
    ("SequenceVariant", ("SequenceVariant",), _str),
    ("ScanOptions", ("ScanOptions",), _str),
    ("SequenceName", ("SequenceName", "PulseSequenceName"), _str),
    ("ImageType", ("ImageType",), _str_list),
    ("SeriesNumber", ("SeriesNumber",), _int),
    ("AcquisitionNumber", ("AcquisitionNumber",), _int),
    ("SliceThickness", ("SliceThickness",), _float),
    ("SpacingBetweenSlices", ("SpacingBetweenSlices",), _float),
    ("EchoNumber", ("EchoNumbers",), _int),
    ("EchoTime", ("EchoTime", "EffectiveEchoTime"), _ms_to_s),
    ("RepetitionTime", ("RepetitionTime",), _ms_to_s),
    ("InversionTime", ("InversionTime",), _ms_to_s),
    ("FlipAngle", ("FlipAngle",), _float),
    ("EchoTrainLength", ("EchoTrainLength",), _int),
    ("PercentPhaseFOV", ("PercentPhaseFieldOfView",), _float),
    ("PercentSampling", ("PercentSampling",), _float),
    ("PixelBandwidth", ("PixelBandwidth",), _float),
    ("ImageOrientationPatientDICOM", ("ImageOrientationPatient",), _float_list),
    ("InPlanePhaseEncodingDirectionDICOM", ("InPlanePhaseEncodingDirection",), _phase_axis),
    ("ConvolutionKernel", ("ConvolutionKernel",), _str),
    ("KVP", ("KVP",), _float),
    ("XRayTubeCurrent", ("XRayTubeCurrent",), _float),
    ("ExposureTime", ("ExposureTime",), _ms_to_s),
    ("ReconstructionDiameter", ("ReconstructionDiameter",), _float),
    ("GantryDetectorTilt", ("GantryDetectorTilt",), _float),
    ("Units", ("Units",), _str),
    ("DecayCorrection", ("DecayCorrection",), _str),
    ("AttenuationCorrectionMethod", ("AttenuationCorrectionMethod",), _str),
    ("ReconstructionMethod", ("ReconstructionMethod",), _str),
    ("DiffusionBValue", ("DiffusionBValue",), _float),
)

#: Identifying fields, only written with ``include_phi=True``: (key, DICOM keywords, converter).
PHI_FIELDS: tuple[tuple[str, tuple[str, ...], Converter], ...] = (
    ("PatientName", ("PatientName",), _str),
    ("PatientID", ("PatientID",), _str),
    ("OtherPatientIDs", ("OtherPatientIDs",), _str),
    ("PatientBirthDate", ("PatientBirthDate",), _str),
    ("PatientSex", ("PatientSex",), _str),
    ("PatientAge", ("PatientAge",), _str),
    ("PatientWeight", ("PatientWeight",), _float),
    ("PatientSize", ("PatientSize",), _float),
    ("AccessionNumber", ("AccessionNumber",), _str),
    ("StudyID", ("StudyID",), _str),
    ("StudyDescription", ("StudyDescription",), _str),
    ("StudyDate", ("StudyDate",), _str),
    ("StudyTime", ("StudyTime",), _str),
    ("SeriesDate", ("SeriesDate",), _str),
    ("SeriesTime", ("SeriesTime",), _str),
    ("AcquisitionDate", ("AcquisitionDate",), _str),
    ("AcquisitionTime", ("AcquisitionTime",), _str),
    ("AcquisitionDateTime", ("AcquisitionDateTime", "FrameAcquisitionDateTime"), _str),
    ("ContentDate", ("ContentDate",), _str),
    ("ContentTime", ("ContentTime",), _str),
    ("InstitutionName", ("InstitutionName",), _str),
    ("InstitutionAddress", ("InstitutionAddress",), _str),
    ("InstitutionalDepartmentName", ("InstitutionalDepartmentName",), _str),
    ("StationName", ("StationName",), _str),
    ("DeviceSerialNumber", ("DeviceSerialNumber",), _str),
    ("ReferringPhysicianName", ("ReferringPhysicianName",), _str),
    ("PerformingPhysicianName", ("PerformingPhysicianName",), _str),
    ("OperatorsName", ("OperatorsName",), _str),
    ("StudyInstanceUID", ("StudyInstanceUID",), _str),
    ("SeriesInstanceUID", ("SeriesInstanceUID",), _str),
    ("SOPInstanceUID", ("SOPInstanceUID",), _str),
    ("FrameOfReferenceUID", ("FrameOfReferenceUID",), _str),
)

#: Keys computed by us (not copied from one attribute).
DERIVED_KEYS: frozenset[str] = frozenset(
    {"PhaseEncodingDirection", "PhaseEncodingAxis", "SliceTiming", "ConversionSoftware",
     "ConversionSoftwareVersion", "BandwidthPerPixelPhaseEncode", "EffectiveEchoSpacing",
     "TotalReadoutTime", "ReconMatrixPE", "SliceEncodingDirection"}
) | frozenset(
    # Philips MR scaling, as dcm2niix names it (numbers; set by the readers, see
    # convert.dicom.pixels.philips_scaling_fields): which values were written, and the factors
    {"PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope", "UsePhilipsFloatNotDisplayScaling"}
)

#: Every key a sidecar may hold without ``include_phi``.
SIDECAR_KEYS: frozenset[str] = frozenset(key for key, _, _ in SIDECAR_FIELDS) | DERIVED_KEYS

#: Every key ``include_phi=True`` may add.
PHI_KEYS: frozenset[str] = frozenset(key for key, _, _ in PHI_FIELDS)

#: Acquisition keys copied into ``Meta.acquisition`` (the allow-list minus descriptive text
#: already held in dedicated Meta fields).
_META_SKIP = {"Modality", "Manufacturer", "SeriesDescription"}


def _collect(ds: Dataset, table: Sequence[tuple[str, tuple[str, ...], Converter]]) -> Iterator[tuple[str, Any]]:
    for key, keywords, convert in table:
        for keyword in keywords:
            value = convert(find_value(ds, keyword))
            if value is not None:
                yield key, value
                break


# --------------------------------------------------------------------------- timing
def mosaic_slice_timing(ds: Dataset) -> list[float] | None:
    """Siemens CSA ``MosaicRefAcqTimes`` in seconds (one per mosaic slice, acquisition k order)."""
    csa = csa_image_header(ds)
    if not csa:
        return None
    times = _float_list(csa.get("MosaicRefAcqTimes"))
    if not times or len(times) < 2:
        return None
    n = _int(csa.get("NumberOfImagesInMosaic"))
    if n:
        times = times[:n]
    return [round(t / 1000.0, 6) for t in times]


def _mosaic_timing_of_series(datasets: Sequence[Dataset], limit: int = 10) -> list[float] | None:
    """Per-slice most frequent MosaicRefAcqTimes over the first ``limit`` volumes (seconds).

    Siemens quantises the times (2.5 ms steps) and single volumes differ by one
    step; the most common value per slice is the typical one (ties: the first
    volume's), and it is always a value the scanner actually wrote.
    """
    first = mosaic_slice_timing(datasets[0]) if len(datasets) else None
    if first is None:  # not a mosaic: no more headers to read
        return None
    per_volume = [first] + [t for t in (mosaic_slice_timing(ds) for ds in datasets[1:limit]) if t is not None]
    if not per_volume:
        return None
    n = len(per_volume[0])
    per_volume = [t for t in per_volume if len(t) == n]
    timing = []
    for k in range(n):
        values = [t[k] for t in per_volume]
        timing.append(max(values, key=lambda v: (values.count(v), -values.index(v))))
    return timing


#: One slice's timing inputs: (ImagePositionPatient, LPS+ mm; AcquisitionTime, seconds since
#: midnight; TriggerTime, ms), each None when absent. The scan keeps them for every file
#: (:class:`convert.dicom.scan.Instance`), so a sidecar needs no per-slice header read.
SliceTime = tuple[Sequence[float] | None, float | None, float | None]


def slice_times_of(datasets: Sequence[Dataset]) -> list[SliceTime]:
    """:data:`SliceTime` of each header (for callers that hold headers, not scan instances)."""
    return [(_float_list(ds.get("ImagePositionPatient")), dicom_time_seconds(_str(ds.get("AcquisitionTime"))),
             _float(ds.get("TriggerTime"))) for ds in datasets]


def _timing_from_slices(slices: Sequence[SliceTime], volume: Volume, tr: float | None) -> list[float] | None:
    """Relative per-slice times (s) of a 2D MR series from AcquisitionTime (else TriggerTime).

    Independent of the order of ``slices``: each is placed at its k by mapping its
    ImagePositionPatient through the volume's affine; a slice's time is its
    earliest (the first time point). None when any slice lacks a time or
    position, when every slice has the same time, or when the spread reaches the
    repetition time (then the times do not describe one volume).
    """
    nk = volume.shape[2]
    if nk < 2:
        return None
    use_trigger = any(acquisition is None for _, acquisition, _ in slices)
    inverse = np.linalg.inv(volume.affine)
    times: dict[int, float] = {}
    for position, acquisition, trigger in slices:
        if position is None or len(position) != 3:
            return None
        if use_trigger:
            seconds = None if trigger is None else trigger / 1000.0
        else:
            seconds = acquisition
        if seconds is None:
            return None
        k_float = float((inverse @ np.append(lps_to_ras_point(position), 1.0))[2])
        k = int(round(k_float))
        if abs(k_float - k) > 0.1 or not 0 <= k < nk:
            return None  # the header does not sit on this volume's slices
        times[k] = min(seconds, times.get(k, seconds))
    if len(times) != nk:
        return None
    start = min(times.values())
    rel = [round(times[k] - start, 6) for k in range(nk)]
    if max(rel) <= 0 or (tr is not None and max(rel) >= tr):
        return None
    return rel


# --------------------------------------------------------------------------- public API
def meta_from_dataset(ds: Dataset) -> Meta:
    """Allow-listed, non-identifying :class:`Meta` for a DICOM header.

    * ``modality``, ``manufacturer``, ``series_description`` from the header;
    * ``units``: ``"HU"`` for CT (modality CT or RescaleType HU), the PET
      ``Units`` (e.g. ``"BQML"``), else None;
    * ``window``: ``(center, width)`` presets in real (rescaled) units, from
      WindowCenter/WindowWidth (or the enhanced FrameVOILUTSequence);
    * ``acquisition``: allow-listed fields with BIDS names and units (seconds,
      degrees, mm, Tesla), see :data:`SIDECAR_FIELDS`.

    Never contains names, IDs, dates, institution or UIDs.
    """
    fields = dict(_collect(ds, SIDECAR_FIELDS))
    modality = fields.get("Modality")
    rescale_type = _str(find_value(ds, "RescaleType"))
    units: str | None = None
    if (modality or "").upper() == "CT" or (rescale_type or "").upper() == "HU":
        units = "HU"
    elif (modality or "").upper() == "PT" and fields.get("Units"):
        units = str(fields["Units"])
    centers = _float_list(find_value(ds, "WindowCenter")) or []
    widths = _float_list(find_value(ds, "WindowWidth")) or []
    window = tuple((c, w) for c, w in zip(centers, widths) if w > 0)
    direction, axis = phase_encoding_direction(ds)
    acquisition = {k: v for k, v in fields.items() if k not in _META_SKIP}
    if direction:
        acquisition["PhaseEncodingDirection"] = direction
    if axis:
        acquisition["PhaseEncodingAxis"] = axis
    timing = mosaic_slice_timing(ds)
    if timing:
        acquisition["SliceTiming"] = timing
    return Meta(
        modality=modality,
        manufacturer=fields.get("Manufacturer"),
        series_description=fields.get("SeriesDescription"),
        units=units,
        window=window,
        acquisition=acquisition,
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # tiny factors (e.g. PhilipsScaleSlope 8.44864e-06): 9 significant digits
            return float(f"{value:.9g}")
        return round(value, 9)
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    return value


#: Free-text descriptors an operator types (kept by default, dropped with ``descriptions=False``).
DESCRIPTOR_KEYS: frozenset[str] = frozenset({"SeriesDescription", "ProtocolName"})


def build_sidecar(
    datasets: Sequence[Dataset],
    volume: Volume | None = None,
    *,
    include_phi: bool = False,
    descriptions: bool = True,
    slice_times: Sequence[SliceTime] | None = None,
) -> dict[str, Any]:
    """BIDS-style JSON dict for a series.

    Args:
        datasets: the series' headers in volume slice order (first = first
            slice); for an enhanced object, its one dataset.
        volume: the converted volume; volume-specific fields its reader put in
            ``meta.acquisition`` (e.g. the echo time of one echo of an enhanced
            file, SliceTiming) override header values (a None value removes
            the field), and SliceTiming of a 2D
            acquisition is derived from the first ``nk`` headers' AcquisitionTime.
        include_phi: also add identifying fields (:data:`PHI_FIELDS`). Default
            False: the result holds only :data:`SIDECAR_KEYS`.
        descriptions: keep the free-text descriptors SeriesDescription and
            ProtocolName (default, as BIDS and dcm2niix do). They are typed by
            operators and can hold a patient's name; pass False when the DICOM
            was not de-identified with "clean descriptors" first. Ignored with
            ``include_phi=True``.
        slice_times: each slice's :data:`SliceTime` (from the scan's instances) for the
            SliceTiming of a classic 2D series; default: read from ``datasets`` (every
            header, which for a long 4D run means reading every file's header).

    Returns:
        A JSON-serialisable dict; times in seconds, angles in degrees, lengths in mm.
    """
    if not datasets:
        raise ValueError("build_sidecar needs at least one dataset")
    first = datasets[0]
    sidecar: dict[str, Any] = dict(_collect(first, SIDECAR_FIELDS))
    direction, axis = phase_encoding_direction(first)
    if direction:
        sidecar["PhaseEncodingDirection"] = direction
    elif axis:
        sidecar["PhaseEncodingAxis"] = axis
    if sidecar.get("Modality") == "MR":
        sidecar.update(readout_timing(first, volume))
    timing = _mosaic_timing_of_series(datasets)
    slice_timing = None
    if timing is None and volume is not None and len(datasets) > 1 and sidecar.get("Modality") == "MR":
        if str(sidecar.get("MRAcquisitionType", "")).upper() != "3D":
            if is_ge(first):  # GE: per-slice TriggerTime or the protocol block (convert.dicom.ge)
                slice_timing = ge_slice_timing(datasets, volume.affine, volume.shape[2],
                                               sidecar.get("RepetitionTime"), slice_times)
            else:
                slices = slice_times if slice_times is not None else slice_times_of(datasets)
                slice_timing = _timing_from_slices(slices, volume, sidecar.get("RepetitionTime"))
    if timing or slice_timing:
        sidecar["SliceTiming"] = timing or slice_timing
    if volume is not None:
        for key, value in volume.meta.acquisition.items():
            if key in SIDECAR_KEYS:
                if value is None:  # the volume says "not applicable" (e.g. EchoTime of a field map)
                    sidecar.pop(key, None)
                else:
                    sidecar[key] = value
        if "PhaseEncodingDirection" in sidecar:
            sidecar.pop("PhaseEncodingAxis", None)
        if volume.meta.units and "Units" not in sidecar and sidecar.get("Modality") == "MR":
            sidecar["Units"] = volume.meta.units  # e.g. "Hz" for a field map (BIDS fmap Units)
        if timing or slice_timing:  # the series' own timing beats the one in the volume's meta
            sidecar["SliceTiming"] = timing or slice_timing
    if include_phi:
        sidecar.update(_collect(first, PHI_FIELDS))
    sidecar["ConversionSoftware"] = "medconvert"
    sidecar["ConversionSoftwareVersion"] = __version__
    if not include_phi:
        allowed = SIDECAR_KEYS if descriptions else SIDECAR_KEYS - DESCRIPTOR_KEYS
        sidecar = {k: v for k, v in sidecar.items() if k in allowed}
    _forget_frame_items()  # the header is not held past its sidecar
    return _json_ready(sidecar)


#: Derived keys a de-identified sidecar may take from the *original* headers: each is a
#: number, a list of numbers or a voxel-axis code computed from vendor private data
#: (Siemens CSA, GE raw header/protocol block) or per-slice times that de-identification
#: removes. None can carry text, so none can carry PHI (checked value by value).
ACQUISITION_DERIVED_KEYS: frozenset[str] = frozenset(
    {"PhaseEncodingDirection", "PhaseEncodingAxis", "SliceTiming", "BandwidthPerPixelPhaseEncode",
     "EffectiveEchoSpacing", "TotalReadoutTime", "ReconMatrixPE", "SliceEncodingDirection"}
)

_AXIS_CODE = re.compile(r"^[ijk]-?$")


def _numeric_or_axis(value: Any) -> bool:
    """True for a finite number, a non-empty list of finite numbers, or a BIDS axis code (``i``..``k-``)."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if isinstance(value, str):
        return bool(_AXIS_CODE.match(value))
    if isinstance(value, (list, tuple)):
        return bool(value) and all(number(x) for x in value)
    return number(value)


def deidentified_sidecar(
    original: Sequence[Dataset],
    deidentified: Sequence[Dataset],
    volume: Volume | None = None,
    *,
    slice_times: Sequence[SliceTime] | None = None,
) -> dict[str, Any]:
    """Sidecar for a de-identified conversion (``convert --anonymize``).

    Every field comes from the de-identified headers (``deidentified``, same
    order as ``original``), except the acquisition timing/encoding keys of
    :data:`ACQUISITION_DERIVED_KEYS` (SliceTiming, PhaseEncodingDirection,
    EffectiveEchoSpacing, ...): de-identification removes the private blocks and
    per-slice times they are computed from, yet the results are numbers (seconds,
    Hz, voxel counts) or axis codes that identify no one, and fMRI/DWI users need
    them. Such a value is taken from ``original`` only when it is numeric or an
    axis code (never text) and the de-identified sidecar lacks the key.
    ``slice_times``: as for :func:`build_sidecar` (positions and times are numbers:
    only relative slice times, never the times of day, reach the sidecar).
    """
    clean = build_sidecar(deidentified, volume, slice_times=slice_times)
    derived = build_sidecar(original, volume, descriptions=False, slice_times=slice_times)
    for key in sorted(ACQUISITION_DERIVED_KEYS):
        value = derived.get(key)
        if key not in clean and value is not None and _numeric_or_axis(value):
            clean[key] = value
    if "PhaseEncodingDirection" in clean:
        clean.pop("PhaseEncodingAxis", None)
    return clean


def _axis_map(source_affine: np.ndarray, target_affine: np.ndarray) -> dict[int, tuple[int, int]] | None:
    """For each source voxel axis: (target axis, +1/-1) pointing the same/opposite way in the world.

    None when the target grid is not a permutation/flip of the source grid (oblique resampling).
    """
    src = geometry_from_affine(source_affine)[2]  # unit axes
    dst = geometry_from_affine(target_affine)[2]
    cosines = src.T @ dst  # [source axis, target axis]
    mapping: dict[int, tuple[int, int]] = {}
    for a in range(3):
        b = int(np.argmax(np.abs(cosines[a])))
        if abs(abs(cosines[a, b]) - 1.0) > 1e-4:
            return None
        mapping[a] = (b, 1 if cosines[a, b] > 0 else -1)
    if len({b for b, _ in mapping.values()}) != 3:
        return None
    return mapping


def sidecar_for_affine(sidecar: Mapping[str, Any], source_affine: np.ndarray,
                       target_affine: np.ndarray) -> dict[str, Any]:
    """Re-express the voxel-axis fields of ``sidecar`` for a reoriented image.

    ``PhaseEncodingDirection``/``PhaseEncodingAxis`` and ``SliceTiming`` refer
    to voxel axes; after a reorientation (axes permuted or flipped, e.g. to
    RAS) they must follow the axes. Letters are mapped to the target axis that
    points the same way in the world (``-`` added/removed on a flip);
    SliceTiming is reversed when k is flipped, or gets a ``SliceEncodingDirection``
    when the slice axis moved. When the target grid is not a permutation/flip
    of the source (oblique resampling), these fields are dropped.
    """
    out = dict(sidecar)
    mapping = _axis_map(source_affine, target_affine)
    letters = "ijk"
    if mapping is None:
        for key in ("PhaseEncodingDirection", "PhaseEncodingAxis", "SliceTiming", "SliceEncodingDirection"):
            out.pop(key, None)
        return out
    direction = out.get("PhaseEncodingDirection")
    if isinstance(direction, str) and direction[:1] in letters:
        b, sign = mapping[letters.index(direction[0])]
        sign *= -1 if direction.endswith("-") else 1
        out["PhaseEncodingDirection"] = letters[b] + ("-" if sign < 0 else "")
    axis = out.get("PhaseEncodingAxis")
    if isinstance(axis, str) and axis[:1] in letters:
        out["PhaseEncodingAxis"] = letters[mapping[letters.index(axis[0])][0]]
    timing = out.get("SliceTiming")
    if isinstance(timing, list):
        b, sign = mapping[2]
        if b == 2:
            out["SliceTiming"] = list(timing) if sign > 0 else list(reversed(timing))
        else:
            out["SliceEncodingDirection"] = letters[b] + ("-" if sign < 0 else "")
    return out


# --------------------------------------------------------------------------- diffusion
# The gradient-table rules live in convert.dicom.diffusion (one implementation); re-exported here.
from convert.dicom.diffusion import diffusion_table, fsl_bvecs, write_bval_bvec  # noqa: E402


def write_sidecar(path: Path, sidecar: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``sidecar`` as JSON (sorted keys, indent 2, UTF-8) atomically; return the path.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputWriteError: the folder is missing or not writable.
    """
    path = Path(path)
    text = json.dumps(_json_ready(sidecar), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_file(path, overwrite=overwrite) as temp:
        temp.write_text(text, encoding="utf-8")
    return path
