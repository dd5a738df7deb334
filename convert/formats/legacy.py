"""Read-only legacy formats through nibabel: MINC1 (netCDF ``.mnc``) and Philips PAR/REC.

**MINC1** (``.mnc`` starting with ``CDF\\x01``/``CDF\\x02``; MINC2 files are HDF5
and handled by :mod:`convert.formats.minc`). World space is RAS+ mm. As for
MINC2, the Volume's ``i, j, k`` are the spatial dimensions in *reverse* file
order (fastest first; ``zspace,yspace,xspace`` becomes ``x, y, z``) and a
``time`` dimension becomes the fourth axis. Values are nibabel's real values
(``image-min``/``image-max`` scaling applied, clipped to ``valid_range`` as
nibabel does): float32 for 8/16-bit stored data, float64 for 32-bit, floats
unchanged.

**PAR/REC** (``.par`` + ``.rec``, any case; give either file). Read with
``nibabel.parrec.load(..., scaling="dv", permit_truncated=False)``:

* ``scaling="dv"``: values are Philips *display values*, what the scanner
  console and its DICOM export show (the other choice, ``"fp"``, floating-point
  values, divides by the scale slope for quantitative comparison across scans).
* ``permit_truncated=False``: a REC file shorter than its PAR describes is an
  error rather than silently padded.
* When every slice has the same scaling, the stored integers are kept with
  ``slope``/``intercept``; otherwise the real values are computed (float64).
* The affine is nibabel's scanner RAS+ affine; multi-dynamic, multi-echo or
  diffusion series are a 4D volume in nibabel's order. ``meta.time_step`` is set
  when the fourth axis is the dynamics: the median interval between dynamic scan
  begin times (s), or the repetition time when those are all zero.

Neither format can be written.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import CorruptFileError, UnsupportedDataError, reading
from convert.formats import read_magic
from convert.formats._nib import BROKEN_FILE_ERRORS, supported_array
from convert.volume import Meta, Volume

#: Library errors of a truncated or corrupt MINC1 or PAR/REC file (nibabel, scipy.io.netcdf, numpy).
_LIBRARY_ERRORS = BROKEN_FILE_ERRORS + (AttributeError, RuntimeError, ArithmeticError, MemoryError)

MINC1_MAGICS = (b"CDF\x01", b"CDF\x02")
PAR_MARKER = b"DATA DESCRIPTION FILE"
#: How PAR/REC values are scaled: "dv" (display values) or "fp" (floating point).
PARREC_SCALING = "dv"


def _real_dtype(stored: np.dtype) -> np.dtype:
    if stored.kind == "f":
        return np.dtype(np.float64) if stored.itemsize > 4 else np.dtype(np.float32)
    return np.dtype(np.float64) if stored.itemsize >= 4 else np.dtype(np.float32)


class _ReadOnly:
    can_read = True
    can_write = False
    name = ""

    def __repr__(self) -> str:
        return f"<Format {self.name}>"

    def output_paths(self, path: Path) -> list[Path]:
        return [Path(path)]

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Always raises: this format is read-only."""
        from convert.errors import UnsupportedFormatError

        raise UnsupportedFormatError(f"format '{self.name}' can be read but not written", path)


