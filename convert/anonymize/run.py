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

import os
import struct
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID_dictionary

from convert.anonymize.audit import FileLog, Report, write_audit
from convert.anonymize.pseudonym import load_key
from convert.anonymize.scrubber import Scrubber, peek, quiet_pydicom
from convert.atomic import atomic_file
from convert.errors import (AnonymizationError, ConvertError, CorruptFileError, InputNotFoundError, OutputExistsError,
                             OutputWriteError)

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


def _check_complete(ds: Dataset, path: Path) -> None:
    """Raise CorruptFileError when the file was cut short.

    pydicom stops silently at the end of a file, so a truncated file reads as a
    shorter dataset. It is recognised by: an element whose value is shorter
    than its declared length; an image SOP class without pixel data; native
    pixel data shorter than Rows x Columns x samples x frames x bits.
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
    has_pixels = any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
    if not has_pixels:
        name = UID_dictionary.get(sop_class.strip("\0 "), ("",))[0]
        if "Image Storage" in name:
            raise CorruptFileError(f"truncated: an image ({name}) without pixel data", path)
        return
    if 0x7FE00010 not in ds._dict or meta is None:
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
        value = ds._dict[0x7FE00010].value
        rows, cols = number(0x00280010), number(0x00280011)
        spp = number(0x00280002, 1)
        frames = number(0x00280008, 1)
        bits = number(0x00280100)
    except Exception:
        raise CorruptFileError("unreadable DICOM: pixel description missing or pixel data truncated", path) from None
    expected = (rows * cols * spp * frames * bits + 7) // 8
    if value is None or len(value) < expected:
        got = 0 if value is None else len(value)
        raise CorruptFileError(f"truncated: pixel data has {got} bytes, expected {expected}", path)


def fast_bytes(ds: Dataset) -> bytes | None:
    """Serialise ``ds`` as a Part 10 file, writing raw elements' bytes directly; None when unsure.

    Handles the common case only (little endian transfer syntax matching how the
    elements were read, no character set change, complete file meta); anything
    else returns None and :func:`save_dataset` uses pydicom's writer. New
    (non-raw) elements and sequences are always written by pydicom's
    ``write_data_element``. The output is byte-identical to pydicom's
    ``save_as(..., enforce_file_format=True)`` (tested).
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element, write_file_meta_info
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

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
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_implicit_VR = implicit
    encodings = ds.get("SpecificCharacterSet", None)
    chunks = [fp.getvalue()]
    pack = struct.pack
    for tag in sorted(ds._dict):
        if (tag & 0xFFFF) == 0 and (tag >> 16) > 6:
            continue
        elem = ds._dict[tag]
        value = elem.value if isinstance(elem, RawDataElement) else None
        if (isinstance(elem, RawDataElement) and elem.is_implicit_VR == implicit and elem.is_little_endian
                and isinstance(value, bytes) and elem.length != 0xFFFFFFFF and len(value) == elem.length
                and (implicit or (elem.VR and len(elem.VR) == 2))):
            if implicit:
                chunks.append(pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)))
            elif elem.VR in EXPLICIT_VR_LENGTH_32:
                chunks.append(pack("<HH2sHL", tag >> 16, tag & 0xFFFF, elem.VR.encode(), 0, len(value)))
            elif len(value) <= 0xFFFF:
                chunks.append(pack("<HH2sH", tag >> 16, tag & 0xFFFF, elem.VR.encode(), len(value)))
            else:
                return None
            chunks.append(value)
            continue
        part = DicomBytesIO()
        part.is_little_endian, part.is_implicit_VR = True, implicit
        write_data_element(part, ds[tag], encodings)
        chunks.append(part.getvalue())
    return b"".join(chunks)


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


def process_file(scrubber: Scrubber, path: Path, dst: Path, overwrite: bool, single_target: Path | None = None
                 ) -> tuple[FileLog, dict[str, tuple[str, str]]]:
    """De-identify one file; never raises for a bad input (the FileLog says what happened)."""
    log = FileLog(source=path)
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
    except AnonymizationError as exc:
        log.status, log.message = "refused", exc.message
        return log, {}
    except OutputExistsError:
        log.status = "failed"
        log.message = (f"output {target.name} already exists (an earlier run, or another input with the same "
                       "SOPInstanceUID); pass --overwrite (overwrite=True) to replace it")
        return log, {}
    except ConvertError as exc:
        log.status, log.message = "failed", exc.message
        return log, {}
    except Exception as exc:  # a pydicom problem on a strange file: report, continue
        log.status, log.message = "failed", f"could not de-identify: {type(exc).__name__}"
        return log, {}
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
            raise OutputExistsError("audit file already exists; pass --overwrite (overwrite=True) to replace it",
                                    audit_path)
        if not audit_path.parent.is_dir():
            raise OutputWriteError(f"folder {audit_path.parent} for the audit file does not exist", audit_path)
    report = Report(key_source=key_source)
    scrubber = Scrubber(key_bytes, keep, allow_burned_in)
    if src.is_file():
        single: Path | None = None
        if dst.exists() and not dst.is_dir():
            if not overwrite:
                raise OutputExistsError("output already exists; pass --overwrite (overwrite=True) to replace it", dst)
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
        dst.mkdir(parents=True, exist_ok=True)
        mappings = []
        for log, mapping in _run_many(scrubber, files, dst, key_bytes, keep, allow_burned_in, overwrite,
                                      workers, progress):
            report.add(log)
            mappings.append(mapping)
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
        size = max(4, min(64, len(files) // (n_workers * 8) or 1))
        with ProcessPoolExecutor(max_workers=n_workers, initializer=_init_worker,
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
