"""Colour DICOM through convert.dicom.reader: generated series and pydicom's colour files vs pydicom and dcm2niix.

Independent references:

* pydicom's own decoding of each file (``pixel_array`` with its default RGB output,
  ``apply_color_lut`` for palettes), transposed into our ``[i, j, k]`` order;
* the generator's affine (:func:`fixtures.dicom_series.expected_affine_ras`);
* dcm2niix as a live oracle: its RGB24 NIfTI and ours agree in world space after
  ``nibabel.as_closest_canonical`` (dcm2niix keeps palette images as indices, so
  there our RGB must equal the palette applied to its indices).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import require_tool  # noqa: E402
from fixtures.dicom_series import (  # noqa: E402
    COLOUR_KINDS,
    PALETTE_LUT,
    expected_affine_ras,
    make_colour_cine,
    make_colour_series,
    make_series,
)

import convert  # noqa: E402
from convert.cli import app  # noqa: E402
from convert.batch import convert_dicom_tree  # noqa: E402
from convert.dicom import assemble, read_series  # noqa: E402
from convert.dicom.scan import scan  # noqa: E402
from convert.errors import UnsupportedDataError  # noqa: E402
from convert.volume import RGB_DTYPE, rgb_channels, rgb_from_channels  # noqa: E402

runner = CliRunner()
LOSSLESS = ("rgb", "rgb-planar", "palette8", "palette16", "rgb-rle", "j2k-rct")


def _read(folder: Path, **options):
    (series,) = assemble(scan(folder).instances)
    return read_series(series, **options)


def _pydicom_rgb(path: Path) -> np.ndarray:
    """pydicom's decoded RGB of one file, ``[frame, row, col, 3]`` uint8 (palette: LUT applied, 16-bit -> high byte)."""
    from pydicom.pixels import apply_color_lut, pixel_array

    from convert.dicom.pixels import DECODING_PLUGIN

    ds = pydicom.dcmread(str(path))
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        rgb = apply_color_lut(pixel_array(ds, raw=True), ds)[..., :3]
        rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb
    else:  # as_rgb=True: YBR converted to RGB by pydicom or the codec (the plugin the reader uses: lossy
        rgb = pixel_array(ds, decoding_plugin=DECODING_PLUGIN)  # decoders differ by a few levels)
    return rgb if int(ds.get("NumberOfFrames", 1) or 1) > 1 else rgb[np.newaxis]


def _slice_files_in_order(folder: Path) -> list[Path]:
    """Files of a one-series folder in our k order (as the reader sorted them)."""
    (series,) = assemble(scan(folder).instances)
    return [column[0].path for column in series.grid]


def _dcm2niix(src: Path, out: Path) -> Path:
    exe = require_tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-z", "n", "-b", "n", "-f", "ref", "-o", str(out), str(src)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (ref,) = sorted(out.glob("*.nii"))
    return ref


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    canon = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asanyarray(canon.dataobj), canon.affine


# --------------------------------------------------------------------------- generated series
@pytest.mark.parametrize("kind", COLOUR_KINDS)
def test_colour_series_matches_pydicom_and_the_generator(tmp_path: Path, kind: str) -> None:
    paths, spec, values = make_colour_series(tmp_path, kind)
    volume = _read(tmp_path)
    assert volume.is_rgb and volume.dtype == RGB_DTYPE
    assert volume.shape == values.shape[:3]
    assert not volume.is_scaled
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)
    ours = rgb_channels(volume.array)
    for k, path in enumerate(_slice_files_in_order(tmp_path)):
        np.testing.assert_array_equal(ours[:, :, k], _pydicom_rgb(path)[0].transpose(1, 0, 2))
    if kind in LOSSLESS:
        np.testing.assert_array_equal(ours, values)
    elif kind == "ybr-full":  # 8-bit YCbCr rounding: within one level of what was encoded
        assert np.abs(ours.astype(int) - values).max() <= 1
    else:  # baseline JPEG 4:2:2 is lossy, but close
        assert np.abs(ours.astype(int) - values).mean() < 10


