"""convert/dicom/writer.py: volumes out as DICOM series, checked by independent readers and validators.

Geometry is always compared in world space against readers that are not ours: dcm2niix (the
pip package's binary), SimpleITK's ImageSeriesReader (GDCM) and our own reader, each through
``nibabel.as_closest_canonical`` (same shape, same values, affine within 1e-4 mm). The DICOM
validators dciodvfy/dcentvfy (Debian package dicom3tools) run when installed: zero errors.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convert
from conftest import CONFORMANCE, conformance_dir, oblique_affine, require_tool
from convert.dicom.writer import (IMPLEMENTATION_CLASS_UID, VR_MAX_LENGTH, choose_storage, fit_text,
                                  patient_orientation, write_series)
from convert.errors import ConvertError, OutputExistsError, OutputWriteError, UnsupportedDataError
from convert.sample import ORIENTATIONS, SeriesSpec, write_series as write_sample_series
from convert.geometry import lps_to_ras
from convert.volume import Meta, Volume

SHAPE = (5, 4, 3)  # every axis a different length: a swapped axis cannot go unnoticed
SPACING = (0.9, 1.3, 2.1)
ORIGIN = (-20.5, 13.25, 31.0)


# --------------------------------------------------------------------------- helpers
def axis_affines() -> list[np.ndarray]:
    """The 48 axis-aligned orientations: every permutation of the axes times every sign pattern."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            rot = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                rot[row, col] = sign
            affine = np.eye(4)
            affine[:3, :3] = rot @ np.diag(SPACING)
            affine[:3, 3] = ORIGIN
            out.append(affine)
    return out


def plane_affine(plane: str, spacing=(0.8, 1.1, 2.5), origin=(-91.5, 12.25, 40.0)) -> np.ndarray:
    """RAS+ affine of a series with the DICOM cosines of ``convert.sample.ORIENTATIONS[plane]``."""
    row, col = (np.asarray(v, dtype=float) for v in ORIENTATIONS[plane])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[0], col * spacing[1], np.cross(row, col) * spacing[2]
    lps[:3, 3] = origin
    return lps_to_ras(lps)


def make_data(kind: str, shape=SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "int16":
        return rng.integers(-32768, 32767, shape, endpoint=True).astype(np.int16)
    if kind == "uint16":
        return rng.integers(0, 65535, shape, endpoint=True).astype(np.uint16)
    return (rng.normal(0.0, 1.0, shape) * 437.25 + 12.5).astype(np.float32)


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float64), affine))
    return np.asarray(img.dataobj, dtype=np.float64), img.affine


def assert_same_world(got_data, got_affine, want: Volume, tolerance: float = 0.0) -> None:
    """``got`` shows ``want``'s real values at the same world positions (affine within 1e-4 mm)."""
    got_d, got_a = canonical(got_data, got_affine)
    want_d, want_a = canonical(want.scaled(), want.affine)
    assert got_d.shape == want_d.shape
    np.testing.assert_allclose(got_a, want_a, atol=1e-4, rtol=0)
    if tolerance == 0.0:
        np.testing.assert_array_equal(got_d, want_d)
    else:
        assert float(np.max(np.abs(got_d - want_d))) <= tolerance


def dcm2niix(folder: Path, out: Path) -> dict[str, nib.Nifti1Image]:
    """dcm2niix over ``folder`` (every series under it), files named by SeriesNumber: ``{"7": image}``."""
    exe = require_tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s", "-o", str(out), str(folder)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {p.name[:-4]: nib.load(str(p)) for p in sorted(out.glob("*.nii"))}


def sitk_read(folder: Path, files: list[Path] | None = None) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = [str(p) for p in files] if files else reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    return Volume.from_sitk(reader.Execute())


def quantisation_bound(volume: Volume) -> float:
    storage = choose_storage(volume)
    return 0.0 if storage.exact else storage.max_error


