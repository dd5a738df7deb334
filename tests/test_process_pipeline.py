"""convert/process/pipeline.py: steps as data, the CLI's fixed order, and steps through convert.convert()."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

import convert
from convert.cli import app
from convert.errors import UnsupportedDataError
from convert.process import CLI_ORDER, Pipeline, Step, hu, reorient, resample, window
from convert.process.pipeline import from_options, sidecar_with_history
from convert.sample import SeriesSpec, write_series
from convert.volume import Meta, Volume
from tests.conftest import oblique_affine


def _ct() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(0, 2000, (12, 10, 8)).astype(np.uint16), oblique_affine(), Meta(modality="CT"),
                  intercept=-1024.0)


def test_chained_calls_and_list_of_steps_give_the_same_volume():
    chained = Pipeline().hu().reorient("RAS").resample(1.5).window("brain", output="unit")
    listed = Pipeline([Step("hu"), Step("reorient", ("RAS",)), Step("resample", (1.5,)),
                       Step("window", ("brain",), {"output": "unit"})])
    by_hand = window(resample(reorient(hu(_ct()), "RAS"), 1.5), "brain", output="unit")
    for pipe in (chained, listed):
        out = pipe(_ct())
        assert np.array_equal(out.voxels(), by_hand.voxels())
        np.testing.assert_allclose(out.affine, by_hand.affine)
        assert [h["step"] for h in out.history] == ["hu", "reorient", "resample", "window"]
    functions = Pipeline([hu, lambda v: reorient(v, "LPS")])
    assert functions(_ct()).orientation == "LPS"
    with pytest.raises(UnsupportedDataError, match="unknown processing step"):
        Step("blur")


def test_cli_order_is_fixed_whatever_the_order_of_the_flags():
    pipe = from_options(normalize="zscore", pad=[40, 40, 40], window="brain", resample=[1, 1, 1], reorient="ras",
                        crop_foreground=True, hu=True)
    assert [s.name for s in pipe.steps] == list(CLI_ORDER)
    assert from_options() is None


def test_cli_options_are_checked_before_reading():
    with pytest.raises(UnsupportedDataError, match="unknown window"):
        from_options(window="nope")
    with pytest.raises(UnsupportedDataError, match="positive"):
        from_options(resample=[1, 0, 1])
    with pytest.raises(UnsupportedDataError, match="axis code"):
        from_options(reorient="RAX")
    with pytest.raises(UnsupportedDataError, match="apply with --resample"):
        from_options(labels=True)


def test_api_convert_with_steps_on_a_nifti_records_them_beside_it(tmp_path):
    src = tmp_path / "in.nii.gz"
    v = _ct()
    nib.save(nib.Nifti1Image(v.scaled().astype(np.int16), v.affine), src)
    out = tmp_path / "out.nii.gz"
    written = convert.convert(src, out, process=Pipeline().reorient("LPS").resample(2.0).normalize("minmax"))
    assert written == [out, tmp_path / "out.json"]
    img = nib.load(out)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], (2.0, 2.0, 2.0), atol=1e-5)
    steps = json.loads((tmp_path / "out.json").read_text())["MedconvertProcessing"]
    assert [s["step"] for s in steps] == ["reorient", "resample", "normalize"]
    assert {"min", "max", "voxels"} <= set(steps[-1])
    assert src.exists()


def test_cli_convert_dicom_with_processing_flags(tmp_path):
    dicom = tmp_path / "dicom"
    write_series(dicom, SeriesSpec(rows=32, columns=32, slices=12, pixel_spacing=(3.0, 3.0), slice_spacing=4.0,
                                   extra={"WindowCenter": 40, "WindowWidth": 80}))
    out = tmp_path / "ct.nii.gz"
    args = ["convert", str(dicom), str(out), "--normalize", "zscore", "--window", "dicom", "--pad", "110,110,60",
            "--resample", "1,1,1", "--reorient", "RAS", "--hu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    img = nib.load(out)
    assert img.shape == (110, 110, 60) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
    sidecar = json.loads((tmp_path / "ct.json").read_text())
    steps = [s["step"] for s in sidecar["MedconvertProcessing"]]
    assert steps == ["hu", "reorient", "resample", "pad_to", "window", "normalize"]
    stats = sidecar["MedconvertProcessing"][-1]
    data = np.asarray(img.dataobj, dtype=np.float64)
    assert abs(data.mean()) < 1e-3 and stats["std"] > 0  # statistics recorded, applied
    assert sidecar["MedconvertProcessing"][4]["window"] == "dicom"
    # the world position of the volume's centre is kept through reorientation, resampling and padding
    plain = tmp_path / "plain.nii.gz"
    assert CliRunner().invoke(app, ["convert", str(dicom), str(plain)]).exit_code == 0
    ref = nib.load(plain)
    centre = lambda im: im.affine[:3, :3] @ ((np.array(im.shape[:3]) - 1) / 2) + im.affine[:3, 3]  # noqa: E731
    assert np.abs(centre(img) - centre(ref)).max() <= 0.5 + 1e-6  # padding centres to within half a voxel


def test_cli_hu_on_mr_fails_with_one_line_and_writes_nothing(tmp_path):
    dicom = tmp_path / "mr"
    write_series(dicom, SeriesSpec(rows=16, columns=16, slices=4, modality="MR", rescale_intercept=0.0))
    out = tmp_path / "mr.nii.gz"
    result = CliRunner().invoke(app, ["convert", str(dicom), str(out), "--hu"])
    assert result.exit_code == 1
    assert "--hu applies to CT only; this volume's modality is MR" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.glob("mr.*"))


@pytest.mark.parametrize("args,message", [
    (["--window", "nope"], "unknown window 'nope'"),
    (["--resample", "0,1,1"], "must be three positive numbers"),
    (["--resample", "a,b"], "takes numbers separated by commas"),
    (["--reorient", "XYZ"], "is not an axis code"),
])
def test_cli_bad_processing_options(tmp_path, args, message):
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), src)
    result = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "o.nii"), *args])
    assert result.exit_code in (1, 2) and message in result.output
    assert not (tmp_path / "o.nii").exists()


def test_cli_resample_of_a_4d_volume_is_refused(tmp_path):
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), src)
    result = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "o.nii"), "--resample", "2"])
    assert result.exit_code == 1 and "works on 3D volumes; this one is 4D" in result.output
    assert not (tmp_path / "o.nii").exists()


def test_sidecar_axis_fields_follow_reorientation_and_slice_timing_is_dropped_on_resampling():
    v = Volume(np.zeros((4, 5, 6), np.int16), np.eye(4))
    flipped = reorient(v, "LPI")  # i and j flip, k flips
    sidecar = {"PhaseEncodingDirection": "j-", "SliceTiming": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]}
    out, warnings = sidecar_with_history(sidecar, flipped.history)
    assert out["PhaseEncodingDirection"] == "j" and out["SliceEncodingDirection"] == "k-"
    assert out["SliceTiming"] == sidecar["SliceTiming"] and not warnings
    permuted = reorient(v, "SRA")  # k becomes axis 0
    out, _ = sidecar_with_history(sidecar, permuted.history)
    assert out["PhaseEncodingDirection"] == "k-" and out["SliceEncodingDirection"] == "i"
    out, warnings = sidecar_with_history(sidecar, resample(v.replace(array=v.voxels().astype(np.float32)), 2.0).history)
    assert "SliceTiming" not in out and "SliceTiming" in warnings[0]


def test_the_docs_example_runs(tmp_path, monkeypatch, capsys):
    import re

    from tests.conftest import REPO

    text = (REPO / "docs" / "processing.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "write_sample" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/processing.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "['hu', 'reorient', 'resample', 'window']" in printed
    assert (tmp_path / "processing-demo" / "ct.png").is_file()
    assert (tmp_path / "processing-demo" / "ct.npz").is_file()


@pytest.mark.parametrize("name", ["r.nii", "r.nii.gz", "r.nrrd", "r.mnc", "r.npz"])
def test_a_reoriented_view_is_written_right_by_every_writer(tmp_path, name):
    """reorient hands writers a permuted, flipped view (no copy): world positions must survive every writer."""
    import SimpleITK as sitk

    v = Volume(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7), oblique_affine())
    out = reorient(v, "SLP")
    assert not out.voxels().flags.c_contiguous and not out.voxels().flags.f_contiguous
    convert.save(out, tmp_path / name)
    back = convert.load(tmp_path / name)
    assert np.array_equal(back.voxels(), out.voxels())
    np.testing.assert_allclose(back.affine, out.affine, atol=1e-5)
    if name.endswith((".nii", ".nii.gz", ".nrrd")):  # an independent reader: value at a voxel and its place
        image = sitk.ReadImage(str(tmp_path / name))
        value = int(sitk.GetArrayViewFromImage(image)[3, 2, 1])
        lps = np.array(image.TransformIndexToPhysicalPoint((1, 2, 3)))
        source = np.argwhere(v.voxels() == value)[0]
        np.testing.assert_allclose(-lps[:2], v.world_coordinates(source)[:2], atol=1e-4)
        np.testing.assert_allclose(lps[2], v.world_coordinates(source)[2], atol=1e-4)
