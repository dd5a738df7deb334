"""What a conversion run did: one :class:`SeriesOutcome` per series (job) in a :class:`Report`;
the redaction of input paths from the messages of de-identified runs."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert.dicom.series import Series


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
    """What :func:`convert_dicom_tree` did: one outcome per series, plus skipped files."""

    source: Path
    outcomes: list[SeriesOutcome] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: Files skipped as the same instance twice (same SOPInstanceUID, identical bytes), e.g. a DICOMDIR media copy.
    duplicates: list[Path] = field(default_factory=list)

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
    names: dict[str, str] = {}
    for path in series.paths:
        names.setdefault(str(path), "<input file>")
        with contextlib.suppress(ValueError):
            relative = path.relative_to(src_dir)
            if len(relative.parts) > 1:  # else it is the bare name, below
                names.setdefault(str(relative), "<input file>")
        if not _is_count_like(path.name):
            names.setdefault(path.name, "<input file>")
    names.setdefault(str(src_dir), "<input folder>")
    names.pop("", None)
    names.pop(".", None)
    return redact_components(text, names)


def _is_count_like(name: str) -> bool:
    return name.isdigit() and len(name) <= 3

_BEFORE = r"(?:(?<=^)|(?<=[\s'\"(\[{<=/\\]))"

_AFTER = r"(?=$|[\s'\")\]}>/\\:,;]|\.(?![\w-]))"


def redact_components(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key of ``replacements`` replaced where it stands as whole path component(s).

    Longer keys win (a full path before its file name). See :func:`redact_series_paths` for
    what counts as a component boundary.
    """
    keys = sorted((k for k in replacements if k), key=len, reverse=True)
    if not keys:
        return text
    pattern = re.compile(_BEFORE + "(" + "|".join(re.escape(k) for k in keys) + ")" + _AFTER)
    return pattern.sub(lambda m: replacements[m.group(1)], text)
