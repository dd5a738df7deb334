"""NIfTI-1 (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pair) read/write; NIfTI-2 read.

Geometry: NIfTI's sform/qform map to RAS+ mm, the same space as
``Volume.affine``, so no flip is needed. On write both sform and qform are set
(code 1, scanner anatomical); the qform cannot hold shear, so it holds the
closest rotation while the sform holds the exact affine. Units are written as
mm and seconds (``xyzt_units`` = 10). Scaled volumes keep their stored dtype and
carry ``scl_slope``/``scl_inter``. Colour volumes (:data:`~convert.volume.RGB_DTYPE`)
are written as datatype 128 (RGB24, as dcm2niix and nibabel write them) and
RGB24 files (NIfTI-1 or -2) are read back as colour volumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_paths
from convert.errors import CorruptFileError, UnsupportedDataError, reading
from convert.formats import read_magic
from convert.formats._nib import (check_data_size, check_header_shape, check_raw_header, iter_fortran_chunks, nibabel_errors, open_output,
                                  quiet_nibabel, volume_from_nibabel)
from convert.formats._nifti1 import nifti1_header
from convert.proxy import ByteSpan, is_proxy
from convert.volume import Meta, Volume

_UNIT_TO_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def _is_nifti_header(head: bytes) -> bool:
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return True
    return len(head) >= 8 and head[4:8] in (b"n+2\0", b"ni2\0")


def _pair_paths(path: Path) -> tuple[Path, Path]:
    """(header, image) paths of a ``.hdr``/``.img`` pair, keeping the case of the given suffix."""
    suffix = path.suffix
    img_suffix = ".IMG" if suffix.isupper() else ".img"
    hdr_suffix = ".HDR" if suffix.isupper() else ".hdr"
    return path.with_suffix(hdr_suffix), path.with_suffix(img_suffix)


class NiftiFormat:
    """NIfTI adapter; one instance per flavour (single file, gzipped, pair)."""

    can_read = True
    can_write = True

    def __init__(self, name: str, extensions: tuple[str, ...], description: str, compress: bool, pair: bool):
        self.name = name
        self.extensions = extensions
        self.description = description
        self.compress = compress
        self.pair = pair

    def __repr__(self) -> str:
        return f"<Format {self.name}>"

    # ---- reading
    def sniff(self, path: Path) -> bool:
        if path.is_dir():
            return False
        head = read_magic(path, 540)
        if len(head) >= 4 and int.from_bytes(head[:4], "little") not in (348, 540) and int.from_bytes(
            head[:4], "big"
        ) not in (348, 540):
            return False
        if self.pair != path.name.lower().endswith(".hdr"):
            return False
        return _is_nifti_header(head)

    def read(self, path: Path) -> Volume:
        import nibabel as nib

        path = Path(path)
        if self.pair:
            hdr_path, img_path = _pair_paths(path)
            if not img_path.exists():
                raise CorruptFileError(f"image file {img_path.name} of this header/image pair is missing", path)
        raw = read_magic(_pair_paths(path)[0] if self.pair else path, 348)
        check_raw_header(raw, path, single_file=not self.pair and _is_nifti_header(raw))
        errors = nibabel_errors()
        try:
            with quiet_nibabel():  # nibabel's notes on odd headers: checked below instead
                img = nib.load(str(path))
        except errors as exc:
            raise CorruptFileError(f"not a readable NIfTI file: {exc}", path) from exc
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti1Pair, nib.Nifti2Image, nib.Nifti2Pair)):
            raise CorruptFileError("not a NIfTI file", path)
        with reading(path, "this NIfTI header", "not a readable NIfTI file (corrupt header?)", errors):
            return self._volume(img, path)

    def _volume(self, img: Any, path: Path) -> Volume:
        """The Volume of a loaded NIfTI image, after checking its header against the file."""
        header = img.header
        shape = check_header_shape(header, path)
        data_path = _pair_paths(path)[1] if self.pair else path
        check_data_size(path, data_path, shape, header.get_data_dtype().itemsize,
                        float(header["vox_offset"]) if not self.pair else float(header.get_data_offset()),
                        path.name.lower().endswith(".gz"))
        slope, inter = header.get_slope_inter()
        for name, value in (("scl_slope", slope), ("scl_inter", inter)):
            if value is not None and not np.isfinite(value):
                raise CorruptFileError(f"the header's {name} is {value}: not a usable scaling", path)
        meta = Meta()
        if len(img.shape) > 3 and img.shape[3] > 1:
            _, time_unit = header.get_xyzt_units()
            dt = float(header["pixdim"][4])
            if dt > 0:
                meta = meta.replace(time_step=dt * _UNIT_TO_SECONDS.get(time_unit or "sec", 1.0))
        return volume_from_nibabel(img, path, meta)

    # ---- writing
    def output_paths(self, path: Path) -> list[Path]:
        if self.pair:
            hdr, img = _pair_paths(Path(path))
            return [img, hdr]
        return [Path(path)]

    def header_bytes(self, volume: Volume) -> bytes:
        """The NIfTI-1 header describing ``volume`` (geometry, dtype, scaling, units), from the one
        header writer :func:`convert.formats._nifti1.nifti1_header` (no nibabel import)."""
        return nifti1_header(volume.shape, volume.dtype, volume.affine, slope=volume.slope,
                             intercept=volume.intercept, scaled=volume.is_scaled,
                             time_step=volume.meta.time_step if len(volume.shape) == 4 else None, pair=self.pair)

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write ``volume`` to ``path``; option ``compresslevel`` (1-3, isal) for ``.nii.gz``."""
        level = int(options.get("compresslevel", 1))
        targets = self.output_paths(Path(path))
        if any(n > 32767 for n in volume.shape):
            raise UnsupportedDataError(f"NIfTI-1 holds at most 32767 voxels along an axis; this volume is "
                                       f"{' x '.join(map(str, volume.shape))}. Write NRRD or MINC2 instead", Path(path))
        try:
            header = self.header_bytes(volume)
        except KeyError as exc:
            raise UnsupportedDataError(f"NIfTI-1 cannot store voxels of type {volume.dtype}", Path(path)) from exc
        with atomic_paths(targets, overwrite=overwrite) as temps:
            if self.pair:
                img_tmp, hdr_tmp = temps
                with open(hdr_tmp, "wb") as fh:
                    fh.write(header)
                with open_output(img_tmp, False) as fh:
                    for chunk in iter_fortran_chunks(volume.array):
                        fh.write(chunk)
            else:
                (tmp,) = temps
                if not self.compress and _has_byte_spans(volume.array):
                    with open(tmp, "wb", buffering=0) as raw:
                        _write_all(raw.fileno(), memoryview(header))  # 348 bytes + the "no extensions" flag
                        _write_slices_copying_spans(raw, volume.array)
                else:
                    with open_output(tmp, self.compress, level) as fh:
                        fh.write(header)
                        for chunk in iter_fortran_chunks(volume.array):
                            fh.write(chunk)
        return targets


