"""convert.geometry: world frames, affine <-> (origin, spacing, direction), orientation codes, slice affines.

Oracles: SimpleITK (LPS+ physical points, orientation letters), nibabel (voxel sizes, axis codes) and
the DICOM equation of PS3.3 C.7.6.2.1.1 for slices; hypothesis for the round trips.
"""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.errors import GeometryError, UnsupportedDataError
from convert.geometry import (
    LAS_RAS_FLIP,
    affine_from_geometry,
    affine_to_ras,
    check_affine,
    check_code,
    geometry_from_affine,
    lps_to_ras,
    lps_to_ras_point,
    orientation_code,
    ras_to_lps,
    ras_to_lps_point,
    slice_affine_lps,
    slice_normal,
    stack_affine_lps,
)
from convert.volume import Volume
from tests.conftest import rotation

spacings = st.tuples(*[st.floats(0.05, 20)] * 3)
origins = st.tuples(*[st.floats(-500, 500)] * 3)
angles = st.tuples(*[st.floats(-np.pi, np.pi)] * 3)
indices = st.tuples(*[st.integers(0, 300)] * 3)


def _sitk_image(origin_lps, spacing, direction_lps) -> sitk.Image:
    image = sitk.Image(2, 2, 2, sitk.sitkUInt8)
    image.SetOrigin(tuple(float(v) for v in origin_lps))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction_lps).ravel()))
    return image


# --------------------------------------------------------------------------- world frames
def test_lps_ras_flip_is_its_own_inverse(oblique):
    assert np.allclose(ras_to_lps(lps_to_ras(oblique)), oblique)
    lps = ras_to_lps(oblique)
    # x and y change sign, z does not
    assert np.allclose(lps[0], -oblique[0]) and np.allclose(lps[1], -oblique[1])
    assert np.allclose(lps[2], oblique[2])


def test_point_flip_negates_x_and_y_of_each_row_and_leaves_the_input_alone():
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])
    out = lps_to_ras_point(points)
    assert np.array_equal(out, [[-1.0, -2.0, 3.0], [4.0, -5.5, -6.0]])
    assert np.array_equal(points, [[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])  # a new array
    assert np.array_equal(ras_to_lps_point(out), points)


@settings(max_examples=40, deadline=None)
@given(origin=origins, spacing=spacings, rot=angles, index=indices)
def test_lps_affine_to_ras_places_voxels_where_simpleitk_does(origin, spacing, rot, index):
    direction = rotation(*rot)
    image = _sitk_image(origin, spacing, direction)
    theirs_lps = np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(i) for i in index)))
    ours_ras = lps_to_ras(affine_from_geometry(origin, spacing, direction)) @ np.append(index, 1.0)
    np.testing.assert_allclose(ours_ras[:3], lps_to_ras_point(theirs_lps), atol=1e-6)


@pytest.mark.parametrize("space, flip", [("LPS", np.diag([-1.0, -1, 1, 1])), ("las", LAS_RAS_FLIP),
                                         ("RAS", np.eye(4))])
def test_affine_to_ras_of_each_declared_frame(oblique, space, flip):
    out = affine_to_ras(oblique, space)
    np.testing.assert_array_equal(out, flip @ oblique)
    assert out is not oblique


def test_affine_to_ras_refuses_an_unknown_frame(oblique):
    with pytest.raises(UnsupportedDataError, match="unknown world space 'XYZ'"):
        affine_to_ras(oblique, "XYZ")


