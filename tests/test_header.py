"""The header view (convert/dicom/header.py): pydicom's answers, without pydicom where it can.

pydicom is the oracle throughout: every value, membership test, element and private block the
view gives must equal what ``pydicom.dcmread(..., stop_before_pixels=True)`` gives for the same
file, whether the view converted it itself or handed the request to pydicom.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from convert.dicom import header as header_module
from convert.dicom.header import Header, NotMirrored, Values, as_dataset, convert_value, dicom_time_seconds, read
from convert.dicom.keywords import KEYWORDS
from tests.conftest import CONFORMANCE, REPO

# --------------------------------------------------------------------------- the keyword table


def test_keyword_table_matches_pydicoms_dictionary_and_covers_the_sidecar() -> None:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from convert.dicom.sidecar import SIDECAR_FIELDS

    for keyword, (tag, vr) in KEYWORDS.items():
        assert tag_for_keyword(keyword) == tag, keyword
        assert dictionary_VR(tag) == vr or (vr == "" and " or " in dictionary_VR(tag)), keyword
    used = {kw for _, keywords, _ in SIDECAR_FIELDS for kw in keywords}
    assert used <= set(KEYWORDS)
    assert len(KEYWORDS) > 4000  # the whole dictionary, not a hand-picked subset


def test_generated_keyword_module_is_what_the_generator_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_keywords
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(make_keywords, "OUT", tmp_path / "keywords.py")
    make_keywords.main()
    generated: dict[str, Any] = {}
    exec((tmp_path / "keywords.py").read_text(), generated)  # noqa: S102 (our own generated table)
    assert generated["KEYWORDS"] == KEYWORDS


def test_private_vr_table_is_pydicoms_private_dictionary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom._private_dict import private_dictionaries

    from convert.dicom.private_vrs import PRIVATE_VRS

    assert PRIVATE_VRS == {creator: {key: entry[0] for key, entry in entries.items()}
                           for creator, entries in private_dictionaries.items()}
    assert sum(map(len, PRIVATE_VRS.values())) > 10_000  # the whole dictionary
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_private_vrs
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(make_private_vrs, "OUT", tmp_path / "private_vrs.py")
    make_private_vrs.main()
    generated: dict[str, Any] = {}
    exec((tmp_path / "private_vrs.py").read_text(), generated)  # noqa: S102 (our own generated table)
    assert generated["PRIVATE_VRS"] == PRIVATE_VRS


@given(group=st.sampled_from([0x0009, 0x0019, 0x0029, 0x0043, 0x2005, 0x7FE1]), block=st.integers(0x10, 0xFF),
       offset=st.integers(0, 0xFF))
@settings(max_examples=300, deadline=None)
def test_private_dictionary_vr_is_pydicoms(group: int, block: int, offset: int) -> None:
    from pydicom.datadict import private_dictionary_VR

    from convert.dicom.header import private_dictionary_vr

    tag = group << 16 | block << 8 | offset
    for creator in ("GEMS_ACQU_01", "GEMS_PARM_01", "SIEMENS CSA HEADER", "Philips MR Imaging DD 001", "SIEMENS MR HEADER",
                    "GEMS_IDEN_01", "NO SUCH CREATOR"):
        try:
            theirs: str | None = private_dictionary_VR(tag, creator)
        except KeyError:
            theirs = None
        assert private_dictionary_vr(tag, creator) == theirs, (hex(tag), creator)


def _run_fresh(code: str, path: Path) -> str:
    """``python -c code path`` in a fresh interpreter (only the repository on its path): its stdout."""
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _implicit_private_dataset() -> Dataset:
    """Private elements of every kind an implicit VR file may hold, stored without their VR."""
    ds = _base_dataset()
    acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)  # block 0x10
    acq.add_new(0x24, "DS", "12.5")  # 0019xx24 DS in the dictionary
    acq.add_new(0x25, "US", 3)  # US
    acq.add_new(0xFB, "IS", ["1", "2"])  # IS, several values
    acq.add_new(0x1D, "OB", b"\x01\x02\x03\x04")  # not in the dictionary: UN, its bytes
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" + bytes(8))
    csa.add_new(0x08, "CS", "IMAGE NUM 4")
    ds.add_new(0x00290011, "LO", "SIEMENS MEDCOM HEADER2 ")  # a second block, creator with padding
    ds.add_new(0x00291160, "LO", "com")
    ds.add_new(0x00330010, "LO", "NOT A KNOWN CREATOR")  # unknown creator: UN
    ds.add_new(0x00331001, "DS", "7")
    ds.add_new(0x00351001, "LO", "no creator at all")  # no creator element: UN
    fdms = ds.private_block(0x0027, "FDMS 1.0", create=True)
    fdms.add_new(0xA3, "US", 5)  # "US or SS" in the dictionary: left to pydicom
    item = Dataset()
    item.add_new(0x00430010, "LO", "GEMS_PARM_01")
    item.add_new(0x00431039, "IS", ["1000", "0", "0", "0"])
    ds.ReferencedImageSequence.append(item)  # a private block in an item: its own creator
    return ds


def test_implicit_vr_private_values_are_pydicoms(tmp_path: Path) -> None:
    path = _write(_implicit_private_dataset(), tmp_path / "a.dcm", ImplicitVRLittleEndian)
    view = assert_view_equals_pydicom(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    mine = {e.tag: (e.VR, "" if e.VR == "SQ" else str(e.value)) for e in view}
    theirs = {e.tag: (e.VR, "" if e.VR == "SQ" else str(e.value)) for e in ds}
    assert mine == theirs
    assert theirs[0x00191024] == ("DS", "12.5") and theirs[0x0019101D][0] == "UN" and theirs[0x00331001][0] == "UN"
    for tag in (0x00191024, 0x00191025, 0x001910FB, 0x0019101D, 0x00291010, 0x00291008, 0x00291160, 0x00331001,
                0x00351001, 0x002710A3):
        assert view[tag].VR == ds[tag].VR, hex(tag)
        assert _same(view[tag].value, ds[tag].value), hex(tag)
    assert view.private_block(0x0019, "GEMS_ACQU_01")[0x24].value == 12.5
    assert view.private_block(0x0029, "SIEMENS CSA HEADER").raw(0x10)[:4] == b"SV10"
    assert _same(view.ReferencedImageSequence[1].private_block(0x0043, "GEMS_PARM_01")[0x39].value,
                 ds.ReferencedImageSequence[1].private_block(0x0043, "GEMS_PARM_01")[0x39].value)


def test_implicit_vr_private_values_are_read_without_pydicom(tmp_path: Path) -> None:
    """The private dictionary is a table of ours: no pydicom import, no second parse of the file."""
    path = _write(_implicit_private_dataset(), tmp_path / "a.dcm", ImplicitVRLittleEndian)
    code = ("import sys; from convert.dicom.header import read; h = read(sys.argv[1]); "
            "b = h.private_block(0x0019, 'GEMS_ACQU_01'); "
            "v = (b[0x24].value, b[0x25].value, list(b[0xFB].value), b[0x1D].value, h[0x00331001].value, "
            "h[0x00291160].VR, h.ReferencedImageSequence[1].private_block(0x0043, 'GEMS_PARM_01')[0x39].value); "
            "print(repr(v), 'pydicom' in sys.modules)")
    # the values test_implicit_vr_private_values_are_pydicoms checks against pydicom (0019xxFB is US there)
    assert _run_fresh(code, path) == ("('12.5', 3, [49, 92, 50, 32], b'\\x01\\x02\\x03\\x04', b'7 ', 'LO', "
                                   "[1000, 0, 0, 0]) False")


# --------------------------------------------------------------------------- values
def _pydicom_value(vr: str, raw: bytes) -> tuple[Any, list[str]]:
    from pydicom.dataelem import RawDataElement, convert_raw_data_element

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elem = convert_raw_data_element(RawDataElement(0x00180050 if vr == "DS" else 0x00080060, vr, len(raw), raw,
                                                       0, False, True))
        value = elem.value
    return value, [str(w.message) for w in caught]


_TEXTS = st.one_of(
    st.text(alphabet=" 0123456789.+-eEABCxyz_\\\x00/:", max_size=24),  # mostly odd values
    st.lists(st.from_regex(r"[+-]?[0-9]{1,6}(\.[0-9]{0,6})?([eE][+-]?[0-9])?", fullmatch=True), min_size=1,
             max_size=3).map("\\".join),  # plain numbers
    st.lists(st.from_regex(r"[A-Z0-9_]{1,8}( [A-Z0-9_]{1,6})?", fullmatch=True), min_size=1, max_size=3)
    .map("\\".join),  # plain codes
    st.lists(st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,5}){0,6}", fullmatch=True), min_size=1, max_size=2)
    .map("\\".join),  # UIDs
    st.from_regex(r"(19|20)[0-9]{2}([01][0-9]([0-3][0-9]([0-2][0-9]([0-6][0-9]([0-6][0-9](\.[0-9]{1,7})?)?)?)?)?)?"
                  r"([+-][0-9]{4})?", fullmatch=True),  # dates and times
)


@settings(max_examples=500, deadline=None)
@given(vr=st.sampled_from(["DS", "IS", "CS", "LO", "SH", "TM", "DA", "DT", "UI", "AS"]), text=_TEXTS)
def test_converted_values_are_pydicoms_or_left_to_it(vr: str, text: str) -> None:
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b" "
    try:
        mine = convert_value(vr, raw)
    except NotMirrored:
        return
    theirs, warned = _pydicom_value(vr, raw)
    assert not warned, (vr, raw, warned)
    assert mine == theirs or (mine in ("", None) and theirs in ("", None))
    assert str(mine) == str(theirs) or mine in ("", None)
    assert type(mine) is Values if isinstance(theirs, pydicom.multival.MultiValue) else not isinstance(mine, list)


@settings(max_examples=200, deadline=None)
@given(vr=st.sampled_from(["FD", "FL", "US", "SS", "UL", "SL", "UV", "SV", "AT"]), data=st.binary(max_size=40))
def test_binary_values_are_pydicoms(vr: str, data: bytes) -> None:
    size = {"FD": 8, "FL": 4, "US": 2, "SS": 2, "UL": 4, "SL": 4, "UV": 8, "SV": 8, "AT": 4}[vr]
    raw = data[:len(data) // size * size]
    theirs, _ = _pydicom_value(vr, raw)
    mine = convert_value(vr, raw)
    if isinstance(theirs, (list, pydicom.multival.MultiValue)):
        assert isinstance(mine, Values)
    assert _same(mine, theirs)
    assert vr != "AT" or str(mine) == str(theirs)


def test_plain_values_and_what_is_left_to_pydicom() -> None:
    assert convert_value("DS", b"0.7\\0.70 ") == [0.7, 0.7] and str(convert_value("DS", b"0.70")) == "0.70"
    assert convert_value("IS", b"0012") == 12 and str(convert_value("IS", b"0012")) == "0012"
    assert convert_value("CS", b"ORIGINAL\\PRIMARY\\AXIAL ") == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert convert_value("FD", np.array([2.5], "<f8").tobytes()) == 2.5
    assert convert_value("UI", b"1.2.840.10008.1.2\x00") == "1.2.840.10008.1.2"
    for vr, raw in (("PN", b"Doe^John"), ("LO", "Müller".encode("latin-1")), ("CS", b" LEADING"),
                    ("SQ", b""), ("UN", b"ab"), ("DS", b"1,5 "), ("LO", b"A\x1b[31m"), ("US", b"\x01")):
        with pytest.raises(NotMirrored):
            convert_value(vr, raw)


# --------------------------------------------------------------------------- the view against pydicom
def _write(ds: Dataset, path: Path, syntax: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3.4")
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.save_as(path, enforce_file_format=False, little_endian=syntax != ExplicitVRBigEndian,
               implicit_vr=syntax == ImplicitVRLittleEndian)
    return path


def _base_dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.Modality = "MR"
    ds.Manufacturer = "ACME"
    ds.SeriesDescription = "t1 mprage sag"
    ds.PatientName = "Doe^Jane"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.ImagePositionPatient = ["-120.5", "88", "1e2"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = ["0.9375", "0.9375"]
    ds.SliceThickness = "1.0"
    ds.EchoTime = "2.26"
    ds.SeriesNumber = "0007"
    ds.Rows, ds.Columns = 4, 4
    ds.BitsAllocated = 16
    ds.AcquisitionTime = "101530.125"
    ds.StudyDate = "20240131"
    ds.DiffusionBValue = 1000.0
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x2C, "SS", 560)
    block.add_new(0x83, "DS", ["1", "2.5"])
    block.add_new(0x39, "IS", ["1000", "0", "0", "0"])
    return ds


def _probe_keys(ds: Dataset) -> list[Any]:
    keys: list[Any] = [e.keyword for e in ds if e.keyword] + [e.tag for e in ds] + [(e.tag.group, e.tag.elem) for e in ds]
    return keys + ["RepetitionTime", "PerFrameFunctionalGroupsSequence", (0x0029, 0x1010), 0x00431010]


def _same_item(a: Any, b: Dataset) -> bool:
    """A sequence item of the view answers every element as pydicom's item does."""
    for element in b:
        key = element.keyword or element.tag
        if key not in a or not _same(a[key].value, element.value):
            return False
        if element.keyword and not _same(a.get(element.keyword), b.get(element.keyword)):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equal values (NaN equals NaN, element by element for several values, item by item for sequences)."""
    if isinstance(b, pydicom.sequence.Sequence):
        return (isinstance(a, (list, pydicom.sequence.Sequence)) and len(a) == len(b)
                and all(_same_item(x, y) for x, y in zip(a, b)))
    if isinstance(a, (list, pydicom.multival.MultiValue)) and isinstance(b, (list, pydicom.multival.MultiValue)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def assert_view_equals_pydicom(path: Path) -> Header | Any:
    """Every request the readers make, answered by the view as pydicom answers it."""
    view = read(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    for key in _probe_keys(ds):
        assert (key in view) == (key in ds), key
        if isinstance(key, str):
            mine, theirs = view.get(key), ds.get(key)
            assert _same(mine, theirs), key
            assert isinstance(theirs, pydicom.sequence.Sequence) or str(mine) == str(theirs), key
            if key in ds:
                assert _same(getattr(view, key), getattr(ds, key)), key
            else:
                with pytest.raises(AttributeError):
                    getattr(view, key)
        if key in ds:
            assert _same(view[key].value, ds[key].value), key
            assert ds[key].VR == "SQ" or str(view[key].value) == str(ds[key].value), key
        else:
            with pytest.raises(KeyError):
                view[key]
    for group, creator in ((0x0043, "GEMS_PARM_01"), (0x0029, "SIEMENS CSA HEADER"), (0x2005, "Philips MR Imaging DD 001")):
        try:
            theirs_block = ds.private_block(group, creator)
        except KeyError:
            with pytest.raises(KeyError):
                view.private_block(group, creator)
            continue
        mine_block = view.private_block(group, creator)
        for offset in range(0x100):
            assert (offset in mine_block) == (offset in theirs_block)
            if offset in theirs_block:
                assert _same(mine_block[offset].value, theirs_block[offset].value)
    return view


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_view_equals_pydicom_on_a_typical_header(tmp_path: Path, syntax: str) -> None:
    view = assert_view_equals_pydicom(_write(_base_dataset(), tmp_path / "a.dcm", syntax))
    assert isinstance(view, Header)
    assert view.get("SeriesNumber") == 7 and str(view.get("SeriesNumber")) == "0007"
    assert view.get(0x00080060).value == "MR" and view[(0x0008, 0x0060)].VR == "CS"


def test_a_plain_header_is_answered_without_pydicom(tmp_path: Path) -> None:
    path = _write(_base_dataset(), tmp_path / "a.dcm", ExplicitVRLittleEndian)
    code = ("import sys; from convert.dicom.header import read; h = read(sys.argv[1]); "
            "v = (h.get('Modality'), h['EchoTime'].value, h.ImagePositionPatient, 'PixelSpacing' in h, "
            "(0x0029, 0x1010) in h, h.private_block(0x0043, 'GEMS_PARM_01')[0x2C].value, h.get('InversionTime'), "
            "h.ReferencedImageSequence[0].ReferencedSOPInstanceUID, len(h.get('ReferencedImageSequence'))); "
            "print(repr(v), 'pydicom' in sys.modules)")
    assert _run_fresh(code, path) == "('MR', '2.26', [-120.5, 88, 1e2], True, False, 560, None, '1.2.3', 1) False"


def test_what_the_view_leaves_to_pydicom_is_pydicoms_answer(tmp_path: Path) -> None:
    ds = _base_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstitutionName = "Hôpital Saint-Éloi"
    path = _write(ds, tmp_path / "a.dcm", ExplicitVRLittleEndian)
    view = read(path)
    assert isinstance(view, Header)
    assert str(view.PatientName) == "Doe^Jane" and view.InstitutionName == "Hôpital Saint-Éloi"
    assert view.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3"
    item = view.ReferencedImageSequence[0]
    assert item.to_json_dict() == as_dataset(view).ReferencedImageSequence[0].to_json_dict()  # left to pydicom
    assert view.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    theirs = list(pydicom.dcmread(path, stop_before_pixels=True))
    mine = list(view)
    assert [e.tag for e in mine] == [e.tag for e in theirs]
    assert [(e.VR, e.keyword, str(e.tag), e.tag.is_private) for e in mine] == [
        (e.VR, e.keyword, str(e.tag), e.tag.is_private) for e in theirs]
    assert all(_same(a.value, b.value) for a, b in zip(mine, theirs))
    assert isinstance(as_dataset(view), Dataset) and as_dataset(view) is view.dataset()
    with pytest.raises(AttributeError, match="read-only"):
        view.PatientName = "X"  # type: ignore[misc]


def test_a_un_element_iterates_with_the_vr_pydicom_gives_it(tmp_path: Path) -> None:
    from pydicom.dataelem import RawDataElement

    ds = _base_dataset()
    raw = b"1.5\\2 "
    ds[0x00181050] = RawDataElement(pydicom.tag.Tag(0x00181050), "UN", len(raw), raw, 0, False, True)  # SpatialResolution
    path = _write(ds, tmp_path / "un.dcm", ExplicitVRLittleEndian)
    mine = {e.tag: (e.VR, "" if e.VR == "SQ" else str(e.value)) for e in read(path)}
    theirs = {e.tag: (e.VR, "" if e.VR == "SQ" else str(e.value)) for e in pydicom.dcmread(path, stop_before_pixels=True)}
    assert mine == theirs and theirs[0x00181050] == ("DS", "[1.5, 2]")


def test_files_the_element_layer_leaves_to_pydicom_are_read_by_pydicom(tmp_path: Path) -> None:
    big = read(_write(_base_dataset(), tmp_path / "be.dcm", ExplicitVRBigEndian))
    assert isinstance(big, Dataset) and big.Modality == "MR"
    raw = tmp_path / "headerless.dcm"
    ds = _base_dataset()
    ds.save_as(raw, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert isinstance(read(raw), Dataset) and read(raw).SeriesDescription == "t1 mprage sag"


@pytest.mark.parametrize("size", [3 * header_module.HEADER_BYTES, 3 * 1024 * 1024 + 7])
@pytest.mark.parametrize("pixels", [True, False])
def test_a_header_larger_than_the_first_read_is_read_on(tmp_path: Path, size: int, pixels: bool) -> None:
    """Enhanced objects with thousands of frames hold megabytes of header: still one view."""
    ds = _base_dataset()
    ds.add_new(0x00431001, "OB", b"\x01" * (size + size % 2))
    if pixels:
        ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    view = assert_view_equals_pydicom(_write(ds, tmp_path / "big.dcm", ExplicitVRLittleEndian))
    assert isinstance(view, Header)
    assert (view.pixel_offset is not None and view.pixel_offset > size) == pixels


def test_a_view_pickles_and_keeps_its_answers(tmp_path: Path) -> None:
    view = read(_write(_base_dataset(), tmp_path / "a.dcm", ImplicitVRLittleEndian))
    again = pickle.loads(pickle.dumps(view))
    assert isinstance(again, Header) and again.get("EchoTime") == view.get("EchoTime") == 2.26


_VALUE_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(syntax=st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
       values=st.fixed_dictionaries({
           "SeriesDescription": _VALUE_TEXT, "BodyPartExamined": _VALUE_TEXT, "ProtocolName": _VALUE_TEXT,
           "SliceThickness": st.sampled_from(["1", " 2.5", "3.0 ", "1e-2", "nan", "", "0.5\\1"]),
           "EchoNumbers": st.sampled_from(["1", "01", "+3", "", "1\\2", "x"]),
           "AcquisitionTime": st.sampled_from(["101530", "101530.5", "25", "", "1015"]),
           "WindowCenter": st.lists(st.floats(-2000, 2000, allow_nan=False).map(lambda f: f"{f:.4g}"), max_size=3),
           "Rows": st.integers(0, 65535),
       }))
def test_random_headers_read_as_pydicom_reads_them(tmp_path: Path, syntax: str, values: dict[str, Any]) -> None:
    from pydicom.dataelem import RawDataElement

    ds = _base_dataset()
    for keyword, value in values.items():
        tag, vr = KEYWORDS[keyword]
        if isinstance(value, int):
            raw = value.to_bytes(2, "little")
        else:
            raw = ("\\".join(value) if isinstance(value, list) else value).encode("ascii")
            raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(pydicom.tag.Tag(tag), vr, len(raw), raw, 0, syntax == ImplicitVRLittleEndian, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_view_equals_pydicom(_write(ds, tmp_path / "r.dcm", syntax))


def _conformance_files() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p for p in CONFORMANCE.rglob("*") if p.is_file() and "In" in p.parts and p.suffix.lower() != ".json")


def test_every_conformance_header_reads_as_pydicom_reads_it() -> None:
    files = _conformance_files()
    if not files:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    views = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files[::3]:
            try:
                pydicom.dcmread(path, stop_before_pixels=True, force=True).get("SOPClassUID")
            except Exception:
                continue
            views += isinstance(assert_view_equals_pydicom(path), Header)
    assert views > 100, views


def test_sidecar_from_a_view_equals_the_sidecar_from_pydicom(tmp_path: Path) -> None:
    from convert.dicom.sidecar import meta_from_dataset

    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        path = _write(_base_dataset(), tmp_path / "a.dcm", syntax)
        mine = meta_from_dataset(read(path))
        theirs = meta_from_dataset(pydicom.dcmread(path, stop_before_pixels=True))
        assert json.dumps(mine.acquisition, default=str) == json.dumps(theirs.acquisition, default=str)
        assert (mine.modality, mine.manufacturer, mine.window, mine.units) == (
            theirs.modality, theirs.manufacturer, theirs.window, theirs.units)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_file_meta_of_a_view_is_pydicoms(tmp_path: Path, syntax: str) -> None:
    path = _write(_base_dataset(), tmp_path / "a.dcm", syntax)
    view = read(path)
    theirs = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    assert isinstance(view, Header)
    for element in theirs:
        assert element.keyword in view.file_meta
        assert _same(view.file_meta.get(element.keyword), theirs.get(element.keyword)), element.keyword
    assert view.file_meta.TransferSyntaxUID == syntax and view._dataset is None  # noqa: SLF001 (no pydicom parse)


def test_files_of_a_folder_are_read_against_the_previous_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """read_part10 reads a file against the last header walked in its folder: the positions are
    the walk's (with and without ``keep``), whatever changed, and the walk runs only when the
    elements differ."""
    from convert.dicom import elements

    def slice_file(n: int, extra: bool = False) -> Path:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{'9' * n}"
        ds.InstanceNumber = n
        ds.ImagePositionPatient = [0, 0, n * 1.25]
        ds.PatientName = "Doe^John"
        if extra:
            ds.ImageComments = "an element the others lack"
        ds.Rows = ds.Columns = 2
        ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 0, 1
        ds.PixelData = b"\0" * 8
        path = tmp_path / f"{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path

    paths = [slice_file(1), slice_file(2), slice_file(13), slice_file(4, extra=True), slice_file(5, extra=True)]
    walked = []
    real_parse = elements.parse_part10
    monkeypatch.setattr(elements, "parse_part10", lambda *a, **k: walked.append(1) or real_parse(*a, **k))
    monkeypatch.setattr(header_module, "_PREVIOUS", {})
    keep = frozenset({0x00200013, 0x00200032})
    for path in paths:
        data = path.read_bytes()
        for kept in (keep, None):
            got = header_module.read_part10(path, keep=kept)
            want = real_parse(data, whole=True, keep=kept)
            assert got is not None and got.elements == want.elements and got.pixel_offset == want.pixel_offset
    assert len(walked) == 2  # the first file, and the first with the extra element


def _big_header_file(path: Path, implicit: bool = False) -> Path:
    """A file whose header outgrows the first read (a private OB block of 200 kB, then more elements)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.Modality = "MR"
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", b"\x01" * 200_000)
    ds.SeriesDescription = "after the block"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 0, 1
    ds.PixelData = b"\0" * 8
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return path


