"""DICOM reading: scanning, series assembly, pixel decoding, multi-frame/mosaic, sidecars.

Public API::

    from convert.dicom import assemble, read_series, convert_dicom_tree
    from convert.dicom.scan import scan       # (also convert.scan); the module keeps its name
    result = scan("exam/")                    # headers only, fast
    series = assemble(result.instances)       # grouped, sorted along the slice normal, checked
    volume = read_series(series[0])           # Volume: [i, j, k(, t)], RAS+ affine in mm
    report = convert_dicom_tree("exam/", "out/")   # every series -> .nii.gz + .json
"""

from __future__ import annotations

from convert.dicom.reader import (
    DICOM,
    Report,
    SeriesHeaders,
    SeriesOutcome,
    convert_dicom_tree,
    read_series,
    read_series_volumes,
    read_single,
    summarize_series,
    volume_warnings,
)
from convert.dicom.scan import Instance, ScanResult
from convert.dicom.series import Series, assemble

__all__ = ["DICOM", "Instance", "Report", "ScanResult", "Series", "SeriesHeaders", "SeriesOutcome", "assemble",
           "convert_dicom_tree", "read_series", "read_series_volumes", "read_single", "summarize_series",
           "volume_warnings"]
