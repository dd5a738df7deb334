"""Format registry (convert/formats/__init__.py): detection by extension + magic, output choice."""

from __future__ import annotations

import numpy as np
import pytest

from convert.errors import CorruptFileError, InputNotFoundError, UnsupportedFormatError
from convert.formats import all_formats, detect, extension_of, format_for_output, get_format
from convert.formats.nifti import NIFTI
from convert.volume import Volume


def test_every_adapter_satisfies_the_protocol():
    for fmt in all_formats():
        for attr in ("name", "extensions", "description", "can_read", "can_write", "sniff", "read", "write",
                     "output_paths"):
            assert hasattr(fmt, attr), f"{fmt} lacks {attr}"
        assert all(ext.startswith(".") and ext == ext.lower() for ext in fmt.extensions)
    names = [f.name for f in all_formats()]
    assert len(names) == len(set(names))


def test_get_format_and_aliases():
    assert get_format("nifti").name == "nifti"
    assert get_format("NII.GZ").name == "nifti-gz"
    with pytest.raises(UnsupportedFormatError, match="unknown format 'jpeg'"):
        get_format("jpeg")


def test_extension_of_prefers_longest():
    from pathlib import Path

    assert extension_of(Path("a.b.NII.GZ")) == ".nii.gz"
    assert extension_of(Path("x.nii")) == ".nii"


def test_output_format_by_extension_and_to(tmp_path):
    assert format_for_output(tmp_path / "x.nii.gz").name == "nifti-gz"
    assert format_for_output(tmp_path / "x.hdr").name == "nifti-pair"
    assert format_for_output(tmp_path / "x.whatever", to="nifti").name == "nifti"
    with pytest.raises(UnsupportedFormatError, match="pass to='<format>' with one of: nifti") as info:
        format_for_output(tmp_path / "x.xyz")  # a Python caller reads the keyword...
    from convert.errors import cli_spelling

    with cli_spelling():
        assert "pass --to with one of: nifti" in str(info.value)  # ...the command line the flag


def test_detect_missing_empty_text(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        detect(tmp_path / "nope.nii")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        detect(tmp_path / "empty.nii")
    (tmp_path / "text.nii").write_text("not an image\n" * 50)
    with pytest.raises(CorruptFileError, match="text.nii"):
        detect(tmp_path / "text.nii")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UnsupportedFormatError, match="notes.txt"):
        detect(tmp_path / "notes.txt")


def test_detect_misnamed_file_by_magic(tmp_path):
    # A NIfTI file with a wrong extension is still recognised by its magic bytes.
    NIFTI.write(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "a.nii")
    (tmp_path / "a.nii").rename(tmp_path / "scan.data")
    assert detect(tmp_path / "scan.data").name == "nifti"
