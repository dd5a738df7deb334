"""convert.dicom.pixels: bit masking, sign extension, MONOCHROME1, colour decoding, truncation, rescale plans."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fixtures.dicom_series import (  # noqa: E402
    make_12bit_garbage,
    make_colour_series,
    make_monochrome1,
    make_rgb,
    make_series,
    make_short_pixel_data,
    make_unsupported_transfer_syntax,
    stored_data,
    truncate_file,
)

from convert.dicom.pixels import (  # noqa: E402
    decode_colour_frames,
    decode_frames,
    is_colour,
    fix_stored_bits,
    invert_monochrome1,
    rescale_plan,
    stored_dtype,
)
from convert.errors import CorruptFileError, DicomError, UnsupportedDataError  # noqa: E402
from convert.volume import RGB_DTYPE, rgb_channels  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 15), st.booleans(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_fix_stored_bits_recovers_any_value_under_any_garbage(bits: int, signed: bool, value: int, garbage: int) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    value = lo + value % (hi - lo + 1)
    pattern = (value & ((1 << bits) - 1)) | (garbage & ~((1 << bits) - 1) & 0xFFFF)
    raw = np.array([pattern], dtype=np.uint16)
    if signed:
        raw = raw.view(np.int16)
    out = fix_stored_bits(raw, bits, signed)
    assert int(out[0]) == value


def test_fix_stored_bits_handles_big_endian_arrays() -> None:
    raw = np.array([0xF123], dtype=">u2")
    assert int(fix_stored_bits(raw, 12, False)[0]) == 0x123


def test_stored_dtype_prefers_signed_when_spare_bits_allow() -> None:
    assert stored_dtype(16, 12, False) == np.int16
    assert stored_dtype(16, 16, False) == np.uint16
    assert stored_dtype(16, 16, True) == np.int16
    assert stored_dtype(8, 8, False) == np.uint8
    assert stored_dtype(32, 32, True) == np.int32


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_12bit_with_garbage_high_bits_decodes_to_clean_values(tmp_path: Path, signed: bool) -> None:
    paths, clean = make_12bit_garbage(tmp_path, signed)
    for k, path in enumerate(paths):
        frames, _ = decode_frames(path)
        np.testing.assert_array_equal(frames[0].T, clean[:, :, k])


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    paths, data = make_monochrome1(tmp_path)
    frames, _ = decode_frames(paths[0])
    np.testing.assert_array_equal(frames[0].T, 4095 - data[:, :, 0])
    assert invert_monochrome1(np.array([-2048, 0, 2047], dtype=np.int16), 12, True).tolist() == [2047, -1, -2048]


def test_rgb_file_decodes_to_rgb24_frames_and_ignores_rescale(tmp_path: Path) -> None:
    path = make_rgb(tmp_path)  # all-black RGB; the generator left RescaleIntercept -1024 in the header
    frames, ds = decode_frames(path)
    assert frames.dtype == RGB_DTYPE and frames.shape == (1, ds.Rows, ds.Columns)
    assert float(ds.RescaleIntercept) == -1024 and not rgb_channels(frames).any()


@pytest.mark.parametrize("planar", [0, 1])
def test_planar_configuration_0_and_1_give_the_same_rgb(tmp_path: Path, planar: int) -> None:
    paths, _, values = make_colour_series(tmp_path, "rgb-planar" if planar else "rgb", "axial", slices=1)
    frames, ds = decode_frames(paths[0])
    assert int(ds.PlanarConfiguration) == planar
    np.testing.assert_array_equal(rgb_channels(frames[0]).transpose(1, 0, 2), values[:, :, 0])


def test_is_colour() -> None:
    assert is_colour(3, "RGB") and is_colour(1, "PALETTE COLOR") and is_colour(3, "YBR_FULL_422")
    assert not is_colour(1, "MONOCHROME2") and not is_colour(None, None)


def test_colour_pixel_data_shorter_than_three_samples_is_truncated(tmp_path: Path) -> None:
    import pydicom

    paths, _, _ = make_colour_series(tmp_path, "rgb", slices=1)
    ds = pydicom.dcmread(str(paths[0]))
    ds.PixelData = ds.PixelData[: ds.Rows * ds.Columns * 2]  # 2 of the 3 bytes per pixel
    ds.save_as(str(paths[0]))
    with pytest.raises(CorruptFileError, match="truncated") as info:
        decode_frames(paths[0])
    assert str(paths[0]) in str(info.value)


@pytest.mark.parametrize("change,message", [
    ({"BitsAllocated": 16, "BitsStored": 16, "HighBit": 15}, "16-bit-per-sample colour"),
    ({"PhotometricInterpretation": "HSV"}, "colour model HSV"),
    ({"SamplesPerPixel": 4}, "inconsistent"),
])
def test_colour_refusals_are_clear(tmp_path: Path, change: dict, message: str) -> None:
    import pydicom

    paths, _, _ = make_colour_series(tmp_path, "rgb", slices=1)
    ds = pydicom.dcmread(str(paths[0]))
    for key, value in change.items():
        setattr(ds, key, value)
    ds.PixelData = bytes(ds.Rows * ds.Columns * 8)
    with pytest.raises(UnsupportedDataError, match=message) as info:
        decode_colour_frames(paths[0], ds)
    assert str(paths[0]) in str(info.value)


def test_pixel_data_shorter_than_rows_x_columns(tmp_path: Path) -> None:
    _, bad = make_short_pixel_data(tmp_path)
    with pytest.raises(CorruptFileError, match="truncated") as info:
        decode_frames(bad)
    assert str(bad) in str(info.value)


def test_truncated_file(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path, slices=1)
    truncate_file(paths[0], paths[0].stat().st_size - 500)
    with pytest.raises(CorruptFileError) as info:
        decode_frames(paths[0])
    assert str(paths[0]) in str(info.value)


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    path = make_unsupported_transfer_syntax(tmp_path)
    with pytest.raises(DicomError, match="MPEG2|transfer syntax") as info:
        decode_frames(path)
    assert str(path) in str(info.value)


def test_matrix_size_mismatch_is_reported(tmp_path: Path) -> None:
    paths, spec = make_series(tmp_path, slices=1)
    with pytest.raises(DicomError, match="series is"):
        decode_frames(paths[0], expected=(spec.rows + 1, spec.columns))


def test_decoded_values_equal_written_values(tmp_path: Path) -> None:
    paths, spec = make_series(tmp_path, slices=2)
    frames, ds = decode_frames(paths[1])
    np.testing.assert_array_equal(frames[0].T, stored_data(spec)[:, :, 1, 0])
    assert frames.dtype == np.int16


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2"], ids=["rle", "implicit"])
def test_compressed_and_legacy_syntaxes_round_trip_exactly(tmp_path: Path, ts: str) -> None:
    """Encode our phantom with pydicom's encoders and decode it back.

    JPEG lossless, JPEG-LS, JPEG 2000 and big endian have no encoder installed here;
    they are covered on real scanner files by ``test_conformance`` (dcm_qa_ts).
    """
    import pydicom

    paths, spec = make_series(tmp_path, slices=1, signed=False, rescale_intercept=0.0, bits_stored=12,
                              data=np.random.default_rng(3).integers(0, 4096, (24, 32, 1, 1)))
    ds = pydicom.dcmread(paths[0])
    try:
        if ts == "1.2.840.10008.1.2":
            out = tmp_path / "out.dcm"
            ds.file_meta.TransferSyntaxUID = ts
            ds.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
        else:
            ds.compress(ts, encoding_plugin="")
            out = tmp_path / "out.dcm"
            ds.save_as(out, enforce_file_format=True)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        pytest.skip(f"no encoder for {ts} here: {exc}")
    frames, _ = decode_frames(out)
    np.testing.assert_array_equal(frames[0].T, stored_data(spec)[:, :, 0, 0])


def test_rescale_plan_common_keeps_stored_dtype() -> None:
    mode, dtype, slope, inter = rescale_plan([1, 1], [-1024, -1024], np.dtype(np.int16), (-32768, 32767))
    assert (mode, dtype, slope, inter) == ("common", np.int16, 1.0, -1024.0)


def test_rescale_plan_integer_per_slice_values_fit_an_integer_type() -> None:
    mode, dtype, _, _ = rescale_plan([1, 2], [-1024, 0], np.dtype(np.int16), (0, 4095))
    assert mode == "apply" and dtype == np.int16
    mode, dtype, _, _ = rescale_plan([1, 20], [-1024, 0], np.dtype(np.int16), (0, 4095))
    assert dtype == np.int32


def test_rescale_plan_fractional_values_go_to_float32() -> None:
    mode, dtype, _, _ = rescale_plan([0.5, 0.25], [0, 0], np.dtype(np.int16), (0, 4095))
    assert mode == "apply" and dtype == np.float32


# --------------------------------------------------------------------------- hostile headers (issue 17)
def _one_slice(tmp_path: Path, **changes) -> Path:
    paths, _ = make_series(tmp_path / "src", slices=1, rows=16, columns=12, **changes)
    return paths[0]


def _rle_slice(tmp_path: Path) -> Path:
    import pydicom
    from pydicom.uid import RLELossless

    path = _one_slice(tmp_path)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(path)
    return path


def _edit(path: Path, tag: int, **edit) -> Path:
    from fixtures.fuzz_corpus import edit_element

    path.write_bytes(edit_element(path.read_bytes(), tag, **edit))
    return path


def test_decoder_plugin_is_pylibjpeg_never_gdcm(tmp_path, monkeypatch):
    """Every compressed frame goes to the pylibjpeg plugins medconvert ships, even when GDCM is installed
    (python-gdcm aborts the process on inconsistent files): the plugin is passed explicitly."""
    import pydicom.pixels

    from convert.dicom import pixels

    assert pixels.DECODING_PLUGIN == "pylibjpeg"
    seen = []
    real = pydicom.pixels.pixel_array

    def spy(ds, *args, **kwargs):
        seen.append(kwargs.get("decoding_plugin"))
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    frames, _ = decode_frames(_rle_slice(tmp_path))
    assert seen == ["pylibjpeg"] and frames.shape == (1, 16, 12)


def test_rows_columns_65535_refused_before_allocating(tmp_path):
    """Rows = Columns = 65535 in a small native file: refused from the sizes (8 GiB are never allocated)."""
    from fixtures.fuzz_corpus import us16

    path = _edit(_edit(_one_slice(tmp_path), 0x00280010, value=us16(65535)), 0x00280011, value=us16(65535))
    with pytest.raises(CorruptFileError, match=r"65535x65535.*file holds"):
        decode_frames(path)


def test_rows_65535_in_compressed_data_refused_from_the_codestream(tmp_path):
    """RLE with Rows=65535: the decoded size the header implies cannot come from this file (and a
    JPEG 2000 frame's own SIZ header disagrees): refused before any decoder sees the frame."""
    from fixtures.fuzz_corpus import us16

    path = _edit(_rle_slice(tmp_path), 0x00280010, value=us16(65535))
    path = _edit(path, 0x00280011, value=us16(65535))
    with pytest.raises(CorruptFileError, match="compressed data"):
        decode_frames(path)
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    j2k, _ = make_series(tmp_path / "j2k", slices=1, rows=32, columns=32)
    ds = pydicom.dcmread(j2k[0])
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(j2k[0])
    _edit(j2k[0], 0x00280010, value=us16(64))
    with pytest.raises(CorruptFileError, match=r"JPEG 2000 codestream of frame 1 holds 32x32"):
        decode_frames(j2k[0])


def test_jpegls_rows_65535_refused_not_aborted(tmp_path):
    """The real JPEG-LS slice of dcm_qa_ts with Rows=65535 (GDCM aborts the process on it): its
    codestream's frame header says 384 rows, so medconvert refuses it with a message."""
    from fixtures.fuzz_corpus import us16
    from tests.conftest import conformance_dir

    source = conformance_dir("dcm_qa_ts") / "In" / "7.dcm"
    path = tmp_path / "7.dcm"
    path.write_bytes(source.read_bytes())
    _edit(path, 0x00280010, value=us16(65535))
    with pytest.raises(CorruptFileError, match=r"JPEG codestream of frame 1 holds 384x384"):
        decode_frames(path)


def test_truncated_rle_frame_refused(tmp_path):
    """An RLE frame cut to a third (its item length consistent): never zero-filled voxels."""
    import struct

    from fixtures.fuzz_corpus import dicom_elements

    path = _rle_slice(tmp_path)
    data = path.read_bytes()
    pixels = next(e for e in dicom_elements(data)[0] if e.tag == 0x7FE00010)
    bot_len = struct.unpack_from("<I", data, pixels.value_at + 4)[0]
    frag_at = pixels.value_at + 8 + bot_len
    frag_len = struct.unpack_from("<I", data, frag_at + 4)[0]
    keep = (frag_len // 3) & ~1
    cut = data[:frag_at + 4] + struct.pack("<I", keep) + data[frag_at + 8:frag_at + 8 + keep] \
        + data[frag_at + 8 + frag_len:]
    path.write_bytes(cut)
    with pytest.raises(CorruptFileError):
        decode_frames(path)


def test_fragment_length_beyond_the_data_refused(tmp_path):
    """A fragment whose item length runs past the end of the pixel data: refused, naming the fragment."""
    import struct

    from fixtures.fuzz_corpus import dicom_elements

    path = _rle_slice(tmp_path)
    data = path.read_bytes()
    pixels = next(e for e in dicom_elements(data)[0] if e.tag == 0x7FE00010)
    bot_len = struct.unpack_from("<I", data, pixels.value_at + 4)[0]
    frag_at = pixels.value_at + 8 + bot_len
    path.write_bytes(data[:frag_at + 4] + struct.pack("<I", len(data) * 3) + data[frag_at + 8:])
    with pytest.raises(CorruptFileError, match="fragment"):
        decode_frames(path)


def test_rle_frame_that_panics_the_decoder_is_a_corrupt_file(tmp_path):
    """Rows=1 on an RLE slice makes pylibjpeg-rle panic (a Rust panic, a BaseException in Python):
    it becomes a CorruptFileError naming the file, never an escaped PanicException."""
    from fixtures.fuzz_corpus import us16

    path = _edit(_rle_slice(tmp_path), 0x00280010, value=us16(1))
    with pytest.raises(CorruptFileError, match=str(path.name)):
        decode_frames(path)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1.5"])
def test_number_of_frames_not_a_whole_number(tmp_path, value):
    """NumberOfFrames 'abc' (or negative, or fractional) is a CorruptFileError, not a ValueError."""
    from convert.dicom.pixels import header_count

    class Header(dict):
        get = dict.get

    with pytest.raises(CorruptFileError, match="NumberOfFrames"):
        header_count(Header(NumberOfFrames=value.decode()), "NumberOfFrames", 1, tmp_path / "x.dcm")


def test_native_pixel_data_claimed_in_a_compressed_transfer_syntax(tmp_path):
    """A transfer syntax saying JPEG-LS over native pixel data: refused (the pixel data is not
    encapsulated), not pydicom's 'Found unexpected tag' while parsing an offset table."""
    path = _edit(_one_slice(tmp_path), 0x00020010, value=b"1.2.840.10008.1.2.4.80")
    with pytest.raises(CorruptFileError, match="encapsulated"):
        decode_frames(path)


@pytest.mark.parametrize("uid, error", [(b"1.2.3.4.5", DicomError), (b"", CorruptFileError)])
def test_unknown_or_empty_transfer_syntax(tmp_path, uid, error):
    path = _edit(_one_slice(tmp_path), 0x00020010, value=uid)
    with pytest.raises(error, match="ransfer ?[Ss]yntax"):
        decode_frames(path)
