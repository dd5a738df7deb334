"""What a run did, for both kinds of run: one :class:`Report` of :class:`Outcome` items, and its files.

A conversion of a DICOM folder or archive (:func:`convert.batch.run.convert_dicom_tree`) has one
outcome per series; a de-identification of a folder tree (:func:`convert.anonymize.run.anonymize_path`)
has one per DICOM input file. Both report the files left out (``skipped``, ``duplicates``), totals and
timings the same way, and write the same two files into the output folder: :func:`report_document`
(JSON-ready: ``report.json``) and :func:`report_html` (a self-contained ``report.html``), by
:func:`write_report`. The redaction of input paths from the texts of de-identified runs
(:func:`input_path_names`, :func:`redact_components`) lives here too; the series-specific helpers
(labels, header text) and the thumbnails are in :mod:`convert.batch.report`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

#: The kinds of run a :class:`Report` describes.
RUN_KINDS = ("convert", "anonymize")


@dataclass
class Outcome:
    """What happened to one item of a run: a series of a conversion, or an input file of a de-identification.

    Attributes:
        label: the item's name in reports: a series label (``#5 512x512x120`` when de-identified: no
            header text), or ``input file N`` for the N-th input file (from 1) of a de-identification, N
            counting every file of the input walk in its order, as the audit file's ``files`` list does.
        files: the item's input files (the one file of a de-identification).
        written: the item's outputs in place, image first: written by this run, or by an earlier run of the
            same job (``status == "done"``).
        error: why the item failed or was refused (None: its outputs are in place). For a de-identified
            file it names no input path (the input files are ``input file N``).
        warnings: what the user should know about the output (tilt, gaps, no gradient table...).
        status: a conversion: ``"converted"``, ``"done"`` (an earlier run of the same job wrote it:
            resumed, not redone) or ``"failed"`` (a dry run also ``"convert"``, ``"excluded"``,
            ``"refused"``); a de-identification: ``"written"``, ``"done"``, ``"refused"`` (the burned-in
            rule) or ``"failed"``.
        seconds: wall time of the item (0 for ``"done"``, and for the files of a de-identification, which
            are not timed one by one).
        thumbnail: a PNG preview of the first output volume (under the output folder), or None.
        info: a series: its index row (:func:`convert.batch.index.series_row`: modality, shape,
            spacing..., no patient fields); a de-identified file: its element counts (``removed``,
            ``replaced``, ``emptied``, ``cleaned``, ``kept``).
        flagged: the outputs are in place although they may show burned-in text (``allow_burned_in``).
    """

    label: str
    files: list[Path]
    written: list[Path] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    status: str = "converted"
    seconds: float = 0.0
    thumbnail: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    flagged: bool = False

    @property
    def ok(self) -> bool:
        """True when the item's outputs are in place (no error)."""
        return self.error is None

    @property
    def source(self) -> Path | None:
        """The first input file (the input file of a de-identification), or None."""
        return self.files[0] if self.files else None


#: The name the outcome of a series had before both kinds of run shared :class:`Outcome`.
SeriesOutcome = Outcome


