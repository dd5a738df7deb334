"""Write ``convert/dicom/keywords.py``: DICOM keyword -> (tag, VR) from pydicom's data dictionary.

The header view (:mod:`convert.dicom.header`) looks keywords up in that table so that reading
a header never imports pydicom. Only keywords with one VR are listed (``US or SS``-style
entries depend on the data set and are left to pydicom). Run after a pydicom upgrade:

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
    """Keyword -> (tag, VR) for every single-VR entry of pydicom's dictionary (file meta included)."""
    out: dict[str, tuple[int, str]] = {}
    for tag, (vr, _vm, _name, _retired, keyword) in sorted(DicomDictionary.items()):
        if keyword and vr.encode() in VALID_VRS:
            out[keyword] = (tag, vr)
    return out


def main() -> None:
    lines = [
        '"""DICOM keyword -> (tag, VR), generated from pydicom\'s data dictionary by',
        f"``tools/make_keywords.py`` (pydicom {pydicom_version}); do not edit by hand.",
        "",
        "Keywords whose VR depends on the data set (``US or SS``, ``OB or OW``) are not listed.",
        '"""',
        "",
        "KEYWORDS: dict[str, tuple[int, str]] = {",
    ]
    lines += [f"    {keyword!r}: (0x{tag:08X}, {vr!r})," for keyword, (tag, vr) in table().items()]
    lines += ["}", ""]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
