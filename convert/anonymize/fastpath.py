"""Byte-level fast path: de-identify plain files without building pydicom objects per file.

The oracle is the full path (pydicom reads the header, :class:`~convert.anonymize.scrubber.Scrubber`
scrubs it, :func:`~convert.anonymize.run.fast_bytes` serialises it): whatever this module writes is
byte-identical to what the full path writes for the same file, or it declines and the full path
runs (``tests/test_anonymize_fastpath.py`` checks both on every test corpus and under hypothesis).

How a file goes through:

1. **Parse** (:func:`parse_file`): the first bytes of a Part 10 file in explicit VR little endian
   are cut into top-level elements (tag, VR, byte span), with one native PixelData (OB/OW,
   defined length) ending exactly at the end of the file. Undefined-length sequences are walked
   to their delimiter; their content is not interpreted. Anything else (another transfer
   syntax, an invalid VR, an undefined-length non-sequence, tags out of order, command or
   DICOMDIR groups, other pixel data elements, trailing elements, truncation, a header over
   :data:`HEADER_BYTES`) declines.
2. **Context**: every input of the scrubber's decisions that is not the element itself is
   collected into a key: the raw bytes of SpecificCharacterSet, ImageType, SOPClassUID,
   Modality, BurnedInAnnotation, the pixel description (rows, columns, samples, frames, bits),
   the attributes whose words the scrubber blanks in free text (names, IDs, institution...:
   ``scrubber._TOKEN_TAGS``, which include PatientID and PatientName), the file meta's SOP class
   and transfer syntax. The scrubber's key and options are fixed per :class:`FastPath`.
3. **Learn** (first file of a context, or any file with an element this path cannot decide):
   the full path runs on the file (pydicom header read, ``Scrubber.scrub_traced``, ``fast_bytes``)
   and its output is cut back into top-level elements. Each input element's outcome (its output
   bytes, the counts it contributed, and for PatientID/Study/Series/SOP instance UIDs their texts)
   is stored under its exact input bytes. The file is written from the full path's bytes, and
   the reassembly of those per-element outcomes is checked to reproduce them exactly (otherwise
   the context is never taken fast again).
4. **Fast**: for a file of a known context every element is looked up by its exact bytes; an
   element not seen before is decided from the same action table the scrubber uses
   (:func:`~convert.anonymize.scrubber.resolve_action`) when its outcome does not depend on
   anything but its tag, VR and value (removed; kept as stored, after the VR syntax check;
   emptied; an ASCII dummy; an instance UID replaced by its keyed pseudonym); anything else
   makes the file a learning file. The output header is assembled from the outcomes, the
   de-identification stamps and a file meta group built like pydicom's, then written to the
   atomic temporary file followed by the pixel bytes, which the kernel copies
   (``copy_file_range``).

Element outcomes are exact functions of (scrubber key and options, context key, element bytes),
so the memo is sound: the scrubber's per-element decision reads nothing else of the object. What
does read other elements is declined here: private elements when the Retain Safe Private option
may keep them (private creators of the block), a top-level CodingSchemeDesignator (local codes
rewrite sibling elements), refused burned-in objects.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from convert.anonymize.audit import FileLog
from convert.anonymize.profile import Plan, compile_plan
from convert.anonymize.scrubber import (_ASCII_VRS, _DUMMY, _TOKEN_TAGS, Scrubber, quiet_pydicom, resolve_action,
                                        ui_text)

#: Bytes read first; a header that does not fit is re-read with :data:`HEADER_BYTES`.
FIRST_READ = 16 * 1024
#: Largest header taken by this path (larger ones go the full way).
HEADER_BYTES = 128 * 1024

_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_FIRST_PIXEL_TAG = 0x7FE00008  # FloatPixelData; DoubleFloatPixelData is 7FE0,0009
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
_LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_VALID_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())
_SCHEME = 0x00080102
_SOP_INSTANCE = 0x00080018
#: Elements the scrubber adds (and overwrites when present) after scrubbing the object.
_STAMPS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)
_BURNED_IN = 0x00280301
#: Elements whose texts name the output path (and the audit mapping).
_PATH_TAGS = {0x00100020: "PatientID", 0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID",
              _SOP_INSTANCE: "SOPInstanceUID"}
_MAPPED = ((0x00100020, "PatientID"), (0x0020000D, "StudyInstanceUID"), (0x0020000E, "SeriesInstanceUID"))
#: Top-level elements every decision may depend on (see the module docstring).
CONTEXT_TAGS: frozenset[int] = frozenset({
    0x00080005, 0x00080008, 0x00080016, 0x00080060, _BURNED_IN,
    0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100,
}) | frozenset(int(t) for t in _TOKEN_TAGS)
_CONTEXT_ORDER = tuple(sorted(CONTEXT_TAGS))
#: Counts are summed as one integer: five 32-bit fields (removed, replaced, emptied, cleaned, kept).
_SHIFTS = (0, 32, 64, 96, 128)
_MASK = (1 << 32) - 1
_REMOVED, _REPLACED, _EMPTIED, _KEPT = 1, 1 << 32, 1 << 64, 1 << 128
_MAX_ENTRIES = 50_000
_NO_TAG = 1 << 32  # above every tag
#: VR bytes -> True for the 4-byte length VRs, False for the 2-byte ones (absent: not a valid VR).
_VR_LONG: dict[bytes, bool] = {}

_VR_LONG.update({vr: vr in _LONG_VRS for vr in _VALID_VRS})
_head = struct.Struct("<HH2sH").unpack_from
_long_length = struct.Struct("<L").unpack_from
_pack_short = struct.Struct("<HH2sH").pack
_pack_long = struct.Struct("<HH2sHL").pack


class Declined(Exception):
    """The fast path leaves this file to the full path."""


@dataclass(frozen=True)
class Parsed:
    """A file cut into top-level elements (see :func:`parse_file`).

    Attributes:
        buf: the bytes read: preamble, meta, header and the PixelData element's own header (not its value).
        elements: ``(tag, start, value_start, end)`` byte offsets into ``buf`` for each top-level
            element before PixelData, in file order (strictly ascending tags).
        context: tag -> element bytes for the :data:`CONTEXT_TAGS` present.
        meta_sop_class: raw value of MediaStorageSOPClassUID (b"" when absent).
        ts: raw value of TransferSyntaxUID.
        pixel_offset: first byte of the PixelData value in the file; pixel_length: its length;
        pixel_vr: ``b"OB"`` or ``b"OW"``.
        private: an odd-group element is present; scheme: a top-level CodingSchemeDesignator is.
        size: the file's size in bytes when it was read.
    """

    buf: bytes
    elements: list[tuple[int, int, int, int]]
    context: dict[int, bytes]
    meta_sop_class: bytes
    ts: bytes
    pixel_offset: int
    pixel_length: int
    pixel_vr: bytes
    private: bool
    scheme: bool
    size: int


def _skip_sequence(buf: bytes, pos: int, depth: int = 0) -> int:
    """Position after the undefined-length sequence value starting at ``pos`` (after its
    delimiter); raises Declined for anything unusual or incomplete."""
    n = len(buf)
    if depth > 64:
        raise Declined("sequences nested too deep")
    while pos + 8 <= n:
        group, elem, length = struct.unpack_from("<HHL", buf, pos)
        pos += 8
        if group != 0xFFFE:
            raise Declined("element outside an item")
        if elem == 0xE0DD:
            if length:
                raise Declined("sequence delimiter with a length")
            return pos
        if elem != 0xE000:
            raise Declined("unexpected delimiter")
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements, up to the item delimiter
            if pos + 8 > n:
                raise Declined("item runs past the buffer")
            group, elem = struct.unpack_from("<HH", buf, pos)
            if group == 0xFFFE:
                if elem != 0xE00D or _long_length(buf, pos + 4)[0]:
                    raise Declined("unexpected delimiter in an item")
                pos += 8
                break
            vr = buf[pos + 4:pos + 6]
            if vr not in _VALID_VRS:
                raise Declined("not explicit VR")
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise Declined("item runs past the buffer")
                length = _long_length(buf, pos + 8)[0]
                pos += 12
            else:
                length = _head(buf, pos)[3]
                pos += 8
            if length == _UNDEFINED:
                if vr != b"SQ":
                    raise Declined("undefined length outside a sequence")
                pos = _skip_sequence(buf, pos, depth + 1)
            else:
                pos += length
    raise Declined("sequence runs past the buffer")


def walk(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]] | None:
    """Top-level explicit VR LE elements from ``pos`` to exactly ``end``: ``(tag, start,
    value_start, end)``; None when the bytes do not cut cleanly (used on outputs)."""
    out = []
    try:
        while pos < end:
            group, elem, vr, short = _head(buf, pos)
            if vr not in _VALID_VRS:
                return None
            if vr in _LONG_VRS:
                length, vstart = _long_length(buf, pos + 8)[0], pos + 12
            else:
                length, vstart = short, pos + 8
            stop = _skip_sequence(buf, vstart) if length == _UNDEFINED and vr == b"SQ" else vstart + length
            if length == _UNDEFINED and vr != b"SQ":
                return None
            out.append(((group << 16) | elem, pos, vstart, stop))
            pos = stop
    except (Declined, struct.error):
        return None
    return out if pos == end else None


def parse_file(buf: bytes, size: int) -> Parsed | None:
    """Cut the start of a file (``buf``; the whole file has ``size`` bytes) into elements.

    Returns None when more bytes are needed (the header continues past ``buf``). Raises Declined
    for anything this path does not take (see the module docstring).
    """
    n = len(buf)
    if n < 144 or buf[128:132] != b"DICM":
        raise Declined("no Part 10 preamble")
    pos = 132
    meta: dict[int, bytes] = {}
    while True:
        if pos + 8 > n:
            return None
        group, elem, vr, short = _head(buf, pos)
        if group != 2:
            break
        if vr not in _VALID_VRS:
            raise Declined("file meta not explicit VR")
        if vr in _LONG_VRS:
            if pos + 12 > n:
                return None
            length, vstart = _long_length(buf, pos + 8)[0], pos + 12
        else:
            length, vstart = short, pos + 8
        if length == _UNDEFINED:
            raise Declined("undefined length in the file meta")
        if vstart + length > n:
            return None
        tag = 0x00020000 | elem
        if tag in meta:
            raise Declined("repeated file meta element")
        meta[tag] = buf[vstart:vstart + length]
        pos = vstart + length
    ts = meta.get(0x00020010, b"")
    if ts.rstrip(b"\0 ") != _EXPLICIT_LE.encode():
        raise Declined("not explicit VR little endian")
    elements: list[tuple[int, int, int, int]] = []
    context: dict[int, bytes] = {}
    private = scheme = False
    previous = 0
    context_tags = CONTEXT_TAGS
    vr_long = _VR_LONG.get
    while True:
        if pos + 8 > n:
            return None
        group, elem, vr, short = _head(buf, pos)
        tag = (group << 16) | elem
        if tag <= previous:
            raise Declined("tags out of order")
        if tag >= _FIRST_PIXEL_TAG:
            if tag != _PIXEL_DATA or vr not in (b"OB", b"OW"):
                raise Declined("no native PixelData")
            if pos + 12 > n:
                return None
            length = _long_length(buf, pos + 8)[0]
            if length == _UNDEFINED or length % 2 or pos + 12 + length != size:
                raise Declined("encapsulated, odd or truncated PixelData, or elements after it")
            return Parsed(buf[:pos + 12], elements, context, meta.get(0x00020002, b""), ts, pos + 12, length, vr,
                          private, scheme, size)
        if group < 0x0008:
            raise Declined("command, file meta or DICOMDIR group in the data set")
        long = vr_long(vr)
        if long is None:
            raise Declined("invalid VR")
        if long:
            if pos + 12 > n:
                return None
            length, vstart = _long_length(buf, pos + 8)[0], pos + 12
        else:
            length, vstart = short, pos + 8
        if length == _UNDEFINED:
            if vr != b"SQ":
                raise Declined("undefined length outside a sequence")
            try:
                end = _skip_sequence(buf, vstart)
            except Declined:
                if len(buf) < size and n < HEADER_BYTES:
                    return None  # maybe only cut by the buffer
                raise
        else:
            end = vstart + length
            if end > n:
                return None
        if group & 1:
            private = True
        elif tag in context_tags:
            context[tag] = buf[pos:end]
        elif tag == _SCHEME:
            scheme = True
        elements.append((tag, pos, vstart, end))
        previous = tag
        pos = end


def read_parsed(path: Path, fd: int | None = None) -> Parsed:
    """Read and cut ``path`` (see :func:`parse_file`; ``fd``: the file already open for reading,
    left open); raises Declined or OSError."""
    if fd is None:
        fd = os.open(path, os.O_RDONLY)
        try:
            return read_parsed(path, fd)
        finally:
            os.close(fd)
    size = os.fstat(fd).st_size
    buf = os.pread(fd, FIRST_READ, 0)
    parsed = parse_file(buf, size)
    if parsed is None and len(buf) < size:
        buf = os.pread(fd, HEADER_BYTES, 0)
        parsed = parse_file(buf, size)
    if parsed is None:
        raise Declined("header larger than the fast path reads, or truncated")
    return parsed


def _encode(tag: int, vr: bytes, data: bytes) -> bytes:
    """An explicit VR little endian element, as pydicom writes it."""
    if vr in _LONG_VRS:
        return _pack_long(tag >> 16, tag & 0xFFFF, vr, 0, len(data)) + data
    if len(data) > 0xFFFF:
        raise Declined("value too long for its VR")
    return _pack_short(tag >> 16, tag & 0xFFFF, vr, len(data)) + data


def _path_part(text: str) -> str:
    """The characters of ``text`` that :func:`~convert.anonymize.run.output_path` keeps."""
    return "".join(c for c in text.strip().strip("\0") if c.isalnum() or c in ".-_")


def _meta_group(sop_class: str, sop_instance: str, ts: str) -> bytes:
    """The file meta group pydicom's writer produces for the scrubber's new meta (version,
    SOP class, SOP instance, transfer syntax, pydicom's implementation UID and name)."""
    values = {0x0001: b"\x00\x01"}
    for element, text in ((0x0002, sop_class), (0x0003, sop_instance), (0x0010, ts),
                          (0x0012, PYDICOM_IMPLEMENTATION_UID)):
        data = text.encode("ascii")
        values[element] = data + (b"\0" if len(data) % 2 else b"")
    name = f"PYDICOM {'.'.join(pydicom.__version_info__)}".encode("ascii")
    values[0x0013] = name + (b" " if len(name) % 2 else b"")
    parts = []
    for element in sorted(values):
        data = values[element]
        if element == 0x0001:
            parts.append(_pack_long(2, element, b"OB", 0, len(data)))
        else:
            parts.append(_pack_short(2, element, b"SH" if element == 0x0013 else b"UI", len(data)))
        parts.append(data)
    body = b"".join(parts)
    return _pack_long(2, 0, b"UL", 4, len(body)) + body


# An element outcome: (output bytes, packed counts, texts) where texts is None or, for the
# elements of _PATH_TAGS, (original text, new text or None when removed, path part).
Outcome = tuple[bytes, int, Any]


@dataclass
class _Context:
    plan: Plan
    sop_class: str
    ts: str
    stamps: list[tuple[int, bytes]]
    stamp_tags: frozenset[int]
    pixel_length: int
    burned_in: bool
    outcomes: dict[bytes, Outcome]
    shortcuts: bool = True


class _Value:
    """What :func:`resolve_action` reads of an element: its VR and raw value."""

    __slots__ = ("VR", "value")

    def __init__(self, vr: str, value: bytes) -> None:
        self.VR, self.value = vr, value


def _counts(packed: int) -> tuple[int, int, int, int, int]:
    return tuple((packed >> s) & _MASK for s in _SHIFTS)  # type: ignore[return-value]


def _pack_counts(counts: tuple[int, ...]) -> int:
    return sum(c << s for c, s in zip(counts, _SHIFTS))


class FastPath:
    """The byte-level fast path for one :class:`Scrubber` (its key, options, burned-in policy).

    Attributes:
        stats: files written fast, learned (full path, outcomes recorded), declined.
        mismatches: elements whose value-only decision disagreed with the full path while
            learning (the context then stops using value-only decisions; tests assert 0).
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.contexts: dict[tuple, _Context | None] = {}
        self.stats = {"fast": 0, "learned": 0, "declined": 0}
        self.mismatches = 0
        self._made: set[Path] = set()

    # ------------------------------------------------------------------ per file
    def process(self, path: Path, dst: Path, overwrite: bool, single_target: Path | None = None
                ) -> tuple[FileLog, dict[str, tuple[str, str]]] | None:
        """De-identify ``path`` fast; None when declined (nothing written: run the full path)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self.stats["declined"] += 1
            return None  # the full path reports it
        try:
            return self._process(path, fd, dst, overwrite, single_target)
        finally:
            os.close(fd)

    def _process(self, path: Path, fd: int, dst: Path, overwrite: bool, single_target: Path | None
                 ) -> tuple[FileLog, dict[str, tuple[str, str]]] | None:
        from convert.anonymize.run import PixelSpan, _log_failure, write_with_pixels
        from convert.atomic import atomic_file
        from convert.errors import ConvertError

        try:
            parsed = read_parsed(path, fd)
            key = self._context_key(parsed)
            ctx = self.contexts.get(key, False)
            if ctx is None:
                raise Declined("context declined")
            built = self._assemble(ctx, parsed) if ctx is not False else None
            if built is None:
                built = self._learn(path, parsed, key)
            else:
                self.stats["fast"] += 1
        except Exception:  # Declined, unreadable, or anything unexpected: the full path decides and reports
            self.stats["declined"] += 1
            return None
        header, parts, counts, mapping, burned_in = built
        log = FileLog(source=path)
        span = PixelSpan(parsed.pixel_offset, parsed.pixel_length, parsed.pixel_vr.decode())
        try:
            if single_target is not None:
                target = single_target
            else:
                folder = os.path.join(dst, parts[0x00100020], parts[0x0020000D], parts[0x0020000E])
                if folder not in self._made:
                    os.makedirs(folder, exist_ok=True)
                    self._made.add(folder)
                target = Path(folder, parts[_SOP_INSTANCE] + ".dcm")
            if not self._write_quick(header, path, fd, span, target, overwrite):
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_file(target, overwrite=overwrite) as tmp:  # the precise error, or success
                    write_with_pixels(header, path, span, tmp)
        except ConvertError as exc:
            return _log_failure(log, exc)
        except OSError as exc:
            log.status, log.message = "failed", f"could not write output: {exc.strerror or type(exc).__name__}"
            return log, {}
        log.output = target
        log.burned_in = burned_in
        log.removed, log.replaced, log.emptied, log.cleaned, log.kept = counts
        return log, mapping

    @staticmethod
    def _write_quick(header: bytes, src: Path, fd: int, span: Any, target: Path, overwrite: bool) -> bool:
        """:func:`convert.atomic.atomic_file` + :func:`~convert.anonymize.run.write_with_pixels` with
        fewer system calls: a temporary name beside ``target``, renamed into place when complete.
        False (nothing left behind) when anything is unusual: the caller then takes the general
        route, which reports the precise error (existing output, missing or read-only folder...).
        """
        from convert.anonymize.run import write_with_pixels

        name = str(target)
        try:
            os.stat(name)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        else:
            if not overwrite:
                return False
        temp = os.path.join(os.path.dirname(name), f".{os.path.basename(name)}.{os.urandom(4).hex()}.partial.dcm")
        try:
            write_with_pixels(header, src, span, temp, fd)
            os.replace(temp, name)
        except BaseException as exc:
            try:
                os.unlink(temp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                return False
            raise
        return True

    def _context_key(self, parsed: Parsed) -> tuple:
        context = parsed.context
        return (parsed.meta_sop_class, parsed.ts) + tuple(context.get(t) for t in _CONTEXT_ORDER)

    def _assemble(self, ctx: _Context, parsed: Parsed) -> tuple | None:
        """The output of a file of a known context from remembered and value-only outcomes;
        None when some element needs the full path (the file is then learned)."""
        if parsed.pixel_length != ctx.pixel_length or parsed.scheme \
                or (parsed.private and ctx.plan.private != "X"):
            raise Declined("not like the learned files")
        buf = parsed.buf
        outcomes = ctx.outcomes
        stamps = ctx.stamps
        stamp_tags = ctx.stamp_tags
        next_stamp = 0
        n_stamps = len(stamps)
        chunks: list[bytes] = []
        total = _REPLACED + _KEPT  # the new file meta; the pixel data, kept as it is
        texts: dict[int, Any] = {}
        next_tag = stamps[0][0] if stamps else _NO_TAG
        append = chunks.append
        get = outcomes.get
        for tag, start, vstart, end in parsed.elements:
            outcome = get(buf[start:end])
            if outcome is None:
                if not ctx.shortcuts:
                    return None
                outcome = self._decide(ctx, tag, buf[start + 4:start + 6], buf[vstart:end])
                if outcome is None:
                    return None
                if len(outcomes) >= _MAX_ENTRIES:
                    outcomes.clear()
                outcomes[buf[start:end]] = outcome
            if tag >= next_tag:  # stamps go in tag order; a stamp replaces the element's own output
                while next_stamp < n_stamps and stamps[next_stamp][0] < tag:
                    append(stamps[next_stamp][1])
                    next_stamp += 1
                next_tag = stamps[next_stamp][0] if next_stamp < n_stamps else _NO_TAG
                if tag not in stamp_tags:
                    append(outcome[0])
            else:
                append(outcome[0])
            total += outcome[1]
            if outcome[2] is not None:
                texts[tag] = outcome[2]
        while next_stamp < n_stamps:
            chunks.append(stamps[next_stamp][1])
            next_stamp += 1
        return self._finish(ctx, chunks, total, texts)

    def _finish(self, ctx: _Context, chunks: list[bytes], total: int, texts: dict[int, Any]) -> tuple:
        sop = texts.get(_SOP_INSTANCE)
        if sop is None or not sop[1] or "\\" in sop[1]:
            raise Declined("no single SOPInstanceUID")
        header = b"".join([b"\0" * 128, b"DICM", _meta_group(ctx.sop_class, sop[1], ctx.ts)] + chunks)
        parts = {}
        for tag, default in ((0x00100020, "NOID"), (0x0020000D, "NOSTUDY"), (0x0020000E, "NOSERIES"),
                             (_SOP_INSTANCE, "NOUID")):
            entry = texts.get(tag)
            parts[tag] = (entry[2] if entry is not None else "") or default
        mapping = {}
        for tag, name in _MAPPED:
            entry = texts.get(tag)
            if entry is not None and entry[0] != (entry[1] or ""):
                mapping[name] = (entry[0], entry[1] or "")
        return header, parts, _counts(total), mapping, ctx.burned_in

    def _decide(self, ctx: _Context, tag: int, vr_bytes: bytes, value: bytes) -> Outcome | None:
        """The outcome of an element that depends only on its tag, VR and value (the scrubber's
        own decision, from the same table: :func:`resolve_action` and ``Scrubber._apply``'s
        raw-value branches); None when the full path must decide."""
        if tag in CONTEXT_TAGS:
            return None  # part of the context key: always learned with it
        if (tag >> 16) & 1:
            if ctx.plan.private == "X" or (tag & 0xFFFF) < 0x1000:
                return b"", _REMOVED, None
            return None
        vr = vr_bytes.decode("ascii")
        action = resolve_action(ctx.plan, tag, _Value(vr, value), False)
        if action == "X":
            return b"", _REMOVED, (self._texts(tag, value, None) if tag in _PATH_TAGS else None)
        if vr == "SQ":
            return None
        if action == "K":
            if tag in _PATH_TAGS and vr != "UI":
                return None
            return _encode(tag, vr_bytes, value), _KEPT, \
                (self._texts(tag, value, value) if tag in _PATH_TAGS else None)
        options = ctx.plan.options
        if vr != "UI" and " " not in vr:
            if action == "Z":
                return _encode(tag, vr_bytes, b""), _EMPTIED, \
                    (self._texts(tag, value, b"") if tag in _PATH_TAGS else None)
            if action == "D" and vr in _DUMMY:
                dummy = _DUMMY[vr]
                if not (isinstance(dummy, str) and vr in _ASCII_VRS) or tag in _PATH_TAGS:
                    return None
                data = dummy.encode("ascii")
                data += b" " if len(data) % 2 else b""
                return _encode(tag, vr_bytes, data), _REPLACED, None
            if action == "T" and not ({"full-dates", "modified-dates"} & options):
                return b"", _REMOVED, None
            return None
        if vr == "UI" and action in ("U", "D", "V") and "uids" not in options:
            text = ui_text(value)
            if text is None:
                return None
            seq = text.split("\\") if text else []
            if not seq or (action == "V" and all(v.strip("\0 ") in UID_dictionary for v in seq)):
                return None
            uid = self.scrubber.pseudo.uid
            data = "\\".join(uid(v) for v in seq).encode("ascii")
            data += b"\0" if len(data) % 2 else b""
            return _encode(tag, vr_bytes, data), _REPLACED, \
                (self._texts(tag, value, data) if tag in _PATH_TAGS else None)
        return None

    @staticmethod
    def _texts(tag: int, old: bytes, new: bytes | None) -> tuple[str, str | None, str] | None:
        """(original text, new text, path part) of a UID element; Declined for anything else."""
        original = ui_text(old)
        if original is None:
            raise Declined("non-ASCII UID")
        if new is None:
            return original, None, ""
        text = ui_text(new)
        if text is None or "\\" in text:
            raise Declined("multi-valued or non-ASCII UID")
        return original, text, _path_part(text)

    # ------------------------------------------------------------------ learning
    def _learn(self, path: Path, parsed: Parsed, key: tuple) -> tuple:
        """Run the full path on ``path``, remember each element's outcome, return the output."""
        from convert.anonymize.run import MEDIA_DIRECTORY, _check_complete, fast_bytes, read_header_fast
        from convert.anonymize.scrubber import _text_of
        from convert.errors import AnonymizationError, ConvertError

        scrubber = self.scrubber
        with quiet_pydicom():
            fast = read_header_fast(path, parsed.buf, parsed.size)  # the very bytes cut above
            if fast is None:
                raise Declined("pydicom's header read declines")
            ds, span = fast
            if span.value_offset != parsed.pixel_offset or span.length != parsed.pixel_length:
                raise Declined("pixel data elsewhere than parsed")
            if [int(t) for t in ds._dict] != [e[0] for e in parsed.elements]:
                raise Declined("pydicom sees other elements")
            if ui_text(parsed.meta_sop_class) == MEDIA_DIRECTORY:
                raise Declined("DICOMDIR")
            if parsed.scheme:
                raise Declined("top-level code")
            try:
                _check_complete(ds, path, pixel_length=span.length)
            except ConvertError:
                raise Declined("the full path reports this file") from None
            try:
                result, trace = scrubber.scrub_traced(ds)
            except AnonymizationError:
                # refused (burned-in text): decided by context elements only, so the whole context
                # is left to the full path, which reports each file
                self.contexts[key] = None
                raise Declined("refused: the full path reports it") from None
            out = result.dataset
            if any(t >= _PIXEL_DATA for t in out._dict):
                raise Declined("output has pixel elements")
            header = fast_bytes(out)
        if header is None:
            raise Declined("pydicom's writer needed")
        plan = compile_plan(scrubber.options, _text_of(ds, 0x00080016).strip() or None)
        if parsed.private and plan.private != "X":
            raise Declined("private elements may be kept")
        meta_end = 144 + struct.unpack_from("<L", header, 140)[0]
        out_elements = walk(header, meta_end, len(header))
        if out_elements is None:
            raise Declined("output does not cut into elements")
        by_tag = {tag: header[start:end] for tag, start, _, end in out_elements}
        stamp_tags = frozenset(_STAMPS + ((_BURNED_IN,) if result.burned_in else ()))
        stamps = sorted((t, by_tag[t]) for t in stamp_tags if t in by_tag)
        sop_class = ui_text(parsed.meta_sop_class) or ""
        ts = ui_text(parsed.ts) or ""
        learned: dict[bytes, Outcome] = {}
        buf = parsed.buf
        for tag, start, _, end in parsed.elements:
            texts = None
            if tag in _PATH_TAGS:
                orig = _text_of(ds, tag)
                new = _text_of(out, tag) if tag in out._dict else None
                value = out.get(_PATH_TAGS[tag], "") if tag in out._dict else ""
                texts = (orig, new, _path_part(str(value or "")))
            if tag in _STAMPS or (tag == _BURNED_IN and result.burned_in):
                output = b""
            else:
                output = by_tag.get(tag, b"")
            learned[buf[start:end]] = (output, _pack_counts(trace[tag]), texts)
        old = self.contexts.get(key)
        ctx = old if old else _Context(plan, sop_class, ts, stamps, stamp_tags, parsed.pixel_length,
                                       result.burned_in, {})
        # the reassembly must reproduce the full path's bytes and counts exactly
        probe = _Context(plan, sop_class, ts, stamps, stamp_tags, parsed.pixel_length, result.burned_in,
                         learned, shortcuts=False)
        try:
            rebuilt = self._assemble(probe, parsed)
        except Declined:
            rebuilt = None
        expected_counts = result.counts.as_dict()
        expected_counts["kept"] += 1  # the pixel data
        same = (rebuilt is not None and rebuilt[0] == header and ctx.sop_class == sop_class
                and rebuilt[2] == tuple(expected_counts.values()) and rebuilt[3] == result.mapping
                and rebuilt[4] == ctx.burned_in == result.burned_in and ctx.stamps == stamps)
        if not same:
            self.contexts[key] = None
            raise Declined("reassembly differs from the full path")
        for tag, start, vstart, end in parsed.elements:  # value-only decisions agree with the full path?
            try:
                decided = self._decide(ctx, tag, buf[start + 4:start + 6], buf[vstart:end])
            except Declined:
                decided = None
            if decided is not None and tag in stamp_tags:
                decided = (b"",) + decided[1:]  # the stamp replaces the element's own outcome
            if decided is not None and decided != learned[buf[start:end]]:
                self.mismatches += 1
                ctx.shortcuts = False
        if len(ctx.outcomes) + len(learned) > _MAX_ENTRIES:
            ctx.outcomes.clear()
        ctx.outcomes.update(learned)
        self.contexts[key] = ctx
        self.stats["learned"] += 1
        return rebuilt
