"""Discovery: walk a folder tree, read DICOM headers only, index every image instance.

The common case (Part 10 in explicit or implicit VR little endian, native or
compressed pixel data, single-frame images) is indexed from the element
positions of :mod:`convert.dicom.elements` (the one byte-level walker, ~0.15-0.3 ms
per file, 4-6x faster than a pydicom parse); anything else (big endian,
deflated, enhanced objects, non-ASCII text, Siemens private mosaic flags,
layouts the element layer does not cover) goes through
``pydicom.dcmread(stop_before_pixels=True)``. A small thread pool helps on slow
file systems.
Files that are not DICOM (README text files, thumbnails, ``DICOMDIR`` indexes)
are counted and skipped, never an error. ``.dcm.gz`` files are read through
gzip transparently.

Geometry fields keep DICOM conventions: ``position`` is ImagePositionPatient
(LPS+ mm, centre of the first transmitted pixel), ``orientation`` is
ImageOrientationPatient (row cosine then column cosine, LPS+), and
``pixel_spacing`` is PixelSpacing as stored: ``(between rows, between columns)``
in mm, i.e. ``(spacing along j, spacing along i)``.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.dicom import elements
from convert.dicom import header as header_view
from convert.dicom.header import Header, dicom_time_seconds, is_gzip, open_dicom_bytes
from convert.dicom.pixels import PHILIPS_MR_CREATOR, philips_scale_slope, scale_slope_value
from convert.errors import InputNotFoundError

#: SOP classes that are indexes or documents, never images.
_NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.1.3.10",)  # Media Storage Directory (DICOMDIR)

#: Files we never even try to parse.
_SKIP_NAMES = {"dicomdir", "thumbs.db", ".ds_store", "desktop.ini"}
_SKIP_SUFFIXES = (".txt", ".md", ".json", ".xml", ".html", ".htm", ".pdf", ".jpg", ".jpeg", ".png", ".gif",
                  ".nii", ".nii.gz", ".nrrd", ".mnc", ".zip", ".csv", ".py", ".sh", ".exe", ".ini", ".log")


@dataclass(frozen=True, eq=False, slots=True)  # slots: no per-file __dict__ (1.6 kB of 3 kB a file)
class Instance:
    """One DICOM file's header summary (everything series assembly needs).

    Attributes:
        path: the file.
        sop_class_uid, sop_instance_uid, series_uid, study_uid: UIDs as stored ("" when absent).
        modality: e.g. "CT", "MR".
        series_number: SeriesNumber (None when absent).
        series_description: SeriesDescription ("" when absent).
        position: ImagePositionPatient, LPS+ mm, or None.
        orientation: ImageOrientationPatient (6 floats, row then column cosine, LPS+), or None.
        pixel_spacing: PixelSpacing ``(row spacing = along j, column spacing = along i)`` in mm, or None.
        rows, columns: matrix size.
        bits_allocated, bits_stored, pixel_representation: pixel storage.
        samples_per_pixel, photometric: colour model.
        instance_number, acquisition_number, temporal_position, echo_number: as stored (None when absent).
        trigger_time: ms; acquisition_time: seconds since midnight (None when absent).
        image_type: ImageType values upper-cased.
        transfer_syntax: TransferSyntaxUID ("" when absent, e.g. a headerless file).
        number_of_frames: NumberOfFrames (1 when absent).
        slice_thickness, spacing_between_slices: mm or None.
        rescale_slope, rescale_intercept: RescaleSlope/Intercept (1/0 when absent).
        header: the header read without pixel data (a :class:`convert.dicom.header.Header`
            view, or pydicom's Dataset for files the element layer leaves to it), or None when
            the scan did not keep it (large archives keep one header per series; a file the
            byte-level index or its header view indexed keeps none, except an enhanced object,
            whose view the reader asks for every frame's functional groups: its header is
            parsed once per run); use :meth:`load_header`, which re-reads it when needed.
        mosaic: a Siemens mosaic (decided at scan time, see :mod:`convert.dicom.multiframe`).
        enhanced: an enhanced multi-frame object (PerFrameFunctionalGroupsSequence present).
        pixel_offset: byte offset of the (7FE0,0010) PixelData element (its tag) in a non-gzipped
            file (lets the reader read native pixels straight into the volume), else None.
        philips_scale_slope: Philips MR private ScaleSlope (2005,xx0E, creator
            ``Philips MR Imaging DD 001``) of a Philips file, else None
            (see :func:`convert.dicom.pixels.philips_precise_scaling`).
        echo_time: EchoTime (0018,0081) in ms, or None (splits echoes that carry no EchoNumbers).
        philips_isotropic: a Philips classic diffusion image whose direction (2001,1004) is ``I``
            with a b-value (2001,1003) above 0: a derived isotropic (trace) image appended to a DWI series.
        ge_image_type: GE's private image type (0043,102F): 0 magnitude, 1 phase, 2 real,
            3 imaginary; None when absent or not a GE file (GE phase images often say only
            ``ORIGINAL\\PRIMARY\\OTHER`` in ImageType).
        body_part: BodyPartExamined ("" when absent).
        protocol: ProtocolName ("" when absent).
        manufacturer: Manufacturer as stored ("" when absent).
        model: ManufacturerModelName ("" when absent).
        field_strength: MagneticFieldStrength in tesla as stored, or None.

    The text fields that repeat across a series (UIDs of the series and study,
    modality, descriptions, transfer syntax, the index fields above) are interned
    (:func:`sys.intern`): a 50,000-file scan keeps one copy of each value. No
    patient-identifying field is kept here; :meth:`load_header` reads them from
    the file when asked for (e.g. ``convert.scan(..., phi=True)``).
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    modality: str
    series_number: int | None
    series_description: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    instance_number: int | None
    acquisition_number: int | None
    temporal_position: int | None
    echo_number: int | None
    trigger_time: float | None
    acquisition_time: float | None
    image_type: tuple[str, ...]
    transfer_syntax: str
    number_of_frames: int
    slice_thickness: float | None
    spacing_between_slices: float | None
    rescale_slope: float
    rescale_intercept: float
    header: Any = field(repr=False, default=None)
    pixel_offset: int | None = None
    mosaic: bool = False
    enhanced: bool = False
    philips_scale_slope: float | None = None
    echo_time: float | None = None
    philips_isotropic: bool = False
    ge_image_type: int | None = None
    body_part: str = ""
    protocol: str = ""
    manufacturer: str = ""
    model: str = ""
    field_strength: float | None = None

    def __post_init__(self) -> None:
        _intern_fields(self)

    def load_header(self) -> Any:
        """The header (without pixel data): the kept one, or read again from :attr:`path`.

        A re-read is a :class:`convert.dicom.header.Header` view (pydicom's answers, without
        pydicom where it can) or, for files the element layer leaves to pydicom, the
        ``Dataset``; :func:`convert.dicom.header.as_dataset` gives a ``Dataset`` of either.
        Re-reads go through a small cache (the last few files), so asking for a series'
        first header several times parses it once. Read-only.
        """
        if self.header is not None:
            return self.header
        try:
            stat = self.path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (0, 0)
        return _cached_header(str(self.path), key)

    @property
    def has_pixels(self) -> bool:
        """True when the header says there is an image (Rows/Columns set)."""
        return self.rows > 0 and self.columns > 0

    @property
    def is_multiframe(self) -> bool:
        """True for files holding more than one frame (enhanced objects, multi-frame CT/US...)."""
        return self.number_of_frames > 1 or self.enhanced


#: :class:`Instance` text fields shared by the files of a series: interned.
_INTERNED = ("sop_class_uid", "series_uid", "study_uid", "modality", "series_description", "photometric",
             "transfer_syntax", "body_part", "protocol", "manufacturer", "model")


#: :class:`Instance` tuple fields a series repeats: one shared copy per distinct value (see :func:`_intern_fields`).
_SHARED_TUPLES = ("orientation", "pixel_spacing", "image_type")
#: The shared copies, by ``repr`` (which tells -0.0 from 0.0, unlike ``==``); bounded by :data:`_SHARED_MAX`.
_shared_tuples: dict[str, tuple] = {}
_SHARED_MAX = 100_000


def _intern_fields(instance: Instance) -> None:
    """Share the repeated text values of ``instance`` (:data:`_INTERNED`; also after unpickling a
    worker's results, which skips ``__post_init__``) and its repeated tuples (:data:`_SHARED_TUPLES`:
    about 0.6 kB a file of a large archive)."""
    for name in _INTERNED:  # frozen: set through object.__setattr__ (the values are equal, only shared)
        value = getattr(instance, name)
        if value.__class__ is str:
            object.__setattr__(instance, name, sys.intern(value))
    for name in _SHARED_TUPLES:
        value = getattr(instance, name)
        if value.__class__ is tuple:
            key = repr(value)
            shared = _shared_tuples.get(key)
            if shared is None:
                if len(_shared_tuples) >= _SHARED_MAX:
                    _shared_tuples.clear()
                shared = _shared_tuples[key] = value
            object.__setattr__(instance, name, shared)


@dataclass
class ScanResult:
    """What :func:`scan` found under a root folder.

    Attributes:
        root: the folder (or file) scanned.
        instances: every image instance, in path order.
        skipped: ``(path, reason)`` for every file that was not a DICOM image
            (text files, DICOMDIR, unreadable files): counted, not an error.
    """

    root: Path
    instances: list[Instance] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def files_seen(self) -> int:
        """Number of files looked at."""
        return len(self.instances) + len(self.skipped)


# --------------------------------------------------------------------------- helpers
def _first_value(value: Any) -> Any:
    """The first of several values (a list, or pydicom's ``MultiValue`` of a DS/IS with a backslash), as the
    byte parser reads a number (the text up to the first backslash); a single value as it is."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _float(value: Any) -> float | None:
    value = _first_value(value)
    try:
        if value is None or value == "":
            return None
        out = float(value)
        return out if np.isfinite(out) else None
    except (TypeError, ValueError):
        return None


def _philips_bvalue(value: Any) -> float | None:
    """Philips (2001,1003) b-value: FL (4 raw little-endian bytes when unconverted or VR UN), or a number."""
    value = getattr(value, "value", value)
    if isinstance(value, (bytes, bytearray)):
        if len(value) == 4:
            return _float(struct.unpack("<f", bytes(value))[0])
        return _float(bytes(value).decode("latin-1").strip(" \x00"))
    return _float(value)  # several values: the first


def philips_isotropic(manufacturer: str | None, direction: Any, bvalue: Any) -> bool:
    """True for a Philips derived isotropic/trace diffusion image (direction ``I``, b-value > 0).

    ``direction`` and ``bvalue`` are the values of (2001,1004) and (2001,1003), raw
    or converted (None when absent). A missing b-value counts as "above 0".
    """
    if "PHILIPS" not in str(manufacturer or "").upper():
        return False
    direction = getattr(direction, "value", direction)
    if isinstance(direction, (bytes, bytearray)):
        direction = bytes(direction).decode("latin-1")
    if str(direction or "").strip(" \x00").upper() != "I":
        return False
    b = _philips_bvalue(bvalue)
    return b is None or b > 0


def ge_image_type(manufacturer: str | None, value: Any) -> int | None:
    """GE's private image type (0043,102F) as an int, or None (absent, unreadable, not a GE file).

    ``value`` is raw (2 little-endian bytes: SS, or VR UN) or converted.
    """
    if "GE" not in str(manufacturer or "").upper().split():  # "GE MEDICAL SYSTEMS", "GE HealthCare"
        return None
    value = getattr(value, "value", value)
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(bytes(value)[:2], "little", signed=True) if len(value) >= 2 else None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    return _int(value)


def _int(value: Any) -> int | None:
    value = _first_value(value)
    try:
        if value is None or value == "":
            return None
        return int(float(value))
    except (TypeError, ValueError):
        return None


def rescale_value(value: Any, default: float) -> float:
    """RescaleSlope/RescaleIntercept as stored: ``default`` when absent or empty, NaN when present but not
    a number, else the number (which may be 0, NaN or infinite: the series assembly checks and reports it,
    never this parser silently)."""
    if value is None:
        return default
    text = str(value).split("\\")[0].strip(" \x00")
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        if value is None:
            return None
        seq = list(value) if not isinstance(value, (str, bytes)) else str(value).split("\\")
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(np.isfinite(out)):
        return None
    return out


def _head_is_dicom(head: bytes) -> bool:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[0:2] in (b"\x08\x00", b"\x02\x00")


def looks_like_dicom(path: Path) -> bool:
    """Cheap check: ``DICM`` at byte 128, or a plausible headerless (implicit VR) start.

    A headerless file starts with a group-0008 element tag (``08 00 xx xx``);
    pydicom confirms later.
    """
    try:
        with open_dicom_bytes(path) as fh:
            head = fh.read(132)
    except (OSError, EOFError, zlib.error):  # zlib.error: a corrupt .dcm.gz
        return False
    return _head_is_dicom(head)


@functools.lru_cache(maxsize=32)
def _cached_header(path: str, version: tuple[int, int]) -> Any:
    """Header of ``path`` as of ``version`` (mtime, size): a changed file is read again."""
    return header_view.read(Path(path))


def _read_header_once(path: Path) -> tuple[Any, int | None] | str:
    """Open ``path`` once: check the magic, read the header, note where pixel data starts.

    Returns ``(dataset, pixel_offset)`` or a reason string when it is not DICOM.
    """
    import pydicom

    from convert.dicom.validity import install

    install()  # an unknown VR met later is a CorruptFileError naming the file
    gz = is_gzip(path)
    try:
        with open_dicom_bytes(path) as fh:
            head = fh.read(132)
            if not head:
                return "empty file"
            if not _head_is_dicom(head):
                return "not DICOM (no DICM marker or DICOM tags)"
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            offset = None if gz else fh.tell()
    except Exception as exc:  # any parse failure of a corrupt file (pydicom raises many kinds) is a skip
        return f"unreadable DICOM header: {type(exc).__name__}: {exc}"
    return ds, offset


#: Tags the index reads (plain ints: pydicom's dataset keys compare and hash equal to them).
_TAGS: frozenset[int] = frozenset({
    0x00080008, 0x00280030, 0x00181164, 0x0008103E, 0x00080016, 0x00080018, 0x0020000E, 0x0020000D,
    0x00080060, 0x00200011, 0x00200032, 0x00200037, 0x00280010, 0x00280011, 0x00280100, 0x00280101,
    0x00280103, 0x00280002, 0x00280004, 0x00200013, 0x00200012, 0x00200100, 0x00180086, 0x00181060,
    0x00080032, 0x00280008, 0x00180050, 0x00180088, 0x00281053, 0x00281052, 0x00180081})
#: Philips private diffusion direction (2001,1004: CS, ``I`` = isotropic) and b-value (2001,1003: FL).
_PHILIPS_DIRECTION, _PHILIPS_BVALUE = 0x20011004, 0x20011003
#: GE private image type (0043,102F: SS; 0 magnitude, 1 phase, 2 real, 3 imaginary).
_GE_IMAGE_TYPE = 0x0043102F
#: What archive indexes filter on: BodyPartExamined, ProtocolName, ManufacturerModelName, MagneticFieldStrength.
_BODY_PART, _PROTOCOL, _MODEL, _FIELD_STRENGTH = 0x00180015, 0x00181030, 0x00081090, 0x00180087


def _is_mosaic_header(ds: Any) -> bool:
    """Siemens mosaic detected from private tags (via :mod:`convert.dicom.multiframe`, when installed)."""
    if "SIEMENS" not in str(ds.get("Manufacturer", "") or "").upper():
        return False
    try:
        from convert.dicom import multiframe
    except ImportError:  # pragma: no cover - depends on the multi-frame helper
        return False
    try:
        return bool(multiframe.is_mosaic(ds))
    except Exception:
        return False


def instance_from_header(path: Path, ds: Any, pixel_offset: int | None = None) -> Instance:
    """An :class:`Instance` from a header: a :class:`convert.dicom.header.Header` view or a
    pydicom Dataset, through pydicom's value rules (the byte-level :func:`_fast_index` gives
    the same fields for the plain files it takes; tests compare the three)."""
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    image_type = ds.get("ImageType")
    if image_type is None:
        image_type_t: tuple[str, ...] = ()
    elif isinstance(image_type, str):
        image_type_t = tuple(v.strip().upper() for v in image_type.split("\\"))
    else:
        image_type_t = tuple(str(v).strip().upper() for v in image_type)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if spacing is None:
        spacing = _floats(ds.get("ImagerPixelSpacing"), 2)
    echo = _int(ds.get("EchoNumbers"))
    return Instance(
        path=path,
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=spacing,  # type: ignore[arg-type]
        rows=_int(ds.get("Rows")) or 0,
        columns=_int(ds.get("Columns")) or 0,
        bits_allocated=_int(ds.get("BitsAllocated")) or 0,
        bits_stored=_int(ds.get("BitsStored")) or _int(ds.get("BitsAllocated")) or 0,
        pixel_representation=_int(ds.get("PixelRepresentation")) or 0,
        samples_per_pixel=_int(ds.get("SamplesPerPixel")) or 1,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper(),
        instance_number=_int(ds.get("InstanceNumber")),
        acquisition_number=_int(ds.get("AcquisitionNumber")),
        temporal_position=_int(ds.get("TemporalPositionIdentifier")),
        echo_number=echo,
        trigger_time=_float(ds.get("TriggerTime")),
        acquisition_time=dicom_time_seconds(ds.get("AcquisitionTime")),
        image_type=image_type_t,
        transfer_syntax=ts,
        number_of_frames=_int(ds.get("NumberOfFrames")) or 1,
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
        rescale_slope=rescale_value(ds.get("RescaleSlope"), 1.0),
        rescale_intercept=rescale_value(ds.get("RescaleIntercept"), 0.0),
        header=ds,
        pixel_offset=pixel_offset,
        mosaic="MOSAIC" in image_type_t or _is_mosaic_header(ds),
        enhanced="PerFrameFunctionalGroupsSequence" in ds,
        philips_scale_slope=philips_scale_slope(ds),
        echo_time=_float(ds.get("EchoTime")),
        philips_isotropic=philips_isotropic(ds.get("Manufacturer"), ds.get(_PHILIPS_DIRECTION),
                                            ds.get(_PHILIPS_BVALUE)),
        ge_image_type=ge_image_type(ds.get("Manufacturer"), ds.get(_GE_IMAGE_TYPE)),
        body_part=_text(ds.get("BodyPartExamined")),
        protocol=_text(ds.get("ProtocolName")),
        manufacturer=_text(ds.get("Manufacturer")),
        model=_text(ds.get("ManufacturerModelName")),
        field_strength=_float(ds.get("MagneticFieldStrength")),
    )


def _text(value: Any) -> str:
    """A text element's value as one string ("" when absent): several values joined by ``\\``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- fast header parser
