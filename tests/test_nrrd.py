"""NRRD adapter (convert/formats/nrrd.py): round trips, independent readers, header quirks, broken input."""

from __future__ import annotations

import bz2
import gzip
import subprocess
from pathlib import Path

import nibabel as nib
import nrrd as pynrrd
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convert
from convert.errors import (
    ConvertError,
    CorruptFileError,
    GeometryError,
    OutputExistsError,
    UnsupportedDataError,
    UnsupportedFormatError,
)
from convert.formats import detect, get_format
from convert.formats import nrrd as nrrd_mod
from convert.formats.nrrd import NHDR, NRRD, read_nrrd
from convert.geometry import ras_to_lps
from convert.volume import SUPPORTED_DTYPES, Meta, Volume

from conftest import conformance_dir, oblique_affine, require_tool, rotation

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS <-> RAS, spelled out independently of convert.volume
FLAVOURS = [(NRRD, "out.nrrd"), (NHDR, "out.nhdr")]


def _volume(shape=(5, 6, 7), dtype="int16", affine=None, **kw) -> Volume:
    rng = np.random.default_rng(7)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        array = rng.normal(0, 100, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return Volume(array=array, affine=oblique_affine() if affine is None else affine, **kw)


def _pynrrd_affine_ras(header: dict) -> np.ndarray:
    """RAS+ affine from a pynrrd header of an LPS file (independent of our code)."""
    assert header["space"] == "left-posterior-superior"
    dirs = np.asarray(header["space directions"], dtype=float)
    spatial = [row for row in dirs if not np.all(np.isnan(row))]
    affine = np.eye(4)
    affine[:3, :3] = np.array(spatial).T
    affine[:3, 3] = header["space origin"]
    return FLIP @ affine


def _sitk_affine_ras(image: sitk.Image) -> np.ndarray:
    dim = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())[:3]
    affine[:3, 3] = image.GetOrigin()[:3]
    return FLIP @ affine


def _write_raw_nrrd(path: Path, fields: list[str], payload: bytes, magic: str = "NRRD0004",
                    newline: str = "\n") -> Path:
    text = newline.join([magic, *fields]) + newline + newline
    path.write_bytes(text.encode() + payload)
    return path


# =========================================================================== round trips
@pytest.mark.parametrize("fmt,name", FLAVOURS)
@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=str)
def test_round_trip_every_dtype(tmp_path, fmt, name, dtype):
    vol = _volume(dtype=dtype)
    written = fmt.write(vol, tmp_path / name)
    back = fmt.read(written[-1])
    assert back.dtype == dtype
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)
    assert not back.is_scaled


@pytest.mark.parametrize("fmt,name", FLAVOURS)
@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_round_trip_4d_with_time_step(tmp_path, fmt, name, encoding):
    vol = _volume(shape=(4, 5, 3, 6), dtype="float32", meta=Meta(time_step=2.5))
    written = fmt.write(vol, tmp_path / name, encoding=encoding)
    back = convert.load(written[-1])
    assert back.shape == (4, 5, 3, 6)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)
    assert back.meta.time_step == 2.5


def test_nhdr_writes_data_first_then_header_with_relative_data_file(tmp_path):
    written = NHDR.write(_volume(), tmp_path / "scan.nhdr")
    assert [p.name for p in written] == ["scan.raw.gz", "scan.nhdr"]
    header = pynrrd.read_header(str(written[1]))
    assert header["data file"] == "scan.raw.gz"
    raw = NHDR.write(_volume(), tmp_path / "plain.nhdr", encoding="raw")
    assert [p.name for p in raw] == ["plain.raw", "plain.nhdr"]
    assert raw[0].stat().st_size == 5 * 6 * 7 * 2


def test_output_paths_match_what_write_creates(tmp_path):
    assert NRRD.output_paths(tmp_path / "a.nrrd") == [tmp_path / "a.nrrd"]
    assert NHDR.output_paths(tmp_path / "a.nhdr") == [tmp_path / "a.raw.gz", tmp_path / "a.nhdr"]
    assert NHDR.output_paths(tmp_path / "a.nhdr", "raw") == [tmp_path / "a.raw", tmp_path / "a.nhdr"]


def test_registry_and_sniff(tmp_path):
    assert get_format("nrrd") is NRRD and get_format("nhdr") is NHDR
    (out,) = NRRD.write(_volume(), tmp_path / "a.nrrd")
    assert detect(out) is NRRD and NRRD.sniff(out)
    nifti = tmp_path / "a.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), nifti)
    assert not NRRD.sniff(nifti)
    assert not NRRD.sniff(tmp_path)


# =========================================================================== independent readers
@pytest.mark.parametrize("fmt,name", FLAVOURS)
def test_pynrrd_reads_our_geometry_and_voxels(tmp_path, fmt, name):
    vol = _volume(dtype="uint16")
    written = fmt.write(vol, tmp_path / name)
    data, header = pynrrd.read(str(written[-1]), index_order="F")
    np.testing.assert_array_equal(data, vol.array)
    np.testing.assert_allclose(_pynrrd_affine_ras(header), vol.affine, atol=1e-6)
    assert header["kinds"] == ["domain", "domain", "domain"]
    assert header["endian"] == "little"


@pytest.mark.parametrize("fmt,name", FLAVOURS)
def test_simpleitk_reads_our_geometry_and_voxels(tmp_path, fmt, name):
    vol = _volume(dtype="float64")
    written = fmt.write(vol, tmp_path / name)
    image = sitk.ReadImage(str(written[-1]))
    origin = ras_to_lps(vol.affine)[:3, 3]
    spacing = np.linalg.norm(vol.affine[:3, :3], axis=0)
    direction = ras_to_lps(vol.affine)[:3, :3] / spacing
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-6)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(3, 3), direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(), vol.array)


