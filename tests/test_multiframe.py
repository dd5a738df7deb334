"""Enhanced multi-frame DICOM and Siemens mosaic: real scanner files vs dcm2niix, and synthetic quirks."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from convert.dicom.multiframe import (
    is_enhanced,
    is_mosaic,
    mosaic_affine_lps,
    mosaic_slice_count,
    mosaic_tile_shape,
    read_enhanced,
    stack_volumes,
    unmosaic,
)
from convert.errors import ConvertError, CorruptFileError, DicomError, GeometryError
from convert.formats.nifti import NIFTI_GZ
from convert.geometry import lps_to_ras
from convert.volume import Volume
from tests.conftest import conformance_dir, rotation

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


# --------------------------------------------------------------------------- helpers
def canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stored values, real values, affine) of ``img`` reoriented to closest canonical (RAS+)."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(img.affine)
    proxy = img.dataobj
    stored = np.asarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    stored = apply_orientation(stored, ornt)
    affine = img.affine @ inv_ornt_aff(ornt, img.shape)
    return stored, stored * float(slope) + float(inter), affine


def assert_matches_reference(volume: Volume, ref_path: Path, *, exact: bool = True, tmp_path: Path | None = None):
    """World-space comparison with a dcm2niix NIfTI: shape, affine (1e-3 mm), values."""
    if tmp_path is not None:  # go through our writer and read back with nibabel
        out = tmp_path / "ours.nii.gz"
        NIFTI_GZ.write(volume, out)
        ours_img = nib.load(out)
    else:
        ours_img = nib.Nifti1Image(volume.array, volume.affine)
        ours_img.header.set_slope_inter(volume.slope, volume.intercept)
        ours_img = nib.Nifti1Image.from_bytes(ours_img.to_bytes())
    ours_stored, ours_values, ours_affine = canonical(ours_img)
    ref_stored, ref_values, ref_affine = canonical(nib.load(ref_path))
    assert ours_stored.shape == ref_stored.shape
    np.testing.assert_allclose(ours_affine, ref_affine, atol=1e-3)
    if exact:
        assert np.array_equal(ours_stored, ref_stored)
    np.testing.assert_allclose(ours_values, ref_values, rtol=1e-4, atol=1e-2)


# --------------------------------------------------------------------------- real data: enhanced
@pytest.mark.conformance
def test_philips_enhanced_splits_magnitude_and_fieldmap_like_dcm2niix():
    enh = conformance_dir("dcm_qa_enh")
    path = enh / "In" / "Philips" / "IM_0027_fMAP.dcm"
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert is_enhanced(header)
    volumes = read_enhanced(path, header)  # header without pixels: read again
    assert len(volumes) == 2
    magnitude, fieldmap = volumes
    assert magnitude.meta.acquisition["ImageType"][-1] == "MAGNITUDE"
    assert "FIELD_MAP" in fieldmap.meta.acquisition["ImageType"]
    assert magnitude.meta.acquisition["EchoTime"] == pytest.approx(0.00152)
    assert fieldmap.meta.window == ((0.0, 1000.0),)
    assert fieldmap.meta.units == "Hz"  # RealWorldValueMapping units, same scaling as RescaleSlope
    assert magnitude.meta.units is None  # UCUM "1": no units
    ref = enh / "ref-dcm2niix"
    # field map in Hz: stored values identical and the same real values (slope 0.2442, intercept -500)
    assert_matches_reference(fieldmap, ref / "In_WIP_B0_NS_801_e2_fieldmaphz.nii.gz")
    # magnitude: Philips "precise" values (1/ScaleSlope) by default, as dcm2niix writes them
    assert_matches_reference(magnitude, ref / "In_WIP_B0_NS_801_e1.nii.gz")
    assert magnitude.slope == pytest.approx(1 / 8.448640073766e-06)


@pytest.mark.conformance
def test_philips_enhanced_display_scaling_matches_dcm2niix_p_n(tmp_path):
    from tests.conftest import require_tool

    dcm2niix = require_tool("dcm2niix")
    enh = conformance_dir("dcm_qa_enh")
    path = enh / "In" / "Philips" / "IM_0027_fMAP.dcm"
    import subprocess

    subprocess.run([dcm2niix, "-p", "n", "-b", "y", "-z", "y", "-f", "%s", "-o", str(tmp_path), str(path)],
                   check=True, capture_output=True)
    magnitude, fieldmap = read_enhanced(path, philips_scaling="display")
    assert magnitude.slope == pytest.approx(1.27985347985347)  # RescaleSlope: display values
    assert_matches_reference(magnitude, tmp_path / "801_e1.nii.gz")
    assert_matches_reference(fieldmap, tmp_path / "801_e2_fieldmaphz.nii.gz")
    # both choices record the three factors of the first frame and the choice, as dcm2niix does
    import json

    ref = json.loads((tmp_path / "801_e1.json").read_text())
    assert ref["UsePhilipsFloatNotDisplayScaling"] == 0
    precise = read_enhanced(path)[0]
    for volume, flag in ((magnitude, 0), (precise, 1)):
        acq = volume.meta.acquisition
        assert acq["UsePhilipsFloatNotDisplayScaling"] == flag
        for key in ("PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope"):
            assert acq[key] == pytest.approx(ref[key], rel=1e-5)
    # same voxels and geometry either way; the real values differ by RS * SS only
    np.testing.assert_array_equal(precise.array, magnitude.array)
    np.testing.assert_allclose(precise.affine, magnitude.affine)
    assert precise.slope * (1.27985347985347 * 8.448640073766e-06) == pytest.approx(magnitude.slope)


def test_philips_scaling_rejects_an_unknown_choice(tmp_path):
    with pytest.raises(ConvertError, match="philips_scaling must be one of precise, display"):
        read_enhanced(tmp_path / "x.dcm", Dataset(), philips_scaling="float")


@pytest.mark.conformance
def test_siemens_xa_enhanced_fmri_4d_matches_dcm2niix(tmp_path):
    enh = conformance_dir("dcm_qa_enh")
    files = sorted((enh / "In" / "Siemens" / "XA10").glob("*.dcm"), key=lambda p: int(p.stem.split("_")[1]))
    per_file = [read_enhanced(f) for f in files]
    assert [len(v) for v in per_file] == [1, 1, 1, 1]
    assert all(v[0].shape == (64, 64, 6) for v in per_file)
    volume = stack_volumes([v[0] for v in per_file])
    assert volume.shape == (64, 64, 6, 4)
    assert volume.meta.time_step == pytest.approx(0.5)
    # multiband slice timing from FrameAcquisitionDateTime, as dcm2niix reports it
    assert volume.meta.acquisition["SliceTiming"] == pytest.approx([0.16, 0, 0.32, 0.16, 0, 0.32])
    assert_matches_reference(volume, enh / "ref-dcm2niix" / "In_REST1_w_SMS_PF7-8_6.nii.gz", tmp_path=tmp_path)


# --------------------------------------------------------------------------- real data: mosaic
MOSAIC_SERIES = [("mr_0003", "AP_3"), ("mr_0004", "PA_4"), ("mr_0005", "RL_5"), ("mr_0006", "LR_6")]


def read_mosaic_series(folder: Path) -> tuple[Volume, list[Dataset]]:
    """What the series reader does for a mosaic series: one time point per file."""
    datasets = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    datasets.sort(key=lambda ds: int(ds.InstanceNumber))
    stacks = [unmosaic(ds.pixel_array, ds).transpose(1, 0, 2) for ds in datasets]  # [row,col,k] -> [i,j,k]
    affine = lps_to_ras(mosaic_affine_lps(datasets[0]))
    return Volume(np.stack(stacks, axis=-1), affine), datasets


@pytest.mark.conformance
@pytest.mark.parametrize("series, name", MOSAIC_SERIES)
def test_siemens_mosaic_series_matches_dcm2niix(series, name):
    nih = conformance_dir("dcm_qa_nih")
    volume, datasets = read_mosaic_series(nih / "In" / "20180918Si" / series)
    assert is_mosaic(datasets[0])
    assert mosaic_slice_count(datasets[0]) == 5
    assert mosaic_tile_shape(datasets[0]) == (72, 72, 3)
    assert_matches_reference(volume, nih / "ref-dcm2niix" / f"In_EPI_PE={name}.nii.gz")


@pytest.mark.conformance
def test_mosaic_affine_agrees_with_nibabel_mosaic_wrapper():
    nih = conformance_dir("dcm_qa_nih")
    path = next((nih / "In" / "20180918Si" / "mr_0005").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_data(ds)
        theirs = np.asarray(wrapper.get_data())
    # nibabel's voxel order is [row, col, slice]; ours is [col, row, slice]
    np.testing.assert_allclose(mosaic_affine_lps(ds), wrapper.affine[:, [1, 0, 2, 3]], atol=1e-4)
    assert np.array_equal(unmosaic(ds.pixel_array, ds), theirs)


@pytest.mark.conformance
def test_enhanced_and_classic_files_are_not_mosaics():
    enh = conformance_dir("dcm_qa_enh")
    ds = pydicom.dcmread(enh / "In" / "Siemens" / "XA10" / "6_1.dcm", stop_before_pixels=True)
    assert not is_mosaic(ds)
    nih = conformance_dir("dcm_qa_nih")
    ge = next((nih / "In" / "20180918GE" / "mr_0004").glob("*.dcm"))
    ge_ds = pydicom.dcmread(ge, stop_before_pixels=True)
    assert not is_mosaic(ge_ds)
    assert not is_enhanced(ge_ds)


# --------------------------------------------------------------------------- synthetic enhanced MR
def _item(**attrs) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def make_enhanced(
    path: Path,
    *,
    rows: int = 4,
    cols: int = 5,
    n_slices: int = 3,
    n_times: int = 2,
    echoes: tuple[float, ...] = (10.0, 20.0),
    rotation_matrix: np.ndarray | None = None,
    origin: tuple[float, float, float] = (-20.5, 10.25, 33.0),
    pixel_spacing: tuple[float, float] = (0.9, 1.3),  # (between rows, between columns)
    slice_step: float = 2.5,
    slopes: dict[int, float] | None = None,
    shuffle: bool = True,
    steps: list[float] | None = None,
    components: tuple[str, ...] = ("MAGNITUDE",),
) -> tuple[Path, list[dict]]:
    """Write an Enhanced MR file; return its path and per-frame truth (frame index -> (echo, k, t, part)).

    ``components``: the ComplexImageComponent of each image part (e.g. ``("MAGNITUDE", "PHASE")``;
    FrameType value 3 follows it: ``M``, ``P``, ``R``, ``I``); every part holds every echo, slice and time.
    """
    rot = np.eye(3) if rotation_matrix is None else rotation_matrix
    row_cos, col_cos, normal = rot[:, 0], rot[:, 1], rot[:, 2]
    truth = []
    for c, component in enumerate(components):
        for e, echo in enumerate(echoes):
            for t in range(n_times):
                for k in range(n_slices):
                    offset = sum(steps[:k]) if steps else k * slice_step
                    truth.append({"echo": e, "echo_time": echo, "k": k, "t": t, "part": c, "component": component,
                                  "ipp": np.asarray(origin) + normal * offset})
    order = np.random.default_rng(7).permutation(len(truth)) if shuffle else np.arange(len(truth))
    truth = [truth[n] for n in order]

    per_frame = []
    pixels = np.zeros((len(truth), rows, cols), dtype=np.int16)
    for n, fr in enumerate(truth):
        pixels[n] = (fr["part"] * 3000 + fr["echo"] * 1000 + fr["t"] * 100 + fr["k"] * 10
                     + np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) % 10)
        item = Dataset()
        item.FrameContentSequence = Sequence([_item(
            StackID="1", InStackPositionNumber=fr["k"] + 1, TemporalPositionIndex=fr["t"] + 1,
            DimensionIndexValues=[1, fr["k"] + 1, fr["t"] + 1],
            FrameAcquisitionDateTime=f"20200101120000.{fr['k'] * 100000 + fr['t'] * 0:06d}"[:21],
        )])
        item.PlanePositionSequence = Sequence([_item(ImagePositionPatient=[float(v) for v in fr["ipp"]])])
        item.MREchoSequence = Sequence([_item(EffectiveEchoTime=fr["echo_time"])])
        item.MRImageFrameTypeSequence = Sequence([_item(
            FrameType=["ORIGINAL", "PRIMARY", fr["component"][0], "NONE"], ComplexImageComponent=fr["component"])])
        slope = (slopes or {}).get(fr["k"], 2.0)
        item.PixelValueTransformationSequence = Sequence([_item(RescaleSlope=slope, RescaleIntercept=-5.0,
                                                                RescaleType="US")])
        per_frame.append(item)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([_item(
        ImageOrientationPatient=[float(v) for v in np.concatenate([row_cos, col_cos])])])
    shared.PixelMeasuresSequence = Sequence([_item(PixelSpacing=list(pixel_spacing), SliceThickness=slice_step,
                                                   SpacingBetweenSlices=slice_step)])
    shared.MRTimingAndRelatedParametersSequence = Sequence([_item(RepetitionTime=2000.0, FlipAngle=70)])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENHANCED_MR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "Synthetic"
    ds.PatientName = "Doe^Jane"
    ds.ImageType = ["ORIGINAL", "PRIMARY", components[0][0] if len(components) == 1 else "MIXED", "NONE"]
    ds.NumberOfFrames = len(truth)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path, truth


def _enhanced_sources(tmp_path: Path) -> list[Path]:
    """Folders holding one enhanced file each: a synthetic one, and the real Philips and Siemens XA
    files of ../shared/conformance when present."""
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    make_enhanced(synthetic / "enh.dcm", n_slices=6, n_times=5)
    folders = [synthetic]
    try:
        enh = conformance_dir("dcm_qa_enh")
    except pytest.skip.Exception:
        return folders
    for real in (enh / "In" / "Philips" / "IM_0027_fMAP.dcm", enh / "In" / "Siemens" / "XA10" / "6_1.dcm"):
        folder = tmp_path / real.parent.name
        folder.mkdir()
        (folder / real.name).write_bytes(real.read_bytes())
        folders.append(folder)
    return folders


def test_converting_an_enhanced_file_parses_its_header_once(tmp_path, monkeypatch):
    """The scan keeps an enhanced file's header view: the reader, the naming and the sidecar ask it
    for every frame's functional groups instead of reading and walking the header again (a header
    of thousands of frames is megabytes of elements). Each sequence's items are listed once, each
    item walked once, and pydicom never parses the file."""
    from convert.batch import convert_dicom_tree
    from convert.dicom import elements
    from convert.dicom import header as header_module

    for src in _enhanced_sources(tmp_path):
        walks: list[int] = []  # walks from the data set's first element (not resumed reads of more bytes)
        reparsed: list[int] = []
        visits: dict[tuple[int, int], int] = {}  # (bytes, offset) -> walks of the data set there / its items listed
        pydicom_reads: list[Path] = []
        parse, reparse, walk, items = elements.parse_part10, elements.reparse, elements.walk, elements.items

        def counted_parse(data, *a, **k):
            if k.get("resume") is None:
                walks.append(1)
            return parse(data, *a, **k)

        def counted_walk(data, pos, *a, **k):
            visits[(id(data), pos)] = visits.get((id(data), pos), 0) + 1
            return walk(data, pos, *a, **k)

        def counted_items(data, element, **k):
            key = (id(data), -element.offset)
            visits[key] = visits.get(key, 0) + 1
            return items(data, element, **k)

        monkeypatch.setattr(elements, "parse_part10", counted_parse)
        monkeypatch.setattr(elements, "reparse", lambda *a, **k: reparsed.append(1) or reparse(*a, **k))
        monkeypatch.setattr(elements, "walk", counted_walk)
        monkeypatch.setattr(elements, "items", counted_items)
        real_read_header = header_module.read_header
        monkeypatch.setattr(header_module, "read_header",
                            lambda path, **k: pydicom_reads.append(path) or real_read_header(path, **k))
        report = convert_dicom_tree(src, tmp_path / f"out-{src.name}", jobs=1)
        monkeypatch.undo()
        assert report.ok and report.written, src
        assert (len(walks), len(reparsed)) == (1, 0), src  # the scan's read: the only one
        assert max(visits.values()) == 1, src
        assert pydicom_reads == [], src


def test_an_enhanced_conversion_writes_the_bytes_it_wrote_when_the_reader_read_the_header_again(
        tmp_path, monkeypatch):
    """Keeping the scan's header view changes how often the header is parsed, never an output byte."""
    from convert.batch import convert_dicom_tree
    from convert.dicom import scan as scan_module

    for src in _enhanced_sources(tmp_path):
        kept = convert_dicom_tree(src, tmp_path / f"kept-{src.name}", jobs=1, reports=False)
        index_file = scan_module.index_file

        def dropping_the_header(path):
            outcome = index_file(path)
            if isinstance(outcome, scan_module.Instance):
                object.__setattr__(outcome, "header", None)  # as before: the reader reads the file again
            return outcome

        monkeypatch.setattr(scan_module, "index_file", dropping_the_header)
        again = convert_dicom_tree(src, tmp_path / f"again-{src.name}", jobs=1, reports=False)
        monkeypatch.undo()
        assert kept.ok and again.ok
        names = sorted(p.name for p in kept.written)
        assert names == sorted(p.name for p in again.written) and names, src
        for path in kept.written:
            assert path.read_bytes() == (tmp_path / f"again-{src.name}" / path.name).read_bytes(), path.name


