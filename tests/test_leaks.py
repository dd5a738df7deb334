"""Leak tests: de-identify the PHI attack corpus and look for every planted value everywhere.

The corpus (``fixtures/phi_corpus.py``) plants names, IDs, dates, UIDs, addresses and free text in
standard, nested, private, overlay, curve and file-meta elements, in four character sets, and in the
file and folder names. After ``convert.anonymize.anonymize`` (Python API, and the ``medconvert
anonymize`` CLI) we look in:

* every element of every output (file meta, sequences, private, decoded with the file's charset),
* the raw bytes of every output file (UTF-8, Latin-1, the ISO 2022 JIS bytes, the declared charset),
* every output path component,
* everything printed or logged, and the CLI's stdout/stderr,

and assert nothing planted is found. We also check that pixel data is bit-identical, geometry
attributes are unchanged, UIDs are replaced consistently (within series, studies, frames of
reference, across references), outputs are deterministic per key, the burned-in object is refused,
and the audit mapping is 0600 and the only place the originals appear.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import require_tool
from pydicom.charset import convert_encodings

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fixtures.phi_corpus import (  # noqa: E402
    CorpusFile,
    CorpusManifest,
    LeakScanner,
    dataset_bytes,
    element_texts,
    make_corpus,
    make_document_corpus,
    tokens_for,
)

anon_pkg = pytest.importorskip("convert.anonymize", reason="convert.anonymize is not available yet")
anonymize = getattr(anon_pkg, "anonymize", None)
anonymize_dataset = getattr(anon_pkg, "anonymize_dataset", None)
if not callable(anonymize) or anonymize_dataset is None:
    pytest.skip("convert.anonymize does not export anonymize/anonymize_dataset yet", allow_module_level=True)

from convert.anonymize.run import MANIFEST_NAME  # noqa: E402  (the output folder's resume record)
from convert.report import REPORT_HTML, REPORT_JSON  # noqa: E402  (the run report of a CLI run)

KEY_A = b"leak-test key A: 32 bytes of secret!!"
KEY_B = b"leak-test key B: another secret value"
UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$")
GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns")


# ------------------------------------------------------------------------------------------------
# Running the anonymizer once per configuration (module scope: the corpus is small, runs are shared)
# ------------------------------------------------------------------------------------------------
@dataclass
class Run:
    src: Path
    dst: Path
    report: Any
    audit: Path | None
    console: str
    outputs: dict[Path, pydicom.Dataset] = field(default_factory=dict)  # path -> dataset

    def by_sha(self) -> dict[str, tuple[Path, pydicom.Dataset]]:
        out: dict[str, tuple[Path, pydicom.Dataset]] = {}
        for path, ds in self.outputs.items():
            sha = hashlib.sha256(bytes(ds.PixelData)).hexdigest()
            assert sha not in out, f"two outputs carry the same pixel data: {path} and {out[sha][0]}"
            out[sha] = (path, ds)
        return out


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # pragma: no cover - a broken log call must not hide a leak
            self.lines.append(repr(record.__dict__))


def _run_api(src: Path, dst: Path, **kwargs: Any) -> Run:
    handler = _ListHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = anonymize(src, dst, **kwargs)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    # (the returned Report holds the caller's own input paths: it is not console output)
    console = "\n".join([out.getvalue(), err.getvalue(), *handler.lines, *(str(w.message) for w in caught)])
    return Run(src, dst, report, Path(kwargs["audit"]) if kwargs.get("audit") else None, console,
               _read_outputs(dst))


def _read_outputs(dst: Path) -> dict[Path, pydicom.Dataset]:
    outputs = {}
    bookkeeping = (MANIFEST_NAME, REPORT_JSON, REPORT_HTML)  # the job's manifest, the run report (CLI runs)
    for path in sorted(p for p in dst.rglob("*") if p.is_file() and p.name not in bookkeeping):
        outputs[path] = pydicom.dcmread(path)  # every other file in the output tree must be DICOM
    return outputs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusManifest:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "PACS_export")


@pytest.fixture(scope="module")
def scanner(corpus: CorpusManifest) -> LeakScanner:
    return LeakScanner(corpus.tokens())


@pytest.fixture(scope="module")
def run_a(corpus: CorpusManifest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("run_a")
    (base / "audit").mkdir()
    return _run_api(corpus.root, base / "out", key=KEY_A, audit=base / "audit" / "mapping.json", progress=True)


@pytest.fixture(scope="module")
def run_a_again(corpus: CorpusManifest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run_api(corpus.root, tmp_path_factory.mktemp("run_a2") / "out", key=KEY_A)


@pytest.fixture(scope="module")
def run_b(corpus: CorpusManifest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run_api(corpus.root, tmp_path_factory.mktemp("run_b") / "out", key=KEY_B)


@pytest.fixture(scope="module")
def run_burned(corpus: CorpusManifest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run_api(corpus.root, tmp_path_factory.mktemp("run_burned") / "out", key=KEY_A, allow_burned_in=True)


def _strip_paths(text: str, paths: list[Path], root: Path) -> str:
    """Remove echoes of the user's own input paths (allowed on refused/failed lines) from ``text``."""
    forms: set[str] = set()
    for p in paths:
        p = Path(p)
        absolute = p if p.is_absolute() else root / p
        forms.update({str(absolute), str(p), absolute.as_posix()})
        with contextlib.suppress(ValueError):
            forms.add(str(absolute.relative_to(root)))
            forms.add(str(absolute.relative_to(root.parent)))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<input path>")
    return text


def _report_paths(report: Any) -> list[Path]:
    return [o.source for o in report.refused + report.failed]


def _leaks_in_outputs(run: Run, scanner: LeakScanner) -> list[str]:
    leaks: list[str] = []
    for path, ds in run.outputs.items():
        rel = path.relative_to(run.dst)
        for where, text in element_texts(ds):
            for hit in scanner.scan_text(text):
                leaks.append(f"{rel} {where}: {hit!r} in {text[:80]!r}")
    return leaks


def _fmt(leaks: list[str], limit: int = 40) -> str:
    return f"{len(leaks)} leak(s):\n" + "\n".join(leaks[:limit])