def test_jpeg_ybr422_decodes_like_libjpeg(tmp_path: Path) -> None:
    """Baseline JPEG YBR_FULL_422: our RGB (pylibjpeg's libjpeg) and Pillow's libjpeg-turbo, two independent
    decoders, agree on luma to rounding and on every channel within the chroma-upsampling difference."""
    from PIL import Image
    from pydicom.encaps import generate_frames

    make_colour_series(tmp_path, "jpeg-ybr422", slices=2)
    ours = rgb_channels(_read(tmp_path).array)
    for k, path in enumerate(_slice_files_in_order(tmp_path)):
        ds = pydicom.dcmread(str(path))
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
        pillow = np.asarray(Image.open(io.BytesIO(codestream)).convert("RGB"))
        mine = ours[:, :, k].astype(float)
        theirs = pillow.transpose(1, 0, 2).astype(float)
        # Luma is stored at full resolution: the decoders agree on it to rounding (and to the
        # clipping of saturated colours at 0/255).
        luma = np.array([0.299, 0.587, 0.114])
        luma_diff = np.abs(mine @ luma - theirs @ luma)
        assert luma_diff.max() <= 2 and luma_diff.mean() < 0.25
        # Chroma is stored at half horizontal resolution; libjpeg (pylibjpeg) and libjpeg-turbo
        # upsample it differently, which moves single channels by a few levels at colour edges.
        diff = np.abs(mine - theirs)
        assert diff.max() <= 6 and diff.mean() < 0.5


@pytest.mark.parametrize("kind", ["rgb", "rgb-planar", "ybr-full", "rgb-rle", "j2k-rct"])
@pytest.mark.parametrize("orientation", ["oblique", "sagittal"])
def test_colour_series_matches_dcm2niix_in_world_space(tmp_path: Path, kind: str, orientation: str) -> None:
    make_colour_series(tmp_path / "in", kind, orientation)
    ref = nib.load(_dcm2niix(tmp_path / "in", tmp_path / "ref"))
    assert ref.get_data_dtype() == RGB_DTYPE  # dcm2niix writes RGB24 too
    volume = _read(tmp_path / "in")
    ours, our_affine = _canonical(volume.array, volume.affine)
    theirs, their_affine = _canonical(np.asanyarray(ref.dataobj), ref.affine)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3)
    np.testing.assert_array_equal(rgb_channels(ours), rgb_channels(theirs))


def test_jpeg_ybr422_series_matches_dcm2niix_within_decoder_differences(tmp_path: Path) -> None:
    """dcm2niix decodes baseline JPEG with its own decoder (other chroma upsampling/IDCT than libjpeg):
    same geometry, same image, colours within a couple of levels on average."""
    make_colour_series(tmp_path / "in", "jpeg-ybr422")
    ref = nib.load(_dcm2niix(tmp_path / "in", tmp_path / "ref"))
    volume = _read(tmp_path / "in")
    ours, our_affine = _canonical(volume.array, volume.affine)
    theirs, their_affine = _canonical(np.asanyarray(ref.dataobj), ref.affine)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3)
    diff = np.abs(rgb_channels(ours).astype(int) - rgb_channels(theirs).astype(int))
    assert diff.mean() < 3.0, diff.mean()
    # a channel swap or a transposed frame would give differences of tens of levels everywhere
    assert np.median(diff) <= 2


@pytest.mark.parametrize("kind", ["palette8", "palette16"])
def test_palette_series_is_dcm2niix_indices_through_the_lut(tmp_path: Path, kind: str) -> None:
    """dcm2niix writes a palette image's indices; the palette applied to them in world space is our RGB."""
    make_colour_series(tmp_path / "in", kind, "oblique")
    ref = nib.load(_dcm2niix(tmp_path / "in", tmp_path / "ref"))
    volume = _read(tmp_path / "in")
    ours, our_affine = _canonical(volume.array, volume.affine)
    indices, their_affine = _canonical(np.asanyarray(ref.dataobj).astype(np.int32), ref.affine)
    np.testing.assert_allclose(our_affine, their_affine, atol=1e-3)
    bits = 8 if kind == "palette8" else 16
    lut8 = (PALETTE_LUT[bits] >> (8 if bits == 16 else 0)).astype(np.uint8)
    np.testing.assert_array_equal(rgb_channels(ours), lut8[indices])


