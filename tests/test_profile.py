"""The PS3.15 Table E.1-1 action table: shipped data, regeneration, options, combined codes."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest

from convert.anonymize.profile import (CID_7050, OPTIONS, compile_plan, entries, entry_by_keyword,
                                       normalize_options, resolve)
from convert.errors import AnonymizationError
from tests.conftest import REPO, SHARED

MR = "1.2.840.10008.5.1.4.1.1.4"           # MR Image Storage (General Image, General Equipment)
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR (functional groups, Enhanced General Equipment)


def action(keyword: str, keep=(), sop: str | None = MR) -> str:
    from pydicom.datadict import tag_for_keyword

    return compile_plan(normalize_options(keep), sop).actions[tag_for_keyword(keyword)]


def test_table_has_all_621_rows_of_edition_2024e() -> None:
    table = json.loads(resources.files("convert.anonymize").joinpath("profile_table.json").read_text())
    assert table["edition"] == "2024e"
    assert len(entries()) == 621
    assert {e.tag for e in entries()} >= {"50xxxxxx", "60xx3000", "60xx4000", "private"}
    assert set(table["options"].values()) == set(OPTIONS)


def test_regeneration_reproduces_shipped_table_byte_for_byte(tmp_path) -> None:
    if not (SHARED / "standard" / "confidentiality_profile_attributes.json").is_file():
        pytest.skip("../shared/standard not available")
    out = tmp_path / "table.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_profile_table.py"), "--standard",
                    str(SHARED / "standard"), "--out", str(out)], check=True, capture_output=True)
    shipped = resources.files("convert.anonymize").joinpath("profile_table.json").read_bytes()
    assert out.read_bytes() == shipped


@pytest.mark.parametrize("code,typ,expected", [
    ("X/Z", 3, "X"), ("X/Z", 2, "Z"), ("X/Z", 1, "Z"),
    ("X/D", 3, "X"), ("X/D", 2, "X"), ("X/D", 1, "D"),
    ("Z/D", 3, "Z"), ("Z/D", 2, "Z"), ("Z/D", 1, "D"),
    ("X/Z/D", 3, "X"), ("X/Z/D", 2, "Z"), ("X/Z/D", 1, "D"),
    ("X/Z/U*", 3, "X"), ("X/Z/U*", 2, "Z"), ("X/Z/U*", 1, "U"),
    ("K", 1, "K"), ("U", 3, "U"),
])
def test_combined_codes_resolve_by_attribute_type(code: str, typ: int, expected: str) -> None:
    assert resolve(code, typ) == expected


def test_combined_codes_follow_the_iod_of_the_sop_class() -> None:
    # Device Serial Number X/Z/D: type 3 in General Equipment (MR), type 1 in Enhanced General Equipment
    assert entry_by_keyword("DeviceSerialNumber").basic == "X/Z/D"
    assert action("DeviceSerialNumber", sop=MR) == "X"
    assert action("DeviceSerialNumber", sop=ENHANCED_MR) == "D"
    # Content Date Z/D: type 2C in General Image, type 1 in Multi-frame Functional Groups
    assert action("ContentDate", sop=MR) == "Z"
    assert action("ContentDate", sop=ENHANCED_MR) == "D"
    # Acquisition Context Sequence X/Z: type 2 where the module is present, absent from MR Image
    assert action("AcquisitionContextSequence", sop=ENHANCED_MR) == "Z"
    assert action("AcquisitionContextSequence", sop=MR) == "X"
    # Unknown (private) SOP class: the strictest type any IOD gives
    assert action("ContentDate", sop="1.2.3.4.5") == "D"
    assert action("DeviceSerialNumber", sop=None) == "D"


def test_basic_profile_spot_checks() -> None:
    assert entry_by_keyword("PatientName").basic == "Z"
    assert action("PatientName") == "Z"
    assert action("PatientID") == "Z"           # Z/D, type 2 in the Patient module
    assert action("StudyDate") == "Z"
    assert action("SOPInstanceUID") == "U"
    assert action("PatientBirthDate") == "Z"
    assert action("SeriesDescription") == "X"
    assert action("InstitutionName") == "X"
    assert action("PatientAge") == "X"


@pytest.mark.parametrize("keyword,option,expected", [
    ("StudyDate", "full-dates", "K"),
    ("StudyDate", "modified-dates", "C"),
    ("AcquisitionDateTime", "modified-dates", "C"),
    ("DeviceSerialNumber", "device", "K"),
    ("StationName", "device", "K"),
    ("InstitutionName", "institution", "K"),
    ("PatientAge", "patient-characteristics", "K"),
    ("PatientSex", "patient-characteristics", "K"),
    ("PatientWeight", "patient-characteristics", "K"),
    ("SeriesDescription", "clean-descriptors", "C"),
    ("StudyDescription", "clean-descriptors", "C"),
    ("ContentSequence", "clean-structured-content", "C"),
    ("SOPInstanceUID", "uids", "K"),
    ("StudyInstanceUID", "uids", "K"),
    ("GraphicAnnotationSequence", "clean-graphics", "C"),
])
def test_each_option_changes_the_actions_it_should(keyword: str, option: str, expected: str) -> None:
    before = action(keyword)
    assert action(keyword, keep=[option]) == expected
    assert before != expected


def test_wildcard_rows_and_private_rows_follow_their_options() -> None:
    basic = compile_plan(frozenset(), MR)
    assert (basic.curves, basic.overlay_data, basic.overlay_comments, basic.private) == ("X", "X", "X", "X")
    # The standard allows C under Clean Graphics, but bitmaps cannot be inspected: we still remove them
    assert [e.options.get("clean-graphics") for e in entries() if e.tag in ("50xxxxxx", "60xx3000")] == ["C", "C"]
    graphics = compile_plan(normalize_options(["clean-graphics"]), MR)
    assert (graphics.curves, graphics.overlay_data, graphics.overlay_comments) == ("X", "X", "X")
    assert graphics.actions[0x00700001] == "C"  # Graphic Annotation Sequence: cleaned
    assert compile_plan(normalize_options(["safe-private"]), MR).private == "C"


def test_options_are_validated() -> None:
    assert normalize_options(["Full_Dates"]) == {"full-dates"}
    with pytest.raises(AnonymizationError, match="unknown de-identification option"):
        normalize_options(["everything"])
    with pytest.raises(AnonymizationError, match="exclude each other"):
        normalize_options(["full-dates", "modified-dates"])


def test_cid_7050_codes_cover_profile_and_every_option() -> None:
    assert CID_7050["basic"] == ("113100", "Basic Application Confidentiality Profile")
    assert set(OPTIONS) <= set(CID_7050)
    assert CID_7050["uids"][0] == "113110" and CID_7050["safe-private"][0] == "113111"
    assert CID_7050["modified-dates"][0] == "113107" and CID_7050["full-dates"][0] == "113106"
