"""NRRD read/write: attached ``.nrrd`` and detached ``.nhdr`` + data file.

Headers are parsed with pynrrd; the data section and the geometry are ours.

Reading
    * ``space``: ``left-posterior-superior`` (LPS), ``right-anterior-superior``
      (RAS), ``left-anterior-superior`` (LAS) and their ``-time`` variants are
      mapped exactly to RAS+ (through :func:`convert.geometry.affine_to_ras`).
      ``scanner-xyz`` and ``3D-right-handed`` carry no anatomical meaning; we
      treat them as LPS, which is what ITK and SimpleITK do.
      ``3D-left-handed`` cannot be placed in a patient frame and is refused.
    * No ``space`` and no ``space directions``: voxel axes follow ``spacings``
      (1 mm when absent or NaN) along the LPS axes, origin from ``axis mins``
      (+ half a voxel unless ``centerings`` says ``node``), again as ITK does.
    * ``space directions`` may hold ``none`` for one non-spatial axis (list,
      DWI gradients, time) anywhere, first or last: it becomes the 4th array
      axis, so the result is always ``[i, j, k]`` or ``[i, j, k, t]``. A
      ``spacings`` value on that axis (or a ``-time`` space's time direction)
      becomes ``meta.time_step`` in seconds (per-axis ``units`` ms/us/min are
      converted; seconds otherwise).
    * ``old min``/``old max`` on integer data (dcm2niix's way to store DICOM
      rescaling) become ``Volume.slope``/``intercept``.
    * ``space units`` other than mm (cm, m, um) are converted to mm.
    * Encodings ``raw``, ``gzip``, ``bzip2``, ``ascii``/``text`` and ``hex``;
      ``endian``; ``line skip``; ``byte skip`` (including -1); ``data file`` as
      one file (relative to the header's folder or absolute), as a ``LIST`` of
      files, or as a ``printf``-style pattern ``slice%03d.raw <min> <max> <step>
      [<subdim>]``.
    * An axis of kind ``RGB-color`` (3 ``uchar`` samples), anywhere, makes a
      colour volume (:data:`~convert.volume.RGB_DTYPE`); it is not the 4th axis.
      Wider RGB samples are refused.
    * ``measurement frame`` is kept in ``meta.acquisition["MeasurementFrame"]``
      as a 3x3 tuple of rows whose *columns* are the measurement axes in RAS+.
    * The parsed header (a dict) is kept in ``Volume.source``; it is never
      written anywhere.

Writing
    ``type``, ``dimension``, ``space: left-posterior-superior`` (what Slicer
    and ITK expect), ``sizes``, ``space directions`` (``none`` for a 4th axis),
    ``kinds`` (``domain`` x3, plus ``list`` for a 4th axis: SimpleITK reads it
    as a vector image, Slicer as a sequence), ``endian: little``, ``encoding``
    and ``space origin``. A 4D volume with ``meta.time_step`` also gets
    ``spacings: nan nan nan <seconds>``. The only other fields written are the
    allow-listed ``modality:=<code>``, ``sample units`` (from ``meta.units``)
    and ``measurement frame``: no free text from the source ever travels.

    A colour volume gets a leading ``RGB-color`` axis (``sizes: 3 ni nj nk``,
    ``space directions: none ...``, type ``uint8``), which pynrrd reads and
    SimpleITK reads as a 3-component ``uint8`` vector image.

    NRRD has no slope/intercept, so a scaled Volume is written as **real
    values**: in the smallest integer type holding them when slope and
    intercept are integers and the stored values are integers (e.g. CT in HU
    becomes int16), else float32 when that loses no information (see
    :func:`real_values_for_nrrd`), else float64. Any reader therefore sees the
    correct real values.
"""

from __future__ import annotations

import bz2
import math
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

from convert.atomic import atomic_paths
from convert.errors import (
    ConvertError,
    CorruptFileError,
    GeometryError,
    InputNotFoundError,
    UnsupportedDataError,
    UnsupportedFormatError,
)
from convert.formats import read_magic
from convert.formats._nib import iter_fortran_chunks, open_output, supported_array
from convert.geometry import affine_to_ras, ras_to_lps
from convert.volume import Meta, Volume, rgb_from_channels

#: NRRD type names (NRRD0005 spec, every alias) -> numpy type code without byte order.
_NRRD_TYPES: dict[str, str] = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t"), "i8"),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    "float": "f4",
    "double": "f8",
}

#: numpy dtype -> the NRRD type name we write.
_WRITE_TYPES: dict[str, str] = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32",
                                "u4": "uint32", "f4": "float", "f8": "double"}

_ENCODINGS: dict[str, str] = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2",
                              "ascii": "ascii", "text": "ascii", "txt": "ascii", "hex": "hex"}

