"""Lazy voxels: a SliceProxy behaves like the array it stands for, reads only what is asked, and streams."""

from __future__ import annotations

import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from convert import load, save
from convert.proxy import ByteSpan, SliceProxy, is_proxy, iter_slabs
from convert.volume import RGB_DTYPE, Volume, rgb_from_channels


class Counting:
    """A slice reader over an in-memory array that records which slices were read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.calls, self.lock = array, [], threading.Lock()

    def __call__(self, k: int, t: int) -> np.ndarray:
        with self.lock:
            self.calls.append((k, t))
        return self.array[:, :, k] if self.array.ndim == 3 else self.array[:, :, k, t]


@pytest.fixture(params=[(7, 5, 6), (4, 3, 5, 3)], ids=["3d", "4d"])
def stored(request: pytest.FixtureRequest, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(-2000, 3000, size=request.param).astype(np.int16)


def test_proxy_knows_shape_and_dtype_without_reading(stored: np.ndarray) -> None:
    reader = Counting(stored)
    proxy = SliceProxy(stored.shape, stored.dtype, reader)
    assert (proxy.shape, proxy.dtype, proxy.ndim, proxy.size) == (stored.shape, stored.dtype, stored.ndim, stored.size)
    assert proxy.nbytes == stored.nbytes and is_proxy(proxy) and not is_proxy(stored)
    assert reader.calls == []


def test_asarray_and_slabs_equal_the_array(stored: np.ndarray) -> None:
    proxy = SliceProxy(stored.shape, stored.dtype, Counting(stored))
    np.testing.assert_array_equal(np.asarray(proxy), stored)
    assert np.asarray(proxy).flags.f_contiguous
    nt = stored.shape[3] if stored.ndim == 4 else 1
    for t in range(nt):
        slab = proxy.slab(1, 4, t)
        expected = stored[:, :, 1:4] if stored.ndim == 3 else stored[:, :, 1:4, t]
        np.testing.assert_array_equal(slab, expected)
    np.testing.assert_array_equal(proxy[1:3, :, 2], stored[1:3, :, 2])
    assert proxy.astype(np.float32).dtype == np.float32


def test_a_slab_reads_only_its_slices(stored: np.ndarray) -> None:
    reader = Counting(stored)
    proxy = SliceProxy(stored.shape, stored.dtype, reader, workers=1)
    proxy.slab(2, 4, 0)
    assert sorted(reader.calls) == [(2, 0), (3, 0)]


def test_slabs_out_of_range_and_wrong_slice_shapes_are_errors(stored: np.ndarray) -> None:
    proxy = SliceProxy(stored.shape, stored.dtype, Counting(stored))
    with pytest.raises(IndexError):
        proxy.slab(0, stored.shape[2] + 1)
    bad = SliceProxy(stored.shape, stored.dtype, lambda k, t: np.zeros((2, 2), stored.dtype), workers=1)
    with pytest.raises(ValueError, match="shape"):
        np.asarray(bad)
    with pytest.raises(ValueError, match="byte spans"):
        SliceProxy(stored.shape, stored.dtype, Counting(stored), spans=[None])


def test_byte_spans_are_per_slice(stored: np.ndarray, tmp_path: Path) -> None:
    nk = stored.shape[2]
    nt = stored.shape[3] if stored.ndim == 4 else 1
    spans = [ByteSpan(tmp_path / f"{t}_{k}", 10, 70) for t in range(nt) for k in range(nk)]
    proxy = SliceProxy(stored.shape, stored.dtype, Counting(stored), spans=spans)
    assert proxy.byte_span(nk - 1, nt - 1) == spans[-1]
    assert SliceProxy(stored.shape, stored.dtype, Counting(stored)).byte_span(0) is None


def test_iter_slabs_covers_every_slice_once_in_file_order(stored: np.ndarray) -> None:
    for data in (stored, SliceProxy(stored.shape, stored.dtype, Counting(stored))):
        pieces = list(iter_slabs(data, max_bytes=stored.shape[0] * stored.shape[1] * 2 * 2))  # two slices a slab
        order = [(t, k) for t, k0, k1, _ in pieces for k in range(k0, k1)]
        nt = stored.shape[3] if stored.ndim == 4 else 1
        assert order == [(t, k) for t in range(nt) for k in range(stored.shape[2])]
        for t, k0, k1, slab in pieces:
            expected = stored[:, :, k0:k1] if stored.ndim == 3 else stored[:, :, k0:k1, t]
            np.testing.assert_array_equal(slab, expected)


def test_a_lazy_volume_is_a_volume(stored: np.ndarray, oblique: np.ndarray) -> None:
    reader = Counting(stored)
    volume = Volume(array=SliceProxy(stored.shape, stored.dtype, reader), affine=oblique, slope=0.5, intercept=-10)
    assert volume.is_lazy and volume.shape == stored.shape and volume.dtype == stored.dtype
    assert volume.orientation and reader.calls == []  # geometry needs no voxels
    np.testing.assert_array_equal(volume.voxels(), stored)
    np.testing.assert_allclose(volume.scaled(), stored * 0.5 - 10)
    assert volume.value_range() == (stored.min() * 0.5 - 10, stored.max() * 0.5 - 10)
    eager = volume.materialized()
    assert not eager.is_lazy and isinstance(eager.array, np.ndarray) and eager.materialized() is eager
    np.testing.assert_array_equal(eager.array, stored)
    image = volume.to_sitk()
    assert image.GetSize()[:3] == stored.shape[:3]


def test_a_proxy_must_have_a_supported_dtype(oblique: np.ndarray) -> None:
    from convert.errors import UnsupportedDataError

    with pytest.raises(UnsupportedDataError):
        Volume(array=SliceProxy((2, 2, 2), np.complex64, lambda k, t: np.zeros((2, 2))), affine=oblique)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mnc", ".hdr"])
def test_every_writer_takes_a_lazy_volume_and_puts_voxels_in_the_same_world_place(
        stored: np.ndarray, oblique: np.ndarray, tmp_path: Path, ext: str) -> None:
    if ext == ".hdr" and stored.ndim == 4:
        pytest.skip("checked in 3D for Analyze")
    affine = oblique if ext != ".hdr" else np.diag([-1.5, 2.0, 3.0, 1.0])  # Analyze: axis-aligned only
    lazy = Volume(array=SliceProxy(stored.shape, stored.dtype, Counting(stored)), affine=affine)
    eager = Volume(array=stored, affine=affine)
    save(lazy, tmp_path / f"lazy{ext}")
    save(eager, tmp_path / f"eager{ext}")
    a, b = load(tmp_path / f"lazy{ext}"), load(tmp_path / f"eager{ext}")
    np.testing.assert_array_equal(a.voxels(), b.voxels())
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    if ext in (".nii", ".nii.gz"):  # an independent reader agrees on voxels and world space
        img = nib.load(str(tmp_path / f"lazy{ext}"))
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), stored)
        np.testing.assert_allclose(img.affine, affine, atol=1e-5)
        import gzip

        def raw(path: Path) -> bytes:
            return gzip.decompress(path.read_bytes()) if ext == ".nii.gz" else path.read_bytes()

        assert raw(tmp_path / f"lazy{ext}") == raw(tmp_path / f"eager{ext}")  # the same file, streamed


def test_nifti_streams_a_lazy_colour_volume(tmp_path: Path, rng: np.random.Generator, oblique: np.ndarray) -> None:
    rgb = rgb_from_channels(rng.integers(0, 256, size=(5, 4, 3, 3)).astype(np.uint8))
    assert rgb.dtype == RGB_DTYPE
    lazy = Volume(array=SliceProxy(rgb.shape, rgb.dtype, Counting(rgb)), affine=oblique)
    save(lazy, tmp_path / "c.nii")
    save(Volume(array=rgb, affine=oblique), tmp_path / "e.nii")
    assert (tmp_path / "c.nii").read_bytes() == (tmp_path / "e.nii").read_bytes()
