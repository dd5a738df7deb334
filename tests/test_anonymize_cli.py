"""``medconvert anonymize`` and ``convert.anonymize(path, ...)``: trees, bad inputs, determinism, parallel."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

import convert
from convert.anonymize.run import MANIFEST_NAME
from convert.cli import app
from convert.report import REPORT_HTML, REPORT_JSON
from convert.errors import EXIT_COMPLETED_WITH_FAILURES, ConvertError, InputNotFoundError, OutputExistsError

KEY = b"cli-test-key"
ORIGINAL = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
PHI = [str(ORIGINAL.PatientName), ORIGINAL.PatientID, ORIGINAL.StudyInstanceUID, ORIGINAL.SOPInstanceUID]


def _slice(i: int, series: int = 0) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.2.1125.{series}.{i}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.2.1125.{series}"
    ds.InstanceNumber = i
    return ds


def _tree(root: Path, n: int = 4, series: int = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for s in range(series):
        folder = root / f"series {s}"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            _slice(i, s).save_as(folder / f"IM{i:04d}")
    (root / "DICOMDIR_README.txt").write_text("exported by PACS")
    return root


def _files(root: Path) -> dict[str, bytes]:
    """The outputs under ``root`` (the job's manifest and the run report, which are no outputs, left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST_NAME, REPORT_JSON, REPORT_HTML)}


def _keyfile(tmp_path: Path) -> Path:
    key = tmp_path / "key.bin"
    key.write_bytes(KEY)
    return key


def test_cli_tree_layout_from_pseudonyms_and_summary(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=3, series=2)
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out"), "--key", str(_keyfile(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "6 file(s) de-identified (1 non-DICOM skipped)" in result.output
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 6
    for path in outputs:
        rel = path.relative_to(tmp_path / "out").parts
        ds = pydicom.dcmread(path)
        assert rel == (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID + ".dcm")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.PixelData == ORIGINAL.PixelData
    assert len({p.parent for p in outputs}) == 2  # one output folder per original series
    for value in PHI:
        assert value not in result.output
        assert all(value not in str(p) for p in outputs)


def test_same_key_same_bytes_across_runs_and_serial_equals_parallel(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=30, series=2)  # 60 files: above the parallel threshold
    serial = convert.anonymize(src, tmp_path / "a", key=KEY, workers=1)
    parallel = convert.anonymize(src, tmp_path / "b", key=KEY, workers=2)
    assert len(serial.written) == len(parallel.written) == 60
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = convert.anonymize(src, tmp_path / "c", key=b"another key", workers=1)
    assert set(_files(tmp_path / "c")).isdisjoint(_files(tmp_path / "a"))
    assert len(other.written) == 60


def test_input_tree_is_never_modified(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    before = _files(src)
    convert.anonymize(src, tmp_path / "out", key=KEY)
    assert _files(src) == before


def test_non_dicom_and_truncated_files_reported_others_continue(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=2)
    good = (src / "series 0" / "IM0000").read_bytes()
    (src / "truncated_pixels.dcm").write_bytes(good[: len(good) - 1000])
    (src / "truncated_header.dcm").write_bytes(good[:700])
    (src / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    report = convert.anonymize(src, tmp_path / "out", key=KEY)
    assert len(report.written) == 2
    failed = {o.source.name: o.error for o in report.failed}
    assert set(failed) == {"truncated_pixels.dcm", "truncated_header.dcm"}
    assert all("truncated" in reason for reason in failed.values())
    assert report.skipped_non_dicom == 2
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2
    assert not [p for p in (tmp_path / "out").rglob("*") if ".partial" in p.name]
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out2"), "--key",
                                      str(_keyfile(tmp_path))])
    assert result.exit_code == 3  # completed with failures: the others were written
    # the console names input files by number (their place in the walk, as the audit file lists them)
    numbers = {o.source.name: o.label for o in report.failed}
    assert f"failed: {numbers['truncated_header.dcm']}:" in " ".join(result.output.split())
    assert "truncated_header.dcm" not in result.output


def test_single_non_dicom_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    report = convert.anonymize(path, tmp_path / "out", key=KEY)
    assert report.failed and not report.written
    result = CliRunner().invoke(app, ["anonymize", str(path), str(tmp_path / "out")])
    assert result.exit_code == 1 and "not a DICOM file" in result.output


def test_unreadable_file_fails_cleanly(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=2)
    locked = src / "series 0" / "IM0001"
    locked.chmod(0)
    try:
        try:
            locked.read_bytes()
            pytest.skip("running as root: chmod 000 does not make the file unreadable")
        except PermissionError:
            pass
        report = convert.anonymize(src, tmp_path / "out", key=KEY)
        assert [o.source.name for o in report.failed] == ["IM0001"]
        assert "permission denied" in report.failed[0].error
        assert len(report.written) == 1
    finally:
        locked.chmod(0o644)


def test_dst_inside_src_refused_before_writing(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=1)
    before = _files(src)
    with pytest.raises(ConvertError, match="inside the input folder"):
        convert.anonymize(src, src / "anon", key=KEY)
    assert _files(src) == before and not (src / "anon").exists()
    result = CliRunner().invoke(app, ["anonymize", str(src), str(src / "anon")])
    assert result.exit_code == 1 and "inside the input folder" in result.output


def test_existing_dst_file_refused_without_overwrite(tmp_path: Path) -> None:
    src_file = tmp_path / "in.dcm"
    _slice(0).save_as(src_file)
    dst = tmp_path / "out.dcm"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        convert.anonymize(src_file, dst, key=KEY)
    assert dst.read_bytes() == b"precious"
    result = CliRunner().invoke(app, ["anonymize", str(src_file), str(dst)])
    assert result.exit_code == 1 and "already exists" in result.output
    report = convert.anonymize(src_file, dst, key=KEY, overwrite=True)
    assert report.written == [dst] and pydicom.dcmread(dst).PatientIdentityRemoved == "YES"


def test_single_file_to_explicit_dcm_path(tmp_path: Path) -> None:
    src_file = tmp_path / "in.dcm"
    _slice(0).save_as(src_file)
    report = convert.anonymize(src_file, tmp_path / "anon.dcm", key=KEY)
    assert report.written == [tmp_path / "anon.dcm"]


def test_existing_outputs_inside_dst_fail_per_file_without_overwrite(tmp_path: Path) -> None:
    """An output in place that is not byte for byte what this run writes fails for its file: one
    changed after the first run, and every output of a folder without the record of a resumable
    run (an older medconvert's). The rest of a rerun of the same job is done (see test_resume.py)."""
    src = _tree(tmp_path / "in", n=2)
    first = convert.anonymize(src, tmp_path / "out", key=KEY)
    first.written[0].write_bytes(b"changed by hand")
    again = convert.anonymize(src, tmp_path / "out", key=KEY)
    assert again.done == first.written[1:] and not again.written
    assert len(again.failed) == 1 and "already exists" in again.failed[0].error
    (tmp_path / "out" / MANIFEST_NAME).unlink()
    with pytest.warns(UserWarning, match="no record of the run that wrote them"):
        legacy = convert.anonymize(src, tmp_path / "out", key=KEY)
    assert len(legacy.failed) == 2 and "already exists" in legacy.failed[1].error
    assert len(convert.anonymize(src, tmp_path / "out", key=KEY, overwrite=True).written) == 2


def test_missing_src_and_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        convert.anonymize(tmp_path / "nope", tmp_path / "out", key=KEY)
    result = CliRunner().invoke(app, ["anonymize", str(tmp_path), str(tmp_path.parent / "x"), "--keep", "all"])
    assert result.exit_code == 1 and "unknown de-identification option" in result.output


def test_burned_in_refused_with_red_line_then_allowed_and_flagged(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    us = _slice(0)
    us.Modality = "US"
    us.SOPClassUID = us.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    us.save_as(src / "us.dcm")
    _slice(1).save_as(src / "ct.dcm")
    runner = CliRunner()
    result = runner.invoke(app, ["anonymize", str(src), str(tmp_path / "out")])
    assert result.exit_code == 3  # the CT slice was written
    # us.dcm is the second input file read (ct.dcm sorts first); named by number, never by name
    assert "refused: input file 2:" in result.output and "us.dcm" not in result.output
    assert "burned-in" in result.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1
    result = runner.invoke(app, ["anonymize", str(src), str(tmp_path / "out2"), "--allow-burned-in"])
    assert result.exit_code == 0, result.output
    assert "flagged" in result.output
    flagged = [pydicom.dcmread(p) for p in (tmp_path / "out2").rglob("*.dcm")]
    assert sorted(ds.get("BurnedInAnnotation", "") for ds in flagged) == ["", "YES"]


def test_cli_keep_options_and_audit(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=1)
    audit = tmp_path / "audit.json"
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out"), "--key", str(_keyfile(tmp_path)),
                                      "--keep", "modified-dates", "--keep", "device", "--audit", str(audit)])
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107", "113109"]
    assert ds.StudyDate and ds.StudyDate != ORIGINAL.StudyDate
    assert oct(os.stat(audit).st_mode & 0o777) == "0o600"


