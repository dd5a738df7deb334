"""The byte-level fast path (convert/anonymize/fastpath.py) against its oracle, the full path.

For every file of every corpus we have (the PHI corpus, plain CT series like the benchmark's,
pydicom's and deid's test files, dcm_qa_deident when present) and for random datasets with
random PHI (hypothesis), the fast path either declines (writes nothing) or writes exactly the
bytes the full path writes, with the same counts, audit mapping and output name. Each file is
run twice through one fast path (the second pass meets a warm memo), and files of one context
are run in order (later ones take value-only decisions).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import convert  # noqa: E402
import convert.anonymize.run as run  # noqa: E402
from convert.anonymize.fastpath import Declined, FastPath, parse_file, read_parsed  # noqa: E402
from convert.anonymize.profile import OPTIONS  # noqa: E402
from convert.anonymize.scrubber import Scrubber  # noqa: E402
from fixtures.phi_corpus import (LeakScanner, dataset_bytes, element_texts, make_benchmark_corpus,  # noqa: E402
                                 make_corpus)
from tests.conftest import conformance_dir  # noqa: E402

KEY = b"fast path differential test key."


@contextlib.contextmanager
def _full_path_only() -> Iterator[None]:
    saved = run.FAST_PATH
    run.FAST_PATH = False
    try:
        yield
    finally:
        run.FAST_PATH = saved


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


def _log_fields(log) -> tuple:  # type: ignore[no-untyped-def]
    return (log.status, log.message, log.burned_in, log.removed, log.replaced, log.emptied, log.cleaned, log.kept)


def differential(paths: Iterable[Path], work: Path, keep: Iterable[str] = (), allow_burned_in: bool = False,
                 passes: int = 2) -> FastPath:
    """Run every path through one FastPath and through the full path; assert equal outcomes.

    Returns the FastPath (its ``stats`` say how many files were taken fast / learned / declined).
    """
    keep = tuple(keep)
    fast = FastPath(Scrubber(KEY, keep, allow_burned_in))
    full = Scrubber(KEY, keep, allow_burned_in)
    paths = list(paths)
    before = {p: p.read_bytes() for p in paths}
    n = 0
    for _ in range(passes):
        for path in paths:
            n += 1
            fast_dst, full_dst = work / f"fast{n}", work / f"full{n}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = fast.process(path, fast_dst, overwrite=False)
                if got is None:
                    assert not _tree(fast_dst), f"{path.name}: declined but wrote something"
                    continue
                with _full_path_only():
                    want = run.process_file(full, path, full_dst, overwrite=False)
            assert _log_fields(got[0]) == _log_fields(want[0]), path.name
            assert got[1] == want[1], f"{path.name}: audit mapping differs"
            fast_files, full_files = _tree(fast_dst), _tree(full_dst)
            assert fast_files.keys() == full_files.keys(), path.name
            for name in fast_files:
                assert fast_files[name] == full_files[name], f"{path.name}: output bytes differ"
    assert fast.mismatches == 0
    assert {p: p.read_bytes() for p in paths} == before, "an input was modified"
    return fast


def _dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------
# Corpora
# ------------------------------------------------------------------------------------------------
def test_plain_ct_series_are_taken_fast_and_equal_the_full_path(tmp_path: Path) -> None:
    src = make_benchmark_corpus(tmp_path / "src", n_files=8, size=16, files_per_series=4)
    fast = differential(_dicom_files(src), tmp_path / "work")
    # one learning file per context (patient/study), every other file assembled from bytes
    assert fast.stats["declined"] == 0
    assert fast.stats["learned"] == 2
    assert fast.stats["fast"] == 2 * 8 - 2


@pytest.mark.parametrize("keep", [(), ("modified-dates",), ("uids", "full-dates"), ("safe-private",),
                                  ("clean-descriptors", "patient-characteristics", "device", "institution")],
                         ids=lambda k: "+".join(k) or "basic")
def test_phi_corpus_equals_the_full_path(tmp_path: Path, keep: tuple[str, ...]) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    fast = differential(_dicom_files(corpus.root), tmp_path / "work", keep=keep)
    assert fast.stats["fast"] > 0


def test_phi_corpus_with_burned_in_allowed_equals_the_full_path(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    fast = differential(_dicom_files(corpus.root), tmp_path / "work", allow_burned_in=True)
    assert fast.stats["fast"] > 0


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


def test_pydicom_and_deid_test_files_equal_the_full_path(tmp_path: Path) -> None:
    files = _public_files()
    assert len(files) > 100
    fast = differential(files, tmp_path / "work", allow_burned_in=True, passes=1)
    assert fast.stats["learned"] > 10  # plain files among them do go through the fast path


def test_dcm_qa_deident_equals_the_full_path(tmp_path: Path) -> None:
    folder = conformance_dir("dcm_qa_deident")
    differential(_dicom_files(folder), tmp_path / "work", allow_burned_in=True)


# ------------------------------------------------------------------------------------------------
# Random datasets (hypothesis)
# ------------------------------------------------------------------------------------------------
from tests.test_anonymize_property import phi_dataset  # noqa: E402


def _write(ds: Dataset, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(phi_dataset(), phi_dataset(), st.sets(st.sampled_from(OPTIONS), max_size=3), st.integers(1, 999))
def test_random_phi_datasets_equal_the_full_path(first: tuple[Dataset, list[str]],
                                                 other: tuple[Dataset, list[str]], keep: set[str],
                                                 number: int) -> None:
    if {"full-dates", "modified-dates"} <= keep:
        keep.discard("full-dates")
    ds, _ = first
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = _write(ds, work / "a.dcm")
        # the next slice of the same series: only instance values change (same context)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7433.1.1.{number}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.SliceLocation = f"{number / 7:.3f}"
        sibling = _write(ds, work / "b.dcm")
        # and one with the other dataset's elements merged in (random PHI in random places)
        for elem in other[0]:
            if elem.tag not in (0x00080016, 0x00080018, 0x7FE00010):
                ds[elem.tag] = elem
        merged = _write(ds, work / "c.dcm")
        fast = differential([base, sibling, merged], work / "out", keep=sorted(keep), passes=1)
        if fast.stats["learned"] and not fast.mismatches:
            # the learned context takes the sibling slice fast (value-only decisions, memo)
            assert fast.stats["fast"] >= 1


# ------------------------------------------------------------------------------------------------
# Leaks, through the fast path
# ------------------------------------------------------------------------------------------------
def test_leak_checks_pass_through_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole PHI corpus through ``convert.anonymize`` (which takes the fast path where it can):
    no planted value in any element, the raw bytes or the paths; pixel data bit-identical."""
    corpus = make_corpus(tmp_path / "corpus")
    made: list[FastPath] = []
    original = run.fast_path_of

    def spy(scrubber: Scrubber) -> FastPath:
        fast = original(scrubber)
        if fast not in made:
            made.append(fast)
        return fast

    monkeypatch.setattr(run, "fast_path_of", spy)
    out = tmp_path / "out"
    report = convert.anonymize(corpus.root, out, key=KEY, workers=1)
    assert not report.failed
    assert sum(f.stats["fast"] for f in made) >= 4
    scanner = LeakScanner(corpus.tokens())
    leaks = []
    pixels_in = {hashlib.sha256(bytes(pydicom.dcmread(p).PixelData)).hexdigest()
                 for p in _dicom_files(corpus.root) if p.suffix == ".dcm" and "PixelData" in pydicom.dcmread(p)}
    pixels_out = set()
    for path in _dicom_files(out):
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
# The parser declines what it does not fully understand
# ------------------------------------------------------------------------------------------------
def _plain(tmp_path: Path) -> Path:
    src = make_benchmark_corpus(tmp_path / "plain", n_files=1, size=8)
    return _dicom_files(src)[0]


