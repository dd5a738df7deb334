"""The one de-identification path: the scrubber's decisions applied to the bytes of a file.

A file goes through once:

1. **Walk** (:mod:`convert.dicom.elements`): the Part 10 header is cut into elements (explicit
   or implicit VR little endian, sequences walked to their items), up to the pixel data, which
   must run to the end of the file (native or encapsulated).
2. **Context**: what the decisions read besides the element itself is keyed by the raw bytes of
   :data:`CONTEXT_TAGS` (character set, SOP class, modality, image type, burned-in flag, pixel
   description, the attributes whose words are blanked in free text: names, IDs, institution...)
   and the transfer syntax. Per key, once: the burned-in rule (refuse or flag), the plan
   (:func:`~convert.anonymize.profile.compile_plan`), the scrubber's per-object context
   (pseudonyms, date offset, identifying tokens), the de-identification stamps and the
   completeness check of the pixel data.
3. **Decide and emit**: each top-level element goes through
   :func:`~convert.anonymize.decide.decide` (the one decision, also used by the pydicom
   route) and becomes its output bytes: kept elements as read, replaced values encoded like
   pydicom's writer, kept sequences re-framed from their scrubbed items (the same decision, one
   level down, :func:`~convert.anonymize.decide.finish_level` for local codes and
   private creators). The outcome of a top-level element (bytes, counts, audit texts) is a pure
   function of (context, element bytes), so it is cached under that key: the slices of a series
   share all but a few outcomes.
4. **Write**: a new file meta, the elements in tag order, and the pixel data element copied by the
   kernel (``copy_file_range``) from the source.

Files this path does not take (:func:`ByteScrubber.header` returns None) go the pydicom route
(:func:`convert.anonymize.run.process_file`): pydicom reads the whole file, the same
:func:`~convert.anonymize.decide.decide` runs over the Dataset, and
:func:`fast_bytes` (or pydicom's writer for what it does not cover: big endian, deflated) writes it.
Those are files without a preamble, big endian, deflated or private transfer syntaxes, data after
the pixel data, DICOMDIRs, truncated or malformed files (pydicom reports them precisely), item-level
character sets, and files whose output needs pydicom's writer (see :func:`fast_bytes`).
"""

from __future__ import annotations

import functools
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from convert.anonymize.decide import (SEQUENCE_MARK, TOKEN_TAGS, Context, Counts, Level, Recurse, decide,
                                      finish_level, kept_as_stored, peek, removed_by_tag, syntax_ok, text_of,
                                      ui_text)
from convert.anonymize.scrubber import MAPPED_TAGS, Scrubber, burned_in_reason, refusal_message
from convert.dicom import elements
from convert.dicom.elements import UNDEFINED, NotCovered, Truncated
from convert.errors import AnonymizationError, ConvertError

#: Files up to this size are read whole, in one ``pread``: the header is walked once and the
#: output is written from memory (no second read, no kernel copy of a few KB).
WHOLE_READ = 256 * 1024
#: Bytes read first of a larger file (the header of a CT slice, a GE EPI slice with its private
#: blocks: ~17 KB); a longer header is read again whole.
FIRST_READ = 64 * 1024
#: Media Storage Directory Storage (DICOMDIR) SOP class.
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_DATA = 0x7FE00010
_CHARSET = 0x00080005
_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018
#: Top-level elements the decision of another element may read (see the module docstring):
#: character set, image type, SOP class, modality, burned-in annotation, the pixel description
#: (the completeness check; pydicom resolves "US or SS" / "OB or OW" from it), the identifying
#: attributes whose words are blanked in free text (PatientID/PatientName among them).
CONTEXT_TAGS: tuple[int, ...] = tuple(sorted({
    _CHARSET, 0x00080008, _SOP_CLASS, 0x00080060, 0x00280301,
    0x00280002, 0x00280008, 0x00280010, 0x00280011, 0x00280100, 0x00280103, 0x00283002, 0x54001004,
} | {int(t) for t in TOKEN_TAGS}))
_CONTEXT_SET = frozenset(CONTEXT_TAGS)
#: The output name and the audit mapping are made of these attributes' new values.
PATH_KEYWORDS: dict[int, tuple[str, str]] = {
    0x00100020: ("PatientID", "NOID"), 0x0020000D: ("StudyInstanceUID", "NOSTUDY"),
    0x0020000E: ("SeriesInstanceUID", "NOSERIES"), _SOP_INSTANCE: ("SOPInstanceUID", "NOUID")}
