"""convert/process/export.py: normalisation (statistics recorded) and PNG slice folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convert.errors import OutputExistsError, UnsupportedDataError
from convert.process import normalize, write_png_slices
from convert.volume import Meta, Volume


def _volume(values, dtype=np.float32, **kw) -> Volume:
    return Volume(np.asarray(values, dtype=dtype).reshape(-1, 1, 1), np.eye(4), **kw)


def test_zscore_minmax_percentile_and_their_statistics():
    v = _volume([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    z = normalize(v, "zscore")
    assert z.dtype == np.float32
    assert z.voxels().mean() == pytest.approx(0, abs=1e-6) and z.voxels().std() == pytest.approx(1, abs=1e-5)
    assert z.history[-1] == {"step": "normalize", "method": "zscore", "masked": False, "voxels": 10,
                             "mean": 4.5, "std": pytest.approx(np.std(np.arange(10)))}
    m = normalize(v, "minmax")
    assert m.voxels().min() == 0 and m.voxels().max() == 1
    assert (m.history[-1]["min"], m.history[-1]["max"]) == (0.0, 9.0)
    p = normalize(v, "percentile", percentiles=(10, 90))
    assert p.history[-1]["low"] == pytest.approx(0.9) and p.history[-1]["high"] == pytest.approx(8.1)
    assert p.voxels().min() == 0 and p.voxels().max() == 1


def test_normalize_inside_a_mask_and_bad_input():
    v = _volume([0, 0, 10, 20])
    mask = np.array([False, False, True, True]).reshape(-1, 1, 1)
    out = normalize(v, "minmax", mask=mask)
    assert out.voxels().ravel().tolist() == [-1.0, -1.0, 0.0, 1.0]  # statistics from the mask only
    assert out.history[-1]["voxels"] == 2
    with pytest.raises(UnsupportedDataError, match="constant"):
        normalize(_volume([3, 3, 3]), "zscore")
    with pytest.raises(UnsupportedDataError, match="unknown normalisation"):
        normalize(v, "robust")  # type: ignore[arg-type]


def test_png_slices_scale_16_bit_values_explicitly_never_truncate(tmp_path):
    arr = np.zeros((4, 3, 2), np.uint16)
    arr[0, 0, 0], arr[3, 2, 1] = 4000, 1000  # would wrap/truncate as uint8
    written = write_png_slices(Volume(arr, np.eye(4)), tmp_path / "png", bits=8)
    info = json.loads((tmp_path / "png" / "slices.json").read_text())
    assert (info["low"], info["high"], info["bits"]) == (0.0, 4000.0, 8)
    first = np.asarray(Image.open(written[0]))
    assert first.shape == (3, 4) and first.dtype == np.uint8  # rows j, columns i
    assert first[0, 0] == 255
    assert np.asarray(Image.open(written[1]))[2, 3] == round(1000 / 4000 * 255)


def test_png_slices_16_bit_identity_for_values_that_fit_and_window(tmp_path):
    arr = np.arange(24, dtype=np.uint16).reshape(4, 3, 2) * 1000
    written = write_png_slices(Volume(arr, np.eye(4)), tmp_path / "a", bits=16, axis=0)
    img = np.asarray(Image.open(written[1]))
    assert img.dtype == np.uint16 and img.shape == (2, 3)  # axis 0: rows k, columns j
    assert np.array_equal(img, arr[1].T)
    ct = Volume(np.array([-100, 40, 200], np.int16).reshape(1, 1, 3), np.eye(4), Meta(modality="CT", units="HU"))
    out = write_png_slices(ct, tmp_path / "b", window="brain")
    assert [int(np.asarray(Image.open(p))[0, 0]) for p in out[:3]] == [0, 128, 255]


def test_png_slices_float_volume_and_output_rules(tmp_path):
    v = Volume(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 2, 2), np.eye(4))
    write_png_slices(v, tmp_path / "f")
    info = json.loads((tmp_path / "f" / "slices.json").read_text())
    assert (info["low"], info["high"]) == (-1.0, 1.0)
    with pytest.raises(OutputExistsError):
        write_png_slices(v, tmp_path / "f")
    with pytest.raises(UnsupportedDataError, match="8 or 16"):
        write_png_slices(v, tmp_path / "g", bits=12)
    assert not (tmp_path / "g").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no temporary folder left behind


def test_cli_slices_writes_a_folder_and_refuses_bad_options(tmp_path):
    import nibabel as nib
    from typer.testing import CliRunner

    from convert.cli import app

    src = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)), src)
    runner = CliRunner()
    result = runner.invoke(app, ["slices", str(src), str(tmp_path / "png"), "--axis", "j", "--bits", "16"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "png" / "slices.json").read_text())
    assert info["axis"] == 1 and info["bits"] == 16 and len(info["files"]) == 3
    assert np.asarray(Image.open(tmp_path / "png" / "slice_0002.png")).shape == (4, 2)  # rows k, columns i
    bad = runner.invoke(app, ["slices", str(src), str(tmp_path / "b"), "--bits", "12"])
    assert bad.exit_code == 1 and "8 or 16" in bad.output and not (tmp_path / "b").exists()
    assert runner.invoke(app, ["slices", str(src), str(tmp_path / "c"), "--axis", "x"]).exit_code == 2