def test_simpleitk_reads_our_4d_as_list_of_components(tmp_path):
    vol = _volume(shape=(4, 5, 3, 6), dtype="int16")
    (out,) = NRRD.write(vol, tmp_path / "dwi.nrrd")
    image = sitk.ReadImage(str(out))
    assert image.GetNumberOfComponentsPerPixel() == 6
    np.testing.assert_allclose(_sitk_affine_ras(image), vol.affine, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0, 3), vol.array)


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr"])
def test_read_oblique_file_written_by_simpleitk(tmp_path, suffix):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4)  # sitk order [k, j, i]
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 1.3, 2.9))
    image.SetOrigin((12.5, -40.25, 71.0))
    image.SetDirection(tuple(rotation(0.4, -0.25, 0.6).ravel()))
    path = tmp_path / f"itk{suffix}"
    sitk.WriteImage(image, str(path), True)
    vol = read_nrrd(path)
    np.testing.assert_allclose(vol.affine, _sitk_affine_ras(image), atol=1e-6)
    np.testing.assert_array_equal(vol.array, array.transpose())


def test_cli_convert_nifti_to_nrrd_keeps_world_geometry(tmp_path):
    from typer.testing import CliRunner

    from convert.cli import app

    affine = oblique_affine()
    src = tmp_path / "in.nii.gz"
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    nib.save(nib.Nifti1Image(data, affine), src)
    dst = tmp_path / "out.nrrd"
    result = CliRunner().invoke(app, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    image = sitk.ReadImage(str(dst))
    np.testing.assert_allclose(_sitk_affine_ras(image), nib.load(src).affine, atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(), data)


# =========================================================================== spaces and axes
def test_read_ras_space_file(tmp_path):
    payload = np.arange(24, dtype="<i2").tobytes()
    path = _write_raw_nrrd(tmp_path / "ras.nrrd", [
        "type: short", "dimension: 3", "space: right-anterior-superior", "sizes: 2 3 4",
        "space directions: (0,1.5,0) (-2,0,0) (0,0,3)", "endian: little", "encoding: raw",
        "space origin: (10,20,30)"], payload)
    vol = read_nrrd(path)
    expected = np.array([[0, -2, 0, 10], [1.5, 0, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(vol.affine, expected)
    # SimpleITK converts RAS files to its LPS world: the same physical place
    np.testing.assert_allclose(_sitk_affine_ras(sitk.ReadImage(str(path))), expected, atol=1e-9)


def test_read_las_space_file(tmp_path):
    path = _write_raw_nrrd(tmp_path / "las.nrrd", [
        "type: uchar", "dimension: 3", "space: LAS", "sizes: 2 2 2",
        "space directions: (1,0,0) (0,1,0) (0,0,1)", "encoding: raw", "space origin: (5,6,7)"], bytes(8))
    vol = read_nrrd(path)
    np.testing.assert_allclose(vol.affine[:3, 3], [-5, 6, 7])
    np.testing.assert_allclose(_sitk_affine_ras(sitk.ReadImage(str(path))), vol.affine, atol=1e-9)


@pytest.mark.parametrize("space", ["scanner-xyz", "3D-right-handed"])
def test_scanner_and_right_handed_spaces_are_read_as_lps_like_itk(tmp_path, space):
    path = _write_raw_nrrd(tmp_path / "s.nrrd", [
        "type: uchar", "dimension: 3", f"space: {space}", "sizes: 2 2 2",
        "space directions: (1,0,0) (0,2,0) (0,0,3)", "encoding: raw", "space origin: (5,6,7)"], bytes(8))
    vol = read_nrrd(path)
    np.testing.assert_allclose(vol.affine, _sitk_affine_ras(sitk.ReadImage(str(path))), atol=1e-9)
    np.testing.assert_allclose(vol.affine[:3, 3], [-5, -6, 7])


def test_left_handed_space_is_refused(tmp_path):
    path = _write_raw_nrrd(tmp_path / "lh.nrrd", [
        "type: uchar", "dimension: 3", "space: 3D-left-handed", "sizes: 2 2 2",
        "space directions: (1,0,0) (0,1,0) (0,0,1)", "encoding: raw"], bytes(8))
    with pytest.raises(GeometryError, match="lh.nrrd"):
        read_nrrd(path)


@pytest.mark.parametrize("centering,shift", [(None, 0.5), ("cell", 0.5), ("node", 0.0)])
def test_no_space_uses_spacings_and_axis_mins(tmp_path, centering, shift):
    fields = ["type: float", "dimension: 3", "sizes: 2 3 4", "spacings: 1.5 2 3", "axis mins: 5 6 7",
              "endian: little", "encoding: raw"]
    if centering:
        fields.append(f"centerings: {centering} {centering} {centering}")
    path = _write_raw_nrrd(tmp_path / "sp.nrrd", fields, np.zeros(24, "<f4").tobytes())
    vol = read_nrrd(path)
    lps_origin = np.array([5, 6, 7]) + shift * np.array([1.5, 2, 3])
    np.testing.assert_allclose(vol.affine, FLIP @ np.array(
        [[1.5, 0, 0, lps_origin[0]], [0, 2, 0, lps_origin[1]], [0, 0, 3, lps_origin[2]], [0, 0, 0, 1]]))
    if centering != "node":  # ITK shifts by half a voxel whatever the centering
        np.testing.assert_allclose(_sitk_affine_ras(sitk.ReadImage(str(path))), vol.affine, atol=1e-9)


def test_no_space_no_spacings_is_1mm_lps(tmp_path):
    path = _write_raw_nrrd(tmp_path / "bare.nrrd", ["type: uchar", "dimension: 3", "sizes: 2 2 2",
                                                    "encoding: raw"], bytes(8))
    np.testing.assert_allclose(read_nrrd(path).affine, FLIP)


def test_4d_with_list_axis_first_becomes_ijkt(tmp_path):
    # DWI-style: 5 gradients, list axis FIRST (fastest on disk)
    ijkt = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    on_disk = ijkt.transpose(3, 0, 1, 2)  # NRRD axes: [t, i, j, k]
    path = _write_raw_nrrd(tmp_path / "dwi.nrrd", [
        "type: short", "dimension: 4", "space: left-posterior-superior", "sizes: 5 2 3 4",
        "space directions: none (1,0,0) (0,2,0) (0,0,3)", "kinds: list domain domain domain",
        "endian: little", "encoding: raw", "space origin: (10,20,30)",
        "measurement frame: (1,0,0) (0,1,0) (0,0,1)",
        "DWMRI_b-value:=1000", "DWMRI_gradient_0000:= 0 0 0"], on_disk.tobytes(order="F"))
    vol = read_nrrd(path)
    assert vol.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(vol.array, ijkt)
    np.testing.assert_allclose(vol.affine, FLIP @ np.array(
        [[1, 0, 0, 10], [0, 2, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1.0]]))
    assert vol.meta.time_step is None
    # SimpleITK agrees on geometry (it makes the list axis a pixel vector)
    np.testing.assert_allclose(_sitk_affine_ras(sitk.ReadImage(str(path))), vol.affine, atol=1e-9)


def test_4d_time_space_reads_time_step(tmp_path):
    data = np.arange(2 * 2 * 2 * 3, dtype=np.uint8)
    path = _write_raw_nrrd(tmp_path / "t.nrrd", [
        "type: uchar", "dimension: 4", "space: right-anterior-superior-time", "sizes: 2 2 2 3",
        "space directions: (1,0,0,0) (0,1,0,0) (0,0,1,0) (0,0,0,1.25)", "encoding: raw",
        "space origin: (1,2,3,0)"], data.tobytes())
    vol = read_nrrd(path)
    assert vol.shape == (2, 2, 2, 3) and vol.meta.time_step == 1.25
    np.testing.assert_allclose(vol.affine[:3, 3], [1, 2, 3])


def test_measurement_frame_is_kept_in_ras_and_written_back_in_lps(tmp_path):
    path = _write_raw_nrrd(tmp_path / "mf.nrrd", [
        "type: uchar", "dimension: 3", "space: LPS", "sizes: 2 2 2",
        "space directions: (1,0,0) (0,1,0) (0,0,1)", "encoding: raw",
        "measurement frame: (0,1,0) (1,0,0) (0,0,1)"], bytes(8))
    vol = read_nrrd(path)
    frame = np.array(vol.meta.acquisition["MeasurementFrame"])
    np.testing.assert_allclose(frame, np.diag([-1, -1, 1]) @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]))
    (out,) = NRRD.write(vol, tmp_path / "back.nrrd")
    np.testing.assert_allclose(pynrrd.read_header(str(out))["measurement frame"], [[0, 1, 0], [1, 0, 0], [0, 0, 1]])


def test_2d_image_is_padded_to_one_slice(tmp_path):
    path = _write_raw_nrrd(tmp_path / "2d.nrrd", [
        "type: uchar", "dimension: 2", "space dimension: 2", "sizes: 3 2",
        "space directions: (0.5,0) (0,0.25)", "encoding: raw", "space origin: (1,2)"], bytes(range(6)))
    vol = read_nrrd(path)
    assert vol.shape == (3, 2, 1)
    np.testing.assert_array_equal(vol.array[:, :, 0], np.arange(6).reshape(2, 3).T)
    np.testing.assert_allclose(vol.affine, FLIP @ np.array(
        [[0.5, 0, 0, 1], [0, 0.25, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1.0]]))


def test_space_units_in_cm_are_converted_to_mm(tmp_path):
    path = _write_raw_nrrd(tmp_path / "cm.nrrd", [
        "type: uchar", "dimension: 3", "space: RAS", "sizes: 2 2 2", 'space units: "cm" "cm" "cm"',
        "space directions: (0.1,0,0) (0,0.1,0) (0,0,0.2)", "encoding: raw", "space origin: (1,2,3)"], bytes(8))
    np.testing.assert_allclose(read_nrrd(path).affine, np.diag([1.0, 1.0, 2.0, 1.0]) + np.array(
        [[0, 0, 0, 10], [0, 0, 0, 20], [0, 0, 0, 30], [0, 0, 0, 0]]))


# =========================================================================== encoding / layout quirks
SIMPLE = ["type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 2 3 4",
          "space directions: (1,0,0) (0,1,0) (0,0,1)", "space origin: (0,0,0)"]
EXPECTED = np.arange(24, dtype=np.int16).reshape(4, 3, 2).T  # [i, j, k], i fastest on disk


def test_quirk_line_skip(tmp_path):
    payload = b"junk line one\njunk line two\n" + EXPECTED.tobytes(order="F")
    path = _write_raw_nrrd(tmp_path / "ls.nrrd", SIMPLE + ["endian: little", "encoding: raw", "line skip: 2"],
                           payload)
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_byte_skip(tmp_path):
    payload = b"\xff" * 13 + EXPECTED.tobytes(order="F")
    path = _write_raw_nrrd(tmp_path / "bs.nrrd", SIMPLE + ["endian: little", "encoding: raw", "byte skip: 13"],
                           payload)
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_byte_skip_minus_one_reads_the_file_tail(tmp_path):
    data = tmp_path / "tail.raw"
    data.write_bytes(b"some preamble of unknown length" + EXPECTED.tobytes(order="F"))
    path = _write_raw_nrrd(tmp_path / "tail.nhdr", SIMPLE + ["endian: little", "encoding: raw", "byte skip: -1",
                                                             "data file: tail.raw"], b"")
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_big_endian(tmp_path):
    path = _write_raw_nrrd(tmp_path / "be.nrrd", SIMPLE + ["endian: big", "encoding: raw"],
                           EXPECTED.astype(">i2").tobytes(order="F"))
    vol = read_nrrd(path)
    np.testing.assert_array_equal(vol.array, EXPECTED)
    assert vol.array.dtype.isnative


def test_quirk_detached_relative_data_file_in_subfolder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "vox.raw.gz").write_bytes(gzip.compress(EXPECTED.tobytes(order="F")))
    path = _write_raw_nrrd(tmp_path / "rel.nhdr", SIMPLE + ["endian: little", "encoding: gzip",
                                                            "data file: data/vox.raw.gz"], b"")
    np.testing.assert_array_equal(convert.load(path).array, EXPECTED)


def test_quirk_detached_absolute_data_file(tmp_path):
    data = tmp_path / "elsewhere.raw"
    data.write_bytes(EXPECTED.tobytes(order="F"))
    path = _write_raw_nrrd(tmp_path / "abs.nhdr", SIMPLE + ["endian: little", "encoding: raw",
                                                            f"datafile: {data}"], b"")
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_ascii_encoding(tmp_path):
    text = "\n".join(" ".join(str(v) for v in row) for row in EXPECTED.ravel(order="F").reshape(4, 6))
    path = _write_raw_nrrd(tmp_path / "a.nrrd", SIMPLE + ["encoding: ascii"], text.encode())
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_bzip2_encoding(tmp_path):
    path = _write_raw_nrrd(tmp_path / "bz.nrrd", SIMPLE + ["endian: little", "encoding: bzip2"],
                           bz2.compress(EXPECTED.tobytes(order="F")))
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_multi_member_gzip(tmp_path):
    raw = EXPECTED.tobytes(order="F")
    path = _write_raw_nrrd(tmp_path / "mm.nrrd", SIMPLE + ["endian: little", "encoding: gz"],
                           gzip.compress(raw[:20]) + gzip.compress(raw[20:]))
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_data_file_list_one_slice_per_file(tmp_path):
    for k in range(4):
        (tmp_path / f"slice{k}.raw").write_bytes(EXPECTED[:, :, k].tobytes(order="F"))
    path = _write_raw_nrrd(tmp_path / "list.nhdr", SIMPLE + ["endian: little", "encoding: raw",
                                                             "data file: LIST"], b"")
    with open(path, "a") as fh:
        fh.write("".join(f"slice{k}.raw\n" for k in range(4)))
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_data_file_printf_pattern(tmp_path):
    for k in range(4):
        (tmp_path / f"img{k + 1:03d}.raw").write_bytes(EXPECTED[:, :, k].tobytes(order="F"))
    path = _write_raw_nrrd(tmp_path / "pat.nhdr", SIMPLE + ["endian: little", "encoding: raw",
                                                            "data file: img%03d.raw 1 4 1 2"], b"")
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_quirk_crlf_line_endings_comments_and_key_values(tmp_path):
    fields = ["# a comment", *SIMPLE, "endian: little", "encoding: raw", "patient name:=Jane Doe",
              "content: Study of Jane Doe"]
    path = _write_raw_nrrd(tmp_path / "crlf.nrrd", fields, EXPECTED.tobytes(order="F"), newline="\r\n")
    vol = read_nrrd(path)
    np.testing.assert_array_equal(vol.array, EXPECTED)
    (out,) = NRRD.write(vol, tmp_path / "clean.nrrd")
    assert b"Jane" not in out.read_bytes()


def test_quirk_int64_data_is_narrowed_losslessly(tmp_path):
    data = np.array([0, 1, -5, 70000, 2, 3, 4, 5], dtype="<i8")
    path = _write_raw_nrrd(tmp_path / "i8.nrrd", ["type: int64", "dimension: 3", "sizes: 2 2 2",
                                                  "endian: little", "encoding: raw"], data.tobytes())
    vol = read_nrrd(path)
    assert vol.dtype == np.int32
    np.testing.assert_array_equal(vol.array.ravel(order="F"), data)


# =========================================================================== values and metadata on write
def test_scaled_integer_volume_is_written_as_real_integers(tmp_path):
    stored = np.array([0, 1000, 2000, 4095] * 2, dtype=np.uint16).reshape(2, 2, 2)
    vol = Volume(array=stored, affine=np.eye(4), slope=1.0, intercept=-1024.0, meta=Meta(modality="CT", units="HU"))
    (out,) = NRRD.write(vol, tmp_path / "ct.nrrd")
    image = sitk.ReadImage(str(out))
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(), stored.astype(np.int32) - 1024)
    back = read_nrrd(out)
    assert back.meta.modality == "CT" and back.meta.units == "HU"
    assert not back.is_scaled


