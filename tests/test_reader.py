"""convert.dicom.reader: geometry (vs dcm2niix and vs the generator), 4D, options, bad input, CLI, naming."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import require_tool  # noqa: E402
from fixtures.dicom_series import (  # noqa: E402
    PHILIPS_DWI_KINDS,
    SPLIT_CASES,
    expected_affine_ras,
    make_philips_dwi,
    make_split_series,
    make_non_dicom_files,
    make_series,
    make_short_pixel_data,
    make_unsupported_transfer_syntax,
    make_world_ramp,
    ramp_value_lps,
    RAMP_PER_MM,
    stored_data,
    truncate_file,
)

import convert  # noqa: E402
from convert.cli import app  # noqa: E402
from convert.batch import convert_dicom_tree  # noqa: E402
from convert.batch.naming import render_name, sanitize_name  # noqa: E402
from convert.dicom import assemble, read_series, volume_warnings  # noqa: E402
from convert.dicom.scan import scan  # noqa: E402
from convert.dicom.reader import DICOM, read_single  # noqa: E402
from convert.errors import ConvertError, CorruptFileError, DicomError  # noqa: E402
from convert.volume import Volume  # noqa: E402
from convert import save  # noqa: E402

runner = CliRunner()


def _read(folder: Path, **options):
    (series,) = assemble(scan(folder).instances)
    return read_series(series, **options)


def _canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    canon = nib.as_closest_canonical(img)
    return np.asarray(canon.dataobj, dtype=np.float64), canon.affine


def _dcm2niix(src: Path, out: Path) -> list[Path]:
    exe = require_tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s", "-o", str(out), str(src)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(out.glob("*.nii"))


# --------------------------------------------------------------------------- geometry
CASES = [("axial", False, False), ("oblique", False, True), ("sagittal", True, False), ("coronal", True, True),
         ("oblique", True, True)]


@pytest.mark.parametrize("orientation,descending,shuffle", CASES,
                         ids=[f"{o}-{'desc' if d else 'asc'}-{'shuffled' if s else 'named'}" for o, d, s in CASES])
def test_geometry_and_values_match_the_generator(tmp_path: Path, orientation: str, descending: bool,
                                                 shuffle: bool) -> None:
    _, spec = make_series(tmp_path, orientation, descending=descending, shuffle_names=shuffle)
    volume = _read(tmp_path)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)
    np.testing.assert_array_equal(volume.array, stored_data(spec)[..., 0])
    assert (volume.slope, volume.intercept) == (1.0, -1024.0)
    assert volume.meta.modality == "CT"


@pytest.mark.parametrize("orientation,descending,shuffle", CASES,
                         ids=[f"{o}-{'desc' if d else 'asc'}-{'shuffled' if s else 'named'}" for o, d, s in CASES])
def test_world_space_matches_dcm2niix(tmp_path: Path, orientation: str, descending: bool, shuffle: bool) -> None:
    _, spec = make_series(tmp_path / "in", orientation, descending=descending, shuffle_names=shuffle)
    (ref_path,) = _dcm2niix(tmp_path / "in", tmp_path / "ref")
    ours = _read(tmp_path / "in")
    ref_data, ref_affine = _canonical(nib.load(str(ref_path)))
    our_data, our_affine = _canonical(nib.Nifti1Image(ours.scaled(), ours.affine))
    assert our_data.shape == ref_data.shape
    np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)


def test_4d_series_matches_dcm2niix(tmp_path: Path) -> None:
    make_series(tmp_path / "in", "oblique", times=3, modality="MR", shuffle_names=True, rescale_intercept=0.0)
    (ref_path,) = _dcm2niix(tmp_path / "in", tmp_path / "ref")
    ours = _read(tmp_path / "in")
    assert ours.shape == (24, 32, 10, 3)
    ref_data, ref_affine = _canonical(nib.load(str(ref_path)))
    our_data, our_affine = _canonical(nib.Nifti1Image(ours.scaled(), ours.affine))
    np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)
    assert ours.meta.time_step == pytest.approx(2.0)


def test_single_file_is_a_one_slice_volume(tmp_path: Path) -> None:
    paths, spec = make_series(tmp_path, "oblique", slices=3)
    volume = convert.load(paths[1])
    assert volume.shape == (24, 32, 1)
    expected = expected_affine_ras(spec)
    np.testing.assert_allclose(volume.affine[:, [0, 1]], expected[:, [0, 1]], atol=1e-4)
    np.testing.assert_allclose(volume.affine[:3, 3], (expected @ [0, 0, 1, 1])[:3], atol=1e-4)
    assert np.linalg.norm(volume.affine[:3, 2]) == pytest.approx(spec.slice_spacing)


def test_folder_loads_through_the_registry(tmp_path: Path) -> None:
    _, spec = make_series(tmp_path, "sagittal")
    volume = convert.load(tmp_path)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)


def test_sniff_accepts_files_folders_and_headerless_files(tmp_path: Path) -> None:
    import pydicom

    paths, _ = make_series(tmp_path / "s", slices=2)
    assert DICOM.sniff(paths[0]) and DICOM.sniff(tmp_path / "s")
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(paths[0])
    del ds.file_meta
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    headerless = tmp_path / "raw_implicit"  # no preamble, no DICM, no file meta: old archives
    headerless.write_bytes(buffer.getvalue())
    assert headerless.read_bytes()[:2] == b"\x08\x00"
    assert DICOM.sniff(headerless)
    assert convert.load(headerless).shape == (24, 32, 1)
    junk = make_non_dicom_files(tmp_path / "junk")
    assert not DICOM.sniff(junk[0]) and not DICOM.sniff(tmp_path / "junk")


def test_folder_with_several_series_lists_them(tmp_path: Path) -> None:
    make_series(tmp_path / "a", series_number=3, description="T1 axial", seed=1)
    make_series(tmp_path / "b", series_number=9, description="Bone", seed=2, slices=4)
    with pytest.raises(DicomError, match=r"found 2 series.*#3 'T1 axial'.*24x32x10.*#9 'Bone'.*OUT_DIR"):
        convert.load(tmp_path)


def test_per_slice_rescale_is_applied_into_an_integer_type(tmp_path: Path) -> None:
    slopes = [1.0] * 5 + [2.0] * 5
    _, spec = make_series(tmp_path, rescale_slope=slopes, rescale_intercept=-1024.0,
                          data=np.random.default_rng(1).integers(0, 2000, (24, 32, 10, 1)))
    volume = _read(tmp_path)
    assert volume.dtype == np.int16 and not volume.is_scaled
    raw = stored_data(spec)[..., 0]
    expected = raw * np.array(slopes)[np.newaxis, np.newaxis, :] - 1024
    np.testing.assert_array_equal(volume.array, expected)


# --------------------------------------------------------------------------- gaps, uneven, tilt
def test_missing_slice_is_refused_naming_the_neighbours(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path, skip=(4,))
    with pytest.raises(DicomError, match="missing slices") as info:
        _read(tmp_path)
    assert "allow_gaps=True" in str(info.value) and "IM00004.dcm" in str(info.value)
    assert "--allow-gaps" not in str(info.value)  # a Python caller reads the API keyword (CLI: see test_cli)


def test_allow_gaps_resamples_onto_the_full_regular_grid(tmp_path: Path) -> None:
    _, spec = make_series(tmp_path, "oblique", skip=(4,))
    volume = _read(tmp_path, allow_gaps=True)
    assert volume.shape == (24, 32, 10)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)
    data = stored_data(spec)[..., 0]
    for k in (0, 3, 5, 9):  # real slices are kept exactly
        np.testing.assert_array_equal(volume.array[:, :, k], data[:, :, k])
    midway = (data[:, :, 3].astype(float) + data[:, :, 5]) / 2  # linear, rounded to the stored integers
    assert np.abs(volume.array[:, :, 4] - midway).max() <= 0.5 + 1e-9


UNEVEN_OFFSETS = [0, 2, 4, 6, 8, 11, 14, 17, 20, 23]


def _ramp_error(volume: convert.Volume, spec) -> np.ndarray:
    """|stored value - the ramp's value at the voxel's world position| for every voxel (see make_world_ramp)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape[:3]], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = ijk @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    expected = ramp_value_lps(spec, ras * np.array([-1.0, -1.0, 1.0]))
    return np.abs(volume.scaled().reshape(-1, order="C") - expected)


