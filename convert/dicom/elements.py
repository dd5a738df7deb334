"""The one byte-level DICOM element layer: where each element of a Part 10 file lies, without pydicom.

A Part 10 file is a 128-byte preamble, ``DICM``, the file meta group (group 0002, always
explicit VR little endian) and the data set in the encoding its transfer syntax names. This
module walks those bytes and reports, for every top-level element before the pixel data,
its tag, VR and byte span; sequences are skipped by length or walked to their delimiters
(their items can be listed with :func:`items`). It never converts values: that is the
header view's job (pydicom's value rules), and pydicom stays the fallback for every byte
layout this layer does not cover.

Covered: explicit VR little endian (and every compressed transfer syntax, whose data set is
explicit VR LE) and implicit VR little endian; defined and undefined lengths; sequences of
any depth up to :data:`MAX_DEPTH` (UN elements of undefined length hold implicit VR items,
PS3.5 6.2.2). Not covered (:class:`NotCovered`, let pydicom read the file): files without a
preamble, big endian and deflated data sets, private or unknown transfer syntaxes, a data set
whose first element contradicts the transfer syntax (pydicom then switches encoding), invalid
VRs, undefined lengths outside sequences, deeper nesting. A buffer that ends before the pixel
data raises :class:`Truncated` (read more bytes, or fall back).

Positions are byte offsets into the buffer given, which starts at the first byte of the file.
"""

from __future__ import annotations

import bisect
import functools
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

UNDEFINED = 0xFFFFFFFF
#: (7FE0,0010) PixelData, (7FE0,0008) FloatPixelData, (7FE0,0009) DoubleFloatPixelData: the walk
#: stops before the first of these (pydicom's ``stop_before_pixels`` rule).
PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
#: Sequences nested deeper than this are left to pydicom (hostile inputs nest without end).
MAX_DEPTH = 32

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
#: Transfer syntaxes whose data set is explicit VR little endian with pixel data stored natively.
NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE})
#: Prefixes of the standard encapsulated (compressed) transfer syntaxes: explicit VR LE data sets.
_ENCAPSULATED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98",
                          "1.2.840.10008.1.2.8.")

#: VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1).
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
#: Every VR of PS3.5 Table 6.2-1.
VALID_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())

_EXPLICIT_HEAD = struct.Struct("<HH2sHI")  # group, element, VR, short length, long length (after 2 reserved)
_SHORT_HEAD = struct.Struct("<HH2sH")  # the first 8 bytes of an explicit VR element
_IMPLICIT_HEAD = struct.Struct("<HHI")  # group, element, 4-byte length (implicit VR; items and delimiters)
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD


class NotCovered(Exception):
    """These bytes are laid out in a way this layer leaves to pydicom."""


class Truncated(NotCovered):
    """The buffer ends before the element walk does: read more of the file (or fall back).

    Attributes:
        walked: raised by a top-level walk (:func:`walk` without ``end``, :func:`parse_part10`):
            ``(elements, pos, item)``, the elements walked whole before the buffer ended, the
            offset of the first one that did not fit and, when that one is an undefined-length
            sequence (a whole enhanced object's per-frame groups), the offset of its first item
            that did not fit (else None); give it to :func:`parse_part10` as ``resume`` with more
            of the file, so the bytes already walked are not walked again. None otherwise.
        item: set by the walk of a top-level undefined-length sequence: its first item that did
            not fit (see :attr:`walked`).
    """

    walked: "tuple[list[Element], int, int | None] | None" = None
    item: int | None = None


class Element(NamedTuple):
    """Where one element lies in the buffer.

    Attributes:
        tag: ``(group << 16) | element``.
        vr: the two VR letters as stored (explicit VR), ``b""`` in implicit VR (look it up by tag).
        offset: first byte of the element (its tag).
        value_offset: first byte of the value.
        length: value length as stored; :data:`UNDEFINED` for an undefined-length sequence.
        end: first byte after the element (after the sequence delimiter for undefined lengths).
    """

    tag: int
    vr: bytes
    offset: int
    value_offset: int
    length: int
    end: int

    @property
    def is_undefined_length(self) -> bool:
        return self.length == UNDEFINED


def _looks_explicit(vr: bytes) -> bool:
    return vr in VALID_VRS