def test_scaled_fractional_volume_is_written_as_exact_floats(tmp_path):
    stored = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    vol = Volume(array=stored, affine=np.eye(4), slope=0.5, intercept=0.25)
    (out,) = NRRD.write(vol, tmp_path / "f.nrrd")
    data, header = pynrrd.read(str(out))
    assert header["type"] == "float"
    np.testing.assert_array_equal(data, stored * 0.5 + 0.25)
    # slope 0.1 is not exact in float32, but every stored integer is recoverable from float32: float
    wide = np.array([-32768, -1, 0, 1, 12345, 32767, 7, 8], dtype=np.int16).reshape(2, 2, 2)
    vol_tenth = Volume(array=wide, affine=np.eye(4), slope=0.1, intercept=-3.3)
    (out_tenth,) = NRRD.write(vol_tenth, tmp_path / "tenth.nrrd")
    data_tenth, header_tenth = pynrrd.read(str(out_tenth))
    assert header_tenth["type"] == "float"
    np.testing.assert_allclose(data_tenth, wide * 0.1 - 3.3, rtol=1e-7)
    np.testing.assert_array_equal(np.rint((data_tenth.astype(np.float64) + 3.3) / 0.1), wide)
    # float stored values times a fractional slope: only float64 holds them exactly
    floats = np.random.default_rng(3).normal(size=(2, 2, 2))
    vol64 = Volume(array=floats, affine=np.eye(4), slope=0.1, intercept=0.0)
    (out64,) = NRRD.write(vol64, tmp_path / "d.nrrd")
    data64, header64 = pynrrd.read(str(out64))
    assert header64["type"] == "double"
    np.testing.assert_array_equal(data64, floats * 0.1)


