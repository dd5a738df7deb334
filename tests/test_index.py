"""convert/batch/index.py: the archive index (series and instance rows, PHI only on request, DataFrame, files)."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from convert.batch import index as index_module
from convert.batch.index import (EXTRA_COLUMN, INSTANCE_COLUMN_TYPES, PHI_KEYWORDS, SERIES_COLUMNS, build_index,
                                 index_archive, series_row, write_index)
from convert.errors import MissingDependencyError, OutputExistsError, UnsupportedFormatError
from fixtures.dicom_series import make_non_dicom_files, make_series
from tests.conftest import CONFORMANCE, conformance_dir

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

#: Values planted in every patient-identifying element: none may reach an index without phi=True.
PLANTED = {"PatientName": "Plantedname^Zoltan", "PatientID": "PLANTED-ID-4711", "PatientBirthDate": "19010203",
           "StudyDate": "19020304", "SeriesDate": "19030405", "AcquisitionDate": "19040506",
           "AccessionNumber": "PLANTACC99", "StudyDescription": "Planted study of Zoltan",
           "InstitutionName": "Planted General Hospital"}
INDEX_FIELDS = {"BodyPartExamined": "CHEST", "ProtocolName": "Thorax 1mm", "Manufacturer": "ACME Medical",
                "ManufacturerModelName": "Scanomat 9000", "MagneticFieldStrength": 1.5}


def _series(folder: Path, **changes) -> list[Path]:
    extra = {**PLANTED, **INDEX_FIELDS, **changes.pop("extra", {})}
    paths, _ = make_series(folder, extra=extra, **changes)
    return paths


def _all_cells(frame) -> set[str]:
    return {str(v) for v in frame.astype(str).to_numpy().ravel()} | {str(c) for c in frame.columns}


def test_series_row_has_the_index_fields_and_keeps_the_existing_keys(tmp_path: Path) -> None:
    _series(tmp_path / "a", modality="CT", series_number=3, description="Thorax")
    frame = index_archive(tmp_path)
    assert list(frame.columns) == [*SERIES_COLUMNS, EXTRA_COLUMN]
    for key in ("series_uid", "study_uid", "series_number", "modality", "series_description", "kind", "files",
                "rows", "columns", "slices", "volumes", "spacing_i_mm", "spacing_j_mm", "spacing_k_mm",
                "slice_thickness_mm", "orientation", "tilt_deg", "transfer_syntax", "image_type", "missing_slices",
                "uneven_spacing", "warnings", "problem"):
        assert key in SERIES_COLUMNS, key  # the plan's --include/--exclude filters use these
    (row,) = frame.to_dict("records")
    assert (row["modality"], row["series_number"], row["series_description"]) == ("CT", 3, "Thorax")
    assert (row["body_part"], row["protocol"], row["manufacturer"], row["model"], row["field_strength_t"]) == (
        "CHEST", "Thorax 1mm", "ACME Medical", "Scanomat 9000", 1.5)
    assert (row["rows"], row["columns"], row["slices"], row["volumes"], row["files"]) == (32, 24, 10, 1, 10)
    assert json.loads(row[EXTRA_COLUMN])["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert str(frame.dtypes["series_number"]) == "Int64" and str(frame.dtypes["spacing_k_mm"]) == "float64"


def test_index_geometry_matches_an_oblique_series_read_by_simpleitk(tmp_path: Path) -> None:
    import SimpleITK as sitk

    paths = _series(tmp_path, orientation="oblique")
    (row,) = index_archive(tmp_path).to_dict("records")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    assert np.allclose([row["spacing_i_mm"], row["spacing_j_mm"], row["spacing_k_mm"]], image.GetSpacing(),
                       atol=1e-3)
    lps = np.array(image.GetDirection()).reshape(3, 3)  # columns: i, j, k directions in LPS
    ras = np.diag([-1, -1, 1]) @ lps
    letters = ("LR", "PA", "IS")
    code = "".join(letters[int(np.argmax(abs(ras[:, n])))][int(ras[int(np.argmax(abs(ras[:, n]))), n] > 0)]
                   for n in range(3))
    assert row["orientation"] == code and row["files"] == len(paths)


def test_index_spacing_matches_dcm2niix_references_on_real_data() -> None:
    import nibabel as nib

    folder = conformance_dir("dcm_qa_nih")
    rows = {r["series_number"]: r for r in index_archive(folder / "In").to_dict("records")
            if r["manufacturer"] == "GE MEDICAL SYSTEMS"}
    assert set(rows) == {4, 5, 6, 7}
    axis = {c: n for n, pair in enumerate(("RL", "AP", "SI")) for c in pair}
    for number, row in rows.items():
        ref = nib.as_closest_canonical(nib.load(folder / "ref-dcm2niix" / f"In_DCM2NIIX_regression_test_{number}.nii.gz"))
        spacing = [0.0, 0.0, 0.0]
        for n, letter in enumerate(row["orientation"]):
            spacing[axis[letter]] = row[f"spacing_{'ijk'[n]}_mm"]
        assert np.allclose(spacing, ref.header.get_zooms()[:3], atol=1e-3), number
        assert (row["columns"], row["rows"]) == ref.shape[:2] or (row["rows"], row["columns"]) == ref.shape[:2]
        assert row["volumes"] == ref.shape[3] and row["slices"] == ref.shape[2]


def test_rows_agree_with_headers_read_by_pydicom_on_real_data() -> None:
    import pydicom

    from convert.dicom.scan import scan
    from convert.dicom.series import assemble

    if not CONFORMANCE.is_dir():
        pytest.skip("real-data sets not available (needs ../shared/conformance)")
    checked = 0
    for series in assemble(scan(CONFORMANCE).instances):
        row = series_row(series)
        ds = pydicom.dcmread(series.first.path, stop_before_pixels=True)

        def text(keyword: str) -> str:
            value = ds.get(keyword)
            return "" if value is None else ("\\".join(map(str, value)) if isinstance(value, pydicom.multival.MultiValue)
                                             else str(value))

        assert row["modality"] == text("Modality") and row["series_uid"] == text("SeriesInstanceUID")
        assert row["body_part"] == text("BodyPartExamined") and row["protocol"] == text("ProtocolName")
        assert row["manufacturer"] == text("Manufacturer") and row["model"] == text("ManufacturerModelName")
        strength = ds.get("MagneticFieldStrength")
        assert row["field_strength_t"] == (float(strength) if strength not in (None, "") else None)
        assert (row["rows"], row["columns"]) == (ds.Rows, ds.Columns)
        assert not set(PHI_KEYWORDS) & set(row)
        checked += 1
    assert checked >= 20


def test_patient_fields_never_reach_any_index_output_by_default(tmp_path: Path) -> None:
    import pandas

    src = tmp_path / "src"
    _series(src / "a", series_number=1)
    _series(src / "b", series_number=2, modality="MR")
    outputs = {ext: write_index(index_archive(src), tmp_path / f"index{ext}") for ext in (".csv", ".parquet", ".jsonl")}
    instances = index_archive(src, instances=True)
    frames = [index_archive(src), instances, pandas.read_csv(outputs[".csv"]), pandas.read_parquet(outputs[".parquet"]),
              pandas.read_json(outputs[".jsonl"], lines=True)]
    for frame in frames:
        cells = " ".join(_all_cells(frame))
        assert not set(PHI_KEYWORDS) & set(frame.columns)
        for planted in PLANTED.values():
            assert planted not in cells and planted.split("^")[0] not in cells
    for path in (outputs[".csv"], outputs[".jsonl"], outputs[".parquet"]):
        data = path.read_bytes()
        assert not any(p.encode() in data for p in PLANTED.values()), path


def test_patient_fields_are_not_even_read_without_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from convert.dicom.scan import Instance

    _series(tmp_path)

    def refuse(series):
        raise AssertionError("patient fields read without phi=True")

    monkeypatch.setattr(index_module, "phi_fields", refuse)
    assert len(index_archive(tmp_path)) == 1
    fields = {f for f in Instance.__dataclass_fields__}
    assert not fields & {"patient_id", "patient_name", "patient_birth_date", "study_date", "accession_number",
                         "institution_name", "study_description"}


def test_patient_fields_with_the_flag(tmp_path: Path) -> None:
    _series(tmp_path)
    (row,) = index_archive(tmp_path, phi=True).to_dict("records")
    assert {row[c] for c in PHI_KEYWORDS} == set(PLANTED.values())
    assert row["patient_name"] == PLANTED["PatientName"] and row["study_date"] == PLANTED["StudyDate"]


def test_instance_rows_name_each_file_with_its_position(tmp_path: Path) -> None:
    import pydicom

    paths = _series(tmp_path, orientation="oblique")
    make_non_dicom_files(tmp_path)
    frame = index_archive(tmp_path, instances=True)
    assert list(frame.columns) == list(INSTANCE_COLUMN_TYPES)
    assert sorted(frame["path"]) == sorted(str(p) for p in paths)
    for row in frame.to_dict("records"):
        ds = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert np.allclose([row[f"position_{a}_lps_mm"] for a in "xyz"], [float(v) for v in ds.ImagePositionPatient])
        assert row["instance_number"] == ds.InstanceNumber and row["sop_instance_uid"] == ds.SOPInstanceUID


def test_a_zip_archive_with_a_zip_inside_is_indexed_and_named_by_member(tmp_path: Path) -> None:
    ct = _series(tmp_path / "ct", modality="CT", series_number=1)
    mr = _series(tmp_path / "mr", modality="MR", series_number=2)
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        for p in mr:
            zf.write(p, f"MR/{p.name}")
    archive = tmp_path / "exam.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in ct:
            zf.write(p, f"CT/{p.name}")
        zf.write(inner, "nested/inner.zip")
        zf.writestr("README.txt", "not DICOM")
    index = build_index(archive, instances=True)
    assert index.series == 2 and index.images == len(ct) + len(mr)
    names = {r["path"] for r in index.rows}
    assert f"{archive}!CT/{ct[0].name}" in names and f"{archive}!nested/inner.zip!MR/{mr[0].name}" in names
    assert index.skipped == [(f"{archive}!README.txt", "not DICOM (file extension)")]
    assert sorted(index_archive(archive)["modality"]) == ["CT", "MR"]


def test_a_tar_gz_archive_is_indexed_like_its_folder(tmp_path: Path) -> None:
    import tarfile

    _series(tmp_path / "src" / "a", series_number=1)
    with tarfile.open(tmp_path / "exam.tgz", "w:gz") as tf:
        tf.add(tmp_path / "src", arcname="exam")
    from_tar = index_archive(tmp_path / "exam.tgz")
    from_folder = index_archive(tmp_path / "src")
    assert from_tar.equals(from_folder)


def test_write_index_formats_roundtrip_types_and_refuse_others(tmp_path: Path) -> None:
    import pandas

    _series(tmp_path / "src")
    frame = index_archive(tmp_path / "src")
    back = pandas.read_parquet(write_index(frame, tmp_path / "i.parquet"))
    assert back.dtypes.to_dict() == frame.dtypes.to_dict() and back.equals(frame)
    lines = write_index(frame, tmp_path / "i.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["series_uid"] == frame["series_uid"][0]
    assert pandas.read_csv(write_index(frame, tmp_path / "i.csv"))["files"][0] == 10
    with pytest.raises(UnsupportedFormatError, match="i.xlsx"):
        write_index(frame, tmp_path / "i.xlsx")
    with pytest.raises(OutputExistsError):
        write_index(frame, tmp_path / "i.csv")
    write_index(frame, tmp_path / "i.csv", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.csv", "i.jsonl", "i.parquet", "src"]


def test_an_archive_without_dicom_gives_an_empty_typed_frame(tmp_path: Path) -> None:
    make_non_dicom_files(tmp_path)
    frame = index_archive(tmp_path)
    assert len(frame) == 0 and list(frame.columns) == [*SERIES_COLUMNS, EXTRA_COLUMN]
    assert str(frame.dtypes["files"]) == "Int64"


def test_missing_pandas_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'medconvert\[index\]'"):
        index_archive(tmp_path)


def test_convert_scan_is_the_dataframe_index(tmp_path: Path) -> None:
    import convert

    _series(tmp_path)
    assert convert.scan is index_archive
    assert list(convert.scan(tmp_path)["files"]) == [10]


def test_docs_scan_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """docs/batch.md "Scan and index": the Python example runs and prints what its comments say."""
    import re

    from tests.conftest import REPO

    text = (REPO / "docs" / "batch.md").read_text()
    section = text.split("## Scan and index", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/batch.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["2", "CT", "40", "4.0", "LPS"] and out[2].startswith("40 CT/")


def test_a_nested_archive_that_cannot_be_read_is_skipped_with_its_reason(tmp_path: Path) -> None:
    _series(tmp_path / "a")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 cut short")
    index = build_index(tmp_path)
    assert index.series == 1
    ((name, reason),) = index.skipped
    assert name == str(tmp_path / "broken.zip") and "not a readable archive" in reason
