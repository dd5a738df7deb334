"""Processing steps: pure functions ``Volume -> Volume``, each recorded in ``Volume.history``.

* :mod:`~convert.process.intensity`: ``hu``, ``window`` (presets, ``dicom``, ``C,W``), ``clip``, ``cast``;
* :mod:`~convert.process.geometry`: ``reorient``, ``flip``, ``resample``, ``resample_to``, ``crop``,
  ``crop_to_foreground``, ``pad_to``;
* :mod:`~convert.process.masks`: ``body_mask``, ``brain_mask``, ``foreground_mask``, ``apply_mask``;
* :mod:`~convert.process.export`: ``normalize``, ``write_png_slices``;
* :mod:`~convert.process.preview`: ``render_preview`` (three planes in one picture);
* :mod:`~convert.process.pipeline`: ``Pipeline``/``Step`` (the API's chained calls and lists of steps,
  and the CLI's fixed order).

See ``docs/processing.md``.
"""

from __future__ import annotations

from convert.process.export import normalize, write_png_slices
from convert.process.geometry import crop, crop_to_foreground, flip, pad_to, reorient, resample, resample_to
from convert.process.intensity import WINDOW_PRESETS, cast, clip, hu, window
from convert.process.masks import apply_mask, body_mask, brain_mask, foreground_mask
from convert.process.pipeline import CLI_ORDER, Pipeline, Step

__all__ = ["CLI_ORDER", "Pipeline", "Step", "WINDOW_PRESETS", "apply_mask", "body_mask", "brain_mask", "cast",
           "clip", "crop", "crop_to_foreground", "flip", "foreground_mask", "hu", "normalize", "pad_to",
           "reorient", "resample", "resample_to", "window", "write_png_slices"]
