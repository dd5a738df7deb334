"""The byte-level element layer against pydicom (the oracle): same elements, same byte spans, or NotCovered."""

from __future__ import annotations

import copy
import io
import struct
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from convert.dicom import elements
from convert.dicom.elements import NotCovered, TransferSyntax, Truncated, items, parse_part10, walk

from conftest import CONFORMANCE

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

# (keyword, value strategy): standard elements of many VRs, all writable by pydicom in both encodings.
_TEXT = st.text(alphabet="ABCDEFGHIJ0123456789^ ", min_size=0, max_size=40)
_LEAVES = {
    "PatientName": _TEXT,
    "PatientID": st.text(alphabet="ABC0123456789", max_size=16),
    "StudyDescription": _TEXT,
    "Modality": st.sampled_from(["CT", "MR", "OT"]),
    "SliceThickness": st.floats(0.1, 10).map(lambda v: f"{v:.4f}"),
    "InstanceNumber": st.integers(0, 9999).map(str),
    "Rows": st.integers(1, 4096),
    "Columns": st.integers(1, 4096),
    "SOPInstanceUID": st.integers(1, 10**12).map(lambda v: f"1.2.3.{v}"),
    "ImageType": st.sampled_from([["ORIGINAL", "PRIMARY"], ["DERIVED", "SECONDARY", "AXIAL"]]),
    "ContentDate": st.just("20240101"),
    "ImageComments": st.text(alphabet="abc xyz\n", max_size=300),  # LT
    "EncapsulatedDocument": st.binary(max_size=64).map(lambda b: b + b"\0" * (len(b) % 2)),  # OB
    "RedPaletteColorLookupTableData": st.binary(max_size=32).map(lambda b: b + b"\0" * (len(b) % 2)),  # OW
    "FrameTime": st.floats(0, 1000).map(lambda v: f"{v:.2f}"),
    "RescaleSlope": st.floats(0.001, 10).map(lambda v: f"{v:.6g}"),
    "ImagePositionPatient": st.lists(st.floats(-500, 500).map(lambda v: round(v, 3)), min_size=3, max_size=3),
    "ExposureInuAs": st.integers(0, 2**31 - 1),  # SL
    "DiffusionBValue": st.floats(0, 5000),  # FD
}
_SEQUENCES = ["ReferencedImageSequence", "ProcedureCodeSequence", "RequestAttributesSequence"]


@st.composite
def datasets(draw: st.DrawFn, depth: int = 0) -> Dataset:
    ds = Dataset()
    for keyword in draw(st.lists(st.sampled_from(sorted(_LEAVES)), max_size=8, unique=True)):
        setattr(ds, keyword, draw(_LEAVES[keyword]))
    if depth < 3:
        for keyword in draw(st.lists(st.sampled_from(_SEQUENCES), max_size=2, unique=True)):
            children = draw(st.lists(datasets(depth + 1), max_size=3))
            for child in children:
                child.is_undefined_length_sequence_item = draw(st.booleans())
            setattr(ds, keyword, Sequence(children))
            ds[keyword].is_undefined_length = draw(st.booleans())
    return ds


