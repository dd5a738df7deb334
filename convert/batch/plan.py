"""Plan an archive conversion before converting: one job per series, named, filtered, fingerprinted.

A :class:`Plan` is what ``medconvert convert ARCHIVE OUT_DIR --dry-run`` prints and what
:func:`convert.batch.run.run_plan` executes. Everything that decides a job's output bytes is
fixed here, in the parent process, so that the jobs can run in any order, on any worker
(:mod:`concurrent.futures` processes or a Dask cluster), and a rerun plans the same names:

* **names**: every series gets its output stem from the name template
  (:mod:`convert.batch.naming`), made unique across the plan in series order (``_2``, ``_3``...),
  never from what is already on disk; a rerun therefore writes the same files.
* **filters**: ``--include``/``--exclude`` expressions (:func:`parse_filter`) over the index row
  of each series (:func:`convert.batch.index.series_row`).
* **fingerprint**: each job's ``digest`` hashes its input files (relative path, size and
  modification time) and the conversion options (:func:`options_fingerprint`); the manifest
  (:mod:`convert.batch.manifest`) compares it on a rerun to tell finished jobs from changed ones.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from convert.batch.index import SERIES_COLUMNS, series_row
from convert.batch.naming import render_name, sanitize_name, series_name_fields, unique_stem
from convert.batch.report import deidentified_label
from convert.dicom.series import Series
from convert.errors import ConvertError

#: Index fields a de-identified run keeps (in its plan, manifest and report): coded values and
#: numbers only, by allow-list; UIDs, descriptions and messages (header text) are left out.
ANONYMIZED_FIELDS: frozenset[str] = frozenset({
    "series_number", "modality", "kind", "files", "rows", "columns", "slices", "volumes", "spacing_i_mm",
    "spacing_j_mm", "spacing_k_mm", "slice_thickness_mm", "orientation", "tilt_deg", "transfer_syntax",
    "image_type", "missing_slices", "uneven_spacing", "manufacturer", "model", "field_strength_t"})


@dataclass(frozen=True)
class Filter:
    """One ``--include``/``--exclude`` expression: ``field OP value``.

    ``=`` and ``!=`` compare text case-insensitively with shell wildcards (``*``, ``?``,
    ``[...]``), so ``series_description=*t1*`` matches ``Ax T1 MPRAGE``; ``<``, ``<=``, ``>``, ``>=``
    compare numbers (``slices>=20``). A field that is empty or absent never matches ``=``,
    ``<``... and always matches ``!=``.
    """

    field: str
    op: str
    value: str

    def matches(self, row: dict[str, Any]) -> bool:
        """True when ``row`` (an index row) satisfies the expression."""
        value = row.get(self.field)
        if self.op in ("=", "!="):
            text = "" if value is None else str(value)
            hit = bool(text) and fnmatch.fnmatchcase(text.lower(), self.value.lower())
            return hit if self.op == "=" else not hit
        if value is None or isinstance(value, str) and not value:
            return False
        try:
            number, bound = float(value), float(self.value)
        except (TypeError, ValueError):
            return False
        return {">": number > bound, ">=": number >= bound, "<": number < bound, "<=": number <= bound}[self.op]

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def parse_filter(text: str, columns: Sequence[str] = SERIES_COLUMNS) -> Filter:
    """``"modality=CT"`` as a :class:`Filter` over the index ``columns``.

    Raises:
        ConvertError: no operator, an unknown field, or a non-numeric bound for ``<``/``>``.
    """
    match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|>=|<=|=|>|<)(.*)", text, re.DOTALL)
    if match is None:
        raise ConvertError(f"filter {text!r} must read FIELD=VALUE (also !=, <, <=, >, >=), e.g. modality=CT")
    name, op, value = match.group(1).lower(), match.group(2), match.group(3).strip()
    if name not in columns:
        raise ConvertError(f"unknown field {name!r} in filter {text!r}; fields: {', '.join(columns)}")
    if op not in ("=", "!="):
        try:
            float(value)
        except ValueError:
            raise ConvertError(f"filter {text!r} compares with {op}: give a number, e.g. slices>=20") from None
    return Filter(name, op, value)


def selected(row: dict[str, Any], include: Sequence[Filter], exclude: Sequence[Filter]) -> bool:
    """Kept by the filters: matches every ``include`` expression and none of ``exclude``."""
    return all(f.matches(row) for f in include) and not any(f.matches(row) for f in exclude)


@dataclass
class Job:
    """One series to convert: its inputs, its planned output stem, its fingerprint.

    Attributes:
        index: position in the plan (series order).
        key: a stable identity of the series within the archive (SeriesInstanceUID, the split
            and postfix that separate series sharing it, and a counter): the manifest's key.
        label: the label shown in messages (de-identified when anonymizing: no header text).
        series: the assembled series (headers from the scan; pixel data not read yet).
        stem: the output name without extension, unique in the plan, with the series'
            postfix (``_e2``, ``_ph``...); the volumes of a multi-frame series add theirs when read.
        fields: the name template's field values (:func:`convert.batch.naming.series_name_fields`,
            from the de-identified header when anonymizing), for templates using ``{Index}``.
        digest: SHA-256 over the inputs (paths relative to the source, sizes, modification
            times) and the options fingerprint; equal digests mean equal outputs.
        row: the series' index row (:func:`convert.batch.index.series_row`; when anonymizing,
            without the header's free text).
        excluded: dropped by ``--include``/``--exclude`` (the job is reported, not run).
        error: why the job fails before it runs (the de-identifier refused the series: burned-in
            text), or None.
    """

    index: int
    key: str
    label: str
    series: Series
    stem: str
    digest: str
    fields: dict[str, str] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)
    excluded: bool = False
    error: str | None = None

    @property
    def files(self) -> int:
        return len(self.series.paths)


@dataclass
class Plan:
    """The jobs of one archive conversion, in series order, and what the scan set aside.

    Attributes:
        source: the input folder (or DICOMDIR / archive) as given.
        jobs: one per series, excluded ones included (``job.excluded``).
        skipped: files that are not DICOM images, with the reason.
        duplicates: files dropped as copies of another (same SOPInstanceUID, same bytes).
        fingerprint: the options fingerprint every job digest includes.
    """

    source: Path
    jobs: list[Job]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def selected(self) -> list[Job]:
        """The jobs to run (not excluded)."""
        return [j for j in self.jobs if not j.excluded]


def fingerprint_of(value: Any) -> Any:
    """A JSON-ready, run-independent description of an option value, for the options fingerprint.

    An object with a ``fingerprint`` attribute (e.g. :class:`convert.anonymize.Deidentifier`)
    gives it; paths, numbers, strings, sequences and mappings describe themselves; any other
    object (a user's function) is described by its ``repr``, which usually holds its memory
    address: its jobs then count as changed on every run, the safe side for resuming.
    """
    if hasattr(value, "fingerprint") and not callable(getattr(value, "fingerprint")):
        return fingerprint_of(value.fingerprint)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): fingerprint_of(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [fingerprint_of(v) for v in value]
    steps = getattr(value, "steps", None)
    if isinstance(steps, tuple):  # a convert.process.Pipeline: its Step dataclasses have stable reprs
        return ["pipeline"] + [repr(s) for s in steps]
    return repr(value)


def options_fingerprint(options: dict[str, Any]) -> str:
    """SHA-256 (hex) of the medconvert version and every option that decides output bytes."""
    from convert.version import __version__

    doc = {"tool": f"medconvert {__version__}", "options": fingerprint_of(options)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def inputs_digest(paths: Iterable[Path], root: Path, fingerprint: str,
                  name_of: Callable[[Path], str] | None = None) -> str:
    """SHA-256 (hex) of each input's path relative to ``root`` (or ``name_of(path)``: an archive
    member's name), size and mtime (ns), then ``fingerprint``.

    Cheap (one ``stat`` per file, no content read) and the rule make and rsync use: an input
    rewritten in place with the same size and time stamp is not noticed (``--overwrite`` redoes all).
    """
    h = hashlib.sha256()
    prefix = str(root).rstrip(os.sep) + os.sep  # a prefix test, not Path.relative_to: 50,000 files a plan
    for path in sorted(paths):
        try:
            info = os.stat(path)
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        text = str(path)
        if name_of is not None:
            name = name_of(path)
        else:
            name = text[len(prefix):] if text.startswith(prefix) else text
        h.update(f"{name}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    h.update(fingerprint.encode("ascii"))
    return h.hexdigest()


def series_key(series: Series, seen: dict[str, int]) -> str:
    """A stable key of ``series`` in its archive: UID, split and postfix, numbered if repeated."""
    base = "|".join((series.series_uid or f"no-uid:{series.first.path.name}", series.split, series.suffix))
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}|{seen[base]}"


def make_plan(source: Path, all_series: Sequence[Series], *, name: str, options: dict[str, Any],
              deidentify: Callable[[Any], Any] | None = None, include: Sequence[str] = (),
              exclude: Sequence[str] = (), skipped: Sequence[tuple[Path, str]] = (),
              duplicates: Sequence[Path] = (), reserved: Sequence[str] = (),
              name_of: Callable[[Path], str] | None = None) -> Plan:
    """The plan for converting ``all_series`` (assembled from a scan of ``source``).

    Args:
        name: the output name template (validated by the caller).
        options: every option that decides output bytes (format, read, process, sidecar and
            writer options, the de-identifier): hashed into each job's digest.
        deidentify: names and labels then come from de-identified headers (pseudonyms).
        include: filter expressions (:func:`parse_filter`) over index rows, all to match.
        exclude: filter expressions of series to leave out, any to match.
        reserved: stems no series may take (``report``: the run's ``report.json``/``report.html``).
        name_of: the stable name of an input file (default: relative to ``source``); for the digests.

    Raises:
        ConvertError: a bad filter expression.
    """
    includes = [parse_filter(t) for t in include]
    excludes = [parse_filter(t) for t in exclude]
    fingerprint = options_fingerprint(options)
    claimed: set[str] = {s.lower() for s in reserved}  # e.g. "report": report.json is the run's
    seen: dict[str, int] = {}
    jobs = []
    for n, series in enumerate(all_series):
        row = series_row(series)
        keep = selected(row, includes, excludes) if (includes or excludes) else True
        if deidentify is not None:  # UIDs and free header text may identify: keep the coded fields only
            row = {k: v for k, v in row.items() if k in ANONYMIZED_FIELDS}
        stem, fields, error = "", {}, None
        if keep:
            try:  # the de-identifier may refuse the series (burned-in text): that job fails, the others run
                fields = series_name_fields(series, 0, 1, deidentify)
            except ConvertError as exc:
                error = str(exc)
                fields = {}
        if keep and error is None:
            stem = render_name(name, fields)
            if series.suffix and series.kind != "multiframe":  # a multi-frame file's volumes get theirs when read
                stem = sanitize_name(f"{stem}_{series.suffix}")
            stem = unique_stem(stem, claimed)
        label = series.label if deidentify is None else deidentified_label(series)
        jobs.append(Job(index=n, key=series_key(series, seen), label=label, series=series, stem=stem,
                        digest=inputs_digest(series.paths, source, fingerprint, name_of), fields=fields, row=row,
                        excluded=not keep, error=error))
    return Plan(source=source, jobs=jobs, skipped=list(skipped), duplicates=list(duplicates),
                fingerprint=fingerprint)