def test_rescale_slope_and_intercept_do_not_apply_to_colour(tmp_path: Path) -> None:
    _, _, values = make_colour_series(tmp_path, "rgb", extra={"RescaleSlope": "2", "RescaleIntercept": "-1024"})
    volume = _read(tmp_path)
    assert (volume.slope, volume.intercept) == (1.0, 0.0)
    np.testing.assert_array_equal(rgb_channels(volume.array), values)


def test_colour_4d_series_stacks_time_points(tmp_path: Path) -> None:
    """Colour files repeated at each position (times > 1) become a 4D RGB volume, like grey series."""
    paths, spec, values = make_colour_series(tmp_path, "rgb", "axial", slices=3, times=2)
    volume = _read(tmp_path)
    assert volume.shape == values.shape[:3] + (2,)
    ours = rgb_channels(volume.array)
    np.testing.assert_array_equal(ours[..., 0, :], values)  # the fixture writes the same colours at each time
    np.testing.assert_array_equal(ours[..., 1, :], values)
    np.testing.assert_allclose(volume.affine, expected_affine_ras(spec), atol=1e-4)


def test_tilt_correction_resamples_each_channel_like_a_grey_series(tmp_path: Path) -> None:
    """A tilted colour stack, corrected: each channel equals the grey reader's correction of that channel alone."""
    _, spec, values = make_colour_series(tmp_path / "rgb", "rgb", "axial", slices=6, tilt_deg=15.0)
    corrected = _read(tmp_path / "rgb", tilt_correct=True)
    assert corrected.is_rgb
    assert abs(np.dot(corrected.affine[:3, 1], corrected.affine[:3, 2])) < 1e-6  # orthogonal grid now
    channels = rgb_channels(corrected.array)
    for c in range(3):
        assert values[..., c].min() == 0  # so the grey reader's fill (the minimum) is black too
        make_series(tmp_path / f"grey{c}", "axial", slices=6, tilt_deg=15.0, modality="MR", rescale_intercept=0.0,
                    data=values[..., c].astype(np.int32))
        grey = _read(tmp_path / f"grey{c}", tilt_correct=True)
        np.testing.assert_allclose(corrected.affine, grey.affine, atol=1e-9)
        np.testing.assert_array_equal(channels[..., c], grey.array)


def test_uniform_colour_survives_tilt_correction_exactly(tmp_path: Path) -> None:
    colour = np.array([10, 200, 30], dtype=np.uint8)

    def paint(ds, k, t):  # every pixel the same RGB
        ds.PixelData = np.tile(colour, ds.Rows * ds.Columns).tobytes()

    paths, spec, _ = make_colour_series(tmp_path, "rgb", "axial", slices=5, tilt_deg=12.0)
    for path in paths:
        ds = pydicom.dcmread(str(path))
        paint(ds, 0, 0)
        ds.save_as(str(path))
    corrected = rgb_channels(_read(tmp_path, tilt_correct=True).array).reshape(-1, 3)
    kinds = {tuple(int(v) for v in c) for c in np.unique(corrected, axis=0)}
    assert (10, 200, 30) in kinds and (0, 0, 0) in kinds
    # edge voxels are a blend of the colour and black, never another hue: each channel scales by one factor
    ratios = corrected.astype(float) / colour.astype(float)
    assert np.all(np.ptp(ratios, axis=1) < 0.06)