def _part10(ds: Dataset, ts: str, pixels: bytes | None = b"\x01\x00" * 8) -> bytes:
    ds = ds.copy() if hasattr(ds, "copy") else ds
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    if pixels is not None:
        ds.PixelData = pixels
        ds["PixelData"].VR = "OW"
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=ts == IMPLICIT, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def _assert_same_as_pydicom(data: bytes, parsed_elements: list[elements.Element], ds: Dataset, implicit: bool) -> None:
    """Every element's tag and byte span equal pydicom's; sequences item by item, recursively."""
    assert [e.tag for e in parsed_elements] == [int(t) for t in ds.keys() if int(t) not in elements.PIXEL_TAGS]
    for element in parsed_elements:
        theirs = ds._dict[element.tag]
        if isinstance(getattr(theirs, "value", None), Sequence):  # pydicom parses sequences eagerly
            spans = items(data, element, implicit=implicit)
            assert len(spans) == len(theirs.value)
            for (start, end), item in zip(spans, theirs.value):
                inner, stop = walk(data, start, end, implicit=elements.sequence_is_implicit(element, implicit))
                assert stop == end
                _assert_same_as_pydicom(data, inner, item, implicit)
            continue
        if not hasattr(theirs, "value_tell"):  # pydicom converts SpecificCharacterSet while reading
            value = theirs.value if isinstance(theirs.value, (list, tuple)) else [theirs.value]
            assert element.tag == 0x00080005
            assert data[element.value_offset:element.end].decode().strip(" \0").split("\\") == list(value)
            continue
        assert element.value_offset == theirs.value_tell, hex(element.tag)
        assert element.length == theirs.length
        assert data[element.value_offset:element.end] == (theirs.value or b"")
        if not implicit:
            assert element.vr.decode() == theirs.VR


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from([IMPLICIT, EXPLICIT]), st.booleans())
def test_random_datasets_match_pydicom_byte_for_byte(ds: Dataset, ts: str, with_pixels: bool) -> None:
    data = _part10(ds, ts, b"\x01\x00" * 8 if with_pixels else None)
    parsed = parse_part10(data, whole=True)
    assert parsed.transfer_syntax == ts and parsed.implicit == (ts == IMPLICIT)
    theirs = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    _assert_same_as_pydicom(data, list(parsed.elements.values()), theirs, parsed.implicit)
    if with_pixels:
        assert data[parsed.pixel_offset:parsed.pixel_offset + 4] == b"\xe0\x7f\x10\x00"
    else:
        assert parsed.pixel_offset is None
    assert set(parsed.meta) == {int(t) for t in theirs.file_meta.keys()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from([IMPLICIT, EXPLICIT]), st.data())
def test_a_cut_header_is_truncated_never_misread(ds: Dataset, ts: str, data_strategy: st.DataObject) -> None:
    data = _part10(ds, ts)
    full = parse_part10(data)
    cut = data_strategy.draw(st.integers(0, full.pixel_offset - 1))
    with pytest.raises(NotCovered):  # Truncated is a NotCovered
        parse_part10(data[:cut])
    if cut >= full.dataset_offset:
        with pytest.raises(Truncated):
            parse_part10(data[:cut])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from([IMPLICIT, EXPLICIT]), st.booleans(), st.data())
def test_a_walk_resumed_in_more_bytes_finds_what_one_walk_finds(ds: Dataset, ts: str, filtered: bool,
                                                                 data_strategy: st.DataObject) -> None:
    """A header read in growing pieces (header.read_part10) is walked once: each Truncated says where
    the walk stopped and the next, longer read goes on from there, to the same positions."""
    data = _part10(ds, ts)
    keep = frozenset({0x00080018, 0x00100010, 0x00080008}) if filtered else None
    full = parse_part10(data, keep=keep)
    cut_at = st.integers(full.dataset_offset, max(full.dataset_offset, full.pixel_offset - 1))
    cuts = sorted(data_strategy.draw(st.lists(cut_at, max_size=4))) if full.pixel_offset > full.dataset_offset else []
    resume = None
    for cut in cuts:
        with pytest.raises(Truncated) as info:
            parse_part10(data[:cut], keep=keep, resume=resume)
        walked = info.value.walked
        if walked is None:  # the end of the file meta group is not known yet: nothing walked
            assert cut < full.dataset_offset + 8
            continue
        assert walked[1] <= cut
        assert walked[0] == [e for e in full.elements.values() if e.end <= walked[1]]  # the elements before stand
        resume = walked
    assert parse_part10(data, keep=keep, resume=resume) == full


