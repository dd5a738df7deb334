"""Shared helpers for adapters that parse through nibabel (not an adapter itself)."""

from __future__ import annotations

import contextlib
import logging
import warnings
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from convert.errors import CorruptFileError, UnsupportedDataError
from convert.proxy import SLAB_BYTES, iter_slabs
from convert.volume import SUPPORTED_DTYPES, Meta, Volume, is_rgb_dtype

#: Errors nibabel and its decompressors raise on broken files.
BROKEN_FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)


#: Also raised by nibabel on absurd headers (huge offsets, infinite scalings...); with
#: :func:`nibabel_errors`, what an adapter turns into a CorruptFileError.
HEADER_ERRORS: tuple[type[BaseException], ...] = BROKEN_FILE_ERRORS + (OverflowError, ArithmeticError,
                                                                       RuntimeError, AttributeError)
#: gzip (deflate) cannot expand data by more than about 1032 times: a header describing more voxels
#: than that is wrong (checked before anything is allocated).
MAX_GZIP_RATIO = 1100


def nibabel_errors() -> tuple[type[BaseException], ...]:
    """nibabel's own exceptions for broken files (HeaderDataError, ImageDataError, ImageFileError)
    plus :data:`HEADER_ERRORS` (imports nibabel)."""
    import nibabel as nib

    return HEADER_ERRORS + (nib.spatialimages.HeaderDataError, nib.spatialimages.ImageDataError,
                            nib.filebasedimages.ImageFileError)


@contextlib.contextmanager
def quiet_nibabel() -> Iterator[None]:
    """Within this block nibabel neither warns nor logs (it logs header problems such as "data code
    9999 not recognized" to stderr); the adapters check those headers and raise instead."""
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


#: NIfTI-1 / Analyze 7.5 datatype codes (NIfTI-1 table; Analyze uses the first ones).
DATATYPE_CODES = frozenset({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304})


def check_raw_header(head: bytes, path: Path, *, single_file: bool) -> None:
    """Check the fields of a 348-byte NIfTI-1 / Analyze 7.5 header that readers rely on, before
    nibabel parses it (nibabel takes a ``dim[0]`` above 7 for a byte-swapped header and reports
    something else): ``dim`` (1 to 7 dimensions, sizes >= 1), ``datatype`` (a known code),
    ``vox_offset`` (finite, past the header for a single file), ``scl_slope``/``scl_inter``
    (not infinite; no NaN intercept beside a usable slope). A NIfTI-2 header is left to nibabel.

    Raises:
        CorruptFileError: naming ``path`` and the field.
    """
    import struct

    if len(head) < 348:
        return
    order = "<" if int.from_bytes(head[:4], "little") == 348 else ">" if int.from_bytes(head[:4], "big") == 348 \
        else None
    if order is None:
        return
    dim = struct.unpack_from(order + "8h", head, 40)
    if not 1 <= dim[0] <= 7:
        raise CorruptFileError(f"the header's dim[0] (number of dimensions) is {dim[0]}; it must be 1 to 7: the "
                               "header is corrupt", path)
    if any(n < 1 for n in dim[1:dim[0] + 1]):
        raise CorruptFileError(f"the header describes an image of shape {tuple(dim[1:dim[0] + 1])}: every size "
                               "must be at least 1; the header is corrupt", path)
    (datatype,) = struct.unpack_from(order + "h", head, 70)
    if datatype not in DATATYPE_CODES:
        raise CorruptFileError(f"the header's datatype is {datatype}, not a NIfTI/Analyze data code: the header "
                               "is corrupt", path)
    offset, slope, inter = struct.unpack_from(order + "3f", head, 108)
    if not np.isfinite(offset) or offset < 0 or offset > 2**40 or (single_file and 0 < offset < 348):
        raise CorruptFileError(f"the header's voxel offset (vox_offset) is {offset:g}: the header is corrupt", path)
    if np.isinf(slope) or np.isinf(inter):
        raise CorruptFileError(f"the header's scaling is infinite (scl_slope {slope:g}, scl_inter {inter:g}): "
                               "the header is corrupt", path)
    if np.isnan(inter) and np.isfinite(slope) and slope not in (0.0, 1.0):
        raise CorruptFileError(f"the header's scl_slope is {slope:g} but its scl_inter is NaN (no usable "
                               "intercept): the header is corrupt", path)


def check_header_shape(header: Any, path: Path, max_dims: int = 7) -> tuple[int, ...]:
    """The image shape a NIfTI-1/2 or Analyze header's ``dim`` field describes, checked.

    Raises:
        CorruptFileError: ``dim[0]`` outside 1..``max_dims``, or a size below 1 (the header
            describes no image).
    """
    dim = [int(v) for v in np.asarray(header["dim"]).ravel()]
    if not 1 <= dim[0] <= max_dims:
        raise CorruptFileError(f"the header's dim[0] (number of dimensions) is {dim[0]}; it must be 1 to "
                               f"{max_dims}: the header is corrupt", path)
    shape = tuple(dim[1:dim[0] + 1])
    if any(n < 1 for n in shape):
        raise CorruptFileError(f"the header describes an image of shape {shape}: every size must be at least "
                               "1; the header is corrupt", path)
    return shape


