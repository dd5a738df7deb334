"""Audit file (0600, atomic, mapping + per-file counts) and the Report."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from convert.anonymize import anonymize
from convert.anonymize.audit import FileLog, Report, record_file
from convert.errors import OutputExistsError

KEY = b"audit-test-key"


def _tree(tmp_path: Path, n: int = 3) -> Path:
    src = tmp_path / "John_Doe_MRN0042"
    src.mkdir()
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.2.1125.{i}"
        ds.save_as(src / f"slice{i}.dcm")
    (src / "notes.txt").write_text("patient John Doe")
    return src


def test_audit_file_is_0600_and_maps_originals_to_pseudonyms(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    audit = tmp_path / "audit.json"
    report = anonymize(src, tmp_path / "out", key=KEY, audit=audit)
    assert report.audit == audit
    assert stat.S_IMODE(os.stat(audit).st_mode) == 0o600
    doc = json.loads(audit.read_text())
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = pydicom.dcmread(report.written[0])
    assert doc["mapping"]["PatientID"] == {original.PatientID: out.PatientID}
    assert doc["mapping"]["StudyInstanceUID"] == {original.StudyInstanceUID: out.StudyInstanceUID}
    assert doc["mapping"]["SeriesInstanceUID"] == {original.SeriesInstanceUID: out.SeriesInstanceUID}
    assert doc["summary"]["written"] == 3 and doc["summary"]["skipped_non_dicom"] == 1
    assert doc["key_source"] == "bytes" and KEY.decode() not in audit.read_text()
    written = [f for f in doc["files"] if f["status"] == "written"]
    assert len(written) == 3
    for entry in written:
        assert entry["removed"] > 0 and entry["replaced"] > 0 and entry["kept"] > 0
        assert set(entry) >= {"input", "output", "status", "removed", "replaced", "emptied", "kept"}
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_no_audit_unless_asked_and_existing_audit_refused(tmp_path: Path) -> None:
    src = _tree(tmp_path, 1)
    report = anonymize(src, tmp_path / "out", key=KEY)
    assert report.audit is None
    assert not list(tmp_path.glob("*.json"))
    audit = tmp_path / "audit.json"
    audit.write_text("{}")
    with pytest.raises(OutputExistsError, match="audit file already exists"):
        anonymize(src, tmp_path / "out2", key=KEY, audit=audit)
    assert not (tmp_path / "out2").exists()  # refused before anything was written
    anonymize(src, tmp_path / "out2", key=KEY, audit=audit, overwrite=True)
    assert stat.S_IMODE(os.stat(audit).st_mode) == 0o600


def test_report_bookkeeping_and_summary_has_no_phi(tmp_path: Path) -> None:
    report = Report(source=Path("in"), kind="anonymize")
    record_file(report, FileLog(source=Path("in/a.dcm"), output=Path("o/a.dcm"), removed=3))
    record_file(report, FileLog(source=Path("in/b.dcm"), status="refused", message="BurnedInAnnotation is YES"))
    record_file(report, FileLog(source=Path("in/Doe_c.dcm"), status="failed", message="in/Doe_c.dcm: truncated"))
    record_file(report, FileLog(source=Path("in/d.txt"), status="non-dicom", message="not a DICOM file"))
    record_file(report, FileLog(source=Path("in/e.dcm"), output=Path("o/e.dcm"), burned_in=True))
    assert report.written == [Path("o/a.dcm"), Path("o/e.dcm")]
    assert [(o.label, o.source, o.error) for o in report.refused] == [
        ("input file 2", Path("in/b.dcm"), "BurnedInAnnotation is YES")]
    # an outcome's error names no input path (the caller still has it: outcome.source)
    assert [(o.label, o.source, o.error) for o in report.failed] == [
        ("input file 3", Path("in/Doe_c.dcm"), "<input file>: truncated")]
    assert report.skipped == [(Path("in/d.txt"), "not a DICOM file")] and report.skipped_non_dicom == 1
    assert report.flagged == [Path("o/e.dcm")] and report.outcomes[-1].label == "input file 5"
    assert [o.info["removed"] for o in report.outcomes] == [3, 0, 0, 0]
    assert [log.source.name for log in report.per_file] == ["a.dcm", "b.dcm", "Doe_c.dcm", "d.txt", "e.dcm"]
    assert not report.ok
    assert report.summary() == ("2 file(s) de-identified (1 refused, 1 failed, 1 non-DICOM skipped, "
                                "1 flagged for burned-in text)")
