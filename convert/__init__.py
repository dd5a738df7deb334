"""medconvert: convert medical images between formats and strip PHI from them.

Public API::

    import convert
    vol = convert.load("scan.nii.gz")      # -> convert.Volume (RAS+ affine, [i, j, k(, t)] array)
    convert.save(vol, "scan.nrrd")
    convert.convert("dicom_folder", "scan.nii.gz")
    index = convert.scan("archive.zip")    # -> pandas.DataFrame, one row per series (headers only)
"""

from __future__ import annotations

from convert.api import convert, describe, load, save
from convert.errors import ConvertError
from convert.version import __version__
from convert.volume import Meta, Volume

__all__ = ["ConvertError", "Meta", "Volume", "anonymize", "convert", "describe", "load", "save", "scan",
           "__version__"]



def __getattr__(name: str) -> object:
    """Import the DICOM-side API on first use: ``anonymize`` (a callable package) and ``scan``
    (:func:`convert.batch.index.index_archive`: the archive index as a DataFrame).

    Both pull in pydicom (~0.15-0.4 s), which non-DICOM work never needs.
    """
    import importlib

    if name == "anonymize":
        return importlib.import_module("convert.anonymize")
    if name == "scan":
        return importlib.import_module("convert.batch.index").index_archive
    raise AttributeError(f"module 'convert' has no attribute {name!r}")