def test_a_walk_resumes_after_the_elements_it_walked_without_walking_them_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ds = Dataset()
    ds.StudyDescription = "x" * 5000
    ds.ImageComments = "after"
    data = _part10(ds, EXPLICIT)
    starts: list[int] = []
    walk = elements.walk
    monkeypatch.setattr(elements, "walk", lambda data, pos, *a, **k: starts.append(pos) or walk(data, pos, *a, **k))
    cut = data.index(b"after") + 2
    with pytest.raises(Truncated) as info:
        parse_part10(data[:cut])
    parsed = parse_part10(data, resume=info.value.walked)
    assert starts[1] == info.value.walked[1] > starts[0]  # the second walk starts at StudyDescription
    assert parsed == parse_part10(data)


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT])
def test_a_walk_resumes_inside_a_long_sequence_at_the_item_that_did_not_fit(ts: str,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An enhanced object's header is mostly one undefined-length sequence (the per-frame groups): a
    longer read resumes at its first item that did not fit, not at the sequence's start."""
    ds = Dataset()
    ds.ReferencedImageSequence = Sequence([Dataset() for _ in range(200)])
    for n, item in enumerate(ds.ReferencedImageSequence):
        item.ReferencedSOPInstanceUID = f"1.2.3.{n}"
        item.is_undefined_length_sequence_item = True
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.StudyDescription = "after the sequence"
    data = _part10(ds, ts)
    full = parse_part10(data)
    sequence = full.elements[0x00081140]
    cut = (sequence.value_offset + sequence.end) // 2
    with pytest.raises(Truncated) as info:
        parse_part10(data[:cut])
    elements_before, pos, item = info.value.walked
    assert pos == sequence.offset and sequence.value_offset < item <= cut
    items_walked = []
    item_end = elements._item_end
    monkeypatch.setattr(elements, "_item_end", lambda data, at, *a: items_walked.append(at) or item_end(data, at, *a))
    assert parse_part10(data, resume=info.value.walked) == full
    assert len(items_walked) < 110 and min(items_walked) >= item  # the second half only
    with pytest.raises(Truncated) as again:  # still short: resumes further in
        parse_part10(data[:cut + 500], resume=info.value.walked)
    assert again.value.walked[2] > item


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2))
def test_random_bytes_are_parsed_or_not_covered_never_an_error(noise: bytes, where: int) -> None:
    base = _part10(Dataset(), EXPLICIT, None)
    data = [base[:132] + noise, base + noise, base[:-4] + noise][where]
    try:
        parsed = parse_part10(data, whole=True)
    except NotCovered:
        return
    assert all(e.end <= len(data) for e in parsed.elements.values())


def _with_syntax(ts: str, dataset: bytes) -> bytes:
    """Preamble, a minimal explicit VR LE file meta group naming ``ts``, then ``dataset`` as given."""
    uid = ts.encode() + b"\0" * (len(ts) % 2)
    element = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(element))
    return b"\0" * 128 + b"DICM" + group_length + element + dataset


def test_big_endian_deflated_and_unknown_syntaxes_are_left_to_pydicom() -> None:
    dataset = b"\x10\x00\x10\x00PN\x02\x00X "
    assert parse_part10(_with_syntax(EXPLICIT, dataset), whole=True).raw(0x00100010) == b"X "
    for ts, reason in (("1.2.840.10008.1.2.2", "big endian"), ("1.2.840.10008.1.2.1.99", "deflated"),
                       ("1.2.840.10008.9.9", "not a standard")):
        with pytest.raises(NotCovered, match=reason):
            parse_part10(_with_syntax(ts, dataset), whole=True)


def test_compressed_syntaxes_read_as_explicit_little_endian() -> None:
    parsed = parse_part10(_with_syntax("1.2.840.10008.1.2.4.70", b"\x28\x00\x10\x00US\x02\x00\x04\x00"), whole=True)
    assert not parsed.implicit and not parsed.is_native and parsed.raw(0x00280010) == b"\x04\x00"


def test_no_preamble_and_contradicting_encoding_are_left_to_pydicom() -> None:
    data = _part10(Dataset(), EXPLICIT)
    with pytest.raises(NotCovered, match="preamble"):
        parse_part10(data[128:])
    ds = Dataset()
    ds.PatientName = "X"
    explicit = _part10(ds, EXPLICIT)
    lying = explicit.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2\x00\x00\x00")
    with pytest.raises(NotCovered, match="contradicts"):
        parse_part10(lying)


def test_invalid_vr_and_undefined_length_outside_a_sequence_are_not_covered() -> None:
    ds = Dataset()
    ds.Modality = "CT"  # first element valid: the check below is on a later one
    ds.PatientName = "X"
    data = _part10(ds, EXPLICIT)
    with pytest.raises(NotCovered, match="invalid VR"):
        parse_part10(data.replace(b"\x10\x00\x10\x00PN", b"\x10\x00\x10\x00XX"))
    start = data.index(b"\x10\x00\x10\x00PN")
    odd = data[:start] + b"\x10\x00\x10\x00OB\x00\x00\xff\xff\xff\xff" + data[start + 10:]
    with pytest.raises(NotCovered):
        parse_part10(odd)