def validator_errors(files: list[Path]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of dciodvfy on each file and dcentvfy on the set; skip when not installed."""
    dciodvfy, dcentvfy = require_tool("dciodvfy"), require_tool("dcentvfy")
    errors, warnings = [], []
    for path in files:
        proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        lines = (proc.stdout + proc.stderr).splitlines()
        errors += [f"{path.name}: {line}" for line in lines if line.startswith(("Error", "Abort"))]
        warnings += [line for line in lines if line.startswith("Warning")]
    proc = subprocess.run([dcentvfy, *map(str, files)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors += [f"dcentvfy: {line}" for line in lines if line.startswith(("Error", "Abort"))]
    warnings += [f"dcentvfy: {line}" for line in lines if line.startswith("Warning")]
    return errors, sorted(set(warnings))


# --------------------------------------------------------------------------- all 48 orientations
def test_all_48_orientations_int16_uint16_float_read_back_by_us_dcm2niix_and_simpleitk(tmp_path):
    """Each of the 48 axis orientations with int16, uint16 and float32 data (144 series of 5x4x3):
    integer voxels bit-exact and float within the stated quantisation bound; affine within 1e-4 mm,
    for our reader, dcm2niix and SimpleITK's ImageSeriesReader alike."""
    root = tmp_path / "series"
    root.mkdir()
    cases: dict[str, tuple[Path, Volume]] = {}
    number = 0
    for n, affine in enumerate(axis_affines()):
        for kind in ("int16", "uint16", "float32"):
            number += 1
            modality = {"int16": "CT", "uint16": "MR", "float32": ("CT", "MR", "OT")[n % 3]}[kind]
            volume = Volume(make_data(kind, seed=number), affine, Meta(modality=modality))
            folder = root / f"s{number:03d}"
            write_series(volume, folder, series_number=number)
            cases[str(number)] = (folder, volume)
    assert len(cases) == 144
    converted = dcm2niix(root, tmp_path / "nii")
    assert sorted(converted, key=int) == sorted(cases, key=int)
    for key, (folder, volume) in cases.items():
        bound = quantisation_bound(volume)
        ours = convert.load(folder)
        assert_same_world(ours.scaled(), ours.affine, volume, bound)
        img = converted[key]
        assert_same_world(img.get_fdata(dtype=np.float64), img.affine, volume, bound * 1.0001 + 1e-6)
        itk = sitk_read(folder)
        assert_same_world(itk.scaled(), itk.affine, volume, bound * 1.0001 + 1e-6)


# --------------------------------------------------------------------------- planes, 3D and 4D
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal", "oblique"])
@pytest.mark.parametrize("times", [1, 3])
def test_round_trip_3d_and_4d_by_plane(tmp_path, plane, times):
    """Axial/coronal/sagittal/oblique, 3D and 4D: our reader gives identical voxels and the affine
    within 1e-4 mm; dcm2niix and SimpleITK (4D: the files of the first time point) the same geometry."""
    shape = (7, 6, 5) + ((times,) if times > 1 else ())
    volume = Volume(make_data("int16", shape), plane_affine(plane), Meta(modality="MR", time_step=2.5))
    files = write_series(volume, tmp_path / "dcm")
    assert len(files) == 5 * times
    ours = convert.load(tmp_path / "dcm")
    assert ours.shape == volume.shape
    if times > 1:
        assert ours.meta.time_step == pytest.approx(2.5)
        for t in range(times):
            assert_same_world(ours.scaled()[..., t], ours.affine, volume.replace(array=volume.voxels()[..., t]))
    else:
        assert_same_world(ours.scaled(), ours.affine, volume)
    img = dcm2niix(tmp_path / "dcm", tmp_path / "nii")["1"]
    assert img.shape == volume.shape
    for t in range(times):
        frame = img.get_fdata()[..., t] if times > 1 else img.get_fdata()
        assert_same_world(frame, img.affine, volume.replace(array=volume.voxels()[..., t] if times > 1
                                                             else volume.voxels()))
    first = [p for p in files if int(pydicom.dcmread(p, stop_before_pixels=True).get(
        "TemporalPositionIdentifier", 1)) == 1]
    itk = sitk_read(tmp_path / "dcm", first)
    assert_same_world(itk.scaled(), itk.affine, volume.replace(array=volume.voxels()[..., 0] if times > 1
                                                                else volume.voxels()))


def test_4d_is_one_series_with_temporal_positions(tmp_path):
    """Decision: a 4D volume is ONE series (a PACS shows one dynamic series), slices repeated per time point."""
    volume = Volume(make_data("uint16", (4, 3, 2, 3)), oblique_affine(), Meta(modality="MR", time_step=1.5))
    files = write_series(volume, tmp_path / "dcm")
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert [int(h.TemporalPositionIdentifier) for h in headers] == [1, 1, 2, 2, 3, 3]
    assert {int(h.NumberOfTemporalPositions) for h in headers} == {3}
    assert [int(h.InstanceNumber) for h in headers] == list(range(1, 7))


def test_instance_numbers_follow_the_slices_in_space(tmp_path):
    """InstanceNumber 1..n runs along k; every IPP is voxel (0, 0, k) of the affine, in LPS."""
    volume = Volume(make_data("int16", (4, 3, 6)), oblique_affine(), Meta(modality="CT"))
    files = write_series(volume, tmp_path / "dcm")
    lps = np.diag([-1, -1, 1, 1]) @ volume.affine
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert int(ds.InstanceNumber) == k + 1
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], lps[:3, 3] + k * lps[:3, 2],
                                   atol=1e-6)


