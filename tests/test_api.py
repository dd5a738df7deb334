"""Python API (convert/api.py): load, save, convert, describe."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

import convert
from convert.errors import OutputExistsError, UnsupportedFormatError
from tests.conftest import oblique_affine


def _vol(rng):
    return convert.Volume(rng.integers(0, 1000, size=(6, 5, 4)).astype(np.int16), oblique_affine())


def test_save_load_round_trip(tmp_path, rng):
    vol = _vol(rng)
    written = convert.save(vol, tmp_path / "a.nii.gz")
    assert written == [tmp_path / "a.nii.gz"]
    back = convert.load(tmp_path / "a.nii.gz")
    assert np.array_equal(back.array, vol.array) and np.allclose(back.affine, vol.affine)


def test_save_refuses_overwrite_by_default(tmp_path, rng):
    convert.save(_vol(rng), tmp_path / "a.nii")
    before = (tmp_path / "a.nii").read_bytes()
    with pytest.raises(OutputExistsError):
        convert.save(_vol(rng), tmp_path / "a.nii")
    assert (tmp_path / "a.nii").read_bytes() == before
    convert.save(_vol(rng), tmp_path / "a.nii", overwrite=True)


def test_convert_never_touches_source(tmp_path, rng):
    src = tmp_path / "src.nii"
    convert.save(_vol(rng), src)
    stat_before, bytes_before = os.stat(src), src.read_bytes()
    convert.convert(src, tmp_path / "dst.nii.gz")
    assert src.read_bytes() == bytes_before and os.stat(src).st_mtime_ns == stat_before.st_mtime_ns
    assert np.allclose(nib.load(tmp_path / "dst.nii.gz").affine, oblique_affine())


def test_convert_bad_output_name_fails_before_reading(tmp_path):
    with pytest.raises(UnsupportedFormatError):
        convert.convert(tmp_path / "does-not-matter.nii", tmp_path / "out.xyz")


def test_describe(rng):
    info = convert.describe(_vol(rng), "nifti")
    assert info["shape"] == [6, 5, 4] and info["dtype"] == "int16"
    assert info["spacing_mm"] == pytest.approx([0.8, 1.1, 2.5])
    assert np.allclose(info["affine_ras"], oblique_affine(), atol=1e-6)
    from convert.volume import orientation_code

    assert info["orientation"] == orientation_code(oblique_affine())


def test_dicom_api_is_lazy_and_reachable(tmp_path):
    # Non-DICOM work never imports pydicom; convert.scan / convert.anonymize load it on first use.
    import subprocess
    import sys

    code = ("import sys, convert; before = 'pydicom' in sys.modules; s = convert.scan; a = convert.anonymize; "
            "print(before, callable(s), callable(a))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr
