"""convert/formats/npz.py: .npz / .npy outputs with the affine and spacing, read back and checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

import convert
from convert.errors import CorruptFileError
from convert.process import hu, resample
from convert.volume import Meta, Volume
from tests.conftest import oblique_affine


def test_npz_holds_voxels_affine_spacing_and_history(tmp_path):
    v = resample(hu(Volume(np.full((6, 5, 4), 1064, np.uint16), oblique_affine(), Meta(modality="CT"),
                           intercept=-1024.0)), 1.5)
    written = convert.save(v, tmp_path / "ct.npz")
    assert written == [tmp_path / "ct.npz"]
    with np.load(tmp_path / "ct.npz") as data:
        np.testing.assert_array_equal(data["voxels"], v.voxels())
        np.testing.assert_allclose(data["affine"], v.affine)
        np.testing.assert_allclose(data["spacing"], [1.5, 1.5, 1.5])
        assert str(data["orientation"]) == v.orientation and str(data["units"]) == "HU"
        assert [h["step"] for h in json.loads(str(data["history"]))] == ["hu", "resample"]
    back = convert.load(tmp_path / "ct.npz")
    np.testing.assert_allclose(back.affine, v.affine)
    assert back.meta.units == "HU" and [h["step"] for h in back.history] == ["hu", "resample"]


def test_npz_affine_agrees_with_nibabel(tmp_path):
    import nibabel as nib

    nii = tmp_path / "a.nii"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3), oblique_affine()), nii)
    convert.convert(nii, tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as data:
        img = nib.load(nii)
        np.testing.assert_allclose(data["affine"], img.affine, atol=1e-6)
        np.testing.assert_array_equal(data["voxels"], np.asarray(img.dataobj))
        np.testing.assert_allclose(data["spacing"], img.header.get_zooms()[:3], atol=1e-6)


def test_scaled_volume_is_written_as_real_values(tmp_path):
    v = Volume(np.array([0, 100], np.uint16).reshape(2, 1, 1), np.eye(4), slope=0.5, intercept=-10.0)
    convert.save(v, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as data:
        assert data["voxels"].dtype == np.float32 and data["voxels"].ravel().tolist() == [-10.0, 40.0]
    v2 = Volume(np.array([0, 65535], np.uint16).reshape(2, 1, 1), np.eye(4), intercept=-1024.0)
    convert.save(v2, tmp_path / "i.npz")
    with np.load(tmp_path / "i.npz") as data:
        assert data["voxels"].dtype == np.int32 and data["voxels"].ravel().tolist() == [-1024, 64511]


def test_npy_has_its_geometry_in_a_json_beside_it(tmp_path):
    v = Volume(np.arange(8, dtype=np.float32).reshape(2, 2, 2), oblique_affine())
    written = convert.save(v, tmp_path / "x.npy")
    assert written == [tmp_path / "x.npy", tmp_path / "x.json"]
    assert np.array_equal(np.load(tmp_path / "x.npy"), v.voxels())
    geometry = json.loads((tmp_path / "x.json").read_text())
    np.testing.assert_allclose(geometry["affine"], v.affine)
    np.testing.assert_allclose(convert.load(tmp_path / "x.npy").affine, v.affine)
    (tmp_path / "x.json").unlink()
    with pytest.raises(CorruptFileError, match="x.json"):
        convert.load(tmp_path / "x.npy")


def test_npz_without_voxels_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", data=np.zeros(3))
    with pytest.raises(CorruptFileError, match="'voxels' and 'affine'"):
        convert.load(tmp_path / "other.npz")
