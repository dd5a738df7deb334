"""Analyze 7.5 adapter (convert/formats/analyze.py): what is kept, what is lost, and the warnings."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convert
from convert.errors import ConvertError, CorruptFileError, UnsupportedDataError
from convert.formats import detect, format_for_output
from convert.formats.analyze import ANALYZE, OrientationLossWarning, analyze_layout, spm_origin_affine
from convert.volume import SUPPORTED_DTYPES, Meta, Volume
from tests.conftest import oblique_affine
from tests.test_minc import assert_same_world_values

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
#: axis-aligned LAS affine whose world origin is on a voxel centre (voxel 3, 2, 1)
LAS = np.array([[-0.8, 0, 0, 2.4], [0, 1.1, 0, -2.2], [0, 0, 2.5, -2.5], [0, 0, 0, 1.0]])


def write_quiet(vol: Volume, path: Path) -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationLossWarning)  # a loss here would be a test bug
        return ANALYZE.write(vol, path)


# --------------------------------------------------------------------------- round trips: what is kept
def test_las_volume_round_trips_exactly_without_warning(tmp_path, rng):
    arr = rng.integers(-1000, 1000, size=(7, 6, 5)).astype(np.int16)
    vol = Volume(arr, LAS)
    written = write_quiet(vol, tmp_path / "a.hdr")
    assert written == [tmp_path / "a.img", tmp_path / "a.hdr"]
    back = ANALYZE.read(tmp_path / "a.hdr")
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, LAS, atol=1e-6)
    assert back.dtype == np.int16


def test_nibabel_reads_same_geometry_and_values(tmp_path, rng):
    arr = rng.integers(0, 255, size=(7, 6, 5)).astype(np.uint8)
    vol = Volume(arr, LAS, slope=0.5)
    write_quiet(vol, tmp_path / "a.hdr")
    img = nib.load(tmp_path / "a.hdr")
    assert isinstance(img, nib.Spm2AnalyzeImage)
    assert np.allclose(img.affine, LAS, atol=1e-6)
    assert np.allclose(img.get_fdata(), arr * 0.5)
    assert img.header["origin"][:3].tolist() == [4, 3, 2]  # 1-based


def test_ras_volume_is_reoriented_to_las_keeping_world_positions(tmp_path, rng):
    affine = np.diag([0.8, 1.1, 2.5, 1.0])
    affine[:3, 3] = [-4.0, -5.5, -5.0]
    arr = rng.integers(0, 1000, size=(7, 6, 5)).astype(np.int16)
    vol = Volume(arr, affine)
    write_quiet(vol, tmp_path / "r.hdr")
    back = ANALYZE.read(tmp_path / "r.hdr")
    assert back.orientation == "LAS"
    assert np.array_equal(back.array, arr[::-1])
    assert np.allclose(back.spacing, [0.8, 1.1, 2.5])
    assert_same_world_values(vol, back.array, back.affine)
    img = nib.load(tmp_path / "r.hdr")  # independent reader
    assert_same_world_values(vol, img.get_fdata(), img.affine)


def test_permuted_axis_aligned_volume_keeps_world_positions(tmp_path, rng):
    # sagittal-like: i -> posterior, j -> inferior, k -> right
    affine = np.array([[0, 0, 1.5, -3.0], [-1.0, 0, 0, 2.0], [0, -2.0, 0, 4.0], [0, 0, 0, 1.0]])
    arr = rng.integers(0, 1000, size=(4, 5, 6)).astype(np.int16)
    vol = Volume(arr, affine)
    write_quiet(vol, tmp_path / "p.hdr")
    back = ANALYZE.read(tmp_path / "p.hdr")
    assert back.shape == (6, 4, 5)
    assert_same_world_values(vol, back.array, back.affine)


def test_4d_keeps_time_step(tmp_path, rng):
    arr = rng.integers(0, 1000, size=(4, 5, 3, 6)).astype(np.int16)
    write_quiet(Volume(arr, LAS, Meta(time_step=2.0)), tmp_path / "t.hdr")
    back = ANALYZE.read(tmp_path / "t.hdr")
    assert back.shape == (4, 5, 3, 6)
    assert np.array_equal(back.array, arr)
    assert back.meta.time_step == 2.0


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=str)
def test_every_dtype_keeps_values(tmp_path, rng, dtype):
    if dtype.kind == "f":
        arr = rng.normal(size=(4, 3, 2)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, min(info.max, np.iinfo(np.int32).max), size=(4, 3, 2), endpoint=True)
        arr = arr.astype(dtype)
        arr.flat[0] = info.min
    write_quiet(Volume(arr, LAS), tmp_path / "d.hdr")
    back = ANALYZE.read(tmp_path / "d.hdr")
    assert np.array_equal(back.scaled(), arr)
    assert back.dtype.kind == arr.dtype.kind or (arr.dtype.kind == "u" and back.dtype.kind == "i")


def test_int8_is_widened_to_int16_and_uint16_to_int32(tmp_path):
    write_quiet(Volume(np.full((2, 2, 2), -5, np.int8), LAS), tmp_path / "a.hdr")
    assert nib.load(tmp_path / "a.hdr").get_data_dtype() == np.int16
    write_quiet(Volume(np.full((2, 2, 2), 65535, np.uint16), LAS), tmp_path / "b.hdr")
    img = nib.load(tmp_path / "b.hdr")
    assert img.get_data_dtype() == np.int32 and np.all(img.get_fdata() == 65535)


def test_uint32_beyond_int32_is_refused_and_leaves_nothing(tmp_path):
    arr = np.full((2, 2, 2), 2**32 - 1, np.uint32)
    with pytest.raises(UnsupportedDataError, match="uint32") as info:
        ANALYZE.write(Volume(arr, LAS), tmp_path / "u.hdr")
    assert "u.hdr" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_slope_goes_to_funused1(tmp_path):
    write_quiet(Volume(np.arange(8, dtype=np.int16).reshape(2, 2, 2), LAS, slope=0.25), tmp_path / "s.hdr")
    raw = (tmp_path / "s.hdr").read_bytes()
    funused1 = np.frombuffer(raw[112:116], dtype="<f4")[0]  # dime.funused1 (SPM scale factor)
    assert funused1 == 0.25
    back = ANALYZE.read(tmp_path / "s.hdr")
    assert back.slope == 0.25 and back.dtype == np.int16


def test_intercept_is_written_as_real_values(tmp_path):
    arr = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    write_quiet(Volume(arr, LAS, slope=2.0, intercept=-1024.0), tmp_path / "i.hdr")
    img = nib.load(tmp_path / "i.hdr")
    assert img.get_data_dtype() == np.float32
    assert np.array_equal(img.get_fdata(), arr * 2.0 - 1024.0)


# --------------------------------------------------------------------------- what is lost, and the warnings
def test_oblique_volume_warns_and_keeps_its_centre(tmp_path, rng):
    arr = rng.integers(0, 1000, size=(7, 6, 5)).astype(np.int16)
    vol = Volume(arr, oblique_affine())
    with pytest.warns(OrientationLossWarning, match="oblique") as record:
        ANALYZE.write(vol, tmp_path / "o.hdr")
    assert all("o.hdr" in str(w.message) for w in record)
    back = ANALYZE.read(tmp_path / "o.hdr")
    assert back.orientation == "LAS"
    assert sorted(np.round(back.spacing, 6)) == sorted([0.8, 1.1, 2.5])
    centre = vol.world_coordinates((np.array(vol.shape) - 1) / 2.0)
    back_centre = back.world_coordinates((np.array(back.shape) - 1) / 2.0)
    assert np.linalg.norm(centre - back_centre) <= 0.5 * np.linalg.norm(back.spacing) + 1e-6  # originator rounding


def test_sub_voxel_origin_warns_about_the_shift(tmp_path):
    affine = LAS.copy()
    affine[:3, 3] += [0.3, 0.0, 0.0]
    with pytest.warns(OrientationLossWarning, match="moves the volume by 0.300 mm"):
        ANALYZE.write(Volume(np.zeros((3, 3, 3), np.int16), affine), tmp_path / "s.hdr")
    back = ANALYZE.read(tmp_path / "s.hdr")
    assert np.allclose(back.affine[:3, :3], affine[:3, :3])
    assert np.allclose(back.affine[:3, 3], LAS[:3, 3])


def test_origin_beyond_int16_is_lost_with_a_warning(tmp_path):
    affine = LAS.copy()
    affine[0, 3] = 1e6
    with pytest.warns(OrientationLossWarning, match="position is lost"):
        ANALYZE.write(Volume(np.zeros((4, 4, 4), np.int16), affine), tmp_path / "f.hdr")
    back = ANALYZE.read(tmp_path / "f.hdr")
    assert np.allclose(back.world_coordinates([1.5, 1.5, 1.5]), 0.0)  # centred on world 0


@settings(max_examples=40, deadline=None)
@given(
    perm=st.permutations([0, 1, 2]),
    flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
    spacing=st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 2.5])] * 3),
    origin_voxel=st.tuples(*[st.integers(-20, 40)] * 3),
)
def test_axis_aligned_layouts_lose_nothing(perm, flips, spacing, origin_voxel):
    """Any axis-aligned affine with the world origin on a voxel centre maps to LAS without loss."""
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for axis, world in enumerate(perm):
        affine[world, axis] = flips[axis] * spacing[axis]
    affine[:3, 3] = -affine[:3, :3] @ np.array(origin_voxel, dtype=float)
    shape = (5, 6, 7)
    transform, las, originator, losses = analyze_layout(affine, shape)
    if np.all(originator == 0):
        return  # origin at voxel -1,-1,-1 in LAS order reads as "unset": reported as a loss
    assert losses == []
    from nibabel.orientations import inv_ornt_aff

    assert np.allclose(las, affine @ inv_ornt_aff(transform, shape), atol=1e-9)


# --------------------------------------------------------------------------- reading real and odd files
def test_nibabel_shipped_analyze_header_agrees_with_nibabel(tmp_path):
    src = NIB_DATA / "analyze.hdr"
    shutil.copy(src, tmp_path / "analyze.hdr")
    img = nib.load(src)
    ramp = (np.arange(int(np.prod(img.shape))) % 251).astype(img.get_data_dtype())
    (tmp_path / "analyze.img").write_bytes(ramp.tobytes())  # nibabel ships the header only
    vol = convert.load(tmp_path / "analyze.hdr")
    ref = nib.load(tmp_path / "analyze.hdr")
    assert vol.shape == (91, 109, 91, 1) and vol.dtype == np.uint8  # dim[4] = 1 is kept
    assert np.allclose(vol.affine, ref.affine)  # [-2, 2, 2] mm, originator (46, 64, 37)
    assert np.allclose(vol.origin, [90, -126, -72])
    # funused1 is 0 here, so SPM2 derives the slope from cal_max/cal_min over glmax/glmin, as nibabel does
    assert vol.slope == pytest.approx(1715.0445556640625)
    assert np.allclose(vol.scaled(), ref.get_fdata())


def test_read_by_image_file_name(tmp_path, rng):
    write_quiet(Volume(rng.integers(0, 9, size=(3, 3, 3)).astype(np.int16), LAS), tmp_path / "a.hdr")
    assert detect(tmp_path / "a.img").name == "analyze"
    assert np.allclose(convert.load(tmp_path / "a.img").affine, LAS)


def test_spm_mat_file_gives_full_affine(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    write_quiet(Volume(np.zeros((3, 4, 5), np.int16), LAS), tmp_path / "m.hdr")
    affine = oblique_affine()
    spm_mat = affine @ np.array([[1, 0, 0, -1], [0, 1, 0, -1], [0, 0, 1, -1], [0, 0, 0, 1.0]])  # 1-based
    scipy_io.savemat(tmp_path / "m.mat", {"mat": spm_mat, "M": spm_mat})
    assert np.allclose(ANALYZE.read(tmp_path / "m.hdr").affine, affine, atol=1e-6)


def test_far_originator_is_honoured_like_spm(tmp_path):
    affine = LAS.copy()
    affine[:3, 3] = [40.0, -60.5, -20.0]  # world origin at voxel (50, 55, 8) of a 7x6x5 volume
    write_quiet(Volume(np.zeros((7, 6, 5), np.int16), affine), tmp_path / "f.hdr")
    assert np.allclose(ANALYZE.read(tmp_path / "f.hdr").affine, affine)
    # nibabel's heuristic ignores originators beyond 2 x dims and centres the volume instead
    assert not np.allclose(nib.load(tmp_path / "f.hdr").affine, affine)


def test_zero_originator_centres_the_volume():
    header = nib.Spm2AnalyzeHeader()
    header.set_data_shape((5, 7, 9))
    header.set_zooms((2.0, 3.0, 4.0))
    affine = spm_origin_affine(header)
    assert np.allclose(affine[:3, :3] @ [2, 3, 4] + affine[:3, 3], 0.0)


def test_nifti_pair_is_not_claimed(tmp_path):
    nib.save(nib.Nifti1Pair(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "n.hdr")
    assert not ANALYZE.sniff(tmp_path / "n.hdr")
    assert detect(tmp_path / "n.hdr").name == "nifti-pair"
    with pytest.raises(CorruptFileError, match="NIfTI"):
        ANALYZE.read(tmp_path / "n.hdr")


def test_writing_hdr_defaults_to_nifti_pair_and_analyze_needs_to():
    assert format_for_output(Path("x.hdr")).name == "nifti-pair"
    assert format_for_output(Path("x.hdr"), "analyze").name == "analyze"


def test_missing_image_file(tmp_path):
    write_quiet(Volume(np.zeros((2, 2, 2), np.int16), LAS), tmp_path / "a.hdr")
    (tmp_path / "a.img").unlink()
    with pytest.raises(CorruptFileError, match="a.img.*missing"):
        ANALYZE.read(tmp_path / "a.hdr")


def test_truncated_image_file(tmp_path):
    write_quiet(Volume(np.zeros((4, 4, 4), np.int16), LAS), tmp_path / "a.hdr")
    data = (tmp_path / "a.img").read_bytes()
    (tmp_path / "a.img").write_bytes(data[:50])
    with pytest.raises(CorruptFileError, match="truncated"):
        ANALYZE.read(tmp_path / "a.hdr")


def test_garbage_header(tmp_path):
    (tmp_path / "g.hdr").write_bytes(b"\x00" * 10)
    (tmp_path / "g.img").write_bytes(b"\x00" * 10)
    assert not ANALYZE.sniff(tmp_path / "g.hdr")
    with pytest.raises(CorruptFileError, match="g.hdr"):
        ANALYZE.read(tmp_path / "g.hdr")


def test_cli_conversion_warns_about_orientation(tmp_path, rng):
    from typer.testing import CliRunner

    from convert.cli import app

    nib.save(nib.Nifti1Image(rng.integers(0, 9, size=(4, 4, 4)).astype(np.int16), oblique_affine()),
             tmp_path / "x.nii")
    result = CliRunner().invoke(app, ["convert", "--to", "analyze", str(tmp_path / "x.nii"), str(tmp_path / "x.hdr")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.img").exists() and (tmp_path / "x.hdr").exists()
    # The CLI turns each OrientationLossWarning into one "warning:" line naming the output.
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert any("oblique" in line for line in lines) and all("x.hdr" in line for line in lines)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_corrupted_header_raises_convert_error_or_reads(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ANALYZE.write(Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), LAS), folder / "b.hdr")
    raw = bytearray((folder / "b.hdr").read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    (folder / "b.hdr").write_bytes(bytes(raw))
    try:
        vol = ANALYZE.read(folder / "b.hdr")
    except ConvertError as exc:
        assert "b.hdr" in str(exc)
    else:
        assert vol.array.ndim in (3, 4)


def test_big_endian_analyze_from_nibabel(tmp_path, rng):
    arr = rng.integers(-500, 500, size=(5, 4, 3)).astype(np.int16)
    img = nib.Spm2AnalyzeImage(arr, LAS)
    img.header.set_slope_inter(0.5)
    big = nib.Spm2AnalyzeImage(arr, LAS, img.header.as_byteswapped(">"))
    nib.save(big, tmp_path / "be.hdr")
    assert (tmp_path / "be.hdr").read_bytes()[:4] == (348).to_bytes(4, "big")
    vol = ANALYZE.read(tmp_path / "be.hdr")
    ref = nib.load(tmp_path / "be.hdr")
    assert vol.array.dtype.isnative
    assert np.allclose(vol.affine, ref.affine)
    assert np.allclose(vol.scaled(), ref.get_fdata())


def test_plain_analyze_without_originator_is_centred(tmp_path):
    img = nib.AnalyzeImage(np.zeros((4, 6, 8), np.uint8), np.diag([-2.0, 3.0, 4.0, 1.0]))
    nib.save(img, tmp_path / "plain.hdr")
    vol = ANALYZE.read(tmp_path / "plain.hdr")
    assert vol.orientation == "LAS"
    assert np.allclose(vol.world_coordinates([1.5, 2.5, 3.5]), 0.0)  # centre of the volume at world 0
    assert np.allclose(vol.affine, nib.load(tmp_path / "plain.hdr").affine)


# --------------------------------------------------------------------------- colour
def test_rgb_is_written_as_dt_rgb_and_read_back(tmp_path):
    from convert.volume import RGB_DTYPE, rgb_from_channels

    channels = np.random.default_rng(9).integers(0, 256, size=(5, 4, 3, 3), dtype=np.uint8)
    ras = np.diag([0.9, 1.1, 2.0, 1.0])  # RAS: the writer flips i to Analyze's LAS order
    ras[:3, 3] = [-1.8, 2.2, 4.0]
    vol = Volume(rgb_from_channels(channels), ras)
    ANALYZE.write(vol, tmp_path / "c.hdr")
    img = nib.load(str(tmp_path / "c.hdr"))
    assert isinstance(img, nib.AnalyzeImage) and int(img.header["datatype"]) == 128
    assert img.get_data_dtype() == RGB_DTYPE
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), vol.array[::-1])  # LAS: i reversed
    back = convert.load(tmp_path / "c.img")
    assert back.is_rgb
    canon_back = nib.as_closest_canonical(nib.Nifti1Image(back.array, back.affine))
    canon_vol = nib.as_closest_canonical(nib.Nifti1Image(vol.array, vol.affine))
    np.testing.assert_array_equal(np.asanyarray(canon_back.dataobj), np.asanyarray(canon_vol.dataobj))
    np.testing.assert_allclose(canon_back.affine, canon_vol.affine, atol=1e-6)


@pytest.mark.parametrize("offset, value", [(40, 9), (40, 0), (42, 0), (70, 9999)])
def test_broken_analyze_header_is_a_corrupt_file_error(tmp_path, offset, value):
    """dim0 = 9 or 0, a zero size, datatype 9999: one CorruptFileError naming the header."""
    import struct

    ANALYZE.write(Volume(np.zeros((6, 5, 4), np.int16), np.diag([-2.0, 2.0, 2.0, 1.0])), tmp_path / "a.hdr")
    header = bytearray((tmp_path / "a.hdr").read_bytes())
    struct.pack_into("<h", header, offset, value)
    (tmp_path / "a.hdr").write_bytes(bytes(header))
    with pytest.raises(CorruptFileError) as info:
        ANALYZE.read(tmp_path / "a.hdr")
    assert "a.hdr" in str(info.value)
