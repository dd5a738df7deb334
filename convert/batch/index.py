"""Series summaries from headers only (nothing decoded): what ``medconvert info`` and the index show."""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.dicom.pixels import is_colour
from convert.dicom.reader import spacing_note
from convert.dicom.series import Series
from convert.errors import ConvertError, spell
from convert.geometry import lps_to_ras, orientation_code, slice_affine_lps


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


#: Typed key columns of a series row (:func:`series_row`), in order; anything else goes in ``extra``.
SERIES_COLUMNS: tuple[str, ...] = (
    "series_uid", "study_uid", "series_number", "modality", "series_description", "kind", "files",
    "rows", "columns", "slices", "volumes", "spacing_i_mm", "spacing_j_mm", "spacing_k_mm", "slice_thickness_mm",
    "orientation", "tilt_deg", "transfer_syntax", "image_type", "missing_slices", "uneven_spacing", "warnings",
    "problem")


def series_row(series: Series) -> dict[str, Any]:
    """One index row for ``series``, from its headers only (no pixel data, no patient fields).

    Keys are :data:`SERIES_COLUMNS`: UIDs as stored; ``rows``/``columns`` the matrix;
    ``slices``/``volumes`` the stored grid (multi-frame and mosaic files: until decoded);
    spacings in mm along the output axes i, j, k (None when unknown); ``orientation`` the
    RAS+ axis code; ``image_type`` the ImageType values joined by ``\\``; ``warnings`` joined
    by ``; ``. Include/exclude filters of a plan match these keys.
    """
    info = summarize_series(series)
    first = series.first
    spacing = info["spacing_mm"] or [None, None, None]
    shape = list(series.shape) + [1] * (4 - len(series.shape))
    return {
        "series_uid": first.series_uid, "study_uid": first.study_uid, "series_number": series.series_number,
        "modality": series.modality, "series_description": series.description, "kind": series.kind,
        "files": len(series.paths), "rows": first.rows, "columns": first.columns,
        "slices": int(shape[2]), "volumes": int(shape[3]),
        "spacing_i_mm": spacing[0], "spacing_j_mm": spacing[1], "spacing_k_mm": spacing[2],
        "slice_thickness_mm": first.slice_thickness, "orientation": info["orientation"],
        "tilt_deg": info["tilt_deg"], "transfer_syntax": first.transfer_syntax,
        "image_type": "\\".join(first.image_type), "missing_slices": info["missing_slices"],
        "uneven_spacing": bool(info["uneven_spacing"]), "warnings": "; ".join(info["warnings"]),
        "problem": info["problem"],
    }
