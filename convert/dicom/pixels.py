"""Pixel decoding: every transfer syntax the pylibjpeg plugins decode, size checks, bit fixes, rescale.

* Decoding goes through :func:`pydicom.pixels.pixel_array` with the decoder
  plugin chosen explicitly (:data:`DECODING_PLUGIN`: the pylibjpeg family that
  medconvert ships, pylibjpeg-libjpeg/openjpeg/rle), never whatever else is
  installed: python-gdcm (which dicom2nifti pulls in) aborts the whole process
  on some broken files. Explicit/implicit little endian, big endian, deflated,
  RLE, JPEG lossless/baseline/extended, JPEG-LS, JPEG 2000 and HTJ2K.
* Before any decoder sees the data, :func:`check_pixel_data` checks that the
  header adds up (see there): Rows/Columns/frames/bits against the pixel data
  length (native) or against each frame's own codestream header (compressed),
  fragments that lie within the file, and a decoded size the file could hold.
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

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from convert.dicom.validity import transfer_syntax
from convert.errors import ConvertError, CorruptFileError, DicomError, UnsupportedDataError
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
        CorruptFileError: no pixel data element there, fewer bytes than ``nbytes``, or a length
            beyond the end of the file (a broken header: refused even when the pixels are there).
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
    remaining = os.fstat(fh.fileno()).st_size - fh.tell()
    if length > remaining:
        raise CorruptFileError(f"the pixel data element claims {length} bytes but the file ends {remaining} bytes "
                               "after its start: the file is truncated or its header is corrupt", path)
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

    from convert.dicom.validity import install

    install()

    if path.name.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rb") as fh:
            return pydicom.dcmread(io.BytesIO(fh.read()), force=True)
    return pydicom.dcmread(str(path), force=True)


#: pydicom decoder plugin for every encapsulated transfer syntax (pylibjpeg-libjpeg, -openjpeg, -rle:
#: declared dependencies). Never GDCM: it aborts the process (a C++ exception) on headers that do not
#: match the codestream, e.g. a JPEG-LS file with Rows=65535.
DECODING_PLUGIN = "pylibjpeg"
#: Decoded pixel data may exceed its compressed size by this factor (and any amount below
#: :data:`DECODED_BYTES_WITHOUT_CHECK`); beyond it the header's matrix size cannot be right.
MAX_COMPRESSION_RATIO = 1000
DECODED_BYTES_WITHOUT_CHECK = 256 << 20
#: Bits per sample medconvert decodes (BitsAllocated).
BITS_ALLOCATED = (1, 8, 16, 32, 64)


def header_count(ds: Any, keyword: str, default: int, path: Path) -> int:
    """A count (Rows, NumberOfFrames...) from ``ds`` as an int; ``default`` when absent or empty.

    Raises:
        CorruptFileError: the value is not a whole number (``"abc"``, ``"1.5"``) or is negative.
    """
    try:
        value = ds.get(keyword, None)
    except Exception as exc:  # an element pydicom cannot convert
        raise CorruptFileError(f"{keyword} cannot be read: {exc}", path) from exc
    if value is None or value == "":
        return default
    try:
        number = float(str(value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
                           else value))
    except (TypeError, ValueError, IndexError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number) or number < 0:
        raise CorruptFileError(f"{keyword} is {str(value)[:40]!r}, not a whole number: the header is corrupt", path)
    return int(number)


def decoded_size(rows: int, columns: int, frames: int, samples: int, bits_allocated: int) -> int:
    """Bytes of ``frames`` decoded frames (1-bit data packed, as stored natively)."""
    return (rows * columns * frames * samples * bits_allocated + 7) // 8


def check_decoded_size(path: Path, rows: int, columns: int, frames: int, samples: int, bits_allocated: int,
                       stored_bytes: int, compressed: bool) -> None:
    """Refuse a header whose pixel matrix the file cannot hold, before anything is allocated.

    ``stored_bytes``: bytes of pixel data in the file (for a compressed file, the file size
    will do). Native data must hold every pixel; compressed data may expand at most
    :data:`MAX_COMPRESSION_RATIO` times (above :data:`DECODED_BYTES_WITHOUT_CHECK`).

    Raises:
        CorruptFileError: the header describes more pixels than the file could hold.
    """
    if rows <= 0 or columns <= 0:
        raise CorruptFileError(f"Rows x Columns is {rows} x {columns}: the image has no pixels", path)
    need = decoded_size(rows, columns, max(frames, 1), samples, bits_allocated)
    if not compressed and stored_bytes < need:
        raise CorruptFileError(
            f"the header describes {columns}x{rows}x{max(frames, 1)} pixels of {bits_allocated} bits ({need} bytes) "
            f"but the file holds {stored_bytes} bytes of pixel data: the file is truncated or its header is wrong",
            path)
    if compressed and need > DECODED_BYTES_WITHOUT_CHECK and need > MAX_COMPRESSION_RATIO * stored_bytes:
        raise CorruptFileError(
            f"the header describes {columns}x{rows}x{max(frames, 1)} pixels ({need >> 20} MiB) but the file holds "
            f"only {stored_bytes} bytes of compressed data: Rows, Columns or NumberOfFrames is wrong", path)


def check_file_size(path: Path, rows: int, columns: int, frames: int, samples: int, bits_allocated: int,
                    transfer_syntax: str, photometric: str = "") -> None:
    """:func:`check_decoded_size` against the size of the file itself (cheap: one ``stat``), for
    callers that allocate a volume from header values before reading any pixel data.

    Native data must fit in the file (YBR_FULL_422: 2 bytes per pixel); compressed (or gzipped,
    or unknown) data may expand by :data:`MAX_COMPRESSION_RATIO`. Raises CorruptFileError naming ``path``.
    """
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise CorruptFileError(f"cannot read file: {exc.strerror or exc}", path) from exc
    native = transfer_syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2") \
        and not str(path).lower().endswith(".gz")
    if native and samples == 3 and photometric.strip().upper() == "YBR_FULL_422":
        samples = 2  # Cb and Cr shared by two pixels
    check_decoded_size(Path(path), rows, columns, frames, samples, bits_allocated, size, not native)


def _encapsulated_fragments(value: bytes, path: Path) -> list[bytes]:
    """The items of encapsulated pixel data (offset table first), every length checked to lie within."""
    out, pos, end = [], 0, len(value)
    while pos + 8 <= end:
        group, element, length = struct.unpack_from("<HHI", value, pos)
        if (group, element) == (0xFFFE, 0xE0DD):
            break
        if (group, element) != (0xFFFE, 0xE000):
            raise CorruptFileError(f"encapsulated pixel data holds tag ({group:04X},{element:04X}) where an item "
                                   "should be: the pixel data is corrupt", path)
        if length == 0xFFFFFFFF or pos + 8 + length > end:
            raise CorruptFileError(
                f"pixel data fragment {len(out)} claims {length} bytes but only {end - pos - 8} remain: the file "
                "is truncated or corrupt", path)
        out.append(value[pos + 8:pos + 8 + length])
        pos += 8 + length
    if not out:
        raise CorruptFileError("encapsulated pixel data holds no item", path)
    if len(out) == 1:
        raise CorruptFileError("encapsulated pixel data holds an offset table but no image fragment", path)
    return out


def _jpeg_frame_size(frame: bytes) -> tuple[int, int, int, int] | None:
    """(columns, rows, components, precision) from a JPEG / JPEG-LS frame header (SOFn), or None."""
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(frame[pos + 2:pos + 4], "big")
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            if pos + 10 > len(frame):
                return None
            precision = frame[pos + 4]
            rows = int.from_bytes(frame[pos + 5:pos + 7], "big")
            columns = int.from_bytes(frame[pos + 7:pos + 9], "big")
            return columns, rows, frame[pos + 9], precision
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _j2k_frame_size(frame: bytes) -> tuple[int, int, int, int] | None:
    """(columns, rows, components, precision) from a JPEG 2000 codestream's SIZ marker, or None."""
    at = frame.find(b"\xff\x4f\xff\x51", 0, 4096)
    if at < 0 or at + 4 + 38 + 3 > len(frame):
        return None
    siz = at + 4
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", frame, siz + 4)
    components = int.from_bytes(frame[siz + 36:siz + 38], "big")
    precision = (frame[siz + 38] & 0x7F) + 1
    return xsiz - xo, ysiz - yo, components, precision