def _sequence_end(data: bytes, pos: int, implicit: bool, depth: int) -> int:
    """First byte after the undefined-length sequence whose first item (or an item after the first:
    a resumed walk) starts at ``pos``. A :class:`Truncated` raised for a top-level sequence
    (``depth`` 1) says in :attr:`Truncated.item` which item did not fit."""
    if depth > MAX_DEPTH:
        raise NotCovered(f"sequences nested deeper than {MAX_DEPTH}")
    n = len(data)
    head = _IMPLICIT_HEAD.unpack_from
    item = pos
    try:  # (no cost in the loop until raised)
        while True:
            item = pos
            if pos + 8 > n:
                raise Truncated("the buffer ends inside a sequence")
            group, elem, length = head(data, pos)
            pos += 8
            if group != 0xFFFE:
                raise NotCovered("an element where a sequence item should start")
            if elem == _SEQUENCE_END:
                return pos
            if elem != _ITEM:
                raise NotCovered("an item delimiter outside an item")
            if length == UNDEFINED:
                pos = _item_end(data, pos, implicit, depth + 1)
            else:
                pos += length
                if pos > n:
                    raise Truncated("the buffer ends inside a sequence item")
    except Truncated as exc:
        if depth == 1:
            exc.item = item
        raise


def _resumed_sequence(data: bytes, pos: int, item: int, implicit: bool) -> Element:
    """The top-level undefined-length sequence element at ``pos``, walked from its item at ``item``
    (the items before it were walked in fewer bytes of the file: :attr:`Truncated.walked`)."""
    if implicit:
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        vr, start, items_implicit = b"", pos + 8, True
    else:
        group, elem, vr, _, length = _EXPLICIT_HEAD.unpack_from(data, pos)
        start, items_implicit = pos + 12, vr == b"UN"  # PS3.5 6.2.2: a UN sequence holds implicit VR items
    if length != UNDEFINED or not start <= item:
        raise NotCovered("a resumed walk that does not start inside an undefined-length sequence")
    return Element((group << 16) | elem, vr, pos, start, length, _sequence_end(data, item, items_implicit, 1))


def _item_end(data: bytes, pos: int, implicit: bool, depth: int) -> int:
    """First byte after the item delimiter of the undefined-length item whose data set starts at ``pos``."""
    n = len(data)
    if implicit and data[pos + 4:pos + 6] in VALID_VRS and data[pos:pos + 4] != b"\xfe\xff\x0d\xe0":
        raise NotCovered("an item of an implicit VR sequence looks explicit (pydicom decides per item)")
    while True:
        if pos + 8 > n:
            raise Truncated("the buffer ends inside a sequence item")
        if data[pos:pos + 4] == b"\xfe\xff\x0d\xe0":
            return pos + 8
        pos = _next(data, pos, implicit, depth).end


def _next(data: bytes, pos: int, implicit: bool, depth: int = 0) -> Element:
    """The element that starts at ``pos``."""
    n = len(data)
    if implicit:
        if pos + 8 > n:
            raise Truncated("the buffer ends inside an element header")
        group, elem, length = _IMPLICIT_HEAD.unpack_from(data, pos)
        vr, start = b"", pos + 8
        if group == 0xFFFE:
            raise NotCovered("a sequence delimiter outside a sequence")
        if length == UNDEFINED:  # a sequence (or an implicit-VR private one): items follow
            return Element((group << 16) | elem, vr, pos, start, length, _sequence_end(data, start, True, depth + 1))
    else:
        if pos + 8 > n:
            raise Truncated("the buffer ends inside an element header")
        if pos + 12 <= n:
            group, elem, vr, length, long_length = _EXPLICIT_HEAD.unpack_from(data, pos)
        else:
            group, elem, vr, length = _SHORT_HEAD.unpack_from(data, pos)
            long_length = 0
        if group == 0xFFFE:  # pydicom ends a data set there; this layer leaves such bytes to it
            raise NotCovered("an item or delimiter tag outside a sequence")
        if vr in LONG_VRS:
            if pos + 12 > n:
                raise Truncated("the buffer ends inside an element header")
            length, start = long_length, pos + 12
        elif vr in VALID_VRS:
            start = pos + 8
        else:
            raise NotCovered(f"invalid VR {vr!r} in element ({group:04X},{elem:04X})")
        if length == UNDEFINED:
            if vr == b"SQ":
                end = _sequence_end(data, start, False, depth + 1)
            elif vr == b"UN":  # PS3.5 6.2.2: an unknown sequence, its items in implicit VR LE
                end = _sequence_end(data, start, True, depth + 1)
            else:
                raise NotCovered(f"undefined length on a {vr.decode('latin-1')} element ({group:04X},{elem:04X})")
            return Element((group << 16) | elem, vr, pos, start, length, end)
    end = start + length
    if end > n:
        raise Truncated("the buffer ends inside an element value")
    return Element((group << 16) | elem, vr, pos, start, length, end)


