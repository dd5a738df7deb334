"""Diffusion gradient tables (convert/dicom/diffusion.py): every vendor encoding, every output mode.

The reference is dcm2niix: on generated series (fixtures.dicom_series.make_dwi_series, one
encoding per vendor) its ``.bval`` must equal ours and its ``.bvec`` must point where ours
points. The documented convention: both files are FSL bvecs in their own image's voxel
frame (``i`` negated when det(affine) > 0) and dcm2niix flips rows, so each file is mapped
back to the world through its own image's affine before comparing; a gradient's sign is
arbitrary (and dcm2niix's differs between vendors), so vectors are equal up to sign.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset

import convert
from tests.conftest import CONFORMANCE, require_tool
from convert.dicom.diffusion import (
    GE_BVALUE_MODULUS,
    VolumeGradient,
    logical_gradient_lps,
    looks_like_diffusion,
    series_table,
    volume_gradient,
)
from fixtures.dicom_series import DWI_ENCODINGS, make_dwi_series


# --------------------------------------------------------------------------- helpers
def bvecs_in_world(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (3, n) of an image with ``affine`` -> unit RAS+ directions (3, n): undoes the convention."""
    vox = np.array(bvecs, dtype=float).reshape(3, -1)
    if np.linalg.det(affine[:3, :3]) > 0:
        vox[0] *= -1
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return axes @ vox


def assert_same_directions(ours: np.ndarray, our_affine: np.ndarray, ref: np.ndarray, ref_affine: np.ndarray,
                           atol: float = 1e-3) -> None:
    """Every volume's gradient points the same way (up to sign) in the world; zero vectors stay zero."""
    a, b = bvecs_in_world(ours, our_affine), bvecs_in_world(ref, ref_affine)
    assert a.shape == b.shape
    for t in range(a.shape[1]):
        same = np.allclose(a[:, t], b[:, t], atol=atol) or np.allclose(a[:, t], -b[:, t], atol=atol)
        assert same, f"volume {t}: ours {a[:, t].round(4)} vs dcm2niix {b[:, t].round(4)}"