def check_data_size(path: Path, data_path: Path, shape: tuple[int, ...], itemsize: int, offset: float,
                    compressed: bool) -> None:
    """Refuse a header whose voxels ``data_path`` cannot hold, before anything is read or allocated.

    ``offset``: where the voxels start in the (uncompressed) data. Uncompressed data must hold
    ``offset`` + every voxel; gzipped data at most :data:`MAX_GZIP_RATIO` times its size.

    Raises:
        CorruptFileError: naming ``path``.
    """
    if not np.isfinite(offset) or offset < 0 or offset > 2**62:
        raise CorruptFileError(f"the header's voxel offset is {offset:g}: the header is corrupt", path)
    nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * itemsize
    try:
        size = data_path.stat().st_size
    except OSError as exc:
        raise CorruptFileError(f"cannot read {data_path.name}: {exc.strerror or exc}", path) from exc
    if compressed:
        if nbytes + offset > MAX_GZIP_RATIO * size + 4096:
            raise CorruptFileError(
                f"the header describes {shape} voxels ({nbytes} bytes) but {data_path.name} holds only {size} "
                "compressed bytes: the header is wrong or the file is truncated", path)
    elif size < offset + nbytes:
        raise CorruptFileError(
            f"{data_path.name} holds {size} bytes but the header describes {int(offset)} + {nbytes} ({shape} "
            "voxels): the file is truncated or the header is wrong", path)


def supported_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Return ``array`` in a dtype a Volume can hold, converting only when lossless.

    float16 -> float32; int64/uint64 -> the smallest supported integer type
    holding every value; RGB24 (:data:`~convert.volume.RGB_DTYPE`) is kept;
    anything else raises :class:`UnsupportedDataError`.
    """
    if is_rgb_dtype(array.dtype):
        return array
    if array.dtype.fields is not None:
        raise UnsupportedDataError(
            f"voxel type {array.dtype} (a record of several values per voxel) is not supported; only RGB24 "
            "(8-bit R, G, B) colour is", path)
    dtype = array.dtype.newbyteorder("=")
    if dtype in SUPPORTED_DTYPES:
        return array if array.dtype.isnative else array.astype(dtype)
    if dtype == np.float16:
        return array.astype(np.float32)
    if dtype.kind in "iu" and array.size:
        lo, hi = int(array.min()), int(array.max())
        for candidate in SUPPORTED_DTYPES:
            if candidate.kind in "iu" and np.iinfo(candidate).min <= lo and hi <= np.iinfo(candidate).max:
                return array.astype(candidate)
    raise UnsupportedDataError(
        f"voxel type {array.dtype} cannot be held without loss (complex, and 64-bit integers out of "
        "32-bit range, are not supported)",
        path,
    )


def to_3d_or_4d(array: np.ndarray, path: Path) -> np.ndarray:
    """Pad 1D/2D arrays to 3D; drop trailing singleton axes beyond the 4th."""
    while array.ndim < 3:
        array = array[..., np.newaxis]
    while array.ndim > 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > 4:
        raise UnsupportedDataError(f"{array.ndim}D images with shape {array.shape} are not supported", path)
    return array


def volume_from_nibabel(img: Any, path: Path, meta: Meta | None = None) -> Volume:
    """Build a Volume from a loaded nibabel image: stored values + slope/intercept, RAS+ affine.

    Reads the voxel data now, so truncated files fail here with a clear message.
    """
    try:
        proxy = img.dataobj
        # Only proxies that expose one slope/inter pair can hand us stored values (PAR/REC's cannot).
        if hasattr(proxy, "get_unscaled") and hasattr(proxy, "slope") and hasattr(proxy, "inter"):
            array = np.asarray(proxy.get_unscaled())
            slope = getattr(proxy, "slope", 1.0)
            inter = getattr(proxy, "inter", 0.0)
        else:
            array = np.asarray(proxy)
            slope, inter = 1.0, 0.0
    except BROKEN_FILE_ERRORS as exc:
        raise CorruptFileError(f"cannot read voxel data (file truncated or corrupt): {exc}", path) from exc
    if np.ndim(slope) or np.ndim(inter):  # per-slice scaling (PAR/REC, MINC): apply it now
        array = np.asarray(img.dataobj)
        slope, inter = 1.0, 0.0
    if is_rgb_dtype(array.dtype):  # NIfTI-1: "scaling is not applied to ... RGB datatypes"
        slope, inter = 1.0, 0.0
    array = to_3d_or_4d(supported_array(array, path), path)
    affine = np.asarray(img.affine, dtype=np.float64)
    return Volume(array=array, affine=affine, meta=meta or Meta(), slope=float(slope), intercept=float(inter),
                  source=img.header)


def iter_fortran_chunks(array: Any, max_bytes: int = SLAB_BYTES) -> Iterator[memoryview]:
    """Yield the bytes of ``array`` (an ndarray or a lazy proxy) in Fortran (i fastest) order, a few
    slices at a time (volume by volume for 4D).

    Keeps memory at one slab instead of a full copy of the volume; a lazy proxy
    (:mod:`convert.proxy`) is read slab by slab, so the volume is never whole in memory.
    """
    if array.ndim not in (3, 4):
        yield memoryview(np.asarray(array).tobytes(order="F"))
        return
    for _, _, _, slab in iter_slabs(array, max_bytes):
        data = np.ascontiguousarray(slab.transpose(2, 1, 0))
        if data.dtype.fields is not None:  # RGB24: the bytes of each voxel's R, G, B triple, interleaved
            data = data.reshape(-1).view(np.uint8)
        yield memoryview(data).cast("B")


def open_output(path: Path, compress: bool, level: int = 1) -> BinaryIO:
    """Open ``path`` for binary writing; gzip with python-isal (threads) when ``compress``.

    The gzip stream is reproducible: no file name and modification time 0 in its header
    (isal writes them so), so the same volume gives the same bytes on every run and worker.
    """
    if not compress:
        return open(path, "wb")
    try:
        from isal import igzip_threaded

        return igzip_threaded.open(path, "wb", compresslevel=min(level, 3), threads=2)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - isal is a dependency
        import gzip

        stream = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=open(path, "wb"), mtime=0)
        stream.myfileobj = stream.fileobj  # GzipFile.close() then closes the file too
        return stream  # type: ignore[return-value]
