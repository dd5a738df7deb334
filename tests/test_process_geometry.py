"""convert/process/geometry.py: reorient, flip, resample (SimpleITK), crop and pad; slice regridding and
tilt correction (checked on stacks whose values are a linear function of world position).

World positions are checked against independent code: SimpleITK's own index ->
physical point (LPS), nibabel's orientation tables and nibabel's
``resample_from_to`` (scipy), not only against our own affine arithmetic.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.errors import UnsupportedDataError
from convert.process import crop, crop_to_foreground, flip, pad_to, reorient, resample, resample_to
from convert.geometry import lps_to_ras, lps_to_ras_point
from convert.process.geometry import correct_tilt, output_grid, per_channel, regrid_slices
from convert.volume import RGB_DTYPE, Meta, Volume, rgb_channels, rgb_from_channels
from tests.conftest import oblique_affine, rotation

#: all 48 axis codes: 6 permutations of the three world axes x 8 sign choices
ALL_CODES = ["".join(p[n] for n in range(3)) for perm in itertools.permutations(["LR", "PA", "IS"])
             for p in itertools.product(*perm)]


def _unique_volume(shape=(5, 6, 7), affine=None, meta=None) -> Volume:
    """Every voxel has its own value: a permutation of voxels is visible."""
    arr = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    return Volume(arr, oblique_affine() if affine is None else affine, meta or Meta())


def _world_of_values(v: Volume) -> dict[int, np.ndarray]:
    idx = np.indices(v.shape).reshape(3, -1).T
    return dict(zip(v.voxels().reshape(-1).tolist(), v.world_coordinates(idx)))


def test_all_48_codes_listed():
    assert len(set(ALL_CODES)) == 48


# --------------------------------------------------------------------------- reorient
@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(ALL_CODES), angles=st.tuples(*[st.floats(-0.6, 0.6)] * 3),
       lps=st.booleans(), flips=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
def test_reorient_is_an_exact_voxel_permutation_with_world_positions_kept(code, angles, lps, flips):
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) @ np.diag(np.array([0.8, 1.1, 2.5]) * np.array(flips))
    affine[:3, 3] = (-40.0, 12.0, 7.5)
    if lps:  # a volume whose voxel axes follow LPS (DICOM order), e.g. from ITK
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    v = _unique_volume(affine=affine)
    out = reorient(v, code)
    assert out.orientation == code
    assert sorted(out.voxels().ravel().tolist()) == sorted(v.voxels().ravel().tolist())
    before, after = _world_of_values(v), _world_of_values(out)
    for value, position in before.items():
        np.testing.assert_allclose(after[value], position, atol=1e-6)


@pytest.mark.parametrize("code", ALL_CODES)
def test_reorient_round_trip_through_lps_and_pil_is_identity(code):
    v = _unique_volume(shape=(4, 5, 6), affine=oblique_affine(angles=(0.1, -0.05, 0.2)))
    start = reorient(v, code)
    back = reorient(reorient(reorient(reorient(start, "RAS"), "LPS"), "PIL"), code)
    assert np.array_equal(back.voxels(), start.voxels())
    np.testing.assert_allclose(back.affine, start.affine, atol=1e-9)
    assert [h["step"] for h in back.history] == ["reorient"] * 5


def test_reorient_world_positions_match_simpleitk():
    import SimpleITK as sitk

    v = _unique_volume(shape=(4, 5, 6))
    out = reorient(v, "SLA")
    image = out.to_sitk()
    source = _world_of_values(v)  # where each value was before
    for index in [(0, 0, 0), tuple(n - 1 for n in out.shape), (1, 2, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(tuple(int(i) for i in index)))
        value = int(sitk.GetArrayViewFromImage(image)[index[2], index[1], index[0]])
        np.testing.assert_allclose(lps_to_ras_point(lps), source[value], atol=1e-6)


def test_reorient_orientation_matches_nibabel_as_closest_canonical():
    import nibabel as nib

    v = _unique_volume(affine=oblique_affine(angles=(0.3, -0.2, 0.45)))
    img = nib.as_closest_canonical(nib.Nifti1Image(v.voxels(), v.affine))
    ours = reorient(v, "RAS")
    assert np.array_equal(np.asarray(img.dataobj), ours.voxels())
    np.testing.assert_allclose(img.affine, ours.affine, atol=1e-6)


def test_reorient_rejects_bad_codes():
    v = _unique_volume()
    for bad in ("RAR", "XYZ", "RA", "RASS"):
        with pytest.raises(UnsupportedDataError, match="axis code"):
            reorient(v, bad)


def test_reorient_keeps_the_fourth_axis():
    arr = np.arange(4 * 5 * 6 * 2, dtype=np.int16).reshape(4, 5, 6, 2)
    v = Volume(arr, np.diag([-1.0, 1.0, 1.0, 1.0]))
    out = reorient(v, "RAS")
    assert out.shape == (4, 5, 6, 2)
    assert np.array_equal(out.voxels()[..., 1], arr[::-1, :, :, 1])


# --------------------------------------------------------------------------- resample: grid rule
def test_output_shape_rule_rounds_extent_and_keeps_the_centre():
    v = Volume(np.zeros((10, 7, 3), np.int16), oblique_affine(spacing=(1.0, 1.5, 4.0)))
    shape, affine = output_grid(v, spacing=(0.3, 2.0, 5.0))
    # m = round(n * s / s'): 10/0.3 = 33.3 -> 33, 10.5/2 = 5.25 -> 5, 12/5 = 2.4 -> 2
    assert shape == (33, 5, 2)
    centre_in = v.world_coordinates((np.array(v.shape) - 1) / 2.0)
    centre_out = (affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)) + affine[:3, 3]
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), (0.3, 2.0, 5.0))
    shape2, affine2 = output_grid(v, shape=(20, 7, 6))
    np.testing.assert_allclose(np.linalg.norm(affine2[:3, :3], axis=0), (0.5, 1.5, 2.0))  # extent kept exactly


def test_resample_grid_matches_simpleitk_physical_points():
    """Output size and origin: what a plain SimpleITK resample onto the same grid reports, voxel for voxel."""
    import SimpleITK as sitk

    v = Volume(np.random.default_rng(0).random((12, 9, 5)).astype(np.float32), oblique_affine())
    out = resample(v, (0.7, 0.7, 1.3))
    image = out.to_sitk()
    assert image.GetSize() == out.shape
    for index in [(0, 0, 0), tuple(n - 1 for n in out.shape), (3, 2, 1)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(tuple(int(i) for i in index)))
        np.testing.assert_allclose(lps_to_ras_point(lps), out.world_coordinates(np.array(index)), atol=1e-6)
    # plain SimpleITK on the same inputs gives the same voxels
    ref = sitk.Resample(v.to_sitk(), image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayFromImage(ref).transpose(), out.voxels(), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 12)] * 3), spacing=st.tuples(*[st.floats(0.3, 5.0)] * 3),
       angles=st.tuples(*[st.floats(-0.6, 0.6)] * 3), lps=st.booleans())
def test_resample_to_half_the_spacing_and_back_returns_the_input_grid(shape, spacing, angles, lps):
    """1 mm -> 0.5 mm -> 1 mm (and any spacing halved and restored) gives back the input's shape and affine."""
    affine = oblique_affine(spacing=spacing, angles=angles)
    if lps:
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    v = Volume(np.zeros(shape, np.float32), affine)
    half = resample(v, np.array(spacing) / 2)
    assert half.shape == tuple(2 * n for n in shape)
    back = resample(half, spacing)
    assert back.shape == v.shape
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-9)