_ENHANCED_TAG = 0x52009230  # PerFrameFunctionalGroupsSequence
_DIRECTORY_TAG = 0x00041220  # DirectoryRecordSequence
#: Philips private creators of group 2005 and the ScaleSlope (xx0E) element of each block (binary FL).
_PHILIPS_CREATOR_TAGS = frozenset(0x20050000 | block for block in range(0x10, 0x100))
_PHILIPS_SCALE_TAGS = frozenset(0x20050000 | (block << 8) | 0x0E for block in range(0x10, 0x100))
_FAST_TAGS = (frozenset(_TAGS) | {0x00080070, 0x00080005}  # + Manufacturer, SpecificCharacterSet
              | {_BODY_PART, _PROTOCOL, _MODEL, _FIELD_STRENGTH}  # + index fields (convert.batch.index)
              | _PHILIPS_CREATOR_TAGS | _PHILIPS_SCALE_TAGS
              | {_PHILIPS_DIRECTION, _PHILIPS_BVALUE, _GE_IMAGE_TYPE})  # + split fields (series.postfix)
_SINGLE_TEXT_TAGS = frozenset({0x0008103E, _BODY_PART, _PROTOCOL, 0x00080070, _MODEL})
_UID_TAGS = frozenset({0x00080016, 0x00080018, 0x0020000E, 0x0020000D})
#: Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel (binary US values).
_US_TAGS = frozenset({0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103, 0x00280002})
_KEPT_TAGS = _FAST_TAGS | {_ENHANCED_TAG, _DIRECTORY_TAG}


