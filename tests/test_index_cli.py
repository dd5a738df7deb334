"""``medconvert scan`` (convert/cli.py over convert/batch/index.py): table, index files, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convert.cli import app
from fixtures.dicom_series import make_non_dicom_files, make_series

pandas = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

runner = CliRunner()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    make_series(folder / "ct", modality="CT", series_number=4, description="Head CT",
                extra={"PatientName": "Plantedname^Ida", "BodyPartExamined": "HEAD"})
    make_series(folder / "mr", modality="MR", series_number=7, description="T1 sag", slices=6)
    make_non_dicom_files(folder)
    return folder


def test_scan_prints_a_table_of_series(archive: Path) -> None:
    result = runner.invoke(app, ["scan", str(archive)])
    assert result.exit_code == 0, result.output
    assert "Head CT" in result.stdout and "T1 sag" in result.stdout and "24x32x10" in result.stdout
    assert "2 series, 16 image file(s)" in result.stderr


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".jsonl"])
def test_scan_writes_the_index_by_extension(archive: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"index{ext}"
    result = runner.invoke(app, ["scan", str(archive), "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = {".csv": pandas.read_csv, ".parquet": pandas.read_parquet,
             ".jsonl": lambda p: pandas.read_json(p, lines=True)}[ext](out)
    assert sorted(frame["series_number"]) == [4, 7] and "patient_name" not in frame.columns
    assert b"Plantedname" not in out.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", out.name], "no temporary left behind"


def test_scan_phi_and_instances(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "phi.jsonl"
    assert runner.invoke(app, ["scan", str(archive), "--phi", "-o", str(out)]).exit_code == 0
    rows = {r["series_number"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[4]["patient_name"] == "Plantedname^Ida" and rows[4]["body_part"] == "HEAD"
    out = tmp_path / "instances.csv"
    assert runner.invoke(app, ["scan", str(archive), "--instances", "-o", str(out)]).exit_code == 0
    assert len(pandas.read_csv(out)) == 16


def test_scan_reads_a_zip(archive: Path, tmp_path: Path) -> None:
    packed = tmp_path / "exam.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for p in archive.rglob("*"):
            zf.write(p, p.relative_to(archive).as_posix())
    result = runner.invoke(app, ["scan", str(packed)])
    assert result.exit_code == 0, result.output
    assert "Head CT" in result.stdout and "2 series, 16 image file(s)" in result.stderr
    out = tmp_path / "instances.jsonl"
    assert runner.invoke(app, ["scan", str(packed), "--instances", "-o", str(out)]).exit_code == 0
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert len(paths) == 16 and all(p.startswith(f"{packed}!ct/") or p.startswith(f"{packed}!mr/") for p in paths)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert", *args], capture_output=True, text=True, timeout=120)


def test_unknown_extension_is_one_red_line_and_exit_2(archive: Path, tmp_path: Path) -> None:
    proc = _run("scan", str(archive), "-o", str(tmp_path / "index.xlsx"))
    assert proc.returncode == 2 and "index.xlsx" in proc.stderr and ".parquet" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "index.xlsx").exists()


def test_errors_are_one_line_and_exit_1(archive: Path, tmp_path: Path) -> None:
    missing = _run("scan", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "index.csv").write_text("old")
    exists = _run("scan", str(archive), "-o", str(tmp_path / "index.csv"))
    assert exists.returncode == 1 and "--overwrite" in exists.stderr and (tmp_path / "index.csv").read_text() == "old"
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../../evil.dcm", b"x")
    refused = _run("scan", str(hostile))
    assert refused.returncode == 1 and "'../../evil.dcm'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    nothing = _run("scan", str(empty))
    assert nothing.returncode == 1 and "no DICOM images" in nothing.stderr