def walk(data: bytes, pos: int, end: int | None = None, *, implicit: bool = False,
         stop_tags: frozenset[int] = PIXEL_TAGS, depth: int = 0, whole: bool = False,
         keep: frozenset[int] | None = None, found: list[Element] | None = None,
         item: int | None = None) -> tuple[list[Element], int | None]:
    """The elements of one data set, in file order, and where the walk stopped.

    Args:
        data: the bytes (a whole file, or its first bytes).
        pos: first byte of the data set's first element.
        end: first byte after the data set (a defined-length item); ``None``: walk until a tag in
            ``stop_tags`` or the end of ``data``.
        implicit: implicit VR little endian (else explicit VR little endian).
        stop_tags: stop before an element with one of these tags (not included).
        whole: ``data`` is the whole file: reaching its end without a stop tag is no truncation.
        keep: return only the elements with these tags (every element is still walked and checked);
            ``None``: all of them.
        found: elements walked before ``pos`` (a resumed walk, see :attr:`Truncated.walked`):
            the returned list starts with them.
        item: a resumed walk whose element at ``pos`` is an undefined-length sequence walked up to
            its item at ``item`` (:attr:`Truncated.walked`).

    Returns:
        ``(elements, stop)``: ``stop`` is the offset of the stop tag's element, or ``end``
        (None when ``whole`` and the data ended first).

    Raises:
        Truncated: ``data`` ends before ``end`` / a stop tag (without ``end``: with
            :attr:`Truncated.walked`, where to resume).
        NotCovered: bytes this layer does not read (see the module docstring).
    """
    n = len(data)
    limit = n if end is None else end
    out: list[Element] = [] if found is None else found
    append = out.append
    make = tuple.__new__  # Element(...) without NamedTuple's Python-level __new__ (the hot loop)
    explicit_head, implicit_head = _EXPLICIT_HEAD.unpack_from, _IMPLICIT_HEAD.unpack_from
    long_vrs, valid_vrs = LONG_VRS, VALID_VRS
    try:  # (no cost in the loop: CPython's exceptions are zero-cost until raised)
        if item is not None and pos < limit:
            element = _resumed_sequence(data, pos, item, implicit)
            if keep is None or element.tag in keep:
                append(element)
            pos = element.end
        while pos < limit:
            if pos + 12 > n:  # near the end of the buffer: the careful, slower reader
                if pos + 4 > n:
                    raise Truncated("the buffer ends inside an element header")
                tag = (int.from_bytes(data[pos:pos + 2], "little") << 16
                       | int.from_bytes(data[pos + 2:pos + 4], "little"))
                if tag in stop_tags:
                    return out, pos
                element = _next(data, pos, implicit, depth)
                if keep is None or tag in keep:
                    append(element)
                pos = element.end
                continue
            if implicit:
                group, elem, length = implicit_head(data, pos)
                vr, start = b"", pos + 8
            else:
                group, elem, vr, length, long_length = explicit_head(data, pos)
                if vr in long_vrs:
                    length, start = long_length, pos + 12
                elif vr in valid_vrs:
                    start = pos + 8
                else:
                    start = -1
            tag = group << 16 | elem
            if tag in stop_tags:
                return out, pos
            if start < 0 or length == UNDEFINED or group == 0xFFFE:  # the rare cases: the careful reader decides
                element = _next(data, pos, implicit, depth)
                if keep is None or tag in keep:
                    append(element)
                pos = element.end
                continue
            element_end = start + length
            if element_end > n:
                raise Truncated("the buffer ends inside an element value")
            if keep is None or tag in keep:
                append(make(Element, (tag, vr, pos, start, length, element_end)))
            pos = element_end
    except Truncated as exc:
        if end is None and depth == 0:  # a top-level walk: the elements so far stand, resume at pos
            exc.walked = (out, pos, exc.item)
        raise
    if end is None:
        if whole and pos == len(data):
            return out, None
        truncated = Truncated("the buffer ends before the pixel data")
        if depth == 0:
            truncated.walked = (out, pos, None)
        raise truncated
    if pos != end:
        raise NotCovered("an element runs past the end of its item")
    return out, pos