def test_parser_cuts_a_plain_file_like_pydicom(tmp_path: Path) -> None:
    path = _plain(tmp_path)
    parsed = read_parsed(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert [e[0] for e in parsed.elements] == [int(t) for t in ds._dict]
    data = path.read_bytes()
    assert parsed.pixel_offset + parsed.pixel_length == len(data)
    assert data[parsed.pixel_offset - 12:parsed.pixel_offset - 8] == b"\xe0\x7f\x10\x00"


@pytest.mark.parametrize("edit", ["implicit_ts", "bad_vr", "out_of_order", "trailing", "odd_pixels", "truncated",
                                  "no_preamble", "command_group"])
def test_parser_declines_what_it_does_not_take(tmp_path: Path, edit: str) -> None:
    data = bytearray(_plain(tmp_path).read_bytes())
    parsed = parse_file(bytes(data), len(data))
    assert parsed is not None
    first = parsed.elements[0][1]  # offset of the first data set element
    if edit == "implicit_ts":
        at = data.index(b"1.2.840.10008.1.2.1\0")
        data[at:at + 20] = b"1.2.840.10008.1.2\0\0\0"
    elif edit == "bad_vr":
        data[first + 4:first + 6] = b"xx"
    elif edit == "out_of_order":
        second = parsed.elements[1][1]
        data[second:second + 4] = data[first:first + 4]
    elif edit == "trailing":
        data += b"\xfc\xff\xfc\xffOB\0\0\x02\0\0\0\0\0"
    elif edit == "odd_pixels":
        data += b"\0"
    elif edit == "truncated":
        del data[-10:]
    elif edit == "no_preamble":
        data[128:132] = b"NOPE"
    elif edit == "command_group":
        data[first:first + 2] = b"\0\0"
    size = len(data)
    with pytest.raises(Declined):
        result = parse_file(bytes(data), size)
        if result is None:
            raise Declined("needs more bytes than the file has")


def test_declined_files_fall_back_and_are_reported_like_before(tmp_path: Path) -> None:
    """A truncated plain file: the fast path declines, the full path reports it, nothing is written."""
    path = _plain(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "src" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(data[:-100])
    report = convert.anonymize(cut.parent, tmp_path / "out", key=KEY, workers=1)
    assert [Path(p).name for p, _ in report.failed] == ["cut.dcm"]
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_reassembly_that_differs_from_the_full_path_disables_the_context(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-check while learning: if the outcomes do not rebuild the full path's bytes exactly
    (here: a wrong file meta builder), nothing is taken fast in that context; outputs still equal."""
    import convert.anonymize.fastpath as fastpath

    monkeypatch.setattr(fastpath, "_meta_group", lambda *args: b"not a file meta")
    src = make_benchmark_corpus(tmp_path / "src", n_files=4, size=8, files_per_series=4)
    fast = differential(_dicom_files(src), tmp_path / "work")
    assert fast.stats["fast"] == 0 and fast.stats["learned"] == 0
    assert list(fast.contexts.values()) == [None]


def test_value_only_decisions_that_disagree_are_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other self-check: a value-only decision that differs from the full path's outcome for
    the same element is counted and no longer used in that context; outputs still equal."""
    src = make_benchmark_corpus(tmp_path / "src", n_files=4, size=8, files_per_series=4)
    original = FastPath._decide

    def wrong(self, ctx, tag, vr, value):  # type: ignore[no-untyped-def]
        decided = original(self, ctx, tag, vr, value)
        return None if decided is None else (b"", decided[1], decided[2])

    monkeypatch.setattr(FastPath, "_decide", wrong)
    paths = _dicom_files(src)
    fast = FastPath(Scrubber(KEY))
    for i, path in enumerate(paths):
        fast.process(path, tmp_path / f"out{i}", overwrite=False)
    assert fast.mismatches > 0
    assert all(not ctx.shortcuts for ctx in fast.contexts.values() if ctx)
    # files after the first were learned (full path), never assembled from a wrong decision
    assert fast.stats["fast"] == 0 and fast.stats["learned"] == len(paths)
