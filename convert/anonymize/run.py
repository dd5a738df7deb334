"""De-identify a DICOM file or a folder tree into a new folder, in parallel.

Output layout is built from pseudonyms only, never from source names::

    dst/<pseudo PatientID>/<pseudo StudyInstanceUID>/<pseudo SeriesInstanceUID>/<pseudo SOPInstanceUID>.dcm

Each input is read once (pixel data kept as raw bytes, never decoded),
scrubbed, and written to a temporary name renamed into place. Bad inputs
(non-DICOM, truncated, unreadable, refused) are recorded in the
:class:`~convert.anonymize.audit.Report` and nothing is written for them; the
others continue. Large trees use a process pool (the work is pydicom-bound).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary

from convert.anonymize.audit import FileLog, Report, write_audit
from convert.anonymize.pseudonym import load_key
from convert.anonymize.scrubber import Scrubber, peek, quiet_pydicom
from convert.atomic import atomic_file
from convert.errors import (AnonymizationError, ConvertError, CorruptFileError, InputNotFoundError, NoDicomError,
                             OutputExistsError, OutputWriteError)

#: Media Storage Directory Storage (DICOMDIR) SOP class.
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

#: Below this many files the work runs in this process (a pool costs ~0.3 s to start).
PARALLEL_THRESHOLD = 48

_WORKER: tuple[Scrubber, Path, bool] | None = None


def iter_files(src: Path) -> Iterator[Path]:
    """Every regular file under ``src`` (sorted, hidden files included, symlinked folders not followed)."""
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():
                yield path


def sniff_dicom(path: Path) -> tuple[bool, bool]:
    """``(is_dicom, needs_force)`` from the first bytes; raises OSError when unreadable.

    A Part 10 file has ``DICM`` at offset 128. Old files without the preamble
    are recognised when they start with a group 0002 or 0008 tag (little endian).
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return True, False
    if len(head) >= 8:
        group = int.from_bytes(head[0:2], "little")
        element = int.from_bytes(head[2:4], "little")
        if group in (0x0002, 0x0008) and element <= 0x0100:
            return True, True
    return False, False


def read_dataset(path: Path, force: bool = False) -> Dataset:
    """Read ``path`` fully without decoding pixels; raise a ConvertError naming it on any problem."""
    try:
        ds = pydicom.dcmread(path, force=force)
    except InvalidDicomError as exc:
        raise ConvertError(f"not a DICOM file ({exc})", path) from None
    except PermissionError:
        raise InputNotFoundError("cannot read: permission denied", path) from None
    except Exception as exc:
        raise ConvertError(f"unreadable DICOM (truncated or corrupt): {type(exc).__name__}", path) from None
    _check_complete(ds, path)
    return ds


#: Bytes read for the header-only fast path; larger headers take the full read.
FAST_HEADER_BYTES = 128 * 1024
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_PIXEL_TAG_BYTES = b"\xe0\x7f\x10\x00"


@dataclass(frozen=True)
class PixelSpan:
    """Where native PixelData sits in a source file (bytes, from the start of the file).

    Attributes:
        value_offset: first byte of the value (after the 12-byte element header).
        length: value length in bytes (even, defined).
        vr: "OB" or "OW" as written in the source.
    """

    value_offset: int
    length: int
    vr: str


