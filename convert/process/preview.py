"""A picture of a volume: axial, coronal and sagittal slices side by side (PNG).

Slices are taken after :func:`convert.process.geometry.reorient` to LPS (exact,
nearest world axes for an oblique volume), so what is drawn follows the affine,
never the array order of the file. Panels are in true physical proportions (one
mm-per-pixel scale for all three). Orientation letters (R/L, A/P, S/I) are drawn
at the edges of every panel and the convention is written on the picture:

* ``radiological`` (default): patient right on image left in axial and coronal
  panels (as if facing the patient / looking up from the feet);
* ``neurological``: patient left on image left.

Sagittal panels show anterior on the left. Superior is up in coronal and sagittal
panels, anterior up in axial panels. Pillow draws the picture (it is small,
already in the test extra, writes PNG without a GUI backend; matplotlib would add
a much larger dependency for three images and some text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from convert.errors import UnsupportedDataError
from convert.volume import Volume

Convention = Literal["radiological", "neurological"]


@dataclass
class Preview:
    """The rendered picture and, per panel, its box ``(left, top, right, bottom)`` in pixels and its
    edge letters ``{"left": "R", "right": "L", "top": "A", "bottom": "P"}``."""

    image: Any
    panels: dict[str, tuple[tuple[int, int, int, int], dict[str, str]]] = field(default_factory=dict)
    slice_index: tuple[int, int, int] = (0, 0, 0)
    convention: str = "radiological"


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _display_range(volume: Volume, data: np.ndarray, window: str | tuple[float, float] | None) -> tuple[float, float, str]:
    from convert.process.intensity import resolve_window

    if window is not None:
        center, width, label = resolve_window(window, volume)
        return center - width / 2.0, center + width / 2.0, f"window {label}"
    if volume.meta.window:
        center, width, label = resolve_window("dicom", volume)
        return center - width / 2.0, center + width / 2.0, "window dicom"
    finite = data[np.isfinite(data)]
    if not finite.size:
        return 0.0, 1.0, "no finite values"
    lo, hi = (float(v) for v in np.percentile(finite, (1.0, 99.0)))
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max()) + (0.0 if finite.max() > finite.min() else 1.0)
    return lo, hi, "1st-99th percentile"


def render_preview(volume: Volume, *, window: str | tuple[float, float] | None = None,
                   slice_index: Sequence[int] | None = None, convention: Convention = "radiological",
                   height: int = 256, labels: bool = True) -> Preview:
    """Render the three planes through voxel ``slice_index`` (``(i, j, k)`` of ``volume`` as stored;
    default the centre voxel) with ``window`` (a preset, ``dicom``, ``C,W``; default the series' DICOM
    window, else the 1st..99th percentile of the three planes). A 4D volume shows its first volume; colour is refused.
    ``labels=False`` leaves out the text (title, orientation letters, plane names: all outside the panel
    boxes), for callers that keep only a panel, such as the report's thumbnails.

    Raises:
        UnsupportedDataError: colour input, a slice index outside the volume, unknown convention.
    """
    from PIL import Image, ImageDraw

    from convert.process.geometry import reorient

    volume.require_scalar("preview")
    if convention not in ("radiological", "neurological"):
        raise UnsupportedDataError(f"convention must be 'radiological' or 'neurological', not '{convention}'")
    shape = volume.shape[:3]
    index = [(n - 1) // 2 for n in shape] if slice_index is None else [int(v) for v in slice_index]
    if len(index) != 3 or any(not 0 <= v < n for v, n in zip(index, shape)):
        raise UnsupportedDataError(f"--slice {','.join(str(v) for v in index)} is outside the volume "
                                   f"(shape {shape[0]}x{shape[1]}x{shape[2]}; indices start at 0)")
    first = volume if len(volume.shape) == 3 else volume.replace(array=volume.voxels()[..., 0])
    world = first.world_coordinates(np.asarray(index, dtype=np.float64))
    lps = reorient(first, "LPS")
    ijk = np.linalg.solve(lps.affine[:3, :3], world - lps.affine[:3, 3])
    x, y, z = (int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(ijk, lps.shape))
    stored = lps.voxels()

    def real(plane: np.ndarray) -> np.ndarray:  # only the three planes are scaled, not the volume
        return plane.astype(np.float32) * np.float32(lps.slope) + np.float32(lps.intercept)

    sx, sy, sz = (float(s) for s in lps.spacing)
    neuro = convention == "neurological"
    # each plane: (rows x cols array, row spacing, col spacing, letters)
    axial = real(stored[:, :, z]).T  # rows y (anterior first), cols x (patient right first)
    coronal = real(stored[:, y, :]).T[::-1, :]  # rows z (superior first), cols x
    sagittal = real(stored[x, :, :]).T[::-1, :]  # rows z, cols y (anterior first)
    lo, hi, range_label = _display_range(volume, np.concatenate([p.ravel() for p in (axial, coronal, sagittal)]),
                                         window)
    lr = {"left": "L", "right": "R"} if neuro else {"left": "R", "right": "L"}
    if neuro:
        axial, coronal = axial[:, ::-1], coronal[:, ::-1]
    planes = [("axial", axial, sy, sx, {**lr, "top": "A", "bottom": "P"}, "axial"),
              ("coronal", coronal, sz, sx, {**lr, "top": "S", "bottom": "I"}, "coronal"),
              ("sagittal", sagittal, sz, sy, {"left": "A", "right": "P", "top": "S", "bottom": "I"},
               "sagittal")]
    tallest = max(p[1].shape[0] * p[2] for p in planes)
    mm_to_px = height / tallest
    margin, header = 18, 56
    font, small = (_font(14), _font(11)) if labels else (None, None)
    sizes = [(max(1, round(p[1].shape[1] * p[3] * mm_to_px)), max(1, round(p[1].shape[0] * p[2] * mm_to_px)))
             for p in planes]
    width = sum(w for w, _ in sizes) + margin * (2 * len(planes) + 1)
    canvas = Image.new("L", (width, header + height + 2 * margin), 0)
    draw = ImageDraw.Draw(canvas)
    oblique = not np.allclose(np.abs(lps.direction), np.eye(3), atol=1e-4)
    title = (f"{convention} convention: patient {'left' if neuro else 'right'} on image left"
             + ("; oblique volume shown on its nearest axes" if oblique else ""))
    if labels:
        draw.text((margin, 4), title, fill=255, font=font)
        draw.text((margin, 22), f"{range_label} [{lo:g}, {hi:g}]; voxel ({index[0]}, {index[1]}, {index[2]}); "
                  f"file axes {volume.orientation}", fill=200, font=small)
    result = Preview(image=canvas, slice_index=(index[0], index[1], index[2]), convention=convention)
    left = margin
    for (name, plane, _, _, letters, label), (w, h) in zip(planes, sizes):
        left += margin
        top = header + margin + (height - h) // 2
        scaled = np.clip((np.nan_to_num(plane, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
        tile = Image.fromarray(np.rint(scaled * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        canvas.paste(tile, (left, top))
        draw.rectangle((left - 1, top - 1, left + w, top + h), outline=90)
        if labels:
            draw.text((left + w // 2 - 4, top - 16), letters["top"], fill=255, font=font)
            draw.text((left + w // 2 - 4, top + h + 1), letters["bottom"], fill=255, font=font)
            draw.text((left - 14, top + h // 2 - 8), letters["left"], fill=255, font=font)
            draw.text((left + w + 3, top + h // 2 - 8), letters["right"], fill=255, font=font)
            draw.text((left, top - 30), label, fill=200, font=small)  # above the panel: the picture stays clean
        result.panels[name] = ((left, top, left + w, top + h), dict(letters))
        left += w + margin
    return result


def save_preview(volume: Volume, path: str | Path, *, overwrite: bool = False, **options: Any) -> Path:
    """:func:`render_preview` written to ``path`` as PNG, atomically; returns the path."""
    from convert.atomic import atomic_file

    preview = render_preview(volume, **options)
    path = Path(path)
    with atomic_file(path, overwrite=overwrite) as temp:
        preview.image.save(temp, format="PNG")
    return path
