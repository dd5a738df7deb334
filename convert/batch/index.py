"""Series summaries and the archive index, from headers only (nothing decoded): what ``medconvert info``
and ``medconvert scan`` / :func:`convert.scan` show.

The index has one row per series (or per instance with ``instances=True``): typed key columns
(:data:`SERIES_COLUMN_TYPES`, :data:`INSTANCE_COLUMN_TYPES`) plus one JSON text column ``extra``
for the rest, so a wide, sparse archive stays a narrow table. Patient-identifying columns
(:data:`PHI_COLUMN_TYPES`) exist only with ``phi=True``; without it they are never read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from convert.dicom.pixels import is_colour
from convert.dicom.reader import spacing_note
from convert.dicom.scan import Instance
from convert.dicom.series import Series
from convert.errors import ConvertError, MissingDependencyError, UnsupportedFormatError, spell
from convert.geometry import lps_to_ras, orientation_code, slice_affine_lps

if TYPE_CHECKING:  # pragma: no cover
    import pandas


def summarize_series(series: Series) -> dict[str, Any]:
    """JSON-ready geometry and diagnostics of a series from its headers only (nothing decoded).

    Keys: ``number``, ``description``, ``split``, ``suffix`` (dcm2niix's file-name postfix), ``kind``, ``modality``, ``files``,
    ``shape``, ``spacing_mm`` (i, j, k), ``orientation`` (RAS+ code), ``tilt_deg``,
    ``missing_slices``, ``uneven_spacing``, ``warnings``, ``problem``, ``colour`` (the
    photometric interpretation of a colour series, else None). Mosaic and
    multi-frame shapes are the stored matrix until decoded.
    """
    first = series.first
    info: dict[str, Any] = {
        "number": series.series_number,
        "description": series.description,
        "split": series.split,
        "suffix": series.suffix,
        "kind": series.kind,
        "modality": series.modality,
        "files": len(series.paths),
        "shape": list(series.shape),
        "spacing_mm": None,
        "orientation": None,
        "tilt_deg": round(series.tilt_deg, 3),
        "missing_slices": sum(n for _, n in series.missing),
        "uneven_spacing": series.uneven,
        "warnings": list(series.warnings),  # spelled for the context at the end
        "problem": series.problem,
        "colour": first.photometric if is_colour(first.samples_per_pixel, first.photometric) else None,
    }
    if series.kind == "slices" and first.orientation is not None and not series.problem:
        affine = lps_to_ras(slice_affine_lps(first, series.grid[-1][0], series.n_slices))
        spacing = [float(np.linalg.norm(affine[:3, n])) for n in range(3)]
        if series.uneven or series.missing:  # what `convert` writes (by default / with --allow-gaps): the even grid
            spacing[2] *= (series.n_slices - 1) / (series.even_grid()[0] - 1)
        if series.uneven:
            info["warnings"].append(spacing_note(series, stacked=False, slice_step_mm=spacing[2], planned=True))
        info["spacing_mm"] = [round(s, 4) for s in spacing]
        info["orientation"] = orientation_code(affine)
    elif series.kind == "mosaic":
        from convert.dicom import multiframe as _multiframe
        try:
            header = first.load_header()
            tile_rows, tile_cols, _ = _multiframe.mosaic_tile_shape(header)
            n = _multiframe.mosaic_slice_count(header)
            affine = lps_to_ras(np.asarray(_multiframe.mosaic_affine_lps(header), dtype=np.float64))
        except ConvertError as exc:
            info["problem"] = exc.message
        else:
            info["shape"] = [tile_cols, tile_rows, n] + ([series.n_times] if series.n_times > 1 else [])
            info["spacing_mm"] = [round(float(np.linalg.norm(affine[:3, c])), 4) for c in range(3)]
            info["orientation"] = orientation_code(affine)
    info["warnings"] = [spell(w) for w in info["warnings"]]
    return info


#: Typed key columns of a series row (:func:`series_row`), in order, with their pandas dtypes; anything
#: else goes in the JSON column ``extra``. Spacings in mm along the output axes i, j, k; field strength in T.
SERIES_COLUMN_TYPES: dict[str, str] = {
    "series_uid": "string", "study_uid": "string", "series_number": "Int64", "modality": "string",
    "body_part": "string", "series_description": "string", "protocol": "string", "manufacturer": "string",
    "model": "string", "field_strength_t": "float64", "kind": "string", "files": "Int64",
    "rows": "Int64", "columns": "Int64", "slices": "Int64", "volumes": "Int64",
    "spacing_i_mm": "float64", "spacing_j_mm": "float64", "spacing_k_mm": "float64",
    "slice_thickness_mm": "float64", "orientation": "string", "tilt_deg": "float64",
    "transfer_syntax": "string", "image_type": "string", "missing_slices": "Int64", "uneven_spacing": "boolean",
    "warnings": "string", "problem": "string"}
#: Typed key columns of a series row, in order (the keys plan filters such as ``modality=CT`` match).
SERIES_COLUMNS: tuple[str, ...] = tuple(SERIES_COLUMN_TYPES)
#: The one JSON text column holding what has no typed column (split, suffix, colour, echo time...).
EXTRA_COLUMN = "extra"
#: Patient-identifying columns (DICOM keyword of each): in a series row only with ``phi=True``, read from
#: the series' first file then (never kept by the scan).
PHI_KEYWORDS: dict[str, str] = {
    "patient_id": "PatientID", "patient_name": "PatientName", "patient_birth_date": "PatientBirthDate",
    "study_date": "StudyDate", "series_date": "SeriesDate", "acquisition_date": "AcquisitionDate",
    "accession_number": "AccessionNumber", "study_description": "StudyDescription",
    "institution_name": "InstitutionName"}
PHI_COLUMN_TYPES: dict[str, str] = {name: "string" for name in PHI_KEYWORDS}
#: Columns of an instance row (:func:`instance_row`): one per image file. ``position_*_lps_mm`` is
#: ImagePositionPatient as stored (LPS+ mm, centre of the first pixel); ``path`` names an archive
#: member as ``archive.zip!member``.
INSTANCE_COLUMN_TYPES: dict[str, str] = {
    "path": "string", "series_uid": "string", "study_uid": "string", "series_number": "Int64",
    "sop_instance_uid": "string", "modality": "string", "instance_number": "Int64",
    "acquisition_number": "Int64", "echo_number": "Int64", "temporal_position": "Int64",
    "echo_time_ms": "float64", "position_x_lps_mm": "float64", "position_y_lps_mm": "float64",
    "position_z_lps_mm": "float64", "rows": "Int64", "columns": "Int64", "frames": "Int64",
    "slice_thickness_mm": "float64", "image_type": "string", "transfer_syntax": "string"}
#: Output formats of :func:`write_index`, by file extension.
INDEX_FORMATS: tuple[str, ...] = (".csv", ".parquet", ".jsonl")


def series_row(series: Series, *, phi: bool = False) -> dict[str, Any]:
    """One index row for ``series``, from its headers only (no pixel data; no patient fields unless ``phi``).

    Keys are :data:`SERIES_COLUMNS` then ``extra``: UIDs as stored; ``rows``/``columns`` the matrix;
    ``slices``/``volumes`` the stored grid (multi-frame and mosaic files: until decoded);
    spacings in mm along the output axes i, j, k (None when unknown); ``orientation`` the
    RAS+ axis code; ``image_type`` the ImageType values joined by ``\\``; ``warnings`` joined
    by ``; ``; ``field_strength_t`` MagneticFieldStrength in tesla; ``extra`` a JSON object of
    the fields without a column (``split``, ``suffix``, ``colour``, ``echo_time_ms``,
    ``duplicates``, ``sop_class_uid``; absent when empty). With ``phi``, the
    :data:`PHI_KEYWORDS` columns follow, read from the first file's header.
    Include/exclude filters of a plan match these keys.
    """
    info = summarize_series(series)
    first = series.first
    spacing = info["spacing_mm"] or [None, None, None]
    shape = list(series.shape) + [1] * (4 - len(series.shape))
    extra = {"split": series.split, "suffix": series.suffix, "colour": info["colour"],
             "echo_time_ms": first.echo_time, "duplicates": len(series.duplicates),
             "sop_class_uid": first.sop_class_uid}
    row = {
        "series_uid": first.series_uid, "study_uid": first.study_uid, "series_number": series.series_number,
        "modality": series.modality, "body_part": first.body_part, "series_description": series.description,
        "protocol": first.protocol, "manufacturer": first.manufacturer, "model": first.model,
        "field_strength_t": first.field_strength, "kind": series.kind,
        "files": len(series.paths), "rows": first.rows, "columns": first.columns,
        "slices": int(shape[2]), "volumes": int(shape[3]),
        "spacing_i_mm": spacing[0], "spacing_j_mm": spacing[1], "spacing_k_mm": spacing[2],
        "slice_thickness_mm": first.slice_thickness, "orientation": info["orientation"],
        "tilt_deg": info["tilt_deg"], "transfer_syntax": first.transfer_syntax,
        "image_type": "\\".join(first.image_type), "missing_slices": info["missing_slices"],
        "uneven_spacing": bool(info["uneven_spacing"]), "warnings": "; ".join(info["warnings"]),
        "problem": info["problem"],
        EXTRA_COLUMN: json.dumps({k: v for k, v in extra.items() if v not in (None, "", 0)}, sort_keys=True),
    }
    if phi:
        row.update(phi_fields(series))
    return row


def phi_fields(series: Series) -> dict[str, str | None]:
    """The :data:`PHI_KEYWORDS` of ``series``' first file, read from its header now (None when absent
    or unreadable). Only :func:`series_row` with ``phi=True`` calls this."""
    try:
        header = series.first.load_header()
    except ConvertError:
        return dict.fromkeys(PHI_KEYWORDS)
    out: dict[str, str | None] = {}
    for column, keyword in PHI_KEYWORDS.items():
        value = header.get(keyword)
        text = "" if value is None else str(value).strip()
        out[column] = text or None
    return out


def instance_row(instance: Instance, path: str) -> dict[str, Any]:
    """One instance row (:data:`INSTANCE_COLUMN_TYPES`) for ``instance``; ``path`` as messages name it."""
    position = instance.position or (None, None, None)
    return {
        "path": path, "series_uid": instance.series_uid, "study_uid": instance.study_uid,
        "series_number": instance.series_number, "sop_instance_uid": instance.sop_instance_uid,
        "modality": instance.modality, "instance_number": instance.instance_number,
        "acquisition_number": instance.acquisition_number, "echo_number": instance.echo_number,
        "temporal_position": instance.temporal_position, "echo_time_ms": instance.echo_time,
        "position_x_lps_mm": position[0], "position_y_lps_mm": position[1], "position_z_lps_mm": position[2],
        "rows": instance.rows, "columns": instance.columns, "frames": instance.number_of_frames,
        "slice_thickness_mm": instance.slice_thickness, "image_type": "\\".join(instance.image_type),
        "transfer_syntax": instance.transfer_syntax}


@dataclass
class ArchiveIndex:
    """What :func:`build_index` found (no pandas needed: ``rows`` are plain dicts).

    Attributes:
        source: the path indexed (a folder, a file or an archive).
        rows: one dict per series (per instance with ``instances``), keys :attr:`columns`.
        columns: column name -> pandas dtype, in order.
        images: DICOM image files indexed.
        series: series assembled.
        skipped: ``(name, reason)`` of every other file (and unusable nested archive), names as
            :meth:`convert.batch.sources.Source.display` spells them (``exam.zip!README``).
    """

    source: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    images: int = 0
    series: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def build_index(path: str | Path, *, instances: bool = False, phi: bool = False,
                progress: Callable[[int, int], None] | None = None) -> ArchiveIndex:
    """Index the DICOM images under ``path`` (a folder, a file, a ``.zip`` or ``.tar(.gz)`` archive; archives
    inside are read too, see :mod:`convert.batch.sources`), reading headers only.

    Args:
        path: what to index.
        instances: one row per image file instead of one per series.
        phi: add the patient-identifying series columns (:data:`PHI_KEYWORDS`); without it they are never read.
        progress: called as ``progress(done, total)`` while files are read.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ArchiveError: ``path`` is an archive that cannot be read safely.
    """
    from convert.batch.sources import open_source
    from convert.dicom.scan import scan
    from convert.dicom.series import assemble

    found: list[Instance] = []
    index = ArchiveIndex(source=Path(path))
    with open_source(path) as source:
        left_out = {name for name, _ in source.problems}  # nested archives not read: their reason, not "not DICOM"
        done = 0
        for root in source.roots:
            offset = done
            report = (lambda n, total: progress(offset + n, offset + total)) if progress else None
            result = scan(root, progress=report, listing=source.listings.get(root))  # walked once
            done += result.files_seen
            found.extend(result.instances)
            index.skipped.extend((source.display(p), reason) for p, reason in result.skipped
                                 if p not in source.expanded and source.display(p) not in left_out)
        index.skipped.extend(source.problems)
        index.images = len(found)
        all_series = assemble(found)
        index.series = len(all_series)
        if instances:
            index.columns = dict(INSTANCE_COLUMN_TYPES)
            index.rows = [instance_row(i, source.display(i.path)) for i in found]
        else:
            index.columns = {**SERIES_COLUMN_TYPES, EXTRA_COLUMN: "string", **(PHI_COLUMN_TYPES if phi else {})}
            index.rows = [series_row(s, phi=phi) for s in all_series]  # phi: headers read while files exist
    return index


def _pandas() -> Any:
    try:
        import pandas
        import pyarrow  # noqa: F401  (Parquet, and pandas' string columns)
    except ImportError as exc:
        raise MissingDependencyError(f"the archive index needs pandas and pyarrow ({exc.name} is missing); "
                                     "install them with: pip install 'medconvert[index]'") from None
    return pandas


def to_frame(index: ArchiveIndex) -> "pandas.DataFrame":
    """``index`` as a DataFrame with typed columns (:attr:`ArchiveIndex.columns`)."""
    pandas = _pandas()
    frame = pandas.DataFrame.from_records(index.rows, columns=list(index.columns))
    return frame.astype(index.columns)


def index_archive(path: str | Path, *, instances: bool = False, phi: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> "pandas.DataFrame":
    """The archive index of ``path`` as a pandas DataFrame: ``convert.scan(path)``.

    One row per series (columns :data:`SERIES_COLUMNS` and ``extra``, a JSON object per row), or
    one per image file with ``instances=True`` (:data:`INSTANCE_COLUMN_TYPES`). ``path`` may be a
    folder, a file, a ``.zip`` or a ``.tar``/``.tar.gz``/``.tgz`` archive. Headers only: nothing
    is decoded. Patient-identifying columns (:data:`PHI_KEYWORDS`) only with ``phi=True``.
    For the files that are not DICOM images, use :func:`build_index` (``skipped``).

    Raises:
        MissingDependencyError: pandas/pyarrow are not installed (``pip install 'medconvert[index]'``).
        InputNotFoundError, ArchiveError: see :func:`build_index`.
    """
    _pandas()  # fail before the scan, not after it
    return to_frame(build_index(path, instances=instances, phi=phi, progress=progress))


def index_format(out: Path) -> str:
    """The :data:`INDEX_FORMATS` extension of ``out``, or raise UnsupportedFormatError naming it."""
    ext = out.suffix.lower()
    if ext not in INDEX_FORMATS:
        raise UnsupportedFormatError(f"an index is written as {', '.join(INDEX_FORMATS)}; not '{out.suffix}'", out)
    return ext


def write_index(frame: "pandas.DataFrame", out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``frame`` to ``out`` atomically (temporary name, then rename), the format from its extension:
    ``.csv`` (UTF-8, header row, empty cells for unknown values), ``.parquet`` (typed columns, pyarrow)
    or ``.jsonl`` (one JSON object per line, ``null`` for unknown values).

    Raises:
        UnsupportedFormatError: another extension. OutputExistsError: ``out`` exists and not ``overwrite``.
    """
    from convert.atomic import atomic_file

    out = Path(out)
    ext = index_format(out)
    _pandas()
    with atomic_file(out, overwrite=overwrite) as temp:
        if ext == ".csv":
            frame.to_csv(temp, index=False)
        elif ext == ".parquet":
            frame.to_parquet(temp, index=False, engine="pyarrow")
        else:
            frame.to_json(temp, orient="records", lines=True, force_ascii=False)
    return out