#: A control character (pydicom's character-set handling decides such values).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _fast_index(path: Path) -> Instance | None:
    """:func:`_index_from_bytes` of ``path`` read by the element layer (None: not covered)."""
    part10 = header_view.read_part10(path, keep=_KEPT_TAGS)
    return _index_from_bytes(path, part10) if part10 is not None else None


def _index_from_bytes(path: Path, part10: elements.Part10) -> Instance | None:
    """An :class:`Instance` straight from the header bytes (no pydicom), or None to take the
    header view's (or pydicom's) path.

    Handles the common case (Part 10, explicit or implicit VR little endian, plain
    text values, classic single-frame images); the header is not kept
    (:meth:`Instance.load_header` reads it when needed). Enhanced objects,
    DICOMDIRs, files without pixel data, non-ASCII text, Siemens files without
    MOSAIC in ImageType (their mosaic flag lives in private tags) and anything
    unusual are declined. ``part10`` was parsed with ``keep`` = :data:`_KEPT_TAGS`.
    """
    pixel_offset = part10.pixel_offset
    if pixel_offset is None:
        return None
    data, found = part10.data, part10.elements
    if _ENHANCED_TAG in found or _DIRECTORY_TAG in found:
        return None
    values = {tag: data[e.value_offset:e.end] for tag, e in found.items()
              if tag in _FAST_TAGS and e.length != elements.UNDEFINED}
    for tag, raw in values.items():
        if tag in _US_TAGS or tag in _PHILIPS_SCALE_TAGS or tag in (_PHILIPS_BVALUE, _GE_IMAGE_TYPE):
            continue
        text_value = raw.rstrip(b" \x00")
        if not text_value.isascii() or _CONTROL.search(text_value):
            return None  # non-ASCII or control characters: pydicom's character-set handling decides
        if tag in _UID_TAGS and text_value.strip(b"0123456789."):
            return None  # not a plain UID
        if tag in _SINGLE_TEXT_TAGS and b"\\" in text_value:
            return None  # several values: pydicom's multi-value rules decide

    def text(tag: int) -> str | None:
        raw = values.get(tag)
        if raw is None:
            return None
        out = raw.decode("latin-1").strip(" \x00")
        return out or None

    def us(tag: int) -> int | None:
        raw = values.get(tag)
        return int.from_bytes(raw[:2], "little") if raw is not None and len(raw) >= 2 else None

    def number(tag: int) -> float | None:
        value = text(tag)
        return _float(value.split("\\")[0]) if value else None

    def integer(tag: int) -> int | None:
        value = text(tag)
        return _int(value.split("\\")[0]) if value else None

    def floats(tag: int, count: int) -> tuple[float, ...] | None:
        value = text(tag)
        return _floats(value.split("\\"), count) if value else None

    rows, columns = us(0x00280010) or 0, us(0x00280011) or 0
    if rows <= 0 or columns <= 0:
        return None  # not an image (or odd): let the full path classify it
    image_type_text = text(0x00080008)
    image_type = tuple(v.strip().upper() for v in image_type_text.split("\\")) if image_type_text else ()
    manufacturer = (text(0x00080070) or "").upper()
    if "SIEMENS" in manufacturer and "MOSAIC" not in image_type:
        return None
    frames = integer(0x00280008) or 1
    if frames > 1:
        return None
    return Instance(
        path=path,
        sop_class_uid=text(0x00080016) or "",
        sop_instance_uid=text(0x00080018) or "",
        series_uid=text(0x0020000E) or "",
        study_uid=text(0x0020000D) or "",
        modality=text(0x00080060) or "",
        series_number=integer(0x00200011),
        series_description=text(0x0008103E) or "",
        position=floats(0x00200032, 3),  # type: ignore[arg-type]
        orientation=floats(0x00200037, 6),
        pixel_spacing=floats(0x00280030, 2) or floats(0x00181164, 2),  # type: ignore[arg-type]
        rows=rows,
        columns=columns,
        bits_allocated=us(0x00280100) or 0,
        bits_stored=us(0x00280101) or us(0x00280100) or 0,
        pixel_representation=us(0x00280103) or 0,
        samples_per_pixel=us(0x00280002) or 1,
        photometric=(text(0x00280004) or "MONOCHROME2").upper(),
        instance_number=integer(0x00200013),
        acquisition_number=integer(0x00200012),
        temporal_position=integer(0x00200100),
        echo_number=integer(0x00180086),
        trigger_time=number(0x00181060),
        acquisition_time=dicom_time_seconds(text(0x00080032)),
        image_type=image_type,
        transfer_syntax=part10.transfer_syntax,
        number_of_frames=frames,
        slice_thickness=number(0x00180050),
        spacing_between_slices=number(0x00180088),
        rescale_slope=rescale_value(text(0x00281053), 1.0),
        rescale_intercept=rescale_value(text(0x00281052), 0.0),
        header=None,
        pixel_offset=pixel_offset,
        mosaic="MOSAIC" in image_type,
        enhanced=False,
        philips_scale_slope=_fast_philips_scale_slope(values) if "PHILIPS" in manufacturer else None,
        echo_time=number(0x00180081),
        philips_isotropic=philips_isotropic(manufacturer, values.get(_PHILIPS_DIRECTION),
                                            values.get(_PHILIPS_BVALUE)),
        ge_image_type=ge_image_type(manufacturer, values.get(_GE_IMAGE_TYPE)),
        body_part=text(_BODY_PART) or "",
        protocol=text(_PROTOCOL) or "",
        manufacturer=text(0x00080070) or "",
        model=text(_MODEL) or "",
        field_strength=number(_FIELD_STRENGTH),
    )


