"""What a conversion run did, and its report files.

One :class:`SeriesOutcome` per series (job) in a :class:`Report`; the redaction of input
paths from the messages of de-identified runs; the run report: :func:`report_document`
(JSON-ready), :func:`write_report` (``report.json`` and a self-contained ``report.html``)
and the per-series thumbnails (:func:`thumbnail_png`, :func:`write_thumbnail`) drawn by the
preview renderer (:mod:`convert.process.preview`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

from convert.dicom.series import Series
from convert.errors import UnsupportedDataError
from convert.volume import Volume

@dataclass
class SeriesOutcome:
    """Result of converting one series: the files written, or the error.

    Attributes:
        label: the series label (``#5 512x512x120`` when de-identified: no header text).
        files: the series' input files.
        written: the output files, image first.
        error: why the series failed (None: it converted).
        warnings: what the user should know about the output (tilt, gaps, no gradient table...).
        status: ``"converted"``, ``"done"`` (an earlier run of the same job wrote it: resumed,
            not redone) or ``"failed"``.
        seconds: wall time of the job (0 for ``"done"``).
        thumbnail: a PNG preview of the first output volume (under the output folder), or None.
        info: the series' index row (:func:`convert.batch.index.series_row`): modality,
            shape, spacing... (no patient fields).
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

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Report:
    """What :func:`convert_dicom_tree` did: one outcome per series, plus skipped files.

    Attributes:
        source: the input folder (or archive).
        outcomes: one :class:`SeriesOutcome` per series, in plan order.
        skipped: ``(path, reason)`` of every input file that is not part of a series.
        duplicates: files skipped as the same instance twice.
        out_dir: the output folder (None: not known; :func:`write_report` fills it in).
        started, finished: UTC wall-clock times of the run (None: not recorded).
        seconds: wall time of the run (None: ``finished - started`` when both are known).
        jobs: how many jobs ran at once (workers).
    """

    source: Path
    outcomes: list[SeriesOutcome] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: Files skipped as the same instance twice (same SOPInstanceUID, identical bytes), e.g. a DICOMDIR media copy.
    duplicates: list[Path] = field(default_factory=list)
    out_dir: Path | None = None
    started: datetime | None = None
    finished: datetime | None = None
    seconds: float | None = None
    jobs: int = 1

    @property
    def ok(self) -> bool:
        """True when every series converted."""
        return all(o.ok for o in self.outcomes) and bool(self.outcomes)

    @property
    def failed(self) -> list[SeriesOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def written(self) -> list[Path]:
        return [p for o in self.outcomes for p in o.written]


def deidentified_label(series: Series) -> str:
    """A series label with no text from the headers: number, split and shape only."""
    number = f"#{series.series_number}" if series.series_number is not None else "#?"
    return f"{number} {'x'.join(str(n) for n in series.shape)}"


def redact_series_paths(text: str, series: Series, src_dir: Path) -> str:
    """Replace every input path, relative path and file name of ``series`` in ``text`` by a neutral tag.

    Source folder and file names often carry patient names or IDs. Only whole
    path components are replaced: a name must start at the beginning of the
    text, after white space, a quote, a bracket or a path separator, and end at
    the end, a separator, white space, a quote, a bracket, ``:``/``,``/``;`` or a
    full stop (so an input folder named ``in`` leaves ``--allow-burned-in`` alone).
    A bare file name of at most 3 digits (``1``, ``12``) is left where it stands
    alone: it cannot identify anyone and would replace counts ("1 of 2 series");
    its full and relative paths are still replaced.
    """
    return redact_components(text, input_path_names(series.paths, src_dir))


def redact_header_text(text: str, series: Series, label: str) -> str:
    """``text`` with the header text its messages quote replaced: the series label (which holds its
    SeriesDescription) by ``label`` (:func:`deidentified_label`), and the description itself by
    ``<series description>``. For the messages of de-identified runs, with :func:`redact_series_paths`."""
    text = text.replace(series.label, label)
    description = series.description.strip()
    if len(description) >= 2:
        text = text.replace(description, "<series description>")
    return text


def input_path_names(paths: Iterable[Path], src_dir: Path) -> dict[str, str]:
    """The replacements :func:`redact_series_paths` makes for input files ``paths`` under ``src_dir``:
    each full path, relative path (of 2+ components) and file name (unless count-like) -> ``<input file>``,
    ``src_dir`` -> ``<input folder>``. For :func:`redact_components`."""
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

    Longer keys win (a full path before its file name). See :func:`redact_series_paths` for
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
#: Folder under the output folder that holds the per-series thumbnails (:func:`write_thumbnail`):
#: beside the run's record (:data:`convert.batch.manifest.STATE_DIR`), out of the way of the outputs.
THUMBNAIL_FOLDER = ".medconvert/thumbnails"
#: Version of the ``report.json`` layout: raised when a field changes meaning or goes away.
REPORT_SCHEMA = 1
#: Placeholder for the input folder in the report of an anonymized run.
ANONYMIZED_SOURCE = "<input folder>"


def outcome_status(outcome: SeriesOutcome) -> str:
    """``"failed"`` (an error, whatever ``status`` says), ``"done"`` (resumed) or ``"converted"``."""
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

    Keys: ``schema`` (:data:`REPORT_SCHEMA`), ``tool``, ``version``, ``source`` (the input
    path, or ``"<input folder>"`` when ``anonymized``), ``started``/``finished`` (UTC,
    ISO 8601 ``...Z``, or None), ``seconds`` (wall time), ``jobs``, ``anonymized``,
    ``totals`` (``series``, ``converted``, ``done``, ``failed``, ``files`` (input files of
    the series), ``outputs``, ``skipped``, ``duplicates``), ``series`` (one dict per
    outcome, in run order: ``label``, ``status`` (:func:`outcome_status`), ``error``,
    ``warnings``, ``outputs`` and ``thumbnail`` (POSIX paths relative to
    ``report.out_dir``), ``seconds``, ``info`` (the index row as given), ``files`` (how many
    input files)) and ``skipped`` (one dict per distinct reason: ``reason``, ``count``,
    ``paths``: input paths relative to the source, empty when ``anonymized``).

    When ``anonymized``, no input path reaches the document: the source is a placeholder,
    skipped files are counted, not named, and every input path, relative path and file
    name of a series (and the source folder) is replaced in its label, error, warnings and
    info text, as :func:`redact_series_paths` does. Header text is not added here: labels,
    messages and ``info`` are taken as given, so the caller of an anonymized run passes the
    de-identified ones (:func:`deidentified_label`, :func:`redact_header_text`,
    :func:`redact_series_paths`, rows of :data:`convert.batch.plan.ANONYMIZED_FIELDS`).
    """
    from convert.version import __version__

    source = Path(report.source)
    out_dir = Path(report.out_dir) if report.out_dir is not None else None
    series: list[dict[str, Any]] = []
    totals = {"series": len(report.outcomes), "converted": 0, "done": 0, "failed": 0, "files": 0,
              "outputs": 0, "skipped": len(report.skipped), "duplicates": len(report.duplicates)}
    for outcome in report.outcomes:
        status = outcome_status(outcome)
        totals[status] += 1
        totals["files"] += len(outcome.files)
        totals["outputs"] += len(outcome.written)
        error = outcome.error if outcome.error is not None or status != "failed" else "failed (no reason given)"
        texts = [outcome.label, *(outcome.warnings)] + ([error] if error is not None else [])
        info = _json_ready(dict(outcome.info))
        if anonymized:
            names = input_path_names(outcome.files, source)
            texts = _redact_all(texts, names)
            info = _redact_info(info, lambda t, names=names: _redact_all(t, names))
        label, warnings = texts[0], texts[1:1 + len(outcome.warnings)]
        series.append({
            "label": label, "status": status,
            "error": texts[-1] if error is not None else None,
            "warnings": warnings,
            "outputs": [_relative(p, out_dir) for p in outcome.written],
            "thumbnail": _relative(outcome.thumbnail, out_dir) if outcome.thumbnail is not None else None,
            "seconds": round(float(outcome.seconds), 3),
            "files": len(outcome.files),
            "info": info,
        })
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
    return {
        "schema": REPORT_SCHEMA, "tool": "medconvert", "version": __version__,
        "source": ANONYMIZED_SOURCE if anonymized else source.as_posix(),
        "started": _utc_iso(report.started), "finished": _utc_iso(report.finished),
        "seconds": round(float(seconds), 3) if seconds is not None else None,
        "jobs": int(report.jobs), "anonymized": bool(anonymized),
        "totals": totals, "series": series, "skipped": list(by_reason.values()),
    }


def _middle_slice(volume: Volume) -> tuple[Volume, int]:
    """The middle slice across ``k`` (of the first volume of a 4D series) as a one-slice Volume at its
    world place, and the world axis (0 x, 1 y, 2 z) closest to ``k``. A lazy volume reads only that slice."""
    from convert.geometry import voxel_axes
    from convert.proxy import is_proxy

    k = (volume.shape[2] - 1) // 2
    data = volume.array
    if is_proxy(data):
        plane = data.slab(k, k + 1, 0)
    else:
        plane = data[:, :, k:k + 1] if data.ndim == 3 else data[:, :, k:k + 1, 0]
    affine = volume.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ [0.0, 0.0, float(k)] + affine[:3, 3]
    k_axis = voxel_axes(volume.affine)[2]
    axis = k_axis[0] if k_axis is not None else 2
    return volume.replace(array=plane, affine=affine), axis


def thumbnail_png(volume: Volume, max_size: int = 160) -> bytes:
    """A PNG (8-bit grey) of the middle slice across ``k``, at most ``max_size`` pixels on its longer side.

    Drawn by :func:`convert.process.preview.render_preview` (its windowing: the series'
    DICOM window, else the 1st..99th percentile of the slice; its orientation: the slice
    in the plane (axial, coronal or sagittal) closest to it, radiological convention,
    physical proportions), cropped to that panel. Of a lazy volume only the one slice is
    read; a 4D volume shows its first volume.

    Raises:
        UnsupportedDataError: a colour volume, or ``max_size`` below 8.
    """
    from convert.process.preview import render_preview

    if max_size < 8:
        raise UnsupportedDataError(f"a thumbnail needs at least 8 pixels, not {max_size}")
    volume.require_scalar("a thumbnail")
    plane, axis = _middle_slice(volume)
    preview = render_preview(plane, height=max_size)
    box, _ = preview.panels[("sagittal", "coronal", "axial")[axis]]
    image = preview.image.crop(box)
    image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail_path(out_dir: str | Path, stem: str) -> Path:
    """Where the thumbnail of the output named ``stem`` goes: ``OUT_DIR/.medconvert/thumbnails/STEM.png``."""
    return Path(out_dir) / THUMBNAIL_FOLDER / f"{stem}.png"


def write_thumbnail(volume: Volume, out_dir: str | Path, stem: str, *, max_size: int = 160) -> Path | None:
    """:func:`thumbnail_png` written atomically to :func:`thumbnail_path` (replacing an older one).

    Returns the path, or None for a volume a thumbnail cannot show (colour): a missing
    thumbnail never fails a series.
    """
    from convert.atomic import write_bytes_atomic

    try:
        data = thumbnail_png(volume, max_size)
    except UnsupportedDataError:
        return None
    target = thumbnail_path(out_dir, stem)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, data, overwrite=True)
    return target


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


def report_html(document: dict[str, Any]) -> str:
    """``report.html`` for a :func:`report_document`: one self-contained page (inline CSS, no script,
    nothing fetched but the thumbnails beside it). Failed series come first, and a check box
    (CSS only) shows the failed ones alone. Every value is HTML-escaped."""
    totals = document.get("totals", {})
    order = {"failed": 0, "converted": 1, "done": 2}
    series = sorted(document.get("series", []), key=lambda s: order.get(s.get("status"), 3))
    meta = [("source", document.get("source")), ("started (UTC)", document.get("started")),
            ("finished (UTC)", document.get("finished")),
            ("wall time", f"{document['seconds']:.1f} s" if document.get("seconds") is not None else None),
            ("jobs", document.get("jobs")), ("anonymized", "yes" if document.get("anonymized") else "no"),
            ("tool", f"{document.get('tool', '')} {document.get('version', '')}".strip())]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>medconvert report</title>", f"<style>{_CSS}</style></head><body>",
           "<header><h1>medconvert run report</h1>", '<dl class="meta">']
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v) if v is not None else '&ndash;'}</dd>" for k, v in meta]
    out.append('</dl><div class="totals">')
    out += [f'<span class="{cls}"><b>{_e(totals.get(key, 0))}</b>{_e(text)}</span>' for key, text, cls in (
        ("series", "series", ""), ("converted", "converted", "st-converted"), ("done", "done earlier (resumed)",
        "st-done"), ("failed", "failed", "st-failed"), ("outputs", "output files", ""),
        ("files", "input files", ""), ("skipped", "skipped files", ""), ("duplicates", "duplicate files", ""))]
    out.append("</div></header>")
    out.append(f'<section><h2>Series ({len(series)})</h2>')
    out.append('<input type="checkbox" id="only-failed" class="filter">'
               f'<label for="only-failed">show only the {_e(totals.get("failed", 0))} failed series</label>')
    out.append('<table class="series"><thead><tr><th>status</th><th>series</th><th>modality</th><th>shape</th>'
               "<th>spacing (mm)</th><th>outputs</th><th>warnings</th><th>error</th><th>thumbnail</th>"
               "</tr></thead><tbody>")
    for s in series:
        info = s.get("info") if isinstance(s.get("info"), dict) else {}
        status = str(s.get("status", ""))
        thumb = (f'<img src="{_href(s["thumbnail"])}" alt="{_e("thumbnail of " + str(s.get("label", "")))}" '
                 'loading="lazy">' if s.get("thumbnail") else "")
        out.append(
            f'<tr class="{_e(status)}"><td class="status st-{_e(status)}">{_e(status)}</td>'
            f"<td>{_e(s.get('label'))}</td><td>{_e(info.get('modality'))}</td><td>{_shape_text(info)}</td>"
            f"<td>{_spacing_text(info)}</td><td>{_items(s.get('outputs', []), link=True)}</td>"
            f'<td class="warnings">{_items(s.get("warnings", []))}</td>'
            f'<td class="error">{_e(s.get("error"))}</td><td class="thumb">{thumb}</td></tr>')
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