def test_no_phi_or_free_text_reaches_the_header(tmp_path):
    meta = Meta(modality="MR", series_description="John Smith brain", manufacturer="ACME",
                units="bad\nunits: injected")
    vol = _volume(meta=meta, source={"PatientName": "John Smith"})
    for fmt, name in FLAVOURS:
        written = fmt.write(vol, tmp_path / name)
        header = written[-1].read_bytes().split(b"\n\n")[0]
        assert b"John" not in header and b"ACME" not in header and b"injected" not in header
        fields = [line.split(b":")[0] for line in header.split(b"\n")[1:] if not line.startswith(b"#")]
        assert set(fields) <= {b"type", b"dimension", b"space", b"sizes", b"space directions", b"kinds", b"endian",
                               b"encoding", b"space origin", b"data file", b"modality"}


# =========================================================================== broken input and failed writes
def test_broken_header_missing_sizes(tmp_path):
    path = _write_raw_nrrd(tmp_path / "nosizes.nrrd", ["type: uchar", "dimension: 3", "encoding: raw"], bytes(8))
    with pytest.raises(CorruptFileError, match=r"nosizes\.nrrd.*sizes"):
        read_nrrd(path)


def test_broken_header_garbage_lines(tmp_path):
    path = tmp_path / "garbage.nrrd"
    path.write_bytes(b"NRRD0004\n\x00\x01 this is not a field\nsizes 2 2 2\n\n" + bytes(8))
    with pytest.raises(CorruptFileError, match=r"garbage\.nrrd"):
        convert.load(path)