# ------------------------------------------------------------------------------------------------
# The corpus itself (positive controls: the scanner finds what was planted in the inputs)
# ------------------------------------------------------------------------------------------------
def test_corpus_layout_and_positive_control(corpus: CorpusManifest, scanner: LeakScanner) -> None:
    assert len(corpus.files) == 41
    assert sum(f.burned_in for f in corpus.files) == 1
    assert sum(f.encapsulated for f in corpus.files) == 1
    assert sum(f.multiframe for f in corpus.files) == 1
    assert len({f.pixel_sha256 for f in corpus.files}) == len(corpus.files), "pixel data must be unique per file"
    for f in corpus.files:
        raw = (corpus.root / f.path).read_bytes()
        assert scanner.scan_bytes(raw), f"scanner finds nothing in input {f.path}"
        assert scanner.scan_path(f.path), f"scanner finds nothing in input path {f.path}"
    # every planted value is findable in its own file (text or bytes), including charset-encoded ones
    for p in corpus.planted:
        if p.kind == "path":
            continue
        assert scanner.scan_text(p.value), f"no token matches planted {p.element} in {p.file}"
    # the multi-byte names are found in the raw bytes in their own encodings
    jp = next(f for f in corpus.files if "Yamada" in f.path)
    raw_jp = (corpus.root / jp.path).read_bytes()
    assert ";3ED" in scanner.scan_bytes(raw_jp)  # 山田 as JIS X 0208 bytes between ISO 2022 escapes
    cn = next(f for f in corpus.files if "Wang" in f.path)
    assert "王".encode() + "小東".encode() in (corpus.root / cn.path).read_bytes()
    de = next(f for f in corpus.files if "Mueller" in f.path)
    assert "Müller".encode("latin-1") in (corpus.root / de.path).read_bytes()


def test_scanner_boundaries() -> None:
    sc = LeakScanner({"Doe", "7734291", "20240101", "Yamada"})
    assert sc.scan_text("Does the document say") == []           # short word inside another word
    assert sc.scan_text("mr DOE") == ["DOE"]                      # case-insensitive
    assert sc.scan_text("2.25.177342912") == []                   # digits inside a longer number
    assert sc.scan_text("id 7734291.") == ["7734291"]
    assert sc.scan_bytes(b"\x00YAMADA\x00") == ["YAMADA"]
    assert sc.scan_path("x/Doe_John/y") == ["Doe"]


# ------------------------------------------------------------------------------------------------
# No planted value anywhere in the outputs
# ------------------------------------------------------------------------------------------------
def test_every_non_refused_input_is_written(corpus: CorpusManifest, run_a: Run) -> None:
    expected = [f for f in corpus.files if not f.burned_in]
    assert len(run_a.outputs) == len(expected), sorted(str(p) for p in run_a.outputs)
    assert len(run_a.report.written) == len(expected)
    assert not run_a.report.failed, run_a.report.failed


def test_no_planted_value_in_any_element(run_a: Run, scanner: LeakScanner) -> None:
    leaks = _leaks_in_outputs(run_a, scanner)
    assert not leaks, _fmt(leaks)


def test_no_planted_value_in_raw_bytes(run_a: Run, scanner: LeakScanner, corpus: CorpusManifest) -> None:
    leaks: list[str] = []
    scanners: dict[tuple[str, ...], LeakScanner] = {(): scanner}
    for path, ds in run_a.outputs.items():
        charset = ds.get("SpecificCharacterSet")
        extra: tuple[str, ...] = ()
        if charset:
            codecs = convert_encodings(list(charset) if not isinstance(charset, str) else [charset])
            extra = tuple(c for c in codecs if c not in scanner.encodings)
        if extra not in scanners:
            scanners[extra] = LeakScanner(corpus.tokens(), extra_encodings=extra)
        sc = scanners[extra]
        raw = dataset_bytes(path)  # deflated data sets are inflated first
        pixel = bytes(ds.PixelData) if "PixelData" in ds else b""
        if pixel:  # pixel data is checked bit for bit elsewhere; it is copied, not scrubbed
            raw = raw.replace(pixel, b"")
        for hit in sc.scan_bytes(raw):
            leaks.append(f"{path.relative_to(run_a.dst)}: {hit!r}")
    assert not leaks, _fmt(leaks)


def test_no_planted_value_in_output_paths(run_a: Run, scanner: LeakScanner) -> None:
    leaks = [f"{p.relative_to(run_a.dst)}: {scanner.scan_path(p.relative_to(run_a.dst))}"
             for p in run_a.outputs if scanner.scan_path(p.relative_to(run_a.dst))]
    assert not leaks, _fmt(leaks)
    # the dst folder holds nothing but the DICOM outputs and the job's manifest (no copied notes, no audit)
    assert all(p.suffix in (".dcm", "") for p in run_a.outputs)
    others = [p for p in run_a.dst.rglob("*") if p.is_file() and p not in run_a.outputs]
    assert others == [run_a.dst / MANIFEST_NAME]
    manifest = others[0].read_bytes()  # the record a resumed run checks: no planted value, no key
    assert not scanner.scan_bytes(manifest) and KEY_A not in manifest and str(run_a.src).encode() not in manifest


def test_no_original_uid_survives(run_a: Run, corpus: CorpusManifest) -> None:
    originals = corpus.original_uids()
    found = []
    for path, ds in run_a.outputs.items():
        for where, text in element_texts(ds):
            for uid in re.findall(r"[0-9][0-9.]{6,63}", text):
                if uid in originals or uid.startswith("1.2.840.99999"):
                    found.append(f"{path.relative_to(run_a.dst)} {where}: {uid}")
    assert not found, _fmt(found)


def test_patient_characteristics_and_free_text_removed(run_a: Run) -> None:
    """Age, size, weight are X in the Basic Profile; descriptions are X without clean-descriptors."""
    kept = []
    for path, ds in run_a.outputs.items():
        for kw, planted in (("PatientAge", "047Y"), ("PatientSize", "1.83"), ("PatientWeight", "91.7")):
            if kw in ds and str(ds[kw].value or "") == planted:
                kept.append(f"{path.name}: {kw}={planted}")
    assert not kept, _fmt(kept)


def test_private_overlay_curve_groups_removed(run_a: Run) -> None:
    bad = []
    for path, ds in run_a.outputs.items():
        for where, _ in element_texts(ds):
            tags = re.findall(r"\(([0-9A-F]{4}),\s?([0-9A-F]{4})\)", where)
            for group, _elem in tags:
                g = int(group, 16)
                if g % 2 == 1 or 0x5000 <= g <= 0x50FF or (0x6000 <= g <= 0x60FF and int(_elem, 16) in
                                                           (0x0022, 0x1500, 0x3000, 0x4000)):
                    bad.append(f"{path.name} {where}")
    assert not bad, _fmt(sorted(set(bad)))


# ------------------------------------------------------------------------------------------------
# What must be preserved
# ------------------------------------------------------------------------------------------------
def test_pixel_data_bit_identical(corpus: CorpusManifest, run_a: Run) -> None:
    outputs = run_a.by_sha()
    for f in corpus.files:
        if f.burned_in:
            assert f.pixel_sha256 not in outputs, "burned-in object was written without allow_burned_in"
            continue
        assert f.pixel_sha256 in outputs, f"no output carries the pixel data of {f.path} bit for bit"