def expected_world_lps(ipp, row_cos, col_cos, pixel_spacing, r, c) -> np.ndarray:
    """PS3.3 C.7.6.2.1.1: position of pixel (row r, column c) of a frame."""
    return np.asarray(ipp) + np.asarray(row_cos) * pixel_spacing[1] * c + np.asarray(col_cos) * pixel_spacing[0] * r


def test_synthetic_enhanced_oblique_geometry_split_and_order(tmp_path):
    rot = rotation(0.3, -0.2, 0.45)
    path, truth = make_enhanced(tmp_path / "enh.dcm", rotation_matrix=rot)
    volumes = read_enhanced(path)
    assert len(volumes) == 2  # one per echo
    for e, volume in enumerate(volumes):
        assert volume.shape == (5, 4, 3, 2)  # [i=col, j=row, k, t]
        assert volume.meta.acquisition["EchoTime"] == pytest.approx((10.0, 20.0)[e] / 1000)
        assert volume.meta.acquisition["EchoNumber"] == e + 1
        assert volume.slope == 2.0 and volume.intercept == -5.0
        assert volume.dtype == np.int16
        for fr in truth:
            if fr["echo"] != e:
                continue
            k, t = fr["k"], fr["t"]
            # content: value encodes echo, t and k
            assert volume.array[0, 0, k, t] == e * 1000 + t * 100 + k * 10
            for r, c in [(0, 0), (3, 4), (2, 1)]:
                world_ras = volume.world_coordinates(np.array([c, r, k]))
                lps = expected_world_lps(fr["ipp"], rot[:, 0], rot[:, 1], (0.9, 1.3), r, c)
                np.testing.assert_allclose(world_ras, lps * [-1, -1, 1], atol=1e-6)
    assert volumes[0].meta.time_step == pytest.approx(2.0)  # RepetitionTime, equal acquisition times
    assert volumes[0].meta.acquisition["SliceTiming"] == pytest.approx([0.0, 0.1, 0.2])


