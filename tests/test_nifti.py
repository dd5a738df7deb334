"""NIfTI adapter (convert/formats/nifti.py): geometry against nibabel and SimpleITK, real files, bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from convert.errors import CorruptFileError
from convert.formats import nifti
from convert.formats.nifti import NIFTI, NIFTI_GZ, NIFTI_PAIR
from convert.geometry import ras_to_lps
from convert.volume import Meta, Volume
from tests.conftest import oblique_affine

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
FLAVOURS = [(NIFTI, "v.nii"), (NIFTI_GZ, "v.nii.gz"), (NIFTI_PAIR, "v.hdr")]


@pytest.mark.parametrize("fmt, name", FLAVOURS, ids=lambda x: getattr(x, "name", x))
def test_header_fields_written(tmp_path, fmt, name, rng):
    arr = rng.integers(0, 4000, size=(6, 5, 4, 3)).astype(np.int16)
    vol = Volume(arr, oblique_affine(), Meta(time_step=2.0), slope=0.5, intercept=-1024)
    written = fmt.write(vol, tmp_path / name)
    assert all(p.exists() for p in written)
    img = nib.load(tmp_path / name)
    hdr = img.header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    assert hdr.get_xyzt_units() == ("mm", "sec")
    assert np.allclose(hdr.get_sform(), vol.affine, atol=1e-6)
    assert np.allclose(hdr.get_qform(), vol.affine, atol=1e-5)  # rigid affine: qform exact too
    assert float(hdr["pixdim"][4]) == 2.0
    assert img.dataobj.slope == 0.5 and img.dataobj.inter == -1024
    assert img.get_data_dtype() == np.int16
    assert np.array_equal(np.asarray(img.dataobj.get_unscaled()), arr)
    assert np.allclose(img.get_fdata(), arr * 0.5 - 1024)


def test_unscaled_volume_writes_no_scaling(tmp_path):
    vol = Volume(np.ones((2, 2, 2), np.float32), np.eye(4))
    NIFTI.write(vol, tmp_path / "a.nii")
    img = nib.load(tmp_path / "a.nii")
    assert img.dataobj.slope == 1.0 and img.dataobj.inter == 0.0


def test_simpleitk_reads_same_world_geometry(tmp_path, rng):
    affine = oblique_affine()
    arr = rng.integers(-500, 500, size=(7, 6, 5)).astype(np.int16)
    NIFTI_GZ.write(Volume(arr, affine), tmp_path / "a.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    lps = ras_to_lps(affine)
    assert np.allclose(image.GetOrigin(), lps[:3, 3], atol=1e-4)
    assert np.allclose(image.GetSpacing(), [0.8, 1.1, 2.5], atol=1e-5)
    assert np.allclose(np.array(image.GetDirection()).reshape(3, 3), lps[:3, :3] / [0.8, 1.1, 2.5], atol=1e-5)
    assert image[(6, 5, 4)] == arr[6, 5, 4]


def test_sheared_affine_kept_exactly_in_sform(tmp_path):
    affine = np.array([[1.0, 0.3, 0, 5], [0, 1.0, 0, 6], [0, 0, 2, 7], [0, 0, 0, 1]])
    NIFTI.write(Volume(np.zeros((3, 3, 3), np.uint8), affine), tmp_path / "s.nii")
    img = nib.load(tmp_path / "s.nii")
    assert np.allclose(img.header.get_sform(), affine)
    assert np.allclose(NIFTI.read(tmp_path / "s.nii").affine, affine)


def test_large_volume_written_in_chunks(tmp_path, monkeypatch, rng):
    # Force tiny chunks so the slab loop (used to bound memory) is exercised.
    from convert.formats import _nib

    original = _nib.iter_fortran_chunks
    monkeypatch.setattr(nifti, "iter_fortran_chunks", lambda a: original(a, max_bytes=1))
    arr = rng.integers(0, 255, size=(9, 8, 7, 2)).astype(np.uint8)
    NIFTI.write(Volume(arr, np.eye(4)), tmp_path / "c.nii")
    assert np.array_equal(np.asarray(nib.load(tmp_path / "c.nii").dataobj), arr)


def test_non_contiguous_array(tmp_path, rng):
    arr = rng.integers(0, 100, size=(8, 9, 10)).astype(np.int32)[::2, :, ::-1]
    NIFTI.write(Volume(arr, np.eye(4)), tmp_path / "n.nii")
    assert np.array_equal(np.asarray(nib.load(tmp_path / "n.nii").dataobj), arr)


@pytest.mark.parametrize(
    "name", ["example4d.nii.gz", "example_nifti2.nii.gz", "anatomical.nii", "functional.nii", "standard.nii.gz"]
)
def test_real_nibabel_files_agree_with_nibabel(name):
    path = NIB_DATA / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this nibabel")
    from convert.api import load

    vol = load(path)
    img = nib.load(path)
    assert np.allclose(vol.affine, img.affine, atol=1e-6)
    expected = np.asarray(img.get_fdata())
    while expected.ndim < 3:
        expected = expected[..., None]
    assert vol.shape == expected.shape
    assert np.allclose(vol.scaled(), expected)


def test_nifti2_read_keeps_values_and_affine():
    path = NIB_DATA / "example_nifti2.nii.gz"
    vol = NIFTI_GZ.read(path)
    img = nib.load(path)
    assert isinstance(img, nib.Nifti2Image)
    assert np.array_equal(vol.array, np.asarray(img.dataobj.get_unscaled()))


def test_time_step_in_milliseconds_converted_to_seconds(tmp_path):
    img = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.int16), np.eye(4))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 2500
    nib.save(img, tmp_path / "ms.nii")
    assert NIFTI.read(tmp_path / "ms.nii").meta.time_step == pytest.approx(2.5)


# ---------------------------------------------------------------- bad input
def test_truncated_gz_is_a_clear_error(tmp_path, rng):
    NIFTI_GZ.write(Volume(rng.random((20, 20, 20)).astype(np.float32), np.eye(4)), tmp_path / "ok.nii.gz")
    data = (tmp_path / "ok.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.nii.gz"):
        NIFTI_GZ.read(tmp_path / "cut.nii.gz")


def test_truncated_uncompressed_data_is_a_clear_error(tmp_path):
    NIFTI.write(Volume(np.zeros((20, 20, 20), np.float32), np.eye(4)), tmp_path / "ok.nii")
    data = (tmp_path / "ok.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[:1000])
    with pytest.raises(CorruptFileError, match="cut.nii"):
        NIFTI.read(tmp_path / "cut.nii")


def test_pair_without_image_file(tmp_path):
    NIFTI_PAIR.write(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "p.hdr")
    (tmp_path / "p.img").unlink()
    with pytest.raises(CorruptFileError, match="p.img"):
        NIFTI_PAIR.read(tmp_path / "p.hdr")


def test_sniff(tmp_path):
    NIFTI.write(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "a.nii")
    assert NIFTI.sniff(tmp_path / "a.nii")
    (tmp_path / "t.nii").write_text("hello, I am text\n" * 40)
    assert not NIFTI.sniff(tmp_path / "t.nii")
    (tmp_path / "g.nii.gz").write_bytes(gzip.compress((tmp_path / "a.nii").read_bytes()))
    assert NIFTI_GZ.sniff(tmp_path / "g.nii.gz")


# --------------------------------------------------------------------------- colour (RGB24)
def _rgb_volume(shape=(5, 4, 3)) -> Volume:
    from convert.volume import rgb_from_channels

    channels = np.random.default_rng(5).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    return Volume(rgb_from_channels(channels), oblique_affine(), Meta(time_step=1.5 if len(shape) == 4 else None))


@pytest.mark.parametrize("fmt,name", [(NIFTI, "c.nii"), (NIFTI_GZ, "c.nii.gz"), (NIFTI_PAIR, "c.hdr")])
@pytest.mark.parametrize("shape", [(5, 4, 3), (5, 4, 3, 2)], ids=["3d", "4d"])
def test_rgb_is_written_as_datatype_128_that_nibabel_reads(tmp_path, fmt, name, shape):
    from convert.volume import RGB_DTYPE

    vol = _rgb_volume(shape)
    fmt.write(vol, tmp_path / name)
    img = nib.load(str(tmp_path / name))
    assert int(img.header["datatype"]) == 128 and int(img.header["bitpix"]) == 24  # RGB24, as dcm2niix writes
    assert img.get_data_dtype() == RGB_DTYPE
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), vol.array)
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-6)
    back = fmt.read(tmp_path / name)
    assert back.is_rgb and np.array_equal(back.array, vol.array) and not back.is_scaled


def test_nifti2_rgb_is_read(tmp_path):
    vol = _rgb_volume()
    path = tmp_path / "c2.nii"
    nib.save(nib.Nifti2Image(vol.array, vol.affine), str(path))
    back = NIFTI.read(path)
    assert back.is_rgb and np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)


def test_rgb_scaling_fields_are_ignored_as_the_nifti_standard_says(tmp_path):
    vol = _rgb_volume()
    img = nib.Nifti1Image(vol.array, vol.affine)
    img.header["scl_slope"], img.header["scl_inter"] = 2.0, -10.0  # meaningless for RGB24
    path = tmp_path / "scaled_rgb.nii"
    nib.save(img, str(path))
    back = NIFTI.read(path)
    assert back.is_rgb and not back.is_scaled and np.array_equal(back.array, vol.array)


# --------------------------------------------------------------------------- broken headers (issue 17)
def _broken(tmp_path: Path, name: str, offset: int, fmt: str, value, extra: bytes = b"") -> Path:
    import struct

    path = tmp_path / name
    NIFTI.write(Volume(np.arange(120, dtype=np.int16).reshape(6, 5, 4), oblique_affine(), slope=0.5, intercept=-3.0),
                tmp_path / "ok.nii")
    data = bytearray((tmp_path / "ok.nii").read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data[:352]) + extra + bytes(data[352:]) if extra else bytes(data))
    return path


@pytest.mark.parametrize("offset, fmt, value, words", [
    (40, "<h", -1, "dim"), (40, "<h", 0, "dim"), (40, "<h", 9, "dim"), (42, "<h", -5, "shape"),
    (70, "<h", 0, "datatype"), (70, "<h", 9999, "datatype"), (108, "<f", -1.0, "offset"),
    (108, "<f", float("inf"), "offset"), (116, "<f", float("nan"), "scl_inter"), (112, "<f", float("inf"), "scl_slope"),
])
def test_broken_header_field_is_a_corrupt_file_error(tmp_path, offset, fmt, value, words):
    """dim0=-1/0/9, dim1=-5, datatype 0/9999, vox_offset -1/inf, scl_inter NaN, scl_slope inf: one
    CorruptFileError naming the file (nibabel's HeaderDataError/OverflowError never leak)."""
    path = _broken(tmp_path, "bad.nii", offset, fmt, value)
    with pytest.raises(CorruptFileError) as info:
        NIFTI.read(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_extension_with_an_odd_esize_is_a_corrupt_file_error(tmp_path):
    import struct

    path = _broken(tmp_path, "ext.nii", 348, "<B", 1, extra=struct.pack("<ii", 17, 4) + b"x" * 8)
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, 108, 368.0)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="NIfTI"):
        NIFTI.read(path)


