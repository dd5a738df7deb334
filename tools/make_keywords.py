"""Write ``convert/dicom/keywords.py``: DICOM keyword -> (tag, VR) from pydicom's data dictionary.

The header view (:mod:`convert.dicom.header`) looks keywords up in that table so that reading
a header never imports pydicom. Keywords whose VR depends on the data set (``US or SS``,
``OB or OW``) are listed with the VR ``""``: their tag answers ``keyword in header``, their
values are converted as stored (explicit VR) or left to pydicom. Run after a pydicom upgrade:

    python tools/make_keywords.py

``tests/test_header.py`` checks every entry against the installed pydicom's dictionary.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import __version__ as pydicom_version
from pydicom._dicom_dict import DicomDictionary

from convert.dicom.elements import VALID_VRS

OUT = Path(__file__).resolve().parents[1] / "convert" / "dicom" / "keywords.py"


def table() -> dict[str, tuple[int, str]]:
    """Keyword -> (tag, VR) for every entry of pydicom's dictionary (file meta included); VR ``""``
    when the dictionary gives several (``US or SS``)."""
    out: dict[str, tuple[int, str]] = {}
    for tag, (vr, _vm, _name, _retired, keyword) in sorted(DicomDictionary.items()):
        if keyword and (vr.encode() in VALID_VRS or " or " in vr):
            out[keyword] = (tag, vr if vr.encode() in VALID_VRS else "")
    return out


def main() -> None:
    lines = [
        '"""DICOM keyword -> (tag, VR), generated from pydicom\'s data dictionary by',
        f"``tools/make_keywords.py`` (pydicom {pydicom_version}); do not edit by hand.",
        "",
        "Keywords whose VR depends on the data set (``US or SS``, ``OB or OW``) have the VR ``\"\"``.",
        '"""',
        "",
        "KEYWORDS: dict[str, tuple[int, str]] = {",
    ]
    lines += [f"    {keyword!r}: (0x{tag:08X}, {vr!r})," for keyword, (tag, vr) in table().items()]
    lines += ["}", ""]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