#: ``space`` value (lower case) -> (frame the vectors are in, has a 4th time coordinate).
#: Frames go to RAS+ through :func:`convert.geometry.affine_to_ras`.
_SPACES: dict[str, tuple[str, bool]] = {
    "right-anterior-superior": ("RAS", False), "ras": ("RAS", False),
    "left-anterior-superior": ("LAS", False), "las": ("LAS", False),
    "left-posterior-superior": ("LPS", False), "lps": ("LPS", False),
    "right-anterior-superior-time": ("RAS", True), "rast": ("RAS", True),
    "left-anterior-superior-time": ("LAS", True), "last": ("LAS", True),
    "left-posterior-superior-time": ("LPS", True), "lpst": ("LPS", True),
    # No anatomical meaning: ITK/SimpleITK use them unchanged as LPS; so do we.
    "scanner-xyz": ("LPS", False), "scanner-xyz-time": ("LPS", True),
    "3d-right-handed": ("LPS", False), "3d-right-handed-time": ("LPS", True),
}

#: ``space units`` -> millimetres.
_UNIT_TO_MM: dict[str, float] = {"": 1.0, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "millimetre": 1.0,
                                 "millimetres": 1.0, "???": 1.0, "none": 1.0, "cm": 10.0, "m": 1000.0,
                                 "um": 1e-3, "\u00b5m": 1e-3, "micron": 1e-3, "microns": 1e-3}

#: Per-axis ``units`` of a time axis -> seconds (anything else: seconds assumed).
_TIME_TO_SECONDS: dict[str, float] = {"ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
                                      "us": 1e-6, "usec": 1e-6, "min": 60.0, "minute": 60.0, "minutes": 60.0}

#: Axis kinds that describe space (every other kind - list, vector, time... - is non-spatial).
_SPATIAL_KINDS = frozenset({"domain", "space", "???", "none"})


_MAX_HEADER_BYTES = 64 << 20
#: DICOM Modality (0008,0060) codes we carry as ``modality:=<code>`` (an allow-list, not a pattern).
_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT", "SEG", "RTDOSE",
                         "RTIMAGE", "OCT", "OPT", "SM", "IO", "PX", "ES", "XC", "GM", "BI", "DG", "IVOCT",
                         "IVUS", "LS", "TG", "HC", "OP", "OPM", "OAM", "BDUS", "BMD", "EPS", "RG", "ST", "SC"})
#: ``sample units`` we read back (lower case); any other text is dropped on read.
_KNOWN_UNITS = frozenset({"hu", "mm", "mm2/s", "mm^2/s", "um2/s", "s", "ms", "1/s", "hz", "bq/ml", "bqml", "%",
                          "ppm", "t", "a.u.", "au", "cnts", "suv", "g/ml", "ml/min/g", "ml/100g/min", "k", "deg",
                          "rad", "rad/s", "mm/s", "cm/s", "g/cm3", "mg/cm3"})
#: ``sample units`` we write: short, no spaces or line breaks.
_UNITS_RE = re.compile(r"^[A-Za-z0-9/%^*._\-]{1,16}$")
_LIST_RE = re.compile(r"^data ?file\s*:=?\s*LIST(\s+\d+)?\s*$", re.IGNORECASE)
try:  # python-isal's decompression error (not an OSError or zlib.error)
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal is a dependency
    _IsalError = zlib.error
#: Errors pynrrd, numpy and the decompressors raise on broken content.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, IndexError, TypeError, AttributeError,
                                                  OverflowError)


# =========================================================================== header
def _read_header(path: Path) -> tuple[dict[str, Any], int, list[str] | None]:
    """Parse the header of ``path``.

    Returns ``(fields, data_offset, list_files)``: the pynrrd field dict, the byte
    offset where attached data starts, and the file names following a
    ``data file: LIST`` line (None otherwise).
    """
    import nrrd

    try:
        with open(path, "rb") as fh:
            magic = fh.readline(64)
            if not magic.startswith(b"NRRD"):
                raise CorruptFileError("not a NRRD file (the first bytes are not 'NRRD000x')", path)
            lines = [magic.decode("ascii", "replace").strip()]
            list_files: list[str] | None = None
            total = len(magic)
            while True:
                raw = fh.readline(1 << 20)
                if not raw:
                    break  # end of file: normal for a detached header
                total += len(raw)
                if total > _MAX_HEADER_BYTES:
                    raise CorruptFileError("header has no end (no blank line within 64 MB)", path)
                text = raw.decode("utf-8", "replace").rstrip()
                if list_files is not None:
                    if text:
                        list_files.append(text)
                    continue
                if text == "":
                    break
                lines.append(text)
                if _LIST_RE.match(text):
                    list_files = []
            offset = fh.tell()
    except FileNotFoundError as exc:
        raise InputNotFoundError("no such file; check the path", path) from exc
    except OSError as exc:
        raise InputNotFoundError(f"cannot read file: {exc.strerror or exc}", path) from exc
    try:
        fields = dict(nrrd.read_header(lines))
    except nrrd.errors.NRRDError as exc:
        raise CorruptFileError(f"broken NRRD header: {exc}", path) from exc
    except _PARSE_ERRORS as exc:
        raise CorruptFileError(f"broken NRRD header (a line is not 'field: value'): {exc}", path) from exc
    return fields, offset, list_files


def _field(header: dict[str, Any], *names: str, default: Any = None) -> Any:
    """First of ``names`` present in ``header`` (NRRD allows 'byte skip' and 'byteskip')."""
    for name in names:
        if name in header:
            return header[name]
    return default