def read_header_fast(path: Path, head: bytes | None = None, size: int | None = None
                     ) -> tuple[Dataset, PixelSpan] | None:
    """The header of a plain file, read without its pixel data, and where its pixel data sits.

    Applies only to the common case: a Part 10 file (preamble + ``DICM``) in
    explicit VR little endian whose header fits in :data:`FAST_HEADER_BYTES`,
    with one top-level native PixelData (OB/OW, defined length) that ends
    exactly at the end of the file, single frame. Returns None for anything
    else (implicit VR, big endian, deflated, encapsulated, multi-frame,
    trailing elements, truncated or short files, a header pydicom cannot
    parse): the caller then reads the whole file (:func:`read_dataset`), which
    also produces the precise error for bad files. Raises OSError when the file
    cannot be opened. ``head`` and ``size``: the file's first bytes (through the
    PixelData element header) and its size, already read (the file is not read again).
    """
    if head is None or size is None:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            buf = fh.read(FAST_HEADER_BYTES)
    else:
        buf = head
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    bio = io.BytesIO(buf)
    try:
        ds = pydicom.dcmread(bio, stop_before_pixels=True)
    except Exception:
        return None
    pos = bio.tell()
    meta = getattr(ds, "file_meta", None)
    ts = None if meta is None else meta.get("TransferSyntaxUID")
    if ts != _EXPLICIT_LE or ds.original_encoding != (False, True):
        return None
    if pos + 12 > len(buf) or buf[pos:pos + 4] != _PIXEL_TAG_BYTES:
        return None  # no PixelData in the buffer (big header, FloatPixelData, none at all)
    vr = buf[pos + 4:pos + 6]
    length = int.from_bytes(buf[pos + 8:pos + 12], "little")
    if vr not in (b"OB", b"OW") or length == 0xFFFFFFFF or length % 2 or pos + 12 + length != size:
        return None  # encapsulated, odd, truncated, or followed by more elements
    frames = ds._dict.get(0x00280008)
    if frames is not None:
        raw = frames.value if isinstance(frames, RawDataElement) else str(frames.value).encode()
        if raw is not None and raw.strip(b" \0") not in (b"", b"1"):
            return None  # multi-frame: the full read
    return ds, PixelSpan(pos + 12, length, vr.decode())


def _copy_span(src: Path, span: PixelSpan, out_fd: int, in_fd: int | None = None) -> None:
    """Append the source bytes of ``span`` to ``out_fd`` with a kernel copy (no Python buffers).

    ``in_fd``: the source already open for reading (else ``src`` is opened here).
    """
    if in_fd is None:
        with open(src, "rb") as fh:
            _copy_span(src, span, out_fd, fh.fileno())
        return
    offset, remaining = span.value_offset, span.length
    if os.fstat(in_fd).st_size != offset + remaining:
        raise CorruptFileError("input changed while it was being de-identified", src)
    kernel = hasattr(os, "copy_file_range")
    while remaining:
        copied = 0
        if kernel:
            try:
                copied = os.copy_file_range(in_fd, out_fd, remaining, offset)
            except OSError:
                copied = 0
            if copied <= 0:
                kernel = False  # e.g. another file system on an old kernel: plain copy
                continue
        else:
            chunk = os.pread(in_fd, min(remaining, 1 << 20), offset)
            copied = os.write(out_fd, chunk) if chunk else 0
        if copied <= 0:
            raise CorruptFileError("input changed while it was being de-identified", src)
        offset += copied
        remaining -= copied


