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


# --------------------------------------------------------------------------- issue 12: messages and contracts
@pytest.mark.parametrize("content", ["empty", "no dicom"])
@pytest.mark.parametrize("target", ["out.nii.gz", "outdir"])
def test_folder_without_dicom_says_no_dicom_images_found(tmp_path, content, target):
    """The quirk: an empty folder to a folder target said "cannot tell the output format"."""
    src = tmp_path / "in"
    src.mkdir()
    if content == "no dicom":
        (src / "readme.txt").write_text("not an image")
    for argv in (["convert", str(src), str(tmp_path / target)], ["info", str(src)]):
        result = runner.invoke(app, argv)
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and f"no DICOM images found in {src}" in text, text
        assert "output format" not in text
    assert not (tmp_path / target).exists()


def test_nifti_to_dcm_file_name_says_dicom_output_is_a_folder(tmp_path, src):
    """A ``.dcm`` output name is refused (a series is a folder); ``--to dicom OUT_DIR`` is the way (issue 14)."""
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out.dcm")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "DICOM output is a folder" in text and "--to dicom" in text
    assert "cannot tell the output format" not in text and not (tmp_path / "out.dcm").exists()
    import convert

    with pytest.raises(convert.errors.UnsupportedFormatError, match="to='dicom'"):
        convert.convert(src, tmp_path / "out.dcm")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out"), "--to", "dicom"])
    assert result.exit_code == 0, result.output
    assert "DICOM files to" in result.output and sorted((tmp_path / "out").glob("*.dcm"))