def _data_dtype(header: dict[str, Any], encoding: str, path: Path) -> np.dtype:
    type_name = str(header["type"]).strip().lower()
    if type_name == "block":
        raise UnsupportedDataError("NRRD 'block' voxels (opaque records) are not supported", path)
    code = _NRRD_TYPES.get(type_name)
    if code is None:
        raise CorruptFileError(f"unknown voxel type '{header['type']}'", path)
    dtype = np.dtype(code)
    if dtype.itemsize > 1 and encoding not in ("ascii",):
        endian = str(_field(header, "endian", default="")).strip().lower()
        if endian not in ("little", "big"):
            raise CorruptFileError(
                f"header needs 'endian: little' or 'endian: big' for {type_name} voxels (got '{endian}')", path)
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    return dtype


def _check_header(header: dict[str, Any], path: Path) -> tuple[np.ndarray, str]:
    """Validate the required fields; return ``(sizes, encoding)``."""
    for required in ("dimension", "type", "encoding", "sizes"):
        if required not in header:
            raise CorruptFileError(f"header is missing the required field '{required}'", path)
    sizes = np.asarray(header["sizes"], dtype=np.int64).reshape(-1)
    if int(header["dimension"]) != sizes.size:
        raise CorruptFileError(f"'dimension: {header['dimension']}' does not match 'sizes' ({sizes.tolist()})",
                               path)
    if sizes.size == 0 or np.any(sizes < 1):
        raise CorruptFileError(f"'sizes' must be positive integers, got {sizes.tolist()}", path)
    encoding = _ENCODINGS.get(str(header["encoding"]).strip().lower())
    if encoding is None:
        raise UnsupportedDataError(f"NRRD encoding '{header['encoding']}' is not supported "
                                   "(raw, gzip, bzip2, ascii and hex are)", path)
    return sizes, encoding


