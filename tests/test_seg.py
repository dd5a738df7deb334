"""convert/dicom/seg.py: label maps as DICOM SEG over a reference series, checked through highdicom in world space."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import convert
from conftest import require_tool
from convert.dicom.seg import labels_on_reference, write_seg
from convert.errors import ConvertError, GeometryError, UnsupportedDataError
from convert.sample import ORIENTATIONS, SeriesSpec, write_series
from convert.geometry import lps_to_ras
from convert.volume import Volume


@pytest.fixture
def reference(tmp_path) -> tuple[Path, Volume]:
    row, col = ORIENTATIONS["oblique"]
    folder = tmp_path / "ref"
    write_series(folder, SeriesSpec(rows=12, columns=10, slices=6, row_cosine=row, column_cosine=col))
    return folder, convert.load(folder)


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int16)
    labels[2:5, 3:9, 1:3] = 1  # off-centre blocks: a flip in any axis moves them
    labels[6:9, 1:4, 4] = 7
    labels[0, 0, 0] = 3
    return labels


def _flipped_rows(volume: Volume) -> Volume:
    """The same label map with j reversed (what a NIfTI made by dcm2niix looks like)."""
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1.0, volume.shape[1] - 1.0
    return Volume(volume.voxels()[:, ::-1, :].copy(), volume.affine @ flip)


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float64), affine))
    return np.asarray(img.dataobj), img.affine


def _highdicom_label_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(label values ``[i, j, k]``, RAS+ affine) of a SEG, read by highdicom alone (its own geometry)."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    volume = seg.get_volume(combine_segments=True)  # array (slice, row, column), affine -> LPS mm
    numbers = np.asarray(volume.array)
    values = np.zeros(numbers.shape, dtype=np.int32)
    for number in seg.get_segment_numbers():
        values[numbers == number] = int(seg.get_segment_description(number).SegmentLabel.split()[-1])
    lps = np.asarray(volume.affine)  # maps (slice, row, column) indices
    to_ijk = np.zeros((4, 4))
    to_ijk[0, 2] = to_ijk[1, 1] = to_ijk[2, 0] = to_ijk[3, 3] = 1.0  # (i, j, k) -> (column, row, slice)
    return values.transpose(2, 1, 0), lps_to_ras(lps @ to_ijk)


@pytest.mark.parametrize("kind", ["BINARY", "LABELMAP"])
def test_seg_round_trips_through_highdicom_in_world_space(tmp_path, reference, kind):
    """Written from a row-flipped label map; highdicom's own geometry puts every label where it was."""
    folder, ref = reference
    labels = Volume(_labels(ref.shape), ref.affine)
    files = write_seg(_flipped_rows(labels), tmp_path / "seg", reference=folder, segmentation_type=kind)
    assert [p.name for p in files] == ["SEG0001.dcm"]
    values, affine = _highdicom_label_map(files[0])
    got, got_affine = _canonical(values, affine)
    want, want_affine = _canonical(labels.voxels(), labels.affine)
    np.testing.assert_allclose(got_affine, want_affine, atol=1e-4)
    np.testing.assert_array_equal(got, want)


def test_seg_frames_sit_on_their_source_images_ohif_3420(tmp_path, reference):
    """SEGs shown flipped (OHIF #3420, QuantitativeReporting #273): each frame references the source image
    at its own position, and its rows/columns are that image's rows/columns."""
    folder, ref = reference
    labels = _labels(ref.shape)
    seg = pydicom.dcmread(write_seg(Volume(labels, ref.affine), tmp_path / "seg", reference=folder)[0])
    sources = {}
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sources[ds.SOPInstanceUID] = ds
    frames = seg.pixel_array  # (frames, rows, columns), one bit plane per segment
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
               for f in seg.PerFrameFunctionalGroupsSequence]
    lps = np.diag([-1, -1, 1, 1]) @ ref.affine
    for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = sources[uid]
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, [float(v) for v in source.ImagePositionPatient], atol=1e-4)
        k = int(round(np.linalg.solve(lps[:3, :3], np.asarray(position) - lps[:3, 3])[2]))
        value = sorted(set(np.unique(labels)) - {0})[numbers[n] - 1]
        np.testing.assert_array_equal(frames[n].astype(bool), (labels[:, :, k] == value).T)


