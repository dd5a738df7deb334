"""Whole-archive conversion: scan, index, plan, run (locally or on Dask), resume, report.

Public API::

    from convert.batch import convert_dicom_tree
    report = convert_dicom_tree("exam/", "out/")   # every series -> .nii.gz + .json
    report.outcomes, report.failed, report.written

Modules: :mod:`~convert.batch.naming` (output names), :mod:`~convert.batch.report`
(what a run did), :mod:`~convert.batch.index` (series summaries and the archive index
from headers only: ``convert.scan``), :mod:`~convert.batch.sources` (folders, ``.zip`` and
``.tar(.gz)`` inputs, opened safely), :mod:`~convert.batch.run` (the conversion jobs).
"""

from __future__ import annotations

from convert.batch.report import Report, SeriesOutcome
from convert.batch.run import convert_dicom_file, convert_dicom_tree

__all__ = ["Report", "SeriesOutcome", "convert_dicom_file", "convert_dicom_tree"]
