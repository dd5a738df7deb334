"""One header view: a DICOM file's header with pydicom's value rules, read without pydicom.

:func:`read` returns a :class:`Header` over the element positions of
:mod:`convert.dicom.elements` (explicit and implicit VR little endian). It answers what the
readers and the sidecar ask of a pydicom ``Dataset``: ``keyword in ds``, ``tag in ds``,
``ds.get(keyword)``, ``ds[key].value``, ``ds.Keyword``, iteration (elements in tag order),
``ds.private_block(...)``, sequences and their items (:class:`Item` views) and the file meta
(:class:`FileMeta`, whose TransferSyntaxUID has pydicom's ``UID`` properties). It converts the
values whose conversion it mirrors exactly: ASCII text of the common string VRs, DS/IS numbers
(which print as stored, like pydicom's ``DSfloat``/``IS``), binary numbers, AT tags, OB bytes.

Everything else goes to pydicom transparently, per request: person names, UN or implicit-VR
private values, non-ASCII or control-character text, an unusual character set, values pydicom
would warn about, keywords outside the dictionary and every other ``Dataset`` attribute. The
file is then parsed once by pydicom (:meth:`Header.dataset`, cached) and that answer is
returned, so a view never answers differently from pydicom; it is only faster when it can.
Files the element layer does not cover (no preamble, big endian, deflated, gzip, odd
structure) are read by pydicom straight away: :func:`read` then returns the ``Dataset``.

Values are what pydicom 3 returns: ``str`` (stripped) for text, a list for several values
(:class:`Values`, printed as pydicom's ``MultiValue``; an empty value among several is ``""``),
:class:`DecimalString` / :class:`IntegerString` for DS / IS, ``int``/``float`` for binary
numbers, :class:`AttributeTag` for AT, ``None`` for an empty number, ``bytes`` for OB.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Iterator

from convert.dicom import elements
from convert.dicom.elements import TransferSyntax
from convert.dicom.keywords import KEYWORDS
from convert.errors import DicomError

__all__ = ["Header", "DecimalString", "IntegerString", "Item", "Sequence", "as_dataset", "convert_value", "is_gzip",
           "dicom_time_seconds", "is_multi", "open_dicom_bytes", "read", "read_header", "read_part10", "read_view",
           "view_of"]

#: Bytes read first; most headers are smaller (a bigger one is read on, doubling, up to
#: MAX_HEADER_BYTES: enhanced objects with thousands of frames hold megabytes of header).
HEADER_BYTES = 64 * 1024
MAX_HEADER_BYTES = 256 * 1024 * 1024


class NotMirrored(Exception):
    """This value (or request) is left to pydicom."""


# --------------------------------------------------------------------------- reading
def is_gzip(path: Path) -> bool:
    """True for a gzip-compressed DICOM file (named ``*.gz``)."""
    return path.name.lower().endswith(".gz")


def open_dicom_bytes(path: Path) -> Any:
    """Open a DICOM file for binary reading (``*.gz`` files are decompressed on the fly)."""
    if is_gzip(path):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def read_header(path: Path, *, force: bool = True) -> Any:
    """The pydicom ``Dataset`` of ``path`` without pixel data; :class:`DicomError` naming the file."""
    import pydicom

    from convert.dicom.validity import install

    install()  # an unknown VR met later is a CorruptFileError naming the file

    try:
        with open_dicom_bytes(path) as fh:
            data = fh.read() if is_gzip(path) else None
        source: Any = io.BytesIO(data) if data is not None else str(path)
        return pydicom.dcmread(source, stop_before_pixels=True, force=force)
    except Exception as exc:  # pydicom raises many kinds of errors on corrupt files
        raise DicomError(f"not a readable DICOM file: {type(exc).__name__}: {exc}", path) from exc


#: Folder -> the last header :func:`read_part10` walked whole there: the next files of the folder
#: (the slices of a series) are read against it (:func:`convert.dicom.elements.reparse`).
_PREVIOUS: dict[str, "elements.Part10"] = {}
_MAX_PREVIOUS = 64


def read_part10(path: Path, keep: frozenset[int] | None = None) -> "elements.Part10 | None":
    """Element positions of ``path``'s header (:func:`convert.dicom.elements.parse_part10`; ``keep``:
    index only these top-level tags), reading on (doubling) while the header lasts, up to
    :data:`MAX_HEADER_BYTES`; None when the element layer leaves the file to pydicom (no preamble,
    big endian, deflated, gzip, odd structure) or it cannot be read.

    The header is walked once: when the bytes read end inside it, the walk resumes where it
    stopped in the longer buffer (:attr:`convert.dicom.elements.Truncated.walked`). A file is read
    against the last header walked whole in its folder when it shares its elements
    (:func:`~convert.dicom.elements.reparse`: the same positions, found by comparing bytes instead
    of walking every element). :func:`view_of` then gets every element of the file just read
    without walking it again."""
    path = Path(path)
    if is_gzip(path):
        return None
    folder = str(path.parent)
    resume: tuple[list[elements.Element], int, int | None] | None = None
    try:
        with open(path, "rb") as fh:
            data = fh.read(HEADER_BYTES)
            while True:
                whole = len(data) < HEADER_BYTES or len(data) % HEADER_BYTES != 0  # the file ended
                try:
                    return _parse(data, whole, keep, folder, resume)
                except elements.Truncated as exc:
                    if whole or len(data) >= MAX_HEADER_BYTES:
                        return None
                    resume = exc.walked if exc.walked is not None else resume
                    more = fh.read(len(data))  # a big header (Philips, GE, enhanced): read on
                    if not more:
                        return _parse(data, True, keep, folder, resume)
                    data += more
    except (elements.NotCovered, OSError):
        return None


#: The last header :func:`_parse` read, whole (a Part10 of every element, or the Relayout that gives
#: one): :func:`view_of` of the same bytes takes it instead of walking them again.
_LAST: list["elements.Part10 | elements.Relayout"] = []


def _parse(data: bytes, whole: bool, keep: frozenset[int] | None, folder: str,
           resume: "tuple[list[elements.Element], int, int | None] | None" = None) -> "elements.Part10":
    """:func:`read_part10`'s parse of the bytes read so far (raises Truncated / NotCovered;
    ``resume``: where the walk of fewer bytes stopped)."""
    previous = _PREVIOUS.get(folder)
    if previous is not None and resume is None:
        try:
            relaid = elements.reparse(data, previous, whole=whole)
        except elements.Truncated:
            if whole:
                relaid = None  # the walk below says what it is
            else:
                raise  # these bytes end inside the header laid out as the previous one: read on
        except elements.NotCovered:  # the walk below says what it is
            relaid = None
        if relaid is not None:
            _LAST[:] = [relaid]
            return relaid.part10(keep)
    full = elements.parse_part10(data, whole=whole, resume=resume)
    _LAST[:] = [full]
    if full.layout is not None:
        if len(_PREVIOUS) >= _MAX_PREVIOUS:
            _PREVIOUS.clear()
        _PREVIOUS[folder] = full
    if keep is None:
        return full
    return elements.Part10(data=data, meta=full.meta, transfer_syntax=full.transfer_syntax, implicit=full.implicit,
                           dataset_offset=full.dataset_offset, pixel_offset=full.pixel_offset,
                           elements={t: e for t, e in full.elements.items() if t in keep})


def view_of(path: Path, part10: "elements.Part10") -> "Header | None":
    """A :class:`Header` of ``path`` from bytes already read: every element of a ``part10`` parsed
    with ``keep`` (the header :func:`read_part10` read last, without walking it again; other bytes
    are walked in memory); None when the bytes are left to pydicom."""
    last = _LAST[0] if _LAST else None
    if last is not None and last.data is part10.data:
        full = last if isinstance(last, elements.Part10) else last.part10()
        return Header(Path(path), full)
    try:
        full = elements.parse_part10(part10.data, whole=part10.pixel_offset is None)
    except elements.NotCovered:
        return None
    return Header(Path(path), full)


def read_view(path: Path) -> "Header | None":
    """A :class:`Header` view of ``path``, or None when the element layer leaves the file to
    pydicom (no preamble, big endian, deflated, gzip, odd structure) or it cannot be read."""
    part10 = read_part10(path)
    return Header(Path(path), part10) if part10 is not None else None


def read(path: Path) -> "Header | Any":
    """The header of ``path``: a :class:`Header` view, or pydicom's ``Dataset`` for a file the
    element layer leaves to pydicom. Raises :class:`DicomError` naming the file when neither reads it."""
    view = read_view(path)
    return view if view is not None else read_header(Path(path))


def as_dataset(header: Any) -> Any:
    """A pydicom ``Dataset`` for ``header`` (a :class:`Header` view or a ``Dataset``)."""
    return header.dataset() if isinstance(header, Header) else header


def is_multi(value: Any) -> bool:
    """True for a multi-valued element value: a list/tuple, or pydicom's ``MultiValue``
    (checked without importing pydicom: a MultiValue only exists once pydicom is imported)."""
    if isinstance(value, (list, tuple)):
        return True
    import sys

    multival = sys.modules.get("pydicom.multival")
    return multival is not None and isinstance(value, multival.MultiValue)


# --------------------------------------------------------------------------- value rules
#: Text VRs converted here: (max length per value, full-match pattern of one value). The values
#: pydicom 3 reads as stored, without a validation warning, minus everything unusual (blanks at
#: either end of a value, control characters, non-ASCII; an empty value among several is kept as "").
_PRINTABLE = r"[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]*[\x21-\x5b\x5d-\x7e])?"
_TEXT_RULES: dict[str, tuple[int, re.Pattern[str]]] = {
    "CS": (16, re.compile(r"[A-Z0-9_]([A-Z0-9 _]*[A-Z0-9_])?")),
    "LO": (64, re.compile(_PRINTABLE)),
    "SH": (16, re.compile(_PRINTABLE)),
    "UI": (64, re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")),
    "DA": (8, re.compile(r"\d{8}")),
    "TM": (14, re.compile(r"([01]\d|2[0-3])([0-5]\d((60|[0-5]\d)(\.\d{1,6})?)?)?")),
    "DT": (26, re.compile(r"\d{4}((0[1-9]|1[0-2])((0[1-9]|[12]\d|3[01])(([01]\d|2[0-3])([0-5]\d((60|[0-5]\d)"
                          r"(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")),
    "AS": (4, re.compile(r"\d{3}[DWMY]")),
}
_DS = re.compile(r"[+\-]?(\d+|\d+\.\d*|\.\d+)([eE][+\-]?\d+)?")
_IS = re.compile(r"[+\-]?\d+")
_BINARY = {"FD": ("<d", 8), "FL": ("<f", 4), "US": ("<H", 2), "SS": ("<h", 2), "UL": ("<I", 4),
           "SL": ("<i", 4), "UV": ("<Q", 8), "SV": ("<q", 8)}
#: SpecificCharacterSet values under which ASCII bytes decode as ASCII (pydicom, without a warning).
_PLAIN_CHARSETS = frozenset({b"", b"ISO_IR 6", b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 101", b"ISO_IR 109",
                             b"ISO_IR 110", b"ISO_IR 144", b"ISO_IR 148", b"ISO_IR 126", b"ISO_IR 127",
                             b"ISO_IR 138", b"ISO_IR 13", b"ISO_IR 166", b"ISO_IR 203", b"GB18030", b"GBK"})


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
        return f"'{int(self)}'"


class AttributeTag(int):
    """An AT value: a tag ``(group << 16) | element`` that prints as ``(gggg,eeee)`` (pydicom's ``BaseTag``)."""

    @property
    def group(self) -> int:
        return self >> 16

    @property
    def elem(self) -> int:
        return self & 0xFFFF

    @property
    def is_private(self) -> bool:
        return bool(self.group % 2)

    def __str__(self) -> str:
        return f"({self.group:04X},{self.elem:04X})"

    __repr__ = __str__


class Values(list):  # type: ignore[type-arg]
    """Several values of one element: a list that prints like pydicom's ``MultiValue``."""

    def __str__(self) -> str:
        if not self:
            return ""
        return "[" + ", ".join(repr(x) if isinstance(x, (str, bytes)) else str(x) for x in self) + "]"

    __repr__ = __str__


def convert_value(vr: str, raw: bytes) -> Any:
    """The value pydicom 3 gives the little-endian value bytes ``raw`` of VR ``vr``.

    Raises:
        NotMirrored: a VR or a value this module leaves to pydicom (see the module docstring).
    """
    if vr == "OB":
        return raw  # pydicom keeps OB values as the stored bytes (padding included)
    binary = _BINARY.get(vr)
    if binary is not None:
        fmt, size = binary
        if len(raw) % size:
            raise NotMirrored(f"odd length for VR {vr}")
        if not raw:
            return None
        import struct

        values = Values(struct.unpack(f"<{len(raw) // size}{fmt[1]}", raw))
        return values[0] if len(values) == 1 else values
    if vr == "AT":
        if len(raw) % 4:
            raise NotMirrored("odd length for VR AT")
        if not raw:
            return None
        import struct

        halves = struct.unpack(f"<{len(raw) // 2}H", raw)
        tags = Values(AttributeTag(halves[i] << 16 | halves[i + 1]) for i in range(0, len(halves), 2))
        return tags[0] if len(tags) == 1 else tags
    rule = _TEXT_RULES.get(vr)
    if rule is None and vr not in ("DS", "IS"):
        raise NotMirrored(f"VR {vr} is left to pydicom")
    if not raw.isascii():
        raise NotMirrored("non-ASCII text")
    decoded = raw.decode("ascii")
    text = decoded.rstrip(" \x00")
    if not text:
        return "" if rule is not None else None
    if rule is not None and any(len(part) > rule[0] for part in decoded.split("\\")):
        raise NotMirrored(f"long {vr} value")  # pydicom checks text lengths before removing the padding
    out = Values()
    for part in text.split("\\"):
        if not part:
            out.append("")  # an empty value among several: pydicom keeps "" (for numbers too)
        elif vr == "DS":
            if len(part) > 16 or not _DS.fullmatch(part):
                raise NotMirrored("unusual DS value")
            out.append(DecimalString(part))
        elif vr == "IS":
            if len(part) > 12 or not _IS.fullmatch(part) or not -(2**31) <= int(part) < 2**31:
                raise NotMirrored("unusual IS value")
            out.append(IntegerString(part))
        else:
            assert rule is not None
            if not rule[1].fullmatch(part):
                raise NotMirrored(f"unusual {vr} value")
            out.append(part)
    return out[0] if len(out) == 1 else out


def dicom_time_seconds(value: Any) -> float | None:
    """DICOM TM (``HHMMSS.FFFFFF``, or with colons) to seconds since midnight; None if unparsable."""
    if value is None:
        return None
    text = str(value).strip().replace(":", "")
    if not text:
        return None
    try:
        hh = int(text[0:2])
        mm = int(text[2:4]) if len(text) >= 4 else 0
        ss = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600.0 + mm * 60.0 + ss


def _tag(key: Any) -> int:
    """The tag of a tag-like key (int, pydicom BaseTag, ``(group, element)``); NotMirrored otherwise."""
    if isinstance(key, int):
        return key
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) for k in key):
        return (key[0] << 16) | key[1]
    raise NotMirrored(f"key {key!r}")