def items(data: bytes, element: Element, *, implicit: bool) -> list[tuple[int, int]]:
    """``(start, end)`` byte spans of the item data sets of a sequence element (walk each with :func:`walk`).

    ``implicit`` is the encoding of the data set that holds ``element``; items of an explicit-VR
    ``UN`` sequence are implicit VR (PS3.5 6.2.2), as the spans' encoding for :func:`walk`.
    """
    pos, limit = element.value_offset, element.end
    spans: list[tuple[int, int]] = []
    inner_implicit = implicit or element.vr == b"UN"
    head = _IMPLICIT_HEAD.unpack_from
    while pos + 8 <= limit:
        group, elem, length = head(data, pos)
        pos += 8
        if group != 0xFFFE or elem == _SEQUENCE_END:
            break
        if elem != _ITEM:
            raise NotCovered("an item delimiter outside an item")
        if length == UNDEFINED:
            item_end = _item_end(data, pos, inner_implicit, 1)
            spans.append((pos, item_end - 8))
            pos = item_end
        else:
            spans.append((pos, pos + length))
            pos += length
    return spans


def sequence_is_implicit(element: Element, implicit: bool) -> bool:
    """The encoding of ``element``'s items (see :func:`items`)."""
    return implicit or element.vr == b"UN"


def _transfer_syntax_encoding(uid: str) -> bool:
    """True for implicit VR LE, False for an explicit VR LE data set; NotCovered otherwise."""
    if uid == IMPLICIT_VR_LE:
        return True
    if uid == EXPLICIT_VR_LE or uid.startswith(_ENCAPSULATED_PREFIXES):
        return False
    if uid == EXPLICIT_VR_BE:
        raise NotCovered("big endian data set")
    if uid == DEFLATED_EXPLICIT_VR_LE:
        raise NotCovered("deflated data set")
    raise NotCovered(f"transfer syntax {uid!r} is not a standard little-endian one")


class TransferSyntax(str):
    """The TransferSyntaxUID of a file the element layer reads (native or encapsulated little
    endian), with the properties of pydicom's ``UID`` the readers ask; any other attribute
    (``name``, ``keyword``, ...) is pydicom's."""

    @property
    def is_transfer_syntax(self) -> bool:
        return True

    @property
    def is_private(self) -> bool:
        return self[:14] != "1.2.840.10008."

    @property
    def is_implicit_VR(self) -> bool:  # noqa: N802 (pydicom's name)
        return self == IMPLICIT_VR_LE

    @property
    def is_little_endian(self) -> bool:
        return True

    @property
    def is_deflated(self) -> bool:
        return False

    @property
    def is_compressed(self) -> bool:
        return self not in NATIVE_SYNTAXES

    is_encapsulated = is_compressed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        from pydicom.uid import UID

        return getattr(UID(str(self)), name)


