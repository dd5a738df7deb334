"""Analyze 7.5 (``.hdr`` + ``.img`` pair) read and write, with SPM's extensions.

Analyze 7.5 has no real orientation. What this adapter does (the SPM2 /
nibabel ``Spm2AnalyzeImage`` convention):

* **Voxel order on write**: the voxels are reoriented (axes permuted/flipped,
  no resampling) to the axis-aligned orientation Analyze readers assume,
  **LAS** (radiological: i runs towards the patient's Left, j Anterior, k
  Superior). A volume in any other axis-aligned orientation keeps every voxel
  at its world position; only the array's axis order changes.
* **Voxel size** goes to ``pixdim[1:4]`` (mm); the time step of a 4D volume to
  ``pixdim[4]`` (seconds).
* **Position**: the SPM "originator" field (``origin``, 1-based voxel index of
  world point 0,0,0, stored as 16-bit integers) places the volume. An
  axis-aligned volume whose world origin falls on a voxel centre keeps its
  exact world position. Otherwise the position is rounded to the nearest voxel
  and an :class:`OrientationLossWarning` says by how much.
* **Rotation**: an oblique volume cannot be described; its voxels are written
  in the closest LAS order, placed so that the centre of the volume stays at
  its world position, and an :class:`OrientationLossWarning` is issued (the
  CLI shows it). Write NIfTI to keep oblique geometry.
* **Values**: Analyze holds uint8, int16, int32, float32 and float64. int8 is
  widened to int16 and uint16 to int32 (lossless); uint32 is written as int32
  when every value fits, otherwise :class:`~convert.errors.UnsupportedDataError`
  is raised. A slope is stored in SPM's ``funused1`` (``scl_slope``); an
  intercept has no place that Analyze readers agree on, so a volume with an
  intercept is written as real values (float32 for 8/16-bit stored data,
  float64 otherwise).
* **Colour**: an RGB volume is written as Analyze 7.5 ``DT_RGB`` (datatype
  128, bitpix 24: R, G, B bytes interleaved per voxel), which nibabel and SPM's
  readers know; it is read back as RGB.

Reading uses nibabel's ``Spm2AnalyzeImage``: originator, ``funused1`` slope and
``funused2`` intercept, and an SPM ``.mat`` file beside the header when one
exists (it holds the full affine). Without an originator, the volume's centre is
placed at world 0,0,0 (the SPM convention). ``pixdim[4]`` is read as seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_paths
from convert.errors import CorruptFileError, UnsupportedDataError, reading
from convert.formats import read_magic
from convert.formats._nib import (HEADER_ERRORS, check_data_size, check_header_shape, check_raw_header, iter_fortran_chunks,
                                  nibabel_errors, quiet_nibabel, volume_from_nibabel)
from convert.geometry import geometry_from_affine
from convert.volume import RGB_DTYPE, Meta, Volume


class OrientationLossWarning(UserWarning):
    """Writing Analyze lost orientation or position information (rotation, sub-voxel origin)."""


#: dtype written for each Volume dtype (lossless widening where Analyze lacks the type).
ANALYZE_DTYPES: dict[np.dtype, np.dtype] = {
    np.dtype("uint8"): np.dtype("uint8"),
    np.dtype("int8"): np.dtype("int16"),
    np.dtype("int16"): np.dtype("int16"),
    np.dtype("uint16"): np.dtype("int32"),
    np.dtype("int32"): np.dtype("int32"),
    np.dtype("uint32"): np.dtype("int32"),  # only when every value fits; else UnsupportedDataError
    np.dtype("float32"): np.dtype("float32"),
    np.dtype("float64"): np.dtype("float64"),
    RGB_DTYPE: RGB_DTYPE,  # Analyze 7.5 DT_RGB (datatype 128): 8-bit R, G, B interleaved per voxel
}
#: What nibabel and numpy raise on corrupt headers (negative offsets, absurd sizes...).
_READ_ERRORS: tuple[type[BaseException], ...] = HEADER_ERRORS
#: Rotation (|cos| deviation) and position (mm) differences below these are not reported as loss.
ROTATION_TOLERANCE = 1e-6
POSITION_TOLERANCE_MM = 1e-3


def pair_paths(path: Path) -> tuple[Path, Path]:
    """(header, image) paths of an Analyze pair given either file, keeping the suffix's case."""
    path = Path(path)
    upper = path.suffix.isupper()
    return path.with_suffix(".HDR" if upper else ".hdr"), path.with_suffix(".IMG" if upper else ".img")


def _header_size_ok(head: bytes) -> bool:
    return len(head) >= 348 and (
        int.from_bytes(head[:4], "little") == 348 or int.from_bytes(head[:4], "big") == 348
    )


