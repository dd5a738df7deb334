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
    from convert.geometry import orientation_code

    assert info["orientation"] == orientation_code(oblique_affine())


def test_dicom_api_is_lazy_and_reachable(tmp_path):
    # Non-DICOM work never imports pydicom; convert.scan / convert.anonymize load it on first use.
    import subprocess
    import sys

    code = ("import sys, convert; before = 'pydicom' in sys.modules; s = convert.scan; a = convert.anonymize; "
            "print(before, callable(s), callable(a))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr


def test_docs_convert_example_runs_and_prints_what_it_says(tmp_path, monkeypatch, capsys):
    """docs/api.md: the folder-job example is runnable as written (on the synthetic sample series)."""
    import re

    from tests.conftest import REPO

    text = (REPO / "docs" / "api.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "write_sample" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/api.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["#2 'Head phantom axial' 64x64x40 ['2_Head_phantom_axial.nii.gz', '2_Head_phantom_axial.json'] []",
                     "['ct.nii.gz', 'ct.json'] []"]
    assert (tmp_path / "demo" / "out" / "2_Head_phantom_axial.nii.gz").is_file()


def test_convert_returns_a_list_with_warnings_for_single_outputs(tmp_path, rng):
    src = tmp_path / "src.nii"
    convert.save(_vol(rng), src)
    written = convert.convert(src, tmp_path / "dst.nrrd")
    assert written == [tmp_path / "dst.nrrd"] and written.warnings == []


def test_convert_dicom_folder_job_reports_per_series(tmp_path):
    from fixtures.dicom_series import make_series

    make_series(tmp_path / "in" / "a", series_number=3, description="one")
    make_series(tmp_path / "in" / "b", series_number=4, description="two", seed=2)
    report = convert.convert(tmp_path / "in", tmp_path / "out", sidecar=False)
    assert report.ok and [o.label.split()[0] for o in report.outcomes] == ["#3", "#4"]
    assert sorted(p.name for p in report.written) == ["3_one.nii.gz", "4_two.nii.gz"]
    with pytest.raises(TypeError):
        convert.convert(tmp_path / "in", tmp_path / "out2", compresslevel=1)  # writer options: non-DICOM only