# --------------------------------------------------------------------------- values
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.floats(-1e6, 1e6), span=st.floats(1e-3, 1e7), seed=st.integers(0, 2 ** 16))
def test_float_quantisation_error_is_at_most_half_a_step(lo, span, seed):
    """Float data -> uint16 over [min, max]: every voxel within Storage.max_error = slope/2 (+ DS rounding)."""
    from convert.dicom.writer import encode_slice

    rng = np.random.default_rng(seed)
    data = lo + span * rng.random((6, 5, 2))
    data[0, 0, 0], data[-1, -1, -1] = lo, lo + span  # the extremes are present
    volume = Volume(data, np.eye(4))
    storage = choose_storage(volume)
    assert not storage.exact and storage.dtype == np.uint16 and len(storage.slope) <= 16
    slope, intercept = float(storage.slope), float(storage.intercept)
    assert storage.max_error <= slope / 2 * (1 + 1e-9) + abs(intercept - data.min()) + 1e-12 * max(abs(lo), lo + span, 1)
    assert storage.max_error <= span / 131070 * 1.001 + 1e-9 * max(abs(lo), abs(lo + span), 1)
    for k in range(2):
        stored = np.frombuffer(encode_slice(data[:, :, k], volume, storage), "<u2").reshape(5, 6).T
        assert float(np.max(np.abs(stored * slope + intercept - data[:, :, k]))) <= storage.max_error


def test_float_round_trip_is_within_the_stated_bound(tmp_path):
    volume = Volume(make_data("float32", (8, 7, 3)), oblique_affine(), Meta(modality="MR"))
    storage = choose_storage(volume)
    write_series(volume, tmp_path / "dcm")
    back = convert.load(tmp_path / "dcm")
    error = float(np.max(np.abs(back.scaled() - volume.scaled())))
    assert 0 < error <= storage.max_error
    lo, hi = volume.value_range()
    assert storage.max_error <= (hi - lo) / 131070 * 1.0001


@pytest.mark.parametrize("dtype,values", [("int32", (100_000, 130_000)), ("uint32", (0, 40_000)),
                                          ("int8", (-128, 127)), ("uint8", (0, 255)),
                                          ("float64", (-1024.0, 3071.0))])
def test_integer_values_are_written_exactly(tmp_path, dtype, values):
    """Integers that fit 16 bits (also float data holding integers, and int32 spanning < 65536
    values, re-based through the intercept) come back exactly."""
    rng = np.random.default_rng(3)
    data = rng.integers(values[0], values[1], (5, 4, 3), endpoint=True).astype(dtype)
    volume = Volume(data, oblique_affine(), Meta(modality="CT"))
    assert choose_storage(volume).exact
    write_series(volume, tmp_path / "dcm")
    back = convert.load(tmp_path / "dcm")
    np.testing.assert_array_equal(back.scaled(), volume.scaled())


def test_integers_beyond_16_bits_are_requantised_with_a_warning_and_the_bound(tmp_path):
    data = np.array([0, 1, 70_000, 2_000_000_000] * 15, dtype=np.int64).astype(np.int32).reshape(5, 4, 3)
    volume = Volume(data, np.eye(4))
    with pytest.warns(UserWarning, match="requantised"):
        write_series(volume, tmp_path / "dcm")
    back = convert.load(tmp_path / "dcm")
    assert float(np.max(np.abs(back.scaled() - volume.scaled()))) <= 2e9 / 131070 * 1.0001


def test_ct_values_are_hu_through_the_rescale_intercept(tmp_path):
    """A CT series read from DICOM (stored + intercept -1024) keeps its stored values and scaling; HU out."""
    spec = SeriesSpec(rows=8, columns=6, slices=3)
    write_sample_series(tmp_path / "in", spec)
    source = convert.load(tmp_path / "in")
    assert source.intercept == -1024.0
    files = write_series(source, tmp_path / "out")
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert float(ds.RescaleIntercept) == -1024.0 and float(ds.RescaleSlope) == 1.0 and ds.RescaleType == "HU"
    back = convert.load(tmp_path / "out")
    np.testing.assert_array_equal(back.voxels(), source.voxels())
    np.testing.assert_array_equal(back.scaled(), source.scaled())


def test_window_from_presets_or_else_from_the_data(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3) * 10 - 100
    preset = Volume(data, np.eye(4), Meta(modality="CT", window=((40.0, 400.0), (300.0, 1500.0))))
    ds = pydicom.dcmread(write_series(preset, tmp_path / "a")[0])
    assert [float(v) for v in ds.WindowCenter] == [40.0, 300.0] and [float(v) for v in ds.WindowWidth] == [400.0, 1500.0]
    ds = pydicom.dcmread(write_series(Volume(data, np.eye(4)), tmp_path / "b")[0])
    assert float(ds.WindowCenter) == pytest.approx((-100 + 490) / 2) and float(ds.WindowWidth) == pytest.approx(590)