def test_encapsulated_pixel_data_copied_verbatim(corpus: CorpusManifest, run_a: Run) -> None:
    rle = next(f for f in corpus.files if f.encapsulated)
    src = pydicom.dcmread(corpus.root / rle.path)
    _, out = run_a.by_sha()[rle.pixel_sha256]
    assert out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert bytes(out.PixelData) == bytes(src.PixelData)
    assert (out.pixel_array == src.pixel_array).all()


def _geometry(ds: pydicom.Dataset) -> dict[str, Any]:
    geo: dict[str, Any] = {}
    for kw in GEOMETRY:
        if kw in ds:
            geo[kw] = str(ds[kw].value)
    for i, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence", [])):
        for pp in item.get("PlanePositionSequence", []):
            geo[f"frame{i}.IPP"] = str(pp.ImagePositionPatient)
    for item in ds.get("SharedFunctionalGroupsSequence", []):
        for pm in item.get("PixelMeasuresSequence", []):
            geo["shared.PixelSpacing"] = str(pm.PixelSpacing)
            geo["shared.SliceThickness"] = str(pm.SliceThickness)
        for po in item.get("PlaneOrientationSequence", []):
            geo["shared.IOP"] = str(po.ImageOrientationPatient)
    for kw in ("NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope",
               "RescaleIntercept", "PhotometricInterpretation", "SOPClassUID"):
        if kw in ds:
            geo[kw] = str(ds[kw].value)
    return geo


def test_geometry_attributes_unchanged(corpus: CorpusManifest, run_a: Run) -> None:
    outputs = run_a.by_sha()
    for f in corpus.files:
        if f.burned_in:
            continue
        src = pydicom.dcmread(corpus.root / f.path)
        _, out = outputs[f.pixel_sha256]
        assert _geometry(out) == _geometry(src), f.path
    enhanced = next(f for f in corpus.files if f.multiframe)
    assert len([k for k in _geometry(outputs[enhanced.pixel_sha256][1]) if k.startswith("frame")]) == 4


def test_world_positions_match_simpleitk(corpus: CorpusManifest, run_a: Run, tmp_path: Path) -> None:
    """An independent reader (SimpleITK/GDCM) sees the same series geometry before and after."""
    sitk = pytest.importorskip("SimpleITK")
    outputs = run_a.by_sha()
    series: dict[str, list[CorpusFile]] = defaultdict(list)
    for f in corpus.files:
        if not (f.burned_in or f.multiframe or f.encapsulated):
            series[f.series_uid].append(f)
    # the first file of each series carries a 60xx overlay that GDCM's series reader chokes on
    files = [f for f in next(iter(series.values())) if not f.path.endswith("IM_0001_Doe.dcm")]
    assert len(files) >= 2
    for name, paths in (("in", [corpus.root / f.path for f in files]),
                        ("out", [outputs[f.pixel_sha256][0] for f in files])):
        folder = tmp_path / name
        folder.mkdir()
        for i, p in enumerate(paths):
            shutil.copy(p, folder / f"{i}.dcm")
    reader = sitk.ImageSeriesReader()
    images = []
    for name in ("in", "out"):
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / name)))
        images.append(reader.Execute())
    a, b = images
    assert a.GetSize() == b.GetSize()
    assert a.GetOrigin() == pytest.approx(b.GetOrigin())
    assert a.GetSpacing() == pytest.approx(b.GetSpacing())
    assert a.GetDirection() == pytest.approx(b.GetDirection())
    assert (sitk.GetArrayFromImage(a) == sitk.GetArrayFromImage(b)).all()


# ------------------------------------------------------------------------------------------------
# UIDs and IDs: replaced, consistent, deterministic per key
# ------------------------------------------------------------------------------------------------
def _new_values(corpus: CorpusManifest, run: Run, attr: str, keyword: str) -> dict[str, set[str]]:
    """original value of ``attr`` (CorpusFile field) -> set of new ``keyword`` values in outputs."""
    outputs = run.by_sha()
    seen: dict[str, set[str]] = defaultdict(set)
    for f in corpus.files:
        if f.pixel_sha256 in outputs:
            ds = outputs[f.pixel_sha256][1]
            seen[getattr(f, attr)].add(str(ds.get(keyword, "<absent>")))
    return seen


@pytest.mark.parametrize("attr, keyword", [
    ("series_uid", "SeriesInstanceUID"),
    ("study_uid", "StudyInstanceUID"),
    ("frame_of_reference_uid", "FrameOfReferenceUID"),
    ("patient_id", "PatientID"),
])
def test_uid_and_id_consistency(corpus: CorpusManifest, run_a: Run, attr: str, keyword: str) -> None:
    seen = _new_values(corpus, run_a, attr, keyword)
    for original, new in seen.items():
        assert len(new) == 1, f"files of one original {keyword} got {len(new)} different new values: {new}"
        (value,) = new
        assert value not in ("", "<absent>"), f"{keyword} missing in output"
        assert value != original
        if keyword.endswith("UID"):
            assert UID_RE.match(value) and len(value) <= 64, f"invalid UID {value!r}"
    news = [next(iter(v)) for v in seen.values()]
    assert len(set(news)) == len(news), f"different original {keyword}s collapsed into one: {news}"


def test_sop_instance_uids_unique_valid_and_in_file_meta(run_a: Run) -> None:
    uids = []
    for path, ds in run_a.outputs.items():
        uid = str(ds.SOPInstanceUID)
        assert UID_RE.match(uid) and len(uid) <= 64, uid
        assert ds.file_meta.MediaStorageSOPInstanceUID == uid, path
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID, path
        uids.append(uid)
    assert len(set(uids)) == len(uids)


def test_references_point_at_new_uids(corpus: CorpusManifest, run_a: Run) -> None:
    outputs = run_a.by_sha()
    old_to_new = {f.sop_uid: str(outputs[f.pixel_sha256][1].SOPInstanceUID)
                  for f in corpus.files if f.pixel_sha256 in outputs}
    checked = 0
    for f in corpus.files:
        if not f.references or f.pixel_sha256 not in outputs:
            continue
        ds = outputs[f.pixel_sha256][1]
        for kw in ("ReferencedImageSequence", "SourceImageSequence"):
            for item in ds.get(kw, []):
                ref = str(item.ReferencedSOPInstanceUID)
                assert ref in old_to_new.values(), f"{f.path} {kw} points at an unknown UID {ref}"
                assert ref in {old_to_new[r] for r in f.references}, f"{f.path} {kw} points at the wrong object"
                checked += 1
    assert checked, "no ReferencedImageSequence/SourceImageSequence item was checked (were they removed?)"


