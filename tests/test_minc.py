"""MINC2 adapter (convert/formats/minc.py): geometry and values against nibabel and minc-tools."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.errors import ConvertError, CorruptFileError, GeometryError, UnsupportedDataError
from convert.formats import detect
from convert.formats.minc import MINC2, affine_from_minc, minc_axes
from convert.volume import SUPPORTED_DTYPES, Meta, Volume
from tests.conftest import oblique_affine, require_tool, rotation

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
SHIPPED_MINC2 = ["minc2_1_scale.mnc", "minc2_4d.mnc", "small.mnc", "minc2-4d-d.mnc", "minc2-no-att.mnc",
                 "minc2_baddim.mnc"]


# --------------------------------------------------------------------------- helpers
def nibabel_xyz_data(img) -> np.ndarray:
    """nibabel's MINC data with time moved last (nibabel keeps MINC's file order, time first)."""
    data = np.asarray(img.get_fdata())
    if data.ndim == 4:
        data = np.moveaxis(data, 0, -1)
    return data


def assert_same_world_values(vol: Volume, data: np.ndarray, affine: np.ndarray, rtol: float = 1e-6) -> None:
    """Every voxel of (data, affine) has the same real value as ``vol`` at the same RAS+ position.

    ``affine`` maps the first three axes of ``data`` to world mm; the two grids must
    coincide (a permutation/flip of axes), which is checked too.
    """
    to_ours = np.linalg.inv(vol.affine) @ np.asarray(affine, dtype=np.float64)
    assert np.allclose(to_ours[:3, :3], np.rint(to_ours[:3, :3]), atol=1e-6), "voxel grids do not coincide"
    assert np.allclose(to_ours[:3, 3], np.rint(to_ours[:3, 3]), atol=1e-6), "voxel grids are shifted"
    idx = np.indices(data.shape[:3]).reshape(3, -1)
    ours = np.rint(to_ours[:3, :3] @ idx + to_ours[:3, 3:4]).astype(int)
    assert sorted(vol.shape[:3]) == sorted(data.shape[:3])
    ours_values = np.asarray(vol.scaled())[tuple(ours)]
    theirs = data[tuple(idx)]
    scale = max(1.0, float(np.nanmax(np.abs(theirs))) if theirs.size else 1.0)
    assert np.allclose(ours_values, theirs, rtol=rtol, atol=rtol * scale, equal_nan=True)


def minc_attr(path: Path, var_attr: str) -> np.ndarray:
    out = subprocess.run(["mincinfo", "-attvalue", var_attr, str(path)], capture_output=True, text=True, check=True)
    return np.array([float(x) for x in out.stdout.split()])


def mincinfo_affine(path: Path) -> np.ndarray:
    """The voxel->world affine minc-tools see, with voxel axes in reverse file order (our i, j, k)."""
    out = subprocess.run(["mincinfo", "-vardims", "image", str(path)], capture_output=True, text=True, check=True)
    spatial = [d for d in reversed(out.stdout.split()) if d.endswith("space")]
    cos = np.column_stack([minc_attr(path, f"{d}:direction_cosines") for d in spatial])
    steps = np.array([minc_attr(path, f"{d}:step")[0] for d in spatial])
    starts = np.array([minc_attr(path, f"{d}:start")[0] for d in spatial])
    return affine_from_minc(cos, steps, starts)


def mincstats(path: Path, *flags: str) -> list[float]:
    out = subprocess.run(["mincstats", "-quiet", *flags, str(path)], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.kind == "f":
        return (rng.normal(size=shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


# --------------------------------------------------------------------------- round trips
def test_round_trip_3d_oblique_non_isotropic_scaled(tmp_path, rng):
    arr = rng.integers(-1000, 3000, size=(7, 6, 5)).astype(np.int16)
    vol = Volume(arr, oblique_affine(), slope=0.5, intercept=-1024.0)
    assert MINC2.write(vol, tmp_path / "a.mnc") == [tmp_path / "a.mnc"]
    back = MINC2.read(tmp_path / "a.mnc")
    assert back.dtype == np.int16
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, vol.affine, atol=1e-9)
    assert back.slope == pytest.approx(0.5, rel=1e-12)
    assert back.intercept == pytest.approx(-1024.0, rel=1e-12)


def test_round_trip_4d_keeps_time_step(tmp_path, rng):
    arr = rng.integers(0, 255, size=(4, 5, 3, 6)).astype(np.uint8)
    vol = Volume(arr, oblique_affine(), Meta(time_step=2.5))
    MINC2.write(vol, tmp_path / "a.mnc")
    back = MINC2.read(tmp_path / "a.mnc")
    assert back.shape == (4, 5, 3, 6)
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, vol.affine, atol=1e-9)
    assert back.meta.time_step == 2.5
    with h5py.File(tmp_path / "a.mnc") as fh:
        assert fh["minc-2.0/image/0/image"].attrs["dimorder"] == b"time,zspace,yspace,xspace"
        assert fh["minc-2.0/dimensions/time"].attrs["step"] == 2.5
        assert fh["minc-2.0/dimensions/time"].attrs["start"] == 0.0


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=str)
def test_every_dtype_round_trips_and_nibabel_agrees(tmp_path, rng, dtype):
    arr = random_array(rng, dtype, (3, 4, 5))
    vol = Volume(arr, oblique_affine())
    MINC2.write(vol, tmp_path / "a.mnc", compresslevel=0)
    back = MINC2.read(tmp_path / "a.mnc")
    assert back.dtype == dtype and not back.is_scaled
    assert np.array_equal(back.array, arr)
    img = nib.load(tmp_path / "a.mnc")
    assert isinstance(img, nib.Minc2Image)
    assert img.get_data_dtype() == dtype
    assert_same_world_values(vol, nibabel_xyz_data(img), img.affine)


def test_nibabel_reads_same_affine_and_values(tmp_path, rng):
    arr = rng.integers(0, 4000, size=(6, 5, 4)).astype(np.uint16)
    vol = Volume(arr, oblique_affine(), slope=0.25, intercept=10.0)
    MINC2.write(vol, tmp_path / "a.mnc")
    img = nib.load(tmp_path / "a.mnc")
    # nibabel's voxel axes are in file order (zspace, yspace, xspace): ours reversed
    assert np.allclose(img.affine[:3, :3], vol.affine[:3, [2, 1, 0]], atol=1e-6)
    assert np.allclose(img.affine[:3, 3], vol.affine[:3, 3], atol=1e-6)
    assert np.allclose(img.get_fdata(), (arr * 0.25 + 10.0).transpose(2, 1, 0), rtol=1e-12)
    assert_same_world_values(vol, nibabel_xyz_data(img), img.affine)


def test_sagittal_volume_gets_dimension_names_by_closest_world_axis(tmp_path, rng):
    # i -> anterior, j -> superior, k -> left (a sagittal stack)
    affine = np.array([[0, 0, -1.2, 50], [0.9, 0, 0, -100], [0, 0.9, 0, -40], [0, 0, 0, 1]], dtype=float)
    arr = rng.integers(0, 100, size=(5, 4, 3)).astype(np.int16)
    vol = Volume(arr, affine)
    MINC2.write(vol, tmp_path / "s.mnc")
    with h5py.File(tmp_path / "s.mnc") as fh:
        assert fh["minc-2.0/image/0/image"].attrs["dimorder"] == b"xspace,zspace,yspace"
        x = fh["minc-2.0/dimensions/xspace"].attrs
        assert x["step"] == pytest.approx(-1.2) and np.allclose(x["direction_cosines"], [1, 0, 0])
    back = MINC2.read(tmp_path / "s.mnc")
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, affine, atol=1e-9)
    img = nib.load(tmp_path / "s.mnc")
    assert_same_world_values(vol, nibabel_xyz_data(img), img.affine)
    require_tool("mincinfo")
    assert np.allclose(mincinfo_affine(tmp_path / "s.mnc"), affine, atol=1e-9)


def test_negative_steps_read_as_flipped_axes(tmp_path, rng):
    affine = np.diag([-2.0, -1.5, 3.0, 1.0])
    affine[:3, 3] = [40.0, 30.0, -20.0]
    arr = rng.integers(0, 100, size=(4, 5, 6)).astype(np.int16)
    MINC2.write(Volume(arr, affine), tmp_path / "n.mnc")
    with h5py.File(tmp_path / "n.mnc") as fh:
        dims = fh["minc-2.0/dimensions"]
        assert dims["xspace"].attrs["step"] == -2.0 and dims["yspace"].attrs["step"] == -1.5
        assert dims["xspace"].attrs["start"] == 40.0
    back = MINC2.read(tmp_path / "n.mnc")
    assert back.orientation == "LPS"
    assert np.allclose(back.affine, affine)


@settings(max_examples=40, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-3.1, 3.1)] * 3),
    spacing=st.tuples(*[st.floats(0.1, 5.0)] * 3),
    origin=st.tuples(*[st.floats(-300, 300)] * 3),
    flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
)
def test_minc_axes_reproduce_any_rigid_affine(angles, spacing, origin, flips):
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) @ np.diag(np.array(spacing) * np.array(flips))
    affine[:3, 3] = origin
    axes = minc_axes(affine)
    assert sorted(a[0] for a in axes) == ["xspace", "yspace", "zspace"]
    for name, cosine, _step, _start in axes:
        assert cosine["xyz".index(name[0])] > 0
        assert np.isclose(np.linalg.norm(cosine), 1.0)
    rebuilt = affine_from_minc(np.column_stack([a[1] for a in axes]), np.array([a[2] for a in axes]),
                               np.array([a[3] for a in axes]))
    assert np.allclose(rebuilt, affine, atol=1e-9)


def test_sheared_affine_is_refused_and_leaves_no_file(tmp_path):
    affine = np.eye(4)
    affine[0, 1] = 0.3  # j axis leans along x: shear
    with pytest.raises(GeometryError, match="sheared"):
        MINC2.write(Volume(np.zeros((2, 2, 2), np.int16), affine), tmp_path / "s.mnc")
    assert list(tmp_path.iterdir()) == []


def test_scaled_float_volume_is_stored_as_real_values(tmp_path):
    arr = np.array([0.5, 1.5, -2.0, 4.0], np.float32).reshape(2, 2, 1)
    MINC2.write(Volume(arr, np.eye(4), slope=2.0, intercept=1.0), tmp_path / "f.mnc")
    back = MINC2.read(tmp_path / "f.mnc")
    assert not back.is_scaled
    assert np.allclose(back.array, arr * 2.0 + 1.0)


def test_constant_integer_volume(tmp_path):
    vol = Volume(np.full((2, 3, 4), 7, np.int16), np.eye(4), slope=2.0)
    MINC2.write(vol, tmp_path / "c.mnc")
    back = MINC2.read(tmp_path / "c.mnc")
    assert np.allclose(back.scaled(), 14.0)


def test_existing_output_is_not_overwritten_without_flag(tmp_path):
    vol = Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4))
    MINC2.write(vol, tmp_path / "a.mnc")
    with pytest.raises(ConvertError, match="already exists"):
        MINC2.write(vol, tmp_path / "a.mnc")
    MINC2.write(vol, tmp_path / "a.mnc", overwrite=True)


# --------------------------------------------------------------------------- minc-tools
@pytest.fixture
def written_oblique(tmp_path, rng) -> tuple[Volume, Path]:
    arr = rng.integers(-300, 3000, size=(7, 6, 5)).astype(np.int16)
    vol = Volume(arr, oblique_affine(), slope=0.5, intercept=-100.0)
    MINC2.write(vol, tmp_path / "o.mnc")
    return vol, tmp_path / "o.mnc"


def test_mincinfo_reports_our_geometry(written_oblique):
    require_tool("mincinfo")
    vol, path = written_oblique
    out = subprocess.run(["mincinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert "image dimensions: zspace yspace xspace" in out
    for n, name in enumerate(["xspace", "yspace", "zspace"]):
        out = subprocess.run(["mincinfo", "-dimlength", name, str(path)], capture_output=True, text=True, check=True)
        assert int(out.stdout) == vol.shape[n]
    axes = minc_axes(vol.affine)
    for name, cosine, step, start in axes:
        assert np.allclose(minc_attr(path, f"{name}:direction_cosines"), cosine, atol=1e-9)
        assert minc_attr(path, f"{name}:step")[0] == pytest.approx(step, abs=1e-9)
        assert minc_attr(path, f"{name}:start")[0] == pytest.approx(start, abs=1e-9)
    assert np.allclose(mincinfo_affine(path), vol.affine, atol=1e-6)


def test_mincstats_reports_our_real_values(written_oblique):
    require_tool("mincstats")
    vol, path = written_oblique
    lo, hi, mean = mincstats(path, "-min", "-max", "-mean")
    real = vol.scaled()
    assert lo == pytest.approx(real.min(), rel=1e-6)
    assert hi == pytest.approx(real.max(), rel=1e-6)
    assert mean == pytest.approx(real.mean(), rel=1e-6)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=str)
def test_minctoraw_reads_our_stored_voxels(tmp_path, rng, dtype):
    require_tool("minctoraw")
    arr = random_array(rng, dtype, (3, 4, 5, 2))
    MINC2.write(Volume(arr, np.diag([-1.5, 2, 3, 1.0]), Meta(time_step=2.0)), tmp_path / "r.mnc")
    raw = subprocess.run(["minctoraw", "-nonormalize", str(tmp_path / "r.mnc")], capture_output=True, check=True)
    assert np.array_equal(np.frombuffer(raw.stdout, dtype=dtype), arr.transpose(3, 2, 1, 0).ravel())
    assert minc_attr(tmp_path / "r.mnc", "time:step")[0] == 2.0
    lo, hi = mincstats(tmp_path / "r.mnc", "-min", "-max")
    assert lo == pytest.approx(float(arr.min()), rel=1e-6) and hi == pytest.approx(float(arr.max()), rel=1e-6)


# --------------------------------------------------------------------------- real files
@pytest.mark.parametrize("name", SHIPPED_MINC2)
def test_nibabel_shipped_minc2_matches_nibabel(name):
    path = NIB_DATA / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this nibabel")
    vol = MINC2.read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = nib.load(path)
        data = nibabel_xyz_data(img)
    assert vol.shape[3:] == data.shape[3:]
    assert_same_world_values(vol, data, img.affine, rtol=1e-6)


@pytest.mark.parametrize("name", ["small.mnc", "minc2_4d.mnc", "minc2_1_scale.mnc"])
def test_nibabel_shipped_minc2_matches_mincstats(name):
    require_tool("mincstats")
    vol = MINC2.read(NIB_DATA / name)
    lo, hi, mean = mincstats(NIB_DATA / name, "-min", "-max", "-mean")
    real = np.asarray(vol.scaled(), dtype=np.float64)
    assert lo == pytest.approx(real.min(), rel=1e-5, abs=1e-6)
    assert hi == pytest.approx(real.max(), rel=1e-5)
    assert mean == pytest.approx(real.mean(), rel=1e-5)


def test_per_slice_scaling_becomes_float_real_values():
    vol = MINC2.read(NIB_DATA / "small.mnc")  # int16 with image-min/max per zspace slice
    assert vol.dtype == np.float32 and not vol.is_scaled
    assert vol.shape == (29, 28, 18)
    assert np.allclose(vol.spacing, [7, 8, 9])


def test_single_global_scaling_keeps_stored_dtype():
    vol = MINC2.read(NIB_DATA / "minc2_1_scale.mnc")  # scalar image-min/max
    assert vol.dtype == np.uint8 and vol.is_scaled
    with h5py.File(NIB_DATA / "minc2_1_scale.mnc") as fh:
        stored = fh["minc-2.0/image/0/image"][()]
    assert np.array_equal(vol.array, stored.transpose(2, 1, 0))


def test_file_order_xyz_with_time_first():
    vol = MINC2.read(NIB_DATA / "minc2-4d-d.mnc")  # dimorder time,xspace,yspace,zspace
    assert vol.shape == (16, 16, 16, 5)
    assert vol.orientation == "SAR"  # i = zspace (reverse file order)
    assert vol.meta.time_step == 1.0


def test_modality_is_read_from_study_group():
    assert MINC2.read(NIB_DATA / "minc2_4d.mnc").meta.modality == "MR"


# --------------------------------------------------------------------------- bad input
def test_text_file_named_mnc_is_corrupt(tmp_path):
    path = tmp_path / "notes.mnc"
    path.write_text("this is not an image\n" * 20)
    assert not MINC2.sniff(path)
    with pytest.raises(CorruptFileError, match="notes.mnc"):
        MINC2.read(path)
    with pytest.raises(CorruptFileError, match="notes.mnc"):
        detect(path)


def test_hdf5_that_is_not_minc(tmp_path):
    path = tmp_path / "data.mnc"
    with h5py.File(path, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(CorruptFileError, match="not a MINC2 image") as info:
        MINC2.read(path)
    assert "data.mnc" in str(info.value)
    assert not MINC2.sniff(path.rename(tmp_path / "data.h5"))


def test_truncated_file(tmp_path):
    src = (NIB_DATA / "small.mnc").read_bytes()
    path = tmp_path / "cut.mnc"
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(CorruptFileError, match="cut.mnc"):
        MINC2.read(path)


def test_missing_dimension_group(tmp_path):
    path = tmp_path / "m.mnc"
    MINC2.write(Volume(np.zeros((2, 2, 2), np.int16), np.eye(4)), path)
    with h5py.File(path, "a") as fh:
        del fh["minc-2.0/dimensions/yspace"]
    with pytest.raises(CorruptFileError, match="yspace"):
        MINC2.read(path)


def test_vector_dimension_is_unsupported(tmp_path):
    path = tmp_path / "rgb.mnc"
    MINC2.write(Volume(np.zeros((2, 2, 3), np.uint8), np.eye(4)), path)
    with h5py.File(path, "a") as fh:
        del fh["minc-2.0/image/0/image"]
        ds = fh.create_dataset("minc-2.0/image/0/image", data=np.zeros((3, 2, 2, 3), np.uint8))
        ds.attrs["dimorder"] = b"zspace,yspace,xspace,vector_dimension"
        fh.create_dataset("minc-2.0/dimensions/vector_dimension", data=np.int32(0))
    with pytest.raises(UnsupportedDataError, match="vector_dimension"):
        MINC2.read(path)


def test_detect_tells_minc2_from_minc1():
    assert detect(NIB_DATA / "small.mnc").name == "minc2"
    assert not MINC2.sniff(NIB_DATA / "tiny.mnc")  # MINC1 (netCDF)


# --------------------------------------------------------------------------- CLI
def test_cli_converts_nifti_to_minc_and_mincinfo_reads_it(tmp_path, rng):
    from typer.testing import CliRunner

    from convert.cli import app

    arr = rng.integers(0, 1000, size=(5, 6, 4)).astype(np.int16)
    nib.save(nib.Nifti1Image(arr, oblique_affine()), tmp_path / "x.nii.gz")
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(tmp_path / "x.nii.gz"), str(tmp_path / "x.mnc")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", "--json", str(tmp_path / "x.mnc")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == "minc2" and summary["shape"] == [5, 6, 4]
    assert np.allclose(summary["affine_ras"], oblique_affine(), atol=1e-5)
    require_tool("mincinfo")
    assert np.allclose(mincinfo_affine(tmp_path / "x.mnc"), oblique_affine(), atol=1e-5)
    lo, hi = mincstats(tmp_path / "x.mnc", "-min", "-max")
    assert (lo, hi) == (float(arr.min()), float(arr.max()))


# --------------------------------------------------------------------------- files written by libminc from ours
def test_mincresample_like_itself_keeps_values(written_oblique, tmp_path):
    """Full-type valid_range: a libminc tool that rescales per slice keeps 2^16 levels, not the data's few."""
    tool = require_tool("mincresample")
    vol, path = written_oblique
    out = tmp_path / "res.mnc"
    subprocess.run([tool, "-quiet", "-like", str(path), str(path), str(out)], check=True)
    back = MINC2.read(out)
    assert np.allclose(back.affine, vol.affine, atol=1e-6)
    real = vol.scaled()
    assert np.max(np.abs(back.scaled() - real)) <= np.ptp(real) / 65535 + 1e-6