# =========================================================================== data
def _data_sources(header: dict[str, Any], path: Path, offset: int, list_files: list[str] | None,
                  sizes: np.ndarray) -> list[tuple[Path, int]]:
    """``(file, start offset)`` of every data file, in order; checks they exist."""
    spec = _field(header, "data file", "datafile")
    if spec is None:
        return [(path, offset)]
    spec = str(spec).strip()
    dimension = sizes.size
    parts = spec.split()
    if list_files is not None or (parts and parts[0].upper() == "LIST"):
        names = list(list_files or [])
        subdim = int(parts[1]) if len(parts) > 1 else dimension - 1
    elif len(parts) in (4, 5) and "%" in parts[0] and all(re.fullmatch(r"-?\d+", p) for p in parts[1:]):
        fmt = parts[0]
        first, last, step = int(parts[1]), int(parts[2]), int(parts[3])
        subdim = int(parts[4]) if len(parts) == 5 else dimension - 1
        if step == 0 or (last - first) * step < 0:
            raise CorruptFileError(f"bad data file pattern '{spec}' (step must move from min to max)", path)
        try:
            names = [fmt % n for n in range(first, last + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError) as exc:
            raise CorruptFileError(f"bad data file pattern '{fmt}': {exc}", path) from exc
    else:
        names = [spec]
        subdim = dimension
    if not 1 <= subdim <= dimension:
        raise CorruptFileError(f"data file sub-dimension {subdim} is outside 1..{dimension}", path)
    expected = int(np.prod(sizes[subdim:], dtype=np.int64))
    if len(names) != expected:
        raise CorruptFileError(f"header lists {len(names)} data file(s) but the sizes need {expected}", path)
    sources = []
    for name in names:
        data_path = Path(name)
        if not data_path.is_absolute():
            data_path = path.parent / data_path
        if not data_path.is_file():
            raise CorruptFileError(f"detached data file '{name}' is missing (looked for {data_path})", path)
        sources.append((data_path, 0))
    return sources


def _fill(stream: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until full or end of stream; return the byte count read."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _skip(stream: BinaryIO, count: int) -> int:
    """Read and drop ``count`` bytes; return how many were available."""
    skipped = 0
    while skipped < count:
        chunk = stream.read(min(count - skipped, 1 << 20))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def _parse_text(text: str, out: np.ndarray, hex_bytes: bool) -> int:
    """Parse ascii numbers (or hex bytes) into ``out``; return the element count found."""
    if hex_bytes:
        digits = "".join(text.split())
        data = bytes.fromhex(digits[: 2 * out.nbytes])
        n = len(data) // out.itemsize
        memoryview(out).cast("B")[: n * out.itemsize] = data[: n * out.itemsize]
        return n
    tokens = text.replace(",", " ").split()[: out.size]
    if out.dtype.kind == "f":
        values = np.array(tokens, dtype=np.float64)
    else:
        values = np.array(tokens, dtype=np.int64) if all(re.fullmatch(r"[+-]?\d+", t) for t in tokens) \
            else np.array(tokens, dtype=np.float64)
        if values.dtype.kind == "f" and not np.all(values == np.round(values)):
            raise ValueError("non-integer value for an integer voxel type")
        info = np.iinfo(out.dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ValueError(f"value out of range for {out.dtype}")
    out[: values.size] = values
    return int(values.size)


def _read_source(src: Path, offset: int, out: np.ndarray, encoding: str, line_skip: int, byte_skip: int,
                 header_path: Path) -> None:
    """Fill ``out`` (1D, the file's share of voxels) from one data file."""
    nbytes = out.nbytes
    where = "data section" if src == header_path else f"data file {src.name}"
    try:
        with open(src, "rb") as fh:
            fh.seek(offset)
            for _ in range(line_skip):
                if not fh.readline():
                    raise CorruptFileError(f"{where} ends inside the {line_skip} skipped lines ('line skip')",
                                           header_path)
            if encoding == "raw":
                if byte_skip == -1:  # the data are the last bytes of the file
                    start = os.fstat(fh.fileno()).st_size - nbytes
                    if start < fh.tell():
                        raise CorruptFileError(f"{where} is truncated: needs {nbytes} bytes", header_path)
                    fh.seek(start)
                else:
                    fh.seek(byte_skip, os.SEEK_CUR)
                got = _fill(fh, memoryview(out).cast("B"))
                if got < nbytes:
                    raise CorruptFileError(
                        f"{where} is truncated: {got} of {nbytes} bytes present; the file was cut short", header_path)
            elif encoding in ("gzip", "bzip2"):
                if encoding == "gzip":
                    from isal import igzip

                    stream: Any = igzip.GzipFile(fileobj=fh, mode="rb")
                else:
                    stream = bz2.BZ2File(fh, "rb")
                with stream:
                    if byte_skip == -1:  # last bytes of the decompressed data
                        data = stream.read()
                        if len(data) < nbytes:
                            raise CorruptFileError(f"{where} is truncated: {len(data)} of {nbytes} bytes after "
                                                   "decompression", header_path)
                        memoryview(out).cast("B")[:] = data[len(data) - nbytes:]
                    else:
                        if _skip(stream, byte_skip) < byte_skip:
                            raise CorruptFileError(f"{where} ends inside the skipped bytes ('byte skip')",
                                                   header_path)
                        got = _fill(stream, memoryview(out).cast("B"))
                        if got < nbytes:
                            raise CorruptFileError(f"{where} is truncated: {got} of {nbytes} bytes after "
                                                   "decompression", header_path)
                        stream.read(1)  # reach the end-of-stream marker: checks the CRC, detects a cut trailer
            else:  # ascii / hex
                if byte_skip > 0:
                    fh.seek(byte_skip, os.SEEK_CUR)
                text = fh.read().decode("ascii", "replace")
                found = _parse_text(text, out, hex_bytes=encoding == "hex")
                if found < out.size:
                    raise CorruptFileError(f"{where} is truncated: {found} of {out.size} values present",
                                           header_path)
    except ConvertError:
        raise
    except FileNotFoundError as exc:
        raise CorruptFileError(f"{where} is missing", header_path) from exc
    except (OSError, EOFError, zlib.error, _IsalError) as exc:
        raise CorruptFileError(f"{where} cannot be decoded (truncated or corrupt {encoding} data): {exc}",
                               header_path) from exc
    except _PARSE_ERRORS as exc:
        raise CorruptFileError(f"{where} holds invalid {encoding} data: {exc}", header_path) from exc


def _read_voxels(header: dict[str, Any], path: Path, offset: int, list_files: list[str] | None,
                 sizes: np.ndarray, encoding: str) -> np.ndarray:
    """All voxels as an array indexed like the NRRD axes (axis 0 fastest), native byte order."""
    dtype = _data_dtype(header, encoding, path)
    sources = _data_sources(header, path, offset, list_files, sizes)
    line_skip = int(_field(header, "line skip", "lineskip", default=0))
    byte_skip = int(_field(header, "byte skip", "byteskip", default=0))
    if line_skip < 0:
        raise CorruptFileError(f"'line skip' must be >= 0, got {line_skip}", path)
    if byte_skip < -1:
        raise CorruptFileError(f"'byte skip' must be >= -1, got {byte_skip}", path)
    total = int(np.prod(sizes, dtype=np.int64))
    per_file = total // len(sources)
    # Cheap plausibility check before allocating: a header claiming more voxels than the bytes on disk
    # can hold (even at gzip's best ratio) is a truncated or corrupt file, not a reason to allocate GBs.
    available = sum(max(0, s.stat().st_size - off) for s, off in sources)
    needed = total * dtype.itemsize
    capacity = {"raw": available, "gzip": 1100 * available + 4096, "ascii": (available + 1) // 2 * dtype.itemsize,
                "hex": available // 2}.get(encoding)
    if capacity is not None and capacity < needed:
        raise CorruptFileError(f"data section is truncated: {available} bytes on disk cannot hold the "
                               f"{needed} bytes the header's sizes {sizes.tolist()} need ({encoding})", path)
    try:
        flat = np.empty(total, dtype=dtype)
    except (MemoryError, ValueError) as exc:
        raise UnsupportedDataError(f"sizes {sizes.tolist()} are too large to load ({exc})", path) from exc
    for n, (src, start) in enumerate(sources):
        _read_source(src, start, flat[n * per_file:(n + 1) * per_file], encoding, line_skip, byte_skip, path)
    if not flat.dtype.isnative:
        flat = flat.astype(flat.dtype.newbyteorder("="))
    return flat.reshape(tuple(int(s) for s in sizes[::-1])).T


# =========================================================================== geometry
def _complete_basis(columns: list[np.ndarray]) -> list[np.ndarray]:
    """Add 1 mm axes orthogonal to the given ones (right-handed) until there are three."""
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    if len(cols) == 1:
        u = cols[0] / np.linalg.norm(cols[0])
        helper = np.eye(3)[int(np.argmin(np.abs(u)))]
        v = helper - u * (helper @ u)
        cols.append(v / np.linalg.norm(v))
    if len(cols) == 2:
        n = np.cross(cols[0], cols[1])
        norm = np.linalg.norm(n)
        if norm == 0:
            raise GeometryError("the two spatial axes are parallel")
        cols.append(n / norm)
    return cols


class _Geometry:
    """What the header says about space: spatial axes, their vectors, origin, time step."""

    def __init__(self) -> None:
        self.spatial: list[int] = []  # NRRD axis numbers, in order
        self.columns: list[np.ndarray] = []  # one 3-vector (mm, in ``frame``) per spatial axis
        self.origin = np.zeros(3)
        self.frame = "LPS"
        self.time_axis_step: dict[int, float] = {}
        self.measurement_frame: np.ndarray | None = None


def _space_geometry(header: dict[str, Any], sizes: np.ndarray, path: Path) -> _Geometry:
    geo = _Geometry()
    dim = sizes.size
    space = _field(header, "space")
    space_dim = _field(header, "space dimension")
    timed = False
    if space is not None:
        key = str(space).strip().lower()
        if key.startswith("3d-left-handed"):
            raise GeometryError("space '3D-left-handed' cannot be placed in a patient (RAS/LPS) frame; "
                                "re-save the file with an anatomical space such as left-posterior-superior", path)
        if key not in _SPACES:
            raise CorruptFileError(f"unknown NRRD space '{space}'", path)
        geo.frame, timed = _SPACES[key]
        sdim = 4 if timed else 3
        if space_dim is not None and int(space_dim) != sdim:
            raise CorruptFileError(f"'space dimension: {space_dim}' contradicts 'space: {space}'", path)
    elif space_dim is not None:
        sdim = int(space_dim)
        if not 1 <= sdim <= 3:
            raise UnsupportedDataError(f"'space dimension: {sdim}' without a named space is not supported", path)
    else:
        sdim = 0
    directions = _field(header, "space directions")
    if directions is not None and not sdim:  # directions without a named space: assume LPS, like ITK
        sdim = int(np.asarray(directions).shape[-1]) if np.ndim(directions) == 2 else 0
    kinds = [str(k).lower() for k in _field(header, "kinds", default=[None] * dim) or [None] * dim]
    if len(kinds) != dim:
        raise CorruptFileError(f"'kinds' has {len(kinds)} entries for {dim} axes", path)
    spacings = np.asarray(_field(header, "spacings", default=[np.nan] * dim), dtype=np.float64).reshape(-1)
    if spacings.size != dim:
        raise CorruptFileError(f"'spacings' has {spacings.size} entries for {dim} axes", path)

    if directions is not None and sdim:
        dirs = np.asarray(directions, dtype=np.float64)
        if dirs.ndim != 2 or dirs.shape != (dim, sdim):
            raise CorruptFileError(f"'space directions' must list {dim} vectors of {sdim} numbers "
                                   f"(got shape {list(dirs.shape)})", path)
        for axis in range(dim):
            vector = dirs[axis]
            if np.all(np.isnan(vector)):
                continue  # 'none': a non-spatial axis
            if not np.all(np.isfinite(vector)):
                raise CorruptFileError(f"space direction of axis {axis} is not finite: {vector.tolist()}", path)
            if timed:
                spatial_part, time_part = vector[:3], float(vector[3])
                if not np.any(spatial_part) and time_part:
                    geo.time_axis_step[axis] = abs(time_part)
                    continue
                if time_part:
                    raise UnsupportedDataError(f"axis {axis} moves in both space and time; not supported", path)
                vector = spatial_part
            full = np.zeros(3)
            full[: min(3, vector.size)] = vector[:3]
            geo.spatial.append(axis)
            geo.columns.append(full)
        origin = _field(header, "space origin")
        if origin is not None:
            origin = np.asarray(origin, dtype=np.float64).reshape(-1)
            if origin.size != sdim or not np.all(np.isfinite(origin)):
                raise CorruptFileError(f"'space origin' must be {sdim} finite numbers, got {origin.tolist()}", path)
            geo.origin[: min(3, sdim)] = origin[:3]
        units = _field(header, "space units")
        if units is not None:
            factors = []
            for unit in list(units)[:3]:
                factor = _UNIT_TO_MM.get(str(unit).strip().lower())
                if factor is None:
                    raise UnsupportedDataError(f"space unit '{unit}' is not a length unit we know", path)
                factors.append(factor)
            factors += [1.0] * (3 - len(factors))
            scale = np.array(factors)
            geo.columns = [c * scale for c in geo.columns]
            geo.origin = geo.origin * scale
        frame = _field(header, "measurement frame")
        if frame is not None:
            m = np.asarray(frame, dtype=np.float64)
            if m.shape == (sdim, sdim) and np.all(np.isfinite(m)) and sdim >= 3:
                # pynrrd gives one row per written vector; the vectors are the matrix columns.
                geo.measurement_frame = m[:3, :3].T
    else:
        # No space: axes along the (assumed LPS) world axes with 'spacings', like ITK.
        mins = np.asarray(_field(header, "axis mins", "axismins", default=[np.nan] * dim),
                          dtype=np.float64).reshape(-1)
        centers = [str(c).lower() for c in _field(header, "centerings", default=["cell"] * dim)]
        if mins.size != dim or len(centers) != dim:
            raise CorruptFileError("'axis mins'/'centerings' do not have one entry per axis", path)
        candidates = [a for a in range(dim) if kinds[a] in _SPATIAL_KINDS or kinds[a] == "none"]
        for n, axis in enumerate(candidates[:3]):
            step = spacings[axis] if np.isfinite(spacings[axis]) and spacings[axis] != 0 else 1.0
            column = np.zeros(3)
            column[n] = step
            geo.spatial.append(axis)
            geo.columns.append(column)
            if np.isfinite(mins[axis]):
                geo.origin[n] = mins[axis] + (0.0 if centers[axis] == "node" else 0.5 * step)
    for axis in range(dim):
        if axis not in geo.spatial and axis not in geo.time_axis_step:
            if np.isfinite(spacings[axis]) and spacings[axis] > 0:
                geo.time_axis_step[axis] = float(spacings[axis])
    return geo


def _sanitized_meta(header: dict[str, Any], time_step: float | None,
                    measurement_frame: np.ndarray | None) -> Meta:
    """The allow-listed metadata we take from a header (never free text)."""
    modality = str(_field(header, "DICOM_0008_0060_Modality", "modality", default="")).strip().upper()
    if modality == "DWMRI":  # the NRRD DWI convention ("modality:=DWMRI" + DWMRI_gradient_* keys)
        modality = "MR"
    units = str(_field(header, "sample units", "sampleunits", default="")).strip()
    acquisition: dict[str, Any] = {}
    if measurement_frame is not None:
        acquisition["MeasurementFrame"] = tuple(tuple(float(v) for v in row) for row in measurement_frame)
    return Meta(
        modality=modality if modality in _MODALITIES else None,
        units=units if units.lower() in _KNOWN_UNITS else None,
        time_step=time_step,
        acquisition=acquisition,
    )


def _quantization(header: dict[str, Any]) -> tuple[float, float]:
    """(slope, intercept) from ``old min``/``old max`` on integer data, else (1, 0).

    dcm2niix stores DICOM rescaling this way: the type's full range
    ``[typemin, typemax]`` maps linearly onto ``[old min, old max]``, so
    ``slope = (old max - old min) / (typemax - typemin)`` and
    ``intercept = old min - slope * typemin``.
    """
    old_min = _field(header, "old min", "oldmin")
    old_max = _field(header, "old max", "oldmax")
    code = _NRRD_TYPES.get(str(header.get("type", "")).strip().lower(), "f8")
    if old_min is None or old_max is None or np.dtype(code).kind not in "iu":
        return 1.0, 0.0
    lo, hi = float(old_min), float(old_max)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return 1.0, 0.0
    info = np.iinfo(np.dtype(code))
    slope = (hi - lo) / (float(info.max) - float(info.min))
    return slope, lo - slope * float(info.min)


def _colour_axis(header: dict[str, Any], non_spatial: list[int], sizes: np.ndarray, path: Path) -> int | None:
    """The NRRD axis of kind ``RGB-color`` among ``non_spatial`` (3 samples: R, G, B), or None.

    Raises :class:`CorruptFileError` when an ``RGB-color`` axis is not 3 long, and
    :class:`UnsupportedDataError` for more than one colour axis.
    """
    kinds = [str(k).strip().lower() for k in (_field(header, "kinds", default=None) or [])]
    found = [a for a in non_spatial if a < len(kinds) and kinds[a] == "rgb-color"]
    if not found:
        return None
    if len(found) > 1:
        raise UnsupportedDataError(f"{len(found)} 'RGB-color' axes; at most one is supported", path)
    if int(sizes[found[0]]) != 3:
        raise CorruptFileError(f"the 'RGB-color' axis has {int(sizes[found[0]])} samples; it must have 3", path)
    return found[0]


def read_nrrd(path: str | Path) -> Volume:
    """Read a NRRD file (attached or detached header) into a :class:`Volume` with a RAS+ affine.

    Raises:
        CorruptFileError: broken header, truncated or undecodable data, missing data file.
        UnsupportedDataError: more than one non-spatial axis, 'block' voxels, unknown units.
        GeometryError: a space that cannot be mapped to a patient frame, singular directions.
    """
    path = Path(path)
    header, offset, list_files = _read_header(path)
    sizes, encoding = _check_header(header, path)
    geo = _space_geometry(header, sizes, path)
    dim = sizes.size
    if not geo.spatial:
        raise UnsupportedDataError("no spatial axis found (every axis is 'none' or a list)", path)
    if len(geo.spatial) > 3:
        raise UnsupportedDataError(f"{len(geo.spatial)} spatial axes; at most 3 are supported", path)
    others = [a for a in range(dim) if a not in geo.spatial]
    colour = _colour_axis(header, others, sizes, path)
    if colour is not None:
        others.remove(colour)
    kept = [a for a in others if sizes[a] > 1]
    if len(kept) > 1:
        raise UnsupportedDataError(
            f"{len(kept)} non-spatial axes of sizes {[int(sizes[a]) for a in kept]}; only one (time/list) fits "
            "a 4D volume", path)

    data = _read_voxels(header, path, offset, list_files, sizes, encoding)
    order = geo.spatial + kept + [a for a in others if a not in kept] + ([colour] if colour is not None else [])
    spatial_shape = [int(sizes[a]) for a in geo.spatial] + [1] * (3 - len(geo.spatial))
    array = data.transpose(order).reshape(spatial_shape + [int(sizes[a]) for a in kept]
                                          + ([3] if colour is not None else []))
    if colour is not None:
        if array.dtype != np.uint8:
            raise UnsupportedDataError(
                f"RGB-color NRRD of type {array.dtype} is not supported: colour volumes hold 8 bits per channel "
                "(uchar); convert the channels to 8 bits first", path)
        array = rgb_from_channels(array)
    else:
        array = supported_array(array, path)

    try:
        columns = _complete_basis(geo.columns)
    except GeometryError as exc:
        raise GeometryError(exc.message, path) from exc
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack(columns)
    affine[:3, 3] = geo.origin
    affine = affine_to_ras(affine, geo.frame)
    measurement = None
    if geo.measurement_frame is not None:
        m4 = np.eye(4)
        m4[:3, :3] = geo.measurement_frame
        measurement = affine_to_ras(m4, geo.frame)[:3, :3]
    time_step = geo.time_axis_step.get(kept[0]) if kept else None
    if time_step is not None:
        axis_units = _field(header, "units", default=None)
        if axis_units is not None and len(axis_units) == dim:
            time_step *= _TIME_TO_SECONDS.get(str(axis_units[kept[0]]).strip().lower(), 1.0)
    meta = _sanitized_meta(header, time_step, measurement)
    slope, intercept = _quantization(header) if colour is None else (1.0, 0.0)  # colour is never scaled
    try:
        return Volume(array=array, affine=affine, meta=meta, slope=slope, intercept=intercept, source=header)
    except ConvertError as exc:
        if exc.path is None:
            raise type(exc)(exc.message, path) from exc
        raise


# =========================================================================== writing
def real_values_for_nrrd(volume: Volume) -> np.ndarray:
    """The array to store: ``volume.array`` if unscaled, else the real values in an exact dtype.

    NRRD has no slope/intercept. Integer stored values with integer slope and
    intercept become the smallest integer type holding the real range; otherwise
    float32 when every real value survives float32 exactly, or when the stored
    integers are recovered exactly from the float32 values
    (``rint((f32 - intercept) / slope) == stored``); else float64.
    """
    if not volume.is_scaled:
        return volume.voxels()
    stored = volume.voxels()
    real = stored.astype(np.float64) * volume.slope + volume.intercept
    if stored.dtype.kind in "iu" and float(volume.slope).is_integer() and float(volume.intercept).is_integer():
        lo, hi = (float(real.min()), float(real.max())) if real.size else (0.0, 0.0)
        for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32"):
            info = np.iinfo(name)
            if info.min <= lo and hi <= info.max:
                return real.astype(name)
    as32 = real.astype(np.float32)
    if np.array_equal(as32.astype(np.float64), real, equal_nan=True):
        return as32
    if stored.dtype.kind in "iu":
        # float32 keeps ~7 significant digits, far finer than the quantization step (slope): accept it when
        # every stored integer is recovered exactly from the float32 value (no information lost).
        recovered = np.rint((as32.astype(np.float64) - volume.intercept) / volume.slope)
        if np.array_equal(recovered, stored):
            return as32
    return real


def _safe_text(value: str | None, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value if pattern.match(value) else None


def header_text(volume: Volume, dtype: np.dtype, encoding: str, data_file: str | None = None) -> bytes:
    """The NRRD header (bytes, ending with the blank line) describing ``volume`` stored as ``dtype``.

    World geometry is written in LPS+ mm (``space: left-posterior-superior``):
    column ``n`` of ``ras_to_lps(volume.affine)`` is the space direction of axis ``n``.
    """
    import nrrd

    lps = ras_to_lps(volume.affine)
    four_d = volume.array.ndim == 4
    rgb = volume.is_rgb
    directions: list[Any] = ([None] if rgb else []) + [lps[:3, n].astype(np.float64) for n in range(3)] + (
        [None] if four_d else [])
    dtype = np.dtype(np.uint8) if rgb else np.dtype(dtype)
    sizes = ([3] if rgb else []) + list(volume.shape)
    lines = [
        "NRRD0004",
        "# Written by medconvert: geometry, voxel type and allow-listed fields only.",
        f"type: {_WRITE_TYPES[dtype.str[1:]]}",
        f"dimension: {len(sizes)}",
        "space: left-posterior-superior",
        f"sizes: {nrrd.format_number_list(np.asarray(sizes))}",
        f"space directions: {nrrd.format_optional_vector_list(directions)}",
        "kinds: " + ("RGB-color " if rgb else "") + "domain domain domain" + (" list" if four_d else ""),
    ]
    lines.append("endian: little")  # meaningless for 1-byte types, but harmless and what ITK expects to see
    lines.append(f"encoding: {encoding}")
    lines.append(f"space origin: {nrrd.format_vector(lps[:3, 3].astype(np.float64))}")
    if four_d and volume.meta.time_step and math.isfinite(volume.meta.time_step) and volume.meta.time_step > 0:
        lines.append(f"spacings: {'nan ' if rgb else ''}nan nan nan {nrrd.format_number(float(volume.meta.time_step))}")
    frame = volume.meta.acquisition.get("MeasurementFrame") if volume.meta.acquisition else None
    if frame is not None:
        m = np.asarray(frame, dtype=np.float64)
        if m.shape == (3, 3) and np.all(np.isfinite(m)):
            m4 = np.eye(4)
            m4[:3, :3] = m
            m_lps = ras_to_lps(m4)[:3, :3]
            lines.append(f"measurement frame: {nrrd.format_vector_list([m_lps[:, n] for n in range(3)])}")
    units = _safe_text(volume.meta.units, _UNITS_RE)
    if units:
        lines.append(f"sample units: {units}")
    if data_file is not None:
        lines.append(f"data file: {data_file}")
    modality = str(volume.meta.modality or "").strip().upper()
    if modality in _MODALITIES:
        lines.append(f"modality:={modality}")
    return ("\n".join(lines) + "\n\n").encode("ascii")


def _write_voxels(fh: BinaryIO, array: np.ndarray) -> None:
    for chunk in iter_fortran_chunks(array):
        fh.write(chunk)


class NrrdFormat:
    """NRRD adapter; one instance per flavour (attached ``.nrrd``, detached ``.nhdr``).

    Both flavours read any NRRD header, attached or detached.
    """

    can_read = True
    can_write = True

    def __init__(self, name: str, extensions: tuple[str, ...], description: str, detached: bool) -> None:
        self.name = name
        self.extensions = extensions
        self.description = description
        self.detached = detached

    def __repr__(self) -> str:
        return f"<Format {self.name}>"

    def sniff(self, path: Path) -> bool:
        """True when the file starts with the NRRD magic ``NRRD000x``."""
        path = Path(path)
        if path.is_dir():
            return False
        head = read_magic(path, 8) if not path.name.lower().endswith(".gz") else b""
        return len(head) == 8 and head[:4] == b"NRRD" and head[4:8].isdigit()

    def read(self, path: Path) -> Volume:
        """Read ``path`` (see :func:`read_nrrd`)."""
        return read_nrrd(path)

    def output_paths(self, path: Path, encoding: str = "gzip") -> list[Path]:
        """Files a write creates: ``[path]``, or ``[data file, header]`` for ``.nhdr`` (data first)."""
        path = Path(path)
        if not self.detached:
            return [path]
        stem = path.name[: -len(".nhdr")] if path.name.lower().endswith(".nhdr") else path.stem
        data_name = stem + (".raw.gz" if _encoding_option(encoding, path) == "gzip" else ".raw")
        return [path.with_name(data_name), path]

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write ``volume`` atomically; returns the files written.

        Options:
            encoding: ``"gzip"`` (default) or ``"raw"``.
            compresslevel: gzip level 1-3 (python-isal; default 1).
        """
        path = Path(path)
        encoding = _encoding_option(options.get("encoding", "gzip"), path)
        level = int(options.get("compresslevel", 1))
        targets = self.output_paths(path, encoding)
        array = real_values_for_nrrd(volume)
        if sys.byteorder != "little" and array.dtype.itemsize > 1:  # pragma: no cover - big-endian hosts
            array = array.astype(array.dtype.newbyteorder("<"))
        data_file = targets[0].name if self.detached else None
        header = header_text(volume, array.dtype, encoding, data_file)
        with atomic_paths(targets, overwrite=overwrite) as temps:
            if self.detached:
                data_tmp, header_tmp = temps
                with open_output(data_tmp, encoding == "gzip", level) as fh:
                    _write_voxels(fh, array)
                with open(header_tmp, "wb") as fh:
                    fh.write(header)
            else:
                (tmp,) = temps
                with open(tmp, "wb") as fh:
                    fh.write(header)
                    if encoding == "gzip":
                        from isal import igzip_threaded

                        with igzip_threaded.open(fh, "wb", compresslevel=min(max(level, 0), 3), threads=2) as gz:
                            _write_voxels(gz, array)
                    else:
                        _write_voxels(fh, array)
        return targets


def _encoding_option(value: Any, path: Path) -> str:
    encoding = _ENCODINGS.get(str(value).strip().lower())
    if encoding not in ("raw", "gzip"):
        raise UnsupportedFormatError(f"NRRD encoding '{value}' cannot be written; use 'gzip' or 'raw'", path)
    return encoding


NRRD = NrrdFormat("nrrd", (".nrrd",), "NRRD, header and data in one file (gzip by default)", detached=False)
NHDR = NrrdFormat("nhdr", (".nhdr",), "NRRD detached header (.nhdr) + data file (.raw.gz or .raw)",
                  detached=True)

__all__: Sequence[str] = ("NRRD", "NHDR", "NrrdFormat", "read_nrrd", "header_text", "real_values_for_nrrd")
