"""convert/process/preview.py and ``medconvert preview``: three planes, physical proportions, letters."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convert.cli import app
from convert.errors import UnsupportedDataError
from convert.process import reorient
from convert.process.preview import render_preview
from convert.volume import Volume
from tests.test_process_geometry import ALL_CODES

SHAPE = (21, 25, 17)  # odd: the centre voxel is the same point in every orientation
SPACING = (1.0, 1.5, 2.0)
#: which side of which panels a marker must appear on, per patient direction
SIDES = {"L": {"axial": "L", "coronal": "L"}, "A": {"axial": "A", "sagittal": "A"},
         "S": {"coronal": "S", "sagittal": "S"}}


def _marker_volume(direction: str) -> Volume:
    """A RAS volume, zero but for a bright block towards patient ``direction`` (L, A or S)."""
    arr = np.zeros(SHAPE, np.int16)
    c = [(n - 1) // 2 for n in SHAPE]
    index = list(c)
    axis = "RAS".index({"L": "R", "A": "A", "S": "S"}[direction])
    index[axis] = 2 if direction == "L" else SHAPE[axis] - 3  # RAS: i increases towards the right
    arr[tuple(slice(v - 1, v + 2) for v in index)] = 1000
    affine = np.diag(list(SPACING) + [1.0])
    affine[:3, 3] = (-10.0, 4.0, 30.0)
    return Volume(arr, affine)


def _side(preview, panel: str) -> str:
    """Which labelled side of ``panel`` holds the bright marker ("L", "A"... from the panel's letters)."""
    (left, top, right, bottom), letters = preview.panels[panel]
    pixels = np.asarray(preview.image)[top:bottom, left:right].astype(float)
    ys, xs = np.nonzero(pixels > 128)
    assert xs.size, f"marker not visible in the {panel} panel"
    dx, dy = xs.mean() - (right - left) / 2, ys.mean() - (bottom - top) / 2
    if abs(dx) > abs(dy):
        return letters["left"] if dx < 0 else letters["right"]
    return letters["top"] if dy < 0 else letters["bottom"]


@pytest.mark.parametrize("code", ALL_CODES)
def test_markers_land_on_their_labelled_side_in_all_48_orientations(code):
    """mriqc #229: a preview that ignores the affine puts patient-left on the wrong side."""
    for direction, panels in SIDES.items():
        volume = reorient(_marker_volume(direction), code)
        preview = render_preview(volume, window=(500, 1000), height=96)
        for panel, expected in panels.items():
            assert _side(preview, panel) == expected, (code, direction, panel)


def test_radiological_is_the_default_and_neurological_mirrors_left_right():
    v = _marker_volume("L")
    radiological = render_preview(v, window=(500, 1000))
    neurological = render_preview(v, window=(500, 1000), convention="neurological")
    assert radiological.panels["axial"][1]["left"] == "R"  # patient right on image left
    assert neurological.panels["axial"][1]["left"] == "L"
    assert _side(radiological, "axial") == _side(neurological, "axial") == "L"
    assert _side(neurological, "coronal") == "L"


def test_panels_have_true_physical_proportions():
    preview = render_preview(_marker_volume("L"), height=200)
    sizes = {name: (box[2] - box[0], box[3] - box[1]) for name, (box, _) in preview.panels.items()}
    extent = np.array(SHAPE) * np.array(SPACING)  # mm along x (R-L), y (A-P), z (S-I)
    scale = 200 / max(extent[1], extent[2])
    assert sizes["axial"] == (round(extent[0] * scale), round(extent[1] * scale))
    assert sizes["coronal"] == (round(extent[0] * scale), round(extent[2] * scale))
    assert sizes["sagittal"] == (round(extent[1] * scale), round(extent[2] * scale))


@pytest.mark.parametrize("convention", ["radiological", "neurological"])
@pytest.mark.parametrize("height", [40, 160, 256])
def test_without_labels_only_the_text_outside_the_panels_is_left_out(convention, height):
    """The report's thumbnails keep one panel of an unlabelled preview: the same pixels as labelled."""
    volume = reorient(_marker_volume("A"), "LIP")
    labelled = render_preview(volume, convention=convention, height=height)
    plain = render_preview(volume, convention=convention, height=height, labels=False)
    assert plain.panels == labelled.panels
    for box, _ in labelled.panels.values():
        assert np.array_equal(np.asarray(plain.image.crop(box)), np.asarray(labelled.image.crop(box)))
    assert not np.array_equal(np.asarray(plain.image), np.asarray(labelled.image))  # the text is gone
    assert np.asarray(plain.image)[:50].max() == 0  # no title


def test_preview_bad_slice_and_colour():
    v = _marker_volume("L")
    with pytest.raises(UnsupportedDataError, match="outside the volume"):
        render_preview(v, slice_index=(0, 0, 99))


def test_cli_preview_writes_a_png_with_three_different_non_empty_panels(tmp_path):
    from convert.sample import write_sample

    written = write_sample(tmp_path / "s")
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["preview", str(written["dicom"]), "-o", str(out), "--window", "brain"])
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(out))
    assert image.ndim == 2 and image.shape[0] > 256 and image.shape[1] > 3 * 100
    from convert import load

    preview = render_preview(load(written["dicom"]), window="brain")
    assert preview.image.size == Image.open(out).size
    panels = [np.asarray(preview.image)[t:b, l:r] for (l, t, r, b), _ in preview.panels.values()]
    assert all(p.std() > 10 for p in panels)  # not empty
    assert not np.array_equal(panels[0], panels[1]) and not np.array_equal(panels[1], panels[2])
    again = CliRunner().invoke(app, ["preview", str(written["dicom"]), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_cli_preview_bad_window_is_one_line_and_no_output(tmp_path):
    from convert.sample import write_sample

    written = write_sample(tmp_path / "s")
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["preview", str(written["dicom"]), "-o", str(out), "--window", "nope"])
    assert result.exit_code == 1 and "unknown window 'nope'" in result.output
    assert "Traceback" not in result.output and not out.exists()