def test_version_through_the_console_entry_and_typer(tmp_path):
    import convert

    proc = subprocess.run([sys.executable, "-c", "import sys; from convert.cli import main; "
                           "sys.argv = ['medconvert', '--version']; main()"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"medconvert {convert.__version__}"
    assert run("--version").stdout.strip() == f"medconvert {convert.__version__}"
    assert runner.invoke(app, ["--version"]).output.strip() == f"medconvert {convert.__version__}"


def test_console_script_exits_with_the_commands_status_after_flushing_and_exit_handlers(tmp_path):
    """console_main skips the interpreter's teardown: buffered output, atexit handlers and the
    status must survive it, and the outputs are complete files."""
    from convert.sample import write_sample

    src = write_sample(tmp_path / "in")["dicom"]
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            "from convert.cli import console_main\n"
            "sys.argv = ['medconvert', *sys.argv[1:]]\n"
            "console_main()\n"
            "print('not reached')\n")
    ok = subprocess.run([sys.executable, "-c", code, "convert", str(src), str(tmp_path / "out") + "/"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and ok.stdout.rstrip().endswith("exit handler ran")  # stdout is a pipe: buffered
    assert "not reached" not in ok.stdout
    written = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert written and all(nib.load(path).get_fdata().size for path in written)
    missing = subprocess.run([sys.executable, "-m", "convert", "convert", str(tmp_path / "nope"), str(tmp_path / "o2")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.count("error:") == 1 and "Traceback" not in missing.stderr
    version = subprocess.run([sys.executable, "-m", "convert", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("medconvert ")


@pytest.mark.parametrize(("code", "status", "stderr"), [(None, 0, ""), (3, 3, ""), ("bad things", 1, "bad things\n")])
def test_exit_status_is_the_interpreters(code, status, stderr, capsys):
    from convert.cli import _exit_status

    assert _exit_status(code) == status
    assert capsys.readouterr().err == stderr


def test_dicom_tree_summary_counts_duplicates_not_failures(tmp_path):
    """The quirk: the same instances twice (a media copy beside the folder) must not be a failure."""
    import shutil

    from convert.sample import write_sample

    written = write_sample(tmp_path / "s")
    src = tmp_path / "in"
    shutil.copytree(written["dicom"], src / "a")
    shutil.copytree(written["dicom"], src / "media_copy")
    n = len(list((src / "a").iterdir()))
    for target in ("out", "one.nii.gz"):
        result = runner.invoke(app, ["convert", str(src), str(tmp_path / target)])
        text = " ".join(result.output.split())
        assert result.exit_code == 0, text
        assert f"skipped {n} duplicate file(s) (same SOPInstanceUID and content as another file)" in text
        assert "warning" not in text and "failed" not in text


@pytest.mark.parametrize("entry", ["console", "typer"])
def test_terminal_escape_sequences_in_names_are_shown_not_sent(tmp_path, entry):
    """The quirk (issue 17): ESC/BEL/newlines in a file or folder name reached the terminal raw (a crafted
    name could set the terminal title or colours). Messages show them as escapes, on one line."""
    hostile = tmp_path / "x\x1b]0;owned\x07\x1b[31mred\nline"
    hostile.mkdir()
    (hostile / "notes.txt").write_text("not DICOM")
    if entry == "console":
        proc = subprocess.run([sys.executable, "-m", "convert", "convert", str(hostile), str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=120)
        code, err = proc.returncode, proc.stderr
    else:
        result = runner.invoke(app, ["convert", str(hostile), str(tmp_path / "out")])
        code, err = result.exit_code, result.output
    assert code == 1
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07\\x1b[31mred\\nline" in err.replace("\n", "")
    assert "no DICOM images found" in " ".join(err.split())


# --------------------------------------------------------------------------- start-up cost of the one path
_HEAVY = ("pydicom", "nibabel", "SimpleITK", "h5py", "scipy", "nrrd", "pylibjpeg", "gdcm")


def _imports_of_a_console_run(argv: list[str]) -> tuple[int, list[str], str]:
    """Run ``medconvert ARGV`` in a fresh interpreter: (exit code, heavy modules imported, stderr)."""
    code = ("import sys\nfrom convert.cli import main\nsys.argv = ['medconvert', *sys.argv[1:]]\n"
            "try:\n    main()\n    rc = 0\nexcept SystemExit as e:\n    rc = e.code or 0\n"
            f"print(rc, sorted(m for m in {_HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    rc, _, heavy = proc.stdout.strip().splitlines()[-1].partition(" ")
    return int(rc), eval(heavy), proc.stderr  # noqa: S307 (our own printed list)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_plain_dicom_conversion_imports_no_pydicom_nibabel_or_itk(tmp_path, modality):
    """The one path's speed is its imports: a plain series is read through the header view and the
    element layer, written by our NIfTI writer (a regression here costs ~0.2-0.5 s per run)."""
    from fixtures.dicom_series import make_series

    make_series(tmp_path / "in", modality=modality)
    for out in (tmp_path / "x.nii", tmp_path / "y.nii.gz", tmp_path / "tree"):
        rc, heavy, err = _imports_of_a_console_run(["convert", str(tmp_path / "in"), str(out)])
        assert rc == 0 and heavy == [], (out, heavy, err)
    assert json.loads((tmp_path / "x.json").read_text())["Modality"] == modality
    assert np.allclose(nib.load(tmp_path / "x.nii").affine, nib.load(tmp_path / "y.nii.gz").affine)
    assert len(list((tmp_path / "tree").glob("*.nii.gz"))) == 1


@pytest.mark.conformance
@pytest.mark.parametrize("dataset", ["dcm_qa_nih", "dcm_qa_12bit", "dcm_qa_enh", "dcm_qa_deident", "dcm_qa_ct"])
def test_real_archives_convert_without_pydicom_nibabel_or_scipy(tmp_path, dataset):
    """Siemens mosaics (CSA header, native pixels), GE EPI (private blocks, slice timing), Philips and
    Siemens XA enhanced files (functional groups) and tilted CT go through the header view, our CSA
    reader and the native pixel reader: no pydicom, nibabel or scipy import."""
    from tests.conftest import conformance_dir

    src = conformance_dir(dataset) / "In"
    rc, heavy, err = _imports_of_a_console_run(["convert", str(src), str(tmp_path / "out") + "/"])
    assert rc == 0 and heavy == [], (heavy, err)
    assert list((tmp_path / "out").glob("*.nii.gz"))


def test_json_ready_replaces_non_finite_numbers():
    """info --json never prints NaN/Infinity (not JSON): they become null."""
    from convert.cli import json_ready, json_text

    value = {"range": [float("nan"), 1.0], "affine": [[float("inf"), -float("inf")]], "n": 3, "s": "x"}
    assert json_ready(value) == {"range": [None, 1.0], "affine": [[None, None]], "n": 3, "s": "x"}
    assert json.loads(json_text(value)) == json_ready(value)