def _check_frame(frame: bytes, index: int, uid: Any, rows: int, columns: int, samples: int, bits_allocated: int,
                 path: Path) -> None:
    """A compressed frame's own header must describe the image the DICOM header does."""
    text = str(uid)
    name = uid.name if hasattr(uid, "name") else text
    if text == "1.2.840.10008.1.2.5":  # RLE: a 64-byte header of segment count and offsets
        if len(frame) < 64:
            raise CorruptFileError(f"RLE frame {index + 1} is {len(frame)} bytes, shorter than its header", path)
        header = struct.unpack_from("<16I", frame)
        segments, offsets = header[0], header[1:1 + min(header[0], 15)]
        expected = samples * max(1, bits_allocated // 8)
        if segments != expected:
            raise CorruptFileError(f"RLE frame {index + 1} holds {segments} segments but {samples} sample(s) of "
                                   f"{bits_allocated} bits need {expected}: the header or the data is corrupt", path)
        if any(o < 64 or o >= len(frame) for o in offsets) or list(offsets) != sorted(offsets):
            raise CorruptFileError(f"RLE frame {index + 1} has segment offsets outside the frame: the pixel data "
                                   "is truncated or corrupt", path)
        return
    size = None
    if text.startswith("1.2.840.10008.1.2.4.") and text.split(".")[-1] in ("50", "51", "57", "70", "80", "81"):
        size = _jpeg_frame_size(frame)
        kind = "JPEG"
    elif text.startswith(("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")):
        size = _j2k_frame_size(frame)
        kind = "JPEG 2000"
    else:
        return
    if size is None:
        raise CorruptFileError(f"frame {index + 1} is not a {kind} codestream as transfer syntax {name} says "
                               "(no frame header found): the pixel data is corrupt", path)
    got_cols, got_rows, components, precision = size
    if got_cols != columns or (got_rows and got_rows != rows) or components != samples \
            or precision > max(bits_allocated, 8):
        raise CorruptFileError(
            f"the {kind} codestream of frame {index + 1} holds {got_cols}x{got_rows} pixels, {components} "
            f"component(s) of {precision} bits, but the header says {columns}x{rows}, {samples} of "
            f"{bits_allocated} bits (Columns x Rows, SamplesPerPixel, BitsAllocated): the header is wrong", path)


def check_pixel_data(ds: Any, path: Path, *, samples: int | None = None, bits_per_pixel: int | None = None) -> None:
    """Check that ``ds``'s pixel data adds up before any decoder sees it.

    * the transfer syntax is known and has a decoder (not empty, not private);
    * Rows, Columns, NumberOfFrames, SamplesPerPixel and BitsAllocated are usable numbers;
    * native data holds every pixel (:func:`check_decoded_size`), compressed data is
      encapsulated, every fragment lies within the data, the decoded size is one the
      file could hold, and each frame's codestream header (JPEG / JPEG-LS SOF, JPEG 2000 SIZ,
      RLE segment table) describes the same matrix, sample count and (at most) bit depth.

    ``samples``/``bits_per_pixel`` override SamplesPerPixel / the bits per pixel of
    native data (e.g. YBR_FULL_422's 2 bytes per pixel).

    Raises:
        CorruptFileError / DicomError / UnsupportedDataError naming the file and what is wrong.
    """
    uid = transfer_syntax(ds, path)
    rows, columns = header_count(ds, "Rows", 0, path), header_count(ds, "Columns", 0, path)
    frames = max(1, header_count(ds, "NumberOfFrames", 1, path))
    spp = header_count(ds, "SamplesPerPixel", 1, path) if samples is None else samples
    bits = header_count(ds, "BitsAllocated", 16, path)
    if spp not in (1, 3):
        raise UnsupportedDataError(f"SamplesPerPixel of {spp} is not supported (1 grey, 3 colour)", path)
    if bits not in BITS_ALLOCATED:
        raise UnsupportedDataError(f"BitsAllocated of {bits} is not supported (only "
                                   f"{', '.join(map(str, BITS_ALLOCATED))})", path)
    if "PixelData" not in ds:  # float pixel data: native only
        return
    raw = ds._dict.get(0x7FE00010) if hasattr(ds, "_dict") else None
    undefined = getattr(raw, "length", None) == 0xFFFFFFFF or getattr(raw, "is_undefined_length", False)
    declared, stored = getattr(raw, "length", None), getattr(raw, "value", None)
    if declared is not None and not undefined and isinstance(stored, (bytes, bytearray)) and len(stored) < declared:
        raise CorruptFileError(f"the pixel data element claims {declared} bytes but the file holds {len(stored)}: "
                               "the file is truncated or its header is corrupt", path)
    try:
        value = ds.PixelData
    except Exception as exc:
        raise CorruptFileError(f"pixel data cannot be read (truncated?): {exc}", path) from exc
    if value is None:
        raise CorruptFileError("the pixel data element is empty", path)
    if not uid.is_encapsulated:
        if undefined:
            raise CorruptFileError(f"transfer syntax {uid.name} stores pixels natively but the pixel data is "
                                   "encapsulated (undefined length): the file is corrupt", path)
        per_pixel = bits if bits_per_pixel is None else bits_per_pixel
        check_decoded_size(path, rows, columns, frames, spp if bits_per_pixel is None else 1, per_pixel,
                           len(value), False)
        return
    if value[:4] != b"\xfe\xff\x00\xe0":
        raise CorruptFileError(f"transfer syntax {uid.name} needs encapsulated (itemised) pixel data but the pixel "
                               "data is stored natively: the transfer syntax or the data is wrong", path)
    fragments = _encapsulated_fragments(bytes(value), path)
    check_decoded_size(path, rows, columns, frames, spp, bits, sum(len(f) for f in fragments), True)
    from pydicom.encaps import generate_frames

    try:
        for index, frame in enumerate(generate_frames(value, number_of_frames=frames)):
            if index >= frames:
                break
            _check_frame(frame, index, uid, rows, columns, spp, bits, path)
    except ConvertError:
        raise
    except Exception as exc:  # pydicom's frame assembly on an odd offset table
        raise CorruptFileError(f"encapsulated pixel data cannot be split into frames: {exc}", path) from exc


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
    bits_allocated = header_count(ds, "BitsAllocated", 16, path) or 16
    bits_stored = header_count(ds, "BitsStored", bits_allocated, path) or bits_allocated
    signed = header_count(ds, "PixelRepresentation", 0, path) == 1
    rows, cols = header_count(ds, "Rows", 0, path), header_count(ds, "Columns", 0, path)
    if expected is not None and (rows, cols) != tuple(expected):
        raise DicomError(f"image is {cols}x{rows} but the series is {expected[1]}x{expected[0]}", path)
    check_pixel_data(ds, path)
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        with decoder_panics(path):
            arr = pixel_array(ds, raw=True, decoding_plugin=DECODING_PLUGIN)
    except (NotImplementedError, RuntimeError) as exc:
        raise decoder_error(exc, ts, path, "pixel data") from exc
    except (ValueError, IndexError, EOFError, OSError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptFileError(f"pixel data cannot be decoded (truncated or corrupt): {exc}", path) from exc
    arr = np.asarray(arr)
    nframes = header_count(ds, "NumberOfFrames", 1, path) or 1
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
    samples = header_count(ds, "SamplesPerPixel", 1, path) or 1
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    bits_allocated = header_count(ds, "BitsAllocated", 8, path) or 8
    rows, cols = header_count(ds, "Rows", 0, path), header_count(ds, "Columns", 0, path)
    nframes = header_count(ds, "NumberOfFrames", 1, path) or 1
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
        check_pixel_data(ds, path)
    else:
        # native YBR_FULL_422 holds 2 bytes per pixel (Cb, Cr shared by two pixels), other colour 3
        check_pixel_data(ds, path, bits_per_pixel=8 * (2 if photometric == "YBR_FULL_422" else 3))
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        with decoder_panics(path):
            if palette:
                indices = pixel_array(ds, raw=True, decoding_plugin=DECODING_PLUGIN)
                arr = apply_color_lut(indices, ds)[..., :3]
                if arr.dtype.itemsize > 1:
                    arr = (arr >> 8).astype(np.uint8)  # 16-bit LUT entries: keep the high byte
                out_photometric = "RGB"
            else:
                arr, info = get_decoder(ts).as_array(ds, as_rgb=True, decoding_plugin=DECODING_PLUGIN)
                out_photometric = str(info.get("photometric_interpretation", "") or "").upper()
    except (NotImplementedError, RuntimeError) as exc:
        raise decoder_error(exc, ts, path, "colour pixel data") from exc
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


@contextlib.contextmanager
def decoder_panics(path: Path) -> Iterator[None]:
    """Turn a decoder's Rust panic (pyo3 ``PanicException``, a BaseException: pylibjpeg-rle on a frame
    that decodes to more bytes than the header allows) into a CorruptFileError naming the file."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise CorruptFileError(f"pixel data cannot be decoded (the decoder found it inconsistent: {exc})",
                               path) from None


def decoder_error(exc: BaseException, ts: str, path: Path, what: str = "pixel data") -> ConvertError:
    """The error to raise when pydicom's decoder failed: CorruptFileError when the plugin ran and
    rejected the data, DicomError when no plugin decodes this transfer syntax."""
    text = str(exc)
    if "exceptions were raised by all available plugins" in text:
        reason = text.split(":", 1)[-1].strip().replace("\n", " ")
        return CorruptFileError(f"{what} in transfer syntax {_ts_name(ts)} cannot be decoded: it is corrupt or "
                                f"does not match the header ({reason})", path)
    return DicomError(f"cannot decode {what} in transfer syntax {_ts_name(ts)}: {text}. medconvert decodes with "
                      "the pylibjpeg plugins (pylibjpeg-libjpeg, -openjpeg, -rle); re-export the file "
                      "uncompressed or in a standard compressed transfer syntax", path)


def _ts_name(ts: str) -> str:
    try:
        from pydicom.uid import UID

        return f"{UID(ts).name} ({ts})" if ts else "(unknown)"
    except Exception:  # pragma: no cover
        return ts


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