@pytest.mark.parametrize("integral", [False, True])
def test_nan_voxels_are_written_as_the_minimum_with_a_warning(tmp_path, integral):
    data = np.linspace(0.5, 9.5, 60).reshape(5, 4, 3)
    if integral:  # whole numbers: stored exactly, NaN still the minimum
        data = np.round(data * 10) + 100_000
    data[1, 1, 1] = np.nan
    with pytest.warns(UserWarning, match="1 NaN voxel"):
        write_series(Volume(data, np.eye(4)), tmp_path / "dcm")
    back = convert.load(tmp_path / "dcm").scaled()
    assert back[1, 1, 1] == pytest.approx(np.nanmin(data))
    mask = ~np.isnan(data)
    if integral:
        np.testing.assert_array_equal(back[mask], data[mask])


# --------------------------------------------------------------------------- modules and validation
def _one_of_each(tmp_path: Path) -> dict[str, list[Path]]:
    out = {}
    for modality, kind in (("CT", "int16"), ("MR", "uint16"), ("OT", "float32")):
        volume = Volume(make_data(kind, (6, 5, 4)), oblique_affine(), Meta(modality=modality))
        out[modality] = write_series(volume, tmp_path / modality)
    for modality in ("CT", "MR"):
        volume = Volume(make_data("int16", (6, 5, 4, 2)), oblique_affine(), Meta(modality=modality, time_step=2.0))
        out[f"enhanced {modality}"] = write_series(volume, tmp_path / f"enh{modality}", enhanced=True)
    return out


def test_dciodvfy_and_dcentvfy_report_no_errors(tmp_path):
    """CT Image, MR Image, Secondary Capture and Legacy Converted Enhanced CT/MR: zero validator errors."""
    all_warnings: dict[str, list[str]] = {}
    for kind, files in _one_of_each(tmp_path).items():
        errors, warnings = validator_errors(files)
        assert not errors, f"{kind}: {errors}"
        all_warnings[kind] = warnings
    print("validator warnings:", all_warnings)


def test_sop_classes_and_iod_modules(tmp_path):
    expected = {"CT": ("1.2.840.10008.5.1.4.1.1.2", ("KVP", "RescaleType")),
                "MR": ("1.2.840.10008.5.1.4.1.1.4", ("ScanningSequence", "SequenceVariant", "EchoTime")),
                "OT": ("1.2.840.10008.5.1.4.1.1.7", ("ConversionType", "PatientOrientation")),
                "enhanced CT": ("1.2.840.10008.5.1.4.1.1.2.2", ("PerFrameFunctionalGroupsSequence",)),
                "enhanced MR": ("1.2.840.10008.5.1.4.1.1.4.4", ("PerFrameFunctionalGroupsSequence",))}
    common = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID",
              "SeriesNumber", "Manufacturer", "InstanceNumber", "SOPClassUID", "SOPInstanceUID", "Rows", "Columns",
              "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
              "PhotometricInterpretation", "PixelData")
    for kind, files in _one_of_each(tmp_path).items():
        sop_class, specific = expected[kind]
        ds = pydicom.dcmread(files[0])
        assert ds.SOPClassUID == sop_class == ds.file_meta.MediaStorageSOPClassUID
        for keyword in common + specific:
            assert keyword in ds, f"{kind}: {keyword} missing"
        if not kind.startswith("enhanced"):
            for keyword in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                            "PixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
                assert keyword in ds, f"{kind}: {keyword} missing"


def test_nii2dcm_54_enhanced_multiframe_output_is_one_file(tmp_path):
    """nii2dcm #54 (single-frame only): --enhanced writes one multi-frame file; it reads back as the volume."""
    volume = Volume(make_data("int16", (6, 5, 4, 2)), plane_affine("oblique"), Meta(modality="MR", time_step=3.0))
    files = write_series(volume, tmp_path / "dcm", enhanced=True)
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    assert int(ds.NumberOfFrames) == 8 and len(ds.PerFrameFunctionalGroupsSequence) == 8
    back = convert.load(tmp_path / "dcm")
    assert back.shape == volume.shape
    for t in range(2):
        assert_same_world(back.scaled()[..., t], back.affine, volume.replace(array=volume.voxels()[..., t]))
    img = dcm2niix(tmp_path / "dcm", tmp_path / "nii")["1"]
    assert_same_world(img.get_fdata()[..., 0], img.affine, volume.replace(array=volume.voxels()[..., 0]))