#: Elements the de-identification stamps (overwriting the element's own outcome).
_STAMPED = (0x00120062, 0x00120063, 0x00120064, 0x00280303, 0x00280301)
#: Bounds of the decision caches: entries per context, bytes held by all contexts, and the largest
#: element cached (a longer one, a maker's blob, is decided each time: cheap, but its bytes are not).
_MAX_OUTCOMES = 100_000
_MAX_CACHED_BYTES = 64 << 20
_MAX_CACHED_ELEMENT = 64 << 10
_NO_ITEMS_STOP: frozenset[int] = frozenset()
#: Folders whose last file is kept (see :class:`_Memo`).
_MAX_MEMOS = 64
#: Top-level elements always decided by their bytes, even where the tag alone removes them:
#: their outcome also names the output and feeds the audit mapping, the character set check
#: and the stamps.
_BY_TAG_NEVER: frozenset[int] = frozenset({_CHARSET, *PATH_KEYWORDS, *_STAMPED})
#: Elements never kept by the tag rule (:func:`~convert.anonymize.decide.kept_as_stored`): their
#: outcome feeds more than the output, or they make the context.
_KEPT_NEVER: frozenset[int] = frozenset({*_BY_TAG_NEVER, *_CONTEXT_SET, *(t for _, t in MAPPED_TAGS)})
#: The VRs whose explicit-VR header has a 4-byte length after two reserved bytes (as pydicom writes).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def path_part(value: Any, default: str) -> str:
    """One component of the output path from a de-identified value: its letters, digits and
    ``.-_`` (``default`` when none are left)."""
    return _PATH_UNSAFE.sub("", str(value or "")) or default


#: Characters a path component drops: all but letters, digits (``str.isalnum``) and ``.-_``.
_PATH_UNSAFE = re.compile(r"[^\w.\-]")


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
    head = meta_bytes(meta)
    chunks = [b"\x00" * 128 + b"DICM", head]
    _encode_dataset(ds, implicit, ds.get("SpecificCharacterSet", None), chunks)
    return b"".join(chunks)


_META_VRS = {0x00020001: "OB", 0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI", 0x00020012: "UI",
             0x00020013: "SH", 0x00020016: "AE"}


def meta_bytes(meta: Dataset) -> bytes:
    """The file meta group as pydicom's ``write_file_meta_info(enforce_standard=True)`` writes it
    (explicit VR little endian, group length first); pydicom's writer for an unusual meta."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

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
        group = meta_group(values)
        if group is not None:
            return group
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


def meta_group(values: dict[int, bytes]) -> bytes | None:
    """The file meta group from its encoded values (tag -> even-length bytes), as pydicom's
    ``write_file_meta_info(enforce_standard=True)`` writes it: version, implementation UID and
    name added when absent, group length first. None when SOP class, instance or transfer
    syntax is missing, or a value is too long."""
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    values = dict(values)
    if not values.get(0x00020001):
        values[0x00020001] = b"\x00\x01"
    if not values.get(0x00020012):
        values[0x00020012] = (PYDICOM_IMPLEMENTATION_UID + "\0").encode("ascii")
    if 0x00020013 not in values:
        name = f"PYDICOM {'.'.join(pydicom.__version_info__)}".encode("ascii")
        values[0x00020013] = name + (b" " if len(name) % 2 else b"")
    if not all(values.get(t) for t in (0x00020002, 0x00020003, 0x00020010)) or \
            not all(len(v) <= 0xFFFF for v in values.values()):
        return None
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


def _encode_dataset(ds: Dataset, implicit: bool, encodings: Any, chunks: list[bytes]) -> None:
    """Append the little endian encoding of ``ds``'s elements (in tag order) to ``chunks``, as
    pydicom's ``write_dataset`` would (see :func:`encode_element`)."""
    for tag in sorted(ds._dict):
        if (tag & 0xFFFF) == 0 and (tag >> 16) > 6:
            continue
        chunks.append(encode_element(ds, tag, implicit, encodings))


def encode_element(ds: Dataset, tag: int, implicit: bool, encodings: Any) -> bytes:
    """Element ``tag`` of ``ds`` in little endian (``implicit`` VR or explicit) as pydicom's
    writer encodes it: a raw value as read (its header rebuilt), a sequence framed here, any
    other element by pydicom's ``write_data_element`` with the character sets ``encodings``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    pack = struct.pack
    elem = ds._dict[tag]
    if isinstance(elem, RawDataElement):
        value = elem.value
        if (elem.is_implicit_VR == implicit and elem.is_little_endian and isinstance(value, bytes)
                and elem.length != 0xFFFFFFFF and len(value) == elem.length
                and (implicit or (elem.VR and len(elem.VR) == 2))):
            if implicit:
                return pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
            if elem.VR in EXPLICIT_VR_LENGTH_32:
                return pack("<HH2sHL", tag >> 16, tag & 0xFFFF, elem.VR.encode(), 0, len(value)) + value
            if len(value) <= 0xFFFF:
                return pack("<HH2sH", tag >> 16, tag & 0xFFFF, elem.VR.encode(), len(value)) + value
    elif elem.VR == "SQ":
        encoded = _encode_sequence(elem, implicit, encodings)
        if encoded is not None:
            return encoded
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
    return cached


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
    pack = struct.pack
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
    return frame_sequence(int(elem.tag), implicit, body, bool(elem.is_undefined_length))


def frame_sequence(tag: int, implicit: bool, items: list[bytes], undefined: bool = False) -> bytes:
    """A sequence element from its framed items (each item's header and data), as pydicom frames it."""
    value = b"".join(items)
    length = 0xFFFFFFFF if undefined else len(value)
    if implicit:
        head = struct.pack("<HHL", tag >> 16, tag & 0xFFFF, length)
    else:
        head = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
    return head + value + (struct.pack("<HHL", 0xFFFE, 0xE0DD, 0) if undefined else b"")


def frame_item(content: bytes) -> bytes:
    """A defined-length sequence item holding the encoded data set ``content``."""
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(content)) + content