@pytest.mark.parametrize("tilt_deg", [0.0, 15.0])
def test_uneven_spacing_is_resampled_by_default_with_every_voxel_at_its_world_position(tmp_path: Path,
                                                                                        tilt_deg: float) -> None:
    """The quirk: slices 2 mm then 3 mm apart. Default: even grid at the smallest gap (2 mm), values exact in world."""
    _, spec = make_world_ramp(tmp_path, UNEVEN_OFFSETS, tilt_deg=tilt_deg)
    volume = _read(tmp_path)
    assert volume.shape[2] == 13  # ceil(23 mm / 2 mm) + 1 planes, 23/12 mm apart along the normal
    assert _ramp_error(volume, spec).max() <= 1.0 + 1e-6  # integer rounding only: no voxel misplaced
    (note,) = [w for w in volume_warnings(volume) if "uneven" in w]
    step = float(np.linalg.norm(volume.affine[:3, 2]))
    assert f"every {round(step, 4):g} mm" in note and "13 even slices" in note and "stack_uneven=True" in note


def test_stack_uneven_keeps_the_stored_slices_and_states_the_true_misplacement(tmp_path: Path) -> None:
    _, spec = make_world_ramp(tmp_path, UNEVEN_OFFSETS)
    volume = _read(tmp_path, stack_uneven=True)
    assert volume.shape[2] == 10
    np.testing.assert_array_equal(volume.array[..., 0], stored_data(spec)[:, :, 0, 0])
    measured = _ramp_error(volume, spec).max() / RAMP_PER_MM  # mm, along the normal (no tilt here)
    (note,) = [w for w in volume_warnings(volume) if "uneven" in w]
    stated = float(note.split("misplaced by up to ")[1].split(" mm")[0])
    assert measured > 0.5 and stated == pytest.approx(measured, abs=0.1)
    assert f"every {round(float(np.linalg.norm(volume.affine[:3, 2])), 4):g} mm" in note


def test_uneven_spacing_one_spacing_figure_in_info_warning_and_file(tmp_path: Path) -> None:
    _, spec = make_world_ramp(tmp_path / "in", UNEVEN_OFFSETS, tilt_deg=10.0)
    info = runner.invoke(app, ["info", str(tmp_path / "in"), "--json"])
    assert info.exit_code == 0, info.output
    (summary,) = json.loads(info.stdout)["series"]
    out = tmp_path / "out.nii.gz"
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(out)])
    assert result.exit_code == 0, result.output
    pixdim = float(nib.load(str(out)).header.get_zooms()[2])
    assert summary["spacing_mm"][2] == pytest.approx(pixdim, abs=1e-4)
    figure = f"every {summary['spacing_mm'][2]:g} mm"
    assert any(figure in w for w in summary["warnings"])
    assert figure in result.output.replace("\n", " ") or figure in " ".join(result.output.split())
    assert "stack_uneven" not in result.output and "--stack-uneven" in result.output


def test_resample_uneven_flag_is_still_accepted_as_the_default(tmp_path: Path) -> None:
    make_world_ramp(tmp_path / "in", UNEVEN_OFFSETS)
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert runner.invoke(app, ["convert", str(tmp_path / "in"), str(a)]).exit_code == 0
    assert runner.invoke(app, ["convert", str(tmp_path / "in"), str(b), "--resample-uneven"]).exit_code == 0
    np.testing.assert_array_equal(nib.load(str(a)).get_fdata(), nib.load(str(b)).get_fdata())
    both = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "c.nii.gz"), "--resample-uneven",
                               "--stack-uneven"])
    assert both.exit_code == 2


def test_uneven_spacing_api_note_uses_the_api_keyword(tmp_path: Path) -> None:
    make_world_ramp(tmp_path, UNEVEN_OFFSETS)
    (note,) = [w for w in volume_warnings(_read(tmp_path)) if "uneven" in w]
    assert "stack_uneven=True" in note and "--stack-uneven" not in note


def test_tilted_series_keeps_the_shear_exactly(tmp_path: Path) -> None:
    _, spec = make_series(tmp_path, tilt_deg=20.0)
    volume = _read(tmp_path)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)


def test_tilt_correction_gives_an_orthogonal_grid_with_the_same_world_content(tmp_path: Path) -> None:
    """Tilt chosen so each slice shifts exactly one pixel row: no interpolation, so values must be identical."""
    tilt = float(np.degrees(np.arctan(0.8 / 2.5)))  # row spacing 0.8 mm, slice spacing 2.5 mm
    _, spec = make_series(tmp_path, "oblique", tilt_deg=tilt)
    sheared = _read(tmp_path)
    corrected = _read(tmp_path, tilt_correct=True)
    d = corrected.direction
    assert abs(d[:, 2] @ d[:, 1]) < 1e-9 and abs(d[:, 2] @ d[:, 0]) < 1e-9
    assert corrected.shape == (24, 32 + 9, 10)  # field of view grew by the total shift: nothing cut off
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in sheared.shape], indexing="ij"), -1).reshape(-1, 3)
    world = sheared.world_coordinates(ijk)
    idx = (world - corrected.affine[:3, 3]) @ np.linalg.inv(corrected.affine[:3, :3]).T
    nearest = np.round(idx).astype(int)
    assert np.abs(idx - nearest).max() < 1e-3
    np.testing.assert_array_equal(corrected.array[tuple(nearest.T)], sheared.array[tuple(ijk.T)])
    assert any("tilt" in w for w in volume_warnings(corrected))


# --------------------------------------------------------------------------- bad input
def test_folder_without_dicom(tmp_path: Path) -> None:
    make_non_dicom_files(tmp_path)
    with pytest.raises(ConvertError, match="no DICOM images found in"):
        convert.load(tmp_path)
    with pytest.raises(DicomError, match="no DICOM images found in .*none is a DICOM image"):
        convert_dicom_tree(tmp_path, tmp_path / "out")