def _fast_philips_scale_slope(values: dict[int, bytes]) -> float | None:
    """Philips ScaleSlope (2005,xx0E) from raw explicit VR LE values: the block whose creator is Philips'."""
    for block in range(0x10, 0x100):
        creator = values.get(0x20050000 | block)
        if creator is not None and creator.decode("latin-1").strip(" \x00") == PHILIPS_MR_CREATOR:
            raw = values.get(0x20050000 | (block << 8) | 0x0E)
            if raw is None or len(raw) != 4:
                return None
            return scale_slope_value(raw)
    return None


def index_file(path: Path) -> Instance | str:
    """Index one file: an :class:`Instance`, or a string saying why it was skipped."""
    name = path.name.lower()
    if name in _SKIP_NAMES:
        return "DICOMDIR index (not an image)" if name == "dicomdir" else "not DICOM (system file)"
    if name.endswith(_SKIP_SUFFIXES) and not name.endswith((".dcm", ".dcm.gz")):
        return "not DICOM (file extension)"
    part10 = None if name.endswith(".gz") else header_view.read_part10(path, keep=_KEPT_TAGS)
    if part10 is not None:  # the file is read once: the byte-level index, else the header view of the same bytes
        fast = _index_from_bytes(path, part10)
        if fast is not None:
            return fast
        view = header_view.view_of(path, part10)  # enhanced, Siemens, unusual values (pydicom per value)
        if view is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcome = _classify(path, view, view.pixel_offset)
            except Exception as exc:  # a corrupt element (bad VR, bad length...) must not stop a scan
                return f"unreadable DICOM header: {type(exc).__name__}: {exc}"
            if isinstance(outcome, Instance) and not outcome.enhanced:
                object.__setattr__(outcome, "header", None)  # re-read cheaply when needed (no pickling of bytes)
            return outcome  # an enhanced file keeps its view: the reader asks it for every frame's groups
    outcome = _read_header_once(path)
    if isinstance(outcome, str):
        return outcome
    ds, pixel_offset = outcome
    try:
        return _classify(path, ds, pixel_offset)
    except Exception as exc:  # a corrupt element (bad VR, bad length...) must not stop a scan
        return f"unreadable DICOM header: {type(exc).__name__}: {exc}"