def test_broken_magic_with_nrrd_extension(tmp_path):
    path = tmp_path / "fake.nrrd"
    path.write_bytes(b"hello world, not an image")
    with pytest.raises(CorruptFileError, match=r"fake\.nrrd"):
        convert.load(path)
    with pytest.raises(CorruptFileError, match=r"fake\.nrrd"):
        read_nrrd(path)


@pytest.mark.parametrize("encoding", ["raw", "gzip", "bzip2", "ascii"])
def test_truncated_data_section(tmp_path, encoding):
    raw = EXPECTED.tobytes(order="F")
    payload = {"raw": raw[:-7], "gzip": gzip.compress(raw)[:-12], "bzip2": bz2.compress(raw)[:-10],
               "ascii": " ".join(str(v) for v in EXPECTED.ravel(order="F")[:-3]).encode()}[encoding]
    path = _write_raw_nrrd(tmp_path / f"trunc_{encoding}.nrrd", SIMPLE + ["endian: little",
                                                                           f"encoding: {encoding}"], payload)
    with pytest.raises(CorruptFileError, match=rf"trunc_{encoding}\.nrrd"):
        read_nrrd(path)


def test_missing_detached_data_file(tmp_path):
    path = _write_raw_nrrd(tmp_path / "lonely.nhdr", SIMPLE + ["endian: little", "encoding: raw",
                                                               "data file: lonely.raw"], b"")
    with pytest.raises(CorruptFileError, match=r"lonely\.nhdr.*lonely\.raw.*missing"):
        convert.load(path)


def test_written_nhdr_without_its_data_file_is_reported(tmp_path):
    data, header = NHDR.write(_volume(), tmp_path / "x.nhdr")
    data.unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        convert.load(header)


@pytest.mark.parametrize("fields,message", [
    (["type: uchar", "dimension: 2", "sizes: 2 2 2", "encoding: raw"], "dimension"),
    (["type: quaternion", "dimension: 3", "sizes: 2 2 2", "encoding: raw"], "type"),
    (["type: short", "dimension: 3", "sizes: 2 2 2", "encoding: raw"], "endian"),
    (["type: uchar", "dimension: 3", "sizes: 2 0 2", "encoding: raw"], "sizes"),
    (["type: uchar", "dimension: 3", "sizes: 2 2 2", "encoding: raw", "space: LPS",
      "space directions: (1,0,0) (0,1,0)"], "space directions"),
    (["type: uchar", "dimension: 3", "sizes: 2 2 2", "encoding: raw", "space: mars-up-down"], "space"),
])
def test_inconsistent_headers(tmp_path, fields, message):
    path = _write_raw_nrrd(tmp_path / "bad.nrrd", fields, bytes(64))
    with pytest.raises(CorruptFileError, match=message):
        read_nrrd(path)