@pytest.mark.parametrize("implicit", [False, True])
def test_a_delimiter_tag_outside_a_sequence_is_left_to_pydicom(implicit: bool) -> None:
    """Found by the scan's corrupt-bytes property: (FFFE,E00D) at the top level ends pydicom's data set."""
    ds = Dataset()
    ds.Modality = "CT"
    ds.PatientName = "X"
    data = bytearray(_part10(ds, IMPLICIT if implicit else EXPLICIT))
    at = bytes(data).index(b"\x10\x00\x10\x00")  # PatientName's tag
    data[at:at + 4] = b"\xfe\xff\x0d\xe0"
    with pytest.raises(NotCovered, match="outside a sequence"):
        parse_part10(bytes(data))


def test_hostile_nesting_stops_at_the_depth_limit() -> None:
    inner = b""
    for _ in range(elements.MAX_DEPTH + 5):  # undefined-length sequences, each in an undefined-length item
        inner = (b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner
                 + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    data = _part10(Dataset(), EXPLICIT, None) + inner
    with pytest.raises(NotCovered, match="deeper"):
        parse_part10(data, whole=True)


def test_un_sequence_of_undefined_length_holds_implicit_items() -> None:
    """PS3.5 6.2.2: an explicit-VR UN element of undefined length is a sequence of implicit VR items."""
    item = struct.pack("<HHI", 0x0010, 0x0010, 4) + b"AB^C"
    un = (b"\x09\x00\x10\x10UN\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + item
          + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    data = _part10(Dataset(), EXPLICIT, None) + un + b"\x10\x00\x20\x00LO\x02\x00ID"
    parsed = parse_part10(data, whole=True)
    element = parsed.elements[0x00091010]
    assert element.is_undefined_length and parsed.raw(0x00100020) == b"ID"
    (start, end), = items(data, element, implicit=False)
    inner, _ = walk(data, start, end, implicit=elements.sequence_is_implicit(element, False))
    assert [e.tag for e in inner] == [0x00100010] and data[inner[0].value_offset:inner[0].end] == b"AB^C"


def _conformance_files() -> list[Path]:
    if not CONFORMANCE.is_dir():
        return []
    return sorted(p for p in CONFORMANCE.glob("*/In/**/*") if p.is_file())


@pytest.mark.conformance
def test_every_real_scanner_file_matches_pydicom_or_is_not_covered() -> None:
    files = _conformance_files()
    if not files:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    covered = {"implicit": 0, "explicit": 0}
    for path in files:
        data = path.read_bytes()
        try:
            parsed = parse_part10(data, whole=True)
        except NotCovered:
            continue
        theirs = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        _assert_same_as_pydicom(data, list(parsed.elements.values()), theirs, parsed.implicit)
        covered["implicit" if parsed.implicit else "explicit"] += 1
    # The real sets hold both encodings (dcm_qa_ts has implicit VR, GE/Siemens MR explicit):
    # the layer must cover them, or this test proves nothing.
    assert covered["implicit"] >= 1 and covered["explicit"] >= 500, covered


# ------------------------------------------------------------------------------------------------
# reparse: a header read against an earlier one of the same layout
# ------------------------------------------------------------------------------------------------
def _assert_reparse_is_the_walk(new: bytes, previous: elements.Part10, whole: bool = True) -> elements.Relayout | None:
    """``reparse`` gives exactly the positions ``parse_part10`` finds, and names exactly the
    elements whose bytes differ from ``previous``'s (or declines: None)."""
    relaid = elements.reparse(new, previous, whole=whole)
    walked = parse_part10(new, whole=whole)
    if relaid is None:
        return None
    got = relaid.part10()
    assert got.elements == walked.elements
    assert list(got.elements) == list(walked.elements)  # file order
    assert (got.pixel_offset, got.dataset_offset, got.meta) == (walked.pixel_offset, walked.dataset_offset,
                                                                walked.meta)
    old = list(previous.elements.values())
    differ = {i for i, (a, b) in enumerate(zip(old, walked.elements.values()))
              if previous.data[a.offset:a.end] != new[b.offset:b.end]}
    assert {i for i, _ in relaid.changed} == differ
    assert [i for i, _ in relaid.changed] == sorted(differ)
    for i, element in relaid.changed:
        assert element == list(walked.elements.values())[i]
    some = frozenset(list(walked.elements)[::3])
    assert relaid.part10(keep=some).elements == parse_part10(new, whole=whole, keep=some).elements
    return relaid


@st.composite
def _header_pairs(draw: st.DrawFn) -> tuple[Dataset, Dataset]:
    """A data set and a copy with some values changed (other lengths among them), as the slices
    of a series differ; sometimes an element added or removed (another layout)."""
    ds = draw(datasets())
    other = copy.deepcopy(ds)
    for keyword in draw(st.lists(st.sampled_from(sorted(_LEAVES)), max_size=6, unique=True)):
        if keyword in ds or draw(st.integers(0, 9)) == 0:
            setattr(other, keyword, draw(_LEAVES[keyword]))
    if draw(st.integers(0, 9)) == 0 and len(other):
        del other[draw(st.sampled_from(sorted(other.keys())))]
    for keyword in _SEQUENCES:
        if keyword in other and other[keyword].value and draw(st.booleans()):
            item = other[keyword].value[0]
            item.PatientID = draw(_LEAVES["PatientID"])  # a change inside a sequence item
    return ds, other


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_header_pairs(), st.sampled_from([IMPLICIT, EXPLICIT]), st.booleans())
def test_reparse_finds_the_positions_the_walk_finds(pair: tuple[Dataset, Dataset], ts: str, with_pixels: bool) -> None:
    first, second = (_part10(d, ts, b"\x01\x00" * 8 if with_pixels else None) for d in pair)
    try:
        previous = parse_part10(first, whole=True)
        parse_part10(second, whole=True)
    except NotCovered:
        return
    relaid = _assert_reparse_is_the_walk(second, previous)
    if list(previous.elements) == list(parse_part10(second, whole=True).elements) and previous.elements:
        assert relaid is not None  # the same elements in the same order: never declined


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_header_pairs(), st.sampled_from([IMPLICIT, EXPLICIT]), st.data())
def test_reparse_of_a_cut_header_is_truncated_never_misread(pair: tuple[Dataset, Dataset], ts: str,
                                                            data_strategy: st.DataObject) -> None:
    first, second = (_part10(d, ts) for d in pair)
    try:
        previous = parse_part10(first, whole=True)
        full = parse_part10(second, whole=True)
    except NotCovered:
        return
    cut = data_strategy.draw(st.integers(0, full.pixel_offset + 3))
    try:
        relaid = elements.reparse(second[:cut], previous)
    except Truncated:
        return
    except NotCovered:
        return
    assert relaid is None  # never a layout of bytes that are not there


