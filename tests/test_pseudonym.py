"""Keyed pseudonyms: determinism, key separation, valid 2.25 UIDs, references, date shifts."""

from __future__ import annotations

import re
import subprocess
import sys

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from convert.anonymize import anonymize_dataset
from convert.anonymize.pseudonym import Pseudonymizer, load_key, shift_da, shift_dt
from convert.errors import AnonymizationError

UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
KEY = b"unit-test-key-0123456789"


def _image(patient: str = "PAT1", sop: str = "1.2.3.4.100", series: str = "1.2.3.4.2", study: str = "1.2.3.4.1",
           date: str = "20200131") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = "1.2.3.4.9"
    ds.PatientID = patient
    ds.PatientName = "Doe^John"
    ds.Modality = "MR"
    ds.StudyDate = date
    ds.AcquisitionDateTime = date + "101500.5+0100"
    return ds


def test_same_key_same_pseudonyms_across_processes() -> None:
    code = ("from convert.anonymize.pseudonym import Pseudonymizer as P; p = P(b'unit-test-key-0123456789'); "
            "print(p.uid('1.2.3'), p.patient_id('PAT1'), p.day_offset('PAT1'))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    p = Pseudonymizer(KEY)
    assert outs == {f"{p.uid('1.2.3')} {p.patient_id('PAT1')} {p.day_offset('PAT1')}\n"}


def test_different_keys_give_different_pseudonyms() -> None:
    a, b = Pseudonymizer(b"key-a"), Pseudonymizer(b"key-b")
    assert a.uid("1.2.3") != b.uid("1.2.3")
    assert a.patient_id("PAT1") != b.patient_id("PAT1")
    assert a.uid("1.2.3") != a.uid("1.2.4")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.", min_size=1, max_size=64))
def test_uids_are_valid_2_25_uids(original: str) -> None:
    uid = Pseudonymizer(KEY).uid(original)
    assert UID_RE.match(uid) and len(uid) <= 64
    assert int(uid[5:]) < 2**128
    assert pydicom.uid.UID(uid).is_valid


def test_uid_padding_does_not_change_the_pseudonym() -> None:
    p = Pseudonymizer(KEY)
    assert p.uid("1.2.3\0") == p.uid("1.2.3") == p.uid(" 1.2.3 ")


def test_references_stay_consistent_across_files() -> None:
    first = _image(sop="1.2.3.4.100")
    second = _image(sop="1.2.3.4.101")
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([ref])  # X/Z/U*: kept, UIDs mapped (also in a type-1 place:)
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    inst = Dataset()
    inst.ReferencedSOPClassUID = first.SOPClassUID
    inst.ReferencedSOPInstanceUID = first.SOPInstanceUID
    series_ref.ReferencedInstanceSequence = Sequence([inst])
    second.ReferencedSeriesSequence = Sequence([series_ref])
    a = anonymize_dataset(first, key=KEY)
    b = anonymize_dataset(second, key=KEY)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    item = b.ReferencedSeriesSequence[0]
    assert item.SeriesInstanceUID == a.SeriesInstanceUID
    assert item.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert item.ReferencedInstanceSequence[0].ReferencedSOPClassUID == first.SOPClassUID  # class UIDs kept
    originals = {"1.2.3.4.100", "1.2.3.4.101", "1.2.3.4.1", "1.2.3.4.2", "1.2.3.4.9"}
    for ds in (a, b):
        for elem in ds.iterall():
            if elem.VR == "UI":
                assert str(elem.value) not in originals


def test_one_new_series_uid_per_original_series() -> None:
    outs = [anonymize_dataset(_image(sop=f"1.2.3.4.{100 + n}", series=f"1.2.3.4.{2 + n % 2}"), key=KEY)
            for n in range(6)]
    assert len({o.SeriesInstanceUID for o in outs}) == 2
    assert len({o.SOPInstanceUID for o in outs}) == 6


def test_date_shift_is_consistent_per_patient_and_keeps_intervals() -> None:
    keep = ["modified-dates"]
    a = anonymize_dataset(_image(patient="P1", date="20200131"), key=KEY, keep=keep)
    b = anonymize_dataset(_image(patient="P1", date="20200210", sop="1.9"), key=KEY, keep=keep)
    c = anonymize_dataset(_image(patient="P2", date="20200131", sop="1.8"), key=KEY, keep=keep)
    from datetime import date

    def d(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    assert (d(b.StudyDate) - d(a.StudyDate)).days == 10
    assert a.StudyDate != "20200131"
    assert c.StudyDate != a.StudyDate  # another patient, another offset (with overwhelming probability)
    assert a.AcquisitionDateTime[:8] == a.StudyDate
    assert a.AcquisitionDateTime.endswith("101500.5+0100")  # time of day and UTC offset kept
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"


def test_full_dates_keep_dates_and_basic_removes_them() -> None:
    full = anonymize_dataset(_image(), key=KEY, keep=["full-dates"])
    assert full.StudyDate == "20200131" and full.LongitudinalTemporalInformationModified == "UNMODIFIED"
    basic = anonymize_dataset(_image(), key=KEY)
    assert basic.StudyDate in ("", None) and "AcquisitionDateTime" not in basic


@pytest.mark.parametrize("value,days,expected", [
    ("20200301", -1, "20200229"), ("2020.03.01", -1, "20200229"), ("202003", -1, "202002"),
    ("2020", -1, "2019"), ("20200101-20200201", 1, "20200102-20200202"), ("junk", 3, None),
])
def test_shift_da(value: str, days: int, expected: str | None) -> None:
    assert shift_da(value, days) == expected


def test_shift_dt_keeps_time_and_timezone() -> None:
    assert shift_dt("20200301120000.123456-0500", -1) == "20200229120000.123456-0500"
    assert shift_dt("2020", 10) == "2020"
    assert shift_dt("not a date", 1) is None


def test_key_from_file_env_and_random(tmp_path, monkeypatch) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_bytes(b"abc\n")
    assert load_key(keyfile) == (b"abc", "file")
    assert load_key(str(keyfile))[0] == b"abc"
    monkeypatch.setenv("MEDCONVERT_KEY", "envkey")
    assert load_key(None) == (b"envkey", "env MEDCONVERT_KEY")
    monkeypatch.delenv("MEDCONVERT_KEY")
    monkeypatch.setenv("MEDCONVERT_KEY_FILE", str(keyfile))
    assert load_key(None)[0] == b"abc"
    monkeypatch.delenv("MEDCONVERT_KEY_FILE")
    assert load_key(None)[1] == "random"
    with pytest.raises(AnonymizationError, match="key file not found"):
        load_key(tmp_path / "missing")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(AnonymizationError, match="empty"):
        load_key(tmp_path / "empty")


def test_pseudonymizer_never_shows_the_key() -> None:
    assert "unit-test" not in repr(Pseudonymizer(KEY))
