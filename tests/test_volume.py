"""Volume model (the geometry helpers it uses are tested in tests/test_geometry.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from convert.errors import ConvertError, GeometryError, UnsupportedDataError
from convert.volume import SUPPORTED_DTYPES, Meta, Volume
from tests.conftest import oblique_affine


def test_derived_geometry(oblique):
    vol = Volume(np.zeros((4, 5, 6), np.int16), oblique)
    assert np.allclose(vol.spacing, [0.8, 1.1, 2.5])
    assert np.allclose(vol.origin, oblique[:3, 3])
    assert np.allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-12)
    assert vol.shape == (4, 5, 6)
    # world position of voxel (1, 2, 3) = affine @ index
    assert np.allclose(vol.world_coordinates([1, 2, 3]), (oblique @ [1, 2, 3, 1])[:3])


def test_affine_is_read_only_copy(oblique):
    affine = oblique.copy()
    vol = Volume(np.zeros((2, 2, 2), np.uint8), affine)
    affine[0, 0] = 99
    assert vol.affine[0, 0] != 99
    with pytest.raises(ValueError):
        vol.affine[0, 0] = 1


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=str)
def test_supported_dtypes_accepted(dtype):
    assert Volume(np.zeros((2, 3, 4), dtype), np.eye(4)).dtype == dtype


@pytest.mark.parametrize("dtype", ["int64", "uint64", "complex64", "float16", "bool"])
def test_unsupported_dtypes_rejected(dtype):
    with pytest.raises(UnsupportedDataError, match="not supported"):
        Volume(np.zeros((2, 3, 4), dtype), np.eye(4))


def test_big_endian_array_made_native():
    arr = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    vol = Volume(arr, np.eye(4))
    assert vol.array.dtype.isnative and np.array_equal(vol.array, arr)


@pytest.mark.parametrize("shape", [(4,), (4, 4), (2, 2, 2, 2, 2)])
def test_wrong_dimensionality(shape):
    with pytest.raises(UnsupportedDataError, match="3D or 4D"):
        Volume(np.zeros(shape, np.uint8), np.eye(4))


@pytest.mark.parametrize(
    "affine, match",
    [
        (np.eye(3), "4x4"),
        (np.diag([1, 1, 0, 1.0]), "singular"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1.0]]), "last row"),
    ],
)
def test_bad_affines(affine, match):
    with pytest.raises(GeometryError, match=match):
        Volume(np.zeros((2, 2, 2), np.uint8), affine)
    assert issubclass(GeometryError, ConvertError)


def test_scaling():
    vol = Volume(np.array([[[0, 1000]]], np.int16), np.eye(4), slope=2.0, intercept=-1024)
    assert vol.is_scaled
    assert np.array_equal(vol.scaled(), [[[-1024.0, 976.0]]])
    assert vol.value_range() == (-1024.0, 976.0)
    # slope 0 or NaN means "unscaled" (NIfTI convention)
    assert not Volume(np.zeros((1, 1, 1), np.int16), np.eye(4), slope=0.0, intercept=5).is_scaled
    assert not Volume(np.zeros((1, 1, 1), np.int16), np.eye(4), slope=float("nan")).is_scaled


def test_negative_slope_value_range():
    vol = Volume(np.array([[[1, 3]]], np.int16), np.eye(4), slope=-1.0)
    assert vol.value_range() == (-3.0, -1.0)


def test_meta_is_immutable_and_replaceable():
    meta = Meta(modality="CT")
    with pytest.raises(Exception):
        meta.modality = "MR"  # type: ignore[misc]
    assert meta.replace(units="HU").units == "HU"


@pytest.mark.parametrize("four_d", [False, True])
def test_sitk_round_trip_keeps_world_positions(four_d, rng):
    affine = oblique_affine()
    shape = (5, 6, 7, 3) if four_d else (5, 6, 7)
    arr = rng.integers(-100, 100, size=shape).astype(np.int16)
    vol = Volume(arr, affine, Meta(time_step=2.5 if four_d else None))
    image = vol.to_sitk(scaled=False)
    # Independent check: SimpleITK's own index->physical mapping (LPS) of a voxel equals ours (RAS) flipped.
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        full_index = index + ((1,) if four_d else ())
        lps = np.array(image.TransformIndexToPhysicalPoint(full_index)[:3])
        ras = vol.world_coordinates(index)
        assert np.allclose(lps * [-1, -1, 1], ras, atol=1e-9)
        assert image[full_index] == arr[full_index]
    back = Volume.from_sitk(image)
    assert np.array_equal(back.array, arr)
    assert np.allclose(back.affine, affine, atol=1e-9)
    if four_d:
        assert back.meta.time_step == 2.5


def test_to_sitk_applies_scaling_by_default():
    vol = Volume(np.array([[[0, 10]]], np.int16), np.eye(4), slope=2.0, intercept=-5)
    image = vol.to_sitk()
    assert sitk.GetArrayFromImage(image).ravel().tolist() == [-5.0, 15.0]


# --------------------------------------------------------------------------- colour (RGB24)
def _rgb(shape=(4, 3, 2)) -> np.ndarray:
    from convert.volume import rgb_from_channels

    channels = np.random.default_rng(3).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    return rgb_from_channels(channels)


def test_rgb_volume_keeps_geometry_and_is_never_scaled(oblique):
    from convert.volume import RGB_DTYPE

    vol = Volume(_rgb(), oblique)
    assert vol.is_rgb and vol.dtype == RGB_DTYPE and vol.shape == (4, 3, 2)
    assert np.allclose(vol.spacing, [0.8, 1.1, 2.5])
    assert vol.scaled() is vol.array
    with pytest.raises(UnsupportedDataError, match="colour"):
        Volume(_rgb(), oblique, slope=2.0)
    with pytest.raises(UnsupportedDataError, match="colour"):
        vol.replace(intercept=-1024.0)


def test_rgb_value_range_covers_all_channels():
    from convert.volume import rgb_from_channels

    channels = np.zeros((2, 2, 2, 3), np.uint8)
    channels[0, 0, 0, 1] = 7  # green
    channels[1, 1, 1, 2] = 250  # blue
    channels[..., 0] = 3  # red everywhere
    vol = Volume(rgb_from_channels(channels), np.eye(4))
    assert vol.value_range() == (0.0, 250.0)


def test_require_scalar_refuses_colour_naming_the_operation():
    Volume(np.zeros((2, 2, 2), np.int16), np.eye(4)).require_scalar("windowing")  # scalar: fine
    with pytest.raises(UnsupportedDataError, match="windowing needs one value per voxel"):
        Volume(_rgb(), np.eye(4)).require_scalar("windowing")


def test_other_record_dtypes_are_refused():
    other = np.zeros((2, 2, 2), dtype=[("R", "u2"), ("G", "u2"), ("B", "u2")])
    with pytest.raises(UnsupportedDataError, match="not supported"):
        Volume(other, np.eye(4))


def test_rgb_channel_helpers_validate_input():
    from convert.volume import rgb_channels, rgb_from_channels

    with pytest.raises(UnsupportedDataError, match="length 3"):
        rgb_from_channels(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(UnsupportedDataError, match="uint8"):
        rgb_from_channels(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(UnsupportedDataError, match="RGB"):
        rgb_channels(np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("shape", [(5, 4, 3), (5, 4, 3, 2)], ids=["3d", "4d"])
def test_rgb_sitk_round_trip_is_a_vector_uint8_image_at_the_same_place(oblique, shape):
    from convert.volume import rgb_channels

    vol = Volume(_rgb(shape), oblique, Meta(time_step=1.5 if len(shape) == 4 else None))
    image = vol.to_sitk()
    assert image.GetPixelID() == sitk.sitkVectorUInt8 and image.GetNumberOfComponentsPerPixel() == 3
    # voxel (i, j, k) of ours is ITK index (i, j, k): same colour at the same world point
    index = (4, 1, 2) + ((1,) if len(shape) == 4 else ())
    assert tuple(image.GetPixel(index)) == tuple(int(v) for v in rgb_channels(vol.array)[index])
    point = image.TransformIndexToPhysicalPoint(index[:3]) if len(shape) == 3 else None
    if point is not None:
        ras = vol.world_coordinates(np.array(index[:3]))
        assert np.allclose(point, [-ras[0], -ras[1], ras[2]])
    back = Volume.from_sitk(image)
    assert back.is_rgb and np.array_equal(back.array, vol.array) and np.allclose(back.affine, vol.affine)


def test_from_sitk_refuses_other_vector_images():
    image = sitk.Image([3, 3, 3], sitk.sitkVectorFloat32, 2)
    with pytest.raises(UnsupportedDataError, match="2-component"):
        Volume.from_sitk(image)


def test_repr_shows_shape_dtype_spacing_orientation_not_voxels():
    import numpy as np

    from convert.volume import Volume

    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    volume = Volume(np.arange(40 * 40 * 30, dtype=np.int16).reshape(40, 40, 30), affine, slope=2.0,
                    intercept=-1024.0)
    text = repr(volume)
    assert text == ("Volume(shape=(40, 40, 30), dtype=int16, spacing=(0.5, 0.75, 2) mm, orientation=RAS, "
                    "slope=2, intercept=-1024)")
    assert "array" not in text and "[" not in text