# ------------------------------------------------------------------------------------------------
# The byte serializer
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """What :meth:`ByteScrubber.header` made of one file.

    Attributes:
        header: preamble, file meta and every de-identified element before the pixel data.
        pixel_offset: first byte (the element's tag) of the pixel data in the source, copied
            unchanged to the end of the source; None when the file has no pixel data.
        counts: removed, replaced, emptied, cleaned, kept (the file meta and the pixel data included).
        mapping: original -> pseudonym of PatientID, StudyInstanceUID, SeriesInstanceUID (audit only).
        parts: the output path components (pseudonymous PatientID, study, series, instance).
        burned_in: let through although it may carry burned-in text (flagged).
        source: the whole source file when it was read whole (:data:`WHOLE_READ`): the pixel data
            is then ``source[pixel_offset:]``, written from memory; None: copy it from the file.
    """

    header: bytes
    pixel_offset: int | None
    size: int
    counts: tuple[int, int, int, int, int]
    mapping: dict[str, tuple[str, str]]
    parts: tuple[str, str, str, str]
    burned_in: bool
    source: bytes | None = None


# The outcome of one top-level element: output bytes (b"": removed), counts (packed, see _pack),
# and for the PATH_KEYWORDS elements (original text, new text, path part).
Outcome = tuple[bytes, int, Any]
_SHIFTS = (0, 32, 64, 96, 128)
_MASK = (1 << 32) - 1


def _pack(counts: list[int]) -> int:
    """Five counts as one integer (32 bits each): outcomes are summed with one addition."""
    return sum(c << s for c, s in zip(counts, _SHIFTS))


def _unpack(packed: int) -> tuple[int, ...]:
    return tuple((packed >> s) & _MASK for s in _SHIFTS)


#: The packed counts of one element kept.
_ONE_KEPT = _pack([0, 0, 0, 0, 1])


@dataclass
class _FileContext:
    """What the decisions of the files of one context key share (see :data:`CONTEXT_TAGS`)."""

    ctx: Context
    implicit: bool
    encodings: Any
    parent_encoding: Any
    charset: bytes | None
    reason: str
    stamps: dict[int, bytes]
    base: dict[Any, RawDataElement]
    scratch_src: Dataset | None = None
    scratch_tag: Any = None
    scratch_out: list[Dataset] = field(default_factory=list)
    outcomes: dict[bytes, Outcome] = field(default_factory=dict)
    #: tag -> removed whatever its value (:func:`~convert.anonymize.decide.removed_by_tag`); False
    #: for the elements whose outcome feeds more than the output (path texts, character set, stamps)
    by_tag: dict[int, bool] = field(default_factory=dict)
    #: (tag, VR as stored) -> :func:`~convert.anonymize.decide.kept_as_stored` (False: not kept so)
    kept: dict[tuple[int, bytes], str | bool] = field(default_factory=dict)


@dataclass
class _Memo:
    """The last file walked whole in a folder, with every top-level outcome: the next files of
    the folder (the slices of a series) are read against it (:func:`~convert.dicom.elements.reparse`)
    and only the elements whose bytes differ are decided; the others' output bytes are these."""

    part10: elements.Part10
    fctx: _FileContext
    meta_sop: bytes | None
    pixel_length: int | None
    counts: list[int]  # per element (file order): its packed counts
    slot: list[int]  # per element: its chunk in ``body``, or -1 (a stamp is written for its tag)
    body: list[bytes]  # the output after the file meta, one chunk per tag in tag order
    texts: dict[int, Any]
    packed: int  # the elements' counts, summed
    sop: tuple[int, int]  # the chunks in ``body`` of SOPClassUID and SOPInstanceUID (-1: absent)