_TAG_VR: dict[int, str] | None = None


def private_dictionary_vr(tag: int, creator: str) -> str | None:
    """The VR of private element ``tag`` in pydicom's private dictionary under private creator
    ``creator`` (``pydicom.datadict.get_private_entry``: the exact element, then any block
    ``GGGGxxEE``, then ``GGxxxxEE``); None when the dictionary does not list it."""
    from convert.dicom.private_vrs import PRIVATE_VRS

    entries = PRIVATE_VRS.get(creator)
    if entries is None:
        return None
    group, element = f"{tag >> 16:04X}", f"{tag & 0xFFFF:04X}"
    for key in (group + element, f"{group}xx{element[-2:]}", f"{group[:2]}xxxx{element[-2:]}"):
        vr = entries.get(key)
        if vr is not None:
            return vr
    return None


def _dictionary_vr(tag: int) -> str | None:
    """VR of a standard tag (for implicit VR data sets); None when not in the table."""
    global _TAG_VR
    if _TAG_VR is None:
        _TAG_VR = {tag_: vr for tag_, vr in KEYWORDS.values() if vr}  # "": the VR depends on the data set
    return _TAG_VR.get(tag)


class HeaderElement:
    """What ``header[key]`` returns: ``tag``, ``VR``, ``value`` (pydicom's ``DataElement`` fields)."""

    __slots__ = ("tag", "VR", "value")

    def __init__(self, tag: int, vr: str, value: Any) -> None:
        self.tag, self.VR, self.value = tag, vr, value

    @property
    def VM(self) -> int:  # noqa: N802 (pydicom's name)
        if self.value is None or self.value == "" or self.value == b"":
            return 0
        return len(self.value) if isinstance(self.value, list) else 1

    @property
    def is_private(self) -> bool:
        return bool((self.tag >> 16) % 2)

    def __repr__(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X}) {self.VR}: {self.value!r}"