# --------------------------------------------------------------------------- multi-frame
def test_us_like_colour_cine_is_a_3d_stack_of_frames(tmp_path: Path) -> None:
    path, values = make_colour_cine(tmp_path / "in")
    volume = convert.load(path)
    assert volume.is_rgb and volume.shape == values.shape[:3]
    np.testing.assert_array_equal(rgb_channels(volume.array), values)
    np.testing.assert_array_equal(rgb_channels(volume.array), _pydicom_rgb(path).transpose(2, 1, 0, 3))
    # no patient geometry in the file: 1 mm pixels along the DICOM default axes (LPS), frames along k
    np.testing.assert_allclose(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_us_like_colour_cine_matches_dcm2niix(tmp_path: Path) -> None:
    path, _ = make_colour_cine(tmp_path / "in")
    ref = nib.load(_dcm2niix(tmp_path / "in", tmp_path / "ref"))
    volume = convert.load(path)
    ours, our_affine = _canonical(volume.array, volume.affine)
    theirs, their_affine = _canonical(np.asanyarray(ref.dataobj), ref.affine)
    np.testing.assert_array_equal(rgb_channels(ours), rgb_channels(theirs))
    # without ImagePositionPatient the origin is arbitrary (dcm2niix centres the image); axes and sizes agree
    np.testing.assert_allclose(our_affine[:3, :3], their_affine[:3, :3], atol=1e-6)


# --------------------------------------------------------------------------- pydicom's colour test files
def _testdata(name: str) -> Path:
    import pydicom.data

    path = Path(pydicom.data.__file__).parent / "test_files" / name
    if not path.exists():  # pragma: no cover - depends on the pydicom build
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return path


PYDICOM_FILES = {
    # name: (photometric as stored, transfer syntax family, dcm2niix agreement: "exact", "close" or None)
    "examples_rgb_color.dcm": ("RGB", "explicit LE", "exact"),
    "ExplVR_BigEnd.dcm": ("RGB", "big endian, PlanarConfiguration 1", "exact"),
    "SC_rgb_rle.dcm": ("RGB", "RLE", "exact"),
    "SC_rgb_rle_2frame.dcm": ("RGB", "RLE, 2 frames", None),
    "SC_rgb_jpeg_gdcm.dcm": ("RGB", "JPEG lossless", "exact"),
    "SC_rgb_small_odd.dcm": ("RGB", "explicit LE, odd size", None),
    "SC_rgb_jpeg_dcmtk.dcm": ("YBR_FULL", "JPEG baseline", "close"),
    "SC_rgb_dcmtk_+eb+cy+np.dcm": ("YBR_FULL_422", "JPEG baseline", "close"),
    "SC_ybr_full_422_uncompressed.dcm": ("YBR_FULL_422", "explicit LE, subsampled", None),
    "examples_ybr_color.dcm": ("YBR_FULL_422", "JPEG baseline, 30-frame US cine", "close"),
    "examples_jpeg2k.dcm": ("YBR_RCT", "JPEG 2000 lossless", "exact"),
    "GDCMJ2K_TextGBR.dcm": ("YBR_RCT", "JPEG 2000 lossless", None),
    "SC_rgb_gdcm_KY.dcm": ("RGB", "JPEG 2000", None),
    "SC_rgb_jls_lossy_line.dcm": ("RGB", "JPEG-LS near-lossless", None),
    "examples_palette.dcm": ("PALETTE COLOR", "explicit LE, 16-bit LUT entries", None),
}


@pytest.mark.parametrize("name", sorted(PYDICOM_FILES))
def test_pydicom_colour_files_match_pydicom(name: str) -> None:
    path = _testdata(name)
    photometric = PYDICOM_FILES[name][0]
    assert pydicom.dcmread(str(path), stop_before_pixels=True).PhotometricInterpretation == photometric
    volume = convert.load(path)
    assert volume.is_rgb and not volume.is_scaled
    expected = _pydicom_rgb(path)  # [frame, row, col, 3]
    assert volume.shape == (expected.shape[2], expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(rgb_channels(volume.array), expected.transpose(2, 1, 0, 3))
    # geometry follows the grey rules: these files have no ImageOrientation/Position -> DICOM axes (LPS)
    assert volume.orientation == "LPS"
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    if "PixelSpacing" in ds:
        np.testing.assert_allclose(volume.spacing[:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])])


def test_palette_with_16_bit_entries_keeps_the_high_byte() -> None:
    path = _testdata("examples_palette.dcm")
    ds = pydicom.dcmread(str(path))
    assert int(ds.RedPaletteColorLookupTableDescriptor[2]) == 16
    lut = np.frombuffer(ds.RedPaletteColorLookupTableData, dtype="<u2")
    indices = ds.pixel_array  # pydicom's raw indices
    red = rgb_channels(convert.load(path).array)[..., 0, 0].T
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    np.testing.assert_array_equal(red, (lut[np.clip(indices.astype(int) - first, 0, len(lut) - 1)] >> 8))