def test_mincreshape_sagittal_output_reads_at_same_world_positions(written_oblique, tmp_path):
    tool = require_tool("mincreshape")
    vol, path = written_oblique
    out = tmp_path / "sag.mnc"
    subprocess.run([tool, "-quiet", "-sagittal", str(path), str(out)], check=True)
    with h5py.File(out) as fh:
        assert fh["minc-2.0/image/0/image"].attrs["dimorder"] == b"xspace,zspace,yspace"
    back = MINC2.read(out)  # libminc rescaled per slice: float real values
    assert back.shape == (vol.shape[1], vol.shape[2], vol.shape[0])
    assert_same_world_values(back, vol.scaled(), vol.affine, rtol=np.ptp(vol.scaled()) / 65535)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_corrupted_bytes_raise_convert_error_or_read(tmp_path_factory, data):
    """Flipped bytes or truncation anywhere: a ConvertError naming the file, or a valid Volume; nothing else."""
    folder = tmp_path_factory.mktemp("fuzz")
    clean = folder / "clean.mnc"
    MINC2.write(Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4)), clean, compresslevel=0)
    raw = bytearray(clean.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(raw)))
    path = folder / "broken.mnc"
    path.write_bytes(bytes(raw[:cut]))
    try:
        vol = MINC2.read(path)
    except ConvertError as exc:
        assert "broken.mnc" in str(exc)
    else:
        assert vol.array.ndim in (3, 4)