def write_with_pixels(header: bytes, src: Path, span: PixelSpan, target: Path | str, in_fd: int | None = None) -> None:
    """Write ``header`` + a PixelData element whose value is copied from ``src`` at ``span``
    (``in_fd``: ``src`` already open for reading)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, span.vr.encode(), 0, span.length)
        data = memoryview(header + element)
        while data:
            data = data[os.write(fd, data):]
        _copy_span(src, span, fd, in_fd)
    finally:
        os.close(fd)


def _check_complete(ds: Dataset, path: Path, pixel_length: int | None = None) -> None:
    """Raise CorruptFileError when the file was cut short.

    pydicom stops silently at the end of a file, so a truncated file reads as a
    shorter dataset. It is recognised by: an element whose value is shorter
    than its declared length; an image SOP class without pixel data; native
    pixel data shorter than Rows x Columns x samples x frames x bits.
    ``pixel_length``: bytes of native PixelData present in the file when ``ds``
    is a header read without it (:func:`read_header_fast`).
    """
    for elem in ds._dict.values():
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF and elem.value is not None \
                and len(elem.value) < elem.length:
            raise CorruptFileError(f"truncated: element {elem.tag} has {len(elem.value)} of {elem.length} bytes",
                                   path)
    meta = getattr(ds, "file_meta", None)
    sop_elem = peek(ds, 0x00080016)
    sop_class = str((sop_elem.value if sop_elem is not None else "") or
                    (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    has_pixels = pixel_length is not None or any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    if not has_pixels:
        name = UID_dictionary.get(sop_class.strip("\0 "), ("",))[0]
        if "Image Storage" in name:
            raise CorruptFileError(f"truncated: an image ({name}) without pixel data", path)
        return
    if (0x7FE00010 not in ds._dict and pixel_length is None) or meta is None:
        return
    ts = getattr(meta, "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        return
    def number(tag: int, default: int | None = None) -> int:
        elem = peek(ds, tag)
        if elem is None or elem.value in (None, ""):
            if default is None:
                raise ValueError(f"missing {tag:08x}")
            return default
        return int(elem.value)

    try:
        value = ds._dict[0x7FE00010].value if pixel_length is None else None
        rows, cols = number(0x00280010), number(0x00280011)
        spp = number(0x00280002, 1)
        frames = number(0x00280008, 1)
        bits = number(0x00280100)
    except Exception:
        raise CorruptFileError("unreadable DICOM: pixel description missing or pixel data truncated", path) from None
    expected = (rows * cols * spp * frames * bits + 7) // 8
    got = pixel_length if pixel_length is not None else (0 if value is None else len(value))
    if got < expected:
        raise CorruptFileError(f"truncated: pixel data has {got} bytes, expected {expected}", path)


def fast_bytes(ds: Dataset) -> bytes | None:
    """Serialise ``ds`` as a Part 10 file, writing raw elements' bytes directly; None when unsure.

    Handles the common case only (little endian transfer syntax matching how the
    elements were read, no character set change, complete file meta); anything
    else returns None and :func:`save_dataset` uses pydicom's writer. Raw
    elements are copied as read (at any depth: sequences are framed here);
    new (non-raw) elements are encoded by pydicom's ``write_data_element``.
    The output is byte-identical to pydicom's ``save_as(...,
    enforce_file_format=True)`` (tested).
    """
    meta = ds.file_meta
    ts = meta.get("TransferSyntaxUID")
    if not ts or not meta.get("MediaStorageSOPClassUID") or not meta.get("MediaStorageSOPInstanceUID"):
        return None
    if not ts.is_little_endian or ts.is_deflated or ts.is_private:
        return None
    implicit = ts.is_implicit_VR
    if ds.original_encoding != (implicit, True) or ds.original_character_set != ds._character_set:
        return None
    if ds.get("SOPClassUID") not in (None, meta.MediaStorageSOPClassUID) or \
            ds.get("SOPInstanceUID") not in (None, meta.MediaStorageSOPInstanceUID):
        return None
    head = _meta_bytes(meta)
    chunks = [b"\x00" * 128 + b"DICM", head]
    _encode_dataset(ds, implicit, ds.get("SpecificCharacterSet", None), chunks)
    return b"".join(chunks)


_META_VRS = {0x00020001: "OB", 0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI", 0x00020012: "UI",
             0x00020013: "SH", 0x00020016: "AE"}


def _meta_bytes(meta: Dataset) -> bytes:
    """The file meta group as pydicom's ``write_file_meta_info(enforce_standard=True)`` writes it
    (explicit VR little endian, group length first); pydicom's writer for an unusual meta."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    values: dict[int, bytes] = {}
    simple = True
    for tag, elem in meta._dict.items():
        vr = _META_VRS.get(int(tag))
        value = elem.value
        if vr is None or elem.VR != vr or isinstance(elem, RawDataElement) or not isinstance(value, (str, bytes)) \
                or (vr != "OB") != isinstance(value, str) or (isinstance(value, str) and not value.isascii()):
            simple = False
            break
        data = value.encode("ascii") if isinstance(value, str) else bytes(value)
        if len(data) % 2:
            data += b" " if vr in ("SH", "AE") else b"\0"
        values[int(tag)] = data
    if simple:
        if not values.get(0x00020001):
            values[0x00020001] = b"\x00\x01"
        if not values.get(0x00020012):
            values[0x00020012] = (PYDICOM_IMPLEMENTATION_UID + "\0").encode("ascii")
        if 0x00020013 not in values:
            name = f"PYDICOM {'.'.join(pydicom.__version_info__)}".encode("ascii")
            values[0x00020013] = name + (b" " if len(name) % 2 else b"")
        if all(values.get(t) for t in (0x00020002, 0x00020003, 0x00020010)) and \
                all(len(v) <= 0xFFFF for v in values.values()):
            parts = []
            for tag in sorted(values):
                vr, data = _META_VRS[tag], values[tag]
                if vr == "OB":
                    parts.append(struct.pack("<HH2sHL", 2, tag & 0xFFFF, b"OB", 0, len(data)))
                else:
                    parts.append(struct.pack("<HH2sH", 2, tag & 0xFFFF, vr.encode(), len(data)))
                parts.append(data)
            body = b"".join(parts)
            return struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(body)) + body
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