def _messy_archive(root: Path) -> dict[str, Path]:
    good_paths, _ = make_series(root / "good", series_number=1, description="good", seed=1)
    make_series(root / "gap", series_number=2, description="gap", seed=2, skip=(5,))
    _, short = make_short_pixel_data(root / "short", series_number=3, description="short", seed=3)
    trunc_paths, _ = make_series(root / "trunc", series_number=4, description="trunc", seed=4)
    truncate_file(trunc_paths[2], trunc_paths[2].stat().st_size - 300)
    unsupported = make_unsupported_transfer_syntax(root / "mpeg", series_number=5, description="mpeg", seed=5)
    make_non_dicom_files(root / "good")
    return {"short": short, "trunc": trunc_paths[2], "mpeg": unsupported}


def test_multi_series_run_isolates_failures(tmp_path: Path) -> None:
    bad = _messy_archive(tmp_path / "in")
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    ok = [o for o in report.outcomes if o.ok]
    assert [o.label.split()[1] for o in ok] == ["'good'"]
    assert len(report.failed) == 4
    errors = " | ".join(o.error or "" for o in report.failed)
    for path in bad.values():
        assert str(path) in errors
    assert "missing slices" in errors
    assert _names(tmp_path / "out") == ["1_good.json", "1_good.nii.gz"]
    assert len(report.skipped) == 4