def test_synthetic_enhanced_roundtrips_through_nifti_with_world_positions(tmp_path):
    rot = rotation(-0.5, 0.1, 1.2)
    path, truth = make_enhanced(tmp_path / "enh.dcm", rotation_matrix=rot, echoes=(5.0,), n_times=1)
    (volume,) = read_enhanced(path)
    out = tmp_path / "out.nii.gz"
    NIFTI_GZ.write(volume, out)
    img = nib.load(out)
    fr = next(f for f in truth if f["k"] == 2)
    lps = expected_world_lps(fr["ipp"], rot[:, 0], rot[:, 1], (0.9, 1.3), 3, 4)
    np.testing.assert_allclose(img.affine @ [4, 3, 2, 1], list(lps * [-1, -1, 1]) + [1], atol=1e-5)
    assert np.asarray(img.dataobj)[4, 3, 2] == pytest.approx((20 + (3 * 5 + 4) % 10) * 2.0 - 5.0)


def test_per_frame_rescale_differs_gives_float32_real_values(tmp_path):
    path, truth = make_enhanced(tmp_path / "enh.dcm", echoes=(5.0,), n_times=1, slopes={0: 1.0, 1: 2.0, 2: 0.5})
    (volume,) = read_enhanced(path)
    assert volume.dtype == np.float32
    assert not volume.is_scaled
    for k, slope in [(0, 1.0), (1, 2.0), (2, 0.5)]:
        assert volume.array[0, 0, k] == pytest.approx((k * 10) * slope - 5.0)