def _encode_dataset(ds: Dataset, implicit: bool, encodings: Any, chunks: list[bytes]) -> None:
    """Append the little endian encoding of ``ds``'s elements (in tag order) to ``chunks``, as
    pydicom's ``write_dataset`` would: raw values as read, sequences framed here, other elements
    by pydicom's ``write_data_element``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    pack = struct.pack
    stored = ds._dict
    for tag in sorted(stored):
        if (tag & 0xFFFF) == 0 and (tag >> 16) > 6:
            continue
        elem = stored[tag]
        if isinstance(elem, RawDataElement):
            value = elem.value
            if (elem.is_implicit_VR == implicit and elem.is_little_endian and isinstance(value, bytes)
                    and elem.length != 0xFFFFFFFF and len(value) == elem.length
                    and (implicit or (elem.VR and len(elem.VR) == 2))):
                if implicit:
                    chunks.append(pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)))
                    chunks.append(value)
                    continue
                if elem.VR in EXPLICIT_VR_LENGTH_32:
                    chunks.append(pack("<HH2sHL", tag >> 16, tag & 0xFFFF, elem.VR.encode(), 0, len(value)))
                    chunks.append(value)
                    continue
                if len(value) <= 0xFFFF:
                    chunks.append(pack("<HH2sH", tag >> 16, tag & 0xFFFF, elem.VR.encode(), len(value)))
                    chunks.append(value)
                    continue
        elif elem.VR == "SQ":
            encoded = _encode_sequence(elem, implicit, encodings)
            if encoded is not None:
                chunks.append(encoded)
                continue
        key = _element_key(elem, implicit, encodings)
        cached = _ENCODED.get(key) if key is not None else None
        if cached is None:
            part = DicomBytesIO()
            part.is_little_endian, part.is_implicit_VR = True, implicit
            write_data_element(part, ds[tag], encodings)
            cached = part.getvalue()
            if key is not None:
                if len(_ENCODED) > 4096:
                    _ENCODED.clear()
                _ENCODED[key] = cached
        chunks.append(cached)


#: Encoded bytes of new (non-raw) elements, by (tag, VR, value, character sets, implicit): the
#: stamps, dummies and pseudonyms repeat from file to file.
_ENCODED: dict[tuple, bytes] = {}


def _element_key(elem: Any, implicit: bool, encodings: Any) -> tuple | None:
    """A cache key fully determining how pydicom encodes ``elem``, or None (not cacheable)."""
    if isinstance(elem, RawDataElement) or elem.VR == "SQ" or elem.is_undefined_length:
        return None
    value = elem.value
    if isinstance(value, (list, MultiValue)):
        if not all(type(v) in (str, int, float) for v in value):
            return None
        value = ("multi", tuple(value))
    elif value is not None and type(value) not in (str, int, float, bytes):
        return None
    if isinstance(encodings, (list, MultiValue)):
        encodings = tuple(encodings)
    elif encodings is not None and not isinstance(encodings, str):
        return None
    return (int(elem.tag), elem.VR, value, encodings, implicit)


def _encode_sequence(elem: Any, implicit: bool, encodings: Any) -> bytes | None:
    """A sequence element framed as pydicom frames it (items with defined lengths unless marked
    undefined); None when an item needs pydicom's conversions (other encoding or character set)."""
    import struct as _struct

    pack = _struct.pack
    items = elem.value if elem.value is not None else []
    body: list[bytes] = []
    for item in items:
        if not isinstance(item, Dataset) or 0x00080005 in item._dict \
                or item.original_encoding != (implicit, True) \
                or item.original_character_set != item._character_set:
            return None
        inner: list[bytes] = []
        _encode_dataset(item, implicit, encodings, inner)
        content = b"".join(inner)
        if getattr(item, "is_undefined_length_sequence_item", False):
            body.append(pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + content + pack("<HHL", 0xFFFE, 0xE00D, 0))
        else:
            body.append(pack("<HHL", 0xFFFE, 0xE000, len(content)) + content)
    value = b"".join(body)
    tag = int(elem.tag)
    undefined = bool(elem.is_undefined_length)
    length = 0xFFFFFFFF if undefined else len(value)
    if implicit:
        head = pack("<HHL", tag >> 16, tag & 0xFFFF, length)
    else:
        head = pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
    return head + value + (pack("<HHL", 0xFFFE, 0xE0DD, 0) if undefined else b"")


