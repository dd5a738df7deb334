"""convert.dicom.validity: unknown VRs and untrustworthy file meta are CorruptFileErrors naming the file."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from convert.cli import app
from convert.dicom.validity import UnknownVRError, check_file_meta, install, transfer_syntax
from convert.errors import CorruptFileError, DicomError
from fixtures.dicom_series import make_series
from fixtures.fuzz_corpus import edit_element

runner = CliRunner()


def _slice(tmp_path: Path, tag: int, **edit) -> Path:
    paths, _ = make_series(tmp_path / "src", slices=2, rows=8, columns=6)
    paths[0].write_bytes(edit_element(paths[0].read_bytes(), tag, **edit))
    return paths[0]


def test_unknown_vr_is_a_corrupt_file_error_naming_the_file(tmp_path):
    """Modality with VR 'XX': reading its value raises UnknownVRError (a CorruptFileError, and a
    NotImplementedError as pydicom's own error was), naming the file and the element."""
    install()
    path = _slice(tmp_path, 0x00080060, vr=b"XX")
    ds = pydicom.dcmread(path)
    with pytest.raises(UnknownVRError) as info:
        ds.Modality  # noqa: B018
    assert isinstance(info.value, CorruptFileError) and isinstance(info.value, NotImplementedError)
    assert str(path) in str(info.value) and "(0008,0060)" in str(info.value) and "'XX'" in str(info.value)


@pytest.mark.parametrize("command", [["info"], ["info", "--json"]])
def test_unknown_vr_through_the_cli_is_one_line(tmp_path, command):
    path = _slice(tmp_path, 0x00080060, vr=b"XX")
    result = runner.invoke(app, [*command, str(path)])
    assert result.exit_code == 1
    assert "unexpected" not in result.output and "value representation 'XX'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("tag", [0x00100010, 0x00080060, 0x00280010])  # PatientName, Modality, Rows
def test_anonymize_of_an_unknown_vr_leaks_nothing_and_reports_clearly(tmp_path, tag):
    """An unknown VR in `anonymize`: either refused with a message naming the VR, or written without
    the patient's name; never "could not de-identify: NotImplementedError"."""
    path = _slice(tmp_path, tag, vr=b"XX")
    result = runner.invoke(app, ["anonymize", str(path), str(tmp_path / "out"), "--workers", "1"])
    assert "could not de-identify" not in result.output and "unexpected" not in result.output
    if result.exit_code == 1:
        assert "'XX'" in result.stderr
    else:
        assert result.exit_code == 0
        (written,) = (tmp_path / "out").rglob("*.dcm")
        assert b"Phantom" not in written.read_bytes()


@pytest.mark.parametrize("uid, error, words", [(b"1.2.3.4.5", DicomError, "unknown transfer syntax"),
                                               (b"", CorruptFileError, "empty")])
def test_unknown_or_empty_transfer_syntax(tmp_path, uid, error, words):
    path = _slice(tmp_path, 0x00020010, value=uid)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    with pytest.raises(error, match=words):
        transfer_syntax(ds, path)


@pytest.mark.parametrize("uid", [b"1.2.3.4.5", b""])
def test_anonymize_of_an_unknown_or_empty_transfer_syntax_names_it(tmp_path, uid):
    """An unknown or empty TransferSyntaxUID in `anonymize`: the file fails with a message saying so
    (no "could not de-identify: ValueError/AttributeError")."""
    path = _slice(tmp_path, 0x00020010, value=uid)
    result = runner.invoke(app, ["anonymize", str(path), str(tmp_path / "out"), "--workers", "1"])
    assert result.exit_code == 1 and "could not de-identify" not in result.output
    assert "transfer syntax" in result.stderr.lower() or "TransferSyntaxUID" in result.stderr


def test_file_meta_element_with_a_wrong_vr(tmp_path):
    """(0002,0002) MediaStorageSOPClassUID stored as a sequence: the file meta cannot be trusted."""
    path = _slice(tmp_path, 0x00020002, vr=b"SQ")
    with pytest.raises(CorruptFileError, match="file meta element"):
        check_file_meta(pydicom.dcmread(path, force=True), path)