def test_unsupported_encoding_and_two_list_axes(tmp_path):
    path = _write_raw_nrrd(tmp_path / "zrl.nrrd", ["type: uchar", "dimension: 3", "sizes: 2 2 2",
                                                   "encoding: zrl"], bytes(8))
    with pytest.raises(UnsupportedDataError, match="zrl"):
        read_nrrd(path)
    path = _write_raw_nrrd(tmp_path / "5d.nrrd", [
        "type: uchar", "dimension: 5", "sizes: 2 2 2 2 3", "encoding: raw", "space: LPS",
        "space directions: (1,0,0) (0,1,0) (0,0,1) none none"], bytes(48))
    with pytest.raises(UnsupportedDataError, match="5d.nrrd"):
        read_nrrd(path)


def test_singular_directions_raise_geometry_error_naming_file(tmp_path):
    path = _write_raw_nrrd(tmp_path / "flat.nrrd", [
        "type: uchar", "dimension: 3", "sizes: 2 2 2", "encoding: raw", "space: LPS",
        "space directions: (1,0,0) (2,0,0) (0,0,1)"], bytes(8))
    with pytest.raises(GeometryError, match=r"flat\.nrrd"):
        read_nrrd(path)


@pytest.mark.parametrize("fmt,name", FLAVOURS)
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, fmt, name):
    def boom(fh, array):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nrrd_mod, "_write_voxels", boom)
    with pytest.raises(ConvertError):
        fmt.write(_volume(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten_without_permission(tmp_path):
    (data, header) = NHDR.write(_volume(), tmp_path / "x.nhdr")
    before = header.read_bytes()
    with pytest.raises(OutputExistsError):
        NHDR.write(_volume(dtype="uint8"), tmp_path / "x.nhdr")
    assert header.read_bytes() == before
    NHDR.write(_volume(dtype="uint8"), tmp_path / "x.nhdr", overwrite=True)
    assert read_nrrd(header).dtype == np.uint8


def test_unknown_write_encoding_is_refused(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="bzip2"):
        NRRD.write(_volume(), tmp_path / "x.nrrd", encoding="bzip2")
    assert list(tmp_path.iterdir()) == []


# =========================================================================== properties
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_fuzzed_headers_raise_only_convert_errors(tmp_path, body):
    path = tmp_path / "fuzz.nrrd"
    path.write_bytes(b"NRRD0004\n" + body)
    try:
        read_nrrd(path)
    except ConvertError as exc:
        assert "fuzz.nrrd" in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from([
    "type: short", "type: float", "dimension: 3", "dimension: 4", "sizes: 2 2 2", "sizes: 2 2 2 2",
    "encoding: raw", "encoding: gzip", "encoding: ascii", "endian: big", "endian: little", "space: LPS",
    "space: RAS", "space directions: (1,0,0) (0,1,0) (0,0,1)", "space directions: none (1,0,0) (0,1,0) (0,0,1)",
    "space origin: (1,2,3)", "kinds: domain domain domain", "byte skip: -1", "line skip: 1", "spacings: 1 2 3",
    "data file: missing.raw", "space dimension: 3", "measurement frame: (1,0,0) (0,1,0) (0,0,1)",
]), max_size=12), payload=st.binary(max_size=80))
def test_fuzzed_field_combinations_raise_only_convert_errors(tmp_path, lines, payload):
    path = tmp_path / "combo.nrrd"
    path.write_bytes(("\n".join(["NRRD0004", *dict.fromkeys(lines)]) + "\n\n").encode() + payload)
    try:
        vol = read_nrrd(path)
    except ConvertError as exc:
        assert "combo.nrrd" in str(exc)
    else:
        assert vol.array.ndim in (3, 4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(angles=st.tuples(*[st.floats(-3.1, 3.1)] * 3), spacing=st.tuples(*[st.floats(0.05, 20)] * 3),
       origin=st.tuples(*[st.floats(-500, 500)] * 3), flip=st.booleans())
def test_any_affine_round_trips_through_pynrrd(tmp_path, angles, spacing, origin, flip):
    affine = oblique_affine(spacing, origin, angles)
    if flip:
        affine[:3, 0] *= -1  # left-handed voxel axes (common for radiological storage)
    vol = Volume(array=np.zeros((2, 2, 2), np.uint8), affine=affine)
    (out,) = NRRD.write(vol, tmp_path / "p.nrrd", overwrite=True)
    np.testing.assert_allclose(_pynrrd_affine_ras(pynrrd.read_header(str(out))), affine, atol=1e-9)
    np.testing.assert_allclose(read_nrrd(out).affine, affine, atol=1e-9)


def test_quirk_hex_encoding(tmp_path):
    path = _write_raw_nrrd(tmp_path / "hex.nrrd", SIMPLE + ["endian: little", "encoding: hex"],
                           EXPECTED.tobytes(order="F").hex(" ", 4).encode())
    np.testing.assert_array_equal(read_nrrd(path).array, EXPECTED)


def test_2d_slice_in_3d_space_gets_the_slice_normal(tmp_path):
    path = _write_raw_nrrd(tmp_path / "slice.nrrd", [
        "type: uchar", "dimension: 2", "space: LPS", "sizes: 3 2",
        "space directions: (0,0.5,0) (0,0,0.75)", "encoding: raw", "space origin: (4,5,6)"], bytes(6))
    vol = read_nrrd(path)
    assert vol.shape == (3, 2, 1)
    lps = FLIP @ vol.affine
    np.testing.assert_allclose(lps[:3, :2], [[0, 0], [0.5, 0], [0, 0.75]])
    np.testing.assert_allclose(lps[:3, 2], [1, 0, 0])  # unit normal, right-handed with the two axes
    np.testing.assert_allclose(lps[:3, 3], [4, 5, 6])


def test_1d_profile_gets_two_orthogonal_1mm_axes(tmp_path):
    path = _write_raw_nrrd(tmp_path / "line.nrrd", [
        "type: uchar", "dimension: 1", "space: RAS", "sizes: 4", "space directions: (0,0,2)",
        "encoding: raw"], bytes(4))
    vol = read_nrrd(path)
    assert vol.shape == (4, 1, 1)
    columns = vol.affine[:3, :3]
    np.testing.assert_allclose(columns[:, 0], [0, 0, 2])
    np.testing.assert_allclose(columns.T @ columns, np.diag([4.0, 1.0, 1.0]), atol=1e-12)
    assert np.linalg.det(columns) > 0


def test_huge_sizes_on_a_tiny_file_fail_fast_without_allocating(tmp_path):
    for encoding, payload in (("raw", bytes(10)), ("gzip", gzip.compress(bytes(10)))):
        path = _write_raw_nrrd(tmp_path / f"huge_{encoding}.nrrd", [
            "type: double", "dimension: 3", "sizes: 100000 100000 100000", "endian: little",
            f"encoding: {encoding}"], payload)
        with pytest.raises(CorruptFileError, match="truncated"):
            read_nrrd(path)


def test_time_axis_in_milliseconds_is_converted_to_seconds(tmp_path):
    path = _write_raw_nrrd(tmp_path / "ms.nrrd", [
        "type: uchar", "dimension: 4", "space: LPS", "sizes: 2 2 2 3",
        "space directions: (1,0,0) (0,1,0) (0,0,1) none", "kinds: domain domain domain time",
        "spacings: nan nan nan 2000", 'units: "" "" "" "ms"', "encoding: raw"], bytes(24))
    assert read_nrrd(path).meta.time_step == pytest.approx(2.0)


def test_quirk_oldmin_oldmax_quantization_as_written_by_dcm2niix(tmp_path):
    # dcm2niix maps the type's full range [-32768, 32767] onto [old min, old max]
    slope, intercept = 0.25, -500.0
    old_min, old_max = -32768 * slope + intercept, 32767 * slope + intercept
    path = _write_raw_nrrd(tmp_path / "q.nrrd", SIMPLE + ["endian: little", "encoding: raw",
                                                          f"oldmin: {old_min!r}", f"oldmax: {old_max!r}"],
                           EXPECTED.tobytes(order="F"))
    vol = read_nrrd(path)
    assert vol.dtype == np.int16
    assert vol.slope == pytest.approx(slope) and vol.intercept == pytest.approx(intercept)
    np.testing.assert_allclose(vol.scaled(), EXPECTED * slope + intercept)


@pytest.mark.parametrize("dataset,series", [("dcm_qa_nih", "In/20180918GE/mr_0004"),
                                            ("dcm_qa_enh", "In/Philips")])
def test_real_data_dcm2niix_nrrd_export_matches_its_nifti(tmp_path, dataset, series):
    """dcm2niix -e y (RAS space, 'space units', oldmin/oldmax, DICOM_* key/values) vs its own NIfTI."""
    exe = require_tool("dcm2niix")
    src = conformance_dir(dataset) / series
    for flag, sub in (("y", "nrrd"), ("n", "nii")):
        (tmp_path / sub).mkdir()
        subprocess.run([exe, "-e", flag, "-z", "n", "-f", "%s_%e", "-o", str(tmp_path / sub), str(src)],
                       check=True, capture_output=True)
    nrrds = sorted((tmp_path / "nrrd").glob("*.nrrd"))
    assert nrrds
    for path in nrrds:
        vol = convert.load(path)
        ref = nib.load(tmp_path / "nii" / (path.stem + ".nii"))
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-3)  # dcm2niix prints ~6 digits in NRRD
        np.testing.assert_allclose(vol.scaled(), np.asarray(ref.dataobj, dtype=np.float64).reshape(vol.shape),
                                   rtol=1e-6, atol=1e-3)
        assert vol.meta.modality == "MR"


