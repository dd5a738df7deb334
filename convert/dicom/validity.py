"""What a DICOM dataset read by pydicom must satisfy before medconvert uses it.

**Unknown VRs.**
pydicom converts element values lazily, on first access, through its
``raw_element_value`` hook; an element whose explicit VR is not one of PS3.5's
(``XX``, or two random bytes in a damaged file) makes it raise a bare
``NotImplementedError`` wherever that access happens (a sidecar field, a
de-identification rule...). :func:`install` registers a callback that runs
pydicom's own conversion and turns that case into :class:`UnknownVRError`, a
:class:`~convert.errors.CorruptFileError` naming the file (when the element is at
the top level of a dataset read from a file) and the element. It also subclasses
``NotImplementedError``, so code written against pydicom's behaviour still catches it.

The byte layout after an unknown VR is ambiguous (2- or 4-byte length), so the
file is refused rather than guessed at. Every medconvert module that reads a
dataset with pydicom calls :func:`install` first (it is idempotent and cheap).

**The file meta** (:func:`check_file_meta`): its elements have the VRs PS3.10 gives
them, and TransferSyntaxUID names a transfer syntax (not empty, not an unknown UID),
so that the data set's encoding is known before anything reads, decodes or
de-identifies it.
"""

from __future__ import annotations

from typing import Any

from convert.errors import CorruptFileError

_INSTALLED = False


class UnknownVRError(CorruptFileError, NotImplementedError):
    """An element's value representation is not a DICOM VR: the file is corrupt."""


def _raw_element_value(raw: Any, data: dict[str, Any], **kwargs: Any) -> None:
    from pydicom.hooks import raw_element_value

    try:
        raw_element_value(raw, data, **kwargs)
    except NotImplementedError as exc:
        ds = kwargs.get("ds")
        path = getattr(ds, "filename", None) if ds is not None else None
        where = "" if isinstance(path, str) and path else " (in a sequence item)"
        vr = data.get("VR", raw.VR)
        raise UnknownVRError(
            f"element {raw.tag}{where} has the value representation {str(vr)[:8]!r}, which is not a DICOM VR: "
            "the file is corrupt (damaged in transfer, or written by a broken tool); re-export it",
            path if isinstance(path, str) and path else None) from exc


#: The VR of every file meta element (PS3.10 Table 7.1-1), so that a header view is checked without pydicom.
FILE_META_VRS: dict[int, str] = {
    0x00020000: "UL", 0x00020001: "OB", 0x00020002: "UI", 0x00020003: "UI", 0x00020010: "UI", 0x00020012: "UI",
    0x00020013: "SH", 0x00020016: "AE", 0x00020017: "AE", 0x00020018: "AE", 0x00020026: "UR", 0x00020027: "UR",
    0x00020028: "UR", 0x00020031: "UI", 0x00020032: "UR", 0x00020033: "LO", 0x00020035: "AE", 0x00020100: "UI",
    0x00020102: "OB",
}
#: Transfer syntaxes whose data set and pixel data medconvert reads without pydicom (native little endian).
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _meta_vrs(ds: Any) -> dict[int, str] | None:
    """File meta tag -> VR as stored, from a header view's element positions (no pydicom parse), or
    from pydicom's file meta; None when there is no file meta."""
    part10 = getattr(ds, "part10", None)
    if part10 is not None and isinstance(getattr(part10, "meta", None), dict):  # convert.dicom.header.Header
        return {tag: element.vr.decode("latin-1") for tag, element in part10.meta.items()}
    meta = getattr(ds, "file_meta", None)
    if meta is None or not len(meta):
        return None
    store = getattr(meta, "_dict", {})
    return {int(tag): str(getattr(store.get(tag), "VR", "") or "") for tag in list(meta.keys())}


def _transfer_syntax_text(ds: Any, path: Any) -> str | None:
    """TransferSyntaxUID as stored (stripped), None when the file meta has none."""
    part10 = getattr(ds, "part10", None)
    if part10 is not None and isinstance(getattr(part10, "meta", None), dict):  # a header view knows it
        return str(part10.transfer_syntax).strip("\0 ") if 0x00020010 in part10.meta else None
    meta = getattr(ds, "file_meta", None)
    try:
        if meta is None or "TransferSyntaxUID" not in meta:
            return None
        return str(meta.get("TransferSyntaxUID") or "").strip("\0 ")
    except Exception as exc:  # pydicom cannot convert the element
        raise CorruptFileError(f"the file meta's TransferSyntaxUID cannot be read: {exc}", path) from exc


def transfer_syntax(ds: Any, path: Any) -> Any:
    """The TransferSyntaxUID of ``ds`` (a pydicom Dataset or a header view), checked: for a header
    view of a native file the view's own :class:`convert.dicom.elements.TransferSyntax` (no pydicom
    import), else a pydicom ``UID``.

    Raises:
        CorruptFileError: absent, empty or not a UID.
        DicomError: a UID that is not a transfer syntax pydicom knows (private, or corrupt).
    """
    from convert.errors import DicomError

    text = _transfer_syntax_text(ds, path)
    if not text:
        raise CorruptFileError("the file meta has no (or an empty) TransferSyntaxUID, so the data set's encoding "
                               "is unknown; re-export the file", path)
    if text in _NATIVE and getattr(ds, "part10", None) is not None:
        from convert.dicom.elements import TransferSyntax

        return TransferSyntax(text)
    from pydicom.uid import UID

    uid = UID(text)
    if not uid.is_transfer_syntax:
        raise DicomError(f"unknown transfer syntax {text[:64]!r} (a private or corrupt TransferSyntaxUID): its "
                         "encoding and pixel data cannot be read; re-export the file in a standard transfer syntax",
                         path)
    return uid


def check_file_meta(ds: Any, path: Any) -> None:
    """Refuse a dataset whose file meta cannot be trusted: an element of group 0002 with a VR other
    than PS3.10's (:data:`FILE_META_VRS`; e.g. a sequence where a UID belongs), or an unusable
    TransferSyntaxUID (:func:`transfer_syntax`). A dataset without file meta passes (pydicom chose
    the encoding). Works on a pydicom Dataset and on a :class:`convert.dicom.header.Header` view
    (without pydicom for a native file).

    Raises:
        CorruptFileError / DicomError naming ``path``.
    """
    vrs = _meta_vrs(ds)
    if not vrs:
        return
    for tag, vr in vrs.items():
        expected = FILE_META_VRS.get(tag)
        if expected and vr and vr not in (expected, "UN"):
            raise CorruptFileError(f"file meta element ({tag >> 16:04X},{tag & 0xFFFF:04X}) has VR {vr} where "
                                   f"PS3.10 requires {expected}: the file is corrupt", path)
    if 0x00020010 in vrs:
        transfer_syntax(ds, path)


def install() -> None:
    """Register :func:`_raw_element_value` as pydicom's ``raw_element_value`` hook (once)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from pydicom.hooks import hooks

    hooks.register_callback("raw_element_value", _raw_element_value)
    _INSTALLED = True
