"""convert/report.py and convert/batch/report.py: the one run report of conversions and de-identifications:
report.json (fields, totals), report.html (self-contained, escaped),
thumbnails (decode, show the middle slice, read one slice of a lazy volume), no PHI in the report of
an anonymized run, atomic writes."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convert.batch import convert_dicom_tree
from convert.batch.naming import DEFAULT_ANONYMIZED_NAME
from convert.batch.report import (ANONYMIZED_SOURCE, REPORT_SCHEMA, Report, SeriesOutcome, THUMBNAIL_FOLDER,
                                  outcome_status, report_document, report_html, thumbnail_png, thumbnail_path,
                                  write_report, write_thumbnail)
from convert.errors import ConvertError, OutputWriteError, UnsupportedDataError
from convert.proxy import SliceProxy
from convert.volume import RGB_DTYPE, Meta, Volume
from fixtures.make_archive import NON_DICOM_NAME, make_archive
from fixtures.phi_corpus import LeakScanner

KEY = b"test-key-for-the-run-report"
START = datetime(2026, 12, 4, 3, 0, 0, tzinfo=timezone.utc)

SERIES_KEYS = {"label", "status", "error", "warnings", "outputs", "thumbnail", "seconds", "files", "info"}


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def lead_run(src: Path, out: Path, deidentify=None) -> Report:
    """The report of a batch run (convert_dicom_tree: index rows, the de-identified ones when anonymizing,
    a thumbnail of each first output, statuses), with fixed timings so documents compare."""
    name = DEFAULT_ANONYMIZED_NAME if deidentify is not None else "{SeriesNumber}_{SeriesDescription}"
    report = convert_dicom_tree(src, out, deidentify=deidentify, name=name)
    for n, outcome in enumerate(report.outcomes):
        outcome.seconds = 0.25 + n
    report.started, report.finished, report.seconds = START, START + timedelta(seconds=12.5), None
    return report


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive") / "PACS_export")


@pytest.fixture(scope="module")
def plain(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    report = lead_run(archive.root, out)
    return report, out, write_report(report, out, anonymized=False)


@pytest.fixture(scope="module")
def anonymized(archive, tmp_path_factory):
    from convert.anonymize import Scrubber

    scrubber = Scrubber(KEY)
    out = tmp_path_factory.mktemp("anon")
    report = lead_run(archive.root, out, deidentify=lambda ds: scrubber.scrub(ds).dataset)
    return report, out, write_report(report, out, anonymized=True)


# --------------------------------------------------------------------------- report.json
def test_json_fields_and_totals(archive, plain):
    report, out, (json_path, html_path) = plain
    assert (json_path.name, html_path.name) == ("report.json", "report.html") and json_path.parent == out
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc == json.loads(json.dumps(report_document(report, anonymized=False)))
    assert doc["schema"] == REPORT_SCHEMA and doc["tool"] == "medconvert" and doc["version"]
    assert doc["source"] == archive.root.as_posix() and doc["anonymized"] is False
    assert (doc["started"], doc["finished"], doc["seconds"], doc["jobs"]) == (
        "2026-12-04T03:00:00Z", "2026-12-04T03:00:12Z", 12.5, 2)
    expected = archive.expected()
    totals = doc["totals"]
    assert totals["series"] == len(expected) == len(doc["series"])
    assert totals["converted"] == len(archive.converted()) and totals["failed"] == len(archive.failed())
    assert totals["done"] == 0 and totals["duplicates"] == 0
    assert totals["files"] == sum(len(o.files) for o in report.outcomes) == sum(s["files"] for s in doc["series"])
    assert totals["outputs"] == len(report.written) == sum(len(s["outputs"]) for s in doc["series"])
    assert totals["skipped"] == len(report.skipped) == sum(e["count"] for e in doc["skipped"])
    skipped_paths = [p for e in doc["skipped"] for p in e["paths"]]
    assert archive.non_dicom.relative_to(archive.root).as_posix() in skipped_paths
    for entry in doc["series"]:
        assert set(entry) == SERIES_KEYS
        assert entry["info"]["modality"] in ("CT", "MR") and entry["info"]["files"] == entry["files"]
        for rel in entry["outputs"] + ([entry["thumbnail"]] if entry["thumbnail"] else []):
            assert not Path(rel).is_absolute() and (out / rel).is_file()
    by_description = {s["info"]["series_description"]: s for s in doc["series"]}
    for series in expected:
        entry = by_description[series.description]
        assert entry["status"] == series.outcome
        if series.outcome == "failed":
            assert series.reason in entry["error"] and not entry["outputs"] and entry["thumbnail"] is None
        else:
            assert entry["error"] is None and entry["outputs"][0].endswith(".nii.gz")
            assert entry["thumbnail"] == f"{THUMBNAIL_FOLDER}/{_stem(Path(entry['outputs'][0]))}.png"
            assert entry["info"]["slices"] == series.slices


def test_status_rules_and_defaults(tmp_path):
    assert outcome_status(SeriesOutcome("a", [])) == "converted"
    assert outcome_status(SeriesOutcome("a", [], status="done")) == "done"
    assert outcome_status(SeriesOutcome("a", [], error="boom", status="converted")) == "failed"
    assert outcome_status(SeriesOutcome("a", [], status="failed")) == "failed"
    report = Report(source=tmp_path)  # the old constructor still works
    doc = report_document(report, anonymized=False)
    assert doc["series"] == [] and doc["skipped"] == [] and doc["started"] is None and doc["seconds"] is None
    assert doc["totals"] == {"series": 0, "converted": 0, "done": 0, "failed": 0, "files": 0, "outputs": 0,
                             "skipped": 0, "duplicates": 0}
    naive = Report(source=tmp_path, started=datetime(2026, 1, 2, 3, 4, 5), finished=datetime(2026, 1, 2, 3, 5, 5),
                   outcomes=[SeriesOutcome("x", [], status="failed"), SeriesOutcome("y", [], status="done")])
    doc = report_document(naive, anonymized=False)
    assert doc["started"] == "2026-01-02T03:04:05Z" and doc["seconds"] == 60.0
    assert doc["series"][0]["error"] and (doc["totals"]["failed"], doc["totals"]["done"]) == (1, 1)
    odd = Report(source=tmp_path, outcomes=[SeriesOutcome("z", [], info={"a": np.float32(1.5), "b": float("nan"),
                                                                         "c": Path("p/q"), "d": (np.int64(3),)})])
    assert report_document(odd, anonymized=False)["series"][0]["info"] == {"a": 1.5, "b": None, "c": "p/q", "d": [3]}


# --------------------------------------------------------------------------- report.html
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    parser.close()
    return parser


HOSTILE = '<script>alert("x")</script>'


def test_html_escapes_every_value(tmp_path):
    (tmp_path / "thumbnails").mkdir()
    evil_name = 'a"><img src=x onerror=alert(1)>.nii.gz'
    outcome = SeriesOutcome(label=f"#1 {HOSTILE} 4x4x4", files=[tmp_path / "in" / "x.dcm"],
                            written=[tmp_path / evil_name], warnings=[f"warn {HOSTILE} & <b>"],
                            thumbnail=tmp_path / "thumbnails" / "t'\"<x>.png",
                            info={"modality": "<i>CT</i>", "series_description": HOSTILE, "columns": 4, "rows": 4,
                                  "slices": 4, "spacing_i_mm": 1.0, "spacing_j_mm": 1.0, "spacing_k_mm": 2.0})
    failed = SeriesOutcome(label="#2 <svg onload=alert(2)>", files=[], error=f"it failed: {HOSTILE}")
    report = Report(source=Path(f"/data/{HOSTILE}"), outcomes=[outcome, failed], out_dir=tmp_path,
                    skipped=[(tmp_path / "in" / "<b>bad</b>.txt", f"not DICOM {HOSTILE}")])
    text = report_html(report_document(report, anonymized=False))
    parsed = _parse(text)
    tags = {tag for tag, _ in parsed.tags}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "dl", "dt", "dd", "div",
                    "span", "b", "section", "input", "label", "table", "thead", "tbody", "tr", "th", "td", "ul",
                    "li", "a", "img", "details", "summary", "p"}
    assert "script" not in tags and "svg" not in tags and "i" not in tags
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == 1 and images[0]["src"] == "thumbnails/t%27%22%3Cx%3E.png"
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert links == ["a%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.nii.gz"]
    data = "".join(parsed.text)
    for shown in (HOSTILE, "<svg onload=alert(2)>", "<i>CT</i>", "warn " + HOSTILE + " & <b>", "<b>bad</b>.txt",
                  evil_name, "it failed: " + HOSTILE, f"/data/{HOSTILE}"):
        assert shown in data  # shown as text, never as markup
    assert "<script>" not in text and "<svg" not in text


def test_html_is_self_contained_and_failed_first(plain):
    report, out, (_, html_path) = plain
    text = html_path.read_text(encoding="utf-8")
    parsed = _parse(text)
    assert not re.search(r"https?://|//[a-z]", text, re.I)  # nothing fetched from the network
    assert not {tag for tag, _ in parsed.tags} & {"script", "link", "iframe", "object", "embed"}
    images = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == len([o for o in report.outcomes if o.thumbnail]) > 0
    assert all((out / src).is_file() for src in images)
    statuses = [attrs["class"] for tag, attrs in parsed.tags if tag == "tr" and attrs.get("class")]
    assert statuses == sorted(statuses, key=lambda s: s != "failed") and statuses[0] == "failed"
    assert statuses.count("failed") == len(report.failed)
    data = " ".join(parsed.text)
    assert NON_DICOM_NAME in data and "missing" in data and "truncated" in data
    assert 'id="only-failed"' in text and "#only-failed:checked" in text  # the CSS-only filter


# --------------------------------------------------------------------------- thumbnails
def _quadrant_volume(lazy: bool = False, times: int = 1) -> tuple[Volume, list[int]]:
    """64x48x9 int16, LPS axes (i -> L, j -> P, k -> S): the middle slice (k = 4) bright in its
    i < 32, j < 24 quadrant, every other slice bright in the opposite quadrant; later volumes dark."""
    data = np.zeros((64, 48, 9, times), dtype=np.int16)
    data[32:, 24:, :, 0] = 1000
    data[:, :, 4, 0] = 0
    data[:32, :24, 4, 0] = 1000
    data = data[..., 0] if times == 1 else data
    reads: list[int] = []
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])  # RAS+: i towards L, j towards P
    if not lazy:
        return Volume(data, affine), reads

    def read(k: int, t: int) -> np.ndarray:
        reads.append(k)
        return data[:, :, k] if data.ndim == 3 else data[:, :, k, t]

    return Volume(SliceProxy(data.shape, data.dtype, read), affine, meta=Meta(modality="CT")), reads


@pytest.mark.parametrize("lazy", [False, True])
def test_thumbnail_shows_the_middle_slice(lazy):
    volume, reads = _quadrant_volume(lazy)
    png = thumbnail_png(volume, max_size=64)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and max(image.size) <= 64 and image.size[0] > 16 and image.size[1] > 16
    pixels = np.asarray(image.convert("L"), dtype=float)
    h, w = pixels.shape
    # axial, radiological: patient right (i = 0, as i runs towards L) on image left, anterior (j = 0) up
    top_left, bottom_right = pixels[: h // 2 - 2, : w // 2 - 2].mean(), pixels[h // 2 + 2:, w // 2 + 2:].mean()
    assert top_left > 200 and bottom_right < 50
    assert w / h == pytest.approx(64 / 48, rel=0.1)  # physical proportions (1 mm pixels)
    if lazy:
        assert set(reads) == {4}  # only the slice it shows was read


def test_thumbnail_of_4d_shows_first_volume_and_sagittal_stack():
    volume, _ = _quadrant_volume(times=3)
    pixels = np.asarray(Image.open(io.BytesIO(thumbnail_png(volume, 64))), dtype=float)
    assert pixels.max() > 200
    # i towards P, j towards I, k along x (5 sagittal slices)
    sagittal = Volume(np.zeros((40, 30, 5), dtype=np.int16), np.array(
        [[0, 0, 1.5, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float))
    data = sagittal.voxels().copy()
    data[:, :15, 2] = 500  # middle slice, j < 15: its superior half
    image = Image.open(io.BytesIO(thumbnail_png(sagittal.replace(array=data), 80)))
    pixels = np.asarray(image, dtype=float)
    assert image.size[0] > 16 and image.size[1] > 16  # the sagittal panel, not a one-pixel line
    h = pixels.shape[0]
    assert pixels[: h // 2 - 2].mean() > 200 and pixels[h // 2 + 2:].mean() < 50  # superior up


def test_thumbnail_refusals_and_writer(tmp_path):
    colour = Volume(np.zeros((4, 4, 3), dtype=RGB_DTYPE), np.eye(4))
    with pytest.raises(UnsupportedDataError):
        thumbnail_png(colour)
    assert write_thumbnail(colour, tmp_path, "c") is None
    with pytest.raises(UnsupportedDataError):
        thumbnail_png(_quadrant_volume()[0], max_size=2)
    volume, _ = _quadrant_volume()
    path = write_thumbnail(volume, tmp_path, "2_CT_Head")
    assert path == thumbnail_path(tmp_path, "2_CT_Head") == tmp_path / ".medconvert" / "thumbnails" / "2_CT_Head.png"
    first = path.read_bytes()
    assert write_thumbnail(volume, tmp_path, "2_CT_Head") == path and path.read_bytes() == first  # redone in place
    assert [p.name for p in path.parent.iterdir()] == ["2_CT_Head.png"]


# --------------------------------------------------------------------------- PHI
def test_anonymized_report_holds_no_phi(archive, anonymized, plain):
    scanner = LeakScanner(archive.tokens())
    _, _, plain_files = plain
    assert all(scanner.scan_text(p.read_text(encoding="utf-8")) for p in plain_files)  # the scan can see them
    report, out, files = anonymized
    assert [o.label for o in report.outcomes] and all(o.info for o in report.outcomes)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert scanner.scan_text(text) == [], path.name
        assert scanner.scan_bytes(path.read_bytes()) == [], path.name
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    assert doc["source"] == ANONYMIZED_SOURCE and doc["anonymized"] is True
    assert doc["skipped"] and all(e["paths"] == [] for e in doc["skipped"]) and doc["totals"]["skipped"] >= 1
    assert doc["totals"]["converted"] == len(archive.converted()) and doc["totals"]["failed"] == len(archive.failed())
    for entry in doc["series"]:
        assert entry["status"] != "failed" or "<input file>" in entry["error"] or "missing" in entry["error"]
        for rel in entry["outputs"] + ([entry["thumbnail"]] if entry["thumbnail"] else []):
            assert scanner.scan_path(rel) == [] and (out / rel).is_file()


def test_anonymized_document_redacts_input_paths_the_caller_left(tmp_path):
    src = tmp_path / "Doe_John_7734291"
    files = [src / "CT" / "IM_0001_Doe.dcm", src / "CT" / "IM_0002_Doe.dcm"]
    outcome = SeriesOutcome(label="#2 64x64x2", files=files, error=f"{files[0]}: truncated (see IM_0002_Doe.dcm)",
                            warnings=[f"gap after CT/IM_0001_Doe.dcm in {src}"],
                            info={"problem": f"{files[1]} unreadable", "modality": "CT"})
    report = Report(source=src, outcomes=[outcome], skipped=[(src / "notes_Doe.txt", f"{src / 'notes_Doe.txt'}: "
                                                                                       "not DICOM")])
    text = json.dumps(report_document(report, anonymized=True))
    assert "Doe" not in text and "7734291" not in text
    assert "<input file>: truncated (see <input file>)" in text and "<input folder>" in text
    assert "Doe" in json.dumps(report_document(report, anonymized=False))


def _refuse(ds):
    raise ConvertError("burned-in text")


# --------------------------------------------------------------------------- atomic writes
def test_write_report_is_atomic_and_replaces(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    report = Report(source=tmp_path / "in", outcomes=[SeriesOutcome("#1 4x4x4", [], written=[out / "a.nii.gz"])])
    json_path, html_path = write_report(report, out, anonymized=False)
    assert json.loads(json_path.read_text())["series"][0]["outputs"] == ["a.nii.gz"]  # relative to OUT_DIR
    old_html = html_path.read_bytes()
    report.outcomes.append(SeriesOutcome("#2 4x4x4", [], error="bad"))

    import convert.report as module  # the writer of both kinds of run report

    def broken(document):
        raise RuntimeError("disk full halfway")

    monkeypatch.setattr(module, "report_html", broken)
    with pytest.raises(RuntimeError):
        write_report(report, out, anonymized=False)
    assert html_path.read_bytes() == old_html  # the earlier file stands, whole
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]  # no temporaries left
    monkeypatch.undo()
    write_report(report, out, anonymized=False)  # a rerun replaces both
    assert json.loads(json_path.read_text())["totals"]["failed"] == 1 and b"bad" in html_path.read_bytes()
    with pytest.raises(OutputWriteError, match="does not exist"):
        write_report(report, tmp_path / "missing", anonymized=False)


# --------------------------------------------------------------------------- docs
def test_docs_example_runs(tmp_path, monkeypatch):
    from tests.conftest import REPO

    text = (REPO / "docs" / "batch.md").read_text(encoding="utf-8")
    section = text.split("## Report", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/batch.md", "exec"), namespace)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["totals"]["failed"] >= 1 and doc["totals"]["converted"] >= 1 and (tmp_path / "out" / "report.html").is_file()


def test_failed_series_message_of_a_deidentified_run_has_no_header_text(tmp_path):
    from convert.anonymize import Scrubber
    from fixtures.dicom_series import make_series

    scrubber = Scrubber(KEY)
    make_series(tmp_path / "in", slices=6, skip=(3,), description="Chest Kowalski")  # a gap: the series fails
    report = lead_run(tmp_path / "in", tmp_path / "out", deidentify=lambda ds: scrubber.scrub(ds).dataset)
    assert report.failed
    text = json.dumps(report_document(report, anonymized=True))
    assert "Kowalski" not in text


# --------------------------------------------------------------------------- one type for both kinds of run
def _anonymize_report(src: Path, out: Path) -> Report:
    """The report a de-identification builds (record_file, in input order): every status once."""
    from convert.anonymize.audit import FileLog, record_file

    report = Report(source=src, kind="anonymize", key_source="file", out_dir=out, jobs=2, started=START,
                    finished=START + timedelta(seconds=3), stale_removed=[out / ".x.partial"])
    logs = [FileLog(src / "Doe" / "notes Doe.txt", status="non-dicom", message="not a DICOM file"),
            FileLog(src / "Doe" / "Doe_1.dcm", output=out / "P" / "S" / "R" / "1.dcm", removed=40, kept=70),
            FileLog(src / "Doe" / "Doe_2.dcm", output=out / "P" / "S" / "R" / "2.dcm", status="done"),
            FileLog(src / "Doe" / "Doe_us.dcm", output=out / "P" / "S" / "U" / "3.dcm", burned_in=True),
            FileLog(src / "Doe" / "Doe_us2.dcm", status="refused", message="may show burned-in text <b>"),
            FileLog(src / "Doe" / "Doe_cut.dcm", status="failed",
                    message=f"truncated: {src / 'Doe' / 'Doe_cut.dcm'} has 700 bytes"),
            FileLog(src / "Doe" / "copy" / "Doe_1.dcm", status="duplicate")]
    for log in logs:
        record_file(report, log)
    return report


def test_anonymize_runs_have_the_same_report_type_statuses_and_totals(tmp_path):
    import convert.anonymize

    src, out = tmp_path / "Doe_John", tmp_path / "out"
    report = _anonymize_report(src, out)
    assert convert.anonymize.Report is Report and all(type(o) is SeriesOutcome for o in report.outcomes)
    assert [outcome_status(o, "anonymize") for o in report.outcomes] == ["written", "done", "flagged", "refused",
                                                                         "failed"]
    assert [o.label for o in report.outcomes] == [f"input file {n}" for n in (2, 3, 4, 5, 6)]
    assert (len(report.written), len(report.done), len(report.outputs)) == (2, 1, 3)
    assert [o.label for o in report.failed] == ["input file 6"] and [o.label for o in report.refused] == [
        "input file 5"]
    assert report.flagged == [out / "P" / "S" / "U" / "3.dcm"] and not report.ok and not report.nothing_written
    assert report.summary() == ("2 file(s) de-identified, 1 already done by an earlier run (1 refused, 1 failed, "
                                "1 non-DICOM skipped, 1 duplicate(s) skipped, 1 flagged for burned-in text, "
                                "1 stale temporary file(s) of an interrupted run removed)")
    doc = report_document(report, anonymized=True)
    assert doc["kind"] == "anonymize" and "series" not in doc and len(doc["files"]) == 5
    assert doc["totals"] == {"files": 5, "written": 1, "done": 1, "flagged": 1, "refused": 1, "failed": 1,
                             "outputs": 3, "skipped": 1, "duplicates": 1}
    assert (doc["key_source"], doc["audit"], doc["stale_removed"], doc["jobs"]) == ("file", False, 1, 2)
    assert [f["outputs"] for f in doc["files"]][:3] == [["P/S/R/1.dcm"], ["P/S/R/2.dcm"], ["P/S/U/3.dcm"]]
    assert doc["files"][0]["info"] == {"removed": 40, "replaced": 0, "emptied": 0, "cleaned": 0, "kept": 70}
    assert doc["files"][2]["warnings"] and "burned-in" in doc["files"][2]["warnings"][0]
    assert doc["files"][4]["error"] == "truncated: <input file> has 700 bytes"
    assert set(doc["files"][0]) == SERIES_KEYS  # one entry layout for series and files
    text = json.dumps(doc) + report_html(doc)
    assert "Doe" not in text and str(tmp_path) not in text


def test_anonymize_page_shows_its_statuses_and_problems_first(tmp_path):
    report = _anonymize_report(tmp_path / "in", tmp_path / "out")
    (tmp_path / "out").mkdir()
    json_path, html_path = write_report(report, tmp_path / "out", anonymized=True)
    assert json.loads(json_path.read_text())["files"][3]["status"] == "refused"
    text = html_path.read_text(encoding="utf-8")
    parsed = _parse(text)
    assert "medconvert de-identification report" in text and "<b>" not in text.split("<style>")[0]
    statuses = [attrs["class"] for tag, attrs in parsed.tags if tag == "tr" and attrs.get("class")]
    assert statuses == ["failed", "refused", "flagged", "written", "done"]
    assert "<th>file</th>" in text and "<th>modality</th>" not in text and "<th>thumbnail</th>" not in text
    data = " ".join(parsed.text)
    assert "show only the 2 failed or refused files" in data and "may show burned-in text <b>" in data


def test_a_large_page_lists_only_what_is_not_simply_in_place(tmp_path, monkeypatch):
    import convert.report as module

    outcomes = [SeriesOutcome(f"input file {n}", [], written=[tmp_path / f"{n}.dcm"], status="written")
                for n in range(1, 6)]
    outcomes[3] = SeriesOutcome("input file 4", [], error="truncated", status="failed")
    document = report_document(Report(source=tmp_path, kind="anonymize", outcomes=outcomes, out_dir=tmp_path),
                               anonymized=True)
    assert len(_parse(report_html(document)).tags) > 0
    monkeypatch.setattr(module, "HTML_ROWS", 3)
    page = report_html(document)
    rows = [attrs["class"] for tag, attrs in _parse(page).tags if tag == "tr" and attrs.get("class")]
    assert rows == ["failed"] and "Files (1 of 5: the 4 in place without warnings are listed in report.json)" in page
    assert len(document["files"]) == 5  # the JSON keeps every one


def test_summary_of_a_conversion_counts_series(tmp_path):
    report = Report(source=tmp_path, outcomes=[SeriesOutcome("#1", [], written=[tmp_path / "a.nii.gz"]),
                                               SeriesOutcome("#2", [], written=[tmp_path / "b.nii.gz"], status="done"),
                                               SeriesOutcome("#3", [], error="gap", status="failed")],
                    skipped=[(tmp_path / "x.txt", "not DICOM")])
    assert report.summary() == ("1 series converted, 1 already done by an earlier run (1 series failed, "
                                "1 non-DICOM skipped)")
    assert report.written == report.outputs == [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]  # as before: all in place
    assert report.done == [tmp_path / "b.nii.gz"] and [o.label for o in report.failed] == ["#3"] and not report.refused