_TAG_KEYWORD: dict[int, str] | None = None


def _keyword_of(tag: int) -> str:
    """The dictionary keyword of a tag ("" when it has none, e.g. private tags)."""
    global _TAG_KEYWORD
    if _TAG_KEYWORD is None:
        _TAG_KEYWORD = {tag_: keyword for keyword, (tag_, _) in KEYWORDS.items()}
    return _TAG_KEYWORD.get(tag, "")


class ViewElement:
    """One element met while iterating a view (pydicom's ``DataElement`` fields: ``tag``,
    ``VR``, ``keyword``, ``value``); the value is converted when read."""

    __slots__ = ("_view", "tag")

    def __init__(self, view: "_View", tag: int) -> None:
        self._view, self.tag = view, AttributeTag(tag)

    @property
    def value(self) -> Any:
        try:
            return self._view._value(int(self.tag), None)  # noqa: SLF001 (the view's own element)
        except NotMirrored:
            return self._view._fallback()[int(self.tag)].value  # noqa: SLF001

    @property
    def VR(self) -> str:  # noqa: N802 (pydicom's name)
        element = self._view._elements()[int(self.tag)]  # noqa: SLF001
        if element.vr and element.vr != b"UN":  # pydicom may give a UN element its dictionary VR
            return element.vr.decode("ascii")
        if element.vr == b"UN":
            return str(self._view._fallback()[int(self.tag)].VR)  # noqa: SLF001
        if element.length == elements.UNDEFINED:
            return "SQ"  # implicit VR: an undefined length holds items
        if self.tag.is_private:
            try:
                return self._view._implicit_private_vr(int(self.tag))  # noqa: SLF001
            except NotMirrored:
                return str(self._view._fallback()[int(self.tag)].VR)  # noqa: SLF001
        vr = _dictionary_vr(int(self.tag))
        if vr is not None:
            return vr
        return str(self._view._fallback()[int(self.tag)].VR)  # noqa: SLF001

    @property
    def keyword(self) -> str:
        return _keyword_of(int(self.tag))

    @property
    def is_private(self) -> bool:
        return self.tag.is_private

    def __repr__(self) -> str:
        return f"{self.tag} {self.VR}"