def _classify(path: Path, ds: Any, pixel_offset: int | None) -> Instance | str:
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class.startswith(_NON_IMAGE_SOP_PREFIXES) or "DirectoryRecordSequence" in ds:
        return "DICOMDIR index (not an image)"
    if not ds.get("Rows") or not ds.get("Columns"):
        if "SOPClassUID" not in ds and "Modality" not in ds:
            return "not DICOM (no DICOM image tags)"
        return "DICOM without an image (structured report, presentation state...)"
    instance = instance_from_header(path, ds, pixel_offset)
    if instance.rows <= 0 or instance.columns <= 0:
        return "unreadable DICOM header: Rows/Columns unusable"
    return instance


def iter_files(root: Path, errors: list[tuple[Path, str]] | None = None, *, hidden: bool = False) -> list[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order: each folder's
    files sorted by name, then its sub-folders, sorted (the order of ``os.walk``).

    The one file walk (scan, conversion and de-identification): folder symlinks are not
    followed (no loops); anything that is not a regular file (a FIFO, socket or device, a
    dangling or looping symlink) is never opened, since reading a FIFO blocks forever,
    and is listed in ``errors``. Names starting with ``.`` are skipped unless ``hidden``.
    Folders that cannot be listed are appended to ``errors`` as ``(folder, reason)``.
    """
    if root.is_file():
        return [root]
    out: list[Path] = []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            if errors is not None:
                errors.append((Path(exc.filename or folder), f"unreadable folder: {exc.strerror or exc}"))
            continue
        folders: list[Path] = []
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                elif entry.is_file():  # follows file symlinks; False for FIFOs, sockets, devices, loops
                    out.append(path)
                elif not entry.is_dir() and errors is not None:  # a folder symlink is silently not followed
                    errors.append((path, "not a regular file (a pipe, socket, device or broken link): not read"))
            except OSError as exc:
                if errors is not None:
                    loop = exc.errno == errno.ELOOP
                    errors.append((path, "not a regular file (a symbolic link loop): not read" if loop
                                   else f"unreadable: {exc.strerror or exc}"))
        pending.extend(reversed(folders))  # depth first, sorted
    return out


@dataclass(frozen=True)
class Listing:
    """The files under ``root`` as :func:`iter_files` lists them, from one walk (:func:`list_files`).

    A caller that walks a folder for its own reason (e.g. :func:`convert.batch.sources.open_source`,
    looking for archives) hands the listing to :func:`scan`, which then does not walk it again.

    Attributes:
        root: the folder (or file) walked.
        files: every regular file, in :func:`iter_files` order (hidden names left out).
        errors: ``(path, reason)`` of what could not be listed or is not a regular file.
    """

    root: Path
    files: tuple[Path, ...]
    errors: tuple[tuple[Path, str], ...]


def list_files(root: Path) -> Listing:
    """:func:`iter_files` of ``root`` (hidden names left out) with its errors, as a :class:`Listing`."""
    errors: list[tuple[Path, str]] = []
    files = iter_files(Path(root), errors)
    return Listing(Path(root), tuple(files), tuple(errors))


#: Above this many images, :func:`scan` keeps one full header per series (memory: ~40 kB each).
KEEP_ALL_HEADERS_LIMIT = 2000
#: The header views of enhanced files :func:`scan` keeps for the reader, at most (bytes of header): the
#: first ones met, 0.1-0.3 MB each; a later file's header is read again by the process converting it
#: (1-9 ms), so the memory a scan holds stays bounded whatever the number of enhanced files.
KEPT_ENHANCED_BYTES = 4 << 20


def scan(root: str | Path, *, workers: int | None = None,
         progress: Callable[[int, int], None] | None = None, keep_headers: bool | None = None,
         listing: Listing | None = None) -> ScanResult:
    """Index every DICOM image under ``root`` (a folder tree, or one file).

    Args:
        root: folder to walk recursively (or a single file).
        workers: header readers (default: one per core, at most 4): forked processes from
            :data:`PROCESS_POOL_MIN_FILES` files on (parsing is GIL-bound, so only processes
            add cores; they also overlap slow, e.g. network, reads), one process below that.
        progress: called as ``progress(done, total)`` after each file.
        keep_headers: keep every pydicom-parsed header Dataset (True), or only the first
            of each series (False: :meth:`Instance.load_header` re-reads the others on
            demand). Default: all up to :data:`KEEP_ALL_HEADERS_LIMIT` images. Files
            indexed by the element layer (explicit and implicit VR little endian, the
            common case) keep none, except enhanced objects, which always keep their
            header view (the reader asks it for every frame: parsed once per run).
        listing: the files under ``root`` from a walk the caller made already (:func:`list_files`
            of this ``root``): they are indexed without walking ``root`` again.

    Returns:
        A :class:`ScanResult`: the instances found and the files skipped (with reasons).

    Raises:
        InputNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise InputNotFoundError("no such file or folder; check the path", root)
    with warnings.catch_warnings():  # pydicom's notes on odd files: the outcome is recorded per file instead
        warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
        return _scan(root, workers, progress, keep_headers, listing)


def _scan(root: Path, workers: int | None, progress: Callable[[int, int], None] | None,
          keep_headers: bool | None, listing: Listing | None = None) -> ScanResult:
    if listing is not None and listing.root != root:
        raise ValueError(f"the listing of {listing.root} is not one of {root}")
    if listing is None:
        listing = list_files(root)
    folder_errors = list(listing.errors)
    files = list(listing.files)
    files, listed = _with_dicomdir_references(files, folder_errors)
    result = ScanResult(root=root, skipped=folder_errors)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    outcomes: list[Instance | str] = []
    pooled = len(files) >= PROCESS_POOL_MIN_FILES and workers > 1 and _can_fork()
    if pooled:
        # Header parsing holds the GIL: threads do not add a core (measured slower than one
        # thread); forked processes do. Chunks keep the pickling of results cheap.
        from convert.workers import process_pool, shared_heap

        size = max(_MIN_CHUNK, min(_CHUNK, -(-len(files) // (workers * 4))))  # ~4 chunks per worker
        chunks = [[str(p) for p in files[i:i + size]] for i in range(0, len(files), size)]
        # frozen: the workers' collections do not copy the pages of the listing (a Path a file) they inherit
        with shared_heap(), process_pool(workers) as pool:
            for chunk_outcomes in pool.map(_index_chunk, chunks):
                outcomes.extend(chunk_outcomes)
                if progress:
                    progress(len(outcomes), len(files))
    else:  # fewer files: one process (threads measured slower: the parse holds the GIL)
        for n, path in enumerate(files, 1):
            outcomes.append(index_file(path))
            if progress:
                progress(n, len(files))
    n_images = sum(isinstance(o, Instance) for o in outcomes)
    keep_all = keep_headers if keep_headers is not None else n_images <= KEEP_ALL_HEADERS_LIMIT
    seen_series: set[tuple] = set()
    enhanced_bytes = 0
    for path, outcome in zip(files, outcomes):
        if isinstance(outcome, Instance):
            if pooled:
                _intern_fields(outcome)  # unpickled from a worker: share the values across chunks too
                object.__setattr__(outcome, "path", path)  # the listing's Path (equal): not a second one a file
            key = (outcome.study_uid, outcome.series_uid, outcome.series_number)
            if not keep_all and key in seen_series and not outcome.enhanced:
                # frozen dataclass: drop the bulky Dataset. An enhanced file keeps its view: its header
                # is its frames' geometry (a few hundred bytes a frame, as the Instances of as many
                # classic slices), which the reader would otherwise read and walk again.
                object.__setattr__(outcome, "header", None)
            elif not keep_all and outcome.enhanced and isinstance(outcome.header, Header):
                enhanced_bytes += len(outcome.header.part10.data)
                if enhanced_bytes > KEPT_ENHANCED_BYTES:  # enough kept: this one is read again when converted
                    object.__setattr__(outcome, "header", None)
            seen_series.add(key)
            result.instances.append(outcome)
        else:
            if str(path) in listed:
                outcome = f"listed in a DICOMDIR but not usable: {outcome}"
            result.skipped.append((path, outcome))
    return result


#: From this many files on, :func:`scan` parses headers in forked worker processes.
PROCESS_POOL_MIN_FILES = 400
_CHUNK = 256
_MIN_CHUNK = 32


def _can_fork() -> bool:
    """Forked workers are safe here: POSIX, and not inside a daemon process (e.g. a pool worker)."""
    import multiprocessing

    return os.name == "posix" and not multiprocessing.current_process().daemon


def _index_chunk(paths: list[str]) -> list[Instance | str]:
    """:func:`index_file` over a chunk of paths (runs in a worker process)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
        return [index_file(Path(p)) for p in paths]


def _with_dicomdir_references(files: list[Path], problems: list[tuple[Path, str]]) -> tuple[list[Path], set[str]]:
    """``files`` plus what their DICOMDIRs reference (see :mod:`convert.dicom.dicomdir`).

    Missing or ambiguous references are appended to ``problems``; returns the
    extended list and the set of paths (as strings) some DICOMDIR lists.
    """
    from convert.dicom.dicomdir import add_dicomdir_references, is_dicomdir_name

    if not any(is_dicomdir_name(p) for p in files):
        return files, set()
    files, found_problems, listed = add_dicomdir_references(files)
    problems.extend(found_problems)
    return files, listed


def scan_paths(paths: Sequence[Path]) -> ScanResult:
    """Index an explicit list of files (no walking); used for single-file reads."""
    result = ScanResult(root=Path(paths[0]) if paths else Path("."))
    for path in paths:
        outcome = index_file(Path(path))
        if isinstance(outcome, Instance):
            result.instances.append(outcome)
        else:
            result.skipped.append((Path(path), outcome))
    return result
