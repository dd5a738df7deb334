"""DICOM reading: scanning, series assembly, pixel decoding, multi-frame/mosaic, sidecars.

Public API::

    from convert.dicom import assemble, read_series
    from convert.dicom.scan import scan       # (also convert.scan); the module keeps its name
    result = scan("exam/")                    # headers only, fast
    series = assemble(result.instances)       # grouped, sorted along the slice normal, checked
    volume = read_series(series[0])           # Volume: [i, j, k(, t)], RAS+ affine in mm

Whole-tree conversion: :func:`convert.batch.convert_dicom_tree`.
"""

from __future__ import annotations

from convert.dicom.reader import (
    DICOM,
    SeriesHeaders,
    read_series,
    read_series_volumes,
    read_single,
    volume_warnings,
)
from convert.dicom.scan import Instance, ScanResult
from convert.dicom.series import Series, assemble

__all__ = ["DICOM", "Instance", "ScanResult", "Series", "SeriesHeaders", "assemble", "read_series",
           "read_series_volumes", "read_single", "volume_warnings"]
