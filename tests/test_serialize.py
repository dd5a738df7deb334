"""The byte serializer (convert/anonymize/serialize.py) against its oracle, the pydicom route.

The pydicom route (pydicom reads the whole file, ``Scrubber.scrub`` builds a new Dataset, pydicom's
writer rules serialise it: ``run.save_dataset``) is the reference serialisation. For every file
of every corpus (the PHI corpus under several option sets, plain CT series like the benchmark's,
pydicom's and deid's test files, the conformance sets when present) and for random datasets with
random PHI (hypothesis, explicit and implicit VR), the byte serializer writes exactly the bytes
the pydicom route writes, with the same counts, audit mapping, output name and report, or it
leaves the file to that route (nothing written). Each file is run twice through one serializer
(the second pass meets a warm decision cache).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable
from unittest import mock

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import convert  # noqa: E402
import convert.anonymize.run as run  # noqa: E402
from convert.anonymize.profile import OPTIONS  # noqa: E402
from convert.anonymize.scrubber import Scrubber  # noqa: E402
from convert.dicom import elements  # noqa: E402
from convert.anonymize.serialize import CONTEXT_TAGS, ByteScrubber, meta_bytes, meta_group  # noqa: E402
from fixtures.phi_corpus import (LeakScanner, dataset_bytes, element_texts, make_benchmark_corpus,  # noqa: E402
                                 make_corpus)
from tests.conftest import conformance_dir  # noqa: E402

KEY = b"byte serializer oracle test key."


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


def _log_fields(log) -> tuple:  # type: ignore[no-untyped-def]
    return (log.status, log.message, log.burned_in, log.removed, log.replaced, log.emptied, log.cleaned, log.kept)


def reference(scrubber: Scrubber, path: Path, dst: Path):  # type: ignore[no-untyped-def]
    """The pydicom route for ``path`` (the byte serializer switched off for this call)."""
    with mock.patch.object(run, "_process_bytes", lambda *args: None):
        return run.process_file(scrubber, path, dst, overwrite=False)


def against_reference(paths: Iterable[Path], work: Path, keep: Iterable[str] = (), allow_burned_in: bool = False,
                      passes: int = 2) -> ByteScrubber:
    """Run every path through one serializer (via ``run.process_file``) and through the pydicom
    route; assert equal outcomes. Returns the serializer (``stats``: files taken / left to pydicom)."""
    keep = tuple(keep)
    scrubber = Scrubber(KEY, keep, allow_burned_in)
    oracle = Scrubber(KEY, keep, allow_burned_in)
    paths = list(paths)
    before = {p: p.read_bytes() for p in paths}
    n = 0
    for _ in range(passes):
        for path in paths:
            n += 1
            got_dst, want_dst = work / f"bytes{n}", work / f"pydicom{n}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = run.process_file(scrubber, path, got_dst, overwrite=False)
                want = reference(oracle, path, want_dst)
            assert _log_fields(got[0]) == _log_fields(want[0]), path.name
            assert got[1] == want[1], f"{path.name}: audit mapping differs"
            got_files, want_files = _tree(got_dst), _tree(want_dst)
            assert got_files.keys() == want_files.keys(), path.name
            for name in got_files:
                assert got_files[name] == want_files[name], f"{path.name}: output bytes differ"
    assert {p: p.read_bytes() for p in paths} == before, "an input was modified"
    return run.serializer_of(scrubber)


def _files(root: Path) -> list[Path]:
    """The files under ``root``; the resume manifest of an output folder (no DICOM) left out."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != run.MANIFEST_NAME)


# ------------------------------------------------------------------------------------------------
# Corpora
# ------------------------------------------------------------------------------------------------
def test_plain_ct_series_go_through_the_bytes_and_equal_the_pydicom_route(tmp_path: Path) -> None:
    src = make_benchmark_corpus(tmp_path / "src", n_files=8, size=16, files_per_series=4)
    serializer = against_reference(_files(src), tmp_path / "work")
    assert serializer.stats["declined"] == 0 and serializer.stats["files"] == 16
    # slices share their outcomes: the later slices of a series are read against the first
    assert serializer.stats["reused"] >= 12
    assert serializer.stats["cached"] + serializer.stats["carried"] > serializer.stats["decided"]


