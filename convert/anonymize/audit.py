"""What was done, for the people who must prove it: per-file logs, the run report, the audit file.

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

Console output and the :class:`Report` never contain original values (only
input paths, which the user chose, and counts).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from convert.atomic import write_bytes_atomic
from convert.errors import spell

#: Status values of a :class:`FileLog`.
STATUSES = ("written", "done", "refused", "failed", "non-dicom", "duplicate")


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


@dataclass
class Report:
    """The outcome of anonymizing a file or a folder tree.

    Attributes:
        written: output files written by this run, in input order.
        done: output files an earlier, interrupted run of the same job had already written
            (a resumed run checks each is byte for byte what it would write; see
            :func:`convert.anonymize.run.anonymize_path`).
        refused: (input, reason) for files refused by the burned-in rule.
        failed: (input, reason) for unreadable/truncated/corrupt inputs and write errors.
        skipped_non_dicom: how many non-DICOM files were skipped in a folder.
        per_file: a :class:`FileLog` per input file (including skipped ones).
        non_dicom: the skipped non-DICOM files.
        flagged: outputs let through with possible burned-in text (``allow_burned_in``).
        duplicates: inputs skipped as the same instance as another input (same SOPInstanceUID, identical bytes).
        key_source: where the key came from ("bytes", "file", "env ...", "random").
        audit: the audit file written, if any.
        stale_removed: temporary files of a killed earlier run removed from the output folder
            (:func:`convert.atomic.remove_stale_temporaries`).
    """

    written: list[Path] = field(default_factory=list)
    done: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped_non_dicom: int = 0
    per_file: list[FileLog] = field(default_factory=list)
    non_dicom: list[Path] = field(default_factory=list)
    flagged: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    key_source: str = ""
    audit: Path | None = None
    stale_removed: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing was refused and every output is in place (written now
        or already done): a run that wrote nothing is never ok."""
        return not self.failed and not self.refused and bool(self.written or self.done)

    @property
    def nothing_written(self) -> bool:
        """True when no output is in place: nothing written by this run and nothing already done."""
        return not self.written and not self.done

    def add(self, log: FileLog) -> None:
        """Record one file's outcome."""
        self.per_file.append(log)
        if log.status in ("written", "done") and log.output is not None:
            (self.written if log.status == "written" else self.done).append(log.output)
            if log.burned_in:
                self.flagged.append(log.output)
        elif log.status == "refused":
            self.refused.append((log.source, spell(log.message)))
        elif log.status == "failed":
            self.failed.append((log.source, spell(log.message)))
        elif log.status == "non-dicom":
            self.skipped_non_dicom += 1
            self.non_dicom.append(log.source)
        elif log.status == "duplicate":
            self.duplicates.append(log.source)

    def summary(self) -> str:
        """One line, no PHI: counts only. A resumed run also counts the outputs already done,
        and a run that leaves no output in place says so first."""
        if self.nothing_written:
            text = "nothing de-identified"
        else:
            text = f"{len(self.written)} file(s) de-identified"
            if self.done:
                text += f", {len(self.done)} already done by an earlier run"
        extra = []
        if self.refused:
            extra.append(f"{len(self.refused)} refused")
        if self.failed:
            extra.append(f"{len(self.failed)} failed")
        if self.skipped_non_dicom:
            extra.append(f"{self.skipped_non_dicom} non-DICOM skipped")
        if self.duplicates:
            extra.append(f"{len(self.duplicates)} duplicate(s) skipped")
        if self.flagged:
            extra.append(f"{len(self.flagged)} flagged for burned-in text")
        if self.stale_removed:
            extra.append(f"{len(self.stale_removed)} stale temporary file(s) of an interrupted run removed")
        return text + (f" ({', '.join(extra)})" if extra else "")


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