def test_pair_with_dim0_9_is_a_corrupt_file_error(tmp_path):
    import struct

    NIFTI_PAIR.write(Volume(np.zeros((6, 5, 4), np.int16), oblique_affine()), tmp_path / "p.hdr")
    header = bytearray((tmp_path / "p.hdr").read_bytes())
    struct.pack_into("<h", header, 40, 9)
    (tmp_path / "p.hdr").write_bytes(bytes(header))
    with pytest.raises(CorruptFileError, match="dim"):
        NIFTI_PAIR.read(tmp_path / "p.hdr")


def test_gzip_bomb_header_refused_before_reading(tmp_path):
    """A .nii.gz whose header describes far more voxels than its compressed bytes can hold."""
    import struct

    NIFTI_GZ.write(Volume(np.zeros((6, 5, 4), np.int16), oblique_affine()), tmp_path / "v.nii.gz")
    raw = bytearray(gzip.decompress((tmp_path / "v.nii.gz").read_bytes()))
    struct.pack_into("<hhh", raw, 42, 32767, 32767, 32767)
    (tmp_path / "big.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(CorruptFileError, match="compressed bytes"):
        NIFTI_GZ.read(tmp_path / "big.nii.gz")


def test_axis_longer_than_nifti1_allows_is_refused_on_write(tmp_path):
    from convert.errors import UnsupportedDataError

    with pytest.raises(UnsupportedDataError, match="32767"):
        NIFTI.write(Volume(np.zeros((40000, 1, 1), np.uint8), np.eye(4)), tmp_path / "long.nii")


def _epi_like(shape=(64, 64, 30, 14)) -> np.ndarray:
    """A 4D int16 series (~3.4 MiB: several gzip blocks, not a whole number of them) that
    compresses like real EPI: smooth anatomy plus noise, each volume slightly different."""
    rng = np.random.default_rng(7)
    i, j, k = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape[:3]), indexing="ij")
    anatomy = 800 * np.exp(-(i**2 + j**2 + k**2) * 2)
    return np.stack([anatomy + rng.normal(0, 20, shape[:3]) for _ in range(shape[3])], axis=3).astype(np.int16)


def _one_gzip_member(data: bytes) -> bytes:
    """The uncompressed bytes of ``data``, which must be exactly one gzip member."""
    import zlib

    stream = zlib.decompressobj(31)
    out = stream.decompress(data)
    assert stream.eof and stream.unused_data == b""
    return out


def test_nii_gz_of_a_multi_block_volume_has_the_same_bytes_every_time(tmp_path):
    """The same 4D volume written 30 times (3.4 MiB: several gzip blocks, compressed on 2 threads) gives one set of
    bytes, which nibabel, gzip, zlib and SimpleITK (niftilib's zlib reader) read back exactly."""
    arr = _epi_like()
    volume = Volume(arr, oblique_affine())
    hashes = set()
    for _ in range(30):
        NIFTI_GZ.write(volume, tmp_path / "v.nii.gz", overwrite=True)
        data = (tmp_path / "v.nii.gz").read_bytes()
        hashes.add(hash(data))
    assert len(hashes) == 1
    assert _one_gzip_member(data)[352:] == arr.tobytes(order="F")
    assert np.array_equal(np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj), arr)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "v.nii.gz"))).transpose(3, 2, 1, 0),
                          arr)