def test_random_key_warns_and_differs_between_processes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MEDCONVERT_KEY", raising=False)
    monkeypatch.delenv("MEDCONVERT_KEY_FILE", raising=False)
    src = _tree(tmp_path / "in", n=1)
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out")])
    assert result.exit_code == 0 and "random key" in result.output


def test_env_key_gives_reproducible_output(tmp_path: Path, monkeypatch) -> None:
    src = _tree(tmp_path / "in", n=1)
    monkeypatch.setenv("MEDCONVERT_KEY", "env secret")
    a = convert.anonymize(src, tmp_path / "a")
    b = convert.anonymize(src, tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in a.written] == [p.relative_to(tmp_path / "b") for p in b.written]
    assert hashlib.sha256(a.written[0].read_bytes()).digest() == hashlib.sha256(b.written[0].read_bytes()).digest()


def test_permission_denied_is_reported_even_as_root(tmp_path: Path, monkeypatch) -> None:
    import convert.anonymize.run as run

    src = _tree(tmp_path / "in", n=2)
    real = run.sniff_dicom

    def sniff(path: Path):
        if path.name == "IM0001":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(run, "sniff_dicom", sniff)
    report = convert.anonymize(src, tmp_path / "out", key=KEY, workers=1)
    assert [(o.source.name, o.error) for o in report.failed] == [("IM0001", "cannot read: permission denied")]
    assert len(report.written) == 1