def test_same_key_gives_identical_outputs(run_a: Run, run_a_again: Run) -> None:
    first = {p.relative_to(run_a.dst): p.read_bytes() for p in run_a.outputs}
    second = {p.relative_to(run_a_again.dst): p.read_bytes() for p in run_a_again.outputs}
    assert first.keys() == second.keys()
    differing = [str(k) for k in first if first[k] != second[k]]
    assert not differing, f"same key, different bytes: {differing[:5]}"


def test_outputs_do_not_depend_on_the_number_of_workers(corpus: CorpusManifest, run_a: Run, tmp_path: Path) -> None:
    """Parallel runs (default workers) and a serial run give the same bytes at the same paths."""
    serial = _run_api(corpus.root, tmp_path / "serial", key=KEY_A, workers=1)
    first = {p.relative_to(run_a.dst): p.read_bytes() for p in run_a.outputs}
    second = {p.relative_to(serial.dst): p.read_bytes() for p in serial.outputs}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_different_key_gives_different_uids(run_a: Run, run_b: Run) -> None:
    def uids(run: Run) -> set[str]:
        out = set()
        for ds in run.outputs.values():
            out.update({str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
                        str(ds.get("PatientID", ""))})
        out.discard("")
        return out

    common = uids(run_a) & uids(run_b)
    assert not common, f"UIDs/IDs independent of the key: {sorted(common)[:5]}"


def test_key_is_never_written_or_printed(run_a: Run) -> None:
    key_text = KEY_A.decode()
    assert key_text not in run_a.console
    for path in run_a.outputs:
        assert KEY_A not in path.read_bytes()
    assert run_a.audit is not None and KEY_A not in run_a.audit.read_bytes()


# ------------------------------------------------------------------------------------------------
# Burned-in annotation
# ------------------------------------------------------------------------------------------------
def test_burned_in_refused_and_nothing_written(corpus: CorpusManifest, run_a: Run) -> None:
    us = next(f for f in corpus.files if f.burned_in)
    refused = [o.source for o in run_a.report.refused]
    assert len(refused) == 1 and refused[0].name == Path(us.path).name
    reason = run_a.report.refused[0].error
    assert "burn" in reason.lower(), reason
    assert us.pixel_sha256 not in run_a.by_sha()
    assert all(str(ds.get("Modality", "")) != "US" for ds in run_a.outputs.values())


def test_burned_in_written_and_flagged_when_allowed(corpus: CorpusManifest, run_burned: Run,
                                                    scanner: LeakScanner) -> None:
    us = next(f for f in corpus.files if f.burned_in)
    outputs = run_burned.by_sha()
    assert us.pixel_sha256 in outputs, "allow_burned_in=True did not write the burned-in object"
    _, ds = outputs[us.pixel_sha256]
    assert ds.BurnedInAnnotation == "YES", "the output must stay flagged as carrying burned-in text"
    assert not run_burned.report.refused
    leaks = _leaks_in_outputs(run_burned, scanner)
    assert not leaks, _fmt(leaks)


def test_dataset_api_refuses_burned_in(corpus: CorpusManifest) -> None:
    from convert.errors import AnonymizationError, ConvertError

    us = next(f for f in corpus.files if f.burned_in)
    ds = pydicom.dcmread(corpus.root / us.path)
    with pytest.raises(AnonymizationError) as info:
        anonymize_dataset(ds, key=KEY_A)
    assert isinstance(info.value, ConvertError)
    out = anonymize_dataset(ds, key=KEY_A, allow_burned_in=True)
    assert out.BurnedInAnnotation == "YES"


# ------------------------------------------------------------------------------------------------
# Console, logs, audit
# ------------------------------------------------------------------------------------------------
def test_console_and_logs_carry_no_planted_value(run_a: Run, run_burned: Run, scanner: LeakScanner) -> None:
    for run in (run_a, run_burned):
        text = _strip_paths(run.console, _report_paths(run.report), run.src)
        hits = scanner.scan_text(text)
        assert not hits, f"planted values printed/logged: {hits[:10]}\n{text[:2000]}"


def test_audit_mapping_is_private_and_holds_the_originals(run_a: Run, corpus: CorpusManifest) -> None:
    audit = run_a.audit
    assert audit is not None and audit.is_file()
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600, oct(audit.stat().st_mode)
    assert run_a.dst not in audit.parents
    text = audit.read_text(encoding="utf-8", errors="replace")
    for f in corpus.files:
        if not f.burned_in:
            assert f.patient_id in text, f"audit does not map PatientID of {f.path}"
            assert f.study_uid in text, f"audit does not map StudyInstanceUID of {f.path}"
    # and its pseudonyms are the ones in the outputs
    pseudo_ids = {str(ds.PatientID) for ds in run_a.outputs.values()}
    assert all(p in text for p in pseudo_ids)


