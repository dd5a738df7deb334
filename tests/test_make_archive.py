"""fixtures/make_archive.py: the generated batch-test archive holds what it promises, reproducibly,
and the tree conversion converts its good series and reports each bad one with its reason."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from convert.batch import convert_dicom_tree
from fixtures.dicom_series import expected_affine_ras
from fixtures.make_archive import PATIENTS, SERIES, TRUNCATED_SLICE, Archive, make_archive, main


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Archive:
    return make_archive(tmp_path_factory.mktemp("archive") / "PACS")


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return convert_dicom_tree(archive.root, out), out


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_three_patients_ct_and_mr(archive):
    patients, modalities = set(), set()
    for series, paths in archive.series.items():
        if series.in_zip:
            continue
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        patients.add((str(ds.PatientName), ds.PatientID, ds.PatientBirthDate))
        modalities.add(ds.Modality)
        assert ds.InstitutionName and ds.AccessionNumber  # patient-like fields for the leak checks
        assert PATIENTS[series.patient].folder in paths[0].parts
    assert patients == {(p.name, p.pid, p.birth_date) for p in PATIENTS}
    assert modalities == {"CT", "MR"}
    assert {s.modality for s in SERIES} == {"CT", "MR"}


def test_series_files_and_defects(archive):
    for series, paths in archive.series.items():
        if series.in_zip:
            continue
        expected = series.slices - (1 if series.defect == "missing slice" else 0)
        assert len(paths) == expected and all(p.is_file() for p in paths)
    missing = next(s for s in SERIES if s.defect == "missing slice")
    positions = sorted(float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
                       for p in archive.series[missing])
    steps = np.diff(positions)
    assert np.count_nonzero(np.isclose(steps, 2 * steps.min())) == 1  # exactly one slice gap
    truncated = next(s for s in SERIES if s.defect == "truncated file")
    sizes = {p: p.stat().st_size for p in archive.series[truncated]}
    assert archive.truncated == archive.series[truncated][TRUNCATED_SLICE]
    assert sizes[archive.truncated] < min(v for p, v in sizes.items() if p != archive.truncated)
    assert archive.non_dicom is not None and archive.non_dicom.read_bytes()[128:132] != b"DICM"


def test_zip_holds_a_dicom_series(archive):
    zipped = next(s for s in SERIES if s.in_zip)
    assert archive.zip_path is not None and zipfile.is_zipfile(archive.zip_path)
    with zipfile.ZipFile(archive.zip_path) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(p.as_posix() for p in archive.series[zipped])
        datasets = [pydicom.dcmread(io.BytesIO(zf.read(n))) for n in names]
    assert len(datasets) == zipped.slices
    assert {ds.Modality for ds in datasets} == {"MR"}
    assert {ds.PatientID for ds in datasets} == {PATIENTS[zipped.patient].pid}
    assert len({ds.SOPInstanceUID for ds in datasets}) == zipped.slices


def test_deterministic(archive, tmp_path):
    again = make_archive(tmp_path / "PACS")
    assert _digests(again.root) == _digests(archive.root)
    other = make_archive(tmp_path / "other", seed=1)
    assert _digests(other.root).keys() == _digests(archive.root).keys()
    assert _digests(other.root) != _digests(archive.root)


def test_tree_conversion_converts_good_series_and_reports_bad_ones(archive, converted):
    report, out = converted
    by_description = {o.label.split("'")[1]: o for o in report.outcomes}
    assert sorted(by_description) == sorted(s.description for s in archive.expected())
    for series in archive.expected():
        outcome = by_description[series.description]
        if series.outcome == "converted":
            assert outcome.ok, outcome.error
            image = nib.load(outcome.written[0])
            assert image.shape == series.shape
            # geometry against an independent reader (nibabel) and the generator's own answer
            np.testing.assert_allclose(image.affine, expected_affine_ras(archive.specs[series]), atol=1e-4)
        else:
            assert not outcome.ok and not outcome.written
            assert series.reason in outcome.error
    assert {s.description for s in archive.failed()} == {o.label.split("'")[1] for o in report.failed}
    assert any(p == archive.non_dicom for p, _ in report.skipped)
    assert not report.ok


def test_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("->") == len(SERIES) and "missing slice" in printed and "truncated file" in printed
    assert main([str(tmp_path / "a")]) == 1  # never writes over an earlier archive
