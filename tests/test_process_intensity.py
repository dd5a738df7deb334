"""convert/process/intensity.py: HU with the padding rule, windows, clip, cast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.errors import UnsupportedDataError
from convert.process import WINDOW_PRESETS, cast, clip, hu, window
from convert.process.intensity import resolve_window
from convert.volume import Meta, Volume


def phantom(stored_dtype=np.uint16, intercept=-1024.0) -> tuple[Volume, dict[str, np.ndarray]]:
    """A CT phantom with known HU regions (air, fat, water, bone) and scanner padding outside the FOV."""
    regions = {"air": -1000, "fat": -100, "water": 0, "bone": 1000}
    hu_values = np.zeros((20, 20, 4), np.int32)
    masks = {}
    for n, (name, value) in enumerate(regions.items()):
        m = np.zeros(hu_values.shape, bool)
        m[2 + 4 * n:5 + 4 * n, 4:16, :] = True
        hu_values[m] = value
        masks[name] = m
    pad = np.zeros(hu_values.shape, bool)
    pad[:, :2, :] = True  # outside the circular field of view
    masks["padding"] = pad
    stored = hu_values - int(intercept)
    stored[pad] = 0 if stored_dtype == np.uint16 else -2000  # -2000 HU (uint16: 0 - 1024 = -1024 is air already)
    if stored_dtype == np.int16:
        stored[pad] = -2000 - int(intercept) - 1024  # a stored value meaning -3024 HU, as scanners write
    return Volume(stored.astype(stored_dtype), np.eye(4), Meta(modality="CT"), intercept=intercept), masks


def test_phantom_regions_have_their_hu_after_hu():
    v, masks = phantom(np.int16, intercept=-1024.0)
    out = hu(v)
    assert out.meta.units == "HU" and not out.is_scaled
    for name, value in {"air": -1000, "fat": -100, "water": 0, "bone": 1000}.items():
        assert np.all(out.voxels()[masks[name]] == value), name
    assert np.all(out.voxels()[masks["padding"]] == -1024)  # padding below -2000 HU becomes air
    assert out.history[-1]["padding_voxels"] == int(masks["padding"].sum())


def test_padding_value_can_be_chosen():
    v, masks = phantom(np.int16)
    assert np.all(hu(v, padding=-1000).voxels()[masks["padding"]] == -1000)


def test_hu_overflow_uint16_with_intercept_chooses_a_wide_enough_dtype():
    """dicom2nifti #150: intercept -1024 on uint16 values up to 65535 must not wrap in int16."""
    stored = np.array([0, 1024, 40000, 65535], np.uint16).reshape(2, 2, 1)
    out = hu(Volume(stored, np.eye(4), Meta(modality="CT"), intercept=-1024.0))
    assert out.dtype == np.int32
    assert out.voxels().ravel().tolist() == [-1024, 0, 40000 - 1024, 65535 - 1024]


def test_hu_overflow_int16_negated_minimum():
    """dicom2nifti #144: -(-32768) does not fit int16."""
    stored = np.array([-32768, 0, 100, 32767], np.int16).reshape(2, 2, 1)
    out = hu(Volume(stored, np.eye(4), Meta(modality="CT"), slope=-1.0, intercept=0.0), padding_threshold=-1e9)
    assert out.dtype == np.int32 and out.voxels().ravel().tolist() == [32768, 0, -100, -32767]


def test_hu_narrow_range_stays_int16_and_fractional_slope_is_float32():
    stored = np.array([0, 2000, 3000, 4095], np.uint16).reshape(2, 2, 1)
    assert hu(Volume(stored, np.eye(4), Meta(modality="CT"), intercept=-1024.0)).dtype == np.int16
    out = hu(Volume(stored, np.eye(4), Meta(modality="CT"), slope=0.5, intercept=-1024.0))
    assert out.dtype == np.float32 and out.voxels().ravel().tolist() == [-1024.0, -24.0, 476.0, 1023.5]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(0, 65535), min_size=1, max_size=30),
       intercept=st.sampled_from([-1024.0, -32768.0, 0.0, 1000.0]), slope=st.sampled_from([1.0, 2.0, -1.0]))