def save_dataset(ds: Dataset, path: str | Path) -> None:
    """Write ``ds`` as a DICOM Part 10 file in its own transfer syntax (raw elements copied as read).

    When the object lacks a SOP class or instance UID (so a conformant file
    meta cannot be built) it is still written, with the meta it has.
    """
    if isinstance(path, (str, Path)):
        try:
            data = fast_bytes(ds)
        except Exception:
            data = None
        if data is not None:
            with open(path, "wb") as fh:
                fh.write(data)
            return
    meta = ds.file_meta
    complete = bool(meta.get("MediaStorageSOPClassUID")) and bool(meta.get("MediaStorageSOPInstanceUID"))
    ts = meta.TransferSyntaxUID
    if complete:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian)


def output_path(dst: Path, ds: Dataset) -> Path:
    """``dst/<PatientID>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` from the de-identified dataset."""
    def part(keyword: str, default: str) -> str:
        value = str(ds.get(keyword, "") or "").strip().strip("\0")
        safe = "".join(c for c in value if c.isalnum() or c in ".-_")
        return safe or default

    return (dst / part("PatientID", "NOID") / part("StudyInstanceUID", "NOSTUDY")
            / part("SeriesInstanceUID", "NOSERIES") / (part("SOPInstanceUID", "NOUID") + ".dcm"))


def mark_duplicates(logs: list[FileLog]) -> list[FileLog]:
    """Tell the same instance twice apart from a clash, among the logs of one run (in input order).

    Two inputs go to one output when they share a SOPInstanceUID (output names
    come from the de-identified UIDs). The one written first is kept; another
    whose bytes are identical (e.g. a DICOMDIR media copy beside the folder) gets
    status ``duplicate``, not ``failed``; one with different content stays
    ``failed`` with a message naming the file it clashes with.
    """
    import filecmp

    def same_content(a: Path, b: Path) -> bool:
        try:
            return filecmp.cmp(a, b, shallow=False)
        except OSError:
            return False

    writer: dict[Path, Path] = {}
    for log in logs:
        if log.status == "written" and log.output is not None:
            writer.setdefault(log.output, log.source)
    for log in logs:
        first = writer.get(log.target) if log.target is not None else None
        if log.status != "failed" or first is None or first == log.source:
            continue
        if same_content(first, log.source):
            log.status, log.message = "duplicate", "same SOPInstanceUID and content as another input: skipped"
        else:
            log.message = (f"same SOPInstanceUID as {first} but different content; only that file was "
                           "written: check which copy is right")
    return logs


def _log_failure(log: FileLog, exc: ConvertError) -> tuple[FileLog, dict[str, tuple[str, str]]]:
    """Record a refused (burned-in) or failed file in ``log``; nothing was written for it."""
    if isinstance(exc, AnonymizationError):
        log.status, log.message = "refused", exc.message
    elif isinstance(exc, OutputExistsError):
        name = exc.path.name if exc.path is not None else "output"
        log.target = exc.path
        log.status, log.message = "failed", (
            f"output {name} already exists (an earlier run, or another input with the same "
            "SOPInstanceUID); pass --overwrite to replace it")
    else:
        log.status, log.message = "failed", exc.message
    return log, {}


#: Use the byte-level fast path (:mod:`convert.anonymize.fastpath`); False: the full path for every file.
FAST_PATH = True


def fast_path_of(scrubber: Scrubber) -> Any:
    """The :class:`~convert.anonymize.fastpath.FastPath` of ``scrubber`` (created on first use;
    its memo lives as long as the scrubber); None when :data:`FAST_PATH` is off."""
    if not FAST_PATH:
        return None
    fast = getattr(scrubber, "_fast_path", None)
    if fast is None:
        from convert.anonymize.fastpath import FastPath

        fast = FastPath(scrubber)
        scrubber._fast_path = fast  # type: ignore[attr-defined]
    return fast