# --------------------------------------------------------------------------- the view
class _View:
    """A data set's elements (the file's top level, or one sequence item), answered as pydicom
    answers; what the view does not mirror goes to the equivalent pydicom object (:meth:`_fallback`)."""

    __slots__ = ("_data", "_implicit", "_found", "_values", "_plain_text")

    def _init_view(self, data: bytes, implicit: bool, found: dict[int, elements.Element] | None,
                   plain_text: bool) -> None:
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_implicit", implicit)
        object.__setattr__(self, "_found", found)
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_plain_text", plain_text)

    def _fallback(self) -> Any:
        """The pydicom ``Dataset`` this view stands for."""
        raise NotImplementedError

    def _elements(self) -> dict[int, elements.Element]:
        """Elements by tag; NotMirrored when the bytes are left to pydicom."""
        if self._found is None:
            raise NotMirrored("a data set the element layer does not cover")
        return self._found

    def _value(self, tag: int, vr: str | None) -> Any:
        """Converted value of element ``tag`` (present); NotMirrored when left to pydicom."""
        if tag in self._values:
            return self._values[tag]
        element = self._elements()[tag]
        if self._implicit and element.length == elements.UNDEFINED:
            vr = "SQ"  # implicit VR: an undefined length holds items (pydicom reads a sequence, private or not)
        elif self._implicit:
            if tag >> 16 & 1:
                vr = self._implicit_private_vr(tag)
            elif vr is None:
                vr = _dictionary_vr(tag)
                if vr is None:
                    raise NotMirrored("a tag outside the dictionary")
        else:
            vr = element.vr.decode("ascii")  # explicit VR: pydicom converts the value as its VR is stored
        if vr == "SQ":
            value: Any = self._sequence(tag, element)
        elif vr == "UN" and self._implicit and element.length != elements.UNDEFINED:
            value = self._data[element.value_offset:element.end]  # pydicom keeps an unknown private value's bytes
        elif vr == "UN" or element.length == elements.UNDEFINED:
            raise NotMirrored(f"a {vr} element")
        elif not self._plain_text and vr in _TEXT_RULES:
            raise NotMirrored("text under an unusual character set")
        else:
            value = convert_value(vr, self._data[element.value_offset:element.end])
        self._values[tag] = value
        return value

    def _element(self, tag: int, vr: str | None) -> "HeaderElement":
        """Element ``tag`` (present) with its value and the VR pydicom gives it; NotMirrored as :meth:`_value`."""
        value = self._value(tag, vr)
        element = self._elements()[tag]
        if element.vr:
            stored = element.vr.decode("ascii")
        elif element.length == elements.UNDEFINED:
            stored = "SQ"
        elif tag >> 16 & 1:
            stored = self._implicit_private_vr(tag)
        else:
            stored = vr or _dictionary_vr(tag) or "LO"
        return HeaderElement(tag, stored, value)

    def _implicit_private_vr(self, tag: int) -> str:
        """The VR pydicom gives private element ``tag`` of this implicit VR data set
        (``pydicom.hooks._private_vr_for_tag``): ``LO`` for a private creator; the private
        dictionary's entry (:mod:`convert.dicom.private_vrs`) under the creator of the element's
        block in this data set; else ``UN``. NotMirrored for what pydicom resolves otherwise."""
        offset = tag & 0xFFFF
        if 0x0010 <= offset <= 0x00FF:
            return "LO"
        if offset < 0x0010:
            raise NotMirrored("a private group length or reserved element")
        creator_tag = (tag & 0xFFFF0000) | (offset >> 8)
        if creator_tag not in self._elements():
            return "UN"
        creator = self._value(creator_tag, None)
        if not isinstance(creator, str):  # several values: pydicom warns, then reads UN
            raise NotMirrored("a private creator of several values")
        vr = private_dictionary_vr(tag, creator) or "UN"
        if vr.encode("ascii") not in elements.VALID_VRS:  # "US or SS", "OB_OW": pydicom decides
            raise NotMirrored(f"the private dictionary VR {vr!r}")
        return vr

    def _sequence(self, tag: int, element: elements.Element) -> "Sequence":
        try:
            spans = elements.items(self._data, element, implicit=self._implicit)
        except elements.NotCovered as exc:
            raise NotMirrored(str(exc)) from None
        inner = elements.sequence_is_implicit(element, self._implicit)
        return Sequence(Item(self, tag, index, span, inner) for index, span in enumerate(spans))

    def _keyword(self, keyword: str) -> tuple[int, str]:
        entry = KEYWORDS.get(keyword)
        if entry is None:
            raise NotMirrored(f"{keyword!r} is not a keyword of the table")
        return entry

    def __contains__(self, key: Any) -> bool:
        try:
            tag = self._keyword(key)[0] if isinstance(key, str) else _tag(key)
            return tag in self._elements()
        except NotMirrored:
            return key in self._fallback()

    def __getitem__(self, key: Any) -> Any:
        try:
            if isinstance(key, str):
                tag, vr = self._keyword(key)
            else:
                tag, vr = _tag(key), None
            found = self._elements()
            if tag not in found:
                raise KeyError(key)
            return self._element(tag, vr)
        except NotMirrored:
            return self._fallback()[key]

    def get(self, key: Any, default: Any = None) -> Any:
        """pydicom's ``Dataset.get``: a keyword gives the value, a tag the element; ``default`` when absent."""
        if isinstance(key, str):
            try:
                tag, vr = self._keyword(key)
                if tag not in self._elements():
                    return default
                return self._value(tag, vr)
            except NotMirrored:
                return self._fallback().get(key, default)
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        entry = KEYWORDS.get(name)
        if entry is not None:
            tag, vr = entry
            try:
                if tag not in self._elements():
                    raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
                return self._value(tag, vr)
            except NotMirrored:
                pass
        return getattr(self._fallback(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a file's header view is read-only (setting {name}); use .dataset() for a copy to edit")

    def private_block(self, group: int, private_creator: str, create: bool = False) -> "PrivateBlock | Any":
        """pydicom's ``Dataset.private_block`` (read only): KeyError when the creator is absent."""
        if create or not private_creator or group % 2 == 0:
            return self._fallback().private_block(group, private_creator, create)
        try:
            found = self._elements()
            for element in range(0x10, 0x100):
                tag = (group << 16) | element
                if tag in found and self._value(tag, "LO") == private_creator:
                    return PrivateBlock(self, group, element)
        except NotMirrored:
            return self._fallback().private_block(group, private_creator)
        raise KeyError(f"Private creator '{private_creator}' not found")

    def __iter__(self) -> Iterator[Any]:
        """The elements in tag order (as pydicom iterates), each converted when its value is read."""
        try:
            found = self._elements()
        except NotMirrored:
            yield from self._fallback()
            return
        for tag in sorted(found):
            yield ViewElement(self, tag)

    def __len__(self) -> int:
        try:
            return len(self._elements())
        except NotMirrored:
            return len(self._fallback())

    def __bool__(self) -> bool:
        return True


class Header(_View):
    """Read-only view of one file's header (see the module docstring); pydicom answers the rest.

    Attributes:
        path: the file.
        part10: element positions from :func:`convert.dicom.elements.parse_part10`.
    """

    __slots__ = ("path", "part10", "_dataset")

    def __init__(self, path: Path, part10: elements.Part10) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "part10", part10)
        object.__setattr__(self, "_dataset", None)
        charset = part10.raw(0x00080005)
        self._init_view(part10.data, part10.implicit, part10.elements,
                        charset is None or charset.rstrip(b" \x00") in _PLAIN_CHARSETS)

    def dataset(self) -> Any:
        """pydicom's ``Dataset`` of the file (without pixel data), read once and kept."""
        if self._dataset is None:
            object.__setattr__(self, "_dataset", read_header(self.path))
        return self._dataset

    _fallback = dataset

    @property
    def transfer_syntax(self) -> str:
        return self.part10.transfer_syntax

    @property
    def file_meta(self) -> "FileMeta":
        """The file meta group (0002,xxxx) as a view: ``file_meta.TransferSyntaxUID`` and the rest."""
        return FileMeta(self)

    @property
    def filename(self) -> str:
        """The file's path as text (pydicom's ``Dataset.filename``)."""
        return str(self.path)

    @property
    def pixel_offset(self) -> int | None:
        """Byte offset of the pixel data element (its tag), or None when the file has none."""
        return self.part10.pixel_offset

    def __repr__(self) -> str:
        return f"<Header {self.path} ({len(self.part10.elements)} elements, {self.part10.transfer_syntax})>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Header, (self.path, self.part10))


class FileMeta(_View):
    """The file meta group of a :class:`Header` (pydicom's ``FileMetaDataset``), always explicit VR LE."""

    __slots__ = ("header",)

    def __init__(self, header: Header) -> None:
        object.__setattr__(self, "header", header)
        self._init_view(header.part10.data, False, header.part10.meta, True)
        self._values[0x00020010] = TransferSyntax(header.part10.transfer_syntax)  # as the layer read it

    def _fallback(self) -> Any:
        return self.header.dataset().file_meta

    def __repr__(self) -> str:
        return f"<FileMeta of {self.header.path}>"


class Item(_View):
    """One item of a sequence in a :class:`Header` (a pydicom ``Dataset`` in a ``Sequence``)."""

    __slots__ = ("parent", "tag", "index", "_span")

    def __init__(self, parent: _View, tag: int, index: int, span: tuple[int, int], implicit: bool) -> None:
        object.__setattr__(self, "parent", parent)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "_span", span)
        self._init_view(parent._data, implicit, None, parent._plain_text)

    def _elements(self) -> dict[int, elements.Element]:
        if self._found is None:
            try:
                found, _ = elements.walk(self._data, self._span[0], self._span[1], implicit=self._implicit,
                                         stop_tags=frozenset())
            except elements.NotCovered as exc:
                raise NotMirrored(str(exc)) from None
            by_tag = {element.tag: element for element in found}
            charset = by_tag.get(0x00080005)
            if charset is not None:  # an item may name its own character set
                text = self._data[charset.value_offset:charset.end].rstrip(b" \x00")
                object.__setattr__(self, "_plain_text", text in _PLAIN_CHARSETS)
            object.__setattr__(self, "_found", by_tag)
        return self._found  # type: ignore[return-value]

    def _fallback(self) -> Any:
        return self.parent._fallback()[self.tag].value[self.index]

    def __repr__(self) -> str:
        return f"<Item {self.index} of ({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})>"