def test_seg_passes_dciodvfy(tmp_path, reference):
    dciodvfy = require_tool("dciodvfy")
    folder, ref = reference
    path = write_seg(Volume(_labels(ref.shape), ref.affine), tmp_path / "seg", reference=folder)[0]
    proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("Error", "Abort"))]
    assert not errors, errors


def test_seg_shares_the_reference_study_and_frame_of_reference_with_new_uids(tmp_path, reference):
    folder, ref = reference
    seg = pydicom.dcmread(write_seg(Volume(_labels(ref.shape), ref.affine), tmp_path / "seg", reference=folder)[0])
    source = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.PatientID == source.PatientID
    assert seg.SeriesInstanceUID.startswith("2.25.") and seg.SOPInstanceUID.startswith("2.25.")
    assert seg.DimensionOrganizationSequence[0].DimensionOrganizationUID.startswith("2.25.")
    assert seg.file_meta.MediaStorageSOPClassUID == seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"


def test_label_map_off_the_reference_grid_is_refused(tmp_path, reference):
    folder, ref = reference
    shifted = ref.affine.copy()
    shifted[:3, 3] += 0.4 * ref.affine[:3, 0]  # 0.4 voxel: not the same grid
    with pytest.raises(GeometryError, match="not on the reference"):
        write_seg(Volume(_labels(ref.shape), shifted), tmp_path / "seg", reference=folder)
    with pytest.raises(GeometryError, match="cover"):
        write_seg(Volume(_labels((10, 12, 5)), ref.affine), tmp_path / "seg", reference=folder)
    assert not (tmp_path / "seg").exists()


def test_labels_on_reference_undoes_any_axis_permutation_and_flip(reference):
    _, ref = reference
    labels = Volume(_labels(ref.shape), ref.affine)
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, ref.shape[2] - 1.0
    swapped = np.eye(4)[[1, 0, 2, 3]]  # label axis 0 is reference axis 1
    moved = Volume(labels.voxels()[:, :, ::-1].transpose(1, 0, 2).copy(), ref.affine @ flip @ swapped)
    np.testing.assert_array_equal(labels_on_reference(moved, ref.affine, ref.shape), labels.voxels())


def test_reference_with_uneven_slices_is_refused(tmp_path):
    from convert.errors import DicomError

    write_series(tmp_path / "ref", SeriesSpec(rows=6, columns=5, slice_offsets=[0.0, 2.0, 5.0, 7.0]))
    labels = Volume(np.ones((5, 6, 4), np.int16), np.eye(4))
    with pytest.raises(DicomError, match="unevenly spaced"):
        write_seg(labels, tmp_path / "seg", reference=tmp_path / "ref")
    assert not (tmp_path / "seg").exists()


def test_bad_label_maps_and_missing_reference_are_clear_errors(tmp_path, reference):
    folder, ref = reference
    with pytest.raises(ConvertError, match="--reference"):
        write_seg(Volume(_labels(ref.shape), ref.affine), tmp_path / "seg")
    with pytest.raises(UnsupportedDataError, match="empty"):
        write_seg(Volume(np.zeros(ref.shape, np.int16), ref.affine), tmp_path / "seg", reference=folder)
    with pytest.raises(UnsupportedDataError, match="fractions"):
        write_seg(Volume(_labels(ref.shape) * 0.5, ref.affine), tmp_path / "seg", reference=folder)
    with pytest.raises(UnsupportedDataError, match="positive"):
        write_seg(Volume(-_labels(ref.shape), ref.affine), tmp_path / "seg", reference=folder)
    assert not (tmp_path / "seg").exists()


def test_cli_to_dicom_seg_with_reference(tmp_path, reference):
    from typer.testing import CliRunner

    from convert.cli import app

    folder, ref = reference
    src = tmp_path / "labels.nii.gz"
    convert.save(_flipped_rows(Volume(_labels(ref.shape), ref.affine)), src)
    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "seg"), "--to", "dicom-seg",
                                 "--reference", str(folder)])
    assert result.exit_code == 0 and "SEG0001.dcm" in result.output, result.output
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "seg2"), "--to", "dicom-seg"])
    assert result.exit_code == 2 and "--reference" in result.output and not (tmp_path / "seg2").exists()
