"""Read-only legacy adapters (convert/formats/legacy.py): MINC1 and Philips PAR/REC against nibabel."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel import parrec

import convert
from convert.errors import ConvertError, CorruptFileError, UnsupportedDataError, UnsupportedFormatError
from convert.formats import detect, format_for_output
from convert.formats.legacy import MINC1, PARREC, parrec_paths
from convert.volume import Volume
from tests.test_minc import assert_same_world_values, mincstats, nibabel_xyz_data

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
MINC1_FILES = ["minc1_1_scale.mnc", "minc1_4d.mnc", "tiny.mnc", "minc1-no-att.mnc"]
#: PAR headers nibabel ships without their REC (we give them a synthetic REC of the right size)
HEADER_ONLY_PARS = sorted(p.name for p in NIB_DATA.glob("*.PAR") if not p.with_suffix(".REC").exists())


def _nib_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- MINC1
@pytest.mark.parametrize("name", MINC1_FILES)
def test_minc1_matches_nibabel_in_world_space(name):
    path = NIB_DATA / name
    vol = MINC1.read(path)
    img = _nib_quiet(nib.load, path)
    assert isinstance(img, nib.Minc1Image)
    assert_same_world_values(vol, nibabel_xyz_data(img), img.affine, rtol=1e-6)


def test_minc1_axes_are_reverse_file_order():
    vol = MINC1.read(NIB_DATA / "minc1_1_scale.mnc")  # zspace,yspace,xspace with 10, 20, 20 elements
    assert vol.shape == (20, 20, 10)
    assert vol.orientation == "RAS"
    assert np.allclose(vol.spacing, [2, 2, 2])


def test_minc1_4d_time_last_with_step():
    vol = MINC1.read(NIB_DATA / "minc1_4d.mnc")
    assert vol.shape == (20, 20, 10, 2)
    assert vol.meta.time_step == 1.0


def test_minc1_values_agree_with_mincstats():
    tool = shutil.which("mincstats")
    if tool is None:
        pytest.skip("mincstats not installed")
    vol = MINC1.read(NIB_DATA / "tiny.mnc")
    lo, hi, mean = mincstats(NIB_DATA / "tiny.mnc", "-min", "-max", "-mean")
    real = vol.scaled().astype(np.float64)
    assert (lo, hi, mean) == pytest.approx((real.min(), real.max(), real.mean()), rel=1e-5)


def test_minc1_detected_by_magic_not_extension():
    assert detect(NIB_DATA / "tiny.mnc").name == "minc1"
    assert not MINC1.sniff(NIB_DATA / "small.mnc")  # MINC2 (HDF5)


def test_minc1_convert_to_minc2_keeps_world_geometry(tmp_path):
    convert.convert(NIB_DATA / "minc1_4d.mnc", tmp_path / "out.mnc")
    src, out = MINC1.read(NIB_DATA / "minc1_4d.mnc"), convert.load(tmp_path / "out.mnc")
    assert np.allclose(out.affine, src.affine) and np.array_equal(out.scaled(), src.scaled())
    assert out.meta.time_step == 1.0


def test_minc1_truncated(tmp_path):
    data = (NIB_DATA / "minc1_1_scale.mnc").read_bytes()
    (tmp_path / "cut.mnc").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.mnc"):
        MINC1.read(tmp_path / "cut.mnc")


def test_minc1_netcdf_without_image(tmp_path):
    from nibabel.externals.netcdf import netcdf_file

    with netcdf_file(str(tmp_path / "other.mnc"), "w") as nc:
        nc.createDimension("n", 3)
        nc.createVariable("values", "f", ("n",))[:] = [1, 2, 3]
    with pytest.raises(CorruptFileError, match="not a MINC file"):
        MINC1.read(tmp_path / "other.mnc")


def test_minc1_cannot_be_written(tmp_path):
    assert format_for_output(tmp_path / "x.mnc").name == "minc2"
    with pytest.raises(UnsupportedFormatError, match="read but not written"):
        format_for_output(tmp_path / "x.mnc", "minc1")
    with pytest.raises(UnsupportedFormatError):
        MINC1.write(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "x.mnc")
    assert not (tmp_path / "x.mnc").exists()


# --------------------------------------------------------------------------- PAR/REC with shipped data
def test_parrec_matches_nibabel_dv_scaling():
    path = NIB_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR"
    vol = PARREC.read(path)
    img = _nib_quiet(parrec.load, str(path), scaling="dv")
    assert vol.shape == (64, 64, 9, 3)
    assert vol.dtype == np.uint16 and vol.is_scaled  # one scaling for every slice: stored values kept
    assert np.allclose(vol.affine, img.affine)
    assert np.allclose(vol.scaled(), img.get_fdata())
    assert vol.meta.time_step == 2.0
    assert vol.meta.modality == "MR" and vol.meta.manufacturer == "Philips"


def test_parrec_variable_per_slice_scaling_becomes_real_values():
    path = NIB_DATA / "phantom_varscale.PAR"
    vol = PARREC.read(path)
    img = _nib_quiet(parrec.load, str(path), scaling="dv")
    assert vol.dtype == np.float64 and not vol.is_scaled
    assert np.allclose(vol.array, img.get_fdata())


def test_parrec_read_through_rec_name_and_detect():
    rec = NIB_DATA / "phantom_EPI_asc_CLEAR_2_1.REC"
    assert detect(rec).name == "parrec"
    assert np.array_equal(convert.load(rec).array, PARREC.read(rec.with_suffix(".PAR")).array)


def test_parrec_affine_agrees_with_simpleitk_via_nifti(tmp_path):
    import SimpleITK as sitk

    from convert.geometry import ras_to_lps

    vol = PARREC.read(NIB_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR")
    convert.save(vol, tmp_path / "p.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "p.nii.gz"))
    lps = ras_to_lps(vol.affine)
    assert np.allclose(image.GetOrigin()[:3], lps[:3, 3], atol=1e-3)


def test_parrec_truncated_rec_is_refused():
    with pytest.raises(CorruptFileError, match="phantom_truncated"):
        PARREC.read(NIB_DATA / "phantom_truncated.PAR")


def test_parrec_lower_case_pair_and_missing_rec(tmp_path):
    shutil.copy(NIB_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR", tmp_path / "scan.par")
    with pytest.raises(CorruptFileError, match="scan.rec.*missing"):
        PARREC.read(tmp_path / "scan.par")
    shutil.copy(NIB_DATA / "phantom_EPI_asc_CLEAR_2_1.REC", tmp_path / "scan.REC")
    assert parrec_paths(tmp_path / "scan.par") == (tmp_path / "scan.par", tmp_path / "scan.REC")
    assert PARREC.read(tmp_path / "scan.par").shape == (64, 64, 9, 3)


def test_text_file_named_par_is_not_parrec(tmp_path):
    (tmp_path / "notes.par").write_text("shopping list\n")
    (tmp_path / "notes.rec").write_bytes(b"\x00" * 10)
    assert not PARREC.sniff(tmp_path / "notes.par")
    with pytest.raises(CorruptFileError, match="notes.par"):
        PARREC.read(tmp_path / "notes.par")
    with pytest.raises(CorruptFileError, match="notes.par"):
        detect(tmp_path / "notes.par")


# --------------------------------------------------------------------------- PAR headers with a synthetic REC
def _with_synthetic_rec(name: str, folder: Path) -> Path:
    """Copy a shipped header-only PAR and write a REC of the size it describes (a ramp)."""
    par = folder / name
    shutil.copy(NIB_DATA / name, par)
    with open(par) as fh:
        header = _nib_quiet(parrec.PARRECHeader.from_fileobj, fh, permit_truncated=True)
    defs = header.image_defs
    nx, ny = (int(v) for v in defs["recon resolution"][0])
    bits = int(defs["image pixel size"][0])
    ramp = (np.arange(len(defs) * nx * ny) % 4093).astype("<u2" if bits == 16 else "u1")
    par.with_suffix(".REC").write_bytes(ramp.tobytes())
    return par


@pytest.mark.parametrize("name", HEADER_ONLY_PARS)
def test_parrec_geometry_and_values_match_nibabel(tmp_path, name):
    par = _with_synthetic_rec(name, tmp_path)
    try:
        img = _nib_quiet(parrec.load, str(par), scaling="dv", permit_truncated=False)
        expected = img.get_fdata()
    except parrec.PARRECError:
        with pytest.raises((CorruptFileError, UnsupportedDataError), match=name):
            PARREC.read(par)
        return
    vol = PARREC.read(par)
    assert np.allclose(vol.affine, img.affine, atol=1e-6)
    expected = expected.reshape(expected.shape + (1,) * (3 - expected.ndim)) if expected.ndim < 3 else expected
    assert np.allclose(vol.scaled(), expected)


def test_parrec_angulated_sagittal_orientation(tmp_path):
    vol = PARREC.read(_with_synthetic_rec("Phantom_EPI_3mm_sag_15AP_SENSE_13_1.PAR", tmp_path))
    assert vol.orientation == "PIR"
    assert np.allclose(vol.spacing, [3.0, 3.0, 3.3], atol=1e-6)  # 3 mm slices + 0.3 mm gap
    cos = np.abs(vol.direction)
    c15 = np.cos(np.radians(15))  # 15 degree angulation about the left-right axis tilts two voxel axes
    assert np.allclose(sorted(cos.max(axis=0)), [c15, c15, 1.0], atol=1e-5)


def test_parrec_multi_echo_time_step_only_for_dynamics(tmp_path):
    vol = PARREC.read(_with_synthetic_rec("T1_dual_echo.PAR", tmp_path))
    assert vol.shape[3] == 2 and vol.meta.time_step is None  # two echoes, not two time points
    dyn = PARREC.read(_with_synthetic_rec("variant_v4_2_header.PAR", tmp_path))
    assert dyn.meta.time_step == 2.0  # dynamic scan begin times 0, 2, 4 s (TR field says 21 s)


def test_parrec_unsupported_slice_orientation_mix(tmp_path):
    par = _with_synthetic_rec("NA.PAR", tmp_path)
    with pytest.raises(UnsupportedDataError, match="NA.PAR"):
        PARREC.read(par)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_minc1_corrupted_bytes_raise_convert_error_or_read(tmp_path_factory, data):
    raw = bytearray((NIB_DATA / "tiny.mnc").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(4, len(raw)))
    path = tmp_path_factory.mktemp("fuzz") / "broken.mnc"
    path.write_bytes(bytes(raw[:cut]))
    try:
        vol = MINC1.read(path)
    except ConvertError as exc:
        assert "broken.mnc" in str(exc)
    else:
        assert vol.array.ndim in (3, 4)