def process_file(scrubber: Scrubber, path: Path, dst: Path, overwrite: bool, single_target: Path | None = None
                 ) -> tuple[FileLog, dict[str, tuple[str, str]]]:
    """De-identify one file; never raises for a bad input (the FileLog says what happened)."""
    fast_path = fast_path_of(scrubber)
    if fast_path is not None:
        done = fast_path.process(path, dst, overwrite, single_target)
        if done is not None:
            return done
    log = FileLog(source=path)
    fast: tuple[Dataset, PixelSpan] | None = None
    try:
        with quiet_pydicom():
            fast = read_header_fast(path)
    except OSError:
        fast = None  # the error is reported below by sniff_dicom
    if fast is not None:
        result = _process_fast(scrubber, path, fast[0], fast[1], dst, overwrite, single_target, log)
        if result is not None:
            return result
    try:
        is_dicom, force = sniff_dicom(path)
    except PermissionError:
        log.status, log.message = "failed", "cannot read: permission denied"
        return log, {}
    except OSError as exc:
        log.status, log.message = "failed", f"cannot read: {exc.strerror or exc}"
        return log, {}
    if not is_dicom:
        log.status, log.message = "non-dicom", "not a DICOM file"
        return log, {}
    try:
        with quiet_pydicom():
            ds = read_dataset(path, force=force)
        if str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY \
                or 0x00041220 in ds._dict:
            # a DICOMDIR indexes the source paths and names; it is meaningless for the new tree
            log.status, log.message = "non-dicom", "DICOMDIR (media index) not copied"
            return log, {}
        result = scrubber.scrub(ds)
        out = result.dataset
        target = single_target or output_path(dst, out)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, overwrite=overwrite) as tmp, quiet_pydicom():
            save_dataset(out, tmp)
    except ConvertError as exc:
        return _log_failure(log, exc)
    except Exception as exc:  # a pydicom problem on a strange file: report, continue
        log.status, log.message = "failed", f"could not de-identify: {type(exc).__name__}"
        return log, {}
    log.output = target
    log.burned_in = result.burned_in
    for name, value in result.counts.as_dict().items():
        setattr(log, name, value)
    return log, result.mapping


def _process_fast(scrubber: Scrubber, path: Path, ds: Dataset, span: PixelSpan, dst: Path, overwrite: bool,
                  single_target: Path | None, log: FileLog
                  ) -> tuple[FileLog, dict[str, tuple[str, str]]] | None:
    """:func:`process_file` for a header read by :func:`read_header_fast`: the header is scrubbed and
    written, the pixel bytes are copied verbatim by the kernel. None: take the full path instead."""
    try:
        with quiet_pydicom():
            _check_complete(ds, path, pixel_length=span.length)
            if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY or 0x00041220 in ds._dict:
                return None
            result = scrubber.scrub(ds)
            out = result.dataset
            header = fast_bytes(out) if all(t < 0x7FE00010 for t in out._dict) else None
        if header is None:
            return None  # an unusual header: pydicom's writer on the full dataset decides
        target = single_target or output_path(dst, out)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, overwrite=overwrite) as tmp:
            write_with_pixels(header, path, span, tmp)
    except ConvertError as exc:
        return _log_failure(log, exc)
    except Exception:  # anything unexpected: the full path decides (and reports)
        return None
    result.counts.kept += 1  # the pixel data, kept as it is
    log.output = target
    log.burned_in = result.burned_in
    for name, value in result.counts.as_dict().items():
        setattr(log, name, value)
    return log, result.mapping


def _init_worker(key: bytes, keep: tuple[str, ...], allow_burned_in: bool, dst: str, overwrite: bool) -> None:
    global _WORKER
    _WORKER = (Scrubber(key, keep, allow_burned_in), Path(dst), overwrite)


def _work(paths: list[str]) -> list[tuple[FileLog, dict[str, tuple[str, str]]]]:
    assert _WORKER is not None
    scrubber, dst, overwrite = _WORKER
    return [process_file(scrubber, Path(p), dst, overwrite) for p in paths]


