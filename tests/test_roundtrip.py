"""The round-trip matrix: every writer x every reader, 3D and 4D, oblique non-isotropic geometry.

For each pair (A, B) a volume is written as A, read back (format detected from
the file), written as B and read back again: voxels must be identical and the
affine equal within 1e-6 mm. Analyze 7.5 cannot store rotations, so pairs that
go through Analyze use an axis-aligned affine in Analyze's assumed orientation
(LAS); what Analyze loses is tested in tests/test_analyze.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import convert
from convert.errors import UnsupportedDataError
from convert.formats import all_formats
from convert.volume import SUPPORTED_DTYPES, Meta, Volume
from tests.conftest import oblique_affine

#: format name -> file name used in the matrix
MATRIX = {
    "nifti": "v.nii",
    "nifti-gz": "v.nii.gz",
    "nrrd": "v.nrrd",
    "nhdr": "v.nhdr",
    "minc2": "v.mnc",
    "analyze": "v.hdr",
    "npz": "v.npz",
    "npy": "v.npy",
    "dicom": "dcm",  # a folder: one file per slice
}
AVAILABLE = {f.name for f in all_formats() if f.can_write}
LAS_AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, 1.1, 0, -60.5], [0, 0, 2.5, -20.0], [0, 0, 0, 1.0]])


def _need(name: str) -> None:
    if name not in AVAILABLE:
        pytest.fail(f"format {name} is not registered as writable")


def _volume(four_d: bool, affine: np.ndarray, dtype: str = "int16") -> Volume:
    rng = np.random.default_rng(7)
    shape = (7, 6, 5, 3) if four_d else (7, 6, 5)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        lo, hi = max(info.min, -30000), min(info.max, 30000)
        arr = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
        arr.flat[0], arr.flat[-1] = info.min, info.max  # extremes survive too
    else:
        arr = (rng.standard_normal(shape) * 1000).astype(dtype)
    return Volume(arr, affine, Meta(time_step=2.0 if four_d else None))


def _write_read(vol: Volume, fmt: str, folder: Path) -> Volume:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MATRIX[fmt]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Analyze warns about orientation; tested elsewhere
        convert.save(vol, path, to=fmt)
    return convert.load(path)


def _assert_same(a: Volume, b: Volume, k_may_reverse: bool = False) -> None:
    assert a.shape == b.shape
    if k_may_reverse and not np.allclose(a.affine, b.affine, atol=1e-6):
        # DICOM stacks are read along the slice normal: a left-handed volume comes back with k reversed,
        # the same voxels at the same world positions
        b = b.replace(array=b.voxels()[:, :, ::-1], affine=b.affine @ _flip_k(b.shape[2]))
    assert np.array_equal(a.scaled(), b.scaled())
    assert np.allclose(a.affine, b.affine, atol=1e-6), f"{a.affine}\n!=\n{b.affine}"


def _flip_k(nk: int) -> np.ndarray:
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, nk - 1.0
    return flip


@pytest.mark.parametrize("four_d", [False, True], ids=["3d", "4d"])
@pytest.mark.parametrize("reader", list(MATRIX))
@pytest.mark.parametrize("writer", list(MATRIX))
def test_matrix(tmp_path, writer, reader, four_d):
    _need(writer)
    _need(reader)
    affine = LAS_AFFINE if "analyze" in (writer, reader) else oblique_affine()
    vol = _volume(four_d, affine)
    first = _write_read(vol, writer, tmp_path / "a")
    _assert_same(vol, first, k_may_reverse=writer == "dicom")
    second = _write_read(first, reader, tmp_path / "b")
    _assert_same(vol, second, k_may_reverse="dicom" in (writer, reader))


@pytest.mark.parametrize("dtype", [str(d) for d in SUPPORTED_DTYPES])
@pytest.mark.parametrize("fmt", list(MATRIX))
def test_every_dtype(tmp_path, fmt, dtype):
    _need(fmt)
    affine = LAS_AFFINE if fmt == "analyze" else oblique_affine()
    vol = _volume(False, affine, dtype)
    try:
        back = _write_read(vol, fmt, tmp_path)
    except UnsupportedDataError as exc:
        # A format that cannot hold the dtype must say so clearly, naming the type, and leave nothing behind.
        assert dtype in str(exc) or "type" in str(exc)
        assert not any(p for p in tmp_path.iterdir() if p.is_file())
        return
    from convert.dicom.writer import choose_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the requantisation warning, tested in tests/test_writer.py
        storage = choose_storage(vol) if fmt == "dicom" else None
    if storage is not None and not storage.exact:  # 16-bit pixels: requantised within the stated bound
        assert back.shape == vol.shape and np.allclose(back.affine, vol.affine, atol=1e-6)
        assert np.max(np.abs(back.scaled() - vol.scaled())) <= storage.max_error
        return
    _assert_same(vol, back, k_may_reverse=fmt == "dicom")
    widened = vol.array.dtype.kind == "u" and back.array.dtype.kind == "i"  # Analyze: uint16 -> int32, lossless
    assert back.scaled().dtype.kind == vol.array.dtype.kind or back.is_scaled or widened


# --------------------------------------------------------------------------- colour (RGB24)
#: Formats that hold RGB (MINC2 refuses colour: see tests/test_minc.py; DICOM writes RGB Secondary Capture).
RGB_MATRIX = [name for name in MATRIX if name != "minc2"]


def _rgb_volume(four_d: bool, affine: np.ndarray) -> Volume:
    from convert.volume import rgb_from_channels

    shape = (7, 6, 5, 3) if four_d else (7, 6, 5)
    channels = np.random.default_rng(17).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    channels.flat[0], channels.flat[-1] = 0, 255
    return Volume(rgb_from_channels(channels), affine, Meta(time_step=2.0 if four_d else None))


def _independent_rgb(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(R, G, B channels ``[i, j, k(, t), 3]``, RAS+ affine) of ``path`` read by nibabel, or pynrrd + SimpleITK."""
    import nibabel as nib

    if fmt in ("npz", "npy"):  # numpy itself reads them: structured R, G, B voxels and the stored affine
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                rgb, affine = data["voxels"], data["affine"]
        else:
            import json

            rgb = np.load(path, allow_pickle=False)
            affine = np.array(json.loads(path.with_suffix(".json").read_text())["affine"])
        return np.stack([rgb["R"], rgb["G"], rgb["B"]], axis=-1), affine
    if fmt == "dicom":  # pydicom decodes each file; files in InstanceNumber order, geometry from IPP/IOP
        import pydicom

        files = sorted((pydicom.dcmread(p) for p in path.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
        nk = len({tuple(float(v) for v in d.ImagePositionPatient) for d in files})
        frames = np.stack([d.pixel_array.transpose(1, 0, 2) for d in files], axis=2)  # [i, j, t * nk + k, 3]
        nt = frames.shape[2] // nk
        channels = frames.reshape(frames.shape[:2] + (nt, nk, 3)).transpose(0, 1, 3, 2, 4)
        channels = channels[:, :, :, 0] if nt == 1 else channels
        row, col = np.array(files[0].ImageOrientationPatient[:3]), np.array(files[0].ImageOrientationPatient[3:])
        dj, di = (float(v) for v in files[0].PixelSpacing)
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1] = row * di, col * dj
        affine[:3, 2] = np.subtract(files[1].ImagePositionPatient, files[0].ImagePositionPatient)
        affine[:3, 3] = files[0].ImagePositionPatient
        return channels, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    if fmt in ("nrrd", "nhdr"):
        import nrrd
        import SimpleITK as sitk

        data, header = nrrd.read(str(path), index_order="F")
        assert header["kinds"][0] == "RGB-color"
        channels = np.moveaxis(data, 0, -1)
        image = sitk.ReadImage(str(path))
        assert image.GetNumberOfComponentsPerPixel() == 3
        dim = image.GetDimension()
        spatial = tuple(range(dim - 1, -1, -1))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(spatial + (dim,)), channels)
        direction = np.array(image.GetDirection()).reshape(dim, dim)[:3, :3]
        affine = np.eye(4)
        affine[:3, :3] = direction * np.array(image.GetSpacing())[:3]
        affine[:3, 3] = image.GetOrigin()[:3]
        return channels, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    img = nib.load(str(path))
    assert int(img.header["datatype"]) == 128
    rgb = np.asanyarray(img.dataobj)
    return np.stack([rgb["R"], rgb["G"], rgb["B"]], axis=-1), img.affine