def dcm2niix(src: Path, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run dcm2niix on ``src``; (bvals, bvecs, affine) of its one output."""
    exe = require_tool("dcm2niix")
    out.mkdir(parents=True)
    subprocess.run([exe, "-z", "n", "-f", "%s", "-o", str(out), str(src)], capture_output=True, timeout=120,
                   check=True)
    bval, = out.glob("*.bval")
    bvec, = out.glob("*.bvec")
    nii, = out.glob("*.nii")
    return np.loadtxt(bval), np.loadtxt(bvec), nib.load(str(nii)).affine


def ours(stem: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bvals, bvecs, affine) of our ``stem.nii.gz`` + ``stem.bval``/``stem.bvec``."""
    return (np.loadtxt(stem.with_name(stem.name + ".bval")), np.loadtxt(stem.with_name(stem.name + ".bvec")),
            nib.load(str(stem.with_name(stem.name + ".nii.gz"))).affine)


# --------------------------------------------------------------------------- against dcm2niix, per vendor
CASES = [(e, o, "COL") for e in DWI_ENCODINGS for o in ("axial", "sagittal", "coronal", "oblique")] + [
    (e, o, "ROW") for e in ("ge", "canon", "standard") for o in ("axial", "sagittal", "coronal", "oblique")]


@pytest.mark.parametrize("encoding,orientation,phase", CASES)
def test_generated_dwi_table_matches_dcm2niix(tmp_path: Path, encoding: str, orientation: str, phase: str) -> None:
    _, spec, bvals, _ = make_dwi_series(tmp_path / "in", encoding, orientation, phase_axis=phase,
                                        descending=orientation == "oblique")
    ref_b, ref_v, ref_affine = dcm2niix(tmp_path / "in", tmp_path / "ref")
    written = convert.convert(tmp_path / "in", tmp_path / "dwi.nii.gz")
    assert [p.name for p in written] == ["dwi.nii.gz", "dwi.bval", "dwi.bvec", "dwi.json"]
    assert written.warnings == []
    our_b, our_v, our_affine = ours(tmp_path / "dwi")
    np.testing.assert_allclose(our_b, ref_b)
    np.testing.assert_allclose(our_b, bvals)
    assert_same_directions(our_v, our_affine, ref_v, ref_affine)
    np.testing.assert_allclose(np.linalg.norm(our_v, axis=0), [0.0 if b == 0 else 1.0 for b in bvals], atol=1e-5)


def test_bvecs_follow_our_voxel_frame_not_dcm2niix_rows(tmp_path: Path) -> None:
    """dcm2niix flips rows (j), we do not; FSL's rule then also flips i for us (det > 0), not for it.

    Axial: our file is dcm2niix's with i and j negated, a rotation by 180 degrees about k: every
    gradient is the same line through the origin, the numbers are not the same.
    """
    make_dwi_series(tmp_path / "in", "standard", "axial", vectors=((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                                                                   (0.6, 0.8, 0)))
    _, ref_v, ref_affine = dcm2niix(tmp_path / "in", tmp_path / "ref")
    convert.convert(tmp_path / "in", tmp_path / "dwi.nii.gz")
    _, our_v, our_affine = ours(tmp_path / "dwi")
    assert np.linalg.det(our_affine[:3, :3]) > 0 > np.linalg.det(ref_affine[:3, :3])
    np.testing.assert_allclose(ref_v[:, 1:], [[1, 0, 0, 0.6], [0, -1, 0, -0.8], [0, 0, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(our_v[:, 1:], [[-1, 0, 0, -0.6], [0, 1, 0, 0.8], [0, 0, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(our_v, np.diag([-1, -1, 1]) @ ref_v, atol=1e-6)


def test_bvecs_of_a_regridded_volume_follow_its_affine(tmp_path: Path) -> None:
    """Oblique, with a reference gradient along the slice normal: it must come out as pure +-k."""
    from convert.sample import ORIENTATIONS

    row, col = (np.asarray(v) for v in ORIENTATIONS["oblique"])
    normal = np.cross(row, col)
    make_dwi_series(tmp_path / "in", "standard", "oblique", bvals=(0.0, 1000.0, 1000.0),
                    vectors=((0, 0, 0), tuple(normal), tuple(row)))
    convert.convert(tmp_path / "in", tmp_path / "dwi.nii.gz")
    _, our_v, _ = ours(tmp_path / "dwi")
    np.testing.assert_allclose(np.abs(our_v[:, 1]), [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.abs(our_v[:, 2]), [1, 0, 0], atol=1e-6)


def test_philips_trace_volume_is_split_out_and_the_dwi_keeps_its_table_like_dcm2niix(tmp_path: Path) -> None:
    """Philips classic DWI with a trace image flagged "I": dcm2niix writes the DWI with a table and
    an ``_ADC`` file without one (the split rule, convert.dicom.series); so do we."""
    make_dwi_series(tmp_path / "in", "philips", "oblique", bvals=(0, 1000, 1000, 1000), isotropic=(3,))
    exe = require_tool("dcm2niix")
    (tmp_path / "ref").mkdir()
    subprocess.run([exe, "-z", "n", "-f", "%s", "-o", str(tmp_path / "ref"), str(tmp_path / "in")],
                   capture_output=True, timeout=120, check=True)
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["1.bval", "1.bvec", "1.json", "1.nii",
                                                                   "1_ADC.nii"]
    report = convert.convert(tmp_path / "in", tmp_path / "out")
    assert report.ok and [o.warnings for o in report.outcomes] == [[], []]
    assert [[p.name for p in o.written] for o in report.outcomes] == [
        ["1_DWI_philips.nii.gz", "1_DWI_philips.bval", "1_DWI_philips.bvec", "1_DWI_philips.json"],
        ["1_DWI_philips_ADC.nii.gz", "1_DWI_philips_ADC.json"]]
    our_b, our_v, our_affine = ours(tmp_path / "out" / "1_DWI_philips")
    np.testing.assert_allclose(our_b, np.loadtxt(tmp_path / "ref" / "1.bval"))
    assert_same_directions(our_v, our_affine, np.loadtxt(tmp_path / "ref" / "1.bvec"),
                           nib.load(str(tmp_path / "ref" / "1.nii")).affine)


def test_philips_trace_flag_gives_b_without_direction_in_the_table() -> None:
    from convert.dicom.diffusion import series_table

    table, reason = series_table([VolumeGradient(0.0, None, source="philips"),
                                  VolumeGradient(1000.0, (1.0, 0.0, 0.0), source="philips"),
                                  VolumeGradient(1000.0, None, isotropic=True, source="philips")])
    assert reason is None and table is not None
    assert table.bvals == [0.0, 1000.0, 1000.0] and table.gradients_lps[2] == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- every output mode
def _outputs(folder: Path) -> set[str]:
    """The output files of a folder (the run's record in ``.medconvert/`` and its report left out)."""
    return {p.name for p in folder.iterdir() if p.name not in (".medconvert", "report.json", "report.html")}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert", *args], capture_output=True, text=True, timeout=120)


def test_cli_one_series_to_one_file_writes_bval_bvec(tmp_path: Path) -> None:
    _, _, bvals, _ = make_dwi_series(tmp_path / "in", "ge", "oblique")
    (tmp_path / "out").mkdir()
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "out" / "dwi.nii.gz"))
    assert done.returncode == 0, done.stderr
    assert _outputs(tmp_path / "out") == {"dwi.nii.gz", "dwi.json", "dwi.bval", "dwi.bvec"}
    expected = [f"wrote {tmp_path / 'out' / n}" for n in ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "dwi.json")]
    assert " ".join(expected).split() == done.stdout.split()  # rich may wrap a long line
    np.testing.assert_allclose(np.loadtxt(tmp_path / "out" / "dwi.bval"), bvals)


def test_cli_no_sidecar_still_writes_the_gradient_table(tmp_path: Path) -> None:
    make_dwi_series(tmp_path / "in", "siemens", "axial")
    (tmp_path / "out").mkdir()
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "out" / "dwi.nii"), "--no-sidecar")
    assert done.returncode == 0, done.stderr
    assert _outputs(tmp_path / "out") == {"dwi.nii", "dwi.bval", "dwi.bvec"}


def test_cli_folder_to_folder_writes_bval_bvec(tmp_path: Path) -> None:
    make_dwi_series(tmp_path / "in" / "a", "philips", "sagittal", series_number=4, description="DTI")
    make_dwi_series(tmp_path / "in" / "b", "standard", "axial", series_number=5, description="plain",
                    bvals=(0.0,), seed=3)  # one b = 0 volume: no table, and not worth a warning
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert _outputs(tmp_path / "out") == {"4_DTI.nii.gz", "4_DTI.json", "4_DTI.bval", "4_DTI.bvec",
                                          "5_plain.nii.gz", "5_plain.json"}
    assert done.stderr == ""


def test_api_single_file_writes_sidecar_and_gradient_files(tmp_path: Path) -> None:
    _, _, bvals, _ = make_dwi_series(tmp_path / "in", "canon", "coronal")
    written = convert.convert(tmp_path / "in", tmp_path / "out.nii")
    assert isinstance(written, list) and written == [tmp_path / n for n in
                                                     ("out.nii", "out.bval", "out.bvec", "out.json")]
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["Manufacturer"] == "CANON_MEC" and "PatientName" not in sidecar
    np.testing.assert_allclose(np.loadtxt(tmp_path / "out.bval"), bvals)


def test_api_folder_converts_every_series_like_the_cli(tmp_path: Path) -> None:
    make_dwi_series(tmp_path / "in" / "a", "ge", "axial", series_number=8, description="DWI")
    make_dwi_series(tmp_path / "in" / "b", "standard", "axial", series_number=9, description="DWI",
                    bvals=(0.0, 1000.0), vectors=((0, 0, 0), (1, 0, 0)), seed=4)
    report = convert.convert(tmp_path / "in", tmp_path / "api")
    assert report.ok and [o.warnings for o in report.outcomes] == [[], []]
    assert {p.name for p in report.written} == {f"{s}_DWI.{x}" for s in (8, 9) for x in
                                                 ("nii.gz", "json", "bval", "bvec")}
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    for name in _outputs(tmp_path / "cli"):  # same files, same bytes (JSON and tables)
        if not name.endswith(".nii.gz"):
            assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert _outputs(tmp_path / "cli") == _outputs(tmp_path / "api")


def test_api_folder_job_needs_no_trailing_slash_or_existing_folder(tmp_path: Path) -> None:
    make_dwi_series(tmp_path / "in", "standard", "axial")
    report = convert.convert(str(tmp_path / "in"), str(tmp_path / "new") + "/", name="{Modality}")
    assert [p.name for p in report.written] == ["MR.nii.gz", "MR.bval", "MR.bvec", "MR.json"]


def test_non_nifti_output_of_a_dwi_series_warns_instead_of_dropping_the_table(tmp_path: Path) -> None:
    pytest.importorskip("nrrd")
    make_dwi_series(tmp_path / "in", "standard", "axial")
    written = convert.convert(tmp_path / "in", tmp_path / "dwi.nrrd")
    assert [p.name for p in written] == ["dwi.nrrd"]
    assert len(written.warnings) == 1 and ".bval/.bvec go beside NIfTI outputs" in written.warnings[0]


# --------------------------------------------------------------------------- warnings, never silence
def _strip_b(folder: Path, keep_image_type: bool = True) -> None:
    import pydicom

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        for keyword in ("DiffusionBValue", "DiffusionGradientOrientation", "DiffusionDirectionality"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(path)


def test_diffusion_looking_series_without_b_values_warns_in_the_result_and_on_the_cli(tmp_path: Path) -> None:
    make_dwi_series(tmp_path / "in", "standard", "axial")
    _strip_b(tmp_path / "in")  # ImageType DIFFUSION and SequenceName ep_b... are left
    written = convert.convert(tmp_path / "in", tmp_path / "api.nii.gz")
    assert [p.name for p in written] == ["api.nii.gz", "api.json"]
    assert written.warnings == ["no .bval/.bvec written: looks like diffusion (DIFFUSION in ImageType) but no "
                                "volume carries a b-value"]
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "cli.nii.gz"))
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["warning: " + written.warnings[0]]
    done = run_cli("convert", str(tmp_path / "in"), str(tmp_path / "tree"))
    assert done.returncode == 0
    assert len(done.stderr.splitlines()) == 1 and done.stderr.rstrip().endswith(written.warnings[0])
    report = convert.convert(tmp_path / "in", tmp_path / "tree2")
    assert report.outcomes[0].warnings == written.warnings


def test_b_value_without_direction_warns_and_writes_no_table(tmp_path: Path) -> None:
    import pydicom

    make_dwi_series(tmp_path / "in", "standard", "axial")
    for path in (tmp_path / "in").iterdir():
        ds = pydicom.dcmread(path)
        if "DiffusionGradientOrientation" in ds and ds.DiffusionBValue == 2000:
            del ds.DiffusionGradientOrientation
            ds.DiffusionDirectionality = "DIRECTIONAL"
            ds.save_as(path)
    written = convert.convert(tmp_path / "in", tmp_path / "dwi.nii.gz")
    assert [p.name for p in written] == ["dwi.nii.gz", "dwi.json"]
    assert written.warnings == ["no .bval/.bvec written: volume 4 has b = 2000 s/mm^2 but no gradient direction"]


def test_plain_4d_mr_gets_neither_table_nor_warning(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_series

    make_series(tmp_path / "in", times=3, modality="MR")
    written = convert.convert(tmp_path / "in", tmp_path / "bold.nii.gz")
    assert [p.name for p in written] == ["bold.nii.gz", "bold.json"] and written.warnings == []


# --------------------------------------------------------------------------- header rules (units)
def _header(manufacturer: str = "", **keywords: object) -> Dataset:
    ds = Dataset()
    if manufacturer:
        ds.Manufacturer = manufacturer
    for key, value in keywords.items():
        setattr(ds, key, value)
    return ds


def test_ge_b_value_large_offset_and_short_vector_scaling() -> None:
    ds = _header("GE MEDICAL SYSTEMS", ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PatientPosition="HFS",
                 InPlanePhaseEncodingDirection="COL")
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", ["1000001500", "8", "0", "0"])
    acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    for offset, value in zip((0xBB, 0xBC, 0xBD), ("0.5", "0", "0")):
        acq.add_new(offset, "DS", value)
    gradient = volume_gradient(ds)
    assert gradient.bvalue == 1500 and gradient.frame == "logical" and gradient.source == "ge"
    assert 1000001500 % GE_BVALUE_MODULUS == 1500
    table, reason = series_table([VolumeGradient(0.0, None, "logical", source="ge"), gradient], ds)
    assert reason is None and table is not None
    assert table.bvals == [0.0, 375.0]  # b scaled by |g|^2 = 0.25 (dcm2niix issue 163)
    np.testing.assert_allclose(np.abs(table.gradients_lps[1]), [1, 0, 0])


def test_ge_table_needs_head_first_supine() -> None:
    ds = _header("GE MEDICAL SYSTEMS", ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PatientPosition="FFS",
                 InPlanePhaseEncodingDirection="COL")
    grads = [VolumeGradient(0.0, None, "logical", source="ge"), VolumeGradient(1000.0, (1, 0, 0), "logical",
                                                                                source="ge")]
    table, reason = series_table(grads, ds)
    assert table is None and "head-first supine" in str(reason) and "FFS" in str(reason)


def test_missing_b_value_in_a_dwi_series_is_b0_but_all_zero_is_no_table() -> None:
    table, reason = series_table([VolumeGradient(None, None), VolumeGradient(1000.0, (0, 0, 2.0))])
    assert reason is None and table is not None
    assert table.bvals == [0.0, 1000.0] and table.gradients_lps == [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert series_table([VolumeGradient(None, None), VolumeGradient(0.0, None)]) == (None, None)  # e.g. XA fMRI
    assert series_table([VolumeGradient(None, None)] * 2) == (None, None)


def test_siemens_private_elements_and_philips_flag() -> None:
    ds = _header("SIEMENS")
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "700")
    block.add_new(0x0E, "FD", [0.0, 0.6, 0.8])
    assert volume_gradient(ds) == VolumeGradient(700.0, (0.0, 0.6, 0.8), "lps", False, "siemens")
    ph = _header("Philips Medical Systems")
    ph.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", 1000.0)
    ph.private_block(0x2001, "Philips Imaging DD 001").add_new(0x04, "CS", "I")
    got = volume_gradient(ph)
    assert got.bvalue == 1000.0 and got.isotropic and got.vector is None


def test_standard_elements_inside_an_mr_diffusion_sequence_item() -> None:
    from pydicom.sequence import Sequence

    item = _header(DiffusionBValue=800.0, DiffusionDirectionality="DIRECTIONAL")
    item.DiffusionGradientDirectionSequence = Sequence([_header(DiffusionGradientOrientation=[0.0, 1.0, 0.0])])
    ds = _header("SIEMENS")
    ds.MRDiffusionSequence = Sequence([item])
    assert volume_gradient(ds) == VolumeGradient(800.0, (0.0, 1.0, 0.0), "lps", False, "standard")


def test_looks_like_diffusion_signs() -> None:
    assert looks_like_diffusion(_header(ImageType=["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"])) == \
        "DIFFUSION in ImageType"
    assert looks_like_diffusion(_header(SequenceName="*ep_b1000#3")) == "sequence name *ep_b1000#3"
    assert looks_like_diffusion(_header(SequenceName="*epfid2d1_64")) is None
    assert looks_like_diffusion(_header(DiffusionBValue=0.0)) == "b-values present"


@pytest.mark.parametrize("plane,orientation", [("axial", [1, 0, 0, 0, 1, 0]), ("coronal", [1, 0, 0, 0, 0, -1]),
                                               ("sagittal", [0, 1, 0, 0, 0, -1])])
def test_logical_frame_is_a_rotation_of_the_image_axes(plane: str, orientation: list[float]) -> None:
    """Each logical axis maps to +-one image axis (row, column or normal), never a mix."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    axes = [row, col, np.cross(row, col)]
    for phase in ("COL", "ROW"):
        images = [logical_gradient_lps(e, orientation, phase) for e in np.eye(3)]
        for image in images:
            assert max(abs(float(np.dot(image, a))) for a in axes) == pytest.approx(1.0)
        assert abs(np.linalg.det(np.array(images))) == pytest.approx(1.0)


# --------------------------------------------------------------------------- real scanner data
@pytest.mark.conformance
def test_every_conformance_series_gets_a_table_exactly_when_dcm2niix_writes_one(tmp_path: Path) -> None:
    """Every dcm_qa series: we write .bval/.bvec iff dcm2niix did (and then the same table), and
    no non-diffusion series draws a diffusion warning."""
    from tests.test_conformance import _parse

    datasets = sorted(p.parent for p in CONFORMANCE.glob("*/ref-dcm2niix")) if CONFORMANCE.is_dir() else []
    if not datasets:
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    compared = 0
    for dataset in datasets:
        refs = sorted((dataset / "ref-dcm2niix").glob("*.nii.gz"))
        report = convert.convert(dataset / "In", tmp_path / dataset.name, name="{SeriesNumber}_{Index}",
                                 sidecar=False)
        ours_by_series: dict[int, list[Path]] = {}
        for outcome in report.outcomes:
            assert not any("diffusion" in w or ".bval" in w for w in outcome.warnings), outcome.warnings
            for path in outcome.written:
                if path.suffix == ".bval":
                    ours_by_series.setdefault(int(path.name.split(".")[0].split("_")[0]), []).append(path)
        for ref in refs:
            _, number, _, _, tilt = _parse(ref.name[: -len(".nii.gz")])
            ref_bval = ref.with_name(ref.name[: -len(".nii.gz")] + ".bval")
            if tilt:
                continue
            compared += 1
            if not ref_bval.exists():
                assert number not in ours_by_series, f"{dataset.name} series {number}: we wrote a table"
                continue
            assert number in ours_by_series, f"{dataset.name} series {number}: dcm2niix wrote a table, we did not"
            ref_bvec = ref_bval.with_suffix(".bvec")
            our_bval = ours_by_series[number][0]
            np.testing.assert_allclose(np.loadtxt(our_bval), np.loadtxt(ref_bval), atol=0.5)
            assert_same_directions(np.loadtxt(our_bval.with_suffix(".bvec")),
                                   nib.load(str(our_bval.with_name(our_bval.stem + ".nii.gz"))).affine,
                                   np.loadtxt(ref_bvec), nib.load(str(ref)).affine)
    assert compared > 0


# --------------------------------------------------------------------------- enhanced (multi-frame) files
def _enhanced_dwi(folder: Path, manufacturer: str, bvals: list[float], gradients: np.ndarray, *,
                  b0_without_value: bool) -> Path:
    """An enhanced MR DWI file: MRDiffusionSequence per frame (Philips / Siemens XA style)."""
    import pydicom
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    from tests.conftest import rotation
    from tests.test_multiframe import _item, make_enhanced

    folder.mkdir(parents=True)
    path, _ = make_enhanced(folder / "dwi.dcm", rows=24, cols=20, n_slices=4, n_times=len(bvals), echoes=(80.0,),
                            rotation_matrix=rotation(0.3, -0.2, 0.45))
    ds = pydicom.dcmread(path)
    ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber, ds.PatientPosition = manufacturer, 1, 1, "HFS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    for item in ds.PerFrameFunctionalGroupsSequence:
        t = int(item.FrameContentSequence[0].TemporalPositionIndex) - 1
        diffusion = _item(DiffusionDirectionality="DIRECTIONAL" if bvals[t] else "NONE")
        if bvals[t] or not b0_without_value:
            diffusion.DiffusionBValue = float(bvals[t])
        if bvals[t]:
            diffusion.DiffusionGradientDirectionSequence = Sequence(
                [_item(DiffusionGradientOrientation=[float(v) for v in gradients[t]])])
        item.MRDiffusionSequence = Sequence([diffusion])
    ds.save_as(path)
    return path


def test_philips_enhanced_dwi_table_matches_dcm2niix(tmp_path: Path) -> None:
    # (Philips always stores b = 0; frames without a b-value are covered by the XA test below)
    rng = np.random.default_rng(8)
    gradients = rng.normal(size=(5, 3))
    gradients /= np.linalg.norm(gradients, axis=1)[:, None]
    bvals = [0.0, 1000.0, 0.0, 2000.0, 1000.0]
    _enhanced_dwi(tmp_path / "in", "Philips", bvals, gradients, b0_without_value=False)
    ref_b, ref_v, ref_affine = dcm2niix(tmp_path / "in", tmp_path / "ref")
    written = convert.convert(tmp_path / "in", tmp_path / "dwi.nii.gz")
    assert [p.name for p in written] == ["dwi.nii.gz", "dwi.bval", "dwi.bvec", "dwi.json"], written.warnings
    our_b, our_v, our_affine = ours(tmp_path / "dwi")
    np.testing.assert_allclose(our_b, ref_b)
    np.testing.assert_allclose(our_b, bvals)
    assert_same_directions(our_v, our_affine, ref_v, ref_affine)


@pytest.mark.parametrize("b0_without_value", [False, True])
def test_siemens_xa_enhanced_dwi_bvecs_point_along_the_dicom_gradients(tmp_path: Path,
                                                                       b0_without_value: bool) -> None:
    """Siemens XA style frames (dcm2niix writes no table for this synthetic file: checked against the truth)."""
    rng = np.random.default_rng(9)
    gradients = rng.normal(size=(4, 3))
    gradients /= np.linalg.norm(gradients, axis=1)[:, None]
    bvals = [0.0, 1000.0, 3000.0, 1000.0]
    _enhanced_dwi(tmp_path / "in", "SIEMENS", bvals, gradients, b0_without_value=b0_without_value)
    report = convert.convert(tmp_path / "in", tmp_path / "out")
    assert report.ok and report.outcomes[0].warnings == []
    bval, = (tmp_path / "out").glob("*.bval")
    our_b, our_v, our_affine = ours(bval.with_suffix(""))
    np.testing.assert_allclose(our_b, bvals)
    world = bvecs_in_world(our_v, our_affine)
    np.testing.assert_allclose(world[:, 0], 0.0)
    for t in range(1, 4):  # LPS gradient -> RAS: same direction, exactly (no sign ambiguity here)
        np.testing.assert_allclose(world[:, t], gradients[t] * [-1, -1, 1], atol=1e-5)


# --------------------------------------------------------------------------- the convention, as a property
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_angles = st.floats(-np.pi, np.pi, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(_angles, _angles, _angles, st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
       st.permutations([0, 1, 2]), st.tuples(*[st.floats(0.3, 4.0)] * 3),
       st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1))
def test_fsl_bvecs_round_trip_through_any_grid(ax, ay, az, flips, order, spacing, gradient) -> None:
    """For any orientation, axis order, flip and voxel size: undoing FSL's convention with the same
    affine gives back the world direction (so the sign rule comes from the affine alone)."""
    from convert.dicom.diffusion import fsl_bvecs
    from tests.conftest import rotation

    axes = rotation(ax, ay, az)[:, list(order)] * np.asarray(flips) * np.asarray(spacing)
    affine = np.eye(4)
    affine[:3, :3] = axes
    g_lps = np.asarray(gradient) / np.linalg.norm(gradient)
    bvec = fsl_bvecs([g_lps], affine)
    np.testing.assert_allclose(np.linalg.norm(bvec), 1.0, atol=1e-9)
    np.testing.assert_allclose(bvecs_in_world(bvec, affine)[:, 0], g_lps * [-1, -1, 1], atol=1e-6)  # 5e-7: no "-0"


@settings(max_examples=60, deadline=None)
@given(_angles, _angles, _angles, st.sampled_from(["ROW", "COL"]),
       st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1))
def test_logical_frame_keeps_lengths_for_any_orientation(ax, ay, az, phase, vector) -> None:
    from tests.conftest import rotation

    r = rotation(ax, ay, az)
    orientation = list(r[:, 0]) + list(r[:, 1])
    out = logical_gradient_lps(vector, orientation, phase)
    np.testing.assert_allclose(np.linalg.norm(out), 1.0, atol=1e-9)
    images = np.array([logical_gradient_lps(e, orientation, phase) for e in np.eye(3)])
    np.testing.assert_allclose(np.abs(np.linalg.det(images)), 1.0, atol=1e-9)  # a rotation/reflection
    np.testing.assert_allclose(out, images.T @ (np.asarray(vector) / np.linalg.norm(vector)), atol=1e-9)


def test_ge_private_pair_wins_over_the_standard_b_value() -> None:
    ds = _header("GE MEDICAL SYSTEMS", DiffusionBValue=1000.0)  # GE 27+ writes (0018,9087) too
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x39, "IS", ["1000001000", "8", "0", "0"])
    acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    for offset, value in zip((0xBB, 0xBC, 0xBD), ("0", "1", "0")):
        acq.add_new(offset, "DS", value)
    assert volume_gradient(ds) == VolumeGradient(1000.0, (0.0, 1.0, 0.0), "logical", False, "ge")


def test_philips_trace_flag_wins_over_a_leftover_standard_direction() -> None:
    ds = _header("Philips Medical Systems", DiffusionBValue=1000.0, DiffusionGradientOrientation=[0.3, 0.4, 0.5])
    ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(0x03, "FL", 1000.0)
    ds.private_block(0x2001, "Philips Imaging DD 001").add_new(0x04, "CS", "I")
    got = volume_gradient(ds)
    assert got.bvalue == 1000.0 and got.isotropic and got.vector is None
    table, _ = series_table([VolumeGradient(0.0, None), got])
    assert table is not None and table.gradients_lps[1] == [0.0, 0.0, 0.0] and table.bvals == [0.0, 1000.0]