@pytest.mark.parametrize("implicit", [False, True])
def test_a_big_header_is_walked_from_its_start_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     implicit: bool) -> None:
    """read_part10 reads on while the header lasts (64 kB, 128 kB, 256 kB): each longer read resumes
    the walk where the shorter one stopped, and gives the positions of one walk of the whole file."""
    from convert.dicom import elements

    path = _big_header_file(tmp_path / "big.dcm", implicit)
    starts: list[int] = []
    real_walk = elements.walk
    monkeypatch.setattr(elements, "walk",
                        lambda data, pos, *a, **k: starts.append(pos) or real_walk(data, pos, *a, **k))
    monkeypatch.setattr(header_module, "_PREVIOUS", {})
    got = header_module.read_part10(path)
    want = elements.parse_part10(path.read_bytes(), whole=True)
    assert got is not None and got.elements == want.elements and got.pixel_offset == want.pixel_offset
    assert len(starts) == 1 + 3 and starts[0] == want.dataset_offset  # the one walk, and want's
    assert starts[1] == starts[2] == want.elements[0x00291010].offset  # the reads on resume at the block


def test_the_view_of_the_header_just_read_does_not_walk_it_again(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """scan.index_file reads a header with ``keep`` (the tags it indexes); when it needs every element
    (an enhanced file, an unusual value) view_of takes the parse read_part10 just made."""
    from convert.dicom import elements

    path = _big_header_file(tmp_path / "big.dcm")
    monkeypatch.setattr(header_module, "_PREVIOUS", {})
    for _ in range(2):  # walked, then read against the previous header of the folder (elements.reparse)
        kept = header_module.read_part10(path, keep=frozenset({0x0008103E}))
        assert kept is not None and list(kept.elements) == [0x0008103E]
        walked = []
        real_parse = elements.parse_part10
        monkeypatch.setattr(elements, "parse_part10", lambda *a, **k: walked.append(1) or real_parse(*a, **k))
        view = header_module.view_of(path, kept)
        monkeypatch.setattr(elements, "parse_part10", real_parse)
        assert walked == [] and view is not None
        assert view.part10.elements == real_parse(path.read_bytes(), whole=True).elements
        assert view.SeriesDescription == "after the block"
    other = header_module.read_part10(_big_header_file(tmp_path / "other.dcm"), keep=frozenset({0x0008103E}))
    assert header_module.view_of(path, kept) is not None  # bytes read before another file: walked in memory
    assert other is not None


@pytest.mark.parametrize("text,seconds", [("120000", 43200.0), ("235959.5", 86399.5), ("10:30:00", 37800.0),
                                          ("1030", 37800.0), ("", None), ("ab", None)])
def test_dicom_time_parsing(text: str, seconds: float | None) -> None:
    assert dicom_time_seconds(text) == seconds