@dataclass
class Report:
    """What a run did: one :class:`Outcome` per item, the input files left out, totals and timings.

    Attributes:
        source: the input folder, archive or file (None: not recorded).
        outcomes: one :class:`Outcome` per item, in input order: the series of a conversion (plan
            order), the DICOM files of a de-identification.
        skipped: ``(path, reason)`` of every input file that is not part of an item (not DICOM, a
            DICOMDIR...).
        duplicates: input files skipped as the same instance twice (same SOPInstanceUID, identical
            bytes), e.g. a DICOMDIR media copy.
        out_dir: the output folder (None: not known; :func:`write_report` fills it in).
        started, finished: UTC wall-clock times of the run (None: not recorded).
        seconds: wall time of the run (None: ``finished - started`` when both are known).
        jobs: how many jobs (worker processes) ran at once.
        kind: ``"convert"`` or ``"anonymize"`` (:data:`RUN_KINDS`).
        key_source: a de-identification: where the key came from (``"bytes"``, ``"file"``,
            ``"env ..."``, ``"random"``; never the key).
        audit: a de-identification: the audit file written, if any.
        stale_removed: temporary files of a killed earlier run removed from the output folder
            (:func:`convert.atomic.remove_stale_temporaries`).
        per_file: a de-identification: one :class:`convert.anonymize.audit.FileLog` per input file,
            skipped ones included (the rows of the audit file: they hold input paths, never shown in a
            report).
    """

    source: Path | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    out_dir: Path | None = None
    started: datetime | None = None
    finished: datetime | None = None
    seconds: float | None = None
    jobs: int = 1
    kind: str = "convert"
    key_source: str = ""
    audit: Path | None = None
    stale_removed: list[Path] = field(default_factory=list)
    per_file: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every item has its outputs in place; a run without items is never ok."""
        return all(o.ok for o in self.outcomes) and bool(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        """The items that failed (not the refused ones of a de-identification: :attr:`refused`)."""
        return [o for o in self.outcomes if not o.ok and not (self.kind == "anonymize" and o.status == "refused")]

    @property
    def refused(self) -> list[Outcome]:
        """The items refused by the burned-in rule (a de-identification; a dry run's refused series)."""
        return [o for o in self.outcomes if not o.ok and o.status == "refused"]

    @property
    def outputs(self) -> list[Path]:
        """Every output in place after the run: written by it or by an earlier run (``done``), in item order."""
        return [p for o in self.outcomes for p in o.written]

    @property
    def written(self) -> list[Path]:
        """The outputs of a de-identification written by this run; of a conversion, every output in place
        (:attr:`outputs`: a resumed series' files too, as the manifest lists them)."""
        if self.kind != "anonymize":
            return self.outputs
        return [p for o in self.outcomes if o.status != "done" for p in o.written]

    @property
    def done(self) -> list[Path]:
        """The outputs an earlier, interrupted run of the same job had already written (resumed)."""
        return [p for o in self.outcomes if o.status == "done" for p in o.written]

    @property
    def flagged(self) -> list[Path]:
        """Outputs in place that may show burned-in text (written with ``allow_burned_in``)."""
        return [p for o in self.outcomes if o.flagged for p in o.written]

    @property
    def nothing_written(self) -> bool:
        """True when no output is in place: nothing written by this run and nothing already done."""
        return not any(o.written for o in self.outcomes)

    @property
    def non_dicom(self) -> list[Path]:
        """The skipped input files (not DICOM, or a DICOMDIR)."""
        return [path for path, _ in self.skipped]

    @property
    def skipped_non_dicom(self) -> int:
        """How many input files were skipped (:attr:`non_dicom`)."""
        return len(self.skipped)

    def summary(self) -> str:
        """One line, no PHI: counts only. A resumed run also counts the outputs already done, and a
        de-identification that leaves no output in place says so first."""
        done = len(self.done) if self.kind == "anonymize" else sum(o.status == "done" for o in self.outcomes)
        if self.kind == "anonymize":
            text = "nothing de-identified" if self.nothing_written else f"{len(self.written)} file(s) de-identified"
            unit = ""
        else:
            text = f"{sum(o.ok and o.status not in ('done', 'excluded') for o in self.outcomes)} series converted"
            unit = " series"
        if done and not self.nothing_written:
            text += f", {done} already done by an earlier run"
        counts = ((len(self.refused), f"{unit} refused"), (len(self.failed), f"{unit} failed"),
                  (len(self.skipped), " non-DICOM skipped"), (len(self.duplicates), " duplicate(s) skipped"),
                  (len(self.flagged), " flagged for burned-in text"),
                  (len(self.stale_removed), " stale temporary file(s) of an interrupted run removed"))
        extra = [f"{n}{what}" for n, what in counts if n]
        return text + (f" ({', '.join(extra)})" if extra else "")


# --------------------------------------------------------------------------- redaction of input paths
def input_path_names(paths: Iterable[Path], src_dir: Path) -> dict[str, str]:
    """The replacements :func:`convert.batch.report.redact_series_paths` makes for input files ``paths``
    under ``src_dir``: each full path, relative path (of 2+ components) and file name (unless count-like)
    -> ``<input file>``, ``src_dir`` -> ``<input folder>``. For :func:`redact_components`."""
    names: dict[str, str] = {}
    prefix = os.path.join(str(src_dir), "")
    for path in paths:
        text = str(path)
        names.setdefault(text, "<input file>")
        if text.startswith(prefix):  # Path.relative_to's answer, without building Paths (thousands of files)
            relative: str | None = text[len(prefix):]
        else:
            try:
                relative = str(Path(path).relative_to(src_dir))
            except ValueError:
                relative = None
        if relative is not None and os.sep in relative:  # else it is the bare name, below
            names.setdefault(relative, "<input file>")
        name = os.path.basename(text)
        if not _is_count_like(name):
            names.setdefault(name, "<input file>")
    names.setdefault(str(src_dir), "<input folder>")
    names.pop("", None)
    names.pop(".", None)
    return names


def _is_count_like(name: str) -> bool:
    return name.isdigit() and len(name) <= 3

_BEFORE = r"(?:(?<=^)|(?<=[\s'\"(\[{<=/\\]))"

_AFTER = r"(?=$|[\s'\")\]}>/\\:,;]|\.(?![\w-]))"


def redact_components(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key of ``replacements`` replaced where it stands as whole path component(s).

    Longer keys win (a full path before its file name). See :func:`convert.batch.report.redact_series_paths` for
    what counts as a component boundary.
    """
    return _redact_all([text], replacements)[0]


def _redactor(replacements: dict[str, str]) -> Callable[[str], str]:
    """:func:`redact_components` with ``replacements`` compiled once, for many texts."""
    keys = sorted((k for k in replacements if k), key=len, reverse=True)
    if not keys:
        return lambda text: text
    pattern = re.compile(_BEFORE + "(" + "|".join(re.escape(k) for k in keys) + ")" + _AFTER)
    return lambda text: pattern.sub(lambda m: replacements[m.group(1)], text)


def _redact_all(texts: list[str], replacements: dict[str, str]) -> list[str]:
    """Each of ``texts`` through :func:`redact_components`. Only the keys that occur in the texts at all
    go into the pattern (a series of thousands of files gives a pattern of the few its messages name)."""
    present = {k: v for k, v in replacements.items() if k and any(k in text for text in texts)}
    if not present:
        return list(texts)
    redact = _redactor(present)
    return [redact(text) for text in texts]


# --------------------------------------------------------------------------- the run report
#: File names of the run report in the output folder.
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
#: Version of the ``report.json`` layout: raised when a field changes meaning or goes away.
REPORT_SCHEMA = 1
#: Placeholder for the input folder in the report of an anonymized run.
ANONYMIZED_SOURCE = "<input folder>"
#: The key of the list of items in ``report.json``, by kind of run.
ITEMS_KEY = {"convert": "series", "anonymize": "files"}
#: The statuses :func:`outcome_status` gives, by kind of run (the per-status keys of ``totals``).
STATUSES = {"convert": ("converted", "done", "failed"),
            "anonymize": ("written", "done", "flagged", "refused", "failed")}
#: Above this many items, ``report.html`` lists only those whose outputs are not simply in place
#: (failed, refused, flagged, with warnings); ``report.json`` lists them all.
HTML_ROWS = 1000


def outcome_status(outcome: Outcome, kind: str = "convert") -> str:
    """The status of ``outcome`` in a report of a ``kind`` run (one of :data:`STATUSES`).

    A conversion: ``"failed"`` (an error, whatever ``status`` says), ``"done"`` (resumed) or
    ``"converted"``. A de-identification: ``"refused"`` or ``"failed"`` (an error), ``"flagged"``
    (outputs in place that may show burned-in text, written now or earlier), ``"done"`` or
    ``"written"``.
    """
    if kind == "anonymize":
        if outcome.error is not None or outcome.status in ("failed", "refused"):
            return "refused" if outcome.status == "refused" else "failed"
        if outcome.flagged:
            return "flagged"
        return "done" if outcome.status == "done" else "written"
    if outcome.error is not None or outcome.status == "failed":
        return "failed"
    return "done" if outcome.status == "done" else "converted"


def _utc_iso(moment: datetime | None) -> str | None:
    """``2026-12-04T03:09:51Z`` (a naive time counts as UTC), or None."""
    if moment is None:
        return None
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _relative(path: Path, out_dir: Path | None) -> str:
    """``path`` relative to ``out_dir`` (POSIX separators); as given when there is no ``out_dir``."""
    if out_dir is not None:
        text, prefix = str(path), os.path.join(str(out_dir), "")
        if text.startswith(prefix) and len(text) > len(prefix):  # relative_to's answer without building Paths
            return text[len(prefix):].replace(os.sep, "/")
    path = Path(path)
    if out_dir is not None:
        try:
            return path.relative_to(out_dir).as_posix()
        except ValueError:
            with contextlib.suppress(ValueError):
                return Path(os.path.relpath(path, out_dir)).as_posix()
    return path.as_posix()


def _json_ready(value: Any) -> Any:
    """``value`` as JSON types: numbers (non-finite -> None), text, lists, dicts; anything else as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_ready(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return _json_ready(item())
    return str(value)


def _may_name(texts: list[str], paths: Iterable[Path], root: Path) -> bool:
    """False when no text holds ``root`` or the name of any of ``paths`` (so no path of theirs either:
    :func:`input_path_names` has nothing to replace)."""
    joined = "\n".join(texts)
    return str(root) in joined or any(os.path.basename(str(p)) in joined for p in paths)


def _holds_text(info: Any) -> bool:
    """True when ``info`` (a JSON-ready value) holds a string anywhere."""
    if isinstance(info, str):
        return True
    if isinstance(info, dict):
        return any(_holds_text(v) for v in info.values())
    return isinstance(info, list) and any(_holds_text(v) for v in info)


def _redact_info(info: Any, redact: Callable[[list[str]], list[str]]) -> Any:
    """Every string inside ``info`` (a JSON-ready value) passed through ``redact``."""
    if isinstance(info, str):
        return redact([info])[0]
    if isinstance(info, dict):
        return {k: _redact_info(v, redact) for k, v in info.items()}
    if isinstance(info, list):
        return [_redact_info(v, redact) for v in info]
    return info


def report_document(report: Report, *, anonymized: bool) -> dict[str, Any]:
    """The run report as JSON-ready data: what ``report.json`` holds (and ``report.html`` shows).

    Keys: ``schema`` (:data:`REPORT_SCHEMA`), ``tool``, ``version``, ``kind`` (``"convert"`` or
    ``"anonymize"``), ``source`` (the input path, or ``"<input folder>"`` when ``anonymized``),
    ``started``/``finished`` (UTC, ISO 8601 ``...Z``, or None), ``seconds`` (wall time), ``jobs``,
    ``anonymized``, ``totals``, the items (``series`` for a conversion, ``files`` for a
    de-identification: :data:`ITEMS_KEY`) and ``skipped`` (one dict per distinct reason: ``reason``,
    ``count``, ``paths``: input paths relative to the source, empty when ``anonymized``).

    ``totals``: a conversion: ``series``, ``converted``, ``done``, ``failed``, ``files`` (input files of
    the series), ``outputs``, ``skipped``, ``duplicates``; a de-identification: ``files`` (DICOM input
    files), ``written``, ``done``, ``flagged``, ``refused``, ``failed``, ``outputs``, ``skipped``,
    ``duplicates``. Each item: ``label``, ``status`` (:func:`outcome_status`), ``error``,
    ``warnings``, ``outputs`` and ``thumbnail`` (POSIX paths relative to ``report.out_dir``),
    ``seconds``, ``info`` (the index row, or a file's element counts, as given), ``files`` (how many
    input files). A de-identification also gives ``key_source`` (never the key), ``audit`` (whether
    an audit file was written; not its path) and ``stale_removed`` (a count).

    When ``anonymized``, no input path reaches the document: the source is a placeholder,
    skipped files are counted, not named, and every input path, relative path and file
    name of an item (and the source folder) is replaced in its label, error, warnings and
    info text, as :func:`convert.batch.report.redact_series_paths` does. Header text is not added
    here: labels, messages and ``info`` are taken as given, so the caller of an anonymized run passes
    the de-identified ones (:func:`convert.batch.report.deidentified_label`,
    :func:`convert.batch.report.redact_header_text`, rows of :data:`convert.batch.plan.ANONYMIZED_FIELDS`;
    a de-identification's outcomes are built without PHI).
    """
    from convert.version import __version__

    kind = report.kind if report.kind in RUN_KINDS else "convert"
    source = Path(report.source) if report.source is not None else Path(".")
    out_dir = Path(report.out_dir) if report.out_dir is not None else None
    items: list[dict[str, Any]] = []
    counts = dict.fromkeys(STATUSES[kind], 0)
    files = outputs = 0
    for outcome in report.outcomes:
        status = outcome_status(outcome, kind)
        counts[status] += 1
        files += len(outcome.files)
        outputs += len(outcome.written)
        error = outcome.error if outcome.error is not None or status not in ("failed", "refused") \
            else f"{status} (no reason given)"
        texts = [outcome.label, *(outcome.warnings)] + ([error] if error is not None else [])
        info = _json_ready(dict(outcome.info))
        if anonymized and (_may_name(texts, outcome.files, source) or _holds_text(info)):
            names = input_path_names(outcome.files, source)
            texts = _redact_all(texts, names)
            info = _redact_info(info, lambda t, names=names: _redact_all(t, names))
        label, warnings = texts[0], texts[1:1 + len(outcome.warnings)]
        items.append({
            "label": label, "status": status,
            "error": texts[-1] if error is not None else None,
            "warnings": warnings,
            "outputs": [_relative(p, out_dir) for p in outcome.written],
            "thumbnail": _relative(outcome.thumbnail, out_dir) if outcome.thumbnail is not None else None,
            "seconds": round(float(outcome.seconds), 3),
            "files": len(outcome.files),
            "info": info,
        })
    if kind == "anonymize":
        totals = {"files": files, **counts}
    else:
        totals = {"series": len(report.outcomes), **counts, "files": files}
    totals.update(outputs=outputs, skipped=len(report.skipped), duplicates=len(report.duplicates))
    by_reason: dict[str, dict[str, Any]] = {}
    for path, reason in report.skipped:
        text = str(reason)
        if anonymized:
            text = _redact_all([text], input_path_names([path], source))[0]
        entry = by_reason.setdefault(text, {"reason": text, "count": 0, "paths": []})
        entry["count"] += 1
        if not anonymized:
            entry["paths"].append(_relative(path, source))
    seconds = report.seconds
    if seconds is None and report.started is not None and report.finished is not None:
        seconds = (report.finished - report.started).total_seconds()
    document: dict[str, Any] = {
        "schema": REPORT_SCHEMA, "tool": "medconvert", "version": __version__, "kind": kind,
        "source": ANONYMIZED_SOURCE if anonymized else source.as_posix(),
        "started": _utc_iso(report.started), "finished": _utc_iso(report.finished),
        "seconds": round(float(seconds), 3) if seconds is not None else None,
        "jobs": int(report.jobs), "anonymized": bool(anonymized), "totals": totals,
    }
    if kind == "anonymize":
        document.update(key_source=str(report.key_source), audit=report.audit is not None,
                        stale_removed=len(report.stale_removed))
    document[ITEMS_KEY[kind]] = items
    document["skipped"] = list(by_reason.values())
    return document


# --------------------------------------------------------------------------- report.json / report.html
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d232a;background:#fff}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.meta{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:.6em 0}
.meta dt{color:#5b6570}.meta dd{margin:0;word-break:break-all}
.totals{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.totals span{padding:.35em .8em;border-radius:.4em;background:#eef1f4}
.totals b{font-size:1.2em;margin-right:.3em}
.st-failed{background:#fbe3e4;color:#8a1c22}.st-converted{background:#e3f4e6;color:#1b5e2a}
.st-done{background:#e6eef8;color:#1f4d80}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #dde2e7;padding:.35em .5em;
text-align:left;vertical-align:top}th{background:#f4f6f8;position:sticky;top:0}
td.status{font-weight:600;white-space:nowrap}td.error{color:#8a1c22}td.warnings{color:#7a5300}
td ul{margin:0;padding-left:1.1em}td.thumb img{max-width:160px;max-height:160px;background:#000}
.filter{margin-right:.4em}#only-failed:checked~table.series tbody tr:not(.failed){display:none}
code{font-size:.95em}
"""


def _e(value: Any) -> str:
    """Text for HTML (element content and quoted attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


def _href(relative: str) -> str:
    """A relative output path as a safe, escaped link target (percent-encoded: no scheme, no markup)."""
    return _e(quote(relative, safe="/"))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _e(value)


def _shape_text(info: dict[str, Any]) -> str:
    """``i x j x k [x t]`` from an index row (columns, rows, slices, volumes) or a ``shape`` list."""
    if all(isinstance(info.get(k), int) for k in ("columns", "rows", "slices")):
        dims = [info["columns"], info["rows"], info["slices"]]
        if isinstance(info.get("volumes"), int) and info["volumes"] > 1:
            dims.append(info["volumes"])
        return "x".join(str(d) for d in dims)
    shape = info.get("shape")
    return "x".join(_e(d) for d in shape) if isinstance(shape, list) else ""


def _spacing_text(info: dict[str, Any]) -> str:
    spacing = [info.get(f"spacing_{a}_mm") for a in "ijk"]
    if all(s is None for s in spacing):
        spacing = info.get("spacing_mm") or []
    return " x ".join(_number(s) if s is not None else "?" for s in spacing)


def _items(values: list[Any], link: bool = False) -> str:
    if not values:
        return ""
    cells = (f'<a href="{_href(v)}">{_e(v)}</a>' if link else _e(v) for v in values)
    return "<ul>" + "".join(f"<li>{c}</li>" for c in cells) + "</ul>"


#: Extra rules for the statuses of a de-identification (a conversion's page is left as it was).
_CSS_ANONYMIZE = """
.st-written{background:#e3f4e6;color:#1b5e2a}.st-flagged{background:#fff1d6;color:#7a5300}
.st-refused{background:#fbe3e4;color:#8a1c22}
#only-failed:checked~table.series tbody tr.refused{display:table-row}
"""

#: Per kind of run: the page title, the noun of an item, the totals shown (key, text, CSS class).
_PAGES: dict[str, tuple[str, str, tuple[tuple[str, str, str], ...]]] = {
    "convert": ("medconvert run report", "series", (
        ("series", "series", ""), ("converted", "converted", "st-converted"),
        ("done", "done earlier (resumed)", "st-done"), ("failed", "failed", "st-failed"),
        ("outputs", "output files", ""), ("files", "input files", ""), ("skipped", "skipped files", ""),
        ("duplicates", "duplicate files", ""))),
    "anonymize": ("medconvert de-identification report", "files", (
        ("files", "DICOM input files", ""), ("written", "de-identified", "st-written"),
        ("done", "done earlier (resumed)", "st-done"), ("flagged", "flagged (burned-in text possible)",
                                                        "st-flagged"),
        ("refused", "refused", "st-refused"), ("failed", "failed", "st-failed"), ("outputs", "output files", ""),
        ("skipped", "skipped files", ""), ("duplicates", "duplicate files", ""))),
}


def _shown_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items ``report.html`` lists: all of them, or above :data:`HTML_ROWS` only those whose outputs
    are not simply in place (failed, refused, flagged, with warnings). Failed and refused first."""
    order = {"failed": 0, "refused": 1, "flagged": 2, "converted": 3, "written": 3, "done": 4}
    if len(items) > HTML_ROWS:
        items = [s for s in items if s.get("status") not in ("converted", "written", "done") or s.get("warnings")]
    return sorted(items, key=lambda s: order.get(s.get("status"), 5))


def report_html(document: dict[str, Any]) -> str:
    """``report.html`` for a :func:`report_document`: one self-contained page (inline CSS, no script,
    nothing fetched but the thumbnails beside it). Failed (and refused) items come first, and a check
    box (CSS only) shows them alone; above :data:`HTML_ROWS` items only those that are not simply
    in place are listed (``report.json`` has every one). Every value is HTML-escaped."""
    kind = document.get("kind") if document.get("kind") in _PAGES else "convert"
    title, noun, chips = _PAGES[kind]
    totals = document.get("totals", {})
    everything = document.get(ITEMS_KEY[kind], [])
    series = _shown_rows(everything)
    meta = [("source", document.get("source")), ("started (UTC)", document.get("started")),
            ("finished (UTC)", document.get("finished")),
            ("wall time", f"{document['seconds']:.1f} s" if document.get("seconds") is not None else None),
            ("jobs", document.get("jobs")), ("anonymized", "yes" if document.get("anonymized") else "no")]
    if kind == "anonymize":
        meta += [("key", document.get("key_source")), ("audit file", "written" if document.get("audit") else "none")]
    meta.append(("tool", f"{document.get('tool', '')} {document.get('version', '')}".strip()))
    css = _CSS + (_CSS_ANONYMIZE if kind == "anonymize" else "")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title>" if kind != "convert" else "<title>medconvert report</title>",
           f"<style>{css}</style></head><body>", f"<header><h1>{_e(title)}</h1>", '<dl class="meta">']
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v) if v is not None else '&ndash;'}</dd>" for k, v in meta]
    out.append('</dl><div class="totals">')
    out += [f'<span class="{cls}"><b>{_e(totals.get(key, 0))}</b>{_e(text)}</span>' for key, text, cls in chips]
    out.append("</div></header>")
    heading = "Series" if kind == "convert" else "Files"
    out.append(f'<section><h2>{heading} ({len(series)})</h2>' if len(series) == len(everything) else
               f"<section><h2>{heading} ({len(series)} of {len(everything)}: the {len(everything) - len(series)} "
               f"in place without warnings are listed in {REPORT_JSON})</h2>")
    problems = totals.get("failed", 0) + totals.get("refused", 0)
    what = "failed series" if kind == "convert" else "failed or refused files"
    out.append('<input type="checkbox" id="only-failed" class="filter">'
               f'<label for="only-failed">show only the {_e(problems)} {what}</label>')
    columns = (["status", "series", "modality", "shape", "spacing (mm)", "outputs", "warnings", "error", "thumbnail"]
               if kind == "convert" else ["status", "file", "outputs", "warnings", "error"])
    out.append('<table class="series"><thead><tr>' + "".join(f"<th>{_e(c)}</th>" for c in columns)
               + "</tr></thead><tbody>")
    for s in series:
        info = s.get("info") if isinstance(s.get("info"), dict) else {}
        status = str(s.get("status", ""))
        cells = [f'<td class="status st-{_e(status)}">{_e(status)}</td>', f"<td>{_e(s.get('label'))}</td>"]
        if kind == "convert":
            cells += [f"<td>{_e(info.get('modality'))}</td>", f"<td>{_shape_text(info)}</td>",
                      f"<td>{_spacing_text(info)}</td>"]
        cells += [f"<td>{_items(s.get('outputs', []), link=True)}</td>",
                  f'<td class="warnings">{_items(s.get("warnings", []))}</td>',
                  f'<td class="error">{_e(s.get("error"))}</td>']
        if kind == "convert":
            thumb = (f'<img src="{_href(s["thumbnail"])}" alt="{_e("thumbnail of " + str(s.get("label", "")))}" '
                     'loading="lazy">' if s.get("thumbnail") else "")
            cells.append(f'<td class="thumb">{thumb}</td>')
        out.append(f'<tr class="{_e(status)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></section>")
    skipped = document.get("skipped", [])
    out.append(f"<section><h2>Skipped files ({_e(totals.get('skipped', 0))})</h2>")
    if skipped:
        out.append("<table><thead><tr><th>reason</th><th>files</th></tr></thead><tbody>")
        for entry in skipped:
            paths = entry.get("paths") or []
            listed = (f"<details><summary>{_e(entry.get('count'))}</summary>{_items(paths)}</details>"
                      if paths else _e(entry.get("count")))
            out.append(f"<tr><td>{_e(entry.get('reason'))}</td><td>{listed}</td></tr>")
        out.append("</tbody></table>")
    else:
        out.append("<p>None.</p>")
    out.append("</section></body></html>\n")
    return "\n".join(out)


def write_report(report: Report, out_dir: str | Path, *, anonymized: bool) -> list[Path]:
    """Write ``report.json`` (:func:`report_document`) and ``report.html`` (:func:`report_html`) into
    ``out_dir``, each atomically (a temporary name, then a rename), replacing those of an earlier run.

    Output paths in both are relative to ``out_dir``. Returns ``[report.json, report.html]``.

    Raises:
        OutputWriteError: ``out_dir`` does not exist or cannot be written.
    """
    from convert.atomic import write_bytes_atomic

    out_dir = Path(out_dir)
    document = report_document(dataclasses.replace(report, out_dir=out_dir), anonymized=anonymized)
    json_path, html_path = out_dir / REPORT_JSON, out_dir / REPORT_HTML
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(json_path, text.encode("utf-8"), overwrite=True)
    write_bytes_atomic(html_path, report_html(document).encode("utf-8"), overwrite=True)
    return [json_path, html_path]
