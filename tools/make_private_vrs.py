"""Write ``convert/dicom/private_vrs.py``: pydicom's private dictionary, VRs only.

In an implicit VR data set a private element's VR is not stored: pydicom takes it from its
private dictionary, under the private creator of the element's block (``LO`` for the
creator itself, ``UN`` when the creator or the element is unknown). The header view
(:mod:`convert.dicom.header`) looks the VR up in this table so that reading a private value
of an implicit VR file neither imports pydicom nor hands the whole file to it. Run after a
pydicom upgrade:

    python tools/make_private_vrs.py

``tests/test_header.py`` checks the table against the installed pydicom's dictionary.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import __version__ as pydicom_version
from pydicom._private_dict import private_dictionaries

OUT = Path(__file__).resolve().parents[1] / "convert" / "dicom" / "private_vrs.py"


def table() -> dict[str, dict[str, str]]:
    """Private creator -> {element key as pydicom writes it (``0019xx0C``): VR}."""
    return {creator: {key: entry[0] for key, entry in sorted(entries.items())}
            for creator, entries in sorted(private_dictionaries.items())}


def main() -> None:
    lines = [
        '"""Private creator -> {element key: VR}, generated from pydicom\'s private dictionary by',
        f"``tools/make_private_vrs.py`` (pydicom {pydicom_version}); do not edit by hand.",
        "",
        "Keys are pydicom's: ``GGGGEEEE``, ``GGGGxxEE`` (any block) or ``GGxxxxEE``; the VR may be",
        "one pydicom resolves later (``US or SS``).",
        '"""',
        "",
        "PRIVATE_VRS: dict[str, dict[str, str]] = {",
    ]
    # one line per creator: a data table, read by the interpreter, not by people
    lines += [f"    {creator!r}: {entries!r}," for creator, entries in table().items()]
    lines += ["}", ""]
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