def test_float_nan_voxels_survive_and_are_ignored_by_mincstats(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    arr[0, 0, 0] = np.nan
    MINC2.write(Volume(arr, np.eye(4)), tmp_path / "nan.mnc")
    back = MINC2.read(tmp_path / "nan.mnc")
    assert np.array_equal(back.array, arr, equal_nan=True)
    with h5py.File(tmp_path / "nan.mnc") as fh:
        assert fh["minc-2.0/image/0/image"].attrs["valid_range"].tolist() == [1.0, 23.0]  # finite values only
    require_tool("mincstats")
    assert mincstats(tmp_path / "nan.mnc", "-min", "-max") == [1.0, 23.0]


def test_length_one_vector_dimension_is_dropped(tmp_path):
    path = tmp_path / "v1.mnc"
    MINC2.write(Volume(np.zeros((2, 2, 3), np.uint8), np.eye(4)), path)
    with h5py.File(path, "a") as fh:
        del fh["minc-2.0/image/0/image"]
        ds = fh.create_dataset("minc-2.0/image/0/image", data=np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1))
        ds.attrs["dimorder"] = b"zspace,yspace,xspace,vector_dimension"
        fh.create_dataset("minc-2.0/dimensions/vector_dimension", data=np.int32(0))
    vol = MINC2.read(path)
    assert vol.shape == (2, 2, 3)
    assert np.array_equal(vol.array, np.arange(12, dtype=np.uint8).reshape(3, 2, 2).transpose(2, 1, 0))