def _names(folder: Path) -> list[str]:
    """Output file names in ``folder``, sorted (the run's record in ``.medconvert/`` and its report left out)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (".medconvert", "report.json", "report.html"))


def test_cli_multi_series_run_exits_3_after_writing_the_good_series(tmp_path: Path) -> None:
    bad = _messy_archive(tmp_path / "in")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 3  # completed with failures
    assert "Traceback" not in result.output
    assert (tmp_path / "out" / "1_good.nii.gz").exists()
    assert "4 of 5 series failed" in result.output
    assert str(bad["mpeg"]) in result.output
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".") and p.name != ".medconvert"]


def test_cli_single_output_from_a_multi_series_folder_says_what_it_found(tmp_path: Path) -> None:
    make_series(tmp_path / "in" / "a", series_number=3, seed=1)
    make_series(tmp_path / "in" / "b", series_number=4, seed=2)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 1 and "found 2 series" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.nii.gz").exists()


# --------------------------------------------------------------------------- CLI happy paths
def test_cli_convert_folder_writes_nifti_and_sidecar_without_phi(tmp_path: Path) -> None:
    _, spec = make_series(tmp_path / "in", "oblique", description="T1 / ax")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    nii = tmp_path / "out" / "1_T1_ax.nii.gz"
    img = nib.load(str(nii))
    np.testing.assert_allclose(img.affine, expected_affine_ras(spec), atol=1e-4)
    sidecar = json.loads((tmp_path / "out" / "1_T1_ax.json").read_text())
    text = json.dumps(sidecar)
    assert sidecar["Modality"] == "CT" and "Phantom" not in text and "PHANTOM-0001" not in text


def test_cli_sidecar_phi_and_no_sidecar(tmp_path: Path) -> None:
    make_series(tmp_path / "in")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "a"), "--sidecar-phi"])
    assert result.exit_code == 0, result.output
    assert "PHANTOM-0001" in (tmp_path / "a" / "1_Synthetic_head_phantom.json").read_text()
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "b"), "--no-sidecar"])
    assert result.exit_code == 0 and [p.name for p in (tmp_path / "b").glob("*.json")] == ["report.json"]


def test_cli_name_template_and_collisions(tmp_path: Path) -> None:
    make_series(tmp_path / "in" / "a", series_number=5, description="../../etc/passwd", seed=1)
    make_series(tmp_path / "in" / "b", series_number=6, description="../../etc/passwd", seed=2)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--name",
                                 "{SeriesDescription}", "--no-sidecar"])
    assert result.exit_code == 0, result.output
    assert _names(tmp_path / "out") == ["etc_passwd.nii.gz", "etc_passwd_2.nii.gz"]
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "o2"), "--name", "{PatientName}"])
    assert result.exit_code == 1 and "unknown field" in result.output


def test_cli_tilt_and_gap_options(tmp_path: Path) -> None:
    make_series(tmp_path / "in", skip=(3,), tilt_deg=10.0)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "o1")])
    assert result.exit_code == 1 and "--allow-gaps" in result.output
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "o2"), "--allow-gaps",
                                 "--tilt-correct"])
    assert result.exit_code == 0, result.output
    img = nib.load(str(next((tmp_path / "o2").glob("*.nii.gz"))))
    assert img.shape[2] == 10
    cols = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
    assert abs(cols[:, 1] @ cols[:, 2]) < 1e-6


def test_cli_info_lists_series_with_warnings(tmp_path: Path) -> None:
    make_series(tmp_path / "a", series_number=1, seed=1, tilt_deg=12.0)
    make_series(tmp_path / "b", series_number=2, seed=2, skip=(2,))
    result = runner.invoke(app, ["info", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    first, second = info["series"]
    assert first["tilt_deg"] == pytest.approx(12.0, abs=0.01) and first["shape"] == [24, 32, 10]
    assert second["missing_slices"] == 1 and first["spacing_mm"][:2] == [1.1, 0.8]
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert "tilt" in result.output and "missing" in result.output


def test_cli_sample_then_convert(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["convert", str(tmp_path / "demo" / "dicom"), str(tmp_path / "demo" / "out")])
    assert result.exit_code == 0, result.output
    (nii,) = (tmp_path / "demo" / "out").glob("*.nii.gz")
    img = nib.load(str(nii))
    assert img.shape == (64, 64, 40)
    hu = np.asarray(img.dataobj)
    assert hu.min() < -900 and hu.max() > 1000  # air and skull in HU
    result = runner.invoke(app, ["sample", str(tmp_path / "demo")])
    assert result.exit_code == 1  # refuses to overwrite


def test_cli_single_file_output_from_single_series_folder(tmp_path: Path) -> None:
    _, spec = make_series(tmp_path / "in", "coronal")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "vol.nii.gz")])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(nib.load(str(tmp_path / "vol.nii.gz")).affine, expected_affine_ras(spec), atol=1e-4)
    assert (tmp_path / "vol.json").exists()


# --------------------------------------------------------------------------- naming
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_sanitized_names_cannot_escape_or_hide(text: str) -> None:
    name = sanitize_name(text)
    assert name and len(name) <= 120
    assert "/" not in name and "\\" not in name and ".." not in name and "\0" not in name
    assert not name.startswith(".") and name == name.strip()
    assert all(ch.isprintable() for ch in name)
    assert name.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}


@pytest.mark.parametrize("template", ["{SeriesNumber.__class__}", "{SeriesNumber[0]}", "{SeriesNumber!r}",
                                      "{PatientID}", "{"])
def test_name_templates_reject_anything_but_plain_allowed_fields(template: str) -> None:
    with pytest.raises(ConvertError):
        render_name(template, {"SeriesNumber": "3"})


# --------------------------------------------------------------------------- fast native path
def test_native_fast_path_equals_the_pydicom_decoder_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convert.dicom import reader

    make_series(tmp_path, "oblique", times=2, modality="MR", shuffle_names=True)
    (series,) = assemble(scan(tmp_path).instances)
    assert reader._native_fast_path_ok(series, np.dtype(np.int16))
    fast = read_series(series)
    monkeypatch.setattr(reader, "_native_fast_path_ok", lambda *a: False)
    slow = read_series(series)
    np.testing.assert_array_equal(fast.array, slow.array)
    np.testing.assert_array_equal(fast.affine, slow.affine)


def test_12bit_garbage_is_masked_on_the_fast_path(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_12bit_garbage

    for signed in (False, True):
        _, clean = make_12bit_garbage(tmp_path / str(signed), signed)
        volume = _read(tmp_path / str(signed))
        np.testing.assert_array_equal(volume.array, clean)


def test_monochrome1_series_is_inverted(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_monochrome1

    _, data = make_monochrome1(tmp_path)
    np.testing.assert_array_equal(_read(tmp_path).array, 4095 - data)


def test_large_archive_mode_keeps_one_header_per_series_with_identical_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    scan_module = importlib.import_module("convert.dicom.scan")  # the package exports a function of that name
    make_series(tmp_path / "in", "oblique", times=2, modality="MR")
    full = convert_dicom_tree(tmp_path / "in", tmp_path / "full")
    monkeypatch.setattr(scan_module, "KEEP_ALL_HEADERS_LIMIT", 0)
    lean_scan = scan(tmp_path / "in")
    assert sum(i.header is not None for i in lean_scan.instances) <= 1
    lean = convert_dicom_tree(tmp_path / "in", tmp_path / "lean")
    assert [p.name for p in full.written] == [p.name for p in lean.written]
    for a, b in zip(full.written, lean.written):
        if a.suffix == ".json":
            assert json.loads(a.read_text()) == json.loads(b.read_text())
        else:
            assert np.array_equal(np.asarray(nib.load(str(a)).dataobj), np.asarray(nib.load(str(b)).dataobj))


def test_existing_outputs_are_not_overwritten_without_the_option(tmp_path: Path) -> None:
    make_series(tmp_path / "in")
    first = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    assert first.ok
    again = convert_dicom_tree(tmp_path / "in", tmp_path / "out")  # the same job: resumed, nothing rewritten
    assert again.ok and [o.status for o in again.outcomes] == ["done"]
    # files of the same names that no run of this job wrote (another tool, another folder's copy)
    (tmp_path / "other").mkdir()
    for path in first.written:
        (tmp_path / "other" / path.name).write_bytes(b"not ours")
    foreign = convert_dicom_tree(tmp_path / "in", tmp_path / "other")
    assert not foreign.ok and "already exists" in (foreign.failed[0].error or "")
    assert all((tmp_path / "other" / p.name).read_bytes() == b"not ours" for p in first.written)
    assert _names(tmp_path / "out") == sorted(p.name for p in first.written)
    assert convert_dicom_tree(tmp_path / "in", tmp_path / "other", overwrite=True).ok


@settings(max_examples=12, deadline=None)
@given(angles=st.tuples(*[st.floats(-3.1, 3.1)] * 3), descending=st.booleans(),
       spacing=st.tuples(st.floats(0.3, 4.0), st.floats(0.3, 4.0), st.floats(0.5, 6.0)),
       slices=st.integers(2, 6))
def test_any_orientation_and_order_gives_the_generator_affine(tmp_path_factory: pytest.TempPathFactory, angles,
                                                              descending: bool, spacing, slices: int) -> None:
    from convert.sample import oblique_cosines

    row, col = oblique_cosines(*angles)
    folder = tmp_path_factory.mktemp("geom")
    _, spec = make_series(folder, rows=6, columns=5, slices=slices, row_cosine=row, column_cosine=col,
                          pixel_spacing=(round(spacing[0], 3), round(spacing[1], 3)),
                          slice_spacing=round(spacing[2], 3), descending=descending, shuffle_names=True)
    volume = _read(folder)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)
    np.testing.assert_array_equal(volume.array, stored_data(spec)[..., 0])


def test_folder_to_nrrd_output(tmp_path: Path) -> None:
    from convert.formats import all_formats

    if "nrrd" not in {f.name for f in all_formats() if f.can_write}:
        pytest.skip("NRRD writer not available")
    import nrrd

    _, spec = make_series(tmp_path / "in", "oblique")
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", to="nrrd")
    assert report.ok and [p.suffix for p in report.written] == [".nrrd"]  # sidecars only for NIfTI
    data, header = nrrd.read(str(report.written[0]))
    assert data.shape == (24, 32, 10)
    directions = np.asarray(header["space directions"], dtype=float)
    lps = expected_affine_ras(spec) * np.array([-1, -1, 1, 1])[:, None]
    np.testing.assert_allclose(directions.T, lps[:3, :3], atol=1e-4)


def test_diffusion_series_gets_bval_and_bvec(tmp_path: Path) -> None:
    bvals = [0.0, 1000.0, 1000.0]
    dirs = [[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8]]

    def mutate(ds, k: int, t: int) -> None:
        ds.DiffusionBValue = bvals[t]
        ds.DiffusionGradientOrientation = dirs[t]

    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    write_series(tmp_path / "in", small_spec(times=3, modality="MR", rescale_intercept=0.0), mutate=mutate)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    assert report.ok, report.failed
    names = sorted(p.name for p in report.written)
    assert any(n.endswith(".bval") for n in names) and any(n.endswith(".bvec") for n in names)
    bval_path = next(p for p in report.written if p.suffix == ".bval")
    assert [float(v) for v in bval_path.read_text().split()] == bvals


def test_diffusion_bvecs_match_dcm2niix(tmp_path: Path) -> None:
    exe = require_tool("dcm2niix")
    bvals = [0.0, 1000.0, 1000.0, 2000.0]
    dirs = [[0, 0, 0], [1, 0, 0], [0, 0.6, 0.8], [0.48, -0.6, 0.64]]

    def mutate(ds, k: int, t: int) -> None:
        ds.DiffusionBValue = bvals[t]
        ds.DiffusionGradientOrientation = dirs[t]

    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    write_series(tmp_path / "in", small_spec("oblique", times=4, modality="MR", rescale_intercept=0.0), mutate=mutate)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    ours = np.loadtxt(next(p for p in report.written if p.suffix == ".bvec"))
    (tmp_path / "ref").mkdir()
    subprocess.run([exe, "-z", "n", "-f", "%s", "-o", str(tmp_path / "ref"), str(tmp_path / "in")],
                   capture_output=True, timeout=120, check=True)
    ref = np.loadtxt(next((tmp_path / "ref").glob("*.bvec")))
    ref_nii = nib.load(str(next((tmp_path / "ref").glob("*.nii"))))
    our_nii = nib.load(str(next(p for p in report.written if p.name.endswith(".nii.gz"))))
    np.testing.assert_allclose(_bvecs_to_world(ours, our_nii.affine), _bvecs_to_world(ref, ref_nii.affine), atol=1e-4)


def _bvecs_to_world(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (voxel axes, x flipped when det > 0) -> RAS+ world directions: compares files of any layout."""
    vox = np.array(bvecs, dtype=float)
    if np.linalg.det(affine[:3, :3]) > 0:
        vox[0] *= -1
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return axes @ vox


