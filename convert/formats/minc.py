"""MINC2 (``.mnc``, HDF5) read and write through h5py; no libminc needed.

MINC world space is RAS+ millimetres (``xspace`` runs left -> right, ``yspace``
posterior -> anterior, ``zspace`` inferior -> superior), the same space as
``Volume.affine``, so no LPS flip is involved. Each spatial dimension carries a
unit ``direction_cosines`` vector, a ``step`` (mm, may be negative) and a
``start`` (mm, measured *along* the direction cosine), so that::

    world = sum over dimensions d of  cosine_d * (start_d + index_d * step_d)

Voxel order: the HDF5 image is stored slowest axis first (``dimorder`` such as
``"zspace,yspace,xspace"``). A Volume's ``i, j, k`` are the spatial dimensions in
*reverse* file order (fastest first), exactly as NIfTI lays out memory, and a
``time`` dimension becomes the fourth axis. A file written by
:data:`MINC2` and read back therefore has the same array, not a permuted one.

Values: integer images are scaled by ``image-min``/``image-max`` relative to
``valid_range`` (``real = (stored - vmin) / (vmax - vmin) * (imax - imin) + imin``).
When one scaling applies to the whole image the stored dtype is kept and the
scaling becomes ``Volume.slope``/``intercept``; when it varies per slice
(common in MINC files made by ``mincresample``/``mincaverage``), real values are
computed and kept as float32 (8/16-bit stored data) or float64 (32-bit stored
data). Floating-point images are not scaled (libminc and nibabel agree).
Stored values outside ``valid_range`` are not clipped.

Writing produces a file that nibabel and the MINC tools (``mincinfo``,
``mincstats``, ``minctoraw``...) read with the same geometry and values. Each
voxel axis is named after the world axis it is closest to (an axial volume
gets ``zspace,yspace,xspace``); direction cosines are stored with a positive
component along their named axis and the sign goes into ``step``. Sheared
affines (voxel axes not perpendicular) are refused with
:class:`~convert.errors.GeometryError`, because MINC tools assume orthogonal
direction cosines.

Colour: MINC has no RGB voxel type; libminc stores colour as an extra
``vector_dimension`` (fastest axis) that nibabel cannot read and most MINC
tools treat as a generic vector. Because no independent reader here could
verify such a file, writing a colour volume raises
:class:`~convert.errors.UnsupportedDataError` naming the formats that hold RGB
(NIfTI, NRRD, Analyze); reading a ``vector_dimension`` image is refused as before.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_file
from convert.errors import CorruptFileError, GeometryError, UnsupportedDataError, reading
from convert.formats import read_magic
from convert.formats._nib import supported_array
from convert.geometry import affine_from_geometry, geometry_from_affine
from convert.volume import Meta, Volume

#: First 8 bytes of every HDF5 file (MINC2 is HDF5).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

SPATIAL_DIMENSIONS: tuple[str, str, str] = ("xspace", "yspace", "zspace")
_DEFAULT_COSINES = {"xspace": (1.0, 0.0, 0.0), "yspace": (0.0, 1.0, 0.0), "zspace": (0.0, 0.0, 1.0)}
_COMMENTS = {
    "xspace": "X increases from patient left to right",
    "yspace": "Y increases from patient posterior to anterior",
    "zspace": "Z increases from patient inferior to superior",
}
#: What h5py and numpy raise on broken files.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError,
                                                 ArithmeticError, MemoryError)
#: Largest |cos(angle)| between two voxel axes still treated as perpendicular.
SHEAR_TOLERANCE = 1e-5
_TIME_UNITS_TO_SECONDS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3}
_MODALITIES = {"MRI": "MR", "PET": "PT", "SPECT": "NM", "GAMMA": "NM", "MRS": "MR", "MRA": "MR", "CT": "CT",
               "DSA": "XA", "DR": "DX"}


#: Stored (compressed) voxel bytes may expand at most this much (gzip's limit is about 1032).
MAX_STORAGE_RATIO = 1100


def _text(value: Any) -> str:
    """A MINC string attribute (fixed-length bytes, padded) as a clean ``str``."""
    if isinstance(value, np.ndarray):
        value = value.tobytes() if value.dtype.kind == "S" else value.item()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("latin-1")
    return str(value).rstrip("\x00").strip()


def _s(value: str) -> np.bytes_:
    """A fixed-length ASCII HDF5 string attribute, as libminc writes them."""
    return np.bytes_(value.encode("ascii"))


def _dimorder(obj: Any) -> list[str]:
    raw = obj.attrs.get("dimorder")
    if raw is None:
        return []
    return [name.strip() for name in _text(raw).split(",") if name.strip()]


def _float_attr(attrs: Any, name: str, default: float) -> float:
    value = attrs.get(name)
    if value is None:
        return default
    arr = np.asarray(value, dtype=np.float64).ravel()
    return float(arr[0]) if arr.size else default


# --------------------------------------------------------------------------- geometry
def minc_axes(affine: np.ndarray, path: Path | None = None) -> list[tuple[str, np.ndarray, float, float]]:
    """Map a voxel->RAS+ affine to MINC dimensions for voxel axes ``i, j, k``.

    Returns one ``(name, direction_cosine, step_mm, start_mm)`` tuple per voxel
    axis. ``name`` is the MINC dimension (``"xspace"``...) of the world axis the
    voxel axis is closest to; the cosine has a positive component along that
    world axis (the sign moves into ``step``); ``start`` is measured along the
    cosine so that ``sum(cosine * start)`` is the world position of voxel 0.

    Raises:
        GeometryError: the voxel axes are not perpendicular (sheared affine).
    """
    from nibabel.orientations import io_orientation

    origin, spacing, direction = geometry_from_affine(affine)
    gram = direction.T @ direction
    shear = float(np.max(np.abs(gram - np.eye(3))))
    if shear > SHEAR_TOLERANCE:
        raise GeometryError(
            f"the affine is sheared (voxel axes are not perpendicular; largest |cos(angle)| = {shear:.3g}); "
            "MINC stores one direction cosine per axis and MINC tools assume they are orthogonal. "
            "Resample the volume to a non-sheared grid first, or write NIfTI, which keeps shear in its sform",
            path,
        )
    ornt = io_orientation(affine)
    axes = []
    for a in range(3):
        world = int(ornt[a, 0])
        cosine = direction[:, a].copy()
        step = float(spacing[a])
        if cosine[world] < 0:
            cosine, step = -cosine, -step
        axes.append((SPATIAL_DIMENSIONS[world], cosine, step, 0.0))
    cosines = np.column_stack([ax[1] for ax in axes])
    starts = np.linalg.solve(cosines, origin)
    return [(name, cos, step, float(start)) for (name, cos, step, _), start in zip(axes, starts)]


def affine_from_minc(cosines: np.ndarray, steps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """4x4 voxel->RAS+ affine from per-axis unit direction cosines (columns), steps and starts (mm)."""
    cosines = np.asarray(cosines, dtype=np.float64).reshape(3, 3)
    return affine_from_geometry(cosines @ np.asarray(starts, dtype=np.float64), steps, cosines)


# --------------------------------------------------------------------------- reading
def _scaling_arrays(group: Any, name: str, image_dims: list[str], path: Path) -> tuple[np.ndarray, list[str]] | None:
    dataset = group.get(name)
    if dataset is None:
        return None
    values = np.asarray(dataset[()], dtype=np.float64)
    dims = _dimorder(dataset)[: values.ndim]
    if values.ndim and len(dims) != values.ndim:
        dims = image_dims[: values.ndim]  # no dimorder: libminc uses the slowest image dimensions
    if any(d not in image_dims for d in dims):
        raise CorruptFileError(f"'{name}' varies over dimensions {dims} that the image does not have", path)
    return values, dims


def _broadcast(values: np.ndarray, dims: list[str], image_dims: list[str]) -> np.ndarray:
    """Reshape a per-slice scaling array so it broadcasts against the image (file order)."""
    if not dims:
        return values.reshape((1,) * len(image_dims))
    order = sorted(range(len(dims)), key=lambda n: image_dims.index(dims[n]))
    values = values.transpose(order)
    shape = [values.shape[order.index(dims.index(d))] if d in dims else 1 for d in image_dims]
    return values.reshape(shape)


def _valid_range(attrs: Any, dtype: np.dtype) -> tuple[float, float]:
    if "valid_range" in attrs:
        vr = np.asarray(attrs["valid_range"], dtype=np.float64).ravel()
        if vr.size >= 2 and np.all(np.isfinite(vr[:2])) and vr[0] != vr[1]:
            return float(min(vr[0], vr[1])), float(max(vr[0], vr[1]))
    if "valid_min" in attrs and "valid_max" in attrs:
        lo, hi = _float_attr(attrs, "valid_min", 0.0), _float_attr(attrs, "valid_max", 0.0)
        if lo != hi:
            return min(lo, hi), max(lo, hi)
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def _real_values(image: Any, lo: np.ndarray, hi: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Apply per-slice ``image-min``/``image-max`` scaling, a slab of the slowest axis at a time.

    Keeps memory at the output (float32 for 8/16-bit stored data, float64 for
    32-bit) plus one float64 slab, instead of a float64 copy of the whole image.
    """
    real_dtype = np.float64 if image.dtype.itemsize >= 4 else np.float32
    shape = image.shape
    out = np.empty(shape, dtype=real_dtype)
    if out.size == 0:
        return out
    per_slab = max(1, int(np.prod(shape[1:])) * 8)
    step = max(1, (32 << 20) // per_slab)
    scale = (hi - lo) / (vmax - vmin)
    for s0 in range(0, shape[0], step):
        part = np.asarray(image[s0 : s0 + step], dtype=np.float64)
        sl = slice(s0, s0 + step)
        lo_s = lo[sl] if lo.shape[0] > 1 else lo
        scale_s = scale[sl] if scale.shape[0] > 1 else scale
        out[sl] = (part - vmin) * scale_s + lo_s
    return out


def _read_minc2(path: Path) -> Volume:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"not a readable MINC2/HDF5 file (truncated or corrupt?): {exc}", path) from exc
    with handle:
        root = handle.get("minc-2.0")
        if not isinstance(root, h5py.Group):
            raise CorruptFileError("HDF5 file without a /minc-2.0 group: not a MINC2 image", path)
        image = root.get("image/0/image")
        if not isinstance(image, h5py.Dataset):
            raise CorruptFileError("MINC2 file has no /minc-2.0/image/0/image dataset", path)
        names = _dimorder(image)
        if not names:
            raise CorruptFileError("the image has no 'dimorder' attribute, so its axes are unknown", path)
        if len(names) != image.ndim:
            raise CorruptFileError(
                f"'dimorder' names {len(names)} dimensions ({','.join(names)}) but the image has {image.ndim}", path
            )
        dim_group = root.get("dimensions")
        dims: dict[str, Any] = {}
        for name in names:
            node = dim_group.get(name) if isinstance(dim_group, h5py.Group) else None
            if node is None:
                raise CorruptFileError(f"dimension '{name}' listed in 'dimorder' is missing", path)
            dims[name] = node.attrs
        for name, attrs in dims.items():
            if name in SPATIAL_DIMENSIONS and _text(attrs.get("spacing", b"regular__")) == "irregular":
                raise UnsupportedDataError(f"irregularly spaced dimension '{name}' is not supported", path)
            if name not in SPATIAL_DIMENSIONS and name != "time":
                length = image.shape[names.index(name)]
                if length != 1:
                    raise UnsupportedDataError(
                        f"dimension '{name}' of length {length} is not supported (only xspace, yspace, zspace "
                        "and time; vector/RGB MINC images cannot be converted)",
                        path,
                    )
        dtype = image.dtype
        if dtype.kind not in "iuf":
            raise UnsupportedDataError(f"MINC voxel type {dtype} is not supported", path)
        nbytes, stored = int(image.size) * dtype.itemsize, int(image.id.get_storage_size())
        if nbytes > MAX_STORAGE_RATIO * stored + (1 << 20):  # before anything is allocated
            raise CorruptFileError(
                f"the image is declared {image.shape} ({nbytes} bytes) but the file stores only {stored} bytes of "
                "it: the file is truncated or corrupt", path)
        slope, inter = 1.0, 0.0
        data: np.ndarray | None = None
        if dtype.kind in "iu":
            group = image.parent
            lo_hi = (_scaling_arrays(group, "image-min", names, path),
                     _scaling_arrays(group, "image-max", names, path))
            if lo_hi[0] is not None and lo_hi[1] is not None:
                (imin, dmin), (imax, dmax) = lo_hi
                vmin, vmax = _valid_range(image.attrs, dtype)
                if imin.size and imax.size and np.ptp(imin) == 0 and np.ptp(imax) == 0:
                    lo, hi = float(imin.ravel()[0]), float(imax.ravel()[0])
                    slope = (hi - lo) / (vmax - vmin)
                    inter = lo - vmin * slope
                else:
                    data = _real_values(image, _broadcast(imin, dmin, names), _broadcast(imax, dmax, names),
                                        vmin, vmax)
        if data is None:
            data = np.asarray(image[()])
        # axis order: spatial dims reversed (fastest first), then time; drop other length-1 dims
        spatial = [n for n in reversed(names) if n in SPATIAL_DIMENSIONS]
        order = [names.index(n) for n in spatial]
        if "time" in names:
            order.append(names.index("time"))
        others = [ax for ax, n in enumerate(names) if ax not in order]
        data = data.transpose(order + others).reshape([data.shape[ax] for ax in order])
        cosines, steps, starts = [], [], []
        for name in spatial:
            attrs = dims[name]
            cos = np.asarray(attrs.get("direction_cosines", _DEFAULT_COSINES[name]), dtype=np.float64).ravel()
            norm = np.linalg.norm(cos) if cos.size == 3 else 0.0
            if not np.isfinite(norm) or norm == 0:
                raise CorruptFileError(f"dimension '{name}' has invalid direction cosines {cos.tolist()}", path)
            cosines.append(cos / norm)
            steps.append(_float_attr(attrs, "step", 1.0) or 1.0)
            starts.append(_float_attr(attrs, "start", 0.0))
        for name in SPATIAL_DIMENSIONS:  # 1D/2D MINC: add the missing axes as single slices
            if name not in spatial:
                insert_at = len(cosines)
                data = np.expand_dims(data, insert_at)
                cosines.append(np.array(_DEFAULT_COSINES[name]))
                steps.append(1.0)
                starts.append(0.0)
        cos_matrix = np.column_stack(cosines)
        if abs(np.linalg.det(cos_matrix)) < 1e-6:
            raise CorruptFileError("the direction cosines of the spatial dimensions are coplanar", path)
        affine = affine_from_minc(cos_matrix, np.array(steps), np.array(starts))
        meta = Meta()
        if "time" in dims and data.ndim == 4:
            attrs = dims["time"]
            unit = _text(attrs.get("units", b"s")).lower() or "s"
            step = _float_attr(attrs, "step", 0.0)
            if step > 0:
                meta = meta.replace(time_step=step * _TIME_UNITS_TO_SECONDS.get(unit, 1.0))
        info = root.get("info/study")
        if info is not None and "modality" in info.attrs:
            modality = _text(info.attrs["modality"]).rstrip("_").upper()
            if modality in _MODALITIES:
                meta = meta.replace(modality=_MODALITIES[modality])
        source = {"dimorder": names, "dtype": str(dtype),
                  "dimensions": {n: {k: _text(v) if np.asarray(v).dtype.kind == "S" else np.asarray(v).tolist()
                                     for k, v in a.items()} for n, a in dims.items()}}
    data = supported_array(data, path)  # float16 -> float32, int64 -> smallest lossless integer
    return Volume(array=data, affine=affine, meta=meta, slope=slope, intercept=inter, source=source)