@dataclass(frozen=True)
class Part10:
    """Element positions of a Part 10 file's header (the data before its pixel data).

    Attributes:
        data: the bytes walked (the start of the file).
        meta: file meta elements (group 0002) by tag.
        transfer_syntax: TransferSyntaxUID, stripped.
        implicit: the data set is implicit VR little endian (else explicit VR little endian).
        dataset_offset: first byte of the data set (after the file meta group).
        elements: top-level data set elements by tag, in file order (a repeated tag keeps the last).
        pixel_offset: offset of the pixel data element (its tag), or None when the file ends first.
    """

    data: bytes
    meta: dict[int, Element]
    transfer_syntax: str
    implicit: bool
    dataset_offset: int
    elements: dict[int, Element]
    pixel_offset: int | None

    def raw(self, tag: int) -> bytes | None:
        """The value bytes of a top-level (or file meta) element, or None when absent."""
        element = self.elements.get(tag) if tag >> 16 != 0x0002 else self.meta.get(tag)
        if element is None or element.length == UNDEFINED:
            return None
        return self.data[element.value_offset:element.end]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the cached :attr:`layout` (arrays as big as the header, rebuilt on use):
        a header kept by a scan worker travels as its bytes and element positions only."""
        state = dict(self.__dict__)
        state.pop("layout", None)
        return state

    @property
    def is_native(self) -> bool:
        """Pixel data stored uncompressed in little endian (readable straight from :attr:`pixel_offset`)."""
        return self.transfer_syntax in NATIVE_SYNTAXES

    @functools.cached_property
    def layout(self) -> "_Layout | None":
        """The element positions as arrays, for :func:`reparse`; None when the elements do not tile
        the data set from :attr:`dataset_offset` to the pixel data (or the end of a whole file)
        one after another: a repeated tag, a ``keep`` filter, no element."""
        found = list(self.elements.values())
        stop = self.pixel_offset if self.pixel_offset is not None else len(self.data)
        if not found or found[0].offset != self.dataset_offset or found[-1].end != stop \
                or any(a.end != b.offset for a, b in zip(found, found[1:])):
            return None
        import numpy as np

        bounds: list[int] = []  # the segments compared: each element's header, and its value if not empty
        segment_element: list[int] = []
        segment_is_header: list[bool] = []
        first_segment: list[int] = []
        for index, e in enumerate(found):
            first_segment.append(len(bounds))
            bounds.append(e.offset)
            segment_element.append(index)
            segment_is_header.append(True)
            if e.end > e.value_offset:
                bounds.append(e.value_offset)
                segment_element.append(index)
                segment_is_header.append(False)
        first_segment.append(len(bounds))
        return _Layout([e.offset for e in found], np.frombuffer(self.data, np.uint8, stop), stop, found,
                       np.array(bounds, np.int64), segment_element, segment_is_header, first_segment, {})


def _read_meta(data: bytes, whole: bool) -> tuple[dict[int, Element], int]:
    """File meta elements (explicit VR LE, group 0002, read while the group lasts as pydicom does)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise NotCovered("no Part 10 preamble (DICM at byte 128)")
    meta: dict[int, Element] = {}
    pos = 132
    while True:
        if whole and pos == len(data):
            return meta, pos
        if pos + 8 > len(data):
            raise Truncated("the buffer ends inside the file meta group")
        if data[pos:pos + 2] != b"\x02\x00":
            return meta, pos
        element = _next(data, pos, False)
        if element.length == UNDEFINED:
            raise NotCovered("undefined length in the file meta group")
        meta[element.tag] = element
        pos = element.end


class _Layout(NamedTuple):
    offsets: list[int]  # each element's first byte, in file order
    head: Any  # numpy uint8 view of the header bytes (up to ``stop``)
    stop: int  # the pixel data element's offset, or the end of a whole file without pixel data
    found: list[Element]
    bounds: Any  # numpy int64: first byte of each segment (an element's header, its value)
    segment_element: list[int]  # the element of each segment
    segment_is_header: list[bool]
    first_segment: list[int]  # each element's first segment (one more: the number of segments)
    kept: dict  # keep set -> the indices of its elements (Relayout.part10)