def test_volume_suffixes_tell_volumes_apart() -> None:
    from convert.batch.naming import volume_suffixes
    from convert.volume import Meta, Volume

    def vol(**acq) -> Volume:
        return Volume(np.zeros((2, 2, 2), np.int16), np.eye(4), meta=Meta(acquisition=acq))

    # dcm2niix's postfixes: magnitude has none, a field map "fieldmaphz", phase "ph"
    assert volume_suffixes([vol(ImageType=["ORIGINAL", "M"]), vol(ImageType=["ORIGINAL", "FIELD_MAP", "REAL"])]) == [
        "", "fieldmaphz"]
    assert volume_suffixes([vol(ImageType=["ORIGINAL", "M"]), vol(ImageType=["ORIGINAL", "P"])]) == ["", "ph"]
    # echoes: EchoNumber when known, else the echo time in ms (as dcm2niix's "%g")
    assert volume_suffixes([vol(EchoTime=0.02, EchoNumber=2), vol(EchoTime=0.01, EchoNumber=1)]) == ["e2", "e1"]
    assert volume_suffixes([vol(EchoTime=0.0049), vol(EchoTime=0.00738)]) == ["e4.9", "e7.38"]
    assert volume_suffixes([vol(EchoNumber=1, ImageType=["M"]), vol(EchoNumber=2, ImageType=["FIELD_MAP"])]) == [
        "e1", "e2_fieldmaphz"]
    assert volume_suffixes([vol(), vol()]) == ["1", "2"]
    assert volume_suffixes([vol(ImageType=["P"]), vol(ImageType=["P"])]) == ["ph_1", "ph_2"]
    assert volume_suffixes([vol(ImageType=["P"])]) == ["ph"]


def test_series_headers_are_in_volume_order_and_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from convert.dicom.reader import SeriesHeaders

    scan_module = importlib.import_module("convert.dicom.scan")
    make_series(tmp_path, times=3, modality="MR", shuffle_names=True)
    monkeypatch.setattr(scan_module, "KEEP_ALL_HEADERS_LIMIT", 0)
    (series,) = assemble(scan(tmp_path).instances)
    headers = SeriesHeaders(series)
    assert len(headers) == 30
    first_volume = headers[:10]  # slices of time point 0, in k order
    assert [int(h.TemporalPositionIdentifier) for h in first_volume] == [1] * 10
    z = [float(h.ImagePositionPatient[2]) for h in first_volume]
    assert z == sorted(z)
    assert int(headers[-1].TemporalPositionIdentifier) == 3
    assert len(headers._cache) == 11  # only what was asked for was read


def test_rle_compressed_series_decodes_in_the_thread_pool(tmp_path: Path) -> None:
    from convert.dicom import reader
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    spec = small_spec("oblique", slices=8)
    write_series(tmp_path, spec, mutate=lambda ds, k, t: ds.compress("1.2.840.10008.1.2.5"))  # RLE Lossless
    (series,) = assemble(scan(tmp_path).instances)
    assert series.first.transfer_syntax == "1.2.840.10008.1.2.5"
    assert not reader._native_fast_path_ok(series, np.dtype(np.int16))
    volume = read_series(series, workers=2)
    np.testing.assert_array_equal(volume.array, stored_data(spec)[..., 0])
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(noise=st.binary(min_size=1, max_size=64), at=st.integers(0, 5000), cut=st.booleans())
def test_corrupting_one_file_gives_a_volume_or_a_convert_error(tmp_path_factory: pytest.TempPathFactory,
                                                               noise: bytes, at: int, cut: bool) -> None:
    import shutil as _shutil
    import warnings

    template = tmp_path_factory.getbasetemp() / "corrupt_template"
    if not template.exists():
        make_series(template, slices=4)
    folder = tmp_path_factory.mktemp("corrupt")
    _shutil.copytree(template, folder, dirs_exist_ok=True)
    victim = sorted(folder.iterdir())[1]
    data = bytearray(victim.read_bytes())
    at = 132 + at % (len(data) - 132)
    if cut:
        del data[at:]
    else:
        data[at:at + len(noise)] = noise
    victim.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            volume = convert.load(folder)
        except ConvertError:
            return
    assert volume.array.ndim == 3


def test_gzipped_files_read_like_plain_ones(tmp_path: Path) -> None:
    import gzip

    paths, spec = make_series(tmp_path, "coronal", slices=4)
    for path in paths[:2]:
        with open(path, "rb") as src:
            (path.parent / (path.name + ".gz")).write_bytes(gzip.compress(src.read()))
        path.unlink()
    volume = _read(tmp_path)
    np.testing.assert_array_equal(volume.array, stored_data(spec)[..., 0])
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)


@pytest.mark.parametrize("bits,signed", [(8, False), (32, True)], ids=["uint8", "int32"])
def test_8_and_32_bit_series(tmp_path: Path, bits: int, signed: bool) -> None:
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    rng = np.random.default_rng(bits)
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    info = np.iinfo(dtype)
    data = rng.integers(max(info.min, -(2**31)), min(info.max, 2**31 - 1), size=(24, 32, 5), dtype=np.int64)

    def mutate(ds, k: int, t: int) -> None:
        ds.BitsAllocated = ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = int(signed)
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T.astype(dtype.newbyteorder("<"))).tobytes()

    spec = small_spec(slices=5, rescale_intercept=0.0)
    write_series(tmp_path, spec, mutate=mutate)
    volume = _read(tmp_path)
    assert volume.dtype == dtype
    np.testing.assert_array_equal(volume.array, data)


def test_4d_with_gap_and_tilt_options_keeps_time_points(tmp_path: Path) -> None:
    make_series(tmp_path, times=2, modality="MR", skip=(3,), tilt_deg=8.0)
    volume = _read(tmp_path, allow_gaps=True, tilt_correct=True)
    assert volume.shape[2:] == (10, 2)
    d = volume.direction
    assert abs(d[:, 2] @ d[:, 1]) < 1e-9


def test_oblique_sample_matches_dcm2niix(tmp_path: Path) -> None:
    from convert.sample import write_sample

    dicom = write_sample(tmp_path / "demo", oblique=True)["dicom"]
    (ref_path,) = _dcm2niix(dicom, tmp_path / "ref")
    ours = convert.load(dicom)
    ref_data, ref_affine = _canonical(nib.load(str(ref_path)))
    our_data, our_affine = _canonical(nib.Nifti1Image(ours.scaled(), ours.affine))
    np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3)
    np.testing.assert_array_equal(our_data, ref_data)
    assert ours.meta.units == "HU"


# --------------------------------------------------------------------------- Philips private scaling (issue 12.3)
def _dcm2niix_philips(src: Path, out: Path, precise: bool) -> tuple[nib.Nifti1Image, dict]:
    exe = require_tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-p", "y" if precise else "n", "-z", "n", "-b", "y", "-f", "%s", "-o", str(out),
                           str(src)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (nii,) = sorted(out.glob("*.nii"))
    return nib.load(str(nii)), json.loads(nii.with_suffix(".json").read_text())


def _philips_expected(folder: Path, precise: bool) -> np.ndarray:
    """Real values computed from the files alone, slice by slice: DV = SV*RS+RI, FP = DV/(RS*SS)."""
    import pydicom

    from fixtures.dicom_series import PHILIPS_MR_CREATOR

    datasets = sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda ds: int(ds.InstanceNumber))
    planes = []
    for ds in datasets:
        rs, ri = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        ss = float(ds.private_block(0x2005, PHILIPS_MR_CREATOR)[0x0E].value)
        display = ds.pixel_array.T.astype(np.float64) * rs + ri
        planes.append(display / (rs * ss) if precise else display)
    return np.stack(planes, axis=2)