def test_hu_never_wraps_around(values, intercept, slope):
    stored = np.array(values, np.uint16).reshape(-1, 1, 1)
    out = hu(Volume(stored, np.eye(4), Meta(modality="CT"), slope=slope, intercept=intercept),
             padding_threshold=-1e12)
    np.testing.assert_array_equal(out.voxels().astype(np.float64), stored.astype(np.float64) * slope + intercept)


def test_hu_on_mr_is_refused():
    v = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4), Meta(modality="MR"))
    with pytest.raises(UnsupportedDataError, match="--hu applies to CT only; this volume's modality is MR"):
        hu(v)


def test_window_presets_cover_the_documented_set():
    assert WINDOW_PRESETS["brain"] == (40.0, 80.0)
    assert WINDOW_PRESETS["lungs"] == (-600.0, 1500.0)
    assert len(WINDOW_PRESETS) == 11
    assert resolve_window("Soft_Tissue")[:2] == (40.0, 375.0)
    assert resolve_window("40,80")[:2] == (40.0, 80.0)


def test_window_values_at_the_boundaries():
    values = np.array([-1000, -1, 0, 40, 80, 81, 3000], np.int16).reshape(-1, 1, 1)
    v = Volume(values, np.eye(4), Meta(modality="CT", units="HU"))
    clipped = window(v, "brain")
    assert clipped.dtype == np.int16 and clipped.meta.units == "HU"
    assert clipped.voxels().ravel().tolist() == [0, 0, 0, 40, 80, 80, 80]
    unit = window(v, "brain", output="unit")
    np.testing.assert_allclose(unit.voxels().ravel(), [0, 0, 0, 0.5, 1, 1, 1])
    assert unit.dtype == np.float32 and unit.meta.units is None
    assert window(v, "brain", output="uint8").voxels().ravel().tolist() == [0, 0, 0, 128, 255, 255, 255]
    # centre 0, width 10: -5..5; -1 -> 0.4 * 255 = 102, 0 -> 127.5 -> 128
    assert window(v, (0, 10), output="uint8").voxels().ravel().tolist() == [0, 102, 128, 255, 255, 255, 255]


def test_window_dicom_uses_the_series_window():
    v = Volume(np.array([0, 50, 100], np.int16).reshape(-1, 1, 1), np.eye(4),
               Meta(modality="CT", units="HU", window=((50.0, 100.0),)))
    out = window(v, "dicom", output="unit")
    np.testing.assert_allclose(out.voxels().ravel(), [0, 0.5, 1])
    with pytest.raises(UnsupportedDataError, match="no WindowCenter"):
        window(v.replace(meta=Meta(modality="CT")), "dicom")


def test_window_bad_input():
    v = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    with pytest.raises(UnsupportedDataError, match="unknown window 'nope'"):
        window(v, "nope")
    with pytest.raises(UnsupportedDataError, match="width must be > 0"):
        window(v, "40,0")
    with pytest.raises(UnsupportedDataError, match="width must be > 0"):
        window(v, (40, -5))


def test_window_applies_scaling_first():
    v = Volume(np.array([0, 1024, 1104], np.uint16).reshape(-1, 1, 1), np.eye(4), Meta(modality="CT"),
               intercept=-1024.0)
    assert window(v, "brain").voxels().ravel().tolist() == [0.0, 0.0, 80.0]


def test_clip_and_cast():
    v = Volume(np.array([-5.5, 0.2, 300.7], np.float32).reshape(-1, 1, 1), np.eye(4))
    assert clip(v, 0, 100).voxels().ravel().tolist() == pytest.approx([0, 0.2, 100])
    assert cast(v, np.int16).voxels().ravel().tolist() == [-6, 0, 301]
    with pytest.raises(UnsupportedDataError, match="do not fit uint8"):
        cast(v, np.uint8)
    with pytest.raises(UnsupportedDataError, match="NaN"):
        cast(Volume(np.array([np.nan, 1.0], np.float32).reshape(-1, 1, 1), np.eye(4)), np.int16)
    wide = Volume(np.array([0, 40000], np.int32).reshape(-1, 1, 1), np.eye(4))
    with pytest.raises(UnsupportedDataError, match="do not fit int16"):
        cast(wide, "int16")
    assert cast(wide, "uint16").voxels().ravel().tolist() == [0, 40000]