@dataclass(frozen=True)
class Relayout:
    """A header read against an earlier one of the same layout (see :func:`reparse`).

    Attributes:
        previous: the earlier header.
        data: the bytes read (the start of the new file).
        meta: the new file meta elements by tag.
        dataset_offset: first byte of the new data set.
        pixel_offset: offset of the new pixel data element, or None (a whole file without one).
        changed: ``(index, element)`` of every top-level element whose bytes differ from the
            previous header's element at ``index`` (its position in ``previous.elements``'
            file order), ascending; ``element`` is where it lies in :attr:`data`. Every other
            element holds the same bytes as before, shifted by the length changes before it.
    """

    previous: Part10
    data: bytes
    meta: dict[int, Element]
    dataset_offset: int
    pixel_offset: int | None
    changed: list[tuple[int, Element]]

    def raw(self, tag: int) -> bytes | None:
        """The value bytes of a file meta element, or None when absent."""
        element = self.meta.get(tag)
        if element is None or element.length == UNDEFINED:
            return None
        return self.data[element.value_offset:element.end]

    def part10(self, keep: frozenset[int] | None = None) -> Part10:
        """The new header as :func:`parse_part10` describes it (``keep``: only these top-level
        tags, as :func:`parse_part10`'s ``keep``; None: every element)."""
        previous = self.previous
        layout = previous.layout
        assert layout is not None  # reparse gave this Relayout
        old = layout.found
        if keep is None:
            indices: list[int] = list(range(len(old)))
        else:
            indices = layout.kept.get(keep)  # type: ignore[assignment]
            if indices is None:
                if len(layout.kept) > 8:
                    layout.kept.clear()
                indices = layout.kept[keep] = [i for i, e in enumerate(old) if e.tag in keep]
        changed = self.changed
        replaced = dict(changed)
        shift = self.dataset_offset - previous.dataset_offset
        make = tuple.__new__
        found: list[Element] = []
        at, n_changed = 0, len(changed)
        for index in indices:
            while at < n_changed and changed[at][0] < index:  # the length changes before this element
                shift = changed[at][1].end - old[changed[at][0]].end
                at += 1
            new = replaced.get(index)
            if new is None:
                e = old[index]
                new = make(Element, (e[0], e[1], e[2] + shift, e[3] + shift, e[4], e[5] + shift))
            found.append(new)
        return Part10(data=self.data, meta=self.meta, transfer_syntax=previous.transfer_syntax,
                      implicit=previous.implicit, dataset_offset=self.dataset_offset,
                      elements={e.tag: e for e in found}, pixel_offset=self.pixel_offset)


def reparse(data: bytes, previous: Part10, *, whole: bool = False) -> Relayout | None:
    """The header of a Part 10 file whose first bytes are ``data``, described against ``previous``,
    a header whose elements it is expected to share (the previous slice of a series, say).

    The element positions of a data set depend only on the element headers (tag, VR, length)
    and on the contents of undefined-length sequences. So ``data`` is compared with
    ``previous.data`` byte for byte (in C, through numpy); only the elements where they differ
    are looked at: an element whose value changed keeps its position, an element whose header
    changed (another length) is read again and the elements after it are compared at their new
    positions. That gives every element of ``data`` without walking them one by one: the same
    positions :func:`parse_part10` would find (tested against it).

    ``previous`` must come from :func:`parse_part10` without ``keep`` (every element) and with the
    default stop tags. ``whole``: ``data`` is the entire file.

    Returns:
        A :class:`Relayout`, or None when ``data``'s elements are not ``previous``'s (other tags, a
        different first element, transfer syntax or end): walk it with :func:`parse_part10`.

    Raises:
        Truncated: ``data`` ends before its header does (read more of the file).
        NotCovered: ``data`` holds bytes this layer leaves to pydicom.
    """
    layout = previous.layout
    if layout is None:
        return None
    meta, pos = _read_meta(data, whole)
    ts_element = meta.get(0x00020010)
    if ts_element is None:
        raise NotCovered("no TransferSyntaxUID in the file meta group")
    if data[ts_element.value_offset:ts_element.end].decode("latin-1").strip(" \x00") != previous.transfer_syntax:
        return None
    import numpy as np

    implicit = previous.implicit
    found, stop, bounds = layout.found, layout.stop, layout.bounds
    new = np.frombuffer(data, np.uint8)
    n = len(data)
    shift = pos - previous.dataset_offset
    changed: list[tuple[int, Element]] = []
    make = tuple.__new__
    first = 0  # the first element not compared yet at the current shift
    count = len(found)
    while first < count:
        start = found[first].offset
        avail = max(0, min(stop - start, n - (start + shift)))
        last = count  # the elements compared in this pass: first .. last - 1
        if avail < stop - start:  # the data ends first: the element there is read again (or Truncated)
            last = bisect.bisect_right(layout.offsets, start + avail) - 1
            avail = found[last].offset - start
        seg0, seg1 = layout.first_segment[first], layout.first_segment[last]
        differs = new[start + shift:start + shift + avail] != layout.head[start:start + avail]
        if seg1 > seg0:
            segments = (np.flatnonzero(np.logical_or.reduceat(differs, bounds[seg0:seg1] - start)) + seg0).tolist()
        else:
            segments = []
        if last < count:
            segments.append(layout.first_segment[last])  # its header: read again
        first = count
        done = -1
        for segment in segments:
            index = layout.segment_element[segment]
            if index == done:
                continue  # its header and its value both differ
            done = index
            element = found[index]
            if layout.segment_is_header[segment] or element.length == UNDEFINED:
                # its header changed (or an undefined length, whose end is found by walking it)
                at = element.offset + shift
                if whole and at >= n:
                    return None  # the file ends before this element: fewer elements
                if index == 0 and at + 6 <= n and _looks_explicit(data[at + 4:at + 6]) == implicit:
                    raise NotCovered("the data set's encoding contradicts its transfer syntax")  # as parse_part10
                again = _next(data, at, implicit)
                if again.tag != element.tag:
                    return None  # another element: another layout
                changed.append((index, again))
                if again.end - element.end != shift:
                    shift = again.end - element.end
                    first = index + 1  # compare the rest at the new shift
                    break
            else:  # same header, another value: the same position
                changed.append((index, make(Element, (element.tag, element.vr, element.offset + shift,
                                                      element.value_offset + shift, element.length,
                                                      element.end + shift))))
    end = stop + shift
    if previous.pixel_offset is None:
        if not whole or end != n:
            return None
        pixel_offset = None
    else:
        if end + 4 > n:
            if whole:
                return None  # the file ends there: no pixel data, another layout (or a cut file: walk it)
            raise Truncated("the buffer ends before the pixel data")
        if data[end:end + 4] != previous.data[stop:stop + 4]:
            return None
        pixel_offset = end
    return Relayout(previous, data, meta, pos, pixel_offset, changed)


