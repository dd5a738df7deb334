"""Shared helpers for adapters that parse through nibabel (not an adapter itself)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from convert.errors import CorruptFileError, UnsupportedDataError
from convert.proxy import iter_slabs
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


def iter_fortran_chunks(array: Any, max_bytes: int = 64 << 20) -> Iterator[memoryview]:
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
    """Open ``path`` for binary writing; gzip with python-isal (threads) when ``compress``."""
    if not compress:
        return open(path, "wb")
    try:
        from isal import igzip_threaded

        return igzip_threaded.open(path, "wb", compresslevel=min(level, 3), threads=2)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - isal is a dependency
        import gzip

        return gzip.open(path, "wb", compresslevel=level)  # type: ignore[return-value]