# --------------------------------------------------------------------------- affine <-> origin, spacing, direction
@settings(max_examples=60, deadline=None)
@given(spacing=spacings, origin=origins, rot=angles)
def test_affine_geometry_round_trip(spacing, origin, rot):
    direction = rotation(*rot)
    affine = affine_from_geometry(origin, spacing, direction)
    o, s, d = geometry_from_affine(affine)
    assert np.allclose(o, origin) and np.allclose(s, spacing) and np.allclose(d, direction, atol=1e-9)
    np.testing.assert_allclose(affine_from_geometry(o, s, d), affine, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(spacing=spacings, origin=origins, rot=angles)
def test_geometry_from_affine_agrees_with_nibabel_and_simpleitk(spacing, origin, rot):
    direction = rotation(*rot)
    affine_ras = lps_to_ras(affine_from_geometry(origin, spacing, direction))
    o, s, d = geometry_from_affine(ras_to_lps(affine_ras))
    np.testing.assert_allclose(s, nib.affines.voxel_sizes(affine_ras), rtol=1e-9)
    image = _sitk_image(origin, spacing, direction)
    np.testing.assert_allclose(o, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(s, image.GetSpacing(), rtol=1e-9)
    np.testing.assert_allclose(d.ravel(), image.GetDirection(), atol=1e-9)


def test_geometry_from_affine_refuses_a_zero_length_axis():
    with pytest.raises(GeometryError, match="zero-length"):
        geometry_from_affine(np.diag([1.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("affine, match", [
    (np.eye(3), "4x4"), (np.full((4, 4), np.nan), "NaN"),
    (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
    (np.diag([1.0, 1.0, 0.0, 1.0]), "singular"),
])
def test_check_affine_names_what_is_wrong(affine, match):
    with pytest.raises(GeometryError, match=match):
        check_affine(affine)


def test_check_affine_returns_a_read_only_float64_copy():
    source = np.eye(4, dtype=np.float32)
    out = check_affine(source)
    assert out.dtype == np.float64 and not out.flags.writeable
    source[0, 0] = 5
    assert out[0, 0] == 1.0


# --------------------------------------------------------------------------- orientation codes
@pytest.mark.parametrize(
    "diag, code",
    [((1, 1, 1), "RAS"), ((-1, -1, 1), "LPS"), ((-1, 1, 1), "LAS"), ((1, -1, -1), "RPI")],
)
def test_orientation_code_axis_aligned(diag, code):
    affine = np.diag(list(diag) + [1.0])
    assert orientation_code(affine) == code
    assert Volume(np.zeros((2, 2, 2), np.uint8), affine).orientation == code


def test_orientation_code_of_lps_affine():
    # An LPS affine with identity direction is "LPS" when read in LPS space.
    assert orientation_code(np.eye(4), space="LPS") == "LPS"


def test_orientation_code_permuted_axes():
    # i -> superior, j -> right, k -> anterior (a sagittal-like permutation)
    affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    assert orientation_code(affine) == "SRA"


def _signed_permutations() -> list[np.ndarray]:
    import itertools

    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            out.append(m)
    return out


@settings(max_examples=60, deadline=None)
@given(base=st.sampled_from(_signed_permutations()), tilt=st.tuples(*[st.floats(-0.5, 0.5)] * 3),
       spacing=spacings)
def test_orientation_code_agrees_with_simpleitk_for_every_axis_order(base, tilt, spacing):
    """48 axis orders, each tilted by up to ~29 degrees about each axis: still the closest axis code."""
    direction_lps = rotation(*tilt) @ base
    theirs = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        tuple(float(v) for v in direction_lps.ravel()))
    affine_lps = affine_from_geometry((0, 0, 0), spacing, direction_lps)
    assert orientation_code(affine_lps, space="LPS") == theirs
    # the letters name where the axes point in the body, whatever frame the affine maps to
    assert orientation_code(lps_to_ras(affine_lps)) == theirs


@pytest.mark.parametrize("code", ["ras", " LPS ", "sra", "LAI"])
def test_check_code_accepts_one_letter_per_axis(code):
    assert check_code(code) == code.strip().upper()


@pytest.mark.parametrize("code", ["RA", "RRS", "RAX", "LRS", "RASS", ""])
def test_check_code_refuses_anything_else_saying_what_to_give(code):
    with pytest.raises(UnsupportedDataError, match="one of L/R, one of A/P and one of S/I"):
        check_code(code)


# --------------------------------------------------------------------------- DICOM slices
@settings(max_examples=60, deadline=None)
@given(rot=angles)
def test_slice_normal_is_the_third_axis_of_a_right_handed_frame(rot):
    r = rotation(*rot)
    orientation = tuple(r[:, 0]) + tuple(r[:, 1])
    np.testing.assert_allclose(slice_normal(orientation), r[:, 2], atol=1e-12)
    np.testing.assert_allclose(slice_normal(tuple(2 * r[:, 0]) + tuple(r[:, 1])), r[:, 2], atol=1e-12)


def test_slice_normal_refuses_parallel_cosines():
    with pytest.raises(GeometryError, match="parallel"):
        slice_normal((1.0, 0.0, 0.0, -1.0, 0.0, 0.0))


def _slice(orientation, position, spacing=(0.7, 0.9), between=None, thickness=None):
    return SimpleNamespace(orientation=orientation, position=position, pixel_spacing=spacing,
                           spacing_between_slices=between, slice_thickness=thickness)


@settings(max_examples=40, deadline=None)
@given(rot=angles, origin=origins, step=st.floats(0.3, 8.0), shear=st.floats(-0.4, 0.4),
       n=st.integers(2, 40), index=st.tuples(st.integers(0, 511), st.integers(0, 511)))
def test_slice_affine_places_every_pixel_by_the_dicom_equation(rot, origin, step, shear, n, index):
    """PS3.3 C.7.6.2.1.1: pixel (column c, row r) of a slice is at IPP + c * dx * X + r * dy * Y."""
    r3 = rotation(*rot)
    x, y, z = r3[:, 0], r3[:, 1], r3[:, 2]
    dy, dx = 0.7, 0.9  # PixelSpacing: between rows, between columns
    positions = [np.asarray(origin) + k * step * (z + shear * y) for k in range(n)]  # gantry tilt: a shear
    first = _slice(tuple(x) + tuple(y), tuple(positions[0]), (dy, dx))
    last = _slice(tuple(x) + tuple(y), tuple(positions[-1]), (dy, dx))
    affine = slice_affine_lps(first, last, n)
    c, r = index
    for k in (0, n // 2, n - 1):
        expected = positions[k] + c * dx * x + r * dy * y
        np.testing.assert_allclose((affine @ [c, r, k, 1.0])[:3], expected, atol=1e-6)


@pytest.mark.parametrize("between, thickness, length", [(3.0, 5.0, 3.0), (None, -2.5, 2.5), (None, None, 1.0)])
def test_single_slice_steps_along_the_normal(between, thickness, length):
    r3 = rotation(0.2, -0.4, 1.0)
    one = _slice(tuple(r3[:, 0]) + tuple(r3[:, 1]), (1.0, 2.0, 3.0), between=between, thickness=thickness)
    affine = slice_affine_lps(one, None, 1)
    np.testing.assert_allclose(affine[:3, 2], r3[:, 2] * length, atol=1e-12)
    np.testing.assert_allclose(affine[:3, 3], [1.0, 2.0, 3.0])


def test_slice_without_plane_values_gets_identity_cosines_1mm_and_the_origin():
    affine = slice_affine_lps(_slice(None, None, None), None, 1)
    np.testing.assert_array_equal(affine, np.eye(4))


def test_stack_affine_columns_are_i_j_slice_vector_and_origin():
    row, col = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    affine = stack_affine_lps(row, col, (0.5, 2.0), np.array([7.0, 8, 9]), np.array([0, 0.1, 3.0]))
    np.testing.assert_array_equal(affine, [[2.0, 0, 0, 7], [0, 0.5, 0.1, 8], [0, 0, 3, 9], [0, 0, 0, 1]])


@pytest.mark.conformance
def test_slice_affine_of_a_real_slice_agrees_with_nibabel():
    """A real GE CT slice: nibabel's DICOM wrapper places voxels [row, col] where ours puts [col, row]."""
    import warnings

    import pydicom

    from tests.conftest import conformance_dir

    ct = conformance_dir("dcm_qa_ct")
    path = sorted(p for p in (ct / "In").rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm"))[0]
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_data(ds)
        theirs = np.asarray(wrapper.affine)
    one = _slice(tuple(float(v) for v in ds.ImageOrientationPatient),
                 tuple(float(v) for v in ds.ImagePositionPatient),
                 tuple(float(v) for v in ds.PixelSpacing), thickness=float(ds.SliceThickness))
    ours = slice_affine_lps(one, None, 1)
    np.testing.assert_allclose(ours[:3, [0, 1, 3]], theirs[:3, [1, 0, 3]], atol=1e-4)


@settings(max_examples=300, deadline=None)
@given(matrix=st.lists(st.floats(-5, 5, allow_nan=False), min_size=9, max_size=9),
       space=st.sampled_from(["RAS", "LPS"]))
def test_orientation_code_follows_nibabels_rule_without_importing_it(matrix: list[float], space: str) -> None:
    from nibabel.orientations import aff2axcodes


    affine = np.eye(4)
    affine[:3, :3] = np.reshape(matrix, (3, 3))
    ras = lps_to_ras(affine) if space == "LPS" else affine
    expected = "".join("?" if c is None else c for c in aff2axcodes(ras))
    assert orientation_code(affine, space) == expected


@settings(max_examples=200, deadline=None)
@given(matrix=st.lists(st.floats(-5, 5, allow_nan=False), min_size=9, max_size=9),
       shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
       code=st.sampled_from(["RAS", "LPS", "LAS", "PIR", "SRA", "ILP", "ASL"]))
def test_reorientation_matches_nibabel_voxel_for_voxel(matrix: list[float], shape: tuple[int, int, int],
                                                        code: str) -> None:
    from hypothesis import assume
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    from convert.geometry import reorientation, voxel_axes

    affine = np.eye(4)
    affine[:3, :3] = np.reshape(matrix, (3, 3))
    affine[:3, 3] = [3.0, -7.0, 11.0]
    assume(all(a is not None for a in voxel_axes(affine)))
    order, flips, new_affine = reorientation(affine, shape, code)
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(code)))
    data = np.arange(np.prod(shape)).reshape(shape)
    expected = apply_orientation(data, transform)
    ours = np.transpose(data, order)
    ours = np.flip(ours, axis=tuple(t for t in range(3) if flips[t])) if any(flips) else ours
    assert np.array_equal(ours, expected)
    np.testing.assert_allclose(new_affine, affine @ inv_ornt_aff(transform, shape), atol=1e-9)
