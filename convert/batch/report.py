"""The series side of a conversion's run report: de-identified labels and messages, thumbnails.

The run report itself (:class:`~convert.report.Report` of :class:`~convert.report.Outcome` items,
``report.json`` and ``report.html``) is one type for conversions and de-identifications, in
:mod:`convert.report`; its names are importable from here too. This module adds what only a
series has: the label and the redaction of the paths and header text of a series in the messages
of de-identified runs (:func:`deidentified_label`, :func:`redact_series_paths`,
:func:`redact_header_text`) and the per-series thumbnails (:func:`thumbnail_png`,
:func:`write_thumbnail`) drawn by the preview renderer (:mod:`convert.process.preview`).
"""

from __future__ import annotations

import io
from pathlib import Path

from convert.dicom.series import Series
from convert.errors import UnsupportedDataError
from convert.report import (ANONYMIZED_SOURCE, REPORT_HTML, REPORT_JSON, REPORT_SCHEMA, Outcome, Report,
                            SeriesOutcome, input_path_names, outcome_status, redact_components, report_document,
                            report_html, write_report)
from convert.volume import Volume

__all__ = ["ANONYMIZED_SOURCE", "REPORT_HTML", "REPORT_JSON", "REPORT_SCHEMA", "THUMBNAIL_FOLDER", "Outcome",
           "Report", "SeriesOutcome", "deidentified_label", "input_path_names", "outcome_status",
           "redact_components", "redact_header_text", "redact_series_paths", "report_document", "report_html",
           "thumbnail_path", "thumbnail_png", "write_report", "write_thumbnail"]

#: Folder under the output folder that holds the per-series thumbnails (:func:`write_thumbnail`):
#: beside the run's record (:data:`convert.batch.manifest.STATE_DIR`), out of the way of the outputs.
THUMBNAIL_FOLDER = ".medconvert/thumbnails"


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
    preview = render_preview(plane, height=max_size, labels=False)  # only a panel is kept: no text to draw
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