def test_reparse_declines_another_layout_and_a_filtered_previous() -> None:
    ds = Dataset()
    ds.PatientID, ds.Modality, ds.InstanceNumber = "A", "CT", "1"
    previous = parse_part10(_part10(copy.deepcopy(ds), EXPLICIT), whole=True)
    other = copy.deepcopy(ds)
    other.StudyDescription = "inserted"
    assert elements.reparse(_part10(other, EXPLICIT), previous, whole=True) is None  # another element
    assert elements.reparse(_part10(copy.deepcopy(ds), IMPLICIT), previous, whole=True) is None  # another syntax
    assert elements.reparse(_part10(copy.deepcopy(ds), EXPLICIT, pixels=None), previous, whole=True) is None
    data = _part10(copy.deepcopy(ds), EXPLICIT)
    filtered = parse_part10(data, whole=True, keep=frozenset({0x00100020}))
    assert filtered.layout is None and elements.reparse(data, filtered, whole=True) is None
    same = elements.reparse(data, previous, whole=True)
    assert same is not None and same.changed == []


@pytest.mark.conformance
def test_reparse_of_real_series_is_the_walk() -> None:
    """Each real file read against the file before it in its folder (the slices of a series, the
    series of a study): the positions are the walk's, the changed elements exactly those that differ."""
    files = _conformance_files()
    if not files:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    reused = 0
    previous: dict[Path, elements.Part10] = {}
    for path in files:
        data = path.read_bytes()
        try:
            parsed = parse_part10(data, whole=True)
        except NotCovered:
            continue
        before = previous.get(path.parent)
        if before is not None and _assert_reparse_is_the_walk(data, before) is not None:
            reused += 1
        previous[path.parent] = parsed
    assert reused >= 300, reused  # the layer's point: most slices share their predecessor's layout


def test_the_transfer_syntax_of_a_header_view_has_pydicoms_uid_properties() -> None:
    from pydicom.uid import UID

    syntaxes = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.201"]
    for uid in syntaxes:
        ours, theirs = TransferSyntax(uid), UID(uid)
        for name in ("is_transfer_syntax", "is_private", "is_implicit_VR", "is_little_endian", "is_deflated",
                     "is_compressed", "is_encapsulated", "name"):
            assert getattr(ours, name) == getattr(theirs, name), (uid, name)