def test_dicomdir_is_not_copied(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    src = _tree(tmp_path / "in", n=1)
    fs = FileSet()
    fs.add(src / "series 0" / "IM0000")
    fs.write(tmp_path / "media")
    report = convert.anonymize(tmp_path / "media", tmp_path / "out", key=KEY)
    assert len(report.written) == 1
    assert any(log.message.startswith("DICOMDIR") for log in report.per_file)


def test_world_geometry_unchanged_per_simpleitk_on_real_scanner_data(tmp_path: Path) -> None:
    """dcm_qa_deident (GE 3D sagittal MR): SimpleITK sees the same voxels at the same world place."""
    import numpy as np
    import SimpleITK as sitk

    from tests.conftest import conformance_dir

    src = conformance_dir("dcm_qa_deident") / "In"
    report = convert.anonymize(src, tmp_path / "out", key=KEY, keep=["modified-dates", "safe-private"])
    assert not report.failed and not report.refused

    def read(folder: Path) -> sitk.Image:
        reader = sitk.ImageSeriesReader()
        ids = reader.GetGDCMSeriesIDs(str(folder))
        assert len(ids) == 1
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
        return reader.Execute()

    before = read(src)
    series_dirs = {p.parent for p in report.written}
    assert len(series_dirs) == 1
    after = read(series_dirs.pop())
    assert np.allclose(before.GetOrigin(), after.GetOrigin(), atol=1e-6)
    assert np.allclose(before.GetSpacing(), after.GetSpacing(), atol=1e-6)
    assert np.allclose(before.GetDirection(), after.GetDirection(), atol=1e-9)
    assert np.array_equal(sitk.GetArrayViewFromImage(before), sitk.GetArrayViewFromImage(after))


def test_no_value_reaches_the_console_through_pydicom_warnings(tmp_path: Path, capfd) -> None:
    import logging
    import warnings

    src = tmp_path / "in"
    src.mkdir()
    ds = _slice(0)
    ds.StudyDate = "20200101"
    raw = ds  # write an invalid date value the way a broken device would
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    raw._dict[Tag(0x00080020)] = RawDataElement(Tag(0x00080020), "DA", 8, b"Doe John", 0, False, True)
    raw.save_as(src / "bad_date.dcm")
    logging.basicConfig()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = convert.anonymize(src, tmp_path / "out", key=KEY, keep=["modified-dates"])
    assert len(report.written) == 1
    out, err = capfd.readouterr()
    assert "Doe John" not in out + err
    assert not [w for w in caught if "Doe" in str(w.message)]


def test_inputs_sharing_a_sop_instance_uid_are_reported_not_overwritten(tmp_path: Path) -> None:
    """dcm_qa_12bit ships three variants of one image with the same SOPInstanceUID."""
    from tests.conftest import conformance_dir

    src = conformance_dir("dcm_qa_12bit") / "In"
    report = convert.anonymize(src, tmp_path / "out", key=KEY, workers=1)
    assert len(report.written) == 1 and len(report.failed) == 2
    assert all("same SOPInstanceUID" in o.error for o in report.failed)
    first = pydicom.dcmread(report.written[0])
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_dcm2niix_sees_the_same_volume_before_and_after(tmp_path: Path) -> None:
    """dcm_qa_ct (gantry tilt, uneven spacing): dcm2niix builds identical volumes and affines."""
    import subprocess

    import nibabel as nib
    import numpy as np

    from tests.conftest import conformance_dir, require_tool

    exe = require_tool("dcm2niix")
    src = conformance_dir("dcm_qa_ct") / "In"
    report = convert.anonymize(src, tmp_path / "anon", key=KEY, keep=["device"])
    assert len(report.written) == 28

    def convert_with_dcm2niix(folder: Path, out: Path) -> list[nib.Nifti1Image]:
        out.mkdir()
        subprocess.run([exe, "-z", "n", "-b", "n", "-f", "vol_%s", "-o", str(out), str(folder)],
                       check=True, capture_output=True)
        return [nib.load(p) for p in sorted(out.glob("*.nii"))]

    before = convert_with_dcm2niix(src, tmp_path / "nii_before")
    after = convert_with_dcm2niix(tmp_path / "anon", tmp_path / "nii_after")
    assert before and len(before) == len(after)
    for a, b in zip(before, after):
        assert a.shape == b.shape
        assert np.allclose(a.affine, b.affine, atol=1e-4)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


# ------------------------------------------------------------------------------------------------
# Header-only fast path (pixel bytes copied by the kernel) and its fallbacks
# ------------------------------------------------------------------------------------------------
def _variants(root: Path) -> dict[str, Path]:
    """One file per layout: plain, implicit VR, big endian, deflated, multi-frame, trailing, encapsulated."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def _slice(i: int) -> pydicom.Dataset:  # CT_small.dcm without its trailing padding
        ds = globals()["_slice"](i, series=7)
        del ds[0xFFFCFFFC]
        return ds

    plain = _slice(1)
    out["plain"] = root / "plain.dcm"
    plain.save_as(out["plain"], enforce_file_format=True)
    for name, ts in (("implicit", ImplicitVRLittleEndian), ("big_endian", ExplicitVRBigEndian),
                     ("deflated", DeflatedExplicitVRLittleEndian)):
        ds = _slice(len(out) + 1)
        ds.file_meta.TransferSyntaxUID = ts
        out[name] = root / f"{name}.dcm"
        pydicom.dcmwrite(out[name], ds, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian,
                         force_encoding=True)
    ds = _slice(len(out) + 1)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    out["multiframe"] = root / "multiframe.dcm"
    ds.save_as(out["multiframe"], enforce_file_format=True)
    ds = _slice(len(out) + 1)
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 8)  # Data Set Trailing Padding after the pixels
    out["trailing"] = root / "trailing.dcm"
    ds.save_as(out["trailing"], enforce_file_format=True)
    from pydicom.uid import RLELossless

    ds = _slice(len(out) + 1)
    ds.compress(RLELossless)
    out["encapsulated"] = root / "encapsulated.dcm"
    ds.save_as(out["encapsulated"], enforce_file_format=True)
    return out


def test_byte_serializer_takes_little_endian_files_and_leaves_the_rest_to_pydicom(tmp_path: Path) -> None:
    import os

    from convert.anonymize.scrubber import Scrubber
    from convert.anonymize.serialize import ByteScrubber

    files = _variants(tmp_path / "src")
    serializer = ByteScrubber(Scrubber(KEY))
    taken = set()
    for name, path in files.items():
        fd = os.open(path, os.O_RDONLY)
        try:
            out = serializer.header(path, fd)
        finally:
            os.close(fd)
        if out is not None:
            taken.add(name)
            data = path.read_bytes()
            assert out.pixel_offset is not None
            assert data[out.pixel_offset:out.pixel_offset + 4] == b"\xe0\x7f\x10\x00"
            assert 0x7FE00010 not in pydicom.dcmread(io.BytesIO(out.header))  # header only
    # implicit VR, multi-frame and encapsulated pixel data are walked; big endian, deflated and an
    # element after the pixel data are read by pydicom
    assert taken == set(files) - {"big_endian", "deflated", "trailing"}


def test_byte_serializer_output_equals_the_pydicom_route_and_keeps_pixels_bit_identical(
        tmp_path: Path, monkeypatch) -> None:
    import convert.anonymize.run as run

    src = _tree(tmp_path / "src", n=3)
    _variants(src / "variants")
    fast = tmp_path / "fast"
    fast_report = convert.anonymize(src, fast, key=KEY, workers=1)
    monkeypatch.setattr(run, "_process_bytes", lambda *args: None)
    full = tmp_path / "full"
    full_report = convert.anonymize(src, full, key=KEY, workers=1)
    assert _files(fast) == _files(full)
    assert [(log.status, log.kept, log.removed, log.replaced) for log in fast_report.per_file] == \
        [(log.status, log.kept, log.removed, log.replaced) for log in full_report.per_file]
    pixels_in = {hashlib.sha256(pydicom.dcmread(p).PixelData).hexdigest()
                 for p in src.rglob("*") if p.is_file() and p.suffix != ".txt"}
    pixels_out = {hashlib.sha256(pydicom.dcmread(p).PixelData).hexdigest() for p in fast.rglob("*.dcm")}
    assert pixels_out == pixels_in


def test_fast_path_truncated_pixel_data_is_reported_not_written(tmp_path: Path) -> None:
    src = tmp_path / "src"
    plain = _variants(src)["plain"]
    data = plain.read_bytes()
    for path in src.iterdir():
        path.unlink()
    (src / "cut.dcm").write_bytes(data[:-1000])
    report = convert.anonymize(src, tmp_path / "out", key=KEY, workers=1)
    assert [o.source.name for o in report.failed] == ["cut.dcm"]
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_cli_process_skips_pydicom_decoder_backends_and_lifts_the_block(tmp_path: Path) -> None:
    """``medconvert anonymize`` copies pixel data, so gdcm/requests are not imported (start-up time);
    the block is temporary: they stay importable afterwards in the same process."""
    import subprocess
    import sys

    src = _tree(tmp_path / "src", n=2)
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from convert.cli import app\n"
        f"r = CliRunner().invoke(app, ['anonymize', {str(src)!r}, {str(tmp_path / 'out')!r}, "
        f"'--key', {str(_keyfile(tmp_path))!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('gdcm' in sys.modules, 'requests' in sys.modules)\n"
        "import requests\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "ok"]
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


def test_pixel_copy_falls_back_when_the_kernel_copy_is_unavailable(tmp_path: Path, monkeypatch) -> None:
    """copy_file_range can fail (EXDEV/ENOSYS on some kernels and file systems): a plain copy follows."""
    import convert.anonymize.run as run

    src = tmp_path / "src"
    plain = _variants(src)["plain"]
    expected = convert.anonymize(plain, tmp_path / "kernel.dcm", key=KEY)
    assert expected.written

    def broken(*args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(run.os, "copy_file_range", broken, raising=False)
    report = convert.anonymize(plain, tmp_path / "plain.dcm", key=KEY)
    assert report.written and not report.failed
    assert (tmp_path / "plain.dcm").read_bytes() == (tmp_path / "kernel.dcm").read_bytes()


# --------------------------------------------------------------------------- the console entry point
def _console(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``python -m convert`` with ``args`` (``{DST}`` -> tmp_path/dst): (exit code, stdout, stderr)."""
    import subprocess
    import sys

    argv = [a.replace("{DST}", str(tmp_path / "dst")) for a in args]
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("MEDCONVERT_KEY", None)
    env.pop("MEDCONVERT_KEY_FILE", None)
    proc = subprocess.run([sys.executable, "-m", "convert", *argv], capture_output=True, text=True, timeout=300,
                          env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("extra", [[], ["--keep", "uids", "--keep", "clean-descriptors", "--jobs", "1"],
                                   ["--allow-burned-in", "--overwrite"], ["--audit", "AUDIT"]])
def test_console_command_writes_the_files_and_reports_a_failure(tmp_path: Path, extra: list[str]) -> None:
    src = _tree(tmp_path / "src", n=3, series=2)
    good = (src / "series 0" / "IM0000").read_bytes()
    (src / "truncated.dcm").write_bytes(good[:700])  # a failure line and exit 1 too
    args = ["anonymize", str(src), "{DST}", "--key", str(_keyfile(tmp_path))]
    args += [str(tmp_path / "audit.json") if token == "AUDIT" else token for token in extra]
    code, out, err = _console(tmp_path, *args)
    # exit 3: completed with failures; the failed file by its number (a folder's files come before its
    # sub-folders: DICOMDIR_README.txt is input file 1, truncated.dcm 2)
    assert code == 3 and "failed: input file 2:" in err and "truncated.dcm" not in err
    assert "6 file(s) de-identified" in out
    assert len(_files(tmp_path / "dst")) == 6
    assert (tmp_path / "audit.json").exists() == ("AUDIT" in extra)


def test_console_command_errors_are_one_line_and_usage_errors_typers(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=2)
    # DST inside SRC: a ConvertError, one red line, exit 1
    code, _, err = _console(tmp_path, "anonymize", str(src), str(src / "out"), "--key", str(_keyfile(tmp_path)))
    assert code == 1 and err.startswith("error:") and len(err.splitlines()) == 1
    code, _, err = _console(tmp_path, "anonymize", str(src), "{DST}", "--workers", "0")
    assert code == 2 and "--workers" in err  # typer's usage error


def test_anonymize_command_imports_no_reader_stack(tmp_path: Path) -> None:
    """De-identifying copies headers and pixel bytes: nibabel, SimpleITK, scipy, h5py and gdcm stay out."""
    import subprocess
    import sys

    src = _tree(tmp_path / "src", n=2)
    code = ("import sys; sys.argv = ['medconvert', 'anonymize', sys.argv[1], sys.argv[2], '--key', sys.argv[3]]\n"
            "from convert.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print(sorted(m for m in ('nibabel', 'SimpleITK', 'scipy', 'h5py', 'gdcm') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "dst"), str(_keyfile(tmp_path))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- issue 12: empty input, duplicates
@pytest.mark.parametrize("content", ["empty", "no dicom"])
def test_anonymize_of_a_folder_without_dicom_exits_non_zero_with_one_clear_line(tmp_path: Path,
                                                                                 content: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    if content == "no dicom":
        (src / "notes.txt").write_text("exported by PACS")
    code, _, err = _console(tmp_path, "anonymize", str(src), "{DST}", "--key", str(_keyfile(tmp_path)))
    assert code == 1 and f"error: no DICOM images found in {src}" in " ".join(err.split())
    assert not (tmp_path / "dst").exists()  # nothing was created
    with pytest.raises(ConvertError, match="no DICOM images found"):
        convert.anonymize(src, tmp_path / "api_out", key=KEY)


def test_anonymize_same_instance_twice_is_a_duplicate_not_a_failure(tmp_path: Path) -> None:
    """The quirk: a DICOMDIR media copy beside the folder: every instance twice, byte for byte."""
    import shutil

    src = _tree(tmp_path / "in", n=3)
    shutil.copytree(src / "series 0", src / "media copy")
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out"), "--key",
                                      str(_keyfile(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "3 file(s) de-identified (1 non-DICOM skipped, 3 duplicate(s) skipped)" in result.output
    assert "failed" not in result.output
    report = convert.anonymize(src, tmp_path / "api", key=KEY)
    assert report.ok and len(report.duplicates) == 3 and not report.failed


def test_anonymize_same_uid_with_different_content_stays_a_failure_naming_both(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=3)
    (src / "other").mkdir()
    changed = _slice(1)
    changed.WindowCenter = 77
    changed.save_as(src / "other" / "IM0001")
    result = CliRunner().invoke(app, ["anonymize", str(src), str(tmp_path / "out"), "--key",
                                      str(_keyfile(tmp_path))])
    text = " ".join(result.output.split())
    assert result.exit_code == 3
    # other/IM0001 is input file 2 (read before the 'series 0' folder) and written; series 0/IM0001 (file 4)
    # clashes with it: both named by number, no input name on the console
    assert "failed: input file 4: same SOPInstanceUID as input file 2 but different content" in text
    assert "IM0001" not in text and "1 failed" in text


# --------------------------------------------------------------------------- issue 13: the run report
PLANTED = ["Kowalski", "Jadwiga", "PESEL8803", "St Kowalski Clinic", "Knee of Jadwiga"]


def _planted_tree(root: Path, n: int = 3) -> Path:
    """A folder and file names carrying PHI, headers carrying it, a truncated and a non-DICOM file."""
    src = root / "Kowalski_Jadwiga_PESEL8803"
    (src / "Knee Kowalski").mkdir(parents=True)
    for i in range(n):
        ds = _slice(i)
        ds.PatientName, ds.PatientID = "Kowalski^Jadwiga", "PESEL8803"
        ds.InstitutionName, ds.StudyDescription = "St Kowalski Clinic", "Knee of Jadwiga"
        ds.save_as(src / "Knee Kowalski" / f"Kowalski_{i}.dcm")
    good = (src / "Knee Kowalski" / "Kowalski_0.dcm").read_bytes()
    (src / "Kowalski_cut.dcm").write_bytes(good[:700])
    (src / "Jadwiga notes.txt").write_text("Kowalski Jadwiga PESEL8803")
    return src


def _report(dst: Path) -> tuple[dict, str]:
    return json.loads((dst / REPORT_JSON).read_text(encoding="utf-8")), (dst / REPORT_HTML).read_text(encoding="utf-8")


def test_report_of_an_anonymize_run_names_no_input_and_no_header_value(tmp_path: Path) -> None:
    src = _planted_tree(tmp_path)
    dst = tmp_path / "out"
    result = CliRunner().invoke(app, ["anonymize", str(src), str(dst), "--key", str(_keyfile(tmp_path))])
    assert result.exit_code == 3, result.output  # completed with failures
    doc, page = _report(dst)
    console = result.output.replace(str(dst), "<out>").replace(str(src.parent), "<tmp>")
    for value in PLANTED:
        assert value not in json.dumps(doc, ensure_ascii=False) and value not in page
        assert value not in console, console
    assert doc["kind"] == "anonymize" and doc["anonymized"] and doc["source"] == "<input folder>"
    assert doc["totals"] == {"files": 4, "written": 3, "done": 0, "flagged": 0, "refused": 0, "failed": 1,
                             "outputs": 3, "skipped": 1, "duplicates": 0}
    # a folder's files come before its sub-folders: the notes are input file 1, the cut file 2
    (failed,) = [f for f in doc["files"] if f["status"] == "failed"]
    assert failed["label"] == "input file 2" and "truncated" in failed["error"] and failed["outputs"] == []
    written = [f for f in doc["files"] if f["status"] == "written"]
    assert [f["label"] for f in written] == ["input file 3", "input file 4", "input file 5"]
    for entry in written:  # outputs relative to DST, named by pseudonyms; the element counts of the file
        (output,) = entry["outputs"]
        assert (dst / output).is_file() and output.endswith(".dcm") and entry["info"]["removed"] > 0
    assert doc["skipped"] == [{"reason": "not a DICOM file", "count": 1, "paths": []}]
    assert "report: <out>/report.html" in " ".join(console.split())
    # the report is no output: the manifest counts the three DICOM files
    assert json.loads((dst / MANIFEST_NAME).read_text())["outputs"] == 3


def test_anonymize_exit_codes_0_3_1_and_no_report(tmp_path: Path) -> None:
    key = str(_keyfile(tmp_path))
    good = _tree(tmp_path / "good", n=2)
    result = CliRunner().invoke(app, ["anonymize", str(good), str(tmp_path / "a"), "--key", key])
    assert result.exit_code == 0 and _report(tmp_path / "a")[0]["totals"]["written"] == 2
    partial = _planted_tree(tmp_path / "partial")
    result = CliRunner().invoke(app, ["anonymize", str(partial), str(tmp_path / "b"), "--key", key, "--no-report"])
    assert result.exit_code == EXIT_COMPLETED_WITH_FAILURES == 3
    assert len(_files(tmp_path / "b")) == 3 and not (tmp_path / "b" / REPORT_JSON).exists()
    assert not (tmp_path / "b" / REPORT_HTML).exists() and "report:" not in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cut.dcm").write_bytes((good / "series 0" / "IM0000").read_bytes()[:700])
    result = CliRunner().invoke(app, ["anonymize", str(broken), str(tmp_path / "c"), "--key", key])
    assert result.exit_code == 1 and "nothing was written" in result.output
    assert not (tmp_path / "c").exists()  # the folder the run made is gone, report and all


def test_a_report_in_dst_does_not_stop_a_resume_or_count_as_an_output(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=3)
    dst = tmp_path / "out"
    args = ["anonymize", str(src), str(dst), "--key", str(_keyfile(tmp_path))]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = _files(dst)
    next(p for p in dst.rglob("*.dcm")).unlink()  # an interrupted run: one output missing
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 file(s) de-identified, 2 already done by an earlier run" in result.output
    assert _files(dst) == first
    doc, _ = _report(dst)
    assert (doc["totals"]["written"], doc["totals"]["done"]) == (1, 2)
    assert sorted(s for f in doc["files"] for s in f["outputs"]) == sorted(first)
    # a folder holding only a run report (a run where every file failed) holds no outputs of another job
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cut.dcm").write_bytes((src / "series 0" / "IM0000").read_bytes()[:700])
    assert CliRunner().invoke(app, ["anonymize", str(broken), str(empty), "--key", str(_keyfile(tmp_path))]
                              ).exit_code == 1
    assert sorted(p.name for p in empty.iterdir()) == [REPORT_HTML, REPORT_JSON]
    result = CliRunner().invoke(app, ["anonymize", str(src), str(empty), "--key", str(_keyfile(tmp_path))])
    assert result.exit_code == 0 and "no record of the run" not in result.output


def test_jobs_and_the_deprecated_workers_alias(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in", n=25, series=2)  # 50 files: above the pool threshold
    key = str(_keyfile(tmp_path))
    code, _, err = _console(tmp_path, "anonymize", str(src), str(tmp_path / "j2"), "--key", key, "--jobs", "2")
    assert code == 0 and "deprecated" not in err
    assert _report(tmp_path / "j2")[0]["jobs"] == 2
    code, _, err = _console(tmp_path, "anonymize", str(src), str(tmp_path / "j1"), "--key", key, "-j", "1")
    assert code == 0 and _report(tmp_path / "j1")[0]["jobs"] == 1
    code, _, err = _console(tmp_path, "anonymize", str(src), str(tmp_path / "w2"), "--key", key, "--workers", "2")
    assert code == 0 and err.splitlines() == ["warning: --workers is deprecated: use --jobs"]
    assert _report(tmp_path / "w2")[0]["jobs"] == 2
    assert _files(tmp_path / "j2") == _files(tmp_path / "j1") == _files(tmp_path / "w2")
    code, _, err = _console(tmp_path, "anonymize", str(src), str(tmp_path / "both"), "--jobs", "1", "--workers", "2")
    assert code == 2 and "--jobs" in err and not (tmp_path / "both").exists()
    _, out, _ = _console(tmp_path, "anonymize", "--help")
    assert "--jobs" in out and "--workers" not in out and "--no-report" in out


def test_one_report_type_for_convert_and_anonymize_runs(tmp_path: Path) -> None:
    import convert.batch
    import convert.report
    from convert.batch import convert_dicom_tree

    src = _tree(tmp_path / "in", n=3)
    anonymized = convert.anonymize(src, tmp_path / "anon", key=KEY)
    converted = convert_dicom_tree(src, tmp_path / "nifti")
    assert type(anonymized) is type(converted) is convert.report.Report
    assert convert.anonymize.Report is convert.batch.Report is convert.report.Report
    assert {type(o) for o in anonymized.outcomes + converted.outcomes} == {convert.report.Outcome}
    assert (anonymized.kind, converted.kind) == ("anonymize", "convert")
    assert anonymized.ok and converted.ok and len(anonymized.outputs) == 3
    assert not (tmp_path / "anon" / REPORT_JSON).exists()  # the API writes one when asked (reports=True)
    again = convert.anonymize(src, tmp_path / "anon2", key=KEY, reports=True, jobs=1)
    assert json.loads((tmp_path / "anon2" / REPORT_JSON).read_text())["totals"]["written"] == 3