@pytest.mark.parametrize("choice", ["precise", "display"])
def test_philips_classic_scaling_matches_dcm2niix_p_y_and_p_n(tmp_path: Path, choice: str) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path / "in", scale_slope=0.37, rescale_slope=2.5, rescale_intercept=-3.0)
    precise = choice == "precise"
    ref_img, ref_json = _dcm2niix_philips(tmp_path / "in", tmp_path / "ref", precise)
    ours = _read(tmp_path / "in", philips_scaling=choice)
    ref_data, ref_affine = _canonical(ref_img)
    our_data, our_affine = _canonical(nib.Nifti1Image(ours.scaled(), ours.affine))
    np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3)
    np.testing.assert_allclose(our_data, ref_data, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours.scaled(), _philips_expected(tmp_path / "in", precise), rtol=1e-5, atol=1e-4)
    # stored integers kept, the scaling carried as slope/intercept (float32 in NIfTI), as dcm2niix writes it
    assert ours.dtype == np.int16 and ref_img.get_data_dtype() == np.int16
    assert ours.slope == pytest.approx(float(ref_img.dataobj.slope), rel=1e-6)
    assert ours.intercept == pytest.approx(float(ref_img.dataobj.inter), rel=1e-6, abs=1e-6)
    for key in ("PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope",
                "UsePhilipsFloatNotDisplayScaling"):
        assert ours.meta.acquisition[key] == pytest.approx(ref_json[key], rel=1e-6), key
    assert ours.meta.acquisition["UsePhilipsFloatNotDisplayScaling"] == int(precise)


def test_philips_classic_precise_is_the_default(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path, scale_slope=0.37, rescale_slope=2.5)
    ours = _read(tmp_path)
    assert ours.slope == pytest.approx(1 / 0.37, rel=1e-6)
    assert ours.meta.acquisition["UsePhilipsFloatNotDisplayScaling"] == 1


def test_philips_classic_per_slice_scale_slopes_give_float32_precise_values(tmp_path: Path) -> None:
    """Per-slice RS/RI/SS (Philips DCE/DWI exports): each slice gets its own precise factors.

    dcm2niix -p y applies each slice's display scaling and then the *first* slice's 1/SS to all
    slices (a known limitation: its values are not Philips' FP for slices 2..n); ours follow the
    vendor's formula per slice, so only -p n is compared with dcm2niix here.
    """
    from fixtures.dicom_series import make_philips_series

    kwargs = dict(scale_slope=[0.2, 0.3, 0.4, 0.5, 0.6], rescale_slope=[1.5, 2.0, 2.5, 3.0, 3.5],
                  rescale_intercept=[0.0, 1.0, 2.0, 3.0, 4.0])
    make_philips_series(tmp_path / "in", **kwargs)
    precise = _read(tmp_path / "in")
    assert precise.dtype == np.float32 and (precise.slope, precise.intercept) == (1.0, 0.0)
    np.testing.assert_allclose(precise.array, _philips_expected(tmp_path / "in", True), rtol=1e-6, atol=1e-3)
    display = _read(tmp_path / "in", philips_scaling="display")
    ref_img, _ = _dcm2niix_philips(tmp_path / "in", tmp_path / "ref", precise=False)
    ref_data, ref_affine = _canonical(ref_img)
    our_data, our_affine = _canonical(nib.Nifti1Image(display.scaled(), display.affine))
    np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3)
    np.testing.assert_allclose(our_data, ref_data, rtol=1e-6, atol=1e-3)


def test_philips_scale_slope_found_in_any_private_block(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path, scale_slope=0.5, rescale_slope=2.0, block=0x12)  # (2005,120E), not (2005,100E)
    assert _read(tmp_path).slope == pytest.approx(2.0)


def test_philips_private_tags_ignored_for_other_manufacturers(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path, scale_slope=0.37, rescale_slope=2.5, manufacturer="SIEMENS")
    ours = _read(tmp_path)
    assert ours.slope == pytest.approx(2.5)
    assert "UsePhilipsFloatNotDisplayScaling" not in ours.meta.acquisition


def test_philips_scaling_recorded_in_the_tree_sidecar(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path / "in", scale_slope=0.37, rescale_slope=2.5)
    for choice, flag in (("precise", 1), ("display", 0)):
        report = convert_dicom_tree(tmp_path / "in", tmp_path / choice, philips_scaling=choice)
        assert report.ok, report.failed
        (sidecar,) = [p for p in report.written if p.suffix == ".json"]
        data = json.loads(sidecar.read_text())
        assert data["UsePhilipsFloatNotDisplayScaling"] == flag
        assert data["PhilipsScaleSlope"] == pytest.approx(0.37)
        assert data["PhilipsRescaleSlope"] == 2.5 and data["PhilipsRescaleIntercept"] == 0.0
    with pytest.raises(ConvertError, match="philips_scaling must be one of"):
        convert_dicom_tree(tmp_path / "in", tmp_path / "bad", philips_scaling="float")


def test_philips_scaling_cli_flag_and_old_alias(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path / "in", scale_slope=0.37, rescale_slope=2.5)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "d.nii.gz"),
                                 "--philips-scaling", "display"])
    assert result.exit_code == 0, result.output
    assert nib.load(str(tmp_path / "d.nii.gz")).dataobj.slope == pytest.approx(2.5)
    assert json.loads((tmp_path / "d.json").read_text())["UsePhilipsFloatNotDisplayScaling"] == 0
    for args, name in (([], "p.nii.gz"), (["--philips-precise"], "old.nii.gz")):  # default, and the old flag
        result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / name)] + args)
        assert result.exit_code == 0, result.output
        assert nib.load(str(tmp_path / name)).dataobj.slope == pytest.approx(1 / 0.37, rel=1e-6)
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "x.nii.gz"), "--philips-precise",
                                 "--philips-scaling", "display"])
    assert result.exit_code == 2 and "--philips-scaling display" in result.output
    assert not (tmp_path / "x.nii.gz").exists()


# --------------------------------------------------------------------------- images without a position (issue 12.5)
def test_exam_summary_images_are_written_one_2d_file_each_and_other_series_convert(tmp_path: Path) -> None:
    """Philips "Exam Summary"-like images (no ImagePositionPatient): one 2D file each, with a warning.

    dcm2niix stacks such images into one 3D volume with a "bogus spatial matrix"; ours keeps them
    apart (they are not slices of one volume). Their pixels and pixel sizes agree with dcm2niix's.
    """
    from fixtures.dicom_series import make_unplaced_images

    make_unplaced_images(tmp_path / "in" / "summary", n=3, series_number=99)
    make_series(tmp_path / "in" / "t1", series_number=3, description="T1", modality="MR", rescale_intercept=0.0)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    assert report.ok, report.failed
    images = sorted(p for p in report.written if p.name.startswith("99_") and p.name.endswith(".nii.gz"))
    assert [p.name for p in images] == ["99_Exam_Summary.nii.gz", "99_Exam_Summary_2.nii.gz",
                                        "99_Exam_Summary_3.nii.gz"]
    assert any(p.name == "3_T1.nii.gz" for p in report.written)
    summary = [o for o in report.outcomes if "Exam Summary" in o.label]
    assert len(summary) == 3 and all(any("placement in space is unknown" in w for w in o.warnings) for o in summary)
    exe = require_tool("dcm2niix")
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s", "-o", str(ref_dir), str(tmp_path / "in" / "summary")],
                   check=True, capture_output=True, timeout=120)
    (ref_path,) = ref_dir.glob("*.nii")
    ref = nib.load(str(ref_path))
    ref_slices = [np.asarray(ref.dataobj)[:, ::-1, k] for k in range(ref.shape[2])]  # dcm2niix flips rows
    for path in images:
        img = nib.load(str(path))
        ours = np.asarray(img.dataobj)
        assert ours.shape == (24, 32, 1)
        assert any(np.array_equal(ours[..., 0], s) for s in ref_slices)
        # pixel sizes from PixelSpacing (0.8 between rows, 1.1 between columns), identity axes at the origin
        np.testing.assert_allclose(img.affine, np.diag([-1.1, -0.8, 1.0, 1.0]), atol=1e-6)
        np.testing.assert_allclose(np.abs(np.diag(ref.affine)[:2]), [1.1, 0.8], atol=1e-6)


