"""Pixel decoding: any transfer syntax pydicom's handlers (pylibjpeg, gdcm) support, bit fixes, rescale.

* Decoding goes through :func:`pydicom.pixels.pixel_array` with the installed
  plugins (pylibjpeg-libjpeg/openjpeg/rle, python-gdcm): explicit/implicit
  little endian, big endian, RLE, JPEG lossless/baseline, JPEG-LS, JPEG 2000.
* Stored values are masked to BitsStored and sign-extended at bit
  ``BitsStored - 1`` (garbage in the unused high bits is common with 12-bit data).
* Unsigned data with spare high bits (12 stored in 16) is returned as the signed
  type of the same size (lossless; NIfTI tools prefer int16 to uint16).
* MONOCHROME1 (0 = white) is inverted to MONOCHROME2 semantics:
  ``stored' = min + max - stored`` over the range BitsStored can hold.
* Colour (:func:`is_colour`) is decoded to 8-bit RGB, structured dtype
  :data:`~convert.volume.RGB_DTYPE` (see :func:`decode_colour_frames`): RGB
  with PlanarConfiguration 0 or 1; YBR_FULL, YBR_FULL_422 (subsampled
  uncompressed, or baseline JPEG) converted to RGB by pydicom's
  ``convert_color_space``/the codec; YBR_ICT/YBR_RCT (JPEG 2000) converted by
  the codec; PALETTE COLOR expanded through its lookup tables
  (``apply_color_lut``; 16-bit LUT entries keep their high byte). Colour with
  more than 8 bits per sample, YBR_PARTIAL_* and other colour models are
  refused with :class:`~convert.errors.UnsupportedDataError`.
* Frames come back as ``[row, col]`` (DICOM order); the reader transposes them to ``[i, j]``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert.errors import CorruptFileError, DicomError, UnsupportedDataError
from convert.volume import rgb_from_channels


#: Photometric interpretations of colour images (DICOM PS3.3 C.7.6.3.1.2).
COLOUR_PHOTOMETRICS: tuple[str, ...] = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420",
                                         "YBR_PARTIAL_422", "PALETTE COLOR", "HSV", "ARGB", "CMYK")
#: Colour models medconvert decodes to RGB (the rest of COLOUR_PHOTOMETRICS is refused).
DECODED_COLOUR: tuple[str, ...] = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


def is_colour(samples_per_pixel: int | None, photometric: str | None) -> bool:
    """True for a colour image: several samples per pixel, or an RGB/YBR/PALETTE/... photometric interpretation."""
    text = str(photometric or "").strip().upper()
    return int(samples_per_pixel or 1) != 1 or text.startswith(("RGB", "YBR", "PALETTE", "HSV", "ARGB", "CMYK"))


def stored_dtype(bits_allocated: int, bits_stored: int, signed: bool) -> np.dtype:
    """numpy dtype for stored values: smallest that holds BitsStored (signed when spare bits allow)."""
    if bits_allocated == 1:
        return np.dtype(np.uint8)
    if bits_allocated <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits_allocated <= 16:
        return np.dtype(np.int16 if (signed or bits_stored < 16) else np.uint16)
    if bits_allocated <= 32:
        return np.dtype(np.int32 if (signed or bits_stored < 32) else np.uint32)
    raise UnsupportedDataError(f"{bits_allocated}-bit pixel data is not supported")


def fix_stored_bits(frame: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Mask to ``bits_stored`` bits and sign-extend at bit ``bits_stored - 1`` when ``signed``.

    Works on integer arrays of any width; returns a new array of the same dtype
    (floats are returned unchanged).
    """
    if not frame.dtype.isnative:  # big endian data: swap to native before looking at bits
        frame = frame.astype(frame.dtype.newbyteorder("="))
    if frame.dtype.kind not in "iu" or bits_stored <= 0 or bits_stored >= frame.dtype.itemsize * 8:
        return frame
    unsigned = frame.view(np.dtype(f"u{frame.dtype.itemsize}"))
    mask = (1 << bits_stored) - 1
    masked = unsigned & unsigned.dtype.type(mask)
    if not signed:
        return masked.view(frame.dtype) if frame.dtype.kind == "u" else masked.astype(frame.dtype)
    sign = unsigned.dtype.type(1 << (bits_stored - 1))
    signed_dtype = np.dtype(f"i{frame.dtype.itemsize}")
    # (v ^ sign) - sign sign-extends a two's-complement value of bits_stored bits
    return ((masked ^ sign).astype(signed_dtype) - signed_dtype.type(int(sign))).astype(signed_dtype)