# --------------------------------------------------------------------------- writing
def _write_minc2(volume: Volume, target: Path, compresslevel: int) -> None:
    import h5py

    axes = minc_axes(volume.affine, target)
    array = volume.voxels()
    if array.dtype.kind == "f" and volume.is_scaled:
        array = volume.scaled()  # MINC does not scale floating-point data: store real values
    four_d = array.ndim == 4
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if array.dtype.kind == "f":
        vmin = float(finite.min()) if finite.size else 0.0
        vmax = float(finite.max()) if finite.size else 1.0
        imin, imax = vmin, vmax
    else:
        # the full type range, as libminc and nii2mnc write it: tools that rescale per slice
        # (mincresample, mincreshape) then keep 2^bits levels instead of the data's few
        info = np.iinfo(array.dtype)
        vmin, vmax = float(info.min), float(info.max)
        imin = vmin * volume.slope + volume.intercept
        imax = vmax * volume.slope + volume.intercept
    if vmin == vmax:
        vmax = vmin + 1.0

    names = [ax[0] for ax in axes]
    file_dims = list(reversed(names))  # slowest first
    if four_d:
        file_dims = ["time"] + file_dims
    shape = tuple(int(n) for n in reversed(array.shape[:3]))
    if four_d:
        shape = (int(array.shape[3]),) + shape
    version = _s("MINC Version    1.0")
    varid = _s("MINC standard variable")

    with h5py.File(target, "w", libver="earliest") as fh:
        root = fh.create_group("minc-2.0")
        root.attrs["ident"] = _s(f"medconvert:{time.strftime('%Y.%m.%d.%H.%M.%S', time.gmtime())}:"
                                 f"{secrets.token_hex(4)}:1")
        root.attrs["minc_version"] = _s("2.1.20")
        root.attrs["history"] = _s(f"{time.strftime('%a %b %d %H:%M:%S %Y', time.gmtime())}>>> medconvert\n")
        dims_group = root.create_group("dimensions")
        for name, cosine, step, start in axes:
            length = int(array.shape[names.index(name)])
            ds = dims_group.create_dataset(name, data=np.int32(0))
            ds.attrs["varid"] = varid
            ds.attrs["vartype"] = _s("dimension____")
            ds.attrs["version"] = version
            ds.attrs["comments"] = _s(_COMMENTS[name])
            ds.attrs["spacing"] = _s("regular__")
            ds.attrs["alignment"] = _s("centre")
            ds.attrs["units"] = _s("mm")
            ds.attrs["length"] = np.uint32(length)
            ds.attrs["step"] = np.float64(step)
            ds.attrs["start"] = np.float64(start)
            ds.attrs["direction_cosines"] = np.asarray(cosine, dtype=np.float64) + 0.0  # no "-0" 
        if four_d:
            ds = dims_group.create_dataset("time", data=np.int32(0))
            ds.attrs["varid"] = varid
            ds.attrs["vartype"] = _s("dimension____")
            ds.attrs["version"] = version
            ds.attrs["comments"] = _s("Time")
            ds.attrs["spacing"] = _s("regular__")
            ds.attrs["alignment"] = _s("centre")
            ds.attrs["units"] = _s("s")
            ds.attrs["length"] = np.uint32(array.shape[3])
            ds.attrs["step"] = np.float64(volume.meta.time_step or 1.0)
            ds.attrs["start"] = np.float64(0.0)
        info = root.create_group("info")
        if volume.meta.modality:
            reverse = {"MR": "MRI", "PT": "PET", "NM": "SPECT", "CT": "CT"}
            if volume.meta.modality in reverse:
                study = info.create_dataset("study", data=np.int32(0))
                study.attrs["varid"] = varid
                study.attrs["vartype"] = _s("group________")
                study.attrs["version"] = version
                study.attrs["modality"] = _s(reverse[volume.meta.modality].ljust(5, "_"))
        group = root.create_group("image").create_group("0")
        kwargs: dict[str, Any] = {}
        if compresslevel > 0 and array.size:
            chunk = list(shape)
            for n in range(len(chunk) - 2):  # one slice per chunk
                chunk[n] = 1
            kwargs = {"chunks": tuple(max(1, c) for c in chunk), "compression": "gzip",
                      "compression_opts": int(min(compresslevel, 9))}
        image = group.create_dataset("image", shape=shape, dtype=array.dtype, **kwargs)
        nk = array.shape[2]
        per_slice = max(1, array.shape[0] * array.shape[1] * array.itemsize)
        step_k = max(1, (32 << 20) // per_slice)
        for t in range(array.shape[3] if four_d else 1):
            for k0 in range(0, nk, step_k):
                part = array[:, :, k0 : k0 + step_k, t] if four_d else array[:, :, k0 : k0 + step_k]
                slab = np.ascontiguousarray(part.transpose(2, 1, 0))
                if four_d:
                    image[t, k0 : k0 + slab.shape[0]] = slab
                else:
                    image[k0 : k0 + slab.shape[0]] = slab
        image.attrs["dimorder"] = _s(",".join(file_dims))
        image.attrs["valid_range"] = np.array([vmin, vmax], dtype=np.float64)
        image.attrs["signtype"] = _s("unsigned" if array.dtype.kind == "u" else "signed__")
        image.attrs["complete"] = _s("true_")
        image.attrs["varid"] = varid
        image.attrs["vartype"] = _s("group________")
        image.attrs["version"] = version
        # image-min/max vary over the slowest dimension(s), as libminc writes them
        scale_dims = file_dims[:2] if four_d else file_dims[:1]
        scale_shape = shape[: len(scale_dims)]
        for name, value in (("image-min", imin), ("image-max", imax)):
            ds = group.create_dataset(name, data=np.full(scale_shape, value, dtype=np.float64))
            ds.attrs["dimorder"] = _s(",".join(scale_dims))
            ds.attrs["varid"] = varid
            ds.attrs["vartype"] = _s("var_attribute")
            ds.attrs["version"] = version


# --------------------------------------------------------------------------- adapter
class Minc2Format:
    """MINC2 adapter (HDF5-based ``.mnc``); see the module docstring for conventions."""

    name = "minc2"
    extensions: tuple[str, ...] = (".mnc",)
    description = "MINC2 (HDF5-based .mnc) read/write"
    can_read = True
    can_write = True

    def __repr__(self) -> str:
        return f"<Format {self.name}>"

    def sniff(self, path: Path) -> bool:
        """True for an HDF5 file holding a ``/minc-2.0`` group."""
        path = Path(path)
        if path.is_dir() or read_magic(path, 8) != HDF5_MAGIC:
            return False
        try:
            import h5py

            with h5py.File(path, "r") as fh:
                return "minc-2.0" in fh
        except (OSError, ValueError, RuntimeError, KeyError):
            return path.name.lower().endswith(".mnc")  # broken HDF5 named .mnc: let read() report it

    def read(self, path: Path) -> Volume:
        """Read a MINC2 file into a Volume (RAS+ affine; ``i, j, k`` = spatial dims, fastest first).

        Raises:
            CorruptFileError: not HDF5, not MINC2, truncated, or inconsistent dimensions.
            UnsupportedDataError: vector (RGB) images, irregular spatial spacing.
        """
        path = Path(path)
        with reading(path, "this MINC2 file", "cannot read MINC2 file (truncated or corrupt?)", _READ_ERRORS):
            return _read_minc2(path)

    def output_paths(self, path: Path) -> list[Path]:
        return [Path(path)]

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write ``volume`` as MINC2 atomically; returns ``[path]``.

        Options:
            compresslevel: HDF5 gzip level 0-9, one slice per chunk (0 = uncompressed; default 1,
                within a few per cent of level 4's size at twice the speed).

        Raises:
            GeometryError: the affine is sheared (see :func:`minc_axes`).
            UnsupportedDataError: a colour (RGB) volume (see the module docstring).
            OutputExistsError / OutputWriteError: see :mod:`convert.atomic`.
        """
        path = Path(path)
        if volume.is_rgb:
            raise UnsupportedDataError(
                "MINC2 output of colour (RGB) volumes is not supported: MINC would store them as a generic "
                "'vector_dimension' that nibabel and most MINC viewers cannot read as colour. Write NIfTI "
                "(.nii/.nii.gz, RGB24), NRRD (.nrrd, RGB-color) or Analyze (--to analyze, DT_RGB) instead",
                path,
            )
        level = int(options.get("compresslevel", 1))
        minc_axes(volume.affine, path)  # fail on geometry before creating any file
        with atomic_file(path, overwrite=overwrite) as tmp:
            _write_minc2(volume, tmp, level)
        return [path]


MINC2 = Minc2Format()
