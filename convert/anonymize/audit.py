"""What was done, for the people who must prove it: per-file logs, the run report, the audit file.

The run report of a de-identification is the :class:`~convert.report.Report` of every run
(``kind="anonymize"``, one :class:`~convert.report.Outcome` per DICOM input file, built by
:func:`record_file`); ``report.json`` and ``report.html`` in the output folder hold no PHI: no
input path or name, no header value (files are ``input file N``, outputs are named by pseudonyms).

The audit file is the only place original identifiers are ever written. It is
JSON, created with permissions 0600 (owner read/write only) through a
temporary file renamed into place, and only when the user asks for it
(``audit=`` / ``--audit``). Layout::

    {
      "tool": "medconvert 0.1.0",
      "method": "medconvert: DICOM PS3.15 E.1 Basic Profile + ...",
      "options": ["modified-dates"],
      "key_source": "file",                # never the key itself
      "created_utc": "2026-01-01T12:00:00Z",
      "summary": {"written": 10, "already_done": 0, "refused": 1, "failed": 0, "skipped_non_dicom": 2},
      "mapping": {                        # original -> pseudonym
        "PatientID": {"12345": "ANON0F3A..."},
        "StudyInstanceUID": {"1.2.3": "2.25.1234..."},
        "SeriesInstanceUID": {"1.2.3.4": "2.25.5678..."}
      },
      "files": [                          # one entry per input file
        {"input": "in/a.dcm", "output": "out/ANON.../2.25.../2.25.../2.25....dcm",
         "status": "written", "message": "", "burned_in": false,
         "removed": 52, "replaced": 9, "emptied": 4, "cleaned": 0, "kept": 71}
      ]
    }

Console output and the report files never contain original values or input paths (input files are
``input file N``, N counting the entries of ``files`` from 1); the :class:`Report` a caller gets back
also holds its own input paths (``Outcome.files``, ``per_file``).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from convert.atomic import write_bytes_atomic
from convert.errors import spell
from convert.report import Outcome, Report, input_path_names, redact_components

__all__ = ["BURNED_IN_WARNING", "COUNTS", "STATUSES", "FileLog", "Report", "record_file", "write_audit"]

#: Status values of a :class:`FileLog`.
STATUSES = ("written", "done", "refused", "failed", "non-dicom", "duplicate")
#: The element counts of a :class:`FileLog` (at any depth), also the ``info`` of a file's outcome.
COUNTS = ("removed", "replaced", "emptied", "cleaned", "kept")
#: The warning of an output let through although it may show burned-in text.
BURNED_IN_WARNING = ("may show burned-in text: written as allowed, flagged BurnedInAnnotation YES; check the "
                     "pixels before sharing")


@dataclass
class FileLog:
    """What happened to one input file.

    Attributes:
        source: the input file.
        output: the file written, or found already written (``done``); None otherwise.
        status: ``written``, ``done`` (a resumed run found its output already in place,
            byte for byte what this run would write), ``refused`` (burned-in rule), ``failed``
            (unreadable, truncated, output exists...), ``non-dicom`` (skipped) or ``duplicate``
            (skipped: the same instance as another input, same SOPInstanceUID and bytes).
        message: why it was refused/failed ("" otherwise); never holds PHI.
        burned_in: written although it may carry burned-in text (flagged).
        removed, replaced, emptied, cleaned, kept: element counts at any depth.
    """

    source: Path
    output: Path | None = None
    status: str = "written"
    message: str = ""
    burned_in: bool = False
    removed: int = 0
    replaced: int = 0
    emptied: int = 0
    cleaned: int = 0
    kept: int = 0
    #: the output this file would have gone to when it was already taken (not in the audit).
    target: Path | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("target", None)
        d["input"] = str(d.pop("source"))
        d["output"] = str(self.output) if self.output else None
        return d


def record_file(report: Report, log: FileLog) -> None:
    """Record one input file's outcome in the report of a de-identification (call in input order).

    ``log`` goes to ``report.per_file`` (the audit file's rows). A skipped file (not DICOM, a
    DICOMDIR) goes to ``report.skipped`` with its reason, a duplicate to ``report.duplicates``;
    every other file becomes an :class:`~convert.report.Outcome` labelled ``input file N`` (N: its
    place in ``per_file``, from 1) whose error names no input path (its own path, relative path and
    name are replaced, as in the messages of de-identified conversions).
    """
    report.per_file.append(log)
    if log.status == "non-dicom":
        report.skipped.append((log.source, spell(log.message) or "not a DICOM file"))
        return
    if log.status == "duplicate":
        report.duplicates.append(log.source)
        return
    written = [log.output] if log.status in ("written", "done") and log.output is not None else []
    error = None
    if log.status in ("refused", "failed"):
        root = Path(report.source) if report.source is not None else Path(log.source).parent
        error = redact_components(spell(log.message) or log.status, input_path_names([log.source], root))
    flagged = bool(log.burned_in and written)
    report.outcomes.append(Outcome(
        label=f"input file {len(report.per_file)}", files=[log.source], written=written, error=error,
        warnings=[BURNED_IN_WARNING] if flagged else [], status=log.status, flagged=flagged,
        info={name: getattr(log, name) for name in COUNTS}))


def write_audit(path: Path, report: Report, mapping: dict[str, dict[str, str]], method: str,
                options: Iterable[str], overwrite: bool = False) -> Path:
    """Write the audit JSON (layout in the module docstring) atomically with mode 0600."""
    from convert import __version__

    doc = {
        "tool": f"medconvert {__version__}",
        "method": method,
        "options": sorted(options),
        "key_source": report.key_source,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": {"written": len(report.written), "already_done": len(report.done),
                    "refused": len(report.refused), "failed": len(report.failed),
                    "skipped_non_dicom": report.skipped_non_dicom, "flagged_burned_in": len(report.flagged)},
        "mapping": {k: dict(sorted(v.items())) for k, v in mapping.items()},
        "files": [log.as_json() for log in report.per_file],
    }
    data = (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    path = Path(path)
    write_bytes_atomic(path, data, overwrite=overwrite, mode=0o600)
    return path