def invert_monochrome1(frame: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """MONOCHROME1 -> MONOCHROME2: reflect values within the range BitsStored can hold."""
    if signed:
        lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        lo, hi = 0, (1 << bits_stored) - 1
    return (lo + hi - frame.astype(np.int64)).astype(frame.dtype)


def seek_native_pixels(fh: Any, path: Path, pixel_offset: int, implicit: bool, nbytes: int, what: str) -> int:
    """Position ``fh`` at the value of the uncompressed PixelData element whose tag is at
    ``pixel_offset`` and return the value's length, after checking it holds ``nbytes``.

    ``what`` describes the expected data in the error (e.g. ``"64x64 pixels of 16 bits"``).

    Raises:
        CorruptFileError: no pixel data element there, or fewer bytes than ``nbytes``.
        DicomError: encapsulated (compressed) pixel data under an uncompressed transfer syntax.
    """
    fh.seek(pixel_offset)
    size = 8 if implicit else 12
    head = fh.read(size)
    if len(head) < size or head[:4] != b"\xe0\x7f\x10\x00":
        raise CorruptFileError("pixel data element not found where the header ended (truncated?)", path)
    length = int.from_bytes(head[4:8] if implicit else head[8:12], "little")
    if length == 0xFFFFFFFF:
        raise DicomError("encapsulated pixel data in an uncompressed transfer syntax", path)
    if length < nbytes:
        raise CorruptFileError(f"pixel data is {length} bytes but {what} need {nbytes}: the file is truncated", path)
    return length


def native_frames(path: Path, pixel_offset: int, implicit: bool, n_frames: int, rows: int, columns: int,
                  bits_allocated: int, bits_stored: int, signed: bool) -> Any:
    """Yield the ``n_frames`` grey-level frames ``[row, col]`` of an uncompressed little-endian
    file one at a time, read straight from its bytes (no header parse), as pydicom's
    ``iter_pixels`` gives them: dtype from BitsAllocated and PixelRepresentation, values
    masked to BitsStored and sign-extended.

    Raises:
        CorruptFileError: see :func:`seek_native_pixels`; the file ends early.
        UnsupportedDataError: BitsAllocated other than 8, 16 or 32.
    """
    if bits_allocated not in (8, 16, 32):
        raise UnsupportedDataError(f"{bits_allocated}-bit pixel data is not read natively", path)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    frame_bytes = rows * columns * dtype.itemsize
    try:
        with open(path, "rb") as fh:
            seek_native_pixels(fh, path, pixel_offset, implicit, frame_bytes * n_frames,
                               f"{n_frames} frames of {columns}x{rows} pixels of {bits_allocated} bits")
            available = os.fstat(fh.fileno()).st_size - fh.tell()
            if available < frame_bytes * n_frames:  # found now, not halfway through the frames
                raise CorruptFileError(f"file ends {available} bytes into pixel data of {frame_bytes * n_frames} "
                                       f"bytes ({n_frames} frames): it is truncated", path)
            for index in range(n_frames):
                frame = np.empty((rows, columns), dtype=dtype)
                got = fh.readinto(memoryview(frame).cast("B"))
                if got != frame_bytes:
                    raise CorruptFileError(f"file ends inside frame {index + 1} of {n_frames}: it is truncated", path)
                yield fix_stored_bits(frame, bits_stored, signed) if bits_stored < bits_allocated else frame
    except OSError as exc:
        raise CorruptFileError(f"cannot read pixel data: {exc.strerror or exc}", path) from exc


def _read_full(path: Path) -> Any:
    import pydicom

    if path.name.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            return pydicom.dcmread(io.BytesIO(fh.read()), force=True)
    return pydicom.dcmread(str(path), force=True)


def decode_frames(path: Path, ds: Any | None = None, *, expected: tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
    """Decode every frame of one file to stored values ``[frame, row, col]``.

    Args:
        path: the DICOM file (named in errors).
        ds: the full dataset if already read (else it is read from ``path``).
        expected: ``(rows, columns)`` the series expects; a mismatch raises.

    Returns:
        ``(frames, dataset)``: frames in the dtype of :func:`stored_dtype`, masked,
        sign-extended and MONOCHROME1-inverted.

    Raises:
        CorruptFileError: truncated file or pixel data shorter than Rows x Columns.
        DicomError: transfer syntax without a decoder, or no pixel data.
        UnsupportedDataError: unusual bit depths, colour models we do not decode.

    Colour images come back as :data:`~convert.volume.RGB_DTYPE` frames (see
    :func:`decode_colour_frames`).
    """
    from pydicom.pixels import pixel_array

    path = Path(path)
    try:
        if ds is None:
            ds = _read_full(path)
    except Exception as exc:
        raise CorruptFileError(f"cannot read DICOM file (truncated or corrupt?): {exc}", path) from exc
    ensure_transfer_syntax(ds)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError("DICOM file has no pixel data (truncated, or not an image)", path)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if is_colour(samples, photometric):
        return decode_colour_frames(path, ds, expected=expected), ds
    bits_allocated = int(ds.get("BitsAllocated", 16) or 16)
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if expected is not None and (rows, cols) != tuple(expected):
        raise DicomError(f"image is {cols}x{rows} but the series is {expected[1]}x{expected[0]}", path)
    _check_pixel_length(ds, path, rows, cols, bits_allocated)
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        arr = pixel_array(ds, raw=True)
    except (NotImplementedError, RuntimeError) as exc:
        name = _ts_name(ts)
        raise DicomError(
            f"cannot decode pixel data in transfer syntax {name}: {exc}. Install a decoder plugin "
            "(pylibjpeg-libjpeg, pylibjpeg-openjpeg, python-gdcm) or re-export uncompressed",
            path,
        ) from exc
    except (ValueError, IndexError, EOFError, OSError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptFileError(f"pixel data cannot be decoded (truncated or corrupt): {exc}", path) from exc
    arr = np.asarray(arr)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.shape != (nframes, rows, cols):
        raise CorruptFileError(f"decoded pixel data has shape {arr.shape}, expected {(nframes, rows, cols)}", path)
    return stored_values(arr, bits_allocated, bits_stored, signed, photometric), ds


def stored_values(frames: np.ndarray, bits_allocated: int, bits_stored: int, signed: bool,
                  photometric: str) -> np.ndarray:
    """Grey-level frames as :func:`decode_frames` returns them: masked to BitsStored and
    sign-extended, MONOCHROME1 inverted, in :func:`stored_dtype` (float data as float32/64)."""
    if frames.dtype.kind == "f":
        return frames.astype(np.float32 if frames.dtype.itemsize <= 4 else np.float64)
    out_dtype = stored_dtype(bits_allocated, bits_stored, signed)
    frames = fix_stored_bits(frames, bits_stored, signed)
    if photometric == "MONOCHROME1":
        frames = invert_monochrome1(frames, bits_stored, signed)
    if frames.dtype != out_dtype:
        frames = frames.astype(out_dtype)
    return frames


def decode_colour_frames(path: Path, ds: Any, *, expected: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a colour image to 8-bit RGB frames ``[frame, row, col]`` of dtype :data:`~convert.volume.RGB_DTYPE`.

    * RGB (PlanarConfiguration 0 or 1) and YBR_FULL / YBR_FULL_422 / YBR_ICT /
      YBR_RCT in any transfer syntax pydicom's decoders handle: decoded with
      ``as_rgb=True``, so pydicom (``convert_color_space``) or the codec turns YCbCr
      into RGB; the decoder must report RGB output, else the file is refused.
    * PALETTE COLOR: stored indices through the red/green/blue lookup tables
      (pydicom ``apply_color_lut``; an alpha table is ignored). LUTs with 16-bit
      entries (values spread over 0..65535, DICOM PS3.3 C.7.6.3.1.5) keep their
      high byte (``value >> 8``), so an 8-bit colour stored as ``0xAB00`` or
      ``0xABAB`` gives ``0xAB``.
    * RescaleSlope/Intercept and MONOCHROME1 inversion do not apply to colour.

    Raises:
        UnsupportedDataError: more than 8 bits per sample (RGB24 holds 8 bits per
            channel), YBR_PARTIAL_*/HSV/ARGB/CMYK, or a sample count that does not
            match the photometric interpretation.
        DicomError: no decoder for the transfer syntax; wrong matrix size.
        CorruptFileError: truncated or undecodable pixel data.
    """
    from pydicom.pixels import apply_color_lut, get_decoder, pixel_array

    path = Path(path)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    bits_allocated = int(ds.get("BitsAllocated", 8) or 8)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if photometric not in DECODED_COLOUR:
        raise UnsupportedDataError(
            f"colour model {photometric or '(none)'} with {samples} samples per pixel is not supported; medconvert "
            f"decodes {', '.join(DECODED_COLOUR)}. Re-export the image as RGB", path)
    palette = photometric == "PALETTE COLOR"
    if samples != (1 if palette else 3):
        raise UnsupportedDataError(
            f"{photometric} with {samples} samples per pixel is inconsistent (expected {1 if palette else 3})", path)
    if not palette and bits_allocated != 8:
        raise UnsupportedDataError(
            f"{bits_allocated}-bit-per-sample colour ({photometric}) is not supported: colour volumes are RGB24 "
            "(8 bits per channel, as NIfTI and NRRD viewers expect) and reducing the precision would lose data. "
            "Convert the image to 8-bit RGB with a DICOM tool (e.g. gdcmconv, dcmj2pnm) first", path)
    if expected is not None and (rows, cols) != tuple(expected):
        raise DicomError(f"image is {cols}x{rows} but the series is {expected[1]}x{expected[0]}", path)
    if palette:
        _check_pixel_length(ds, path, rows, cols, bits_allocated)
    else:
        # native YBR_FULL_422 holds 2 bytes per pixel (Cb, Cr shared by two pixels), other colour 3
        _check_pixel_length(ds, path, rows, cols, 8 * (2 if photometric == "YBR_FULL_422" else 3))
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        if palette:
            indices = pixel_array(ds, raw=True)
            arr = apply_color_lut(indices, ds)[..., :3]
            if arr.dtype.itemsize > 1:
                arr = (arr >> 8).astype(np.uint8)  # 16-bit LUT entries: keep the high byte
            out_photometric = "RGB"
        else:
            arr, info = get_decoder(ts).as_array(ds, as_rgb=True)
            out_photometric = str(info.get("photometric_interpretation", "") or "").upper()
    except (NotImplementedError, RuntimeError) as exc:
        raise DicomError(
            f"cannot decode colour pixel data in transfer syntax {_ts_name(ts)}: {exc}. Install a decoder plugin "
            "(pylibjpeg-libjpeg, pylibjpeg-openjpeg, python-gdcm) or re-export uncompressed", path) from exc
    except (ValueError, IndexError, EOFError, OSError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptFileError(f"colour pixel data cannot be decoded (truncated or corrupt): {exc}", path) from exc
    if out_photometric != "RGB":
        raise UnsupportedDataError(
            f"{photometric} pixel data decoded to {out_photometric or 'an unknown colour space'}, not RGB; "
            "re-export the image as RGB", path)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[np.newaxis]
    if arr.shape != (nframes, rows, cols, 3) or arr.dtype != np.uint8:
        raise CorruptFileError(
            f"decoded colour pixel data has shape {arr.shape} ({arr.dtype}), expected {(nframes, rows, cols, 3)} "
            "(uint8)", path)
    return rgb_from_channels(arr)


def ensure_transfer_syntax(ds: Any) -> None:
    """Give a headerless (no file meta) dataset the TransferSyntaxUID it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit, little = True, True
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _ts_name(ts: str) -> str:
    try:
        from pydicom.uid import UID

        return f"{UID(ts).name} ({ts})" if ts else "(unknown)"
    except Exception:  # pragma: no cover
        return ts


def _check_pixel_length(ds: Any, path: Path, rows: int, cols: int, bits_allocated: int) -> None:
    """Native (uncompressed) pixel data must hold Rows x Columns x frames values.

    ``bits_allocated`` is the number of bits per pixel (for colour: per pixel, all samples).
    """
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        compressed = bool(ts is not None and ts.is_compressed)
    except Exception:
        compressed = False
    if compressed or "PixelData" not in ds:
        return
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    expected = (rows * cols * nframes * bits_allocated + 7) // 8
    try:
        have = len(ds.PixelData)
    except Exception as exc:
        raise CorruptFileError(f"pixel data cannot be read (truncated?): {exc}", path) from exc
    if have < expected:
        raise CorruptFileError(
            f"pixel data is {have} bytes but {cols}x{rows}x{nframes} pixels of {bits_allocated} bits need "
            f"{expected}: the file is truncated",
            path,
        )


def rescale_plan(slopes: Sequence[float], intercepts: Sequence[float], stored: np.dtype,
                 stored_range: tuple[float, float]) -> tuple[str, np.dtype, float, float]:
    """Decide how to carry RescaleSlope/Intercept for a series.

    Returns ``(mode, dtype, slope, intercept)``: mode ``"common"`` when every
    slice shares one slope/intercept (keep the stored dtype; carry them in the
    Volume), else ``"apply"``: apply per slice into ``dtype`` (an integer type
    when every result is an integer, else float32) with slope 1, intercept 0.
    """
    s = np.asarray(slopes, dtype=np.float64)
    b = np.asarray(intercepts, dtype=np.float64)
    if np.all(s == s[0]) and np.all(b == b[0]):
        return "common", stored, float(s[0]), float(b[0])
    if stored.kind in "iu" and np.all(s == np.round(s)) and np.all(b == np.round(b)):
        lo, hi = stored_range
        candidates = np.concatenate([s * lo + b, s * hi + b])
        vmin, vmax = float(candidates.min()), float(candidates.max())
        for dt in (np.int16, np.int32):
            info = np.iinfo(dt)
            if info.min <= vmin and vmax <= info.max:
                return "apply", np.dtype(dt), 1.0, 0.0
    return "apply", np.dtype(np.float32), 1.0, 0.0


# --------------------------------------------------------------------------- Philips private scaling
#: Private creator of Philips' MR block holding ScaleIntercept (xx0D) and ScaleSlope (xx0E), group 2005.
PHILIPS_MR_CREATOR = "Philips MR Imaging DD 001"
#: ``philips_scaling`` values: ``"precise"`` (dcm2niix's default, ``-p y``) or ``"display"`` (``-p n``).
PHILIPS_SCALINGS: tuple[str, ...] = ("precise", "display")


def check_philips_scaling(value: str) -> str:
    """``value`` if it is one of :data:`PHILIPS_SCALINGS`; else :class:`~convert.errors.ConvertError`."""
    from convert.errors import ConvertError

    if value not in PHILIPS_SCALINGS:
        raise ConvertError(f"philips_scaling must be one of {', '.join(PHILIPS_SCALINGS)}, not {value!r}")
    return value


def philips_precise_scaling(rescale_slope: float, rescale_intercept: float,
                            scale_slope: float) -> tuple[float, float]:
    """Slope and intercept giving Philips' *precise* floating-point value from the stored value.

    Philips MR stores ``SV``; the display value is ``DV = SV * RS + RI``
    (RescaleSlope/Intercept, 0028,1053/1052) and the scanner's internal
    floating-point value is ``FP = DV / (RS * SS)`` with ``SS`` the private
    ScaleSlope (2005,xx0E). So ``FP = SV / SS + RI / (RS * SS)``: returns
    ``(1 / SS, RI / (RS * SS))``. The private ScaleIntercept (2005,xx0D) is not
    part of it (dcm2niix ignores it too). ``RS`` of 0 means 1 (absent).
    """
    rs = rescale_slope if rescale_slope else 1.0
    return 1.0 / scale_slope, rescale_intercept / (rs * scale_slope)


def philips_scaling_fields(rescale_slope: float, rescale_intercept: float, scale_slope: float,
                           philips_scaling: str) -> dict[str, Any]:
    """The sidecar record of a Philips volume's scaling, under dcm2niix's BIDS names.

    ``PhilipsRescaleSlope``/``PhilipsRescaleIntercept`` (0028,1053/1052),
    ``PhilipsScaleSlope`` (2005,xx0E) of the first slice/frame, and
    ``UsePhilipsFloatNotDisplayScaling``: 1 for ``"precise"`` values, 0 for ``"display"``.
    """
    return {"PhilipsRescaleSlope": float(rescale_slope), "PhilipsRescaleIntercept": float(rescale_intercept),
            "PhilipsScaleSlope": float(scale_slope),
            "UsePhilipsFloatNotDisplayScaling": 1 if philips_scaling == "precise" else 0}


def philips_scale_slope(ds: Any) -> float | None:
    """Philips private ScaleSlope (2005,xx0E) at the top level of a Philips header, or None.

    None unless Manufacturer says Philips, the block's creator is
    :data:`PHILIPS_MR_CREATOR` and the value is a finite non-zero number.
    """
    if "PHILIPS" not in str(ds.get("Manufacturer", "") or "").upper():
        return None
    try:
        value = ds.private_block(0x2005, PHILIPS_MR_CREATOR)[0x0E].value
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    return scale_slope_value(value)


def scale_slope_value(value: Any) -> float | None:
    """A private scale factor as a float: first of several values, raw little-endian FL bytes
    decoded; None when missing, zero or not finite."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    if isinstance(value, (bytes, bytearray)):  # raw FL read without a dictionary (implicit VR)
        value = np.frombuffer(bytes(value[:4]), "<f4")[0] if len(value) >= 4 else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number != 0 else None