class Sequence(list):  # type: ignore[type-arg]
    """A sequence's items (:class:`Item` views), in order: what pydicom's ``Sequence`` holds."""


class PrivateBlock:
    """pydicom's ``PrivateBlock`` (read only) over a view: ``block[offset].value``."""

    __slots__ = ("view", "group", "base")

    def __init__(self, view: _View, group: int, element: int) -> None:
        self.view, self.group, self.base = view, group, (group << 16) | (element << 8)

    def get_tag(self, offset: int) -> int:
        if not 0 <= offset < 0x100:
            raise ValueError("Element offset must be less than 256")
        return self.base | offset

    def __contains__(self, offset: int) -> bool:
        return self.get_tag(offset) in self.view._elements()  # noqa: SLF001 (the view's own block)

    def raw(self, offset: int) -> bytes:
        """The stored value bytes of element ``offset`` of the block (KeyError when absent)."""
        tag = self.get_tag(offset)
        element = self.view._elements()[tag]  # noqa: SLF001
        if element.length == elements.UNDEFINED:
            raise ValueError("an undefined-length element has no plain value bytes")
        return self.view._data[element.value_offset:element.end]  # noqa: SLF001

    def __getitem__(self, offset: int) -> Any:
        tag = self.get_tag(offset)
        found = self.view._elements()  # noqa: SLF001
        if tag not in found:
            raise KeyError(tag)
        try:
            return self.view._element(tag, None)  # noqa: SLF001
        except NotMirrored:
            return self.view._fallback()[tag]  # noqa: SLF001