def test_nii2dcm_43_orientation_comes_from_the_affine_not_a_constant(tmp_path):
    """nii2dcm #43 (orientation hard-coded): IOP and PatientOrientation follow each volume's affine."""
    for plane in ("sagittal", "coronal", "oblique"):
        volume = Volume(make_data("int16"), plane_affine(plane), Meta(modality="OT"))
        ds = pydicom.dcmread(write_series(volume, tmp_path / plane)[0])
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient],
                                   np.concatenate(ORIENTATIONS[plane]), atol=1e-9)
        assert tuple(ds.PatientOrientation) == patient_orientation(np.concatenate(ORIENTATIONS[plane]))
    assert patient_orientation((0, 1, 0, 0, 0, -1)) == ("P", "F")
    assert patient_orientation((-1, 0, 0, 0, -1, 0)) == ("R", "A")


def test_nii2dcm_47_bits_stored_and_pixel_description_are_present(tmp_path):
    """nii2dcm #47 (Bits Stored missing): pixel module complete and consistent; pydicom decodes the pixels."""
    for kind in ("int16", "uint16", "float32"):
        volume = Volume(make_data(kind), np.eye(4))
        for path in write_series(volume, tmp_path / kind):
            ds = pydicom.dcmread(path)
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 16, 15)
            assert ds.PixelRepresentation == (1 if choose_storage(volume).dtype.kind == "i" else 0)
            assert ds.pixel_array.shape == (4, 5) and len(ds.PixelData) == 4 * 5 * 2


def test_nii2dcm_56_complete_file_meta_without_a_modality(tmp_path):
    """nii2dcm #56 (no file meta without a modality flag): a volume with no modality becomes a Secondary
    Capture with complete File Meta Information, readable in strict mode."""
    volume = Volume(make_data("uint16"), np.eye(4))  # meta.modality is None
    path = write_series(volume, tmp_path / "dcm")[0]
    with open(path, "rb") as fh:
        assert fh.read(132)[128:] == b"DICM"
    ds = pydicom.dcmread(path)
    meta = ds.file_meta
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID and len(meta.ImplementationVersionName) <= 16
    assert ds.Modality == "OT"


