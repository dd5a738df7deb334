"""The medconvert command line (convert/cli.py): outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from convert.cli import app
from convert.formats.nifti import NIFTI_GZ
from convert.volume import Volume
from tests.conftest import oblique_affine

runner = CliRunner()


@pytest.fixture
def src(tmp_path, rng):
    path = tmp_path / "in.nii.gz"
    NIFTI_GZ.write(Volume(rng.integers(0, 100, size=(6, 5, 4)).astype(np.int16), oblique_affine()), path)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "convert", *args], capture_output=True, text=True, timeout=120)


def test_convert_and_refuse_overwrite(tmp_path, src):
    dst = tmp_path / "out.nii"
    result = runner.invoke(app, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    assert np.allclose(nib.load(dst).affine, oblique_affine(), atol=1e-6)
    again = runner.invoke(app, ["convert", str(src), str(dst)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert runner.invoke(app, ["convert", str(src), str(dst), "--overwrite"]).exit_code == 0


def test_convert_with_to(tmp_path, src):
    dst = tmp_path / "out.bin"
    assert runner.invoke(app, ["convert", str(src), str(dst), "--to", "nifti"]).exit_code == 0
    from convert.formats.nifti import NIFTI

    assert NIFTI.sniff(dst)  # our own magic check, then an independent reader on a .nii copy
    (tmp_path / "copy.nii").write_bytes(dst.read_bytes())
    assert nib.load(tmp_path / "copy.nii").shape == (6, 5, 4)


def test_info_json(src):
    result = runner.invoke(app, ["info", str(src), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["format"] == "nifti-gz" and info["shape"] == [6, 5, 4] and info["dtype"] == "int16"
    assert np.allclose(info["affine_ras"], oblique_affine(), atol=1e-6)


def test_info_table(src):
    result = runner.invoke(app, ["info", str(src)])
    assert result.exit_code == 0 and "orientation" in result.stdout and "0.8 x 1.1 x 2.5" in result.stdout


def test_formats_lists_nifti():
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0 and "nifti-gz" in result.stdout


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: d / "missing.nii", "no such file"),
        (lambda d: (d / "empty.nii").write_bytes(b"") and d / "empty.nii" or d / "empty.nii", "empty"),
        (lambda d: (d / "t.mnc").write_text("text, not MINC\n" * 20) and d / "t.mnc", "t.mnc"),
    ],
    ids=["missing", "empty", "text-as-mnc"],
)
def test_bad_input_is_one_red_line(tmp_path, make, expect):
    path = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = run("convert", str(path), str(out / "x.nii"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0] and str(path.name) in lines[0], proc.stderr
    assert os.listdir(out) == []


def test_truncated_gz_leaves_no_output(tmp_path, src):
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(src.read_bytes()[:200])
    proc = run("convert", str(cut), str(tmp_path / "x.nii"))
    assert proc.returncode == 1 and "cut.nii.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.nii").exists()
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_output_folder_missing(tmp_path, src):
    proc = run("convert", str(src), str(tmp_path / "no" / "such" / "x.nii"))
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_usage_error_exit_2():
    proc = run("convert")
    assert proc.returncode == 2


def test_python_dash_m_and_console_script_agree():
    proc = run("--help")
    assert proc.returncode == 0 and "convert" in proc.stdout


def test_warnings_are_single_clean_lines(tmp_path, src):
    # Writing an oblique volume to Analyze loses its rotation: the user is told, in one line per warning.
    proc = run("convert", str(src), str(tmp_path / "a.hdr"), "--to", "analyze")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("warning: ") for line in lines), proc.stderr
    assert "warnings.warn" not in proc.stderr and "oblique" in proc.stderr