def _has_byte_spans(data: Any) -> bool:
    """A lazy proxy with at least one slice whose source bytes are the output bytes."""
    if not is_proxy(data) or not hasattr(data, "byte_span"):
        return False
    nt = data.shape[3] if len(data.shape) == 4 else 1
    return any(data.byte_span(k, t) is not None for t in range(nt) for k in range(data.shape[2]))


def _write_slices_copying_spans(raw: Any, data: Any) -> None:
    """Write ``data``'s voxels slice by slice (t-major, i fastest) to the unbuffered file ``raw``:
    slices with a source byte span are copied by the kernel (``copy_file_range``), the others
    computed and written."""
    fd = raw.fileno()
    nk = data.shape[2]
    nt = data.shape[3] if len(data.shape) == 4 else 1
    for t in range(nt):
        k = 0
        while k < nk:
            span = data.byte_span(k, t)
            if span is not None:
                copy_span(span, fd)
                k += 1
                continue
            end = k + 1  # a run of computed slices: one slab
            while end < nk and data.byte_span(end, t) is None:
                end += 1
            for chunk in iter_fortran_chunks(_Slab(data, k, end, t)):
                _write_all(fd, chunk)
            k = end


class _Slab:
    """Slices ``k0:k1`` of volume ``t`` of a proxy, as a 3D proxy (for :func:`iter_fortran_chunks`)."""

    def __init__(self, data: Any, k0: int, k1: int, t: int) -> None:
        self._data, self._k0, self._t = data, k0, t
        self.shape = tuple(data.shape[:2]) + (k1 - k0,)
        self.dtype = data.dtype
        self.ndim = 3

    def slab(self, k0: int, k1: int, t: int = 0) -> np.ndarray:
        return self._data.slab(self._k0 + k0, self._k0 + k1, self._t)


def _write_all(fd: int, data: memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def copy_span(span: ByteSpan, fd: int) -> None:
    """Append ``span``'s bytes to ``fd`` (at its offset): ``copy_file_range`` when the kernel offers it,
    else read and write. Raises CorruptFileError when the source is shorter than the span."""
    try:
        with open(span.path, "rb", buffering=0) as src:
            src_fd, offset, left = src.fileno(), span.offset, span.length
            copy_range = getattr(os, "copy_file_range", None)
            while left and copy_range is not None:
                try:
                    done = copy_range(src_fd, fd, left, offset)
                except OSError:  # e.g. across file systems on old kernels: fall back below
                    break
                if done == 0:
                    raise CorruptFileError(f"file ends before its pixel data does ({left} bytes short)", span.path)
                offset += done
                left -= done
            while left:
                chunk = os.pread(src_fd, min(left, 8 << 20), offset)
                if not chunk:
                    raise CorruptFileError(f"file ends before its pixel data does ({left} bytes short)", span.path)
                _write_all(fd, memoryview(chunk))
                offset += len(chunk)
                left -= len(chunk)
    except OSError as exc:
        raise CorruptFileError(f"cannot read pixel data: {exc.strerror or exc}", span.path) from exc


NIFTI = NiftiFormat("nifti", (".nii",), "NIfTI-1 single file (NIfTI-2 read)", compress=False, pair=False)
NIFTI_GZ = NiftiFormat("nifti-gz", (".nii.gz",), "gzipped NIfTI-1 single file (NIfTI-2 read)", compress=True,
                       pair=False)
NIFTI_PAIR = NiftiFormat("nifti-pair", (".hdr", ".img"), "NIfTI-1 header/image pair (.hdr + .img)",
                         compress=False, pair=True)
