"""De-identify a DICOM file or a folder tree into a new folder, in parallel.

Output layout is built from pseudonyms only, never from source names::

    dst/<pseudo PatientID>/<pseudo StudyInstanceUID>/<pseudo SeriesInstanceUID>/<pseudo SOPInstanceUID>.dcm

Each input's header is read once and de-identified by the byte serializer
(:mod:`convert.anonymize.serialize`; files it does not cover take the pydicom
route, with the same decisions), the pixel data is copied by the kernel, never
decoded, and the output is written to a temporary name renamed into place. Bad
inputs (non-DICOM, truncated, unreadable, refused) are recorded in the
:class:`~convert.report.Report` (the run report of conversions too) and nothing is written for
them; the others continue. Large trees use a process pool whose workers die with the
process that started them (:func:`convert.workers.die_with_parent`).

An output folder carries a small manifest (:data:`MANIFEST_NAME`: the job's
fingerprint, never the key or PHI) so that a run killed half-way can be
resumed by the same command: see :func:`anonymize_path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import stat
import time
import warnings
import weakref
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID_dictionary

from convert.anonymize.audit import FileLog, Report, record_file, write_audit
from convert.anonymize.pseudonym import load_key
from convert.anonymize.decide import peek
from convert.anonymize.scrubber import Scrubber, quiet_pydicom
from convert.anonymize.serialize import PATH_KEYWORDS, ByteScrubber, fast_bytes, path_part
from convert.atomic import TEMPORARY_NAME, atomic_file, remove_stale_temporaries, write_bytes_atomic
from convert.dicom.validity import check_file_meta
from convert.errors import (AnonymizationError, ConvertError, CorruptFileError, InputNotFoundError, NoDicomError,
                             OutputExistsError, OutputMismatchError, OutputWriteError)
from convert.report import REPORT_HTML, REPORT_JSON, write_report
from convert.workers import die_with_parent

#: Media Storage Directory Storage (DICOMDIR) SOP class.
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

#: Below this many files the work runs in this process (a pool costs ~0.3 s to start).
PARALLEL_THRESHOLD = 48

#: The manifest of an output folder (hidden): what job wrote it, whether the job completed.
MANIFEST_NAME = ".medconvert-anonymize.json"
MANIFEST_FORMAT = 1

_WORKER: tuple[Scrubber, Path, bool, bool] | None = None


def iter_files(src: Path) -> Iterator[Path]:
    """Every regular file under ``src`` (:func:`convert.dicom.scan.iter_files` with hidden files included:
    a hidden DICOM file is de-identified too, not silently left behind)."""
    from convert.dicom.scan import iter_files as walk_files

    yield from walk_files(src, hidden=True) if Path(src).is_dir() else ([Path(src)] if Path(src).is_file() else [])


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


@dataclass(frozen=True)
class PixelSpan:
    """Bytes of a source file appended unchanged to an output (the pixel data element, from its
    tag to the end of the file).

    Attributes:
        value_offset: first byte copied (from the start of the file).
        length: bytes copied; the span ends at the end of the file.
    """

    value_offset: int
    length: int


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


def write_with_pixels(header: bytes, src: Path, span: PixelSpan | None, target: Path | str,
                      in_fd: int | None = None, source: bytes | None = None) -> None:
    """Write ``header``, then the bytes of ``src`` at ``span`` copied by the kernel (``in_fd``:
    ``src`` already open for reading; ``span`` None: the header only). ``source``: the whole
    source file, already read: the span is written from it with the header (one ``writev``)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        chunks = [memoryview(header)]
        if source is not None and span is not None and span.length:
            chunks.append(memoryview(source)[span.value_offset:span.value_offset + span.length])
            span = None
        while chunks:
            written = os.writev(fd, chunks) if len(chunks) > 1 else os.write(fd, chunks[0])
            while chunks and written >= len(chunks[0]):
                written -= len(chunks[0])
                chunks.pop(0)
            if chunks and written:
                chunks[0] = chunks[0][written:]
        if span is not None and span.length:
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
    is a header read without it (the byte serializer).
    """
    check_file_meta(ds, path)  # an unknown or empty transfer syntax, a file meta element with a wrong VR
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
    except ConvertError:  # e.g. an unknown VR (convert.dicom.validity): its own message
        raise
    except Exception:
        raise CorruptFileError("unreadable DICOM: pixel description missing or pixel data truncated", path) from None
    expected = (rows * cols * spp * frames * bits + 7) // 8
    got = pixel_length if pixel_length is not None else (0 if value is None else len(value))
    if got < expected:
        raise CorruptFileError(f"truncated: pixel data has {got} bytes, expected {expected}", path)


def dataset_bytes(ds: Dataset) -> bytes:
    """The bytes :func:`save_dataset` writes to a file for ``ds``."""
    try:
        data = fast_bytes(ds)
    except Exception:
        data = None
    if data is not None:
        return data
    buffer = io.BytesIO()
    _save_with_pydicom(ds, buffer)
    return buffer.getvalue()


def save_dataset(ds: Dataset, path: str | Path) -> None:
    """Write ``ds`` as a DICOM Part 10 file in its own transfer syntax (raw elements copied as read).

    When the object lacks a SOP class or instance UID (so a conformant file
    meta cannot be built) it is still written, with the meta it has.
    """
    if isinstance(path, (str, Path)):
        data = dataset_bytes(ds)
        with open(path, "wb") as fh:
            fh.write(data)
        return
    _save_with_pydicom(ds, path)


def _save_with_pydicom(ds: Dataset, path: Any) -> None:
    meta = ds.file_meta
    complete = bool(meta.get("MediaStorageSOPClassUID")) and bool(meta.get("MediaStorageSOPInstanceUID"))
    ts = meta.TransferSyntaxUID
    if complete:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian)


def output_path(dst: Path, ds: Dataset) -> Path:
    """``dst/<PatientID>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` from the de-identified dataset."""
    parts = [path_part(ds.get(keyword, ""), default) for keyword, default in PATH_KEYWORDS.values()]
    return dst.joinpath(*parts[:3], parts[3] + ".dcm")


def mark_duplicates(logs: list[FileLog]) -> list[FileLog]:
    """Tell the same instance twice apart from a clash, among the logs of one run (in input order).

    Two inputs go to one output when they share a SOPInstanceUID (output names
    come from the de-identified UIDs). The one written first is kept; another
    whose bytes are identical (e.g. a DICOMDIR media copy beside the folder) gets
    status ``duplicate``, not ``failed``; one with different content stays
    ``failed`` with a message naming the file it clashes with as ``input file N`` (its place
    in ``logs``, from 1: no input path, which may carry PHI, reaches a message).
    """
    import filecmp

    def same_content(a: Path, b: Path) -> bool:
        try:
            return filecmp.cmp(a, b, shallow=False)
        except OSError:
            return False

    writer: dict[Path, Path] = {}
    number = {log.source: n for n, log in enumerate(logs, 1)}
    for log in logs:
        if log.status in ("written", "done") and log.output is not None:
            writer.setdefault(log.output, log.source)
    for log in logs:
        if log.status == "done":  # a resumed run: a second input found the first one's output in place
            first, log.target = writer.get(log.output) if log.output is not None else None, log.output
        else:
            first = writer.get(log.target) if log.target is not None else None
        if log.status not in ("failed", "done") or first is None or first == log.source:
            continue
        if same_content(first, log.source):
            log.status, log.message = "duplicate", "same SOPInstanceUID and content as another input: skipped"
        else:
            log.status = "failed"
            log.message = (f"same SOPInstanceUID as input file {number.get(first, '?')} but different content; "
                           "only that file was written: check which copy is right")
        log.output, log.burned_in = None, False  # as in a run that was never interrupted: nothing written
        log.removed = log.replaced = log.emptied = log.cleaned = log.kept = 0
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


_SERIALIZERS: "weakref.WeakKeyDictionary[Scrubber, ByteScrubber]" = weakref.WeakKeyDictionary()


#: Output folders this process made or found (a run writes a series' files into one folder).
_MADE: set[Path] = set()


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents unless this process already did (or found it)."""
    if folder in _MADE:
        return
    folder.mkdir(parents=True, exist_ok=True)
    if len(_MADE) > 4096:
        _MADE.clear()
    _MADE.add(folder)


def serializer_of(scrubber: Scrubber) -> ByteScrubber:
    """The :class:`~convert.anonymize.serialize.ByteScrubber` of ``scrubber`` (created on first
    use; its decision cache lives as long as the scrubber)."""
    serializer = _SERIALIZERS.get(scrubber)
    if serializer is None:
        serializer = _SERIALIZERS[scrubber] = ByteScrubber(scrubber, check=_check_complete)
    return serializer


def process_file(scrubber: Scrubber, path: Path, dst: Path, overwrite: bool, single_target: Path | None = None,
                 resume: bool = False) -> tuple[FileLog, dict[str, tuple[str, str]]]:
    """De-identify one file; never raises for a bad input (the FileLog says what happened).

    The byte serializer takes every file the element layer covers; the others (and every file
    it leaves to pydicom, see :mod:`convert.anonymize.serialize`) take the pydicom route, with
    the same decisions. ``resume`` (and not ``overwrite``): an output already in place that
    holds byte for byte what this file gives is not written again (status ``done``); one
    that differs fails as an existing output does.
    """
    log = FileLog(source=path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        fd = -1  # reported below by sniff_dicom
    if fd >= 0:
        try:
            done = _process_bytes(scrubber, path, fd, dst, overwrite, single_target, log, resume)
        finally:
            os.close(fd)
        if done is not None:
            return done
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
        if resume and not overwrite and os.path.lexists(target):
            with quiet_pydicom():
                data = dataset_bytes(out)
            if _holds_bytes(target, data, None, -1):
                log.status, log.output, log.burned_in = "done", target, result.burned_in
                for name, value in result.counts.as_dict().items():
                    setattr(log, name, value)
                return log, result.mapping
        make_folder(target.parent)
        with atomic_file(target, overwrite=overwrite) as tmp, quiet_pydicom():
            try:
                save_dataset(out, tmp)
            except (TypeError, ValueError, OverflowError) as exc:  # pydicom's writer on a corrupt structure
                raise CorruptFileError(f"the data set cannot be written back: an element is corrupt "
                                       f"({str(exc).splitlines()[0][:200]}); re-export the file", path) from exc
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


def _process_bytes(scrubber: Scrubber, path: Path, fd: int, dst: Path, overwrite: bool,
                   single_target: Path | None, log: FileLog, resume: bool = False
                   ) -> tuple[FileLog, dict[str, tuple[str, str]]] | None:
    """:func:`process_file` through the byte serializer; None: the pydicom route takes the file."""
    try:
        out = serializer_of(scrubber).header(path, fd)
    except OSError:
        return None  # unreadable (a folder, an I/O error): the pydicom route reports it precisely
    except ConvertError as exc:
        return _log_failure(log, exc)
    except Exception as exc:  # a bug or a strange file: reported, never a silent switch of path
        log.status, log.message = "failed", f"could not de-identify: {type(exc).__name__}"
        return log, {}
    if out is None:
        return None
    try:
        target = single_target or dst.joinpath(*out.parts[:3], out.parts[3] + ".dcm")
        span = None if out.pixel_offset is None else PixelSpan(out.pixel_offset, out.size - out.pixel_offset)
        if resume and not overwrite and os.path.lexists(target) and _holds_bytes(target, out.header, span, fd):
            log.status = "done"
        else:
            make_folder(target.parent)
            with atomic_file(target, overwrite=overwrite) as tmp:
                write_with_pixels(out.header, path, span, tmp, fd, out.source)
    except ConvertError as exc:
        return _log_failure(log, exc)
    except Exception as exc:  # a bug or a strange file: reported, never a silent switch of path
        log.status, log.message = "failed", f"could not de-identify: {type(exc).__name__}"
        return log, {}
    log.output = target
    log.burned_in = out.burned_in
    log.removed, log.replaced, log.emptied, log.cleaned, log.kept = out.counts
    return log, out.mapping


def _holds_bytes(target: Path, header: bytes, span: PixelSpan | None, in_fd: int) -> bool:
    """True when ``target`` is a regular file holding exactly ``header`` followed by the bytes of
    ``span`` in the source open as ``in_fd`` (``span`` None: ``header`` only), i.e. what this run
    would write there. Compared in 1 MiB blocks; any error reads as False."""
    block = 1 << 20
    try:
        info = os.lstat(target)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(header) + (span.length if span else 0):
            return False
        with open(target, "rb") as fh:
            for start in range(0, len(header), block):
                if fh.read(min(block, len(header) - start)) != header[start:start + block]:
                    return False
            if span is None or not span.length:
                return True
            offset, remaining = span.value_offset, span.length
            while remaining:
                want = min(block, remaining)
                chunk = os.pread(in_fd, want, offset)
                if len(chunk) != want or fh.read(want) != chunk:
                    return False
                offset += want
                remaining -= want
            return True
    except OSError:
        return False


def _init_worker(parent_pid: int, key: bytes, keep: tuple[str, ...], allow_burned_in: bool, dst: str,
                 overwrite: bool, resume: bool) -> None:
    die_with_parent(parent_pid)  # a killed run's workers stop at once instead of writing on
    _MADE.clear()
    global _WORKER
    _WORKER = (Scrubber(key, keep, allow_burned_in), Path(dst), overwrite, resume)


def _work(paths: list[str]) -> list[tuple[FileLog, dict[str, tuple[str, str]]]]:
    assert _WORKER is not None
    scrubber, dst, overwrite, resume = _WORKER
    with quiet_pydicom():  # once per chunk (the per-file blocks inside then cost nothing)
        return [process_file(scrubber, Path(p), dst, overwrite, resume=resume) for p in paths]


def _chunks(items: list[Path], size: int) -> Iterator[list[str]]:
    """The files in chunks for the workers: whole folders (the slices of a series share one
    context and are read against each other, see :class:`~convert.anonymize.serialize.ByteScrubber`:
    a folder split between workers is set up by each), packed up to ``size`` files, a larger
    folder in pieces of ``size``. In input order."""
    chunk: list[str] = []
    folder = None
    for path in items:
        parent = path.parent
        if len(chunk) >= size or (parent != folder and chunk and len(chunk) + 1 > size // 2):
            yield chunk
            chunk = []
        folder = parent
        chunk.append(str(path))
    if chunk:
        yield chunk


def _is_within(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


#: Message under which the key's check value is computed (an HMAC: the key cannot be recovered from it).
_KEY_CHECK = b"medconvert anonymize: output folder key check"
_AUDIT_CHECK = b"medconvert anonymize: audit file check\0"


def job_fingerprint(key: bytes, scrubber: Scrubber) -> dict[str, Any]:
    """What decides every output byte of a de-identification job, as the manifest records it.

    The medconvert version, the method (profile and options), the options, ``allow_burned_in``,
    and ``key_check``: an HMAC-SHA256 of a fixed text under the key. Two runs with the same
    fingerprint write the same bytes for the same input; the key itself is never recorded.
    """
    from convert import __version__

    return {"tool": f"medconvert {__version__}", "method": scrubber.method_text,
            "options": sorted(scrubber.options), "allow_burned_in": bool(scrubber.allow_burned_in),
            "key_check": hmac.new(key, _KEY_CHECK, hashlib.sha256).hexdigest()}


def _fingerprint_differences(earlier: dict[str, Any], now: dict[str, Any], earlier_key_source: str | None,
                             key_source: str) -> list[str]:
    """What differs between the fingerprint of an earlier run and this one's, in words (no secret)."""
    def keep_text(options: Any) -> str:
        return ", ".join(f"--keep {o}" for o in options) if options else "no --keep option"

    out = []
    if earlier.get("key_check") != now["key_check"]:
        if earlier_key_source == "random":
            out.append("a random key (it had no --key, so its pseudonyms cannot be made again: that run cannot "
                       "be completed)")
        elif key_source == "random":
            out.append("another key (this run has no --key, so it drew a random one: pass the first run's "
                       "--key FILE)")
        else:
            out.append("another key")
    if list(earlier.get("options") or []) != now["options"]:
        out.append(f"{keep_text(earlier.get('options'))} (this run: {keep_text(now['options'])})")
    if bool(earlier.get("allow_burned_in")) != now["allow_burned_in"]:
        allowed, refused = "burned-in objects allowed (--allow-burned-in)", "burned-in objects refused"
        out.append(f"{allowed} (this run: {refused})" if earlier.get("allow_burned_in")
                   else f"{refused} (this run: {allowed})")
    if earlier.get("tool") != now["tool"]:
        out.append(f"{earlier.get('tool') or 'another version'} (this is {now['tool']})")
    if not out and earlier != now:
        out.append(f"another method ({earlier.get('method')!s})")
    return out


def _is_bookkeeping(name: str) -> bool:
    """The manifest, the run report (:data:`convert.report.REPORT_JSON`, ``REPORT_HTML``), or a temporary
    file of :func:`convert.atomic.temporary_name`: not an output."""
    return name in (MANIFEST_NAME, REPORT_JSON, REPORT_HTML) or TEMPORARY_NAME.match(name) is not None


def _holds_outputs(folder: Path) -> bool:
    """True when ``folder`` (a tree) holds any file besides the manifest and temporary files."""
    for _root, _dirs, names in os.walk(folder):
        if any(not _is_bookkeeping(name) for name in names):
            return True
    return False


@dataclass
class OutputFolder:
    """The output folder of a de-identification job and its manifest (:data:`MANIFEST_NAME`).

    The manifest is JSON, written atomically: ``{"medconvert": "anonymize output", "format": 1,
    "fingerprint": {...}, "key_source": str, "complete": bool, "outputs": int, "audit_check": str | None}``
    (:func:`job_fingerprint`; ``key_source`` as in the audit file; ``complete``: the last run
    went through every input; ``outputs``: how many of its inputs have their output in place;
    ``audit_check``: an HMAC under the key of the audit file that run wrote, so a rerun may
    replace that file and no other). No input path, no original value.

    Attributes:
        path: the folder.
        fingerprint: this run's.
        previous: the manifest found (None: none).
        resume: an earlier run of the same job wrote into the folder: outputs in place are checked
            and counted as done, the rest written.
        created: this run creates the folder.
        key_source: where this run's key came from (``file``, ``random``...; recorded, never the key).
    """

    path: Path
    fingerprint: dict[str, Any]
    previous: dict[str, Any] | None
    resume: bool
    created: bool
    key_source: str = ""

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST_NAME

    @classmethod
    def check(cls, path: Path, fingerprint: dict[str, Any], key_source: str, overwrite: bool) -> "OutputFolder":
        """Decide how this run may write into ``path``; nothing is written yet.

        Raises:
            OutputMismatchError: ``path`` holds outputs of a run with another key, other options
                or another medconvert version, and not ``overwrite``.
            ConvertError: the manifest is unreadable (and not ``overwrite``).
        """
        created = not path.exists()
        previous = None if created else _read_manifest(path / MANIFEST_NAME, overwrite)
        if previous is None:
            if not created and not overwrite and _holds_outputs(path):
                warnings.warn(f"{path} already holds files but no record of the run that wrote them (an older "
                              "medconvert, or another program): outputs in place are not replaced (--overwrite "
                              "replaces them), and outputs of another key or other options would be mixed "
                              "with this run's; an empty output folder avoids both", UserWarning, stacklevel=3)
            return cls(path, fingerprint, None, False, created, key_source)
        if previous.get("fingerprint") == fingerprint:
            return cls(path, fingerprint, previous, not overwrite, created, key_source)
        differences = "; ".join(_fingerprint_differences(previous.get("fingerprint") or {}, fingerprint,
                                                          previous.get("key_source"), key_source))
        if not _holds_outputs(path):  # an earlier run that wrote nothing: start afresh
            return cls(path, fingerprint, None, False, created, key_source)
        if not overwrite:
            raise OutputMismatchError(
                f"this folder holds the output of an earlier run with {differences}; writing into it would mix "
                "two de-identifications: rerun with that run's key and options to complete it, or choose an "
                "empty output folder", path)
        warnings.warn(f"{path} holds the output of an earlier run with {differences}: --overwrite replaces the "
                      "files this run writes, the other files of that run stay", UserWarning, stacklevel=3)
        return cls(path, fingerprint, None, False, created, key_source)

    def owns_audit(self, audit: Path, key: bytes) -> bool:
        """True when ``audit`` is the file the earlier run of this same job wrote (a rerun may replace it)."""
        recorded = (self.previous or {}).get("audit_check") if self.resume else None
        if not recorded:
            return False
        try:
            data = audit.read_bytes()
        except OSError:
            return False
        return hmac.compare_digest(recorded, hmac.new(key, _AUDIT_CHECK + data, hashlib.sha256).hexdigest())

    def begin(self) -> list[Path]:
        """Create the folder, remove the stale temporaries of killed runs (returned) and record this run."""
        self.path.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_temporaries(self.path, recursive=True)
        self._write(complete=False, outputs=(self.previous or {}).get("outputs") if self.resume else None,
                    audit_check=(self.previous or {}).get("audit_check") if self.resume else None)
        return stale

    def finish(self, report: Report, key: bytes) -> None:
        """Record the run as complete; a run that left no output removes what it created."""
        if report.nothing_written and self.previous is None:
            with contextlib.suppress(OSError):
                self.manifest.unlink()
            if self.created:
                for root, dirs, files in os.walk(self.path, topdown=False):
                    if not files:
                        with contextlib.suppress(OSError):
                            os.rmdir(root)
            return
        audit_check = (self.previous or {}).get("audit_check") if self.resume else None
        if report.audit is not None:
            with contextlib.suppress(OSError):
                audit_check = hmac.new(key, _AUDIT_CHECK + report.audit.read_bytes(), hashlib.sha256).hexdigest()
        self._write(complete=True, outputs=len(report.written) + len(report.done), audit_check=audit_check)

    def _write(self, complete: bool, outputs: int | None, audit_check: str | None) -> None:
        doc = {"medconvert": "anonymize output", "format": MANIFEST_FORMAT, "fingerprint": self.fingerprint,
               "key_source": self.key_source, "complete": complete, "outputs": outputs, "audit_check": audit_check}
        write_bytes_atomic(self.manifest, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                           overwrite=True)


def _read_manifest(path: Path, overwrite: bool) -> dict[str, Any] | None:
    """The manifest at ``path``; None when there is none (or it is unreadable and ``overwrite``)."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if overwrite:
            return None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
        raise ConvertError(f"cannot read the record of the earlier run ({reason}): delete this file to start "
                           "the output folder afresh, or pass --overwrite", path) from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("fingerprint"),
                                                                                            dict):
        if overwrite:
            return None
        raise ConvertError("not a manifest this medconvert can read: delete this file to start the output folder "
                           "afresh, or pass --overwrite", path)
    return doc


def anonymize_path(src: str | Path, dst: str | Path, *, key: bytes | str | Path | None = None,
                   keep: Iterable[str] = (), allow_burned_in: bool = False, audit: str | Path | None = None,
                   overwrite: bool = False, jobs: int | None = None, progress: bool = False,
                   reports: bool = False, workers: int | None = None) -> Report:
    """De-identify a file or a folder tree ``src`` into ``dst``; see :func:`convert.anonymize.anonymize`.

    Returns the run's :class:`~convert.report.Report` (``kind="anonymize"``): one outcome per DICOM
    input file (``input file N``: written, done, refused or failed; flagged when it may show
    burned-in text), the skipped and duplicate files, timings and ``jobs``. ``reports``: also write
    it as ``dst/report.json`` and ``dst/report.html`` (:func:`convert.report.write_report`; no
    input path, no header value) when ``dst`` is a folder; these two files are bookkeeping, never
    outputs: a rerun resumes beside them and replaces them. ``jobs``: worker processes (default:
    every core; 1: this process); ``workers`` is its older name.

    **Resume.** An output folder gets a manifest (:class:`OutputFolder`). A rerun of the
    same job (same key, options and medconvert version) into it, e.g. after the first was
    killed, writes only what is missing: an output already in place is checked byte for byte
    against what this run would write and counted in ``report.done`` (one that differs fails
    as an existing output does); the audit file that job wrote may be replaced. A rerun with
    another key or other options into a folder holding outputs is refused
    (:class:`~convert.errors.OutputMismatchError`). ``overwrite`` rewrites every output
    (a warning says so when the folder held another job's outputs). Temporary files that
    killed runs left in ``dst`` (or beside a ``dst`` file) are removed first
    (``report.stale_removed``). A run that leaves
    no output in place (every file failed, refused or skipped) removes the folder and manifest
    it created; its report is not ``ok``.

    Raises (before anything is written):
        InputNotFoundError: ``src`` does not exist.
        NoDicomError: ``src`` is a folder holding no DICOM file (nothing is written).
        ConvertError: ``dst`` is inside ``src``; ``dst`` is an existing file and
            ``overwrite`` is False; ``audit`` exists (and is not the one the same job wrote)
            and ``overwrite`` is False; ``dst``'s manifest is unreadable.
        OutputMismatchError: ``dst`` holds the outputs of another key or other options.
        AnonymizationError: bad options or key.
    """
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    src, dst = Path(src), Path(dst)
    jobs = jobs if jobs is not None else workers
    _MADE.clear()  # folders of an earlier run in this process may have been removed since
    key_bytes, key_source = load_key(key)
    keep = tuple(sorted(Scrubber(key_bytes, keep).options))  # validates options early
    if not src.exists():
        raise InputNotFoundError("input does not exist", src)
    if not os.access(src, os.R_OK):
        raise InputNotFoundError("cannot read input: permission denied", src)
    audit_path = Path(audit) if audit is not None else None
    if audit_path is not None and not audit_path.parent.is_dir():
        raise OutputWriteError(f"folder {audit_path.parent} for the audit file does not exist", audit_path)
    report = Report(source=src, kind="anonymize", key_source=key_source, started=started)
    scrubber = Scrubber(key_bytes, keep, allow_burned_in)
    single: Path | None = None
    files: list[Path] = []
    if src.is_file():
        if dst.exists() and not dst.is_dir():
            if not overwrite:
                raise OutputExistsError("output already exists; pass --overwrite to replace it", dst)
            single = dst
        elif not dst.exists() and dst.suffix.lower() in (".dcm", ".dicom", ".ima"):
            single = dst
        if single is not None and not single.parent.is_dir():
            raise OutputWriteError(f"output folder {single.parent} does not exist; create it first", single)
    else:
        if _is_within(dst, src):
            raise ConvertError("output folder is inside the input folder; choose a destination outside it", dst)
        if dst.exists() and not dst.is_dir():
            raise OutputExistsError("output exists and is a file, not a folder", dst)
        files = list(iter_files(src))
        if not files:
            raise NoDicomError(src)
    folder = None if single is not None else OutputFolder.check(dst, job_fingerprint(key_bytes, scrubber),
                                                                key_source, overwrite)
    replace_audit = overwrite
    if audit_path is not None and audit_path.exists() and not overwrite:
        if folder is None or not folder.owns_audit(audit_path, key_bytes):
            raise OutputExistsError("audit file already exists; pass --overwrite to replace it", audit_path)
        replace_audit = True  # the audit file of the interrupted run of this same job
    resume = folder is not None and folder.resume
    if folder is not None:
        report.stale_removed = folder.begin()
    else:  # one explicit output file: the killed runs' temporaries beside it
        report.stale_removed = remove_stale_temporaries(dst.parent)
    if src.is_file():
        log, mapping = process_file(scrubber, src, dst, overwrite, single_target=single, resume=resume)
        if log.status == "non-dicom":
            log.status = "failed"
        record_file(report, log)
        mappings = [mapping]
    else:
        mappings = []
        logs = []
        for log, mapping in _run_many(scrubber, files, dst, key_bytes, keep, allow_burned_in, overwrite,
                                      jobs, progress, resume):
            logs.append(log)
            mappings.append(mapping)
        for log in mark_duplicates(logs):
            record_file(report, log)
        report.jobs = pool_size(jobs, len(files))
        if all(log.status == "non-dicom" for log in report.per_file):  # nothing was written
            if folder is not None:
                folder.finish(report, key_bytes)
            raise NoDicomError(src, len(files))
    if audit_path is not None:
        merged: dict[str, dict[str, str]] = {"PatientID": {}, "StudyInstanceUID": {}, "SeriesInstanceUID": {}}
        for mapping in mappings:
            for name, (orig, new) in mapping.items():
                merged.setdefault(name, {})[orig] = new
        report.audit = write_audit(audit_path, report, merged, scrubber.method_text, keep, overwrite=replace_audit)
    if folder is not None:
        folder.finish(report, key_bytes)
    report.finished, report.seconds = datetime.now(timezone.utc), time.perf_counter() - clock
    if folder is not None:
        report.out_dir = dst
        if reports and dst.is_dir():  # not when a run that left nothing removed the folder it made
            write_report(report, dst, anonymized=True)
    return report


def pool_size(jobs: int | None, n_files: int) -> int:
    """How many processes de-identify ``n_files`` files: ``jobs`` (None or 0: every core), or 1 (this
    process) below :data:`PARALLEL_THRESHOLD` files."""
    n_workers = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    return 1 if n_workers <= 1 or n_files < PARALLEL_THRESHOLD else n_workers


#: Files de-identified in this process between two progress updates.
_SERIAL_BATCH = 32


def _run_many(scrubber: Scrubber, files: list[Path], dst: Path, key: bytes, keep: tuple[str, ...],
              allow_burned_in: bool, overwrite: bool, workers: int | None, progress: bool, resume: bool = False
              ) -> Iterator[tuple[FileLog, dict[str, tuple[str, str]]]]:
    n_workers = pool_size(workers, len(files))
    bar = _progress(len(files)) if progress else None
    try:
        if n_workers <= 1 or len(files) < PARALLEL_THRESHOLD:
            for start in range(0, len(files), _SERIAL_BATCH):
                with quiet_pydicom():  # once per batch: the per-file blocks inside then cost nothing
                    results = [process_file(scrubber, path, dst, overwrite, resume=resume)
                               for path in files[start:start + _SERIAL_BATCH]]
                for result in results:
                    if bar:
                        bar[0].advance(bar[1])
                    yield result
            return
        # small chunks (a few tens of ms of work each): cheap to send (paths only), and the last
        # chunks finish together on all cores
        size = max(16, len(files) // (n_workers * 6))
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)  # fork: no re-imports
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_init_worker,
                                 initargs=(os.getpid(), key, keep, allow_burned_in, str(dst), overwrite,
                                           resume)) as pool:
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