def test_simpleitk_pr138_one_series_uid_for_all_files_and_every_origin_kept(tmp_path):
    """SimpleITK's series writer gave every file a new SeriesInstanceUID and overwrote the origin (PR #138)."""
    volume = Volume(make_data("int16", (4, 3, 7)), oblique_affine(), Meta(modality="CT"))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in write_series(volume, tmp_path / "dcm")]
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.StudyInstanceUID for h in headers}) == 1 and len({h.FrameOfReferenceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == 7
    assert len({tuple(h.ImagePositionPatient) for h in headers}) == 7
    itk = sitk_read(tmp_path / "dcm")
    np.testing.assert_allclose(itk.affine, volume.affine, atol=1e-4)


_UID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")


def test_uids_are_legal_and_under_the_2_25_root(tmp_path):
    """Illegal UID roots (validator errors in dcmjs/cornerstone issues): every UID we make is 2.25.<uuid>,
    digits and dots, no leading zeros, at most 64 characters."""
    files = _one_of_each(tmp_path)
    for kind, paths in files.items():
        for path in paths[:2]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids = [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.file_meta.ImplementationClassUID]
            uids += [ds.FrameOfReferenceUID] if "FrameOfReferenceUID" in ds else []
            uids += [item.DimensionOrganizationUID for item in ds.get("DimensionOrganizationSequence", [])]
            for uid in uids:
                assert _UID.match(uid) and len(uid) <= 64 and uid.startswith("2.25."), (kind, uid)


@pytest.mark.filterwarnings("ignore:The value length")  # pydicom, writing the over-long reference series
def test_overlong_sh_and_lo_values_are_cut_to_their_vr_limits(tmp_path):
    """Over-long SH/LO values (validator errors seen in dcmjs and cornerstone issues): cut, never written."""
    assert fit_text("x" * 40, "SH") == "x" * 16 and fit_text("a\\b\nc", "LO") == "a b c"
    spec = SeriesSpec(rows=4, columns=5, slices=2, extra={"StudyID": "S" * 30, "AccessionNumber": "A" * 30,
                                                          "StudyDescription": "D" * 100})
    write_sample_series(tmp_path / "ref", spec)
    volume = Volume(make_data("int16", (5, 4, 2)), convert.load(tmp_path / "ref").affine,
                    Meta(series_description="a very long " * 20))
    files = write_series(volume, tmp_path / "dcm", template=tmp_path / "ref")
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    for element in ds.iterall():
        if element.VR in VR_MAX_LENGTH and isinstance(element.value, str):
            assert len(element.value) <= VR_MAX_LENGTH[element.VR], element
    assert ds.StudyID == "S" * 16 and ds.AccessionNumber == "A" * 16 and len(ds.SeriesDescription) <= 64
    errors, _ = validator_errors(files)
    assert not errors


def test_non_ascii_text_is_written_as_utf8(tmp_path):
    """A description (or a template's patient name) beyond ASCII: SpecificCharacterSet ISO_IR 192, not '?'."""
    volume = Volume(make_data("int16"), np.eye(4), Meta(series_description="Schädel 頭部"))
    path = write_series(volume, tmp_path / "dcm")[0]
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.SeriesDescription == "Schädel 頭部"
    errors, _ = validator_errors([path])
    assert not errors


# --------------------------------------------------------------------------- template and anonymize
def test_template_puts_the_output_in_the_reference_study(tmp_path):
    write_sample_series(tmp_path / "ref", SeriesSpec(rows=8, columns=6, slices=3, series_number=7))
    ref = pydicom.dcmread(sorted((tmp_path / "ref").iterdir())[0], stop_before_pixels=True)
    volume = convert.load(tmp_path / "ref")
    headers = [pydicom.dcmread(p, stop_before_pixels=True)
               for p in write_series(volume, tmp_path / "out", template=tmp_path / "ref")]
    for ds in headers:
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
            assert ds[keyword].value == ref[keyword].value, keyword
        assert ds.SeriesInstanceUID != ref.SeriesInstanceUID and int(ds.SeriesNumber) == 1007
        assert ds.SOPInstanceUID != ref.SOPInstanceUID
    enhanced = pydicom.dcmread(write_series(volume, tmp_path / "enh", template=tmp_path / "ref", enhanced=True)[0])
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert enhanced[keyword].value == ref[keyword].value, keyword


def test_template_far_from_the_volume_is_warned_about(tmp_path):
    """Sharing a Frame of Reference with a series the volume does not overlap is almost surely a mistake
    (e.g. a NIfTI in template space, not scanner space): a warning says so; an overlapping volume is quiet."""
    import warnings

    write_sample_series(tmp_path / "ref", SeriesSpec(rows=8, columns=6, slices=3))
    near = convert.load(tmp_path / "ref")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_series(near, tmp_path / "near", template=tmp_path / "ref")
    far = near.replace(affine=near.affine + np.array([[0, 0, 0, 500.0]] * 3 + [[0, 0, 0, 0]]))
    with pytest.warns(UserWarning, match="outside the template series"):
        write_series(far, tmp_path / "far", template=tmp_path / "ref")


def test_template_with_anonymize_copies_only_pseudonyms(tmp_path):
    write_sample_series(tmp_path / "ref", SeriesSpec(rows=8, columns=6, slices=3))
    ref = pydicom.dcmread(sorted((tmp_path / "ref").iterdir())[0], stop_before_pixels=True)
    nifti = tmp_path / "v.nii.gz"
    convert.save(Volume(make_data("int16", (6, 8, 3)), np.eye(4)), nifti)
    key = tmp_path / "key"
    key.write_text("k" * 32)
    from typer.testing import CliRunner

    from convert.cli import app

    result = CliRunner().invoke(app, ["convert", str(nifti), str(tmp_path / "out"), "--to", "dicom",
                                      "--template", str(tmp_path / "ref"), "--anonymize", "--key", str(key)])
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(sorted((tmp_path / "out").iterdir())[0], stop_before_pixels=True)
    assert ds.PatientID and ds.PatientID != ref.PatientID and str(ds.PatientName) != str(ref.PatientName)
    assert ds.StudyInstanceUID != ref.StudyInstanceUID  # pseudonymous UIDs, as the de-identification makes them


def test_without_a_template_nothing_of_the_source_header_is_written(tmp_path):
    """DICOM -> DICOM: patient, study and UIDs of the source never travel (the allow-list rule)."""
    write_sample_series(tmp_path / "in", SeriesSpec(rows=6, columns=5, slices=2,
                                                   extra={"InstitutionName": "Secret Hospital"}))
    source = pydicom.dcmread(sorted((tmp_path / "in").iterdir())[0], stop_before_pixels=True)
    files = write_series(convert.load(tmp_path / "in"), tmp_path / "out")
    planted = [str(source.PatientName), source.PatientID, source.StudyInstanceUID, source.SeriesInstanceUID,
               source.FrameOfReferenceUID, "Secret Hospital"]
    for path in files:
        raw = path.read_bytes()
        assert not [value for value in planted if value.encode() in raw], path


def test_template_without_dicom_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="no DICOM images found"):
        write_series(Volume(make_data("int16"), np.eye(4)), tmp_path / "out", template=tmp_path / "empty")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad input, atomic output
def test_2d_5d_and_complex_arrays_are_refused_with_a_message():
    for array in (np.zeros((4, 5)), np.zeros((2, 2, 2, 2, 2))):
        with pytest.raises(UnsupportedDataError, match="3D or 4D"):
            Volume(array, np.eye(4))
    with pytest.raises(UnsupportedDataError, match="not supported"):
        Volume(np.zeros((3, 3, 3), dtype=np.complex64), np.eye(4))


def test_colour_is_an_rgb_secondary_capture(tmp_path):
    """RGB volumes: 8-bit RGB Secondary Capture, bit-exact through our reader, valid for dciodvfy."""
    from convert.volume import rgb_channels, rgb_from_channels

    channels = np.random.default_rng(5).integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
    volume = Volume(rgb_from_channels(channels), oblique_affine())
    files = write_series(volume, tmp_path / "rgb")
    ds = pydicom.dcmread(files[0])
    assert (ds.SOPClassUID, ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsStored) == (
        "1.2.840.10008.5.1.4.1.1.7", "RGB", 3, 8) and "RescaleSlope" not in ds
    np.testing.assert_array_equal(ds.pixel_array, channels[:, :, 0].transpose(1, 0, 2))
    back = convert.load(tmp_path / "rgb")
    assert back.is_rgb
    np.testing.assert_array_equal(rgb_channels(back.voxels()), channels)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-4)
    errors, _ = validator_errors(files)
    assert not errors
    with pytest.raises(UnsupportedDataError, match="Secondary Capture"):
        write_series(volume, tmp_path / "ct", modality="CT")
    assert not (tmp_path / "ct").exists()