def test_implicit_vr_series_go_through_the_bytes_and_equal_the_pydicom_route(tmp_path: Path) -> None:
    src = make_benchmark_corpus(tmp_path / "src", n_files=6, size=16, files_per_series=3, implicit=True)
    assert pydicom.dcmread(_files(src)[0]).file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    serializer = against_reference(_files(src), tmp_path / "work")
    assert serializer.stats["declined"] == 0 and serializer.stats["files"] == 12


@pytest.mark.parametrize("keep", [(), ("modified-dates",), ("uids", "full-dates"), ("safe-private",),
                                  ("clean-descriptors", "patient-characteristics", "device", "institution"),
                                  ("clean-structured-content", "clean-graphics", "safe-private")],
                         ids=lambda k: "+".join(k) or "basic")
def test_phi_corpus_equals_the_pydicom_route(tmp_path: Path, keep: tuple[str, ...]) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    serializer = against_reference(_files(corpus.root), tmp_path / "work", keep=keep)
    assert serializer.stats["files"] > 0


def test_phi_corpus_with_burned_in_allowed_equals_the_pydicom_route(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    serializer = against_reference(_files(corpus.root), tmp_path / "work", allow_burned_in=True)
    assert serializer.stats["files"] > 0


def _public_files() -> list[Path]:
    from pydicom.data import get_charset_files, get_testdata_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = sorted(get_testdata_files()) + sorted(get_charset_files())
    try:
        import deid_data

        root = os.path.dirname(deid_data.__file__)
        files += sorted(f for f in glob.glob(root + "/**/*", recursive=True) if os.path.isfile(f))
    except ImportError:  # pragma: no cover
        pass
    return [Path(f) for f in files
            if os.path.isfile(f) and not f.endswith((".json", ".txt", ".dump", ".gz", ".icc", ".py", ".pyc"))]


def test_pydicom_and_deid_test_files_equal_the_pydicom_route(tmp_path: Path) -> None:
    files = _public_files()
    assert len(files) > 100
    serializer = against_reference(files, tmp_path / "work", allow_burned_in=True, passes=1)
    assert serializer.stats["files"] > 100  # most of them are little endian files the layer walks


@pytest.mark.parametrize("name", ["dcm_qa_deident", "dcm_qa_ct", "dcm_qa_nih", "dcm_qa_ts", "dcm_qa_enh",
                                  "dcm_qa_12bit"])
def test_conformance_sets_equal_the_pydicom_route(tmp_path: Path, name: str) -> None:
    folder = conformance_dir(name)
    files = [p for p in _files(folder) if p.suffix.lower() not in (".json", ".md", ".txt", ".nii", ".gz")]
    serializer = against_reference(files, tmp_path / "work", allow_burned_in=True, passes=1)
    assert serializer.stats["files"] > 0


# ------------------------------------------------------------------------------------------------
# Random datasets (hypothesis)
# ------------------------------------------------------------------------------------------------
from tests.test_anonymize_property import phi_dataset  # noqa: E402


def _write(ds: Dataset, path: Path, implicit: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if implicit:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(phi_dataset(), phi_dataset(), st.sets(st.sampled_from(OPTIONS), max_size=3), st.integers(1, 999),
       st.booleans())
def test_random_phi_datasets_equal_the_pydicom_route(first: tuple[Dataset, list[str]],
                                                     other: tuple[Dataset, list[str]], keep: set[str],
                                                     number: int, implicit: bool) -> None:
    if {"full-dates", "modified-dates"} <= keep:
        keep.discard("full-dates")
    ds, _ = first
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = _write(ds, work / "a.dcm", implicit)
        # the next slice of the same series: only instance values change (same context)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.1.1.{number}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.SliceLocation = f"{number / 7:.3f}"
        sibling = _write(ds, work / "b.dcm", implicit)
        # and one with the other dataset's elements merged in (random PHI in random places)
        for elem in other[0]:
            if elem.tag not in (0x00080016, 0x00080018, 0x7FE00010):
                ds[elem.tag] = elem
        merged = _write(ds, work / "c.dcm", implicit)
        against_reference([base, sibling, merged], work / "out", keep=sorted(keep), passes=1)


#: What changes from one slice of a folder to the next (see the test below).
_SLICE_EDITS = ["instance", "window", "uid_length", "patient_name", "comment", "drop", "add", "pixels",
                "private", "sequence", "bad_number"]


def _edit_slice(ds: Dataset, edit: str, n: int) -> None:
    """One change between two files of a folder, as real series differ (or do not)."""
    if edit == "instance":
        ds.InstanceNumber = n
        ds.ImagePositionPatient = [0, 0, -250 + 1.25 * n]
    elif edit == "window":
        ds.WindowCenter, ds.WindowWidth = f"{40 + n * 1.5:g}", f"{400 + n * 11}"
    elif edit == "bad_number":  # a kept number holding text: not a valid DS, so removed
        value = f"Doe^J{n}".encode("ascii")
        value += b" " * (len(value) % 2)
        ds._dict[BaseTag(0x00201041)] = RawDataElement(BaseTag(0x00201041), "DS", len(value), value, 0, None, True)
    elif edit == "uid_length":  # a longer SOP instance UID: every element after it moves
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.1.{'9' * (n % 9 + 1)}.{n}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif edit == "patient_name":  # a context element (its words are blanked in free text)
        ds.PatientName = f"Other^Person{n}"
    elif edit == "comment":
        ds.ImageComments = f"slice {n} of Doe^John " * (n % 3 + 1)
    elif edit == "drop" and "StudyDescription" in ds:
        del ds.StudyDescription
    elif edit == "add":
        ds.AcquisitionComments = f"added {n}"
    elif edit == "pixels":  # another pixel data length
        ds.PixelData = ds.PixelData + b"\0\0" * (n + 1)
    elif edit == "private":
        block = ds.private_block(0x0029, "MEMO TEST", create=True)
        block.add_new(0x10, "LO", f"private {n} Doe^John")
    elif edit == "sequence":
        item = Dataset()
        item.ReferencedSOPInstanceUID = f"1.2.3.{n}"
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.ReferencedImageSequence = [item] * (n % 2 + 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(st.sampled_from(_SLICE_EDITS), max_size=3), min_size=2, max_size=5), st.booleans())
def test_slices_read_against_their_predecessor_equal_the_pydicom_route(edits: list[list[str]], implicit: bool
                                                                        ) -> None:
    """The files of a folder are read against the last one walked whole (``elements.reparse``): whatever
    changes between them (values, lengths, context elements, pixel length, elements added or
    dropped, private blocks, sequences), the bytes written are the pydicom route's."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = make_benchmark_corpus(work / "corpus", n_files=1, size=8, files_per_series=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_files(src)[0])
        paths = []
        (work / "series").mkdir()
        for n, slice_edits in enumerate(edits):
            for edit in slice_edits:
                _edit_slice(ds, edit, n)
            paths.append(_write(ds, work / "series" / f"{n:03d}.dcm", implicit))
        serializer = against_reference(paths, work / "out", passes=1)
        assert serializer.stats["declined"] == 0
        if all(e in ("instance", "window", "uid_length", "comment") for later in edits[1:] for e in later):
            assert serializer.stats["reused"] == len(paths) - 1  # only values changed: none walked again
        if any(e in ("instance", "window") for later in edits[1:] for e in later):
            assert serializer.stats["kept"] > 0  # kept numbers: by the tag rule, not decided one by one


# ------------------------------------------------------------------------------------------------
# Leaks, through the byte serializer
# ------------------------------------------------------------------------------------------------
def test_leak_checks_pass_through_the_byte_serializer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole PHI corpus through ``convert.anonymize`` (the byte serializer takes what it
    covers): no planted value in any element, the raw bytes or the paths; pixel data bit-identical."""
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    taken: list[bool] = []
    original = ByteScrubber.header

    def spy(self, path, fd):  # type: ignore[no-untyped-def]
        result = original(self, path, fd)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(ByteScrubber, "header", spy)
    report = convert.anonymize(corpus.root, out, key=KEY, workers=1)
    assert not report.failed
    assert sum(taken) >= 4
    scanner = LeakScanner(corpus.tokens())
    leaks = []
    pixels_in = {hashlib.sha256(bytes(pydicom.dcmread(p).PixelData)).hexdigest()
                 for p in _files(corpus.root) if p.suffix == ".dcm" and "PixelData" in pydicom.dcmread(p)}
    pixels_out = set()
    for path in _files(out):
        ds = pydicom.dcmread(path)
        leaks += [f"{path.name} {where}: {hit}" for where, text in element_texts(ds) for hit in scanner.scan_text(text)]
        raw = dataset_bytes(path)
        if "PixelData" in ds:
            pixels_out.add(hashlib.sha256(bytes(ds.PixelData)).hexdigest())
            raw = raw.replace(bytes(ds.PixelData), b"")
        leaks += [f"{path.name} bytes: {hit}" for hit in scanner.scan_bytes(raw)]
        leaks += [f"{path.name} path: {hit}" for hit in scanner.scan_path(path.relative_to(out))]
    assert not leaks, leaks[:20]
    assert pixels_out <= pixels_in and pixels_out


# ------------------------------------------------------------------------------------------------
# What the serializer leaves to pydicom, and the pieces
# ------------------------------------------------------------------------------------------------
def _plain(tmp_path: Path) -> Path:
    return _files(make_benchmark_corpus(tmp_path / "plain", n_files=1, size=8))[0]


def _header(path: Path, serializer: ByteScrubber):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    try:
        return serializer.header(path, fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("edit", ["big_endian_ts", "bad_vr", "trailing", "odd_pixels", "truncated", "no_preamble",
                                  "float_pixels"])
def test_layouts_the_layer_does_not_cover_go_to_pydicom(tmp_path: Path, edit: str) -> None:
    path = _plain(tmp_path)
    data = bytearray(path.read_bytes())
    first = elements.parse_part10(bytes(data)).dataset_offset  # the first data set element
    if edit == "big_endian_ts":
        at = data.index(b"1.2.840.10008.1.2.1\0")
        data[at:at + 20] = b"1.2.840.10008.1.2.2\0"
    elif edit == "bad_vr":
        data[first + 4:first + 6] = b"xx"
    elif edit == "trailing":
        data += b"\xfc\xff\xfc\xffOB\0\0\x02\0\0\0\0\0"
    elif edit == "odd_pixels":
        data += b"\0"
    elif edit == "truncated":
        del data[-10:]
    elif edit == "no_preamble":
        data[128:132] = b"NOPE"
    elif edit == "float_pixels":
        at = data.rindex(b"\xe0\x7f\x10\x00")
        data[at:at + 4] = b"\xe0\x7f\x08\x00"
    path.write_bytes(bytes(data))
    serializer = ByteScrubber(Scrubber(KEY), check=run._check_complete)
    assert _header(path, serializer) is None
    assert serializer.stats["declined"] == 1


def test_truncated_files_are_reported_like_before(tmp_path: Path) -> None:
    """A truncated plain file: the serializer leaves it, the pydicom route reports it, nothing is written."""
    data = _plain(tmp_path).read_bytes()
    cut = tmp_path / "src" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(data[:-100])
    report = convert.anonymize(cut.parent, tmp_path / "out", key=KEY, workers=1)
    assert [o.source.name for o in report.failed] == ["cut.dcm"]
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_bug_in_the_serializer_is_reported_not_hidden(tmp_path: Path) -> None:
    """An unexpected error fails the file with a message; it never silently switches to pydicom."""
    path = _plain(tmp_path)
    with mock.patch.object(ByteScrubber, "_emit", side_effect=RuntimeError("bug")):
        log, _ = run.process_file(Scrubber(KEY), path, tmp_path / "out", overwrite=False)
    assert log.status == "failed" and "RuntimeError" in log.message
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_meta_group_equals_pydicoms_file_meta_writer() -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "2.25.1234567"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    assert meta_bytes(meta) == fp.getvalue()
    assert meta_group({0x00020002: b"1.2.840.10008.5.1.4.1.1.2\0", 0x00020003: b"2.25.1234567",
                       0x00020010: b"1.2.840.10008.1.2\0"}) == fp.getvalue()
    assert meta_group({0x00020002: b"1.2\0", 0x00020010: b"1.2.840.10008.1.2\0"}) is None  # no instance


def test_context_tags_hold_every_top_level_input_of_the_decisions() -> None:
    """The decision cache is keyed by these elements' bytes: the pixel description (pydicom
    resolves US/SS and OB/OW from it), character set, burned-in inputs and the identifying tokens."""
    from convert.anonymize.decide import TOKEN_TAGS

    assert {0x00080005, 0x00080008, 0x00080016, 0x00080060, 0x00280301, 0x00280100, 0x00280103} <= set(CONTEXT_TAGS)
    assert {int(t) for t in TOKEN_TAGS} <= set(CONTEXT_TAGS)
    assert {0x00100010, 0x00100020} <= set(CONTEXT_TAGS)


def test_one_context_decides_each_distinct_element_once(tmp_path: Path) -> None:
    src = make_benchmark_corpus(tmp_path / "src", n_files=4, size=8, files_per_series=4)
    serializer = ByteScrubber(Scrubber(KEY), check=run._check_complete)
    outputs = [_header(p, serializer) for p in _files(src)]
    assert all(o is not None for o in outputs)
    assert len(serializer.contexts) == 1
    decided = serializer.stats["decided"]
    for p in _files(src):  # the same files again: every element from the cache
        _header(p, serializer)
    assert serializer.stats["decided"] == decided
    assert len({o.parts for o in outputs}) == 4  # four instances, four output names


def test_the_decision_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large elements are decided without being cached, and the caches start again past a size."""
    import convert.anonymize.serialize as serialize

    src = make_benchmark_corpus(tmp_path / "src", n_files=3, size=8, files_per_series=3)
    monkeypatch.setattr(serialize, "_MAX_CACHED_ELEMENT", 0)
    serializer = ByteScrubber(Scrubber(KEY), check=run._check_complete)
    outputs = [_header(p, serializer) for p in _files(src)]
    assert all(o is not None for o in outputs)
    assert serializer.cached_bytes == 0 and serializer.stats["cached"] == 0
    monkeypatch.setattr(serialize, "_MAX_CACHED_ELEMENT", 1 << 16)
    monkeypatch.setattr(serialize, "_MAX_CACHED_BYTES", 1)
    again = ByteScrubber(Scrubber(KEY), check=run._check_complete)
    assert [_header(p, again).header for p in _files(src)] == [o.header for o in outputs]  # same bytes
    assert 0 < again.cached_bytes < 200_000


@pytest.mark.parametrize("whole_read", [1 << 30, 0], ids=["read-whole", "kernel-copy"])
def test_small_files_read_whole_and_large_files_copied_give_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_read: int) -> None:
    """A file up to WHOLE_READ is read in one pread and written from memory (Output.source); a
    larger one has its header read and its pixel data copied by the kernel: both equal the
    pydicom route, byte for byte, and a header longer than FIRST_READ is read on."""
    import convert.anonymize.serialize as serialize

    monkeypatch.setattr(serialize, "WHOLE_READ", whole_read)
    monkeypatch.setattr(serialize, "FIRST_READ", 256)  # every header here is longer: read on
    src = make_benchmark_corpus(tmp_path / "src", n_files=3, size=128, files_per_series=3)  # 32 KB of pixels
    serializer = against_reference(_files(src), tmp_path / "work")
    assert serializer.stats["declined"] == 0
    out = _header(_files(src)[0], ByteScrubber(Scrubber(KEY), check=run._check_complete))
    assert out is not None and (out.source is not None) == bool(whole_read)
