"""The one NIfTI-1 header writer: the header as bytes, without nibabel.

Every NIfTI output (``.nii``, ``.nii.gz``, ``.hdr``/``.img``) gets its header from
:func:`nifti1_header`. It equals, field for field, what nibabel's ``Nifti1Header``
(or ``Nifti1PairHeader``) set up the same way writes (tests/test_nifti1.py keeps
nibabel as the oracle and compares the bytes): ``dim`` from the shape, ``datatype``/``bitpix`` from the dtype, sform
= the exact affine and qform = its closest rotation (nibabel's polar
decomposition and quaternion), both code 1 (scanner), ``pixdim[0]`` = qfac,
``pixdim[1:4]`` = column lengths of the affine (mm), ``pixdim[4]`` = time step
(s) for 4D, ``xyzt_units`` = 10 (mm, s), ``scl_slope``/``scl_inter`` (NaN when
unscaled), ``descrip`` = ``medconvert``, ``vox_offset`` = 352, magic ``n+1``,
followed by the 4-byte "no extensions" flag; a pair header (``.hdr``) is the 348
bytes with magic ``ni1`` and ``vox_offset`` 0. Colour (RGB24) is datatype 128,
never scaled. Native byte order, like nibabel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: NIfTI-1 datatype codes by numpy dtype string.
DATATYPE_CODES: dict[str, int] = {"uint8": 2, "int16": 4, "int32": 8, "float32": 16, "float64": 64, "int8": 256,
                                  "uint16": 512, "uint32": 768, "int64": 1024, "uint64": 1280}
#: RGB24 (three uint8 per voxel, :data:`convert.volume.RGB_DTYPE`).
RGB24_CODE = 128

#: Size of a single-file header plus the extension flag: where the voxels start.
VOX_OFFSET = 352

_HEADER_DTYPE = np.dtype([
    ("sizeof_hdr", "i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "i4"), ("session_error", "i2"),
    ("regular", "S1"), ("dim_info", "u1"), ("dim", "i2", (8,)), ("intent_p1", "f4"), ("intent_p2", "f4"),
    ("intent_p3", "f4"), ("intent_code", "i2"), ("datatype", "i2"), ("bitpix", "i2"), ("slice_start", "i2"),
    ("pixdim", "f4", (8,)), ("vox_offset", "f4"), ("scl_slope", "f4"), ("scl_inter", "f4"), ("slice_end", "i2"),
    ("slice_code", "u1"), ("xyzt_units", "u1"), ("cal_max", "f4"), ("cal_min", "f4"), ("slice_duration", "f4"),
    ("toffset", "f4"), ("glmax", "i4"), ("glmin", "i4"), ("descrip", "S80"), ("aux_file", "S24"),
    ("qform_code", "i2"), ("sform_code", "i2"), ("quatern_b", "f4"), ("quatern_c", "f4"), ("quatern_d", "f4"),
    ("qoffset_x", "f4"), ("qoffset_y", "f4"), ("qoffset_z", "f4"), ("srow_x", "f4", (4,)), ("srow_y", "f4", (4,)),
    ("srow_z", "f4", (4,)), ("intent_name", "S16"), ("magic", "S4"),
])
assert _HEADER_DTYPE.itemsize == 348


def _mat2quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of rotation matrix ``m``: nibabel.quaternions.mat2quat, verbatim."""
    qxx, qyx, qzx, qxy, qyy, qzy, qxz, qyz, qzz = m.flat
    k = np.array([
        [qxx - qyy - qzz, 0, 0, 0],
        [qyx + qxy, qyy - qxx - qzz, 0, 0],
        [qzx + qxz, qzy + qyz, qzz - qxx - qyy, 0],
        [qyz - qzy, qzx - qxz, qxy - qyx, qxx + qyy + qzz],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    if q[0] < 0:
        q *= -1
    return q


def nifti1_header(shape: Sequence[int], dtype: np.dtype, affine: np.ndarray, *, slope: float = 1.0,
                  intercept: float = 0.0, scaled: bool = False, time_step: float | None = None,
                  pair: bool = False) -> bytes:
    """The 352 bytes (header + empty extension flag) of a ``.nii`` holding this image
    (``pair``: the 348 bytes of the ``.hdr`` of a ``.hdr``/``.img`` pair).

    Args:
        shape: ``(ni, nj, nk[, nt])``.
        dtype: voxel dtype (a key of :data:`DATATYPE_CODES`).
        affine: 4x4 voxel -> RAS+ mm.
        slope, intercept: written as scl_slope/scl_inter when ``scaled``, else NaN (no scaling).
        time_step: seconds between volumes (pixdim[4]) of a 4D image; 0 when unknown.
        pair: a pair header (magic ``ni1``, voxels at offset 0 of the ``.img``).

    Raises:
        KeyError: a dtype NIfTI-1 cannot hold.
    """
    dtype = np.dtype(dtype)
    hdr = np.zeros((), dtype=_HEADER_DTYPE)
    hdr["sizeof_hdr"] = 348
    dim = [len(shape)] + [int(n) for n in shape] + [1] * (7 - len(shape))
    hdr["dim"] = dim
    rgb = dtype.fields is not None
    if rgb and (dtype.itemsize != 3 or any(dtype.fields[name][0] != np.uint8 for name in dtype.names or ())):
        raise KeyError(f"a NIfTI-1 record dtype must be RGB24, not {dtype}")
    hdr["datatype"] = RGB24_CODE if rgb else DATATYPE_CODES[dtype.name]
    hdr["bitpix"] = dtype.itemsize * 8
    pixdim = np.ones(8, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    # sform: the exact affine
    hdr["srow_x"] = affine[0, :]
    hdr["srow_y"] = affine[1, :]
    hdr["srow_z"] = affine[2, :]
    # qform: nibabel's Nifti1Header.set_qform (closest rotation, qfac for a left-handed frame)
    rzs = affine[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    r = rzs / zooms
    if np.linalg.det(r) > 0:
        qfac = 1
    else:
        qfac = -1
        r[:, -1] *= -1
    p, _, qs = np.linalg.svd(r)
    quat = _mat2quat(np.dot(p, qs))
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = affine[:3, 3]
    pixdim[0] = qfac
    pixdim[1:4] = zooms
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = quat[1:]
    if len(shape) == 4:
        pixdim[4] = time_step or 0.0
    hdr["pixdim"] = pixdim
    hdr["xyzt_units"] = 2 | 8  # mm, seconds
    hdr["scl_slope"] = slope if scaled and not rgb else np.nan
    hdr["scl_inter"] = intercept if scaled and not rgb else np.nan
    hdr["descrip"] = b"medconvert"
    hdr["vox_offset"] = 0 if pair else VOX_OFFSET
    hdr["qform_code"] = 1
    hdr["sform_code"] = 1
    hdr["magic"] = b"ni1" if pair else b"n+1"
    return hdr.tobytes() if pair else hdr.tobytes() + b"\x00\x00\x00\x00"