# --------------------------------------------------------------------------- MINC1
class Minc1Format(_ReadOnly):
    """MINC1 (netCDF) reader; see the module docstring."""

    name = "minc1"
    extensions: tuple[str, ...] = (".mnc",)
    description = "MINC1 (netCDF-based .mnc), read only"

    def sniff(self, path: Path) -> bool:
        """True for a netCDF classic file (``CDF\\x01`` or ``CDF\\x02``)."""
        path = Path(path)
        return not path.is_dir() and read_magic(path, 4) in MINC1_MAGICS

    def read(self, path: Path) -> Volume:
        """Read a MINC1 file into a Volume (RAS+ affine; ``i, j, k`` = spatial dims, fastest first).

        Raises:
            CorruptFileError: not netCDF/MINC, truncated, inconsistent.
            UnsupportedDataError: fewer than 3 spatial dimensions, vector images.
        """
        path = Path(path)
        if not self.sniff(path):
            raise CorruptFileError("not a MINC1 (netCDF) file: bad magic bytes", path)
        with reading(path, "this MINC1 file", "cannot read MINC1 file (truncated or corrupt?)", _LIBRARY_ERRORS):
            return self._read(path)

    def _read(self, path: Path) -> Volume:
        import nibabel as nib
        from nibabel.externals.netcdf import netcdf_file
        from nibabel.minc1 import MincError

        with netcdf_file(str(path), "r", mmap=False) as nc:
            if "image" not in nc.variables:
                raise CorruptFileError("netCDF file without an 'image' variable: not a MINC file", path)
            names = [str(n) for n in nc.variables["image"].dimensions]
            time_step = None
            if "time" in nc.variables:
                step = getattr(nc.variables["time"], "step", None)
                if step is not None and float(step) > 0:
                    time_step = float(step)
        for ax, name in enumerate(names):
            if not name.endswith("space") and name != "time":
                raise UnsupportedDataError(f"MINC dimension '{name}' is not supported (vector/RGB image?)", path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = nib.Minc1Image.from_filename(str(path))
                stored = img.get_data_dtype()
                data = np.asarray(img.dataobj)
        except MincError as exc:
            raise UnsupportedDataError(f"unsupported MINC1 layout: {exc}", path) from exc
        spatial_file = [ax for ax, n in enumerate(names) if n.endswith("space")]
        if len(spatial_file) != 3:
            raise UnsupportedDataError(f"need 3 spatial dimensions, found {len(spatial_file)}", path)
        order = list(reversed(spatial_file)) + ([names.index("time")] if "time" in names else [])
        data = data.transpose(order)
        nib_affine = np.asarray(img.affine, dtype=np.float64)  # columns follow spatial dims in file order
        affine = np.eye(4)
        for ours, ax in enumerate(reversed(spatial_file)):
            affine[:3, ours] = nib_affine[:3, spatial_file.index(ax)]
        affine[:3, 3] = nib_affine[:3, 3]
        if data.dtype != stored or stored.kind != "f":
            data = data.astype(_real_dtype(stored))
        meta = Meta(time_step=time_step if data.ndim == 4 else None)
        return Volume(array=supported_array(data, path), affine=affine, meta=meta, source=img.header)


# --------------------------------------------------------------------------- PAR/REC
def parrec_paths(path: Path) -> tuple[Path, Path]:
    """(PAR, REC) paths for either file, finding the companion in either case (``.PAR``/``.par``)."""
    path = Path(path)
    want = ".rec" if path.suffix.lower() == ".par" else ".par"
    other = path.with_suffix(want.upper() if path.suffix.isupper() else want)
    if not other.exists():
        for candidate in (path.with_suffix(want), path.with_suffix(want.upper())):
            if candidate.exists():
                other = candidate
                break
    return (path, other) if path.suffix.lower() == ".par" else (other, path)


def parrec_time_step(header: Any) -> float | None:
    """Seconds between dynamics: median step of ``dyn_scan_begin_time``, else the first TR (ms -> s)."""
    begins = np.unique(np.asarray(header.image_defs["dyn_scan_begin_time"], dtype=np.float64))
    if begins.size > 1:
        step = float(np.median(np.diff(begins)))
        if step > 0:
            return step
    tr = np.asarray(header.general_info.get("repetition_time", [0.0]), dtype=np.float64).ravel()
    return float(tr[0]) / 1000.0 if tr.size and tr[0] > 0 else None


class ParRecFormat(_ReadOnly):
    """Philips PAR/REC reader; see the module docstring."""

    name = "parrec"
    extensions: tuple[str, ...] = (".par", ".rec")
    description = "Philips PAR/REC (display values), read only"

    def sniff(self, path: Path) -> bool:
        """True when the PAR (given directly or beside the REC) starts with the PAR banner."""
        path = Path(path)
        if path.is_dir() or path.suffix.lower() not in (".par", ".rec"):
            return False
        par, _ = parrec_paths(path)
        return PAR_MARKER in read_magic(par, 512)

    def read(self, path: Path) -> Volume:
        """Read a PAR/REC pair (give either file) into a Volume (RAS+ affine).

        Raises:
            CorruptFileError: PAR unreadable, REC missing or truncated.
        """
        path = Path(path)
        par, rec = parrec_paths(path)
        if not par.exists():
            raise CorruptFileError(f"the PAR header {par.name} of this PAR/REC pair is missing", path)
        if not rec.exists():
            raise CorruptFileError(f"the REC image file {rec.name} of this PAR/REC pair is missing", path)
        if PAR_MARKER not in read_magic(par, 512):
            raise CorruptFileError("not a Philips PAR header (no 'DATA DESCRIPTION FILE' banner)", path)
        with reading(path, "this PAR/REC file", "cannot read PAR/REC (truncated or corrupt?)", _LIBRARY_ERRORS):
            return self._read(par, rec, path)

    def _read(self, par: Path, rec: Path, path: Path) -> Volume:
        from nibabel import parrec
        from nibabel.fileholders import FileHolder

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                img = parrec.PARRECImage.from_file_map(
                    {"header": FileHolder(str(par)), "image": FileHolder(str(rec))},
                    mmap=False, permit_truncated=False, scaling=PARREC_SCALING,
                )
            except parrec.PARRECError as exc:
                if "not supported" in str(exc):
                    raise UnsupportedDataError(f"unsupported PAR/REC layout: {exc}", path) from exc
                raise CorruptFileError(f"cannot read PAR/REC: {exc}", path) from exc
            header = img.header
            slopes, inters = header.get_data_scaling(method=PARREC_SCALING)
            slopes, inters = np.asarray(slopes, dtype=np.float64), np.asarray(inters, dtype=np.float64)
            if slopes.size and np.ptp(slopes) == 0 and np.ptp(inters) == 0:
                array = np.asarray(img.dataobj.get_unscaled())
                slope, inter = float(slopes.ravel()[0]), float(inters.ravel()[0])
            else:
                array = np.asarray(img.dataobj, dtype=np.float64)
                slope, inter = 1.0, 0.0
        while array.ndim < 3:
            array = array[..., np.newaxis]
        if array.ndim > 4:
            raise UnsupportedDataError(f"{array.ndim}D PAR/REC data (shape {array.shape}) is not supported", path)
        meta = Meta(modality="MR", manufacturer="Philips")
        dynamics = int(np.max(header.general_info.get("max_dynamics", 1)))
        if array.ndim == 4 and dynamics > 1 and array.shape[3] == dynamics:
            meta = meta.replace(time_step=parrec_time_step(header))
        affine = np.asarray(img.affine, dtype=np.float64)
        return Volume(array=supported_array(array, path), affine=affine, meta=meta, slope=slope, intercept=inter,
                      source=None)


MINC1 = Minc1Format()
PARREC = ParRecFormat()