def test_frames_stream_into_one_fortran_array_without_extra_copies(tmp_path):
    """Frames are decoded one at a time into the output: peak memory is about the output itself."""
    import tracemalloc

    path, _ = make_enhanced(tmp_path / "big.dcm", rows=256, cols=256, n_slices=10, n_times=2, echoes=(5.0,))
    tracemalloc.start()
    try:
        (volume,) = read_enhanced(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.shape == (256, 256, 10, 2)
    assert volume.array.flags.f_contiguous  # what the NIfTI writer streams without a copy
    assert peak < 1.5 * volume.array.nbytes  # reading everything then reordering would be ~3x


def test_uneven_slice_spacing_is_refused(tmp_path):
    path, _ = make_enhanced(tmp_path / "gap.dcm", echoes=(5.0,), n_times=1, n_slices=3, steps=[2.5, 4.0])
    with pytest.raises(GeometryError, match="evenly spaced") as info:
        read_enhanced(path)
    assert "gap.dcm" in str(info.value)


def test_incomplete_4d_grid_is_refused(tmp_path):
    path, _ = make_enhanced(tmp_path / "cut.dcm", echoes=(5.0,), n_times=2, shuffle=False)
    ds = pydicom.dcmread(path)
    # drop the last frame: one slice position then has one time point fewer
    n = int(ds.NumberOfFrames) - 1
    ds.PerFrameFunctionalGroupsSequence = Sequence(list(ds.PerFrameFunctionalGroupsSequence)[:n])
    ds.NumberOfFrames = n
    ds.PixelData = ds.PixelData[: n * 4 * 5 * 2]
    ds.save_as(path)
    with pytest.raises(DicomError, match="complete grid") as info:
        read_enhanced(path)
    assert "cut.dcm" in str(info.value)


def test_frame_without_position_is_refused(tmp_path):
    path, _ = make_enhanced(tmp_path / "nopos.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(DicomError, match="ImagePositionPatient"):
        read_enhanced(path)


def test_not_dicom_and_not_enhanced_are_convert_errors(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ConvertError) as info:
        read_enhanced(junk)
    assert "junk.dcm" in str(info.value)
    path, _ = make_enhanced(tmp_path / "enh.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence
    assert not is_enhanced(ds)
    with pytest.raises(DicomError, match="not an enhanced"):
        read_enhanced(path, ds)


def test_truncated_pixel_data_is_refused(tmp_path):
    path, _ = make_enhanced(tmp_path / "short.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(path)
    with pytest.raises((DicomError, CorruptFileError)) as info:
        read_enhanced(path)
    assert "short.dcm" in str(info.value)


def test_stack_volumes_refuses_different_geometry():
    a = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    b = Volume(np.zeros((2, 2, 2), np.int16), np.diag([2.0, 1, 1, 1]))
    with pytest.raises(DicomError, match="same place"):
        stack_volumes([a, b])
    assert stack_volumes([a, a]).shape == (2, 2, 2, 2)


# --------------------------------------------------------------------------- synthetic mosaic
def make_mosaic(n_slices: int = 5, tile: tuple[int, int] = (4, 6), rot: np.ndarray | None = None) -> tuple[Dataset, np.ndarray]:
    """A mosaic header (private NumberOfImagesInMosaic, no CSA) and its frame; tile s holds value 100*s + pixel."""
    per_side = int(np.ceil(np.sqrt(n_slices)))
    rows, cols = tile[0] * per_side, tile[1] * per_side
    frame = np.zeros((rows, cols), np.uint16)
    for s in range(n_slices):
        r0, c0 = (s // per_side) * tile[0], (s % per_side) * tile[1]
        frame[r0:r0 + tile[0], c0:c0 + tile[1]] = 100 * s + np.arange(tile[0] * tile[1]).reshape(tile)
    rot = np.eye(3) if rot is None else rot
    ds = Dataset()
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [2.0, 3.0]
    ds.ImageOrientationPatient = [float(v) for v in np.concatenate([rot[:, 0], rot[:, 1]])]
    ds.ImagePositionPatient = [-100.0, -80.0, 12.0]
    ds.SliceThickness = 3.0
    ds.SpacingBetweenSlices = 4.0
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0A, "US", n_slices)
    return ds, frame


def test_unmosaic_puts_each_tile_at_its_k():
    ds, frame = make_mosaic(n_slices=5, tile=(4, 6))
    assert is_mosaic(ds)
    assert mosaic_slice_count(ds) == 5
    stack = unmosaic(frame, ds)
    assert stack.shape == (4, 6, 5)
    for s in range(5):
        assert np.array_equal(stack[:, :, s], 100 * s + np.arange(24).reshape(4, 6))


def test_mosaic_detected_from_private_count_without_image_type():
    ds, _ = make_mosaic(n_slices=10, tile=(2, 2))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    assert is_mosaic(ds)
    assert mosaic_tile_shape(ds) == (2, 2, 4)


def test_mosaic_ipp_correction_centres_each_slice_on_the_grid_centre():
    rot = rotation(0.2, 0.1, -0.3)
    ds, _ = make_mosaic(n_slices=5, tile=(4, 6), rot=rot)
    affine = mosaic_affine_lps(ds)
    # centre of the whole mosaic if it were one image (PS3.3 pixel positions)
    rows, cols = ds.Rows, ds.Columns
    centre = expected_world_lps(ds.ImagePositionPatient, rot[:, 0], rot[:, 1], ds.PixelSpacing,
                                (rows - 1) / 2, (cols - 1) / 2)
    for k in range(5):
        tile_centre = affine @ [(6 - 1) / 2, (4 - 1) / 2, k, 1]
        np.testing.assert_allclose(tile_centre[:3], centre + rot[:, 2] * 4.0 * k, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [3.0, 2.0, 4.0])


def test_mosaic_without_slice_count_is_refused():
    ds, frame = make_mosaic()
    del ds[0x0019, 0x100A]
    with pytest.raises(DicomError, match="NumberOfImagesInMosaic"):
        unmosaic(frame, ds)


def test_mosaic_grid_not_dividing_the_image_is_refused():
    ds, frame = make_mosaic(n_slices=5, tile=(4, 6))
    ds.Rows = 13
    with pytest.raises(DicomError, match="cannot hold"):
        mosaic_tile_shape(ds)


# --------------------------------------------------------------------------- more enhanced quirks
def test_enhanced_ct_shared_rescale_gives_hu_volume(tmp_path):
    path, _ = make_enhanced(tmp_path / "ct.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.Modality = "CT"
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.MREchoSequence
        del item.PixelValueTransformationSequence
        item.CTImageFrameTypeSequence = item.MRImageFrameTypeSequence
        del item.MRImageFrameTypeSequence
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = Sequence(
        [_item(RescaleSlope=1.0, RescaleIntercept=-1024.0, RescaleType="HU")])
    ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence = Sequence([_item(WindowCenter=40, WindowWidth=400)])
    ds.save_as(path)
    (volume,) = read_enhanced(path)
    assert volume.meta.units == "HU"
    assert volume.meta.modality == "CT"
    assert (volume.slope, volume.intercept) == (1.0, -1024.0)
    assert volume.meta.window == ((40.0, 400.0),)
    assert volume.shape == (5, 4, 3)


def test_two_stacks_in_one_file_become_two_volumes(tmp_path):
    path, truth = make_enhanced(tmp_path / "stacks.dcm", echoes=(5.0,), n_times=1, n_slices=4, shuffle=False)
    ds = pydicom.dcmread(path)
    # frames 2-3 become a second, sagittal stack
    for n in (2, 3):
        item = ds.PerFrameFunctionalGroupsSequence[n]
        item.FrameContentSequence[0].StackID = "2"
        item.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=[0.0, 1.0, 0.0, 0.0, 0.0, -1.0])])
        item.PlanePositionSequence[0].ImagePositionPatient = [float(n * 3.0), -10.0, 20.0]
    ds.save_as(path)
    volumes = read_enhanced(path)
    assert [v.shape for v in volumes] == [(5, 4, 2), (5, 4, 2)]
    assert volumes[0].orientation != volumes[1].orientation
    # normal = row x col = (0,1,0) x (0,0,-1) = LPS -x: k runs towards LPS -x, i.e. RAS +x
    np.testing.assert_allclose(volumes[1].affine[:3, 2], [3.0, 0.0, 0.0])
    np.testing.assert_allclose(volumes[1].origin, [-9.0, 10.0, 20.0])  # the frame at LPS x=9 comes first


def test_orientation_jitter_within_tolerance_stays_one_volume(tmp_path):
    path, _ = make_enhanced(tmp_path / "jitter.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    iop = [float(v) for v in ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient]
    jitter = list(iop)
    jitter[2] += 2e-5  # what scanners write: cosines printed with limited digits
    ds.PerFrameFunctionalGroupsSequence[0].PlaneOrientationSequence = Sequence(
        [_item(ImageOrientationPatient=jitter)])
    ds.save_as(path)
    assert len(read_enhanced(path)) == 1


def test_single_frame_uses_spacing_between_slices_along_the_normal(tmp_path):
    rot = rotation(0.1, 0.2, 0.3)
    path, _ = make_enhanced(tmp_path / "one.dcm", echoes=(5.0,), n_times=1, n_slices=1, rotation_matrix=rot)
    (volume,) = read_enhanced(path)
    assert volume.shape == (5, 4, 1)
    np.testing.assert_allclose(volume.affine[:3, 2], (rot[:, 2] * 2.5) * [-1, -1, 1], atol=1e-9)


def test_mosaic_slice_normal_vector_sign_sets_k_direction(monkeypatch):
    """CSA SliceNormalVector opposite to row x col: k runs the other way (tiles are stored descending)."""
    import convert.dicom.multiframe as mf

    ds, _ = make_mosaic(n_slices=5, tile=(4, 6))
    monkeypatch.setattr(mf, "csa_image_header",
                        lambda _ds: {"NumberOfImagesInMosaic": 5, "SliceNormalVector": [0.0, 0.0, -1.0]})
    affine = mosaic_affine_lps(ds)
    np.testing.assert_allclose(affine[:3, 2], [0.0, 0.0, -4.0])
    assert np.linalg.det(affine[:3, :3]) < 0  # a left-handed voxel grid, as acquired


def test_mosaic_slice_count_prefers_csa(monkeypatch):
    import convert.dicom.multiframe as mf

    ds, _ = make_mosaic(n_slices=5, tile=(4, 6))
    monkeypatch.setattr(mf, "csa_image_header", lambda _ds: {"NumberOfImagesInMosaic": 4})
    assert mosaic_slice_count(ds) == 4


def test_mosaic_step_falls_back_to_slice_thickness():
    ds, _ = make_mosaic(n_slices=5, tile=(4, 6))
    del ds.SpacingBetweenSlices
    np.testing.assert_allclose(np.linalg.norm(mosaic_affine_lps(ds)[:3, 2]), 3.0)


def test_diffusion_b_values_follow_the_time_axis(tmp_path):
    path, _ = make_enhanced(tmp_path / "dwi.dcm", echoes=(80.0,), n_times=3)
    ds = pydicom.dcmread(path)
    for item in ds.PerFrameFunctionalGroupsSequence:
        t = int(item.FrameContentSequence[0].TemporalPositionIndex) - 1
        item.MRDiffusionSequence = Sequence([_item(DiffusionBValue=[0.0, 1000.0, 2000.0][t])])
    ds.save_as(path)
    (volume,) = read_enhanced(path)
    assert volume.shape == (5, 4, 3, 3)
    assert volume.meta.acquisition["DiffusionBValue"] == [0.0, 1000.0, 2000.0]
    for t in range(3):
        assert volume.array[0, 0, 0, t] == t * 100  # content written for time point t


def test_segmentation_objects_are_refused_clearly(tmp_path):
    path, _ = make_enhanced(tmp_path / "seg.dcm", echoes=(5.0,), n_times=1)
    ds = pydicom.dcmread(path)
    ds.Modality = "SEG"
    ds.save_as(path)
    with pytest.raises(ConvertError, match="SEG objects") as info:
        read_enhanced(path)
    assert "seg.dcm" in str(info.value)


# --------------------------------------------------------------------------- properties
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

angles = st.floats(min_value=-np.pi, max_value=np.pi, allow_nan=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ax=angles, ay=angles, az=angles,
    n_slices=st.integers(1, 5), n_times=st.integers(1, 3), n_echoes=st.integers(1, 2),
    rows=st.integers(1, 6), cols=st.integers(1, 6),
    spacing=st.tuples(st.floats(0.2, 4.0), st.floats(0.2, 4.0)), step=st.floats(0.5, 6.0),
    seed=st.integers(0, 2**16),
)
def test_property_every_frame_lands_at_its_world_position(tmp_path, ax, ay, az, n_slices, n_times, n_echoes,
                                                          rows, cols, spacing, step, seed):
    rot = rotation(ax, ay, az)
    echoes = tuple(10.0 * (e + 1) for e in range(n_echoes))
    path = tmp_path / f"p{seed}.dcm"
    path, truth = make_enhanced(path, rows=rows, cols=cols, n_slices=n_slices, n_times=n_times, echoes=echoes,
                                rotation_matrix=rot, pixel_spacing=spacing, slice_step=step)
    volumes = read_enhanced(path)
    assert len(volumes) == n_echoes
    by_echo = {round(v.meta.acquisition["EchoTime"] * 1000, 3): v for v in volumes}
    for fr in truth:
        volume = by_echo[round(fr["echo_time"], 3)]
        array = volume.array if volume.array.ndim == 4 else volume.array[..., np.newaxis]
        # find the frame by its content (echo, t, k) and check where the affine puts it
        value = fr["echo"] * 1000 + fr["t"] * 100 + fr["k"] * 10
        hits = np.argwhere(array[0, 0] == value)
        assert len(hits) == 1
        k, t = hits[0]
        assert t == fr["t"]  # time order follows TemporalPositionIndex
        world = volume.world_coordinates(np.array([cols - 1, rows - 1, k]))
        expected = expected_world_lps(fr["ipp"], rot[:, 0], rot[:, 1], spacing, rows - 1, cols - 1)
        np.testing.assert_allclose(world, expected * [-1, -1, 1], atol=1e-4)
    # k increases along row x col
    if n_slices > 1:
        assert np.dot(volumes[0].affine[:3, 2] * [-1, -1, 1], np.cross(rot[:, 0], rot[:, 1])) > 0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), tile=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_property_unmosaic_inverts_tiling(n, tile):
    ds, frame = make_mosaic(n_slices=n, tile=tile)
    stack = unmosaic(frame, ds)
    assert stack.shape == tile + (n,)
    for s in range(n):
        assert np.array_equal(stack[:, :, s], 100 * s + np.arange(tile[0] * tile[1]).reshape(tile))


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_enhanced_frames_decode_identically(tmp_path, syntax):
    """Encapsulated multi-frame pixel data (one fragment per frame) streams frame by frame."""
    import pydicom.uid

    path, _ = make_enhanced(tmp_path / "plain.dcm", rows=32, cols=32, echoes=(5.0,), n_times=2)
    (plain,) = read_enhanced(path)
    ds = pydicom.dcmread(path)
    ds.compress(getattr(pydicom.uid, syntax))
    ds.save_as(tmp_path / "packed.dcm")
    (packed,) = read_enhanced(tmp_path / "packed.dcm")
    assert np.array_equal(packed.array, plain.array)
    np.testing.assert_array_equal(packed.affine, plain.affine)


# --------------------------------------------------------------------------- dcm2niix on synthetic files
@pytest.mark.parametrize("angles, n_slices, n_times, n_echoes, shuffle", [
    ((0.3, -0.2, 0.45), 5, 3, 1, True),
    ((-1.1, 0.4, 2.0), 4, 2, 1, True),
    ((0.0, 0.0, 0.0), 3, 2, 1, True),
    ((np.pi / 2, 0.0, 0.1), 6, 1, 1, True),  # sagittal-ish
])
def test_synthetic_enhanced_matches_dcm2niix(tmp_path, angles, n_slices, n_times, n_echoes, shuffle):
    """An independent reader on our own oblique, shuffled 4D files.

    (Multi-echo is not compared here: dcm2niix splits echoes of such synthetic files by frame order,
    not by EffectiveEchoTime; the echo split is checked against the truth above and real Philips data.)
    """
    import subprocess

    from tests.conftest import require_tool

    exe = require_tool("dcm2niix")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    echoes = tuple(15.0 * (e + 1) for e in range(n_echoes))
    path, _ = make_enhanced(tmp_path / "in" / "enh.dcm", rows=24, cols=20, n_slices=n_slices, n_times=n_times,
                            echoes=echoes, rotation_matrix=rotation(*angles), shuffle=shuffle)
    ds = pydicom.dcmread(path)
    ds.SeriesNumber, ds.InstanceNumber, ds.PatientPosition = 1, 1, "HFS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(path)
    subprocess.run([exe, "-z", "y", "-f", "%s", "-o", str(tmp_path / "out"), str(tmp_path / "in")],
                   check=True, capture_output=True)
    refs = sorted((tmp_path / "out").glob("*.nii.gz"))
    volumes = read_enhanced(path)
    assert len(refs) == len(volumes) == n_echoes
    for volume, ref in zip(volumes, refs):  # dcm2niix names echoes _e1, _e2 ...
        assert_matches_reference(volume, ref)


def test_mosaic_count_stored_as_un_by_a_pacs():
    """Some archives rewrite private elements as UN: the count is then raw little-endian bytes."""
    ds, frame = make_mosaic(n_slices=5, tile=(4, 6))
    del ds[0x0019, 0x100A]
    ds.private_block(0x0019, "SIEMENS MR HEADER").add_new(0x0A, "UN", b"\x05\x00")
    assert mosaic_slice_count(ds) == 5
    assert unmosaic(frame, ds).shape == (4, 6, 5)


@pytest.mark.parametrize("syntax", ["DeflatedExplicitVRLittleEndian", "ImplicitVRLittleEndian"])
def test_enhanced_in_deflated_and_implicit_syntaxes(tmp_path, syntax):
    import pydicom.uid

    path, _ = make_enhanced(tmp_path / "plain.dcm", echoes=(5.0,), n_times=2)
    (plain,) = read_enhanced(path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = getattr(pydicom.uid, syntax)
    ds.save_as(tmp_path / "other.dcm", enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (other,) = read_enhanced(tmp_path / "other.dcm")
    assert np.array_equal(other.array, plain.array)


def test_float_pixel_data_parametric_map(tmp_path):
    """Parametric maps store FloatPixelData (32-bit IEEE): kept as float32."""
    path, _ = make_enhanced(tmp_path / "a.dcm", echoes=(5.0,), n_times=1, shuffle=False)
    ds = pydicom.dcmread(path)
    values = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) / 7
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PixelValueTransformationSequence
    ds.FloatPixelData = values.tobytes()
    ds.save_as(tmp_path / "map.dcm")
    (volume,) = read_enhanced(tmp_path / "map.dcm")
    assert volume.dtype == np.float32 and not volume.is_scaled
    np.testing.assert_array_equal(volume.array.transpose(2, 1, 0), values)


_MUTATIONS = [
    ("PlanePositionSequence", "ImagePositionPatient"),
    ("PlaneOrientationSequence", "ImageOrientationPatient"),
    ("PixelMeasuresSequence", "PixelSpacing"),
    ("PixelMeasuresSequence", "SpacingBetweenSlices"),
    ("PixelValueTransformationSequence", "RescaleSlope"),
    ("PixelValueTransformationSequence", "RescaleIntercept"),
    ("MREchoSequence", "EffectiveEchoTime"),
    ("FrameContentSequence", "StackID"),
    ("FrameContentSequence", "FrameAcquisitionDateTime"),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=st.integers(0, 5), mutation=st.sampled_from(_MUTATIONS),
       value=st.one_of(st.text(max_size=10), st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=7),
                       st.floats(allow_nan=True, allow_infinity=True)))
def test_property_broken_functional_groups_raise_convert_errors_only(tmp_path_factory, frame, mutation, value):
    path, _ = make_enhanced(tmp_path_factory.mktemp("broken") / "b.dcm", echoes=(5.0,), n_times=2, shuffle=False)
    ds = pydicom.dcmread(path)
    sequence, keyword = mutation
    item = ds.PerFrameFunctionalGroupsSequence[frame]
    if sequence not in item:
        item[sequence] = pydicom.DataElement(pydicom.datadict.tag_for_keyword(sequence), "SQ", Sequence([Dataset()]))
    target = item[sequence].value[0]
    try:
        if isinstance(value, list):
            setattr(target, keyword, [str(v) for v in value])
        else:
            setattr(target, keyword, str(value))
        ds.save_as(path)
    except Exception:
        return  # pydicom refuses to write it: nothing to read
    try:
        volumes = read_enhanced(path)
    except ConvertError as exc:
        assert "b.dcm" in str(exc)
        return
    for volume in volumes:
        assert np.all(np.isfinite(volume.affine))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the planted 'inf'
@pytest.mark.parametrize("sequence, keyword, value, message", [
    ("PixelMeasuresSequence", "PixelSpacing", [0.0, 1.0], "PixelSpacing"),
    ("PlaneOrientationSequence", "ImageOrientationPatient", [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], "orthogonal"),
    ("PixelValueTransformationSequence", "RescaleSlope", "inf", "RescaleSlope"),
])
def test_one_bad_frame_is_named_in_the_error(tmp_path, sequence, keyword, value, message):
    import copy

    path, _ = make_enhanced(tmp_path / "bad.dcm", echoes=(5.0,), n_times=2, shuffle=False)
    ds = pydicom.dcmread(path)
    item = ds.PerFrameFunctionalGroupsSequence[3]
    if sequence not in item:
        item[sequence] = copy.deepcopy(ds.SharedFunctionalGroupsSequence[0][sequence])
    setattr(item[sequence].value[0], keyword, value)
    ds.save_as(path)
    with pytest.raises(ConvertError, match=message) as info:
        read_enhanced(path)
    assert "frame 4" in str(info.value) and "bad.dcm" in str(info.value)


# --------------------------------------------------------------------------- splits and dcm2niix postfixes
def _philips_enhanced(path: Path, truth: list[dict]) -> Path:
    """Make a :func:`make_enhanced` file look Philips-like, as dcm2niix needs to split it by image part.

    dcm2niix tunes enhanced splitting per vendor: with a Philips manufacturer and a
    DimensionIndexValues entry that differs per echo and part, it writes one file each.
    """
    ds = pydicom.dcmread(path)
    ds.SeriesNumber, ds.InstanceNumber, ds.PatientPosition = 1, 1, "HFS"
    ds.Manufacturer = "Philips Medical Systems"
    for item, frame in zip(ds.PerFrameFunctionalGroupsSequence, truth):
        item.FrameContentSequence[0].DimensionIndexValues = [1, frame["k"] + 1, frame["echo"] + 1 + frame["part"] * 10]
    ds.StudyInstanceUID = "2.25.4242"
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path)
    return path


@pytest.mark.parametrize("components, echoes, expected", [
    (("MAGNITUDE", "PHASE"), (15.0,), ["1", "1_ph"]),
    (("REAL", "IMAGINARY"), (15.0,), ["1_imaginary", "1_real"]),
    (("MAGNITUDE",), (15.0, 30.0), ["1_e1", "1_e2"]),
    (("MAGNITUDE", "PHASE"), (15.0, 30.0), ["1_e1", "1_e1_ph", "1_e2", "1_e2_ph"]),
])
def test_enhanced_echoes_and_parts_get_dcm2niix_file_names_and_voxels(tmp_path, components, echoes, expected):
    import subprocess

    from convert.batch import convert_dicom_tree
    from tests.conftest import require_tool

    exe = require_tool("dcm2niix")
    (tmp_path / "in").mkdir()
    path, truth = make_enhanced(tmp_path / "in" / "enh.dcm", rows=24, cols=20, n_slices=4, n_times=1,
                                echoes=echoes, rotation_matrix=rotation(0.3, -0.2, 0.45), components=components)
    _philips_enhanced(path, truth)
    (tmp_path / "ref").mkdir()
    subprocess.run([exe, "-z", "y", "-b", "n", "-f", "%s", "-o", str(tmp_path / "ref"), str(tmp_path / "in")],
                   check=True, capture_output=True)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "ours", name="{SeriesNumber}", sidecar=False)
    assert report.ok, [o.error for o in report.failed]
    ours = {p.name[: -len(".nii.gz")]: p for p in report.written}
    refs = {p.name[: -len(".nii.gz")]: p for p in (tmp_path / "ref").glob("*.nii.gz")}
    assert sorted(ours) == sorted(refs) == expected
    for stem, path in ours.items():
        ours_stored, ours_values, ours_affine = canonical(nib.load(path))
        _, ref_values, ref_affine = canonical(nib.load(refs[stem]))
        assert ours_values.shape == ref_values.shape, stem
        np.testing.assert_allclose(ours_affine, ref_affine, atol=1e-3, err_msg=stem)
        np.testing.assert_allclose(ours_values, ref_values, err_msg=stem)