def test_uih_grid_series_refused_and_the_others_converted(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_uih_grid_series

    make_uih_grid_series(tmp_path / "in" / "dti")
    make_series(tmp_path / "in" / "ct", series_number=4, description="CT")
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    (failed,) = report.failed
    assert "United Imaging (UIH) grid" in failed.error and "not converted" in failed.error
    assert [p.name for p in report.written if p.suffix == ".gz"] == ["4_CT.nii.gz"]
    with pytest.raises(DicomError, match="UIH private tags"):
        convert.load(tmp_path / "in" / "dti")

# --------------------------------------------------------------------------- redaction (convert --anonymize)
def _burned_in_series(folder: Path) -> None:
    from fixtures.dicom_series import small_spec, write_series

    def mutate(ds, k: int, t: int) -> None:
        ds.BurnedInAnnotation = "YES"

    write_series(folder, small_spec(slices=3), mutate=mutate)


def test_redaction_of_an_input_folder_named_in_keeps_the_allow_burned_in_hint(tmp_path: Path,
                                                                               monkeypatch) -> None:
    """The quirk: folder ``in`` was replaced inside the hint, which read ``use --allow-burned-<input folder>``."""
    _burned_in_series(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["convert", "in", "out", "--anonymize"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "--allow-burned-in" in text and "burned-<input" not in text
    assert "allow_burned_in=True" not in text  # CLI spelling only


_COMPONENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1,
                     max_size=12).filter(lambda s: s not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(folder=_COMPONENT, parent=_COMPONENT, name=_COMPONENT)
def test_redaction_replaces_whole_path_components_only(folder: str, parent: str, name: str) -> None:
    from types import SimpleNamespace

    from convert.batch.report import redact_series_paths

    src = Path(parent) / folder
    path = src / name
    bare = name if name.isdigit() and len(name) <= 3 else "<input file>"  # short numbers: counts, not names
    fixed = ("refused: burned-in text; use --allow-burned-in to let it through, flagged; "
             "--overwrite replaces it; 1 of 2 series failed")
    # a file named like a word of the message ("to", "it") is redacted there too: over-redaction is the safe side
    assume(not {folder, parent, name} & set(re.split(r"[\s;,]+", fixed)))
    text = f"{path}: {fixed} (in {src}; see '{name}', {src}/{name}.)"
    out = redact_series_paths(text, SimpleNamespace(paths=[path]), src)  # type: ignore[arg-type]
    assert fixed in out  # nothing inside ordinary words or flags is touched
    for part in (str(path), str(src)):
        assert part not in out.replace("<input file>", "\0").replace("<input folder>", "\0") or part in fixed
    assert out.startswith("<input file>: ")
    assert out.endswith(f"(in <input folder>; see '{bare}', <input file>.)")


# --------------------------------------------------------------------------- dcm2niix splits and file names
#: dcm2niix resolves a name conflict with a letter ("7_DWIa"); ours is the documented "_2" (docs/dicom.md).
_CONFLICT_NAMES = {"7_DWIa": "7_DWI_2"}


def _split_outputs(tmp_path: Path, make) -> tuple[dict[str, Path], dict[str, Path]]:
    """(ours, dcm2niix's) NIfTI files by stem, both named ``<SeriesNumber>_<description>`` + postfixes."""
    make(tmp_path / "in")
    exe = require_tool("dcm2niix")
    (tmp_path / "ref").mkdir()
    proc = subprocess.run([exe, "-z", "y", "-b", "n", "-f", "%s_%p", "-o", str(tmp_path / "ref"), str(tmp_path / "in")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "ours")
    assert report.ok, [o.error for o in report.failed]
    ours = {p.name[: -len(".nii.gz")]: p for p in report.written if p.name.endswith(".nii.gz")}
    refs = {_CONFLICT_NAMES.get(p.name[: -len(".nii.gz")], p.name[: -len(".nii.gz")]): p
            for p in (tmp_path / "ref").glob("*.nii.gz")}
    return ours, refs


def _assert_same_files_in_world_space(ours: dict[str, Path], refs: dict[str, Path]) -> None:
    assert sorted(ours) == sorted(refs)
    for stem, path in ours.items():
        our_data, our_affine = _canonical(nib.load(str(path)))
        ref_data, ref_affine = _canonical(nib.load(str(refs[stem])))
        assert our_data.shape == ref_data.shape, stem
        np.testing.assert_allclose(our_affine, ref_affine, atol=1e-3, err_msg=stem)
        np.testing.assert_array_equal(our_data, ref_data, err_msg=stem)


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_split_series_file_names_and_volumes_match_dcm2niix(tmp_path: Path, case: str) -> None:
    """Echoes, magnitude/phase, real/imaginary: the same files (names with dcm2niix's postfixes), the same voxels."""
    ours, refs = _split_outputs(tmp_path, lambda folder: make_split_series(folder, case))
    _assert_same_files_in_world_space(ours, refs)
    assert len(ours) == len(SPLIT_CASES[case])


@pytest.mark.parametrize("kind", PHILIPS_DWI_KINDS)
def test_philips_dwi_with_derived_volume_matches_dcm2niix(tmp_path: Path, kind: str) -> None:
    """The DWI without its derived isotropic/ADC volume; dcm2niix's ``_ADC`` file (every volume) or a series of its own."""
    ours, refs = _split_outputs(tmp_path, lambda folder: make_philips_dwi(folder, kind))
    _assert_same_files_in_world_space(ours, refs)
    dwi = nib.load(str(ours["7_DWI"]))
    assert dwi.shape == (24, 32, 4, 3)  # b0 + two directions: the derived volume is not stacked with them
    if kind.startswith("isotropic"):
        assert sorted(ours) == ["7_DWI", "7_DWI_ADC"] and nib.load(str(ours["7_DWI_ADC"])).shape[3] == 4
        # as dcm2niix: gradient files for the DWI only (the derived volume has no direction to give)
        assert not (tmp_path / "ref" / "7_DWI_ADC.bval").exists()
        assert sorted(p.name for p in (tmp_path / "ours").glob("*.bv*")) == ["7_DWI.bval", "7_DWI.bvec"]
    else:
        assert sorted(ours) == ["7_DWI", "7_DWI_2"] and nib.load(str(ours["7_DWI_2"])).ndim == 3


def test_split_postfixes_follow_a_custom_name_template(tmp_path: Path) -> None:
    make_split_series(tmp_path / "in", "two-echoes-magnitude-phase")
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", name="sub-01_{SeriesNumber}", sidecar=False)
    assert sorted(p.name for p in report.written) == [
        "sub-01_5_e1.nii.gz", "sub-01_5_e1_ph.nii.gz", "sub-01_5_e2.nii.gz", "sub-01_5_e2_ph.nii.gz"]


# --------------------------------------------------------------------------- lazy, streamed reading (issue 13.1)
def _eager(volume: Volume) -> np.ndarray:
    return volume.voxels()


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
@pytest.mark.parametrize("times", [1, 3])
def test_plain_series_reads_lazily_and_streams_the_same_file(tmp_path: Path, orientation: str, times: int) -> None:
    """A plain series comes back as a lazy volume (nothing decoded yet); its .nii/.nii.gz are the bytes an
    in-memory volume gives, and its voxels are pydicom's pixel_array, transposed, slice by slice."""
    import pydicom

    from convert.formats import get_format

    make_series(tmp_path / "in", orientation, slices=5, times=times, rows=12, columns=10)
    volume = read_single(tmp_path / "in")[0]
    assert volume.is_lazy
    eager = volume.materialized()
    assert not eager.is_lazy and eager.warnings == volume.warnings
    series = assemble(scan(tmp_path / "in").instances)[0]
    for k, column in enumerate(series.grid):
        for t, inst in enumerate(column):
            expected = pydicom.dcmread(inst.path).pixel_array.T
            got = eager.array[:, :, k] if times == 1 else eager.array[:, :, k, t]
            np.testing.assert_array_equal(got, expected)
    for name in ("nifti", "nifti-gz"):
        fmt = get_format(name)
        ext = fmt.extensions[0]
        fmt.write(volume, tmp_path / f"lazy{ext}")
        fmt.write(eager, tmp_path / f"eager{ext}")
        lazy_img, eager_img = nib.load(str(tmp_path / f"lazy{ext}")), nib.load(str(tmp_path / f"eager{ext}"))
        np.testing.assert_array_equal(np.asanyarray(lazy_img.dataobj), np.asanyarray(eager_img.dataobj))
        np.testing.assert_allclose(lazy_img.affine, eager_img.affine, atol=1e-6)
    assert (tmp_path / "lazy.nii").read_bytes() == (tmp_path / "eager.nii").read_bytes()


def test_native_slices_are_copied_from_their_byte_spans_and_masked_ones_computed(tmp_path: Path) -> None:
    make_series(tmp_path / "full", slices=3, rows=8, columns=6)
    make_series(tmp_path / "12bit", slices=3, rows=8, columns=6, bits_stored=12)
    full, masked = read_single(tmp_path / "full")[0], read_single(tmp_path / "12bit")[0]
    assert full.is_lazy and masked.is_lazy
    spans = [full.array.byte_span(k) for k in range(3)]
    assert all(s is not None and s.length == 8 * 6 * 2 for s in spans)
    for span, k in zip(spans, range(3)):  # the span's bytes are the slice's output bytes
        raw = span.path.read_bytes()[span.offset:span.offset + span.length]
        assert raw == np.ascontiguousarray(full.voxels()[:, :, k].T).tobytes()
    assert all(masked.array.byte_span(k) is None for k in range(3))  # 12 of 16 bits: values are computed
    save(masked, tmp_path / "m.nii")
    np.testing.assert_array_equal(np.asanyarray(nib.load(str(tmp_path / "m.nii")).dataobj), masked.scaled())


def test_a_truncated_slice_fails_at_read_time_not_halfway_through_writing(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path / "in", slices=4, rows=16, columns=16)
    truncate_file(paths[2], paths[2].stat().st_size - 100)
    with pytest.raises(CorruptFileError, match="truncated"):
        read_single(tmp_path / "in")
    assert not (tmp_path / "out.nii").exists()


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"])
def test_implicit_and_compressed_series_read_lazily_and_equal_pydicom(tmp_path: Path, syntax: str) -> None:
    import pydicom
    from pydicom.uid import UID

    paths, _ = make_series(tmp_path / "src", slices=3, rows=64, columns=64, modality="MR")
    (tmp_path / "in").mkdir()
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        if syntax == "1.2.840.10008.1.2":
            ds.file_meta.TransferSyntaxUID = syntax
            ds.save_as(tmp_path / "in" / f"{n}.dcm", implicit_vr=True, little_endian=True, enforce_file_format=True)
        else:
            ds.compress(UID(syntax))
            ds.save_as(tmp_path / "in" / f"{n}.dcm", enforce_file_format=True)
    volume = read_single(tmp_path / "in")[0]
    assert volume.is_lazy
    series = assemble(scan(tmp_path / "in").instances)[0]
    for k, column in enumerate(series.grid):
        np.testing.assert_array_equal(volume.voxels()[:, :, k], pydicom.dcmread(column[0].path).pixel_array.T)
    reference = read_single(tmp_path / "src")[0]
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-6)


def test_series_that_need_the_whole_array_are_read_eagerly(tmp_path: Path) -> None:
    make_series(tmp_path / "slopes", slices=3, rows=8, columns=8, rescale_slope=[1.0, 2.0, 3.0])
    make_series(tmp_path / "tilt", slices=4, rows=8, columns=8, tilt_deg=12.0)
    assert not read_single(tmp_path / "slopes")[0].is_lazy  # per-slice rescale is applied to all slices
    assert not read_single(tmp_path / "tilt", tilt_correct=True)[0].is_lazy
    assert read_single(tmp_path / "tilt")[0].is_lazy  # the tilt kept as a shear: nothing to resample


def test_pixel_data_length_beyond_the_file_is_refused(tmp_path):
    """A native pixel data element claiming four times the file's size (its pixels present): the file
    is refused by name in a folder conversion, never written as if it were fine."""
    from fixtures.fuzz_corpus import dicom_elements, set_length

    paths, _ = make_series(tmp_path / "src", slices=4)
    data = paths[1].read_bytes()
    pixels = next(e for e in dicom_elements(data)[0] if e.tag == 0x7FE00010)
    paths[1].write_bytes(set_length(data, pixels, len(data) * 4))
    report = convert_dicom_tree(tmp_path / "src", tmp_path / "out")
    failed = [o for o in report.outcomes if not o.ok]
    assert failed and paths[1].name in (failed[0].error or "")
    assert "claims" in failed[0].error


def test_info_json_is_strict_json_for_every_series(tmp_path):
    """A folder whose series has unusable geometry: `info --json` is still valid strict JSON."""
    paths, _ = make_series(tmp_path / "src", slices=3, extra={"PixelSpacing": [0, 0]})
    result = CliRunner().invoke(app, ["info", "--json", str(tmp_path / "src")])
    assert result.exit_code == 0

    def refuse(constant):
        raise ValueError(constant)

    info = json.loads(result.stdout, parse_constant=refuse)
    assert info["series"][0]["problem"] and "PixelSpacing" in info["series"][0]["problem"]