def parse_part10(data: bytes, *, whole: bool = False, stop_tags: frozenset[int] = PIXEL_TAGS,
                 keep: frozenset[int] | None = None,
                 resume: tuple[list[Element], int, int | None] | None = None) -> Part10:
    """Element positions of the header of a Part 10 file whose first bytes are ``data``.

    ``whole``: ``data`` is the entire file (a file without pixel data then parses; its
    :attr:`Part10.pixel_offset` is None). ``keep``: index only these top-level tags (the walk
    still checks every element); ``None``: all. ``resume``: the :attr:`Truncated.walked` of a
    parse of fewer bytes of the same file (with the same ``stop_tags`` and ``keep``): the walk
    goes on where that one stopped, so a header read in growing pieces is walked once.

    Raises:
        Truncated: ``data`` ends before the pixel data (read more, or use pydicom); its
            :attr:`~Truncated.walked` says where to resume.
        NotCovered: a layout left to pydicom (see the module docstring).
    """
    meta, pos = _read_meta(data, whole)
    ts_element = meta.get(0x00020010)
    if ts_element is None:
        raise NotCovered("no TransferSyntaxUID in the file meta group")
    ts = data[ts_element.value_offset:ts_element.end].decode("latin-1").strip(" \x00")
    implicit = _transfer_syntax_encoding(ts)
    if pos + 6 <= len(data) and data[pos:pos + 4] not in (b"\xe0\x7f\x10\x00",):
        # pydicom trusts the first element over the transfer syntax; such files are left to it.
        if _looks_explicit(data[pos + 4:pos + 6]) == implicit:
            raise NotCovered("the data set's encoding contradicts its transfer syntax")
    walked: list[Element] | None = None
    start, item = pos, None
    if resume is not None and (resume[1] > pos or resume[2] is not None):  # walked in fewer bytes: go on
        walked, start, item = list(resume[0]), resume[1], resume[2]
    found, stop = walk(data, start, implicit=implicit, stop_tags=stop_tags, whole=whole, keep=keep, found=walked,
                       item=item)
    elements = {element.tag: element for element in found}
    return Part10(data=data, meta=meta, transfer_syntax=ts, implicit=implicit, dataset_offset=pos,
                  elements=elements, pixel_offset=stop)