@pytest.mark.parametrize("name", sorted(n for n, v in PYDICOM_FILES.items() if v[2]))
def test_pydicom_colour_files_match_dcm2niix(tmp_path: Path, name: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / name).write_bytes(_testdata(name).read_bytes())
    ref = nib.load(_dcm2niix(src, tmp_path / "ref"))
    volume = convert.load(src / name)
    ours, our_affine = _canonical(volume.array, volume.affine)
    theirs, their_affine = _canonical(np.asanyarray(ref.dataobj), ref.affine)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(our_affine[:3, :3], their_affine[:3, :3], atol=1e-4)  # no IPP: origin arbitrary
    diff = np.abs(rgb_channels(ours).astype(int) - rgb_channels(theirs).astype(int))
    if PYDICOM_FILES[name][2] == "exact":
        assert diff.max() == 0
    else:  # lossy JPEG: dcm2niix's own decoder rounds/upsamples differently from libjpeg
        assert diff.mean() < 3.0 and np.median(diff) <= 2, (diff.mean(), np.median(diff))


# --------------------------------------------------------------------------- refusals
def test_16_bit_colour_is_refused_naming_the_file() -> None:
    path = _testdata("SC_rgb_rle_16bit.dcm")
    with pytest.raises(UnsupportedDataError, match="16-bit-per-sample colour") as info:
        convert.load(path)
    assert str(path) in str(info.value) and "8-bit RGB" in str(info.value)


