"""The Python API: ``load``, ``save``, ``convert``, ``describe``.

>>> import convert
>>> vol = convert.load("brain.nii.gz")          # doctest: +SKIP
>>> convert.save(vol, "brain.nrrd")             # doctest: +SKIP
>>> convert.convert("brain.mnc", "brain.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert.formats import detect, format_for_output
from convert.volume import Volume

PathLike = str | Path


def load(path: PathLike) -> Volume:
    """Read any supported image file (or a DICOM series folder) into a :class:`Volume`.

    The format is chosen by extension and confirmed by magic bytes. Raises a
    :class:`convert.errors.ConvertError` subclass naming the file when the input
    is missing, empty, truncated or not an image.
    """
    path = Path(path)
    fmt = detect(path)
    return fmt.read(path)


def save(volume: Volume, path: PathLike, *, to: str | None = None, overwrite: bool = False,
         **options: Any) -> list[Path]:
    """Write ``volume`` to ``path`` atomically; returns every file written.

    Args:
        volume: the volume to write.
        path: output file; its extension picks the format unless ``to`` is given.
        to: format name (see ``medconvert formats``), e.g. ``"nifti-gz"``.
        overwrite: replace existing outputs (default: refuse with OutputExistsError).
        **options: format-specific options (e.g. ``compresslevel``).
    """
    fmt = format_for_output(path, to)
    return fmt.write(volume, Path(path), overwrite=overwrite, **options)


def convert(src: PathLike, dst: PathLike, *, to: str | None = None, overwrite: bool = False,
            **options: Any) -> list[Path]:
    """Read ``src`` and write it to ``dst``; ``src`` is never modified. Returns the files written."""
    src, dst = Path(src), Path(dst)
    fmt = format_for_output(dst, to)  # fail on a bad output name before reading anything
    volume = load(src)
    return fmt.write(volume, dst, overwrite=overwrite, **options)


def describe(volume: Volume, format_name: str | None = None) -> dict[str, Any]:
    """A JSON-ready summary: format, shape, dtype, spacing (mm), orientation, affine, value range.

    A colour volume has dtype ``"RGB24 (uint8 R, G, B)"``, ``colour`` ``"RGB"`` and a
    value range over its three channels; scalar volumes have ``colour`` None.
    """
    lo, hi = volume.value_range()
    return {
        "format": format_name,
        "shape": list(volume.shape),
        "dtype": "RGB24 (uint8 R, G, B)" if volume.is_rgb else str(volume.dtype),
        "colour": "RGB" if volume.is_rgb else None,
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "orientation": volume.orientation,
        "origin_ras_mm": [round(float(o), 6) for o in volume.origin],
        "affine_ras": np.round(volume.affine, 6).tolist(),
        "scaling": {"slope": volume.slope, "intercept": volume.intercept},
        "value_range": [lo, hi],
        "time_step_s": volume.meta.time_step,
        "modality": volume.meta.modality,
        "units": volume.meta.units,
    }