class ByteScrubber:
    """The byte serializer of one :class:`~convert.anonymize.scrubber.Scrubber` (its key,
    options and burned-in policy); its decision cache lives as long as it does.

    ``check``: the completeness check of the pydicom route (``check(ds, path, pixel_length)``
    raises :class:`~convert.errors.CorruptFileError`), run once per context and pixel length.
    """

    def __init__(self, scrubber: Scrubber, check: Callable[..., None] | None = None) -> None:
        self.scrubber = scrubber
        self.check = check
        #: context key -> (the context, or the refusal of its objects; pixel length -> check result)
        self.contexts: dict[tuple, tuple[_FileContext | AnonymizationError, dict[Any, ConvertError | None]]] = {}
        self.stats = {"files": 0, "declined": 0, "decided": 0, "cached": 0, "by_tag": 0, "kept": 0, "reused": 0,
                      "carried": 0}
        #: folder -> its last file walked whole (see :class:`_Memo`)
        self.memos: dict[str, _Memo] = {}
        self.cached_bytes = 0  # element and output bytes held by the decision caches

    # ------------------------------------------------------------------ per file
    def header(self, path: Any, fd: int) -> Output | None:
        """De-identify the header of the file open as ``fd``; None when this path does not take
        it (nothing else happened: take the pydicom route). Raises ConvertError for a file
        refused (burned-in text) or incomplete."""
        try:
            out = self._header(path, fd)
        except (NotCovered, _Declined):
            out = None
        if out is None:
            self.stats["declined"] += 1
        else:
            self.stats["files"] += 1
        return out

    def _header(self, path: Any, fd: int) -> Output | None:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, size if size <= WHOLE_READ else FIRST_READ, 0)
        if size <= WHOLE_READ and len(buf) != size:
            return None  # the file changed meanwhile: the pydicom route reads what is there
        folder = os.path.dirname(os.fspath(path))
        memo = self.memos.get(folder)
        if memo is not None:
            try:
                relaid = elements.reparse(buf, memo.part10, whole=len(buf) >= size)
            except NotCovered:  # Truncated included: the walk below reads more, or declines
                relaid = None
            if relaid is not None:
                out = self._reuse(buf, relaid, memo, fd, size)
                if out is not None:
                    return out
        while True:
            try:
                part10 = elements.parse_part10(buf, whole=len(buf) >= size)
                break
            except Truncated:
                if len(buf) >= size:
                    return None  # truncated: pydicom reports it
                buf = os.pread(fd, min(size, len(buf) * 8), 0)  # a long header: read more of it
        meta_sop = part10.raw(0x00020002)
        if meta_sop is not None and meta_sop.rstrip(b"\0 ") == MEDIA_DIRECTORY.encode() \
                or 0x00041220 in part10.elements:
            return None  # a DICOMDIR: the pydicom route reports it
        tops = part10.elements
        if tops and min(tops) < 0x00030000 and any((t >> 16) == 0x0002 for t in tops):
            return None  # file meta elements inside the data set
        pixel_offset = part10.pixel_offset
        pixel_length: int | None = None
        if pixel_offset is not None:
            pixel_length = self._pixel_span(fd, buf, pixel_offset, size, part10.implicit)
            if pixel_length is None or (pixel_length == UNDEFINED and part10.is_native):
                return None  # encapsulated pixel data under a native transfer syntax: pydicom checks it
        key = (part10.transfer_syntax, meta_sop, part10.implicit) + tuple(
            (buf[e.offset:e.end] if (e := tops.get(t)) is not None else None) for t in CONTEXT_TAGS)
        entry = self.contexts.get(key)
        if entry is None:
            if len(self.contexts) > 256:
                self.contexts.clear()
            entry = self.contexts[key] = (self._context(buf, part10), {})
        fctx, checked = entry
        if pixel_length not in checked and self.check is not None:  # as the pydicom route, before refusing
            top = self._dataset(buf, tops, part10.implicit, "iso8859")
            top.file_meta = self._meta_dataset(buf, part10)
            try:
                with _quiet():
                    self.check(top, path, pixel_length)
                checked[pixel_length] = None
            except ConvertError as exc:
                checked[pixel_length] = exc
        problem = checked.get(pixel_length)
        if problem is not None:
            raise type(problem)(problem.message, path)
        if isinstance(fctx, AnonymizationError):
            raise AnonymizationError(fctx.message, path)
        out, memo = self._emit(buf, part10, fctx, pixel_offset, size)
        if memo is not None:
            memo.meta_sop, memo.pixel_length = meta_sop, pixel_length
            if len(self.memos) >= _MAX_MEMOS:
                self.memos.clear()
            self.memos[folder] = memo
        return out

    def _reuse(self, buf: bytes, relaid: elements.Relayout, memo: _Memo, fd: int, size: int) -> Output | None:
        """The output of a file read against ``memo`` (its elements but ``relaid.changed`` hold the
        memo's bytes, so their outcomes are the memo's); None when the context or the pixel data
        differ (walk and decide the file whole)."""
        fctx = memo.fctx
        if relaid.raw(0x00020002) != memo.meta_sop:
            return None
        pixel_offset = relaid.pixel_offset
        pixel_length = None
        if pixel_offset is not None:
            pixel_length = self._pixel_span(fd, buf, pixel_offset, size, fctx.implicit)
        if pixel_length != memo.pixel_length:
            return None
        changed = relaid.changed
        if any(element.tag in _CONTEXT_SET for _, element in changed):
            return None
        body = memo.body[:]
        texts = memo.texts
        packed = memo.packed
        decided = 0
        for index, element in changed:
            tag = element.tag
            if self._gone(fctx, tag):
                continue  # removed whatever its bytes, as in the memo
            data, counts, text = self._outcome(buf, element, fctx)
            decided += 1
            packed += counts - memo.counts[index]
            slot = memo.slot[index]
            if slot >= 0:
                body[slot] = data
            if text is not None or tag in texts:
                texts = dict(texts) if texts is memo.texts else texts
                if text is None:
                    del texts[tag]
                else:
                    texts[tag] = text
        self.stats["reused"] += 1
        self.stats["carried"] += len(memo.counts) - decided
        sop_class, sop = memo.sop
        header_meta = self._meta(relaid.raw, (body[sop_class] if sop_class >= 0 else b"") or None,
                                 (body[sop] if sop >= 0 else b"") or None, fctx)
        return self._output(buf, header_meta, body, texts, list(_unpack(packed)), pixel_offset, size, fctx)

    def _gone(self, fctx: _FileContext, tag: int) -> bool:
        """Whether ``tag`` is removed whatever its value (cached per context)."""
        by_tag = fctx.by_tag
        gone = by_tag.get(tag)
        if gone is None:
            if len(by_tag) > _MAX_OUTCOMES:  # distinct tags seen: bounded like the outcomes
                by_tag.clear()
            gone = by_tag[tag] = tag not in _BY_TAG_NEVER and removed_by_tag(fctx.ctx.plan, tag)
        return gone

    def _outcome(self, buf: bytes, element: elements.Element, fctx: _FileContext) -> Outcome:
        """The outcome of one top-level element: from the context's cache by its bytes, else decided
        (and cached when small)."""
        outcomes = fctx.outcomes
        key = buf[element.offset:element.end]
        outcome = outcomes.get(key)
        if outcome is not None:
            self.stats["cached"] += 1
            return outcome
        rule = fctx.kept.get((element.tag, element.vr))
        if rule is None:
            rule = self._kept_rule(fctx, element)
        if rule is not False and self._canonical(buf, element) \
                and (not rule or syntax_ok(buf[element.value_offset:element.end], rule)):  # type: ignore[arg-type]
            self.stats["kept"] += 1
            return key, _ONE_KEPT, None
        self.stats["decided"] += 1
        if len(outcomes) >= _MAX_OUTCOMES:
            outcomes.clear()
        if self.cached_bytes > _MAX_CACHED_BYTES:  # every context's cache starts again
            for entry in self.contexts.values():
                if isinstance(entry[0], _FileContext):
                    entry[0].outcomes.clear()
            self.cached_bytes = 0
        with _quiet():
            outcome = self._decide_top(buf, self._small(buf, element, fctx), element.tag, element, fctx)
        if len(key) <= _MAX_CACHED_ELEMENT:
            outcomes[key] = outcome
            self.cached_bytes += len(key) + len(outcome[0])
        return outcome

    @staticmethod
    def _kept_rule(fctx: _FileContext, element: elements.Element) -> str | bool:
        """:func:`~convert.anonymize.decide.kept_as_stored` for ``element``'s tag and stored VR,
        cached in the context (False: decide it)."""
        kept = fctx.kept
        if len(kept) > _MAX_OUTCOMES:
            kept.clear()
        tag = element.tag
        rule: str | None = None
        if tag not in _KEPT_NEVER and element.length != UNDEFINED:
            rule = kept_as_stored(fctx.ctx.plan, tag, element.vr.decode("ascii") if element.vr else None)
        kept[(tag, element.vr)] = result = False if rule is None else rule
        return result

    @staticmethod
    def _canonical(buf: bytes, element: elements.Element) -> bool:
        """Whether ``element``'s stored bytes are what :func:`encode_element` writes for it as a raw
        element: a length that fits its header, and zero reserved bytes before a 4-byte length."""
        header = element.value_offset - element.offset
        if not element.vr:
            return header == 8
        if element.vr in _LONG_VRS:
            return header == 12 and buf[element.offset + 6:element.offset + 8] == b"\0\0"
        return header == 8

    def _pixel_span(self, fd: int, buf: bytes, offset: int, size: int, implicit: bool) -> int | None:
        """Length of the pixel data element at ``offset`` (its value: defined, or the fragments of
        encapsulated data) when it runs exactly to the end of the file; None otherwise."""
        head = buf[offset:offset + 12] if len(buf) >= offset + 12 else os.pread(fd, 12, offset)
        if len(head) < 12 or head[:4] != b"\xe0\x7f\x10\x00":
            return None  # FloatPixelData, DoubleFloatPixelData: the pydicom route
        if implicit:
            length, start = struct.unpack_from("<L", head, 4)[0], offset + 8
        else:
            if head[4:6] not in (b"OB", b"OW") or head[6:8] != b"\0\0":
                return None
            length, start = struct.unpack_from("<L", head, 8)[0], offset + 12
        if length != UNDEFINED:
            return length if start + length == size and not length % 2 else None
        pos = start  # encapsulated: items up to the sequence delimiter, which must end the file
        while pos + 8 <= size:
            item = buf[pos:pos + 8] if len(buf) >= pos + 8 else os.pread(fd, 8, pos)
            group, elem, item_length = struct.unpack("<HHL", item)
            if group != 0xFFFE:
                return None
            if elem == 0xE0DD:
                return UNDEFINED if pos + 8 == size and not item_length else None
            if elem != 0xE000 or item_length == UNDEFINED:
                return None
            pos += 8 + item_length
        return None

    # ------------------------------------------------------------------ context
    def _context(self, buf: bytes, part10: elements.Part10) -> _FileContext | AnonymizationError:
        scrubber = self.scrubber
        implicit = part10.implicit
        top = self._dataset(buf, part10.elements, implicit, "iso8859")
        with _quiet():
            reason = burned_in_reason(top)
            if reason and not scrubber.allow_burned_in:
                return AnonymizationError(refusal_message(reason))
            ctx = scrubber.context(top)
            _ = ctx.tokens, ctx.days  # computed now, from this object (the key holds their inputs)
            charset_elem = part10.elements.get(_CHARSET)
            charset = buf[charset_elem.offset:charset_elem.end] if charset_elem is not None else None
            encodings = None
            if charset_elem is not None:
                encodings = peek(top, _CHARSET).value
            stamped = Dataset()
            scrubber.stamp(stamped, ctx, flagged=bool(reason))
            stamps = {int(t): encode_element(stamped, t, implicit, encodings) for t in stamped._dict}
        ctx.top = Dataset()  # keep nothing of this object beyond what the key holds
        base = {t: e for t, e in top._dict.items() if int(t) in _CONTEXT_SET}
        return _FileContext(ctx, implicit, encodings, top._character_set, charset, reason, stamps, base)

    # ------------------------------------------------------------------ emit
    def _emit(self, buf: bytes, part10: elements.Part10, fctx: _FileContext, pixel_offset: int | None,
              size: int) -> tuple[Output, _Memo | None]:
        """The output of a file walked whole, and its memo (None: the next files are walked too)."""
        implicit = fctx.implicit
        ctx = fctx.ctx
        tops = part10.elements
        total = [0, 0, 0, 0, 0]
        texts: dict[int, Any] = {}
        # a top-level code (its siblings are rewritten) or kept private elements (their creators
        # are written back): the data-set-level rules need every element; decide without the cache
        whole = 0x00080102 in tops or (ctx.plan.private != "X" and any((t >> 16) & 1 for t in tops))
        if whole:
            src = self._dataset(buf, tops, implicit, fctx.parent_encoding)
            with _quiet():
                parts = self._level(buf, src, tops, implicit, fctx, clean=False, level=Level(), texts=texts,
                                    total=total)
            if fctx.charset is not None and parts.get(_CHARSET) != fctx.charset:
                raise _Declined("the character set changes: pydicom's writer re-encodes")
            parts.update(fctx.stamps)
            tags = sorted(parts)
            header_meta = self._meta(part10.raw, parts.get(_SOP_CLASS), parts.get(_SOP_INSTANCE), fctx)
            return self._output(buf, header_meta, [parts[t] for t in tags], texts, total, pixel_offset, size,
                                fctx), None
        datas: list[bytes] = []
        counts_of: list[int] = []
        misses: list[tuple[int, elements.Element]] = []
        get = fctx.outcomes.get
        gone = self._gone
        removed = 0
        for tag, element in tops.items():
            if gone(fctx, tag):  # removed, whatever its bytes: no look-up by them
                removed += 1
                datas.append(b"")
                counts_of.append(1)  # one removal: the lowest of the packed counts
                continue
            outcome = get(buf[element[2]:element[5]])  # offset, end: the element's bytes
            if outcome is None:
                misses.append((len(datas), element))
                datas.append(b"")
                counts_of.append(0)
                continue
            data, counts, text = outcome
            datas.append(data)
            counts_of.append(counts)
            if text is not None:
                texts[tag] = text
        for index, element in misses:
            data, counts, text = self._outcome(buf, element, fctx)
            datas[index] = data
            counts_of[index] = counts
            if text is not None:
                texts[element.tag] = text
        self.stats["by_tag"] += removed
        self.stats["cached"] += len(tops) - len(misses) - removed
        order = list(tops)
        position = {tag: i for i, tag in enumerate(order)}
        if fctx.charset is not None and (datas[position[_CHARSET]] if _CHARSET in position else None) \
                != fctx.charset:
            raise _Declined("the character set changes: pydicom's writer re-encodes")
        stamps = fctx.stamps
        tags = sorted(set(order) | set(stamps))
        body = [stamps[t] if t in stamps else datas[position[t]] for t in tags]
        slot_of = {tag: i for i, tag in enumerate(tags)}
        slot = [-1 if tag in stamps else slot_of[tag] for tag in order]
        sop = (slot_of.get(_SOP_CLASS, -1), slot_of.get(_SOP_INSTANCE, -1))
        packed = sum(counts_of)
        header_meta = self._meta(part10.raw, (body[sop[0]] if sop[0] >= 0 else b"") or None,
                                 (body[sop[1]] if sop[1] >= 0 else b"") or None, fctx)
        out = self._output(buf, header_meta, body, texts, list(_unpack(packed)), pixel_offset, size, fctx)
        memo = _Memo(part10, fctx, None, None, counts_of, slot, body, texts, packed, sop)
        return out, memo

    @staticmethod
    def _output(buf: bytes, header_meta: bytes, body: list[bytes], texts: dict[int, Any], total: list[int],
                pixel_offset: int | None, size: int, fctx: _FileContext) -> Output:
        """The file's :class:`Output` from its encoded file meta and elements (``total``: the
        elements' counts; the file meta and the pixel data are counted here)."""
        total[1] += 1  # the file meta, rebuilt
        if pixel_offset is not None:
            total[4] += 1  # the pixel data, kept as it is
        mapping = {}
        for keyword, tag in MAPPED_TAGS:
            text = texts.get(tag)
            if text is not None and text[0] != text[1]:
                mapping[keyword] = (text[0], text[1])
        names = tuple(texts[t][2] if t in texts else default for t, (_, default) in PATH_KEYWORDS.items())
        return Output(b"".join([b"\0" * 128, b"DICM", header_meta, *body]), pixel_offset, size,
                      tuple(total), mapping, names,  # type: ignore[arg-type]
                      bool(fctx.reason), buf if len(buf) == size else None)

    def _decide_top(self, buf: bytes, src: Dataset, tag: int, element: elements.Element,
                    fctx: _FileContext) -> Outcome:
        """The outcome of one top-level element (see :data:`Outcome`)."""
        if src._dict[BaseTag(tag)].value_tell == SEQUENCE_MARK:
            total = [0, 0, 0, 0, 0]
            texts: dict[int, Any] = {}
            parts = self._level(buf, src, {tag: element}, fctx.implicit, fctx, clean=False, level=Level(),
                                texts=texts, total=total)
            return parts.get(tag, b""), _pack(total), texts.get(tag)
        # the common case (a plain element): _level's loop body for one element, without its set-up
        ctx = fctx.ctx
        counts = ctx.counts = Counts()
        new = decide(src, BaseTag(tag), ctx, False, Level())
        data = b""
        text = None
        out = fctx.scratch_out.pop() if fctx.scratch_out else self.scrubber.new_like(src)
        out._dict.clear()
        path = tag in PATH_KEYWORDS  # its old and new texts name the output and feed the audit
        if path and _CHARSET in src._dict:  # as _level: the new text is read in the data set's charset
            out._dict[BaseTag(_CHARSET)] = src._dict[BaseTag(_CHARSET)]
        if new is not None:
            out._dict[BaseTag(tag)] = new
            data = encode_element(out, BaseTag(tag), fctx.implicit, fctx.encodings)
        if path:
            text = _path_text(src, out, tag, bool(data))
        out._dict.clear()
        fctx.scratch_out.append(out)
        ctx.counts = Counts()
        return data, _pack([counts.removed, counts.replaced, counts.emptied, counts.cleaned, counts.kept]), text

    def _level(self, buf: bytes, src: Dataset, found: dict[int, elements.Element], implicit: bool,
               fctx: _FileContext, clean: bool, level: Level, texts: dict[int, Any] | None,
               total: list[int]) -> dict[int, bytes]:
        """Decide and encode the elements ``found`` of data set ``src`` (the top level when
        ``texts`` is given: the audit/path texts are filled in); counts are added to ``total``."""
        scrubber = self.scrubber
        ctx = fctx.ctx
        ctx.counts = Counts()
        out = fctx.scratch_out.pop() if fctx.scratch_out else scrubber.new_like(src)
        out._dict.clear()
        if _CHARSET in src._dict:
            out._dict[BaseTag(_CHARSET)] = src._dict[BaseTag(_CHARSET)]
        parts: dict[int, bytes] = {}
        for tag, element in found.items():
            new = decide(src, BaseTag(tag), ctx, clean, level)
            if new is None:
                continue
            if isinstance(new, Recurse):
                parts[tag] = self._sequence(buf, element, implicit, fctx, new.clean, total)
                continue
            out._dict[BaseTag(tag)] = new
            parts[tag] = encode_element(out, BaseTag(tag), implicit, fctx.encodings)
        if level.kept_blocks or 0x00080102 in parts:
            for ctag, new in finish_level(src, parts, ctx, level).items():
                if new is None:
                    parts.pop(ctag, None)
                    out._dict.pop(BaseTag(ctag), None)
                else:
                    out._dict[BaseTag(ctag)] = new
                    parts[ctag] = encode_element(out, BaseTag(ctag), implicit, fctx.encodings)
        if texts is not None:
            for tag in found:
                if tag in PATH_KEYWORDS:
                    texts[tag] = _path_text(src, out, tag, tag in parts)
        counts = ctx.counts
        for i, c in enumerate((counts.removed, counts.replaced, counts.emptied, counts.cleaned, counts.kept)):
            total[i] += c
        ctx.counts = Counts()
        out._dict.clear()
        fctx.scratch_out.append(out)  # reused (a Dataset costs more to make than to decide an element)
        return parts

    def _sequence(self, buf: bytes, element: elements.Element, implicit: bool, fctx: _FileContext,
                  clean: bool, total: list[int]) -> bytes:
        """A kept sequence: each item walked, decided by the same rules and re-framed
        (defined lengths, as pydicom writes the items the scrubber builds)."""
        if not implicit and element.vr != b"SQ":
            raise _Declined("a sequence stored as UN")
        ctx = fctx.ctx
        outer = ctx.counts  # the enclosing level's counts so far
        framed = []
        for start, end in elements.items(buf, element, implicit=implicit):
            found, _ = elements.walk(buf, start, end, implicit=implicit, stop_tags=_NO_ITEMS_STOP)
            inner = {e.tag: e for e in found}
            if _CHARSET in inner:
                raise _Declined("an item with its own character set")
            item = self._dataset(buf, inner, implicit, fctx.parent_encoding)
            body = self._level(buf, item, inner, implicit, fctx, clean=clean, level=Level(), texts=None, total=total)
            framed.append(frame_item(b"".join(body[t] for t in sorted(body))))
        ctx.counts = outer
        return frame_sequence(element.tag, implicit, framed)

    # ------------------------------------------------------------------ pydicom views
    @staticmethod
    def _dataset(buf: bytes, found: dict[int, elements.Element], implicit: bool, parent_encoding: Any,
                 base: dict[Any, RawDataElement] | None = None) -> Dataset:
        """A pydicom data set of raw elements over ``buf`` (nothing decoded; sequences marked),
        with the elements of ``base`` besides."""
        ds = Dataset()
        ds._parent_encoding = parent_encoding
        if base:
            ds._dict.update(base)
        ds._dict.update(_raw_elements(buf, found, implicit))
        ds.set_original_encoding(implicit, True, ds._character_set)
        return ds

    @staticmethod
    def _meta_dataset(buf: bytes, part10: elements.Part10) -> FileMetaDataset:
        meta = FileMetaDataset()
        for tag, e in part10.meta.items():
            meta._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), e.vr.decode("ascii"), e.length,
                                                      buf[e.value_offset:e.end], e.value_offset, False, True, True,
                                                      False)
        return meta

    def _meta(self, raw: Callable[[int], bytes | None], sop_class_part: bytes | None, sop_part: bytes | None,
              fctx: _FileContext) -> bytes:
        """The new file meta group, as the pydicom route builds it (``Scrubber._scrub_meta`` and
        :func:`meta_bytes`): version, SOP class (the input meta's, else the data set's), SOP
        instance (the new SOPInstanceUID, else the pseudonym of the meta's), the transfer syntax,
        pydicom's implementation UID and name. Declined when that meta would not be conformant
        or would disagree with the data set (pydicom's writer decides those)."""
        def text(data: bytes | None, header: int) -> str | None:
            if data is None:
                return None
            value = ui_text(data[header:])
            if value is None or "\\" in value:
                raise _Declined("a non-ASCII or multi-valued UID in the file meta")
            return value

        sop_class_out = text(sop_class_part, 8)
        sop_out = text(sop_part, 8)
        sop_class = text(raw(0x00020002), 0) or sop_class_out
        instance = sop_out
        if not instance:
            meta_instance = text(raw(0x00020003), 0)
            instance = fctx.ctx.pseudo.uid(meta_instance) if meta_instance else None
        ts = text(raw(0x00020010), 0)
        if not sop_class or not instance or not ts or sop_class_out not in (None, sop_class) \
                or sop_out not in (None, instance):
            raise _Declined("no conformant file meta: pydicom's writer decides")
        values = {0x00020001: b"\x00\x01"}
        for tag, uid in ((0x00020002, sop_class), (0x00020003, instance), (0x00020010, ts)):
            data = uid.encode("ascii")
            values[tag] = data + (b"\0" if len(data) % 2 else b"")
        group = meta_group(values)
        if group is None:
            raise _Declined("file meta values too long")
        return group

    def _small(self, buf: bytes, element: elements.Element, fctx: _FileContext) -> Dataset:
        """The data set a top-level decision reads: the element and the context elements (one
        Dataset per context: the previous decision's element is put back to the context's)."""
        ds = fctx.scratch_src
        if ds is None:
            ds = fctx.scratch_src = self._dataset(buf, {}, fctx.implicit, fctx.parent_encoding, fctx.base)
        stored = ds._dict
        previous = fctx.scratch_tag
        if previous is not None:
            if previous in fctx.base:
                stored[previous] = fctx.base[previous]
            else:
                stored.pop(previous, None)
        tag = BaseTag(element.tag)
        stored.update(_raw_elements(buf, {element.tag: element}, fctx.implicit))
        fctx.scratch_tag = tag
        return ds


