"""convert.dicom.series: grouping, spatial sorting, 4D, duplicates, gaps, uneven spacing, tilt."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fixtures.dicom_series import (SPLIT_CASES, make_philips_dwi, make_series, make_split_series,  # noqa: E402
                                   make_two_orientations)

from convert.dicom.scan import scan  # noqa: E402
from convert.dicom.series import assemble, complex_part, echo_label, image_kind, postfix  # noqa: E402


def _assemble(folder: Path):
    return assemble(scan(folder).instances)


def test_slices_sorted_along_normal_not_by_name_or_instance_number(tmp_path: Path) -> None:
    make_series(tmp_path, "oblique", descending=True, shuffle_names=True)
    (series,) = _assemble(tmp_path)
    assert np.all(np.diff(series.distances) > 0)
    assert series.n_slices == 10 and series.n_times == 1
    assert [i.instance_number for c in series.grid for i in c] == list(range(10, 0, -1))
    assert not series.warnings and series.problem is None


def test_two_series_in_one_folder_are_separated_and_ordered_by_number(tmp_path: Path) -> None:
    make_series(tmp_path / "a", series_number=7, seed=1)
    make_series(tmp_path / "b", series_number=3, seed=2, slices=5)
    series = _assemble(tmp_path)
    assert [s.series_number for s in series] == [3, 7]
    assert [s.n_slices for s in series] == [5, 10]


def test_two_orientations_in_one_series_are_split(tmp_path: Path) -> None:
    make_two_orientations(tmp_path)
    series = _assemble(tmp_path)
    assert len(series) == 2
    assert all(s.n_slices == 6 for s in series)
    assert sorted(s.split for s in series) == ["axial", "sagittal"]


def test_echoes_are_split(tmp_path: Path) -> None:
    make_series(tmp_path / "e1", series_uid="2.25.77", study_uid="2.25.70", extra={"EchoNumbers": 1}, seed=1, modality="MR")
    make_series(tmp_path / "e2", series_uid="2.25.77", study_uid="2.25.70", extra={"EchoNumbers": 2}, seed=2, modality="MR")
    series = _assemble(tmp_path)
    assert sorted(s.split for s in series) == ["echo 1", "echo 2"]


def test_magnitude_and_phase_are_split_but_vendor_extras_are_not() -> None:
    assert image_kind(("ORIGINAL", "PRIMARY", "M", "ND")) != image_kind(("ORIGINAL", "PRIMARY", "P", "ND"))
    assert image_kind(("ORIGINAL", "PRIMARY", "AXIAL")) == image_kind(("ORIGINAL", "PRIMARY", "AXIAL", "ADD"))


def test_4d_series_time_points_ordered_by_temporal_position(tmp_path: Path) -> None:
    make_series(tmp_path, times=3, shuffle_names=True, modality="MR")
    (series,) = _assemble(tmp_path)
    assert (series.n_slices, series.n_times) == (10, 3)
    for column in series.grid:
        assert [i.temporal_position for i in column] == [1, 2, 3]
    assert series.shape == (24, 32, 10, 3)


def test_same_instance_twice_is_skipped_and_counted_not_warned(tmp_path: Path) -> None:
    """The quirk: a DICOMDIR media copy beside the folder holds every file a second time."""
    paths, _ = make_series(tmp_path / "s")
    shutil.copytree(tmp_path / "s", tmp_path / "media_copy")
    (series,) = _assemble(tmp_path)
    assert series.n_slices == 10 and series.n_times == 1
    assert sorted(p.name for p in series.duplicates) == sorted(p.name for p in paths)
    assert not series.warnings and not series.problem


def test_same_sop_instance_uid_with_different_content_is_a_warning_naming_both(tmp_path: Path) -> None:
    import pydicom

    paths, _ = make_series(tmp_path / "s")
    ds = pydicom.dcmread(paths[4])
    ds.WindowCenter = 123  # same instance UID, different bytes
    ds.save_as(tmp_path / "edited.dcm")
    (series,) = _assemble(tmp_path)
    assert series.n_slices == 10 and not series.duplicates
    (warning,) = series.warnings
    assert "same UID, different content" in warning and "edited.dcm" in warning and paths[4].name in warning


def test_same_position_with_another_uid_is_still_dropped_with_a_warning(tmp_path: Path) -> None:
    import pydicom

    paths, _ = make_series(tmp_path / "s")
    ds = pydicom.dcmread(paths[4])
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.save_as(tmp_path / "copy_of_slice.dcm")
    (series,) = _assemble(tmp_path)
    assert series.n_slices == 10 and not series.duplicates
    assert any("duplicate image(s) (same position and time)" in w for w in series.warnings)


def test_one_missing_slice_is_detected(tmp_path: Path) -> None:
    make_series(tmp_path, skip=(4,))
    (series,) = _assemble(tmp_path)
    assert series.missing == [(3, 1)]
    assert any("missing" in w for w in series.warnings)
    assert not series.uneven


def test_uneven_spacing_is_not_mistaken_for_missing_slices(tmp_path: Path) -> None:
    make_series(tmp_path, slice_offsets=[0, 2, 4, 6, 8, 11.5, 15, 18.5, 22, 25.5])
    (series,) = _assemble(tmp_path)
    assert series.uneven and not series.missing


def test_gantry_tilt_is_detected(tmp_path: Path) -> None:
    make_series(tmp_path, tilt_deg=15.0)
    (series,) = _assemble(tmp_path)
    assert series.tilt_deg == pytest.approx(15.0, abs=0.01)
    assert any("tilt" in w for w in series.warnings)


def test_inconsistent_4d_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path, times=2, modality="MR")
    paths[-1].unlink()  # last time point loses a slice
    (series,) = _assemble(tmp_path)
    assert series.problem and "inconsistent 4D" in series.problem


def _two_acquisitions(folder: Path, shift: float) -> None:
    for n, z in ((1, 41.0), (2, 41.0 + shift)):
        make_series(folder / str(n), series_uid="2.25.9", study_uid="2.25.90", extra={"AcquisitionNumber": n},
                    seed=n, slices=6, origin=(-12.5, 30.25, z))


def test_acquisitions_over_partly_shared_positions_are_separate_volumes(tmp_path: Path) -> None:
    _two_acquisitions(tmp_path, shift=5.0)  # 2 slices further: 4 positions shared, 2 not
    series = _assemble(tmp_path)
    assert len(series) == 2 and {s.split for s in series} == {"acquisition 1", "acquisition 2"}
    assert all(s.n_slices == 6 and s.problem is None for s in series)


def test_interleaved_acquisitions_form_one_volume(tmp_path: Path) -> None:
    _two_acquisitions(tmp_path, shift=1.25)  # odd/even slices acquired in two passes
    (series,) = _assemble(tmp_path)
    assert series.n_slices == 12 and not series.uneven


def test_per_slice_acquisition_numbers_do_not_split(tmp_path: Path) -> None:
    def mutate_number(k: int) -> int:
        return k // 2 + 1

    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    write_series(tmp_path, small_spec(), mutate=lambda ds, k, t: setattr(ds, "AcquisitionNumber", mutate_number(k)))
    (series,) = _assemble(tmp_path)
    assert series.n_slices == 10


@pytest.mark.parametrize("iop", [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [1, 0, 0, 0.3, 0.95, 0]],
                         ids=["zero", "parallel", "not-perpendicular"])
def test_unusable_orientation_is_a_problem(tmp_path: Path, iop: list[float]) -> None:
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    write_series(tmp_path, small_spec(slices=3), mutate=lambda ds, k, t: setattr(ds, "ImageOrientationPatient", iop))
    (series,) = _assemble(tmp_path)
    assert series.problem and "ImageOrientationPatient" in series.problem


def test_single_image_without_geometry_gets_a_warning(tmp_path: Path) -> None:
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    def strip(ds, k: int, t: int) -> None:
        del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing

    write_series(tmp_path, small_spec(slices=1), mutate=strip)
    (series,) = _assemble(tmp_path)
    assert series.problem is None
    assert any("world position is unknown" in w for w in series.warnings)
    assert any("PixelSpacing" in w for w in series.warnings)


# --------------------------------------------------------------------------- images without a position (issue 12.5)
def test_exam_summary_images_without_position_become_one_2d_series_each(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_unplaced_images

    paths, _ = make_unplaced_images(tmp_path, n=3)
    series = _assemble(tmp_path)
    assert len(series) == 3
    assert [s.split for s in series] == ["image 1", "image 2", "image 3"]
    for s, path in zip(series, paths):
        assert s.problem is None and s.kind == "slices" and s.shape == (24, 32, 1)
        assert s.paths == [path]
        assert any("placement in space is unknown" in w and str(path) in w for w in s.warnings)


def test_images_without_position_are_split_from_the_placed_stack(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_unplaced_images

    paths, _ = make_unplaced_images(tmp_path, n=5, keep_position=(0, 1, 2))
    stacks = [s for s in _assemble(tmp_path) if s.n_slices > 1]
    singles = [s for s in _assemble(tmp_path) if s.n_slices == 1]
    assert len(stacks) == 1 and stacks[0].paths == paths[:3] and stacks[0].problem is None
    assert [s.paths for s in singles] == [[paths[3]], [paths[4]]]
    assert all("(one of 2 in its series)" in s.warnings[0] for s in singles)


def test_duplicate_copies_of_an_unplaced_image_are_one_image(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_unplaced_images

    paths, _ = make_unplaced_images(tmp_path / "a", n=2)
    shutil.copy(paths[0], tmp_path / "a" / "copy.dcm")
    assert len(_assemble(tmp_path / "a")) == 2


@pytest.mark.parametrize("with_position", [False, True], ids=["no-position", "grid-position"])
def test_uih_grid_series_is_refused_with_the_reason(tmp_path: Path, with_position: bool) -> None:
    from fixtures.dicom_series import make_uih_grid_series

    paths = make_uih_grid_series(tmp_path, volumes=3, with_position=with_position)
    (series,) = _assemble(tmp_path)  # never exploded into 2D images, never stacked as slices
    assert series.problem is not None
    assert "United Imaging (UIH) grid" in series.problem and "(0065,xxxx)" in series.problem
    assert "cannot be placed in space" in series.problem and str(paths[0]) in series.problem
    assert sorted(series.paths) == sorted(paths)


# --------------------------------------------------------------------------- dcm2niix splits and postfixes
@pytest.mark.parametrize("echo_number, echo_time, multi_echo, image_type, expected", [
    (1, 4.92, True, ("ORIGINAL", "PRIMARY", "M", "ND"), "e1"),       # every echo of a multi-echo series
    (2, 7.38, True, ("ORIGINAL", "PRIMARY", "P", "ND"), "e2_ph"),
    (1, 4.92, False, ("ORIGINAL", "PRIMARY", "M", "ND"), ""),        # a single echo 1: no postfix
    (2, 7.38, False, ("ORIGINAL", "PRIMARY", "M", "ND"), "e2"),      # a lone echo 2 keeps its number
    (None, 4.123456, True, ("M",), "e4.12346"),                      # no EchoNumbers: the echo time, %g
    (None, 30.0, False, ("M",), ""),
    (None, None, False, ("ORIGINAL", "PRIMARY", "PHASE"), "ph"),
    (None, None, False, ("ORIGINAL", "PRIMARY", "R_FFE", "R", "FFE"), "real"),
    (None, None, False, ("ORIGINAL", "PRIMARY", "IMAGINARY", "ND"), "imaginary"),
    (None, None, False, ("ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"), "ph"),
    (2, 0.0, True, ("ORIGINAL", "PRIMARY", "T1", "FIELD_MAP", "REAL"), "e2_fieldmaphz"),
    (None, None, False, ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"), ""),
])
def test_postfix_rule(echo_number, echo_time, multi_echo, image_type, expected) -> None:
    assert postfix(echo_number, echo_time, multi_echo, image_type) == expected


def test_postfix_of_a_philips_dwi_with_derived_volumes_appended() -> None:
    assert postfix(None, 90.0, False, ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"), derived_appended=True) == "ADC"


@given(st.lists(st.sampled_from(["ORIGINAL", "PRIMARY", "DERIVED", "M", "P", "R", "I", "MAGNITUDE", "PHASE",
                                 "REAL", "IMAGINARY", "FIELD_MAP", "ND", "NORM", "FFE", "m", "p", " p "]),
                max_size=6))
def test_complex_part_is_one_of_the_dcm2niix_postfixes_whatever_the_order(values) -> None:
    part = complex_part(values)
    assert part in ("", "ph", "real", "imaginary", "fieldmaphz")
    assert complex_part(list(reversed(values))) == part  # order of the values does not matter
    assert complex_part([v.lower() for v in values]) == part


@given(st.lists(st.tuples(st.integers(1, 12), st.sampled_from([("M",), ("P",), ("R",), ("I",)])),
                min_size=2, max_size=12, unique=True))
def test_postfixes_tell_every_echo_and_part_of_a_multi_echo_series_apart(parts) -> None:
    names = [postfix(echo, None, True, image_type) for echo, image_type in parts]
    assert len(set(names)) == len(names)
    assert all(name.startswith(f"e{echo}") for name, (echo, _) in zip(names, parts))


def test_echo_label_prefers_echo_numbers_then_echo_time() -> None:
    assert echo_label(3, 12.5) == "3"
    assert echo_label(None, 12.5) == "12.5"
    assert echo_label(0, 7.0) == "7"  # EchoNumbers 0 is "not set"
    assert echo_label(None, None) == ""


#: What dcm2niix v1.0.20260724 writes for each case (measured; tests/test_reader.py checks it live).
SPLIT_POSTFIXES = {
    "two-echoes": ["e1", "e2"],
    "two-echoes-ge": ["e1", "e2"],
    "echo-times-only": ["e4.92", "e7.38"],
    "echo-number-and-time-mixed": ["e1", "e8"],
    "same-echo-time": ["e1", "e2"],
    "lone-echo-2": ["e2"],
    "lone-echo-1": [""],
    "magnitude-phase": ["", "ph"],
    "magnitude-phase-words": ["", "ph"],
    "magnitude-phase-philips": ["", "ph"],
    "phase-echo-2": ["e2_ph"],
    "two-echoes-magnitude-phase": ["e1", "e1_ph", "e2", "e2_ph"],
    "real-imaginary": ["imaginary", "real"],
    "real-imaginary-words": ["imaginary", "real"],
    "real-imaginary-philips": ["imaginary", "real"],
    "two-echoes-real-imaginary": ["e1_imaginary", "e1_real", "e2_imaginary", "e2_real"],
    "ge-private-parts": ["", "imaginary", "ph", "real"],
}


def test_every_split_case_has_its_expected_postfixes() -> None:
    assert set(SPLIT_POSTFIXES) == set(SPLIT_CASES)


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_cases_become_one_volume_each_with_dcm2niix_postfixes(tmp_path: Path, case: str) -> None:
    make_split_series(tmp_path, case)
    series = _assemble(tmp_path)
    assert sorted(s.suffix for s in series) == SPLIT_POSTFIXES[case]
    for s in series:  # one 3D volume per part, each from one part's files only
        assert s.problem is None and (s.n_slices, s.n_times) == (4, 1)
        assert len({inst.path.parent for inst in s.instances}) == 1


def test_real_as_last_image_type_value_is_split_too(tmp_path: Path) -> None:
    """dcm2niix stacks ``ORIGINAL\\PRIMARY\\REAL`` with ``...\\IMAGINARY`` into one 4D file (it only
    recognises REAL before another value); real and imaginary parts are never one 4D series here."""
    make_split_series(tmp_path, "real-imaginary-words")
    for path in tmp_path.rglob("*.dcm"):
        import pydicom

        ds = pydicom.dcmread(path)
        ds.ImageType = list(ds.ImageType)[:3]
        ds.save_as(path)
    assert sorted(s.suffix for s in _assemble(tmp_path)) == ["imaginary", "real"]


def test_philips_dwi_isotropic_volume_is_left_out_and_an_adc_series_keeps_all(tmp_path: Path) -> None:
    _, order = make_philips_dwi(tmp_path, "isotropic-first")
    dwi, adc = _assemble(tmp_path)
    assert (dwi.suffix, adc.suffix) == ("", "ADC")
    assert dwi.n_times == 3 and adc.n_times == 4
    for column in dwi.grid:  # b0 and the two directions, in acquisition order; no isotropic image
        assert not any(i.philips_isotropic for i in column)
        assert [i.temporal_position for i in column] == [1, 3, 4]
    for column in adc.grid:  # every volume; the derived one (stored second) last, as dcm2niix writes it
        assert [i.temporal_position for i in column] == [1, 3, 4, 2]
        assert column[-1].philips_isotropic
    assert "derived isotropic" in adc.split and adc.label.startswith("#7")


@pytest.mark.parametrize("kind", ["derived-image-type", "adc-image-type"])
def test_philips_dwi_derived_image_type_is_a_series_of_its_own(tmp_path: Path, kind: str) -> None:
    make_philips_dwi(tmp_path, kind)
    dwi, derived = _assemble(tmp_path)  # the acquired images first: they get the plain name
    assert dwi.n_times == 3 and derived.n_times == 1
    assert "DERIVED" not in dwi.first.image_type and "DERIVED" in derived.first.image_type
    assert dwi.suffix == derived.suffix == ""  # dcm2niix: a name conflict (its "a"), not a postfix


def test_ge_private_image_type_decides_the_part() -> None:
    assert complex_part(("ORIGINAL", "PRIMARY", "OTHER"), 1) == "ph"
    assert complex_part(("ORIGINAL", "PRIMARY", "OTHER"), 3) == "imaginary"
    assert complex_part(("ORIGINAL", "PRIMARY", "P"), 0) == ""  # the private value wins
    assert complex_part(("ORIGINAL", "PRIMARY", "P"), 7) == "ph"  # unknown private value: ImageType decides


def test_ge_image_type_read_only_from_ge_files() -> None:
    from convert.dicom.scan import ge_image_type

    assert ge_image_type("GE MEDICAL SYSTEMS", b"\x01\x00") == 1
    assert ge_image_type("GE HealthCare", 3) == 3
    assert ge_image_type("SIEMENS", 1) is None
    assert ge_image_type("GE MEDICAL SYSTEMS", None) is None


def test_isotropic_flag_needs_philips_and_a_b_value(tmp_path: Path) -> None:
    from convert.dicom.scan import philips_isotropic

    assert philips_isotropic("Philips Medical Systems", "I", 1000.0)
    assert philips_isotropic("Philips", b"I ", b"\x00\x00\x7a\x44")  # raw CS and FL (1000.0) bytes
    assert not philips_isotropic("Philips", "I", 0.0)
    assert not philips_isotropic("SIEMENS", "I", 1000.0)
    assert not philips_isotropic("Philips", "O", 1000.0)
    assert not philips_isotropic("Philips", None, None)


@pytest.mark.parametrize("slope, intercept, expected", [("nan", "-1024", (1.0, -1024.0)), ("0", "-1024", (1.0, -1024.0)),
                                                        ("2", "inf", (2.0, 0.0)), ("nan", "nan", (1.0, 0.0))])
def test_unusable_rescale_values_are_replaced_and_reported_never_silently(tmp_path: Path, slope: str,
                                                                           intercept: str, expected) -> None:
    """The quirk (issue 17): a NaN RescaleSlope gave a NaN volume or was silently taken as 1."""
    import pydicom

    from convert.dicom import read_series
    from convert.dicom.scan import scan

    paths, _ = make_series(tmp_path, slices=4, rows=8, columns=8)
    ds = pydicom.dcmread(paths[1])
    ds["RescaleSlope"].value, ds["RescaleIntercept"].value = slope, intercept
    ds.save_as(paths[1])
    (series,) = assemble(scan(tmp_path).instances)
    assert len(series.warnings) == 1 and "not a usable number in 1 of 4 file(s)" in series.warnings[0]
    assert str(paths[1]) in series.warnings[0]
    fixed = [i for i in series.instances if i.path == paths[1]][0]
    assert (fixed.rescale_slope, fixed.rescale_intercept) == expected
    volume = read_series(series)
    assert np.isfinite(volume.scaled()).all()
    assert any("not a usable number" in w for w in volume.warnings)


def test_rescale_values_as_stored_absent_empty_or_not_a_number() -> None:
    from convert.dicom.scan import rescale_value

    assert rescale_value(None, 1.0) == 1.0 and rescale_value("  ", 0.0) == 0.0 and rescale_value("2.5 ", 1.0) == 2.5
    assert np.isnan(rescale_value("abc", 1.0)) and np.isnan(rescale_value("nan", 1.0))
    assert rescale_value("0", 1.0) == 0.0  # kept: the series assembly reports a zero slope


# --------------------------------------------------------------------------- unusable geometry (issue 17)
@pytest.mark.parametrize("keyword, value", [("PixelSpacing", [0, 0]), ("PixelSpacing", [1e308, 1e308]),
                                            ("ImagePositionPatient", [1e308, 0, 0]),
                                            ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0])])
def test_unusable_geometry_in_one_slice_is_a_series_problem(tmp_path, keyword, value):
    """PixelSpacing 0 (or absurd geometry) in one slice of a folder: that slice's series carries a
    problem naming the file; no NaN affine, no TypeError while summarizing it."""
    from convert.batch.index import summarize_series

    def mutate(ds, k, t):
        if k == 1:
            setattr(ds, keyword, value)

    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    write_series(tmp_path, small_spec(slices=4), mutate=mutate)
    all_series = assemble(scan(tmp_path).instances)
    problems = [s.problem for s in all_series if s.problem]
    assert problems and any("IM0000" in p and keyword in p for p in problems)
    for series in all_series:
        summary = summarize_series(series)
        assert summary["problem"] or summary["orientation"]