def _serialized(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_dataset_api_leaves_input_untouched_and_output_clean(corpus: CorpusManifest, scanner: LeakScanner) -> None:
    picked = corpus.files[::5] + [f for f in corpus.files if "CT_invalid" in f.path or f.multiframe]
    for f in picked:
        if f.burned_in:
            continue
        ds = pydicom.dcmread(corpus.root / f.path)
        before = _serialized(ds)
        out = anonymize_dataset(ds, key=KEY_A)
        assert out is not ds
        assert _serialized(ds) == before, f"anonymize_dataset modified its input ({f.path})"
        leaks = [f"{where}: {hit}" for where, text in element_texts(out) for hit in scanner.scan_text(text)]
        assert not leaks, _fmt(leaks)
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_top_level_convert_anonymize_is_callable(corpus: CorpusManifest) -> None:
    import convert

    f = corpus.files[0]
    ds = pydicom.dcmread(corpus.root / f.path)
    out = convert.anonymize(ds, key=KEY_A)
    assert isinstance(out, pydicom.Dataset)
    assert str(out.PatientID) != f.patient_id


# ------------------------------------------------------------------------------------------------
# Bad inputs in the tree, bad destinations
# ------------------------------------------------------------------------------------------------
def test_non_dicom_and_truncated_files_are_reported_not_copied(corpus: CorpusManifest, tmp_path: Path,
                                                               scanner: LeakScanner) -> None:
    src = tmp_path / "Doe_John_7734291"
    good = next(f for f in corpus.files if not f.burned_in)
    src.mkdir()
    shutil.copy(corpus.root / good.path, src / "IM_ok_Doe.dcm")
    (src / "notes_John_Doe.txt").write_text("John Doe 7734291 called at 555-0113\n", encoding="utf-8")
    raw = (corpus.root / good.path).read_bytes()
    (src / "IM_truncated_Doe.dcm").write_bytes(raw[: len(raw) // 3])
    run = _run_api(src, tmp_path / "out", key=KEY_A)
    assert len(run.outputs) == 1
    assert run.report.skipped_non_dicom >= 1 or any("notes" in str(o.source) for o in run.report.failed)
    failed = [o.source.name for o in run.report.failed]
    assert "IM_truncated_Doe.dcm" in failed, run.report.failed
    assert not _leaks_in_outputs(run, scanner)
    text = _strip_paths(run.console, _report_paths(run.report), src)
    assert not scanner.scan_text(text), scanner.scan_text(text)


def test_dst_inside_src_is_refused_before_writing(corpus: CorpusManifest, tmp_path: Path) -> None:
    from convert.errors import ConvertError

    src = tmp_path / "src"
    shutil.copytree(corpus.root / corpus.files[0].path.split("/")[0], src)
    before = sorted(p for p in src.rglob("*"))
    with pytest.raises(ConvertError):
        anonymize(src, src / "anon", key=KEY_A)
    assert sorted(p for p in src.rglob("*")) == before


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def test_cli_anonymize_leaks_nothing(corpus: CorpusManifest, scanner: LeakScanner, tmp_path: Path) -> None:
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(KEY_A)
    dst, audit = tmp_path / "cli_out", tmp_path / "private" / "audit.json"
    audit.parent.mkdir()
    env = {**os.environ, "COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"}
    env.pop("MEDCONVERT_KEY", None)
    env.pop("MEDCONVERT_KEY_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "convert", "anonymize", str(corpus.root), str(dst), "--key", str(key_file),
         "--audit", str(audit)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, f"a refused file beside written ones: exit code 3\n{proc.stdout}\n{proc.stderr}"
    text = proc.stdout + "\n" + proc.stderr  # input files by number: no input path to strip
    hits = scanner.scan_text(text)
    assert not hits, f"planted values on the console: {hits}\n{text[:3000]}"
    for name in (REPORT_JSON, REPORT_HTML):  # the run report in DST: no file name, no header value
        report_text = (dst / name).read_text(encoding="utf-8")
        hits = scanner.scan_text(report_text)
        assert not hits, f"planted values in {name}: {hits}"
        assert str(corpus.root) not in report_text and corpus.root.name not in report_text
    assert json.loads((dst / REPORT_JSON).read_text())["totals"]["refused"] == 1
    assert "error" in proc.stderr.lower() or "refused" in (proc.stdout + proc.stderr).lower()
    outputs = _read_outputs(dst)
    assert len(outputs) == len(corpus.files) - 1
    run = Run(corpus.root, dst, None, audit, text, outputs)
    leaks = _leaks_in_outputs(run, scanner)
    leaks += [f"path {p}" for p in outputs if scanner.scan_path(p.relative_to(dst))]
    assert not leaks, _fmt(leaks)
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert next(f for f in corpus.files if not f.burned_in).patient_id in audit.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# Converted outputs of an anonymized conversion (NIfTI/NRRD/MINC/Analyze + JSON sidecars)
# ------------------------------------------------------------------------------------------------
def _convert_supports_anonymize() -> bool:
    proc = subprocess.run([sys.executable, "-m", "convert", "convert", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"}, timeout=120)
    return "--anonymize" in proc.stdout


def _walk_h5_attrs(path: Path) -> list[str]:
    h5py = pytest.importorskip("h5py")
    texts: list[str] = []

    def visit(name: str, obj: Any) -> None:
        texts.append(name)
        for k, v in obj.attrs.items():
            texts.append(f"{k}={v!r}")
            if isinstance(v, bytes):
                texts.append(v.decode("latin-1"))

    with h5py.File(path, "r") as fh:
        for k, v in fh.attrs.items():
            texts.append(f"{k}={v!r}")
        fh.visititems(visit)
    return texts


def _one_series(corpus: CorpusManifest, tmp_path: Path) -> Path:
    """Copy one plain 3-file CT series of the corpus into a folder named after the patient."""
    series = defaultdict(list)
    for f in corpus.files:
        if not (f.burned_in or f.multiframe or f.encapsulated) and "/CT_head/" in f.path and "Doe" in f.path:
            series[f.series_uid].append(f)
    files = series[next(iter(series))]
    src = tmp_path / "Doe_John_7734291" / "CT_head"
    src.mkdir(parents=True)
    for f in files:
        shutil.copy(corpus.root / f.path, src / Path(f.path).name)
    return src


def _scan_converted(paths: list[Path], root: Path, scanner: LeakScanner) -> list[str]:
    import gzip

    leaks: list[str] = []
    for p in paths:
        leaks += [f"name {p.name}: {h}" for h in scanner.scan_path(p.relative_to(root))]
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        leaks += [f"{p.name} bytes: {h}" for h in scanner.scan_bytes(raw)]
        if p.suffix == ".mnc":
            leaks += [f"{p.name} attr: {h}" for t in _walk_h5_attrs(p) for h in scanner.scan_text(t)]
        if p.name.endswith((".nii", ".nii.gz", ".hdr")):
            import nibabel as nib

            hdr = nib.load(str(p)).header
            texts = [bytes(hdr[k].item() if hasattr(hdr[k], "item") else hdr[k]).decode("latin-1", "ignore")
                     for k in ("descrip", "aux_file", "intent_name", "db_name") if k in hdr]
            for ext_ in getattr(hdr, "extensions", None) or []:
                texts.append(bytes(ext_.get_content() if hasattr(ext_, "get_content") else b"").decode("latin-1",
                                                                                                       "ignore"))
            leaks += [f"{p.name} header: {h}" for t in texts for h in scanner.scan_text(t)]
        if p.suffix == ".dcm":  # DICOM output (--to dicom): every element, decoded
            texts = [text for _, text in element_texts(pydicom.dcmread(p))]
            leaks += [f"{p.name} element: {h}" for t in texts for h in scanner.scan_text(t)]
        if p.suffix in (".nrrd", ".nhdr"):
            import nrrd

            header = nrrd.read_header(str(p))
            leaks += [f"{p.name} nrrd {k}: {h}" for k, v in header.items() for h in scanner.scan_text(f"{k} {v}")]
        if p.suffix == ".json":
            leaks += [f"{p.name} json: {h}" for h in scanner.scan_text(p.read_text(encoding="utf-8"))]
    return leaks


@pytest.mark.parametrize("fmt, ext", [("nifti-gz", ".nii.gz"), ("nifti-pair", ".hdr"), ("nrrd", ".nrrd"),
                                      ("nhdr", ".nhdr"), ("minc2", ".mnc"), ("analyze", ".hdr"),
                                      ("dicom", "")])  # dicom: a folder, one sub-folder per series
def test_anonymized_conversion_outputs_carry_no_phi(corpus: CorpusManifest, scanner: LeakScanner,
                                                    tmp_path: Path, fmt: str, ext: str) -> None:
    """DICOM -> image formats after de-identification: headers, sidecars, bytes and names stay clean.

    Uses ``medconvert convert --anonymize`` when it exists, else the two-step pipeline
    ``medconvert anonymize`` then ``medconvert convert`` (what a user does today).
    """
    src = _one_series(corpus, tmp_path)
    out_dir = tmp_path / "converted"
    out_dir.mkdir()
    out = out_dir / f"scan{ext}"
    env = {**os.environ, "COLUMNS": "400"}
    console = ""
    if _convert_supports_anonymize():
        cmds = [[sys.executable, "-m", "convert", "convert", str(src), str(out), "--to", fmt, "--anonymize"]]
    else:
        anon = tmp_path / "anon"
        cmds = [[sys.executable, "-m", "convert", "anonymize", str(src), str(anon)],
                [sys.executable, "-m", "convert", "convert", str(anon), str(out), "--to", fmt]]
    for cmd in cmds:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
        console += proc.stdout + proc.stderr
    assert not scanner.scan_text(_strip_paths(console, [src, out], tmp_path))
    produced = [p for p in out_dir.rglob("*") if p.is_file()]
    assert produced
    leaks = _scan_converted(produced, out_dir, scanner)
    assert not leaks, _fmt(leaks)


def test_anonymized_conversion_keeps_world_geometry(corpus: CorpusManifest, tmp_path: Path) -> None:
    """dcm2niix on the ORIGINAL series vs medconvert on the DE-IDENTIFIED series: same affine and voxels."""
    nib = pytest.importorskip("nibabel")
    dcm2niix = require_tool("dcm2niix")
    src = _one_series(corpus, tmp_path)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-f", "ref", "-o", str(ref_dir), str(src)], check=True,
                   capture_output=True, timeout=120)
    anon = tmp_path / "anon"
    subprocess.run([sys.executable, "-m", "convert", "anonymize", str(src), str(anon)], check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "anon.nii"
    subprocess.run([sys.executable, "-m", "convert", "convert", str(anon), str(out), "--no-sidecar"], check=True,
                   capture_output=True, timeout=300)
    ref = nib.as_closest_canonical(nib.load(str(ref_dir / "ref.nii")))
    got = nib.as_closest_canonical(nib.load(str(out)))
    assert ref.shape == got.shape
    assert ref.affine == pytest.approx(got.affine, abs=1e-3)
    assert (ref.get_fdata() == got.get_fdata()).all()


# ------------------------------------------------------------------------------------------------
# Real-world hiding places, one named test each (diagnostics on top of the global scans above)
# ------------------------------------------------------------------------------------------------
def _outputs_of(corpus: CorpusManifest, run: Run, pick) -> list[tuple[CorpusFile, Path, pydicom.Dataset]]:
    outputs = run.by_sha()
    return [(f, *outputs[f.pixel_sha256]) for f in corpus.files if pick(f) and f.pixel_sha256 in outputs]


def test_preamble_is_not_copied(corpus: CorpusManifest, run_a: Run, scanner: LeakScanner) -> None:
    """The 128-byte preamble can hold anything (we put the name there): it must not travel."""
    for path in run_a.outputs:
        preamble = path.read_bytes()[:128]
        assert not scanner.scan_bytes(preamble), (path.name, preamble)


def test_original_attributes_sequence_removed(run_a: Run) -> None:
    """OriginalAttributesSequence keeps the values an earlier edit replaced (old names and IDs)."""
    for path, ds in run_a.outputs.items():
        for where, _ in element_texts(ds):
            assert "(0400,0561)" not in where and "(0400,0550)" not in where, f"{path.name} {where}"


def test_contributing_equipment_carries_no_names(run_a: Run, scanner: LeakScanner) -> None:
    leaks = [f"{p.name} {w}: {h}" for p, ds in run_a.outputs.items() for w, t in element_texts(ds)
             if w.startswith("(0018,A001)") for h in scanner.scan_text(t)]
    assert not leaks, _fmt(leaks)


def test_icon_image_and_trailing_padding_removed(run_a: Run) -> None:
    for path, ds in run_a.outputs.items():
        assert "IconImageSequence" not in ds, path.name
        assert 0xFFFCFFFC not in ds, path.name


def test_deflated_input_output_is_clean(corpus: CorpusManifest, run_a: Run, scanner: LeakScanner) -> None:
    (f, path, ds), = _outputs_of(corpus, run_a, lambda f: "CT_deflated" in f.path)
    assert not scanner.scan_bytes(dataset_bytes(path)), scanner.scan_bytes(dataset_bytes(path))
    assert not [h for _, t in element_texts(ds) for h in scanner.scan_text(t)]


def test_implicit_vr_private_elements_removed(corpus: CorpusManifest, run_a: Run) -> None:
    """Private elements of an Implicit VR file are read back as UN: still private, still removed."""
    outs = _outputs_of(corpus, run_a, lambda f: f.implicit_vr)
    assert len(outs) == 3
    for f, path, ds in outs:
        assert not [e.tag for e in ds.iterall() if e.tag.is_private], f.path


@pytest.mark.parametrize("needle", ["Yamada", "山田", "太郎", "やまだ", "王", "小東", "Διονύσιος", "Müller", "Jürgen"])
def test_multibyte_and_latin1_names_removed(run_a: Run, needle: str) -> None:
    for path, ds in run_a.outputs.items():
        for where, text in element_texts(ds):
            assert needle.casefold() not in text.casefold(), f"{path.name} {where}: {text!r}"


# ------------------------------------------------------------------------------------------------
# keep= options: each retains only its own category; everything else still goes
# ------------------------------------------------------------------------------------------------
#: element keywords each option may keep (K) or rewrite (C) according to PS3.15 2024e Table E.1-1,
#: restricted to the keywords the corpus plants.
RETAINED: dict[str, tuple[str, ...]] = {
    "safe-private": (),
    "clean-descriptors": (),
    "clean-structured-content": (),
    "clean-graphics": (),
    "uids": ("FrameOfReferenceUID", "MediaStorageSOPInstanceUID", "ReferencedSOPInstanceUID", "SeriesInstanceUID",
             "SOPInstanceUID", "StudyInstanceUID"),
    "device": ("DeviceSerialNumber", "StationName"),
    "institution": ("InstitutionAddress", "InstitutionalDepartmentName", "InstitutionName", "SourceOfPreviousValues"),
    "patient-characteristics": ("EthnicGroup", "PatientAge", "PatientSex", "PatientSize", "PatientWeight"),
    "full-dates": ("AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "AttributeModificationDateTime",
                   "ContentDate", "ContentTime", "ContributionDateTime", "DateTime", "FrameAcquisitionDateTime",
                   "FrameReferenceDateTime", "InstanceCreationDate", "InstanceCreationTime",
                   "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "SeriesDate", "SeriesTime",
                   "StudyDate", "StudyTime"),
    # dates are shifted (C), so original dates must still not appear; only times may stay
    "modified-dates": ("AcquisitionTime", "ContentTime", "InstanceCreationTime", "PerformedProcedureStepStartTime",
                       "SeriesTime", "StudyTime"),
}


def _allowed_tokens(corpus: CorpusManifest, option: str) -> set[str]:
    allowed: set[str] = set()
    keep = set(RETAINED[option])
    for p in corpus.planted:
        if p.kind == "invalid":  # a name in a date/age/weight element is never a retained date/age/weight
            continue
        last = re.sub(r"\[\d+\]$", "", p.element.split(".")[-1])
        if last in keep:
            allowed |= tokens_for(p.value, p.kind)
    return allowed


@pytest.mark.parametrize("option", sorted(RETAINED))
def test_keep_option_retains_only_its_category(corpus: CorpusManifest, tmp_path: Path, option: str) -> None:
    assert option in anon_pkg.OPTIONS
    run = _run_api(corpus.root, tmp_path / "out", key=KEY_A, keep=[option])
    assert len(run.outputs) == len(corpus.files) - 1
    allowed = _allowed_tokens(corpus, option)
    scanner = LeakScanner(corpus.tokens() - allowed)
    if option == "clean-graphics":
        # overlay bitmaps and curve samples are kept under clean-graphics (their *rendering* is the user's
        # responsibility, like burned-in pixels): drop them before scanning; their text attributes still count
        for ds in run.outputs.values():
            for elem in list(ds):
                if elem.tag.group & 0xFF00 in (0x5000, 0x6000) and elem.tag.element == 0x3000:
                    del ds[elem.tag]
    leaks = _leaks_in_outputs(run, scanner)
    for path in run.outputs:
        ds = run.outputs[path]
        raw = dataset_bytes(path).replace(bytes(ds.PixelData), b"")
        if option == "clean-graphics":
            for elem in pydicom.dcmread(path):
                if elem.tag.group & 0xFF00 in (0x5000, 0x6000) and elem.tag.element == 0x3000:
                    raw = raw.replace(bytes(elem.value), b"")
        leaks += [f"{path.name} bytes: {h!r}" for h in scanner.scan_bytes(raw)]
        leaks += [f"path {h}" for h in scanner.scan_path(path.relative_to(run.dst))]
    assert not leaks, _fmt(leaks)
    assert not scanner.scan_text(_strip_paths(run.console, _report_paths(run.report), run.src))


# ------------------------------------------------------------------------------------------------
# Non-image objects: structured report, encapsulated PDF, DICOMDIR
# ------------------------------------------------------------------------------------------------
def test_documents_and_dicomdir_carry_no_phi(tmp_path: Path) -> None:
    """SR ContentSequence and EncapsulatedDocument are D in PS3.15; a DICOMDIR lists names and paths."""
    docs = make_document_corpus(tmp_path / "media")
    scanner = LeakScanner(docs.tokens())
    run = _run_api(docs.root, tmp_path / "out", key=KEY_A)
    refused = {o.source.name for o in run.report.refused}
    assert any(str(ds.get("Modality", "")) == "CT" for ds in run.outputs.values()), "the CT slice was not written"
    leaks = _leaks_in_outputs(run, scanner)
    for path, ds in run.outputs.items():
        leaks += [f"{path.name} bytes: {h!r}" for h in scanner.scan_bytes(dataset_bytes(path))]
        leaks += [f"path {h}" for h in scanner.scan_path(path.relative_to(run.dst))]
        if ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1":
            assert b"7734291" not in bytes(ds.get("EncapsulatedDocument", b"")), "PDF copied with the MRN inside"
    assert not leaks, _fmt(leaks)
    pdf_written = any(ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
                      for ds in run.outputs.values())
    assert pdf_written or "report_Doe.dcm" in refused
    assert not scanner.scan_text(_strip_paths(run.console, _report_paths(run.report), run.src))


# ------------------------------------------------------------------------------------------------
# Retained-by-design elements holding the patient's own identifiers (defence in depth)
# ------------------------------------------------------------------------------------------------
def _siemens_mr(corpus: CorpusManifest) -> pydicom.Dataset:
    f = next(f for f in corpus.files if "Doe" in f.path and not (f.burned_in or f.multiframe))
    ds = pydicom.dcmread(corpus.root / f.path)
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x00191008, "CS", "DOE JOHN")          # ImagingMode: a code string, here the patient's name
    ds.add_new(0x0019100C, "IS", "1000")              # B_value: safe and valid, must survive with safe-private
    ds.add_new(0x00191028, "FD", 30.0)                # BandwidthPerPixelPhaseEncode
    ds.add_new(0x0019100A, "US", 1)
    return ds


def test_safe_private_keeps_safe_values(corpus: CorpusManifest) -> None:
    out = anonymize_dataset(_siemens_mr(corpus), key=KEY_A, keep=["safe-private"])
    block = out.private_block(0x0019, "SIEMENS MR HEADER")
    assert str(block[0x0C].value) == "1000", "a safe private value was dropped under safe-private"


def test_safe_private_element_holding_the_patients_name_is_dropped(corpus: CorpusManifest,
                                                                  scanner: LeakScanner) -> None:
    """A 'safe' private element is safe by its definition, not by its content: check the content too."""
    ds = _siemens_mr(corpus)
    block = ds.private_block(0x0019, "SIEMENS MR HEADER")
    block.add_new(0x0C, "IS", "7734291")              # B_value holding the MRN: valid IS syntax
    out = anonymize_dataset(ds, key=KEY_A, keep=["safe-private"])
    leaks = [f"{w}: {h}" for w, t in element_texts(out) for h in scanner.scan_text(t)]
    assert not leaks, _fmt(leaks)


def test_cli_key_from_environment_is_never_printed(tmp_path: Path) -> None:
    docs = make_document_corpus(tmp_path / "media")
    secret = "env-secret-key-7f3a9c0e5b2d41e8"
    env = {**os.environ, "COLUMNS": "400", "MEDCONVERT_KEY": secret, "MEDCONVERT_DEBUG": ""}
    env.pop("MEDCONVERT_KEY_FILE", None)
    audit = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, "-m", "convert", "anonymize", str(docs.root), str(tmp_path / "out"),
                           "--audit", str(audit)], capture_output=True, text=True, env=env, timeout=300)
    assert secret not in proc.stdout + proc.stderr
    assert secret.encode() not in audit.read_bytes()
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes()
    assert "random key" not in (proc.stdout + proc.stderr).lower(), "MEDCONVERT_KEY was ignored"


def test_single_file_in_single_file_out(corpus: CorpusManifest, scanner: LeakScanner, tmp_path: Path) -> None:
    f = next(f for f in corpus.files if f.encapsulated)
    out = tmp_path / "one.dcm"
    report = anonymize(corpus.root / f.path, out, key=KEY_A)
    assert [Path(p) for p in report.written] == [out]
    ds = pydicom.dcmread(out)
    assert hashlib.sha256(bytes(ds.PixelData)).hexdigest() == f.pixel_sha256
    assert not [h for _, t in element_texts(ds) for h in scanner.scan_text(t)]
    assert not scanner.scan_bytes(dataset_bytes(out).replace(bytes(ds.PixelData), b""))
    from convert.errors import ConvertError

    with pytest.raises(ConvertError):  # an existing output file is never overwritten silently
        anonymize(corpus.root / f.path, out, key=KEY_A)


# ------------------------------------------------------------------------------------------------
# Real scanner data (../shared/conformance): tokens derived from each input's own identifying elements
# ------------------------------------------------------------------------------------------------
#: Placeholders that already-de-identified archives carry; finding them again is not a leak.
_PLACEHOLDERS = {"anonymous", "anonymized", "anonymised", "removed", "unknown", "none", "deidentified",
                 "de-identified", "yes", "no"}
_SCRUBBER_TAGS = {0x00120062, 0x00120063, 0x00120064, 0x00280303, 0x00120065}


def _table_tags() -> set[int]:
    """Plain tags of PS3.15 Table E.1-1 from the keyword table of the property test (text VRs, not K)."""
    from test_anonymize_property import TABLE_TEXT_ATTRIBUTES
    from pydicom.datadict import tag_for_keyword

    return {tag_for_keyword(kw) for kws in TABLE_TEXT_ATTRIBUTES.values() for kw in kws}


def _identifying_tokens(paths: list[Path]) -> set[str]:
    """Tokens from the values of every identifying (table) element of the inputs, minus kept text."""
    table = _table_tags()
    kinds = {"PN": "name", "DA": "date", "DT": "datetime", "UI": "uid", "TM": "time"}
    tokens: set[str] = set()
    kept_text: list[str] = []

    def walk(ds: pydicom.Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    walk(item)
                continue
            if elem.tag.is_private or elem.VR in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
                continue
            values = elem.value if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue" \
                else [elem.value]
            texts = [str(v).strip() for v in values if v is not None and str(v).strip()]
            if int(elem.tag) in table:
                for text in texts:
                    kind = kinds.get(elem.VR, "text")
                    if kind == "uid" and text.startswith("1.2.840.10008."):
                        continue  # well-known standard UIDs are not identifying
                    if kind == "time" and len(text) < 8:
                        continue
                    tokens.update(t for t in tokens_for(text, kind) if len(t) >= 4)
            else:
                kept_text.extend(texts)

    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        walk(ds)
        walk(ds.file_meta)
    kept = "\n".join(kept_text).casefold()
    return {t for t in tokens if t.casefold() not in kept and t.casefold() not in _PLACEHOLDERS}


@pytest.mark.conformance
@pytest.mark.filterwarnings("ignore:The value length")  # dcm_qa_deident's own CodeValue is too long for SH
@pytest.mark.parametrize("name", ["dcm_qa_ct", "dcm_qa_ts", "dcm_qa_12bit", "dcm_qa_enh", "dcm_qa_nih",
                                  "dcm_qa_deident"])
def test_real_scanner_data_leaks_nothing(name: str, tmp_path: Path) -> None:
    """Real archives: every identifying value of the input is gone; written pixel data is bit-identical."""
    from conftest import conformance_dir

    root = conformance_dir(name) / "In"
    candidates = sorted(p for p in root.rglob("*") if p.is_file())
    dicoms = [p for p in candidates if p.read_bytes()[128:132] == b"DICM"][:30]
    assert dicoms
    src = tmp_path / "src"
    for p in dicoms:
        target = src / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, target)
    tokens = _identifying_tokens(dicoms)
    assert tokens, "no identifying values found in the inputs"
    scanner = LeakScanner(tokens)
    run = _run_api(src, tmp_path / "out", key=KEY_A)
    assert run.outputs, run.report.failed
    assert len(run.outputs) + len(run.report.refused) + len(run.report.failed) == len(dicoms)
    in_pixels = {}
    for p in dicoms:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p)
        if "PixelData" in ds:
            in_pixels[hashlib.sha256(bytes(ds.PixelData)).hexdigest()] = p
    leaks = []
    for path, ds in run.outputs.items():
        if "PixelData" in ds:
            assert hashlib.sha256(bytes(ds.PixelData)).hexdigest() in in_pixels, f"{path.name}: pixels changed"
        for where, text in element_texts(ds):
            if any(where.startswith(f"({t >> 16:04X},{t & 0xFFFF:04X})") for t in _SCRUBBER_TAGS):
                continue
            leaks += [f"{path.name} {where}: {h!r} in {text[:60]!r}" for h in scanner.scan_text(text)]
        leaks += [f"path {h}" for h in scanner.scan_path(path.relative_to(run.dst))]
    assert not leaks, _fmt(leaks)
    assert not scanner.scan_text(_strip_paths(run.console, _report_paths(run.report), run.src))


def test_phi_nested_a_hundred_sequences_deep_is_removed(corpus: CorpusManifest) -> None:
    """Recursion has no depth limit: a name 100 items down inside kept functional-group sequences."""
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(corpus.root / corpus.files[0].path)
    cur = ds
    for depth in range(100):
        item = pydicom.Dataset()
        setattr(cur, "SharedFunctionalGroupsSequence" if depth % 2 == 0 else "PlaneOrientationSequence",
                Sequence([item]))
        cur = item
    cur.PatientName = "Deepname^Zyxw"
    cur.OtherPatientIDs = "DEEP7734291"
    cur.add_new(0x00090010, "LO", "ACME 1.0")
    cur.add_new(0x00091001, "LO", "private Deepname")
    out = anonymize_dataset(ds, key=KEY_A)
    raw = _serialized(out)
    assert b"Deepname" not in raw and b"DEEP7734291" not in raw