def analyze_data(volume: Volume, path: Path | None = None) -> tuple[np.ndarray, float]:
    """Stored array and slope to write for ``volume`` (see module docstring for the rules).

    Returns ``(array, slope)``; real value = stored * slope.

    Raises:
        UnsupportedDataError: uint32 values above the int32 range.
    """
    array = volume.voxels()
    slope = volume.slope
    if volume.intercept != 0.0:
        real_dtype = np.float64 if array.dtype.itemsize >= 4 else np.float32
        return volume.scaled().astype(real_dtype), 1.0
    target = ANALYZE_DTYPES[array.dtype]
    if array.dtype == np.uint32 and array.size and int(array.max()) > np.iinfo(np.int32).max:
        raise UnsupportedDataError(
            f"Analyze 7.5 has no uint32 type and these values (up to {int(array.max())}) exceed int32; "
            "write NIfTI or NRRD instead, or rescale the volume",
            path,
        )
    if target != array.dtype:
        array = array.astype(target)
    return array, slope


def analyze_layout(
    affine: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Where the voxels go in an Analyze file: ``(transform, LAS affine, originator, losses)``.

    ``transform`` is a nibabel orientation array taking the volume's axes to LAS
    (use with ``nibabel.orientations.apply_orientation``); ``las_affine`` the
    axis-aligned affine Analyze readers will compute (including the rounding of
    the originator); ``originator`` the 1-based SPM origin field (zeros when the
    world origin cannot be stored); ``losses`` human-readable notes of what is lost (empty when
    the world geometry is kept exactly).
    """
    from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), axcodes2ornt("LAS"))
    reoriented = np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(transform, shape[:3])
    _, zooms, direction = geometry_from_affine(reoriented)
    losses: list[str] = []
    deviation = float(np.max(np.abs(direction - np.diag([-1.0, 1.0, 1.0]))))
    if deviation > ROTATION_TOLERANCE:
        angle = float(np.degrees(np.arccos(np.clip(np.min(np.abs(np.diag(direction))), -1, 1))))
        losses.append(
            f"the volume is oblique (up to {angle:.2f} degrees from the scanner axes); Analyze cannot store "
            "rotations, so it is written unrotated, centred at the same world position"
        )
    nvox = np.array([shape[n] for n in range(3)], dtype=np.float64)
    # voxel counts along the LAS axes: transform[n, 0] is the output axis of input axis n
    out_counts = np.empty(3)
    for n in range(3):
        out_counts[int(transform[n, 0])] = nvox[n]
    centre_index = (out_counts - 1) / 2.0
    centre_world = reoriented[:3, :3] @ centre_index + reoriented[:3, 3]
    las = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    las[:3, 3] = centre_world - las[:3, :3] @ centre_index
    origin_index = -las[:3, 3] / np.diag(las)[:3]  # 0-based voxel index of world 0,0,0
    originator = np.rint(origin_index + 1.0)
    stored = las.copy()
    info = np.iinfo(np.int16)
    if np.any(originator != 0) and np.all(originator >= info.min) and np.all(originator <= info.max):
        stored[:3, 3] = -np.diag(las)[:3] * (originator - 1.0)
        shift = float(np.linalg.norm(stored[:3, 3] - las[:3, 3]))
        if shift > POSITION_TOLERANCE_MM:
            losses.append(
                "the world origin does not fall on a voxel centre; Analyze's integer originator moves the "
                f"volume by {shift:.3f} mm"
            )
    else:  # all-zero means "unset" to readers, which then centre the volume on world 0,0,0
        originator = np.zeros(3)
        stored[:3, 3] = -np.diag(las)[:3] * centre_index
        losses.append(
            "the world origin cannot be stored in Analyze's 16-bit originator field; readers will centre the "
            "volume on world 0,0,0, so its position is lost"
        )
    return transform, stored, originator, losses


def spm_origin_affine(header: Any) -> np.ndarray:
    """Voxel->RAS+ affine of an Analyze header the way SPM reads it (no ``.mat`` file).

    x is flipped (LAS, radiological); the translation comes from the originator
    (1-based voxel of world 0,0,0) when any of its values is non-zero, else the
    volume's centre is placed at world 0,0,0. Unlike nibabel, whose heuristic
    ignores an originator beyond ``(-dims, 2 * dims)``, any stored value is used,
    as SPM does.
    """
    zooms = np.array(header["pixdim"][1:4], dtype=np.float64)
    zooms[zooms == 0] = 1.0
    zooms[0] *= -1.0
    dims = np.array(header["dim"][1:4], dtype=np.float64)
    origin = np.array(header["origin"][:3], dtype=np.float64)
    index = origin - 1.0 if np.any(origin) else (dims - 1.0) / 2.0
    affine = np.diag(np.append(zooms, 1.0))
    affine[:3, 3] = -index * zooms
    return affine


class AnalyzeFormat:
    """Analyze 7.5 adapter (SPM2 flavour); see the module docstring for conventions."""

    name = "analyze"
    extensions: tuple[str, ...] = (".hdr", ".img")
    description = "Analyze 7.5 header/image pair (SPM originator; orientation is axis-aligned LAS only)"
    can_read = True
    can_write = True

    def __repr__(self) -> str:
        return f"<Format {self.name}>"

    # ---- reading
    def sniff(self, path: Path) -> bool:
        """True for a 348-byte Analyze header without the NIfTI magic (given the .hdr or .img)."""
        path = Path(path)
        if path.is_dir() or path.suffix.lower() not in (".hdr", ".img"):
            return False
        hdr, _ = pair_paths(path)
        head = read_magic(hdr, 348)
        return _header_size_ok(head) and head[344:347] not in (b"ni1", b"n+1")

    def read(self, path: Path) -> Volume:
        """Read an Analyze pair (give the ``.hdr`` or the ``.img``) into a Volume (RAS+ affine).

        Raises:
            CorruptFileError: header not Analyze (wrong size, NIfTI magic), image file missing or short.
        """
        import nibabel as nib

        path = Path(path)
        hdr, img_path = pair_paths(path)
        head = read_magic(hdr, 348)
        if not hdr.exists():
            raise CorruptFileError(f"header file {hdr.name} of this Analyze pair is missing", path)
        if not _header_size_ok(head):
            raise CorruptFileError("not an Analyze 7.5 header (it must be 348 bytes starting with 348)", path)
        if head[344:347] in (b"ni1", b"n+1"):
            raise CorruptFileError("this header is NIfTI, not Analyze; read it as nifti-pair", path)
        if not img_path.exists():
            raise CorruptFileError(f"image file {img_path.name} of this Analyze pair is missing", path)
        check_raw_header(head, path, single_file=False)
        try:
            with quiet_nibabel():
                img = nib.Spm2AnalyzeImage.from_filename(str(hdr))
                shape, dtype = check_header_shape(img.header, path), img.get_data_dtype()
                offset = float(img.header.get_data_offset())
        except nibabel_errors() as exc:
            raise CorruptFileError(f"not a readable Analyze file: {exc}", path) from exc
        check_data_size(path, img_path, shape, dtype.itemsize, offset, False)
        with reading(path, "this Analyze header", "cannot read Analyze voxel data (corrupt header?)",
                     nibabel_errors()):
            return self._volume(img, hdr, path)

    def _volume(self, img: Any, hdr: Path, path: Path) -> Volume:
        shape = img.shape
        meta = Meta()
        header = img.header
        pixdim = header["pixdim"]
        if len(shape) > 3 and shape[3] > 1 and float(pixdim[4]) > 0:
            meta = meta.replace(time_step=float(pixdim[4]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = volume_from_nibabel(img, path, meta)
        if not hdr.with_suffix(".MAT" if hdr.suffix.isupper() else ".mat").exists():
            volume = volume.replace(affine=spm_origin_affine(header))
        return volume

    # ---- writing
    def output_paths(self, path: Path) -> list[Path]:
        hdr, img = pair_paths(Path(path))
        return [img, hdr]

    def header_for(self, volume: Volume, path: Path | None = None) -> tuple[Any, np.ndarray, np.ndarray, list[str]]:
        """``(header, reoriented stored array, LAS affine, losses)`` for writing ``volume``."""
        import nibabel as nib
        from nibabel.orientations import apply_orientation

        array, slope = analyze_data(volume, path)
        transform, las_affine, originator, losses = analyze_layout(volume.affine, volume.shape)
        array = apply_orientation(array, transform)
        header = nib.Spm2AnalyzeHeader()
        header.set_data_dtype(array.dtype)
        header.set_data_shape(array.shape)
        zooms = [abs(float(las_affine[n, n])) for n in range(3)]
        if array.ndim == 4:
            zooms.append(float(volume.meta.time_step or 0.0))
        header.set_zooms(zooms)
        origin = header["origin"]
        origin[:3] = originator
        header["origin"] = origin
        header["scl_slope"] = slope
        header["scl_inter"] = 0.0
        header["vox_units"] = b"mm"
        header["descrip"] = b"medconvert"
        header["vox_offset"] = 0
        if array.size and array.dtype.kind in "iu":  # (not for RGB: glmin/glmax are scalar)
            header["glmax"] = int(array.max())
            header["glmin"] = int(array.min())
        return header, array, las_affine, losses

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write an Analyze pair (``.img`` then ``.hdr``) atomically; returns both paths.

        Warns :class:`OrientationLossWarning` when rotation or sub-voxel position is lost.

        Raises:
            UnsupportedDataError: uint32 values beyond int32.
        """
        path = Path(path)
        targets = self.output_paths(path)
        header, array, _, losses = self.header_for(volume, path)
        for loss in losses:
            warnings.warn(f"{path}: {loss}", OrientationLossWarning, stacklevel=2)
        with atomic_paths(targets, overwrite=overwrite) as (img_tmp, hdr_tmp):
            with open(hdr_tmp, "wb") as fh:
                header.write_to(fh)
            with open(img_tmp, "wb") as fh:
                for chunk in iter_fortran_chunks(array):
                    fh.write(chunk)
        return targets


ANALYZE = AnalyzeFormat()