def test_infinite_values_are_refused_and_nothing_is_left(tmp_path):
    data = np.ones((3, 3, 2))
    data[0, 0, 0] = np.inf
    with pytest.raises(UnsupportedDataError, match="infinite"):
        write_series(Volume(data, np.eye(4)), tmp_path / "inf")
    assert sorted(tmp_path.iterdir()) == []


def test_destination_that_is_a_file_or_a_full_folder(tmp_path):
    volume = Volume(make_data("int16"), np.eye(4))
    target = tmp_path / "taken"
    target.write_text("keep me")
    with pytest.raises(OutputWriteError, match="is a file"):
        write_series(volume, target)
    assert target.read_text() == "keep me"
    write_series(volume, tmp_path / "dcm")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_series(volume, tmp_path / "dcm")
    first = sorted((tmp_path / "dcm").iterdir())
    again = write_series(volume.replace(array=make_data("int16", (5, 4, 2))), tmp_path / "dcm", overwrite=True)
    assert len(again) == 2 and sorted((tmp_path / "dcm").iterdir()) == again and len(first) == 3
    (tmp_path / "empty").mkdir()
    assert len(write_series(volume, tmp_path / "empty")) == 3  # an existing empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcm", "empty", "taken"]  # no temporaries left


def test_a_failure_mid_series_leaves_no_partial_series(tmp_path, monkeypatch):
    import convert.dicom.writer as writer

    calls = []

    def failing_write(path, ds):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        pydicom.dcmwrite(path, ds, enforce_file_format=True)

    monkeypatch.setattr(writer, "save_dataset", failing_write)
    with pytest.raises(OutputWriteError, match="No space left"):
        write_series(Volume(make_data("int16"), np.eye(4)), tmp_path / "dcm")
    assert sorted(tmp_path.iterdir()) == []


def test_cli_writes_dicom_and_reports_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from convert.cli import app

    runner = CliRunner()
    src = tmp_path / "v.nii.gz"
    convert.save(Volume(make_data("float32", (6, 5, 3)), oblique_affine()), src)
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "mr"), "--to", "dicom", "--modality", "MR"])
    assert result.exit_code == 0 and "wrote 3 DICOM files to" in result.output, result.output
    assert pydicom.dcmread(tmp_path / "mr" / "IM0001.dcm").Modality == "MR"
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "x.nii"), "--modality", "CT"])
    assert result.exit_code == 2 and "only apply with --to dicom" in result.output
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "ot"), "--to", "dicom", "--enhanced",
                                 "--modality", "OT"])
    assert result.exit_code == 1 and "CT or MR only" in result.output and not (tmp_path / "ot").exists()
    five = tmp_path / "five.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2, 2), dtype=np.int16), np.eye(4)), str(five))
    result = runner.invoke(app, ["convert", str(five), str(tmp_path / "five"), "--to", "dicom"])
    assert result.exit_code == 1 and "Traceback" not in result.output and not (tmp_path / "five").exists()
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def test_api_save_format_dicom_and_dicom_folder_to_dicom_tree(tmp_path):
    volume = Volume(make_data("int16"), oblique_affine(), Meta(modality="CT"))
    written = convert.save(volume, tmp_path / "a", format="dicom", modality="CT")
    assert len(written) == 3 and all(p.parent == tmp_path / "a" for p in written)
    report = convert.convert(tmp_path / "a", tmp_path / "tree", to="dicom", modality="MR")
    assert report.ok and len(report.written) == 3
    folder = report.written[0].parent
    assert folder.parent == tmp_path / "tree" and pydicom.dcmread(report.written[0]).Modality == "MR"
    assert_same_world(convert.load(folder).scaled(), convert.load(folder).affine, volume)