def test_scaling_over_a_middle_dimension(tmp_path):
    """image-min/max may vary over any image dimension (here yspace only); nibabel refuses such files."""
    path = tmp_path / "y.mnc"
    MINC2.write(Volume(np.zeros((2, 3, 4), np.uint8), np.eye(4)), path)
    stored = np.arange(24, dtype=np.uint8).reshape(4, 3, 2)  # z, y, x
    with h5py.File(path, "a") as fh:
        img = fh["minc-2.0/image/0/image"]
        img[...] = stored
        img.attrs["valid_range"] = np.array([0.0, 255.0])
        for name, values in (("image-min", [0.0, 10.0, 20.0]), ("image-max", [255.0, 265.0, 530.0])):
            del fh[f"minc-2.0/image/0/{name}"]
            ds = fh.create_dataset(f"minc-2.0/image/0/{name}", data=np.array(values))
            ds.attrs["dimorder"] = b"yspace"
    vol = MINC2.read(path)
    expected = stored * np.array([1.0, 1.0, 2.0])[None, :, None] + np.array([0.0, 10.0, 20.0])[None, :, None]
    assert vol.dtype == np.float32
    assert np.allclose(vol.array, expected.transpose(2, 1, 0))


def test_rgb_volume_is_refused_naming_the_formats_that_hold_colour(tmp_path):
    from convert.volume import rgb_from_channels

    vol = Volume(rgb_from_channels(np.zeros((3, 3, 3, 3), np.uint8)), np.eye(4))
    path = tmp_path / "c.mnc"
    with pytest.raises(UnsupportedDataError, match="colour") as info:
        MINC2.write(vol, path)
    message = str(info.value)
    assert str(path) in message and "NIfTI" in message and "NRRD" in message and "Analyze" in message
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_declared_image_far_beyond_its_storage_is_refused(tmp_path):
    """An image dataset declared 4096^3 voxels with nothing stored: refused from the HDF5 storage
    size, before 128 GiB are allocated."""
    import h5py

    from convert.errors import CorruptFileError
    from convert.formats.minc import MINC2
    from convert.volume import Volume

    path = tmp_path / "v.mnc"
    MINC2.write(Volume(np.zeros((6, 5, 4), np.int16), np.eye(4)), path)
    with h5py.File(path, "r+") as fh:
        name = "minc-2.0/image/0/image"
        attrs = dict(fh[name].attrs)
        del fh[name]
        ds = fh.create_dataset(name, shape=(4096, 4096, 4096), dtype="i2", chunks=(1, 64, 64), compression="gzip")
        for key, value in attrs.items():
            ds.attrs[key] = value
    with pytest.raises(CorruptFileError, match="stores only"):
        MINC2.read(path)