def test_only_allow_listed_modality_and_units_are_read(tmp_path):
    base = ["type: uchar", "dimension: 3", "sizes: 2 2 2", "encoding: raw"]
    good = _write_raw_nrrd(tmp_path / "good.nrrd", base + ["sample units: HU", "modality:=CT"], bytes(8))
    assert (read_nrrd(good).meta.modality, read_nrrd(good).meta.units) == ("CT", "HU")
    bad = _write_raw_nrrd(tmp_path / "bad.nrrd", base + ["sample units: JaneDoe", "modality:=JANE"], bytes(8))
    assert (read_nrrd(bad).meta.modality, read_nrrd(bad).meta.units) == (None, None)
    dwi = _write_raw_nrrd(tmp_path / "dwi.nrrd", base + ["modality:=DWMRI"], bytes(8))
    assert read_nrrd(dwi).meta.modality == "MR"


def test_read_detached_gzip_file_written_by_pynrrd(tmp_path):
    ijkt = np.random.default_rng(5).normal(size=(3, 4, 5, 2)).astype(np.float32)
    lps_dirs = ras_to_lps(oblique_affine())[:3, :3]
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.vstack([np.full(3, np.nan), lps_dirs.T]),
              "space origin": ras_to_lps(oblique_affine())[:3, 3], "encoding": "gzip"}
    path = tmp_path / "py.nhdr"
    pynrrd.write(str(path), np.ascontiguousarray(ijkt.transpose(3, 0, 1, 2)), header, detached_header=True,
                 index_order="F")
    vol = convert.load(path)
    np.testing.assert_array_equal(vol.array, ijkt)
    np.testing.assert_allclose(vol.affine, oblique_affine(), atol=1e-9)