def test_enhanced_files_of_different_echoes_are_not_stacked_into_one_4d(tmp_path):
    """One file per echo and time point under one series UID (Siemens XA multi-echo): one 4D volume per echo."""
    from convert.dicom import assemble, read_series_volumes
    from convert.dicom.scan import scan
    from convert.batch.naming import volume_suffixes

    uid = generate_uid()
    for t in range(2):
        for e, echo in enumerate((12.0, 24.0)):
            path = tmp_path / f"t{t}_e{e}.dcm"
            make_enhanced(path, n_times=1, echoes=(echo,), shuffle=False)
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SeriesNumber = uid, "2.25.99", 3
            ds.AcquisitionNumber, ds.InstanceNumber = t + 1, 2 * t + e + 1
            ds.PixelData = (np.frombuffer(ds.PixelData, np.int16) + 500 * t).astype(np.int16).tobytes()
            ds.save_as(path)
    (series,) = assemble(scan(tmp_path).instances)
    volumes = read_series_volumes(series)
    assert len(volumes) == 2
    assert [v.meta.acquisition["EchoTime"] for v in volumes] == [0.012, 0.024]
    assert [v.meta.acquisition["EchoNumber"] for v in volumes] == [1, 2]
    assert volume_suffixes(volumes) == ["e1", "e2"]
    for e, volume in enumerate(volumes):
        assert volume.shape == (5, 4, 3, 2)
        for t in range(2):  # make_enhanced values: echo * 1000 (its only echo: 0) + k * 10, plus 500 per file time
            assert volume.array[0, 0, 1, t] == 10 + 500 * t