def _chunks(items: list[Path], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield [str(p) for p in items[start:start + size]]


def _is_within(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def anonymize_path(src: str | Path, dst: str | Path, *, key: bytes | str | Path | None = None,
                   keep: Iterable[str] = (), allow_burned_in: bool = False, audit: str | Path | None = None,
                   overwrite: bool = False, workers: int | None = None, progress: bool = False) -> Report:
    """De-identify a file or a folder tree ``src`` into ``dst``; see :func:`convert.anonymize.anonymize`.

    Raises (before anything is written):
        InputNotFoundError: ``src`` does not exist.
        NoDicomError: ``src`` is a folder holding no DICOM file (nothing is written).
        ConvertError: ``dst`` is inside ``src``; ``dst`` is an existing file and
            ``overwrite`` is False; ``audit`` exists and ``overwrite`` is False.
        AnonymizationError: bad options or key.
    """
    src, dst = Path(src), Path(dst)
    key_bytes, key_source = load_key(key)
    keep = tuple(sorted(Scrubber(key_bytes, keep).options))  # validates options early
    if not src.exists():
        raise InputNotFoundError("input does not exist", src)
    if not os.access(src, os.R_OK):
        raise InputNotFoundError("cannot read input: permission denied", src)
    audit_path = Path(audit) if audit is not None else None
    if audit_path is not None:
        if audit_path.exists() and not overwrite:
            raise OutputExistsError("audit file already exists; pass --overwrite to replace it",
                                    audit_path)
        if not audit_path.parent.is_dir():
            raise OutputWriteError(f"folder {audit_path.parent} for the audit file does not exist", audit_path)
    report = Report(key_source=key_source)
    scrubber = Scrubber(key_bytes, keep, allow_burned_in)
    if src.is_file():
        single: Path | None = None
        if dst.exists() and not dst.is_dir():
            if not overwrite:
                raise OutputExistsError("output already exists; pass --overwrite to replace it", dst)
            single = dst
        elif not dst.exists() and dst.suffix.lower() in (".dcm", ".dicom", ".ima"):
            single = dst
        if single is not None and not single.parent.is_dir():
            raise OutputWriteError(f"output folder {single.parent} does not exist; create it first", single)
        log, mapping = process_file(scrubber, src, dst, overwrite, single_target=single)
        if log.status == "non-dicom":
            log.status = "failed"
        report.add(log)
        mappings = [mapping]
    else:
        if _is_within(dst, src):
            raise ConvertError("output folder is inside the input folder; choose a destination outside it", dst)
        if dst.exists() and not dst.is_dir():
            raise OutputExistsError("output exists and is a file, not a folder", dst)
        files = list(iter_files(src))
        if not files:
            raise NoDicomError(src)
        created = not dst.exists()
        dst.mkdir(parents=True, exist_ok=True)
        mappings = []
        logs = []
        for log, mapping in _run_many(scrubber, files, dst, key_bytes, keep, allow_burned_in, overwrite,
                                      workers, progress):
            logs.append(log)
            mappings.append(mapping)
        for log in mark_duplicates(logs):
            report.add(log)
        if all(log.status == "non-dicom" for log in report.per_file):  # nothing was written
            if created:
                with contextlib.suppress(OSError):
                    dst.rmdir()
            raise NoDicomError(src, len(files))
    if audit_path is not None:
        merged: dict[str, dict[str, str]] = {"PatientID": {}, "StudyInstanceUID": {}, "SeriesInstanceUID": {}}
        for mapping in mappings:
            for name, (orig, new) in mapping.items():
                merged.setdefault(name, {})[orig] = new
        report.audit = write_audit(audit_path, report, merged, scrubber.method_text, keep, overwrite=overwrite)
    return report


def _run_many(scrubber: Scrubber, files: list[Path], dst: Path, key: bytes, keep: tuple[str, ...],
              allow_burned_in: bool, overwrite: bool, workers: int | None, progress: bool
              ) -> Iterator[tuple[FileLog, dict[str, tuple[str, str]]]]:
    n_workers = workers if workers and workers > 0 else (os.cpu_count() or 1)
    bar = _progress(len(files)) if progress else None
    try:
        if n_workers <= 1 or len(files) < PARALLEL_THRESHOLD:
            for path in files:
                result = process_file(scrubber, path, dst, overwrite)
                if bar:
                    bar[0].advance(bar[1])
                yield result
            return
        # small chunks (a few tens of ms of work each): cheap to send (paths only), and the last
        # chunks finish together on all cores
        size = max(4, min(16, len(files) // (n_workers * 8) or 1))
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)  # fork: no re-imports
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_init_worker,
                                 initargs=(key, keep, allow_burned_in, str(dst), overwrite)) as pool:
            for results in pool.map(_work, _chunks(files, size)):
                for result in results:
                    if bar:
                        bar[0].advance(bar[1])
                    yield result
    finally:
        if bar:
            bar[0].stop()


def _progress(total: int):  # pragma: no cover - terminal only
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("files", total=total)
    bar.start()
    return bar, task