@pytest.mark.parametrize("four_d", [False, True], ids=["3d", "4d"])
@pytest.mark.parametrize("reader", RGB_MATRIX)
@pytest.mark.parametrize("writer", RGB_MATRIX)
def test_rgb_matrix(tmp_path, writer, reader, four_d):
    from convert.volume import rgb_channels

    _need(writer)
    _need(reader)
    affine = LAS_AFFINE if "analyze" in (writer, reader) else oblique_affine()
    vol = _rgb_volume(four_d, affine)
    first = _write_read(vol, writer, tmp_path / "a")
    assert first.is_rgb
    _assert_same(vol, first, k_may_reverse=writer == "dicom")
    second = _write_read(first, reader, tmp_path / "b")
    assert second.is_rgb
    _assert_same(vol, second, k_may_reverse="dicom" in (writer, reader))
    channels, affine_ras = _independent_rgb(tmp_path / "b" / MATRIX[reader], reader)
    np.testing.assert_array_equal(channels, rgb_channels(vol.array))  # LAS_AFFINE: Analyze keeps the voxel order
    if reader != "analyze":  # plain Analyze has no position; SPM's originator is checked through our reader above
        np.testing.assert_allclose(affine_ras, vol.affine, atol=1e-6)


def test_rgb_to_minc2_is_refused_clearly(tmp_path):
    _need("minc2")
    with pytest.raises(UnsupportedDataError, match="colour"):
        _write_read(_rgb_volume(False, oblique_affine()), "minc2", tmp_path)
    assert not any(tmp_path.iterdir())