# =========================================================================== colour (RGB24)
def _rgb_volume(shape=(5, 6, 7), time_step=None) -> Volume:
    from convert.volume import rgb_from_channels

    channels = np.random.default_rng(11).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    return Volume(rgb_from_channels(channels), oblique_affine(), Meta(time_step=time_step))


@pytest.mark.parametrize("fmt,name", FLAVOURS)
@pytest.mark.parametrize("shape", [(5, 6, 7), (5, 6, 7, 3)], ids=["3d", "4d"])
def test_rgb_is_a_leading_rgb_color_axis_that_pynrrd_reads(tmp_path, fmt, name, shape):
    from convert.volume import rgb_channels

    vol = _rgb_volume(shape, time_step=2.0 if len(shape) == 4 else None)
    written = fmt.write(vol, tmp_path / name)
    data, header = pynrrd.read(str(written[-1]), index_order="F")
    assert header["type"] == "uint8" and list(header["sizes"]) == [3, *shape]
    assert header["kinds"] == ["RGB-color", "domain", "domain", "domain"] + (["list"] if len(shape) == 4 else [])
    assert np.all(np.isnan(header["space directions"][0]))  # 'none' for the colour axis
    np.testing.assert_allclose(_pynrrd_affine_ras(header), vol.affine, atol=1e-6)
    np.testing.assert_array_equal(np.moveaxis(data, 0, -1), rgb_channels(vol.array))
    back = read_nrrd(written[-1])
    assert back.is_rgb and np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)
    assert back.meta.time_step == (2.0 if len(shape) == 4 else None)


@pytest.mark.parametrize("shape", [(5, 6, 7), (5, 6, 7, 3)], ids=["3d", "4d"])
def test_simpleitk_reads_our_rgb_as_a_3_component_uint8_image(tmp_path, shape):
    from convert.volume import rgb_channels

    vol = _rgb_volume(shape)
    (out,) = NRRD.write(vol, tmp_path / "rgb.nrrd")
    image = sitk.ReadImage(str(out))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetPixelID() == sitk.sitkVectorUInt8
    assert image.GetDimension() == len(shape)
    np.testing.assert_allclose(_sitk_affine_ras(image), vol.affine, atol=1e-6)
    spatial = tuple(range(len(shape) - 1, -1, -1))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(spatial + (len(shape),)),
                                  rgb_channels(vol.array))


@pytest.mark.parametrize("axis", [0, 3], ids=["colour-first", "colour-last"])
def test_read_rgb_color_written_by_pynrrd_anywhere(tmp_path, axis):
    from convert.volume import rgb_channels

    channels = np.random.default_rng(2).integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    data = np.moveaxis(channels, 3, axis)
    directions = [np.diag([0.9, 1.2, 3.0])[n] for n in range(3)]
    directions.insert(axis, np.full(3, np.nan))
    kinds = ["domain"] * 3
    kinds.insert(axis, "RGB-color")
    header = {"space": "left-posterior-superior", "space directions": np.array(directions), "kinds": kinds,
              "space origin": np.array([1.0, 2.0, 3.0])}
    path = tmp_path / "ext.nrrd"
    pynrrd.write(str(path), data, header, index_order="F")
    vol = read_nrrd(path)
    assert vol.is_rgb and vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(rgb_channels(vol.array), channels)
    np.testing.assert_allclose(vol.affine[:3, :3], np.diag([-0.9, -1.2, 3.0]))


def test_rgb_color_of_16_bits_or_wrong_length_is_refused(tmp_path):
    base = {"space": "left-posterior-superior", "kinds": ["RGB-color", "domain", "domain", "domain"],
            "space directions": np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])}
    wide = tmp_path / "rgb16.nrrd"
    pynrrd.write(str(wide), np.zeros((3, 2, 2, 2), np.uint16), base, index_order="F")
    with pytest.raises(UnsupportedDataError, match="8 bits per channel") as info:
        read_nrrd(wide)
    assert str(wide) in str(info.value)
    rgba = tmp_path / "rgba.nrrd"
    pynrrd.write(str(rgba), np.zeros((4, 2, 2, 2), np.uint8), base, index_order="F")
    with pytest.raises(CorruptFileError, match="must have 3"):
        read_nrrd(rgba)


def test_old_min_max_does_not_scale_rgb(tmp_path):
    header = {"space": "left-posterior-superior", "kinds": ["RGB-color", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
              "old min": -1000.0, "old max": 3000.0}
    data = np.arange(3 * 8, dtype=np.uint8).reshape(3, 2, 2, 2)
    path = tmp_path / "rgb_old.nrrd"
    pynrrd.write(str(path), data, header, index_order="F")
    vol = read_nrrd(path)
    assert vol.is_rgb and not vol.is_scaled


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(axis=st.integers(0, 3), shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
       seed=st.integers(0, 2**16))
def test_rgb_color_axis_anywhere_reads_the_same_colours(tmp_path, axis, shape, seed):
    from convert.volume import rgb_channels

    channels = np.random.default_rng(seed).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    directions = [np.eye(3)[n] * (n + 1) for n in range(3)]
    directions.insert(axis, np.full(3, np.nan))
    kinds = ["domain"] * 3
    kinds.insert(axis, "RGB-color")
    path = tmp_path / f"h{axis}_{seed}.nrrd"
    pynrrd.write(str(path), np.moveaxis(channels, 3, axis), {"space": "left-posterior-superior", "kinds": kinds,
                 "space directions": np.array(directions), "encoding": "raw"}, index_order="F")
    vol = read_nrrd(path)
    assert vol.is_rgb and vol.shape == shape
    np.testing.assert_array_equal(rgb_channels(vol.array), channels)