def test_resample_one_to_half_to_one_mm_returns_the_input_grid():
    v = Volume(np.random.default_rng(1).random((11, 8, 6)).astype(np.float32), oblique_affine(spacing=(1, 1, 1)))
    back = resample(resample(v, 0.5), 1.0)
    assert back.shape == v.shape
    np.testing.assert_allclose(back.affine, v.affine, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(axis=st.sampled_from([0, 1, 2]), spacing=st.tuples(*[st.floats(0.4, 3.0)] * 3),
       angles=st.tuples(*[st.floats(-0.5, 0.5)] * 3), interpolation=st.sampled_from(["linear", "nearest"]))
def test_flip_then_resample_equals_resample_then_flip(axis, spacing, angles, interpolation):
    rng = np.random.default_rng(3)
    v = Volume(rng.random((9, 8, 7)).astype(np.float32), oblique_affine(angles=angles))
    a = flip(resample(v, spacing, interpolation=interpolation), axis)
    b = resample(flip(v, axis), spacing, interpolation=interpolation)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    if interpolation == "linear":
        np.testing.assert_allclose(a.voxels(), b.voxels(), atol=1e-4)
    else:  # nearest: an output point exactly halfway between two input voxels may take either; not a shift
        tie = _ties(v, a)
        assert np.array_equal(a.voxels()[~tie], b.voxels()[~tie])


def _ties(source: Volume, out: Volume) -> np.ndarray:
    """Output voxels whose centre lies exactly halfway between input voxel centres along some axis."""
    idx = np.indices(out.shape).reshape(3, -1).T
    continuous = (np.linalg.inv(source.affine) @ np.c_[out.world_coordinates(idx), np.ones(len(idx))].T)[:3].T
    return np.any(np.abs(np.abs(continuous - np.floor(continuous)) - 0.5) < 1e-6, axis=1).reshape(out.shape)


def test_no_silent_reorientation_inside_resampling():
    """An LPS-ordered, oblique input keeps its axis directions (TorchIO #271; MONAI #8467)."""
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ oblique_affine(angles=(0.2, 0.1, -0.1))
    v = Volume(np.random.default_rng(2).random((8, 9, 5)).astype(np.float32), lps_affine)
    out = resample(v, 1.0)
    assert out.orientation == v.orientation
    np.testing.assert_allclose(out.direction, v.direction, atol=1e-12)


def _blob_volume(axis: int, spacing_in: float, centre_mm: float) -> Volume:
    """A Gaussian blob at ``centre_mm`` along voxel ``axis`` (2 mm spacing, 16 voxels on the others)."""
    sigma = 2.0 * max(spacing_in, 5.0)
    n = int(np.ceil(10 * sigma / spacing_in)) | 1
    spacings = [2.0, 2.0, 2.0]
    spacings[axis] = spacing_in
    shape = [16, 16, 16]
    shape[axis] = n
    affine = np.diag(spacings + [1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0 * np.array(spacings)
    grid = np.meshgrid(*[affine[a, 3] + np.arange(shape[a]) * spacings[a] for a in range(3)], indexing="ij")
    target = np.zeros(3)
    target[axis] = centre_mm
    r2 = sum((g - t) ** 2 for g, t in zip(grid, target))
    return Volume(np.exp(-r2 / (2 * sigma ** 2)).astype(np.float32), affine)


@pytest.mark.parametrize("axis", [0, 2])
@pytest.mark.parametrize("spacing_in,spacing_out", [(0.3, 1.0), (1.0, 0.3), (1.0, 5.0), (5.0, 0.5), (2.5, 2.0)])
def test_landmark_blob_lands_at_its_world_coordinate(axis, spacing_in, spacing_out):
    centre = 3.7
    v = _blob_volume(axis, spacing_in, centre)
    spacing = [2.0, 2.0, 2.0]
    spacing[axis] = spacing_out
    out = resample(v, spacing)
    data = out.voxels().astype(np.float64)
    idx = np.indices(out.shape).reshape(3, -1).T
    world = out.world_coordinates(idx)
    centroid = (world * data.reshape(-1, 1)).sum(axis=0) / data.sum()
    assert abs(centroid[axis] - centre) <= 0.05 * spacing_out


@settings(max_examples=10, deadline=None)
@given(axis=st.sampled_from([0, 1, 2]), spacing_in=st.floats(0.3, 5.0), spacing_out=st.floats(0.3, 5.0),
       centre=st.floats(-4.0, 4.0), interpolation=st.sampled_from(["linear", "bspline", "lanczos"]))
def test_landmark_blob_position_for_any_spacing(axis, spacing_in, spacing_out, centre, interpolation):
    v = _blob_volume(axis, spacing_in, centre)
    spacing = [2.0, 2.0, 2.0]
    spacing[axis] = spacing_out
    out = resample(v, spacing, interpolation=interpolation)
    data = out.voxels().astype(np.float64)
    world = out.world_coordinates(np.indices(out.shape).reshape(3, -1).T)
    centroid = (world * data.reshape(-1, 1)).sum(axis=0) / data.sum()
    assert abs(centroid[axis] - centre) <= 0.05 * spacing_out


def test_resample_linear_agrees_with_nibabel_resample_from_to():
    """An independent implementation (nibabel -> scipy.ndimage) on the same input and output grid."""
    from nibabel.processing import resample_from_to

    rng = np.random.default_rng(4)
    data = rng.random((14, 12, 9)).astype(np.float32)
    v = Volume(data, oblique_affine())
    out = resample(v, (0.9, 0.8, 1.7))
    import nibabel as nib

    ref = resample_from_to(nib.Nifti1Image(data, v.affine), (out.shape, out.affine), order=1, mode="nearest")
    ref_data = np.asarray(ref.dataobj)
    inner = tuple(slice(2, n - 2) for n in out.shape)  # both treat the outer half-voxel differently
    np.testing.assert_allclose(out.voxels()[inner], ref_data[inner], atol=1e-4)


def test_labels_survive_resampling():
    """Label maps stay integer and lose no label (TorchIO #1006, #1102)."""
    labels = np.zeros((40, 40, 20), np.uint8)
    labels[2:6, 2:6, 2:5] = 1
    labels[10:30, 10:30, 5:15] = 2
    labels[33:36, 30:33, 16:18] = 3  # small: 3x3x2 voxels of 1 x 1 x 2 mm
    v = Volume(labels, np.diag([1.0, 1.0, 2.0, 1.0]))
    for spacing in [(0.4, 0.4, 0.7), (2.5, 2.5, 3.0), (1.7, 0.9, 2.2)]:
        out = resample(v, spacing, labels=True)
        assert out.dtype == np.uint8
        assert set(np.unique(out.voxels())) == {0, 1, 2, 3}, spacing
        aware = resample(v, spacing, labels=True, interpolation="linear")  # one-hot, linear, argmax
        assert aware.dtype == np.uint8 and set(np.unique(aware.voxels())) == {0, 1, 2, 3}, spacing
        assert np.mean(aware.voxels() == out.voxels()) > 0.95  # the two agree away from label borders
    with pytest.raises(UnsupportedDataError, match="nearest"):
        resample(v, 1.0, labels=True, interpolation="bspline")


def test_resample_fill_is_air_for_ct_and_zero_otherwise():
    arr = np.full((6, 6, 6), 40, np.int16)
    ct = Volume(arr, np.eye(4), Meta(modality="CT", units="HU"))
    shifted = Volume(np.zeros((6, 6, 6), np.int16), np.eye(4) @ np.array(
        [[1, 0, 0, 3.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    out = resample_to(ct, shifted)
    assert out.voxels()[-1, 2, 2] == pytest.approx(-1024)
    assert out.voxels()[0, 2, 2] == pytest.approx(40)
    mr = Volume(arr, np.eye(4), Meta(modality="MR"))
    assert resample_to(mr, shifted).voxels()[-1, 2, 2] == 0


def test_resample_keeps_scaling_for_nearest_and_applies_it_for_linear():
    stored = np.arange(4 * 4 * 4, dtype=np.uint16).reshape(4, 4, 4)
    v = Volume(stored, np.eye(4), Meta(modality="CT"), slope=1.0, intercept=-1024.0)
    nearest = resample(v, 1.0, interpolation="nearest")
    assert nearest.dtype == np.uint16 and nearest.intercept == -1024.0
    assert np.array_equal(nearest.scaled(), v.scaled())
    linear = resample(v, 1.0)
    assert linear.dtype == np.float32 and not linear.is_scaled
    np.testing.assert_allclose(linear.voxels(), v.scaled(), atol=1e-3)


def test_resample_bad_input():
    v = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(UnsupportedDataError, match="positive"):
        resample(v, (1.0, 0.0, 1.0))
    with pytest.raises(UnsupportedDataError, match="positive"):
        resample(v, -1.0)
    with pytest.raises(UnsupportedDataError, match="interpolation"):
        resample(v, 1.0, interpolation="cubic")  # type: ignore[arg-type]
    four_d = Volume(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
    with pytest.raises(UnsupportedDataError, match="4D"):
        resample(four_d, 1.0)


def test_bspline_and_lanczos_run_and_keep_the_grid():
    v = Volume(np.random.default_rng(5).random((8, 8, 8)).astype(np.float32), oblique_affine())
    for name in ("bspline", "lanczos"):
        out = resample(v, 1.2, interpolation=name)
        assert out.history[-1]["interpolation"] == name
        np.testing.assert_allclose(out.affine, resample(v, 1.2).affine)


# --------------------------------------------------------------------------- crop and pad
def test_crop_and_pad_keep_world_positions():
    v = _unique_volume(shape=(6, 7, 8))
    cropped = crop(v, (1, 2, 3), (5, 6, 7))
    np.testing.assert_allclose(cropped.world_coordinates(np.zeros(3)), v.world_coordinates(np.array([1, 2, 3])))
    assert cropped.voxels()[0, 0, 0] == v.voxels()[1, 2, 3]
    padded = pad_to(cropped, (9, 8, 7))
    before = [(9 - 4) // 2, (8 - 4) // 2, (7 - 4) // 2]
    assert padded.history[-1]["before"] == before
    assert padded.voxels()[tuple(before)] == v.voxels()[1, 2, 3]
    np.testing.assert_allclose(padded.world_coordinates(np.array(before)), v.world_coordinates(np.array([1, 2, 3])),
                               atol=1e-9)
    assert padded.voxels()[0, 0, 0] == 0


def test_pad_value_is_air_for_ct_in_real_units():
    v = Volume(np.full((2, 2, 2), 1024, np.uint16), np.eye(4), Meta(modality="CT"), intercept=-1024.0)
    padded = pad_to(v, (4, 4, 4))
    assert padded.scaled()[0, 0, 0] == -1024.0 and padded.scaled()[1, 1, 1] == 0.0


def test_pad_to_a_smaller_shape_is_an_error_not_a_crop():
    v = Volume(np.zeros((6, 6, 6), np.int16), np.eye(4))
    with pytest.raises(UnsupportedDataError, match="crop it first"):
        pad_to(v, (4, 8, 8))


def test_crop_box_is_not_enlarged_by_a_text_marker_or_the_table():
    """MONAI #6601 / #8988: bright markers and the table far from the body must not grow the box."""
    from tests.test_process_masks import ct_with_table_and_marker

    v, body = ct_with_table_and_marker()
    out = crop_to_foreground(v, margin_mm=2.0)
    nz = np.nonzero(body)
    grow = [2, 2, 1]  # 2 mm at 1 x 1 x 2 mm voxels
    start = [max(0, int(a.min()) - g) for a, g in zip(nz, grow)]
    stop = [min(n, int(a.max()) + 1 + g) for a, n, g in zip(nz, body.shape, grow)]
    assert out.history[-1]["start"] == start and out.history[-1]["stop"] == stop
    np.testing.assert_allclose(out.origin, v.world_coordinates(np.array(start)))


def test_crop_to_foreground_with_a_mask_and_empty_mask():
    v = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4))
    mask = np.zeros((8, 8, 8), bool)
    mask[2:4, 3:6, 1:2] = True
    out = crop_to_foreground(v, mask=mask)
    assert out.shape == (2, 3, 1)
    with pytest.raises(UnsupportedDataError, match="no foreground"):
        crop_to_foreground(v, mask=np.zeros((8, 8, 8), bool))


def test_resampled_voxels_stay_valid_after_the_simpleitk_image_is_gone():
    import gc

    v = Volume(np.arange(6 * 6 * 6, dtype=np.float32).reshape(6, 6, 6), np.eye(4))
    out = resample(v, 1.0, interpolation="nearest")
    expected = v.voxels().copy()
    gc.collect()
    _ = [np.ones(10000) for _ in range(50)]  # reuse freed memory, if any
    assert np.array_equal(out.voxels(), expected)
    out.voxels()[0, 0, 0] = -1.0  # writable, its own buffer
    assert v.voxels()[0, 0, 0] == 0.0


@pytest.mark.parametrize("interpolation", ["linear", "nearest", "lanczos"])
def test_resampling_in_slabs_gives_the_single_call_result(monkeypatch, interpolation):
    """The output is made slab by slab (memory); each slab from its own input box must not change a voxel."""
    import convert.process.geometry as geometry

    rng = np.random.default_rng(6)
    v = Volume(rng.integers(0, 1000, (20, 18, 15)).astype(np.int16), oblique_affine(angles=(0.4, -0.3, 0.5)),
               Meta(modality="CT"), intercept=-1024.0)
    whole = resample(v, (0.9, 1.3, 1.1), interpolation=interpolation)
    monkeypatch.setattr(geometry, "SLAB_VOXELS", 1)  # one output slice per SimpleITK call
    slabs = resample(v, (0.9, 1.3, 1.1), interpolation=interpolation)
    same = ~_ties(v, whole) if interpolation == "nearest" else np.ones(whole.shape, bool)
    np.testing.assert_allclose(slabs.voxels()[same], whole.voxels()[same], atol=1e-3)
    assert slabs.dtype == whole.dtype


@pytest.mark.conformance
def test_real_ct_hu_reorient_resample_agrees_with_dcm2niix_resampled_by_nibabel():
    """Real GE head CT (dcm_qa_ct, tilt corrected): our HU -> RAS -> 2 mm volume against dcm2niix's
    tilt-corrected reference resampled onto the same grid by nibabel (independent reader, converter and
    interpolation): compared in world space."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from convert.dicom.reader import read_single
    from convert.process import hu
    from tests.conftest import conformance_dir

    root = conformance_dir("dcm_qa_ct")
    volume, _ = read_single(root / "In", tilt_correct=True)
    out = resample(reorient(hu(volume), "RAS"), 2.0)
    assert out.orientation == "RAS" and out.meta.units == "HU"
    ref = resample_from_to(nib.load(str(root / "ref-dcm2niix" / "In_2_Tilt_Eq_1.nii.gz")), (out.shape, out.affine),
                           order=1, cval=-5000)
    ours, theirs = out.voxels(), np.asarray(ref.dataobj)
    both = (theirs > -2500) & (ours > -1100)  # inside both fields of view
    assert both.sum() > 0.5 * both.size
    assert np.median(np.abs(ours - theirs)[both]) < 5.0  # HU
    assert np.corrcoef(ours[both], theirs[both])[0, 1] > 0.99


# --------------------------------------------------------------------------- slice stacks (regrid, tilt)
def _stack_frame(rot=(0.3, -0.2, 0.45)):
    """In-plane axes ci (0.8 mm), cj (0.6 mm) and the unit normal of an oblique slice plane."""
    r = rotation(*rot)
    return r[:, 0] * 0.8, r[:, 1] * 0.6, r[:, 2]


WORLD_RAMP = np.array([0.7, -1.3, 2.1])  # value = WORLD_RAMP . world: linear, so linear interpolation is exact


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.floats(0.3, 6.0), min_size=2, max_size=12), extra=st.integers(0, 8))
def test_regrid_slices_puts_every_plane_at_its_world_position(steps, extra):
    ci, cj, normal = _stack_frame()
    origin = np.array([-20.0, 15.0, 40.0])
    d = np.concatenate([[0.0], np.cumsum(steps)])  # uneven slice positions along the normal, mm
    ni, nj = 4, 3
    i, j = np.meshgrid(np.arange(ni), np.arange(nj), indexing="ij")
    stored = np.empty((ni, nj, len(d)), order="F")
    for k, dk in enumerate(d):
        world = origin + i[..., None] * ci + j[..., None] * cj + dk * normal
        stored[:, :, k] = world @ WORLD_RAMP
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = ci, cj, normal * d[-1] / (len(d) - 1), origin
    n_new = len(d) + extra
    out, new_affine = regrid_slices(stored, affine, d, n_new)
    assert out.shape == (ni, nj, n_new) and out.flags.f_contiguous and out.dtype == stored.dtype
    np.testing.assert_allclose(new_affine[:3, 2], normal * d[-1] / (n_new - 1), atol=1e-12)
    np.testing.assert_array_equal(new_affine[:3, [0, 1, 3]], affine[:3, [0, 1, 3]])
    index = np.indices(out.shape).reshape(3, -1).T
    world = index @ new_affine[:3, :3].T + new_affine[:3, 3]
    np.testing.assert_allclose(out.reshape(-1, order="C"), world @ WORLD_RAMP, atol=1e-9)


def test_regrid_slices_keeps_integer_dtype_rounding_and_copies_stored_planes():
    stored = np.stack([np.full((2, 2), v, np.int16) for v in (0, 10, 30)], axis=2)
    out, _ = regrid_slices(stored, np.eye(4), [0.0, 1.0, 3.0], 4)  # planes at 0, 1, 2, 3 mm
    assert out.dtype == np.int16
    assert [int(out[0, 0, k]) for k in range(4)] == [0, 10, 20, 30]


def _sheared_stack(n_slices=6, shear=0.35, step=2.5):
    ci, cj, normal = _stack_frame((0.1, 0.2, -0.3))
    s = step * (normal + shear * cj / np.linalg.norm(cj))  # gantry tilt: slices slide along j
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = ci, cj, s, [5.0, -7.0, 12.0]
    index = np.indices((9, 8, n_slices)).reshape(3, -1).T
    world = index @ affine[:3, :3].T + affine[:3, 3]
    array = np.asfortranarray((world @ WORLD_RAMP).reshape(9, 8, n_slices))
    return array, affine


def test_correct_tilt_gives_an_orthogonal_grid_with_the_same_world_content():
    array, affine = _sheared_stack()
    fill = -1000.0
    out, new = correct_tilt(array, affine, fill)
    ci, cj, s = new[:3, 0], new[:3, 1], new[:3, 2]
    assert abs(np.dot(s, ci)) < 1e-9 and abs(np.dot(s, cj)) < 1e-9  # k along the normal now
    np.testing.assert_allclose(np.linalg.norm(s), abs(np.dot(affine[:3, 2], np.cross(ci, cj) / np.linalg.norm(
        np.cross(ci, cj)))), atol=1e-12)
    assert out.shape[0] >= array.shape[0] and out.shape[1] > array.shape[1] and out.shape[2] == array.shape[2]
    index = np.indices(out.shape).reshape(3, -1).T
    world = index @ new[:3, :3].T + new[:3, 3]
    source_index = (world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T  # where in the sheared stack
    inside = np.all((source_index >= -1e-6) & (source_index <= np.array(array.shape) - 1 + 1e-6), axis=1)
    values = out.reshape(-1, order="C")
    assert inside.sum() >= array.size * 0.75  # a fractional shift loses at most one edge column per slice
    np.testing.assert_allclose(values[inside], (world @ WORLD_RAMP)[inside], atol=1e-6)
    far = np.any((source_index < -1.0) | (source_index > np.array(array.shape)), axis=1)
    assert far.any() and np.all(values[far] == fill)


def test_correct_tilt_is_the_same_in_lps_and_ras():
    array, affine_lps = _sheared_stack()
    out_lps, new_lps = correct_tilt(array, affine_lps, 0.0)
    out_ras, new_ras = correct_tilt(array, lps_to_ras(affine_lps), 0.0)
    np.testing.assert_allclose(out_ras, out_lps, atol=1e-9)
    np.testing.assert_allclose(new_ras, lps_to_ras(new_lps), atol=1e-9)


def test_per_channel_runs_a_step_on_each_colour_channel():
    array, affine = _sheared_stack(n_slices=3)
    grey = np.clip(array - array.min(), 0, 255).astype(np.uint8)
    channels = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    rgb = rgb_from_channels(channels)
    out, new = per_channel(lambda a: correct_tilt(a, affine, 0.0), rgb)
    assert out.dtype == RGB_DTYPE and out.flags.f_contiguous
    for n in range(3):
        expected, expected_affine = correct_tilt(np.asfortranarray(channels[..., n]), affine, 0.0)
        np.testing.assert_array_equal(rgb_channels(out)[..., n], expected)
    np.testing.assert_array_equal(new, expected_affine)
    scalar, _ = per_channel(lambda a: correct_tilt(a, affine, 0.0), grey)
    np.testing.assert_array_equal(scalar, correct_tilt(grey, affine, 0.0)[0])
