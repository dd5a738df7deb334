"""Streaming DICOM series -> NIfTI for the common case, without pydicom or nibabel.

:func:`convert_single_fast` converts a folder holding one plain series (the
typical CT/MR export: Part 10 files, explicit VR little endian, uncompressed,
one MONOCHROME2 frame per file, plain ASCII header values) to ``.nii`` or
``.nii.gz`` and its JSON sidecar, and writes **exactly** what the full path
(:func:`convert.dicom.reader.read_single` + :class:`convert.formats.nifti.NiftiFormat`
+ :func:`convert.dicom.sidecar.build_sidecar`) writes: same NIfTI header bytes,
same voxels, same sidecar. It differs in how:

* headers come from the byte-level parser of :mod:`convert.dicom.scan` (index)
  and :func:`parse_header` here (the few files whose values the sidecar reads),
  wrapped in :class:`HeaderMap`, a read-only stand-in for the pydicom Dataset
  that :mod:`convert.dicom.sidecar` reads. Values are converted as pydicom
  converts them (DS -> float that prints as stored, IS -> int, multi-valued ->
  list, text stripped), and only when pydicom would accept them silently;
* the NIfTI-1 header is packed by :mod:`convert.formats._nifti1` (no nibabel);
* voxels are streamed slice by slice from each file's pixel data into the
  temporary output (``copy_file_range`` when no value changes, else one slice
  in memory), renamed into place at the end (:mod:`convert.atomic`). Memory
  stays at one slice instead of the volume (plus a copy).

Anything else **declines** (returns None) before any output exists, and the
caller runs the full path, which then reports errors and warnings in its own
words: several series, compressed or big endian files, multi-frame, mosaic,
colour, MONOCHROME1, a DICOMDIR in the folder, missing slices (an error), uneven spacing (the full path resamples it
or stacks it with its own note), gap resampling or tilt
correction asked for, ``--sidecar-phi``, non-ASCII or unusual header values,
Siemens CSA headers and any other field the sidecar would look up that is not
mirrored here (private fields are read through ``private_block`` when stored
with a plain VR), unreadable or truncated files. Warnings the full path prints (tilt,
duplicates) are passed to ``on_warning`` unchanged.

:func:`convert_tree_fast` does the same for folder output (one file per
series, named as :func:`convert.dicom.reader.convert_dicom_tree` names them)
when every series of the folder qualifies, writing all outputs through one
:func:`convert.atomic.atomic_paths` so that a decline leaves nothing behind.
``.nii.gz`` streams are cut into the same compressor blocks as the full path's
(:class:`_GzipLikeFullPath`), so the gzip bytes are identical too.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.dicom import elements
from convert.proxy import SLAB_BYTES
from convert.dicom.scan import Instance
from convert.dicom.series import TILT_THRESHOLD_DEG, LazyHeaders, Series, assemble, median
from convert.errors import ConvertError

_scan = sys.modules["convert.dicom.scan"]  # the module (``convert.dicom.scan`` the attribute is the function)


class Declined(BaseException):
    """The fast path cannot reproduce the full path here; nothing was written.

    A BaseException on purpose: it must pass through the ``except Exception``
    guards of code it is called through (e.g. the sidecar's CSA parser guard),
    which would otherwise turn "not supported here" into a silently different value.
    """


# --------------------------------------------------------------------------- header values
#: DICOM keywords the sidecar/metadata code may look up: keyword -> (tag, VR). Any other
#: keyword asked of a :class:`HeaderMap` declines (tests check this table against pydicom).
KEYWORDS: dict[str, tuple[int, str]] = {
    "Modality": (0x00080060, "CS"),
    "Manufacturer": (0x00080070, "LO"),
    "ManufacturerModelName": (0x00081090, "LO"),
    "SoftwareVersions": (0x00181020, "LO"),
    "MagneticFieldStrength": (0x00180087, "DS"),
    "ImagingFrequency": (0x00180084, "DS"),
    "TransmitterFrequency": (0x00189098, "FD"),
    "BodyPartExamined": (0x00180015, "CS"),
    "PatientPosition": (0x00185100, "CS"),
    "MRAcquisitionType": (0x00180023, "CS"),
    "SeriesDescription": (0x0008103E, "LO"),
    "ProtocolName": (0x00181030, "LO"),
    "ScanningSequence": (0x00180020, "CS"),
    "SequenceVariant": (0x00180021, "CS"),
    "ScanOptions": (0x00180022, "CS"),
    "SequenceName": (0x00180024, "SH"),
    "PulseSequenceName": (0x00189005, "SH"),
    "ImageType": (0x00080008, "CS"),
    "SeriesNumber": (0x00200011, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"),
    "SliceThickness": (0x00180050, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"),
    "EchoNumbers": (0x00180086, "IS"),
    "EchoTime": (0x00180081, "DS"),
    "EffectiveEchoTime": (0x00189082, "FD"),
    "RepetitionTime": (0x00180080, "DS"),
    "InversionTime": (0x00180082, "DS"),
    "FlipAngle": (0x00181314, "DS"),
    "EchoTrainLength": (0x00180091, "IS"),
    "PercentPhaseFieldOfView": (0x00180094, "DS"),
    "PercentSampling": (0x00180093, "DS"),
    "PixelBandwidth": (0x00180095, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "InPlanePhaseEncodingDirection": (0x00181312, "CS"),
    "ConvolutionKernel": (0x00181210, "SH"),
    "KVP": (0x00180060, "DS"),
    "XRayTubeCurrent": (0x00181151, "IS"),
    "ExposureTime": (0x00181150, "IS"),
    "ReconstructionDiameter": (0x00181100, "DS"),
    "GantryDetectorTilt": (0x00181120, "DS"),
    "Units": (0x00541001, "CS"),
    "DecayCorrection": (0x00541102, "CS"),
    "AttenuationCorrectionMethod": (0x00541101, "LO"),
    "ReconstructionMethod": (0x00541103, "LO"),
    "DiffusionBValue": (0x00189087, "FD"),
    "RescaleType": (0x00281054, "LO"),
    "WindowCenter": (0x00281050, "DS"),
    "WindowWidth": (0x00281051, "DS"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ"),
    "ImagePositionPatient": (0x00200032, "DS"),
    "AcquisitionTime": (0x00080032, "TM"),
    "TriggerTime": (0x00181060, "DS"),
    "SliceLocation": (0x00201041, "DS"),
    "DiffusionGradientOrientation": (0x00189089, "FD"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
}

#: Per-VR checks a value must pass to be converted here: the values pydicom 3 reads without a
#: validation warning, minus everything unusual (leading/trailing blanks inside a value, empty
#: values among several, non-ASCII). (max length per value, full-match pattern)
_TEXT_RULES: dict[str, tuple[int, re.Pattern[str]]] = {
    "CS": (16, re.compile(r"[A-Z0-9_]([A-Z0-9 _]*[A-Z0-9_])?")),
    "LO": (64, re.compile(r"[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]*[\x21-\x5b\x5d-\x7e])?")),
    "SH": (16, re.compile(r"[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]*[\x21-\x5b\x5d-\x7e])?")),
    "TM": (14, re.compile(r"([01]\d|2[0-3])([0-5]\d((60|[0-5]\d)(\.\d{1,6})?)?)?")),
}
_DS = re.compile(r"[+\-]?(\d+|\d+\.\d*|\.\d+)([eE][+\-]?\d+)?")
_IS = re.compile(r"[+\-]?\d+")
_BINARY = {"FD": ("<f8", 8), "FL": ("<f4", 4), "US": ("<u2", 2), "SS": ("<i2", 2), "UL": ("<u4", 4),
           "SL": ("<i4", 4)}


class DecimalString(float):
    """A DS value: a float that prints as stored (like pydicom's ``DSfloat``)."""

    original_string: str

    def __new__(cls, text: str) -> "DecimalString":
        value = super().__new__(cls, text)
        value.original_string = text
        return value

    def __str__(self) -> str:
        return self.original_string

    def __repr__(self) -> str:
        return f"'{self.original_string}'"


class IntegerString(int):
    """An IS value: an int that prints as stored (like pydicom's ``IS``)."""

    original_string: str

    def __new__(cls, text: str) -> "IntegerString":
        value = super().__new__(cls, int(text))
        value.original_string = text
        return value

    def __str__(self) -> str:
        return self.original_string

    def __repr__(self) -> str:
        return f"'{self.original_string}'"


def convert_value(vr: str, raw: bytes | None) -> Any:
    """The value pydicom 3 gives a raw explicit-VR little-endian element, or raise :class:`Declined`.

    Text: stripped ``str`` (``""`` when empty); numbers: :class:`DecimalString`,
    :class:`IntegerString`, float or int (None when empty); several values: a
    list; OB: the stored bytes. ``raw`` None (an undefined-length value) declines.
    Declines whatever pydicom would warn about or convert in a way not mirrored here.
    """
    if vr == "OB" and raw is not None:
        return raw  # pydicom keeps OB values as the stored bytes (padding included)
    if raw is None:
        raise Declined("undefined-length value")
    if vr in _BINARY:
        fmt, size = _BINARY[vr]
        if len(raw) % size:
            raise Declined(f"odd length for VR {vr}")
        if not raw:
            return None
        values = np.frombuffer(raw, dtype=fmt).tolist()
        return values[0] if len(values) == 1 else values
    if vr not in _TEXT_RULES and vr not in ("DS", "IS"):
        raise Declined(f"VR {vr} is left to pydicom")
    if not raw.isascii():
        raise Declined("non-ASCII text")
    decoded = raw.decode("ascii")
    text = decoded.rstrip(" \x00")
    if not text:
        return "" if vr in _TEXT_RULES else None
    if vr in _TEXT_RULES and any(len(part) > _TEXT_RULES[vr][0] for part in decoded.split("\\")):
        raise Declined(f"long {vr} value")  # pydicom checks text lengths before removing the padding
    parts = text.split("\\")
    out: list[Any] = []
    for part in parts:
        if vr == "DS":
            if len(part) > 16 or not _DS.fullmatch(part):
                raise Declined("unusual DS value")
            out.append(DecimalString(part))
        elif vr == "IS":
            if len(part) > 12 or not _IS.fullmatch(part) or not -(2**31) <= int(part) < 2**31:
                raise Declined("unusual IS value")
            out.append(IntegerString(part))
        else:
            limit, pattern = _TEXT_RULES[vr]
            if len(part) > limit or not pattern.fullmatch(part):
                raise Declined(f"unusual {vr} value")
            out.append(part)
    return out[0] if len(out) == 1 else out


class _Element:
    """What ``ds[keyword]`` returns: the converted ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class HeaderMap:
    """Read-only stand-in for a pydicom Dataset over byte-level top-level elements.

    Supports what :mod:`convert.dicom.sidecar` asks of a classic (single-frame)
    header: ``keyword in ds``, ``(group, element) in ds``, ``ds[keyword].value``,
    ``ds.get(keyword)`` and ``ds.private_block(group, creator)[offset].value``.
    Anything else (tag item access, sequences, UN values, iteration, other
    attributes) raises :class:`Declined`.
    """

    def __init__(self, elements: dict[int, tuple[str, bytes | None]], path: Path) -> None:
        self._elements = elements
        self._path = path
        self._values: dict[str, Any] = {}

    @staticmethod
    def _tag_of(key: Any) -> int:
        if isinstance(key, str):
            if key not in KEYWORDS:
                raise Declined(f"keyword {key} is not mirrored")
            return KEYWORDS[key][0]
        if isinstance(key, tuple) and len(key) == 2:
            return (int(key[0]) << 16) | int(key[1])
        if isinstance(key, int):
            return key
        raise Declined(f"key {key!r}")

    def __contains__(self, key: Any) -> bool:
        return self._tag_of(key) in self._elements

    def _value(self, keyword: str) -> Any:
        if keyword in self._values:
            return self._values[keyword]
        tag, vr = KEYWORDS.get(keyword, (None, None)) if isinstance(keyword, str) else (None, None)
        if tag is None:
            raise Declined(f"key {keyword!r} is not mirrored")
        file_vr, raw = self._elements[tag]
        if file_vr != vr or vr == "SQ":
            raise Declined(f"{keyword} stored as VR {file_vr}")
        value = convert_value(vr, raw)
        self._values[keyword] = value
        return value

    def __getitem__(self, key: Any) -> _Element:
        if not isinstance(key, str):
            raise Declined("item access by tag")
        if self._tag_of(key) not in self._elements:
            raise KeyError(key)
        return _Element(self._value(key))

    def get(self, key: Any, default: Any = None) -> Any:
        if not isinstance(key, str):
            raise Declined("get by tag")
        if self._tag_of(key) not in self._elements:
            return default
        return self._value(key)

    def private_block(self, group: int, private_creator: str, create: bool = False) -> "_PrivateBlock":
        """pydicom's ``Dataset.private_block`` (read only): KeyError when the creator is absent."""
        if create or not private_creator or group % 2 == 0:
            raise Declined("private block creation or odd arguments")
        for element in range(0x10, 0x100):
            tag = (group << 16) | element
            if tag not in self._elements:
                continue
            vr, raw = self._elements[tag]
            if vr != "LO":
                raise Declined("private creator with an unusual VR")
            if convert_value("LO", raw) == private_creator:
                return _PrivateBlock(self, group, element)
        raise KeyError(f"Private creator '{private_creator}' not found")

    def element_value(self, tag: int) -> Any:
        """Converted value of the element ``tag`` as stored (its own VR); KeyError when absent."""
        vr, raw = self._elements[tag]
        if vr == "UN":
            raise Declined("UN element (pydicom may look up its VR)")
        return convert_value(vr, raw)

    def __iter__(self) -> Any:
        raise Declined("iterating a header")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise Declined(f"header attribute {name}")


class _PrivateBlock:
    """pydicom's ``PrivateBlock`` (read only): ``block[offset].value``."""

    def __init__(self, header: HeaderMap, group: int, element: int) -> None:
        self._header, self._base = header, (group << 16) | (element << 8)

    def __getitem__(self, offset: int) -> _Element:
        if not 0 <= offset < 0x100:
            raise ValueError("Element offset must be less than 256")
        return _Element(self._header.element_value(self._base | offset))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise Declined(f"private block attribute {name}")


def parse_header(path: Path, pixel_offset: int) -> HeaderMap:
    """Every top-level element before PixelData of an explicit VR little-endian Part 10 file.

    Raises:
        Declined: the file is not laid out as the scan's byte-level parser found it.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(pixel_offset + 12)
    except OSError as exc:
        raise Declined(f"cannot read {path}: {exc}") from None
    if len(data) < pixel_offset + 8 or data[128:132] != b"DICM":
        raise Declined("file changed since it was indexed")
    pos = 144 + int.from_bytes(data[140:144], "little")
    for _, vr_text, raw in _walk(data, 132, pos):
        if raw is None or (vr_text == "UI" and not re.fullmatch(rb"[0-9.]*\x00?", raw)):
            raise Declined("unusual file meta UID")  # pydicom would warn while reading the file meta
    elements: dict[int, tuple[str, bytes | None]] = {}
    for tag, vr_text, raw in _walk(data, pos, pixel_offset):
        if tag == 0x00080005 and (raw is None or raw.rstrip(b" \x00") not in _PLAIN_CHARSETS):
            raise Declined("character set left to pydicom")
        elements[tag] = (vr_text, raw)
    return HeaderMap(elements, path)


#: SpecificCharacterSet values under which ASCII text decodes as ASCII without a warning.
_PLAIN_CHARSETS = {b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 101", b"ISO_IR 109", b"ISO_IR 110",
                   b"ISO_IR 144", b"ISO_IR 148", b"ISO_IR 126", b"ISO_IR 127", b"ISO_IR 138", b"ISO_IR 13",
                   b"ISO_IR 166", b"ISO_IR 203", b"GB18030", b"GBK"}


def _walk(data: bytes, pos: int, end: int) -> Any:
    """Yield ``(tag, VR, raw value)`` of the top-level elements in ``data[pos:end]`` (explicit VR LE)."""
    try:
        found, _ = elements.walk(data, pos, end, implicit=False, stop_tags=frozenset())
    except elements.NotCovered as exc:
        raise Declined(str(exc)) from None
    for element in found:
        raw = None if element.is_undefined_length else data[element.value_offset:element.end]
        yield element.tag, element.vr.decode("ascii"), raw  # undefined length (a sequence): not mirrored


# --------------------------------------------------------------------------- indexing
def _index(path: Path) -> Instance | str:
    """:func:`convert.dicom.scan.index_file` for what it decides without pydicom; else :class:`Declined`."""
    name = path.name.lower()
    if name in _scan._SKIP_NAMES:
        return "DICOMDIR index (not an image)" if name == "dicomdir" else "not DICOM (system file)"
    if name.endswith(_scan._SKIP_SUFFIXES) and not name.endswith((".dcm", ".dcm.gz")):
        return "not DICOM (file extension)"
    if name.endswith(".gz"):
        raise Declined("gzipped file")
    fast = _scan._fast_index(path)
    if fast is not None:
        return fast
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        raise Declined(f"unreadable file {path}") from None
    if not head:
        return "empty file"
    if not _scan._head_is_dicom(head):
        return "not DICOM (no DICM marker or DICOM tags)"
    raise Declined(f"{path} needs pydicom")


def _index_all(root: Path) -> tuple[list[Instance], list[tuple[Path, str]]]:
    """(instances, skipped) exactly as :func:`convert.dicom.scan.scan` lists them."""
    from convert.dicom.dicomdir import is_dicomdir_name

    skipped: list[tuple[Path, str]] = []
    files = _scan.iter_files(root, skipped)
    if any(is_dicomdir_name(p) for p in files):
        raise Declined("a DICOMDIR index (the scan follows its references)")
    workers = min(4, os.cpu_count() or 1)
    if len(files) < 8 or workers <= 1:
        outcomes = [_index(p) for p in files]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(_index, files, chunksize=16))
    instances: list[Instance] = []
    for path, outcome in zip(files, outcomes):
        if isinstance(outcome, Instance):
            instances.append(outcome)
        else:
            skipped.append((path, outcome))
    return instances, skipped


# --------------------------------------------------------------------------- planning
_NATIVE = {"1.2.840.10008.1.2.1"}  # explicit VR little endian: all the byte-level index accepts


def _time_step(series: Series, first: HeaderMap) -> float | None:
    """:func:`convert.dicom.reader._time_step` on byte-level headers."""
    from convert.dicom.reader import time_step_seconds

    return time_step_seconds(series, first.get("RepetitionTime"))


class _Plan:
    """Everything decided before writing: series, order, dtype, scaling, header, sidecar."""

    def __init__(self, series: Series, order: list[Instance], dtype: np.dtype, out_dtype: np.dtype,
                 mode: str, scalings: list[tuple[float, float]], header: bytes, sidecar: dict[str, Any] | None,
                 warnings: list[str]) -> None:
        self.series, self.order, self.dtype, self.out_dtype = series, order, dtype, out_dtype
        self.mode, self.scalings, self.header, self.sidecar, self.warnings = mode, scalings, header, sidecar, warnings
        self.volume: Any = None  # the Volume as the full path builds it, its array a zero-stride stand-in
        self.headers: Any = None  # the series' byte-level headers (LazyHeaders, volume order)


def _read_slice(inst: Instance, buffer: np.ndarray) -> None:
    """Read one file's pixel data into ``buffer`` (checks as the reader's native path; else Declined)."""
    nbytes = buffer.nbytes
    try:
        with open(inst.path, "rb") as fh:
            fh.seek(inst.pixel_offset or 0)
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"\xe0\x7f\x10\x00":
                raise Declined("pixel data not where the header ended")
            length = int.from_bytes(head[8:12], "little")
            if length == 0xFFFFFFFF or length < nbytes:
                raise Declined("pixel data too short or encapsulated")
            got = fh.readinto(memoryview(buffer).cast("B"))
    except OSError:
        raise Declined(f"cannot read {inst.path}") from None
    if got != nbytes:
        raise Declined("truncated pixel data")


def _fixed(inst: Instance, frame: np.ndarray) -> np.ndarray:
    """Stored bits masked/sign-extended as :func:`convert.dicom.reader._read_native_into` does."""
    from convert.dicom.pixels import fix_stored_bits

    bits = inst.bits_stored or inst.bits_allocated
    if bits < inst.bits_allocated:
        frame[...] = fix_stored_bits(frame, bits, inst.pixel_representation == 1)
    return frame


def _plan(src: Path, *, json_wanted: bool, tilt_correct: bool, stack_uneven: bool) -> _Plan:
    """Index, assemble and check the series; decide dtype, scaling, NIfTI header and sidecar (no output yet)."""
    instances, _ = _index_all(src)
    if not instances or any(inst.mosaic or inst.is_multiframe for inst in instances):
        raise Declined("no plain single-frame images")
    all_series = assemble(instances)
    if len(all_series) != 1:
        raise Declined("several series")
    return _plan_series(all_series[0], json_wanted=json_wanted, tilt_correct=tilt_correct,
                        stack_uneven=stack_uneven)


def _plan_series(series: Series, *, json_wanted: bool, tilt_correct: bool, stack_uneven: bool) -> _Plan:
    """Check one assembled series and decide dtype, scaling, NIfTI header and sidecar (no output yet)."""
    from convert.dicom.pixels import rescale_plan, stored_dtype
    from convert.dicom.reader import _native_fast_path_ok, slice_affine_lps
    from convert.dicom.sidecar import build_sidecar, meta_from_dataset
    from convert.formats._nifti1 import DATATYPE_CODES, nifti1_header
    from convert.volume import Volume, lps_to_ras

    if series.kind != "slices" or series.problem or series.missing:
        raise Declined("series the full path refuses or regrids")
    if series.duplicates:
        raise Declined("duplicate files: the full path reports them")
    del stack_uneven  # uneven series are declined either way (the full path words its spacing note)
    if series.uneven:
        raise Declined("uneven spacing: the full path resamples or stacks it")
    if tilt_correct and series.tilt_deg > TILT_THRESHOLD_DEG and series.n_slices > 1:
        raise Declined("resampling asked for")
    first = series.first
    if first.samples_per_pixel != 1 or first.photometric != "MONOCHROME2":
        raise Declined("colour or MONOCHROME1")
    if any(inst.philips_scale_slope is not None for inst in series.instances):
        raise Declined("Philips private scaling (precise/display values, sidecar fields)")
    dtype = stored_dtype(first.bits_allocated or 16, first.bits_stored or 16, first.pixel_representation == 1)
    if not _native_fast_path_ok(series, dtype) or any(i.transfer_syntax not in _NATIVE for i in series.instances):
        raise Declined("not uncompressed little endian")
    nk, nt = series.n_slices, series.n_times
    # the reader's job order (k outer, t inner) decides the scaling; the file order is t-major
    jobs = [inst for column in series.grid for inst in column]
    order = [series.grid[k][t] for t in range(nt) for k in range(nk)]
    scalings = [(inst.rescale_slope, inst.rescale_intercept) for inst in jobs]
    if len(set(scalings)) <= 1:
        value_range = (0.0, 0.0)
    else:  # per-slice scaling: the stored range picks the output type (one extra read of the pixels)
        lo, hi = np.inf, -np.inf
        buffer = np.empty((first.rows, first.columns), dtype=dtype)
        for inst in jobs:
            _read_slice(inst, buffer)
            frame = _fixed(inst, buffer)
            lo, hi = min(lo, float(frame.min())), max(hi, float(frame.max()))
        value_range = (lo, hi)
    mode, out_dtype, slope, intercept = rescale_plan([s for s, _ in scalings], [b for _, b in scalings], dtype,
                                                     value_range)
    if out_dtype.name not in DATATYPE_CODES:
        raise Declined("voxel type")
    headers = LazyHeaders(order, lambda inst: parse_header(inst.path, inst.pixel_offset or 0))
    first_header = headers[0]
    meta = meta_from_dataset(first_header)
    step = _time_step(series, first_header)
    if step is not None:
        meta = meta.replace(time_step=step)
    affine = lps_to_ras(slice_affine_lps(first, series.grid[-1][0], nk))
    shape = (first.columns, first.rows, nk) + ((nt,) if nt > 1 else ())
    try:
        volume = Volume(array=np.broadcast_to(np.zeros((), dtype=out_dtype), shape), affine=affine, meta=meta,
                        slope=slope, intercept=intercept)
    except ConvertError:
        raise Declined("geometry the full path reports") from None
    header = nifti1_header(volume.shape, volume.dtype, volume.affine, slope=volume.slope,
                           intercept=volume.intercept, scaled=volume.is_scaled, time_step=volume.meta.time_step)
    sidecar = build_sidecar(headers, volume, include_phi=False) if json_wanted else None
    plan = _Plan(series, order, dtype, out_dtype, mode, [(inst.rescale_slope, inst.rescale_intercept)
                                                         for inst in order], header, sidecar,
                 list(series.warnings))
    plan.volume, plan.headers = volume, headers  # for the tree path's diffusion check
    return plan


# --------------------------------------------------------------------------- writing
def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> bool:
    """Copy ``count`` bytes at ``offset`` of ``src_fd`` to ``dst_fd`` in the kernel; False if unsupported."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return False
    done = 0
    while done < count:
        try:
            n = copy(src_fd, dst_fd, count - done, offset + done)
        except OSError:
            if done:
                raise
            return False
        if n <= 0:
            raise Declined("truncated pixel data")
        done += n
    return True


def _write_voxels(plan: _Plan, fh: Any, raw_fd: int | None) -> None:
    """Stream every slice, in NIfTI order (t-major), into ``fh`` (after the header)."""
    first = plan.series.first
    buffer = np.empty((first.rows, first.columns), dtype=plan.dtype)
    nbytes = buffer.nbytes
    plain = plan.mode == "common"
    for inst, (s, b) in zip(plan.order, plan.scalings):
        needs_fix = (inst.bits_stored or inst.bits_allocated) < inst.bits_allocated
        if raw_fd is not None and plain and not needs_fix:
            try:
                src_fd = os.open(inst.path, os.O_RDONLY)
            except OSError:
                raise Declined(f"cannot read {inst.path}") from None
            try:
                head = os.pread(src_fd, 12, inst.pixel_offset or 0)
                if len(head) < 12 or head[:4] != b"\xe0\x7f\x10\x00":
                    raise Declined("pixel data not where the header ended")
                length = int.from_bytes(head[8:12], "little")
                if length == 0xFFFFFFFF or length < nbytes:
                    raise Declined("pixel data too short or encapsulated")
                if os.fstat(src_fd).st_size < (inst.pixel_offset or 0) + 12 + nbytes:
                    raise Declined("truncated pixel data")
                if _copy_range(src_fd, raw_fd, (inst.pixel_offset or 0) + 12, nbytes):
                    continue
            finally:
                os.close(src_fd)
        _read_slice(inst, buffer)
        frame = _fixed(inst, buffer)
        if not plain:
            values = frame.astype(np.float64) * s + b
            frame = (np.round(values) if plan.out_dtype.kind in "iu" else values).astype(plan.out_dtype)
        _write_all(fh, memoryview(np.ascontiguousarray(frame)).cast("B"))


def _write_all(fh: Any, data: memoryview) -> None:
    """Write all of ``data`` (an unbuffered file may take it in several calls)."""
    while len(data):
        n = fh.write(data)
        if n is None or n >= len(data):
            return
        data = data[n:]


def _write_nifti(plan: _Plan, temp: Path, gz: bool) -> None:
    """Write the NIfTI-1 file of ``plan`` (header, then every slice) to the temporary path ``temp``."""
    if not gz:
        with open(temp, "wb", buffering=0) as fh:  # unbuffered: slices are also copied via its fd
            _write_all(fh, memoryview(plan.header))
            _write_voxels(plan, fh, fh.fileno())
        return
    from convert.formats._nib import open_output

    with open_output(temp, True, 1) as fh:
        writer = _GzipLikeFullPath(fh, plan)
        _write_voxels(plan, writer, None)
        writer.finish()


class _GzipLikeFullPath:
    """Feeds the gzip writer the bytes the full path feeds it, cut the same way, so the stream is identical.

    python-isal's threaded writer (:func:`convert.formats._nib.open_output`) is a
    ``BufferedWriter`` (buffer = one block, 1 MiB) over a raw writer that
    compresses each raw ``write`` as one block (longer ones split into blocks),
    so the compressed bytes depend on how the data was cut. The full path writes
    the header as nibabel does (348 bytes, then the 4-byte extension flag) and
    the voxels as :func:`convert.formats._nib.iter_fortran_chunks` slabs (per
    time point, ``64 MiB // slice bytes`` slices each). This replays what the
    ``BufferedWriter`` does with those calls (CPython's algorithm: a write that
    fits is buffered; otherwise the buffer is flushed as one block, then data
    longer than the buffer goes to the raw writer whole, shorter data is
    buffered) directly on the raw writer, slice by slice, holding at most one
    block instead of a slab.
    """

    def __init__(self, fh: Any, plan: _Plan, max_bytes: int = SLAB_BYTES) -> None:
        raw = getattr(fh, "raw", None)
        block = getattr(raw, "block_size", None)
        if not isinstance(block, int) or type(raw).__name__ != "_ThreadedGzipWriter":
            raise Declined("gzip writer is not python-isal's threaded writer")
        first = plan.series.first
        self._fh, self._raw, self._block = fh, raw, block
        self._slice = max(1, first.rows * first.columns * plan.out_dtype.itemsize)
        step = max(1, max_bytes // self._slice)
        nk = plan.series.n_slices
        self._slabs = [min(step, nk - start) * self._slice for _ in range(plan.series.n_times)
                       for start in range(0, nk, step)]
        self._buffer = bytearray()  # the BufferedWriter's buffer (at most one block)
        self._piece = bytearray()  # direct mode: the current raw piece (at most one block)
        self._direct = False
        self._left = 0  # bytes still to come in the current slab
        if len(plan.header) != 352:
            raise Declined("unexpected NIfTI header size")
        self._logical(plan.header[:348])  # nibabel's Nifti1Header.write_to: two writes
        self._logical(plan.header[348:])

    def _logical(self, data: bytes) -> None:
        """One write call of the full path whose bytes are all at hand (the header)."""
        if len(data) <= self._block - len(self._buffer):
            self._buffer += data
            return
        raise Declined("header larger than a block")

    def _start_slab(self, length: int) -> None:
        if length <= self._block - len(self._buffer):
            self._direct = False
        else:
            if self._buffer:
                self._raw.write(bytes(self._buffer))
                self._buffer.clear()
            self._direct = length > self._block
        self._left = length

    def write(self, data: Any) -> int:
        """Take the next bytes of voxel data (whole slices, in file order)."""
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            if self._left == 0:
                if not self._slabs:
                    raise Declined("more voxel data than planned")
                self._start_slab(self._slabs.pop(0))
            n = min(self._left, len(view) - pos)
            chunk = view[pos : pos + n]
            if self._direct:
                self._piece += chunk
                while len(self._piece) >= self._block:
                    self._raw.write(bytes(self._piece[: self._block]))
                    del self._piece[: self._block]
            else:
                self._buffer += chunk
            self._left -= n
            pos += n
            if self._left == 0 and self._direct and self._piece:
                self._raw.write(bytes(self._piece))
                self._piece.clear()
        return len(view)

    def finish(self) -> None:
        """Check every slab arrived; leave the buffered rest to the BufferedWriter (its close flushes it)."""
        if self._left or self._slabs:
            raise Declined("less voxel data than planned")
        if self._buffer:
            self._raw.write(bytes(self._buffer))
            self._buffer.clear()


def convert_single_fast(src: str | Path, dst: str | Path, *, to: str | None = None, overwrite: bool = False,
                        sidecar: bool = True, sidecar_phi: bool = False, tilt_correct: bool = False,
                        allow_gaps: bool = False, stack_uneven: bool = False, philips_precise: bool = False,
                        on_warning: Callable[[str], None] | None = None) -> list[Path] | None:
    """Convert a one-series DICOM folder to ``.nii``/``.nii.gz`` (+ JSON sidecar) by streaming.

    Same arguments and outputs as the CLI's single-output DICOM conversion
    (``medconvert convert DICOM_DIR out.nii[.gz]``). ``philips_precise`` and
    ``allow_gaps`` only matter for series this path declines.

    Returns:
        The files written (NIfTI, then sidecar), or None when the fast path
        declined; nothing was written then and the caller runs the full path.

    Raises:
        ConvertError: only after the NIfTI is in place (e.g. the sidecar cannot be written).
    """
    del philips_precise, allow_gaps  # multi-frame and gapped series are declined
    from convert.atomic import atomic_file, check_writable
    from convert.formats import format_for_output

    src, dst = Path(src), Path(dst)
    if sidecar_phi or not src.is_dir():
        return None
    try:
        fmt = format_for_output(dst, to)
        if fmt.name not in ("nifti", "nifti-gz"):
            return None
        json_path = None
        if sidecar:
            stem = dst.name[: -len(".nii.gz")] if dst.name.lower().endswith(".nii.gz") else dst.stem
            json_path = dst.with_name(stem + ".json")
        check_writable([dst] + ([json_path] if json_path else []), overwrite)
        plan = _plan(src, json_wanted=json_path is not None, tilt_correct=tilt_correct,
                     stack_uneven=stack_uneven)
        if _is_diffusion(plan):  # .bval/.bvec (or a warning why not): the full path writes them
            return None
    except (Declined, Exception):  # nothing is written yet: the full path decides and reports
        return None
    for warning in plan.warnings:
        if on_warning is not None:
            on_warning(warning)
    try:
        with atomic_file(dst, overwrite=overwrite) as temp:
            _write_nifti(plan, temp, fmt.name == "nifti-gz")
    except Declined:
        return None  # the temporary file is gone; the full path reports what is wrong
    written = [dst]
    if json_path is not None and plan.sidecar is not None:
        from convert.dicom.sidecar import write_sidecar

        written.append(write_sidecar(json_path, plan.sidecar, overwrite=overwrite))
    return written


# --------------------------------------------------------------------------- folder output
class TreeOutcome:
    """One converted series of :func:`convert_tree_fast`: as :class:`convert.dicom.reader.SeriesOutcome`."""

    def __init__(self, label: str, warnings: list[str], written: list[Path]) -> None:
        self.label, self.warnings, self.written = label, warnings, written


class TreeResult:
    """What :func:`convert_tree_fast` wrote: one outcome per series (scan order), and the skipped files."""

    def __init__(self, outcomes: list[TreeOutcome], skipped: list[tuple[Path, str]]) -> None:
        self.outcomes, self.skipped = outcomes, skipped


def _name_fields(series: Series, header: HeaderMap) -> dict[str, str]:
    """:func:`convert.dicom.reader.name_fields` (one volume, no de-identification) on a byte-level header."""
    from convert.dicom.reader import name_fields

    def value_of(h: HeaderMap, key: str) -> Any:
        value = h.get(key, "")
        if isinstance(value, list):
            raise Declined(f"multi-valued {key}")  # pydicom prints a MultiValue its own way
        return value

    return name_fields(series, header, value_of=value_of)


def _is_diffusion(plan: _Plan) -> bool:
    """True when the full path would write ``.bval``/``.bvec`` for this series, or warn that it cannot
    (:func:`convert.dicom.reader.diffusion_outputs`): this path declines both."""
    from convert.dicom.diffusion import table_for_volume

    volume, series = plan.volume, plan.series
    if volume.array.ndim != 4:
        return False
    time_headers = None
    if len(series.grid[0]) == volume.shape[3]:
        time_headers = [parse_header(inst.path, inst.pixel_offset or 0) for inst in series.grid[0]]
    table, reason = table_for_volume(volume, time_headers)
    return table is not None or reason is not None


def convert_tree_fast(src: str | Path, out_dir: str | Path, *, to: str = "nifti-gz", name: str | None = None,
                      overwrite: bool = False, sidecar: bool = True, sidecar_phi: bool = False,
                      tilt_correct: bool = False, allow_gaps: bool = False, stack_uneven: bool = False,
                      philips_precise: bool = False,
                      progress: Callable[[int, int, str], None] | None = None) -> TreeResult | None:
    """Convert every series of a DICOM folder into ``out_dir`` by streaming, when every series qualifies.

    Same arguments and outputs as :func:`convert.dicom.reader.convert_dicom_tree`
    (``medconvert convert DICOM_DIR OUT_DIR``): one ``.nii``/``.nii.gz`` per
    series named from ``name`` (default :data:`~convert.dicom.reader.DEFAULT_NAME`),
    sanitised, ``_2``... on collisions, plus its JSON sidecar. Every series is
    planned (indexed, checked, header and sidecar built) before anything is
    written; all outputs are then written to temporary files and renamed into
    place together at the end, so a decline at any point leaves nothing behind.

    Declines (returns None) when any series would not stream (see
    :func:`convert_single_fast`), is a diffusion series (``.bval``/``.bvec``),
    would fail or needs a name field this path does not mirror, when an output
    exists (without ``overwrite``, or is a folder), and for ``--sidecar-phi``.
    The full path then runs from scratch and words every error and warning.

    ``progress(done, total, label)`` is called before each series is written
    and once at the end (``label`` "done"), as by ``convert_dicom_tree``.

    Returns:
        Per series its label, warnings and the files written; the skipped files.
    """
    del philips_precise, allow_gaps  # multi-frame and gapped series are declined
    from convert.atomic import atomic_paths
    from convert.dicom.reader import DEFAULT_NAME, NAME_FIELDS, _unique_stem, render_name
    from convert.formats import get_format

    src, out_dir = Path(src), Path(out_dir)
    template = DEFAULT_NAME if name is None else name
    if sidecar_phi or not src.is_dir() or "{Pseudonym}" in template:
        return None
    try:
        fmt = get_format(to)
        if fmt.name not in ("nifti", "nifti-gz") or not fmt.extensions:
            return None
        render_name(template, {k: "x" for k in NAME_FIELDS})  # a bad template: the full path words it
        if out_dir.exists() and not out_dir.is_dir():
            return None
        instances, skipped = _index_all(src)
        if not instances or any(inst.mosaic or inst.is_multiframe for inst in instances):
            return None
        ext = fmt.extensions[0]
        claimed: set[str] = set()
        jobs: list[tuple[_Plan, Path, Path | None]] = []
        for series in assemble(instances):
            if series.suffix:  # dcm2niix postfixes (_e2, _ph, _ADC...): named by the full path only
                return None
            plan = _plan_series(series, json_wanted=sidecar, tilt_correct=tilt_correct,
                                stack_uneven=stack_uneven)
            if _is_diffusion(plan):
                return None
            first = parse_header(series.first.path, series.first.pixel_offset or 0)
            stem = _unique_stem(render_name(template, _name_fields(series, first)), claimed)
            target, json_path = out_dir / f"{stem}{ext}", (out_dir / f"{stem}.json" if sidecar else None)
            for path in (target, json_path):
                if path is not None and path.exists() and (not overwrite or path.is_dir()):
                    return None  # the full path fails that series and words it
            jobs.append((plan, target, json_path))
    except (Declined, Exception):  # nothing is written yet: the full path decides and reports
        return None
    from convert.dicom.sidecar import write_sidecar

    targets = [p for _, target, json_path in jobs for p in (target, json_path) if p is not None]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)  # as the full path, before any series
        with atomic_paths(targets, overwrite=overwrite) as temps:
            temp_of = dict(zip(targets, temps))
            for n, (plan, target, json_path) in enumerate(jobs):
                if progress is not None:
                    progress(n, len(jobs), plan.series.label)
                _write_nifti(plan, temp_of[target], fmt.name == "nifti-gz")
                if json_path is not None and plan.sidecar is not None:
                    write_sidecar(temp_of[json_path], plan.sidecar, overwrite=True)
    except (Declined, Exception):  # every temporary file is gone; nothing was renamed into place
        return None
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    outcomes = [TreeOutcome(plan.series.label, list(plan.warnings),
                            [p for p in (target, json_path) if p is not None]) for plan, target, json_path in jobs]
    return TreeResult(outcomes, skipped)