def test_cli_16_bit_colour_is_one_red_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["convert", str(_testdata("SC_rgb_rle_16bit.dcm")), str(tmp_path / "o.nii")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "16-bit-per-sample colour" in result.output
    assert not (tmp_path / "o.nii").exists()


def test_unsupported_colour_model_is_refused(tmp_path: Path) -> None:
    paths, _, _ = make_colour_series(tmp_path, "rgb", slices=1)
    ds = pydicom.dcmread(str(paths[0]))
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.save_as(str(paths[0]))
    with pytest.raises(UnsupportedDataError, match="YBR_PARTIAL_420") as info:
        _read(tmp_path)
    assert str(paths[0]) in str(info.value)


# --------------------------------------------------------------------------- whole-tree conversion and writers
def test_tree_with_colour_and_grey_series_converts_both(tmp_path: Path) -> None:
    _, _, values = make_colour_series(tmp_path / "in" / "colour", "ybr-full", series_number=5)
    make_series(tmp_path / "in" / "grey", series_number=6)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", name="{SeriesNumber}")
    assert report.ok, [o.error for o in report.outcomes]
    colour = nib.load(tmp_path / "out" / "5.nii.gz")
    assert colour.header["datatype"] == 128 and colour.get_data_dtype() == RGB_DTYPE
    assert (tmp_path / "out" / "5.json").exists()
    grey = nib.load(tmp_path / "out" / "6.nii.gz")
    assert grey.get_data_dtype() == np.int16


@pytest.mark.parametrize("to,name", [("nrrd", "5.nrrd"), ("analyze", "5.hdr"), ("nifti", "5.nii")])
def test_colour_series_to_every_rgb_writer(tmp_path: Path, to: str, name: str) -> None:
    import warnings

    _, _, values = make_colour_series(tmp_path / "in", "rgb", "axial", series_number=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Analyze: orientation notes
        report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", to=to, name="{SeriesNumber}")
    assert report.ok, [o.error for o in report.outcomes]
    back = convert.load(tmp_path / "out" / name)
    volume = _read(tmp_path / "in")
    assert back.is_rgb
    ours, _ = _canonical(back.array, back.affine)
    ref, _ = _canonical(volume.array, volume.affine)
    np.testing.assert_array_equal(rgb_channels(ours), rgb_channels(ref))


def test_colour_series_to_minc_fails_clearly_and_other_series_convert(tmp_path: Path) -> None:
    make_colour_series(tmp_path / "in" / "colour", "rgb", "axial", series_number=5)
    make_series(tmp_path / "in" / "grey", "axial", series_number=6)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out", to="minc2", name="{SeriesNumber}")
    failed = {o.label.split()[0]: o.error for o in report.outcomes if not o.ok}
    assert len(failed) == 1
    (error,) = failed.values()
    assert "MINC2" in error and "NIfTI" in error and "NRRD" in error
    assert (tmp_path / "out" / "6.mnc").exists() and not (tmp_path / "out" / "5.mnc").exists()


def test_cli_info_shows_colour(tmp_path: Path) -> None:
    make_colour_series(tmp_path / "in", "palette8", series_number=3)
    folder = runner.invoke(app, ["info", str(tmp_path / "in")])
    assert folder.exit_code == 0, folder.output
    assert "colour" in folder.output and "PALETTE" in folder.output  # (the table may wrap the flag)
    listing = runner.invoke(app, ["info", "--json", str(tmp_path / "in")])
    assert [s["colour"] for s in json.loads(listing.output)["series"]] == ["PALETTE COLOR"]
    convert.save(_read(tmp_path / "in"), tmp_path / "c.nii.gz")
    single = runner.invoke(app, ["info", "--json", str(tmp_path / "c.nii.gz")])
    assert single.exit_code == 0, single.output
    summary = json.loads(single.output)
    assert summary["colour"] == "RGB" and summary["dtype"].startswith("RGB24")
    lo, hi = summary["value_range"]
    assert 0 <= lo <= hi <= 255


def test_rgb_helpers_round_trip() -> None:
    channels = np.random.default_rng(0).integers(0, 256, size=(4, 3, 2, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_channels(rgb_from_channels(channels)), channels)


# --------------------------------------------------------------------------- enhanced multi-frame colour
def _colourise_enhanced(path: Path, photometric: str = "RGB") -> np.ndarray:
    """Turn a synthetic Enhanced MR file (tests.test_multiframe.make_enhanced) into 8-bit colour frames.

    Returns the RGB written, ``[frame, row, col, 3]``. The per-frame RescaleSlope 2 / intercept -5
    stays in the functional groups: it must not be applied to colour.
    """
    from pydicom.pixels import convert_color_space

    ds = pydicom.dcmread(str(path))
    n, rows, cols = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    rgb = np.random.default_rng(8).integers(0, 256, size=(n, rows, cols, 3), dtype=np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    stored = convert_color_space(rgb, "RGB", "YBR_FULL") if photometric == "YBR_FULL" else rgb
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB"
    ds.save_as(str(path))
    return rgb


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_enhanced_colour_frames_land_at_their_positions(tmp_path: Path, photometric: str) -> None:
    from pydicom.pixels import pixel_array

    from convert.dicom.multiframe import read_enhanced
    from tests.test_multiframe import make_enhanced

    path, truth = make_enhanced(tmp_path / "enh.dcm", echoes=(10.0,), n_times=2, n_slices=3)
    _colourise_enhanced(path, photometric)
    decoded = pixel_array(pydicom.dcmread(str(path)))  # pydicom's RGB, [frame, row, col, 3]
    (volume,) = read_enhanced(path)
    assert volume.is_rgb and volume.shape == (5, 4, 3, 2) and not volume.is_scaled
    ours = rgb_channels(volume.array)
    for index, frame in enumerate(truth):
        np.testing.assert_array_equal(ours[:, :, frame["k"], frame["t"]], decoded[index].transpose(1, 0, 2))


def test_enhanced_palette_colour_is_refused_clearly(tmp_path: Path) -> None:
    from convert.dicom.multiframe import read_enhanced
    from tests.test_multiframe import make_enhanced

    path, _ = make_enhanced(tmp_path / "enh.dcm", echoes=(10.0,), n_times=1)
    ds = pydicom.dcmread(str(path))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(str(path))
    with pytest.raises(UnsupportedDataError, match="enhanced multi-frame colour") as info:
        read_enhanced(path)
    assert str(path) in str(info.value)


def test_palette_and_grey_images_of_one_series_are_split(tmp_path: Path) -> None:
    """Palette colour has one sample per pixel like grey: one SeriesInstanceUID holding both gives two series."""
    make_colour_series(tmp_path / "p", "palette8", "axial", slices=3, series_uid="2.25.77", study_uid="2.25.7")
    make_series(tmp_path / "g", "axial", slices=3, series_uid="2.25.77", study_uid="2.25.7")
    series = assemble(scan(tmp_path).instances)
    assert len(series) == 2
    volumes = sorted((read_series(s) for s in series), key=lambda v: v.is_rgb)
    assert not volumes[0].is_rgb and volumes[1].is_rgb