# --------------------------------------------------------------------------- real data
def _conformance_cases() -> list[tuple[str, str]]:
    from tests.test_conformance import _reference_cases

    return [case for case in _reference_cases() if "Tilt" not in case[1]]


@pytest.mark.conformance
@pytest.mark.parametrize("dataset,stem", _conformance_cases(), ids=lambda v: v)
def test_real_series_written_as_dicom_match_dcm2niix_of_the_original(tmp_path, dataset, stem):
    """Each conformance series, read by us and written as DICOM, converted by dcm2niix, matches dcm2niix's
    conversion of the original in world space (values within the rescale quantisation when requantised)."""
    from tests.test_conformance import _ours, _parse

    root = conformance_dir(dataset)
    ours = _ours(dataset, *_parse(stem))
    files = write_series(ours, tmp_path / "dcm")
    if shutil.which("dciodvfy") and shutil.which("dcentvfy"):  # a spread of the files; dcentvfy across them
        errors, _ = validator_errors(sorted(set(files[:: max(1, len(files) // 6)] + [files[-1]])))
        assert not errors, errors
    converted = dcm2niix(tmp_path / "dcm", tmp_path / "nii")
    img = converted["1"]
    ref = nib.load(str(root / "ref-dcm2niix" / f"{stem}.nii.gz"))
    got_d, got_a = canonical(img.get_fdata(), img.affine)
    ref_d, ref_a = canonical(ref.get_fdata(), ref.affine)
    assert got_d.shape == ref_d.shape
    cols = ours.affine[:3, :3] / np.linalg.norm(ours.affine[:3, :3], axis=0)
    sheared = abs(cols[:, 2] @ cols[:, 0]) > 1e-4 or abs(cols[:, 2] @ cols[:, 1]) > 1e-4
    # a sheared (gantry-tilted) stack: dcm2niix's own slice vector is wrong for both (see test_conformance)
    np.testing.assert_allclose(got_a[:, [0, 1, 3]] if sheared else got_a, ref_a[:, [0, 1, 3]] if sheared else ref_a,
                               atol=1e-3)
    bound = quantisation_bound(ours)
    tolerance = bound * 1.0001 + 1e-4 * max(1.0, float(np.abs(ref_d).max()))
    assert float(np.max(np.abs(got_d - ref_d))) <= tolerance


@pytest.mark.conformance
def test_tilt_corrected_ct_written_as_dicom_keeps_dcm2niix_tilt_eq_geometry(tmp_path):
    """dcm_qa_ct's tilt-corrected volume (interpolated, so its values are checked against dcm2niix's
    ``_Tilt_Eq_1`` in tests/test_conformance.py): written as DICOM, dcm2niix gives the reference's grid and
    exactly our voxels."""
    from tests.test_conformance import _ours, _parse

    root = conformance_dir("dcm_qa_ct")
    ours = _ours("dcm_qa_ct", *_parse("In_2_Tilt_Eq_1"))
    write_series(ours, tmp_path / "dcm")
    img = dcm2niix(tmp_path / "dcm", tmp_path / "nii")["1"]
    ref = nib.load(str(root / "ref-dcm2niix" / "In_2_Tilt_Eq_1.nii.gz"))
    got_d, got_a = canonical(img.get_fdata(), img.affine)
    ref_d, ref_a = canonical(ref.get_fdata(), ref.affine)
    assert got_d.shape == ref_d.shape
    np.testing.assert_allclose(got_a, ref_a, atol=1e-3)
    assert_same_world(img.get_fdata(), img.affine, ours, quantisation_bound(ours) * 1.0001 + 1e-3)


def test_conformance_cases_are_found_when_the_data_is_there():
    if not CONFORMANCE.is_dir():
        pytest.skip("no ../shared/conformance")
    assert len(_conformance_cases()) >= 10


def test_docs_example_runs_and_prints_what_it_says(tmp_path, monkeypatch, capsys):
    """docs/dicom-writing.md: the Python example is runnable as written, and its comments are its output."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "dicom-writing.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "write_sample" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/dicom-writing.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    promised = [line.split("# ")[-1].split(":")[0].strip() for line in block.splitlines() if "print(" in line]
    assert printed == promised