# --------------------------------------------------------------------------- frames read straight from the file
def _pixel_offset(path: Path) -> int:
    from convert.dicom.elements import parse_part10

    with open(path, "rb") as fh:
        part10 = parse_part10(fh.read())
    assert part10.pixel_offset is not None
    return part10.pixel_offset


@pytest.mark.parametrize("syntax", ["ExplicitVRLittleEndian", "ImplicitVRLittleEndian"])
@pytest.mark.parametrize("bits", [(16, 12, 0), (16, 12, 1), (16, 16, 1), (8, 8, 0), (32, 20, 1)])
def test_uncompressed_enhanced_frames_come_from_the_bytes_exactly_as_pydicom_decodes_them(tmp_path, monkeypatch,
                                                                                          syntax, bits):
    """With the scan's pixel offset, no second header parse and no pydicom decoder: same volumes, voxel for voxel."""
    import pydicom.pixels
    import pydicom.uid

    allocated, stored, signed = bits
    path, _ = make_enhanced(tmp_path / "a.dcm", echoes=(5.0, 9.0), n_times=2)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = getattr(pydicom.uid, syntax)
    rng = np.random.default_rng(allocated + stored + signed)
    n = int(ds.NumberOfFrames) * ds.Rows * ds.Columns
    raw = rng.integers(0, 2**allocated, size=n, dtype=np.uint64).astype(f"<u{allocated // 8}")  # garbage high bits too
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, signed
    ds.PixelData = raw.tobytes()
    ds.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    decoded = read_enhanced(tmp_path / "b.dcm")  # pydicom's iter_pixels
    offset = _pixel_offset(tmp_path / "b.dcm")

    def no_decoder(*args, **kwargs):
        raise AssertionError("pydicom decoded frames the file's bytes hold as they are")

    monkeypatch.setattr(pydicom.pixels, "iter_pixels", no_decoder)
    direct = read_enhanced(tmp_path / "b.dcm", pixel_offset=offset)
    assert len(direct) == len(decoded) == 2
    for a, b in zip(direct, decoded):
        assert a.array.dtype == b.array.dtype and np.array_equal(a.array, b.array)
        np.testing.assert_array_equal(a.affine, b.affine)


def test_truncated_uncompressed_enhanced_file_is_a_clear_error(tmp_path):
    from convert.errors import CorruptFileError

    path, _ = make_enhanced(tmp_path / "a.dcm", echoes=(5.0,), n_times=2)
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-7])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_enhanced(cut, pixel_offset=_pixel_offset(path))