def _raw_elements(buf: bytes, found: dict[int, elements.Element], implicit: bool) -> dict[BaseTag, RawDataElement]:
    """pydicom raw elements over ``buf`` for the elements ``found`` (sequences marked with
    :data:`~convert.anonymize.decide.SEQUENCE_MARK`: their items are walked here, not by pydicom)."""
    out = {}
    raw = RawDataElement
    for tag, e in found.items():
        vr = e.vr.decode("ascii") if e.vr else None
        sequence = e.vr == b"SQ" or (implicit and (e.length == UNDEFINED or _is_sequence_tag(tag)))
        if e.length == UNDEFINED and not sequence:
            raise _Declined("an undefined length outside a sequence (UN)")
        out[BaseTag(tag)] = raw(BaseTag(tag), vr, e.length, buf[e.value_offset:e.end],
                                SEQUENCE_MARK if sequence else e.value_offset, implicit, True, True, False)
    return out


def _path_text(src: Dataset, out: Dataset, tag: int, written: bool) -> tuple[str, str, str]:
    """(old text, new text, output path part) of a :data:`PATH_KEYWORDS` element of the top level
    ``src`` decided into ``out`` (``written``: it has output bytes)."""
    keyword, default = PATH_KEYWORDS[tag]
    kept = BaseTag(tag) in out._dict
    if written and not kept:
        raise _Declined("a path attribute written as a sequence")
    new_text = text_of(out, tag) if kept else ""
    # str() of a single value is its text; a multi-valued one names the path as str(MultiValue)
    # does on the pydicom route
    value = out.get(keyword, "") if "\\" in new_text else new_text
    return text_of(src, tag), new_text, path_part(value, default)


class _Declined(Exception):
    """This file needs the pydicom route (nothing was written)."""


@functools.lru_cache(maxsize=4096)
def _is_sequence_tag(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _quiet():
    from convert.anonymize.scrubber import quiet_pydicom

    return quiet_pydicom()
