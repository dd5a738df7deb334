"""The one NIfTI-1 header writer (convert/formats/_nifti1.py): byte for byte what nibabel writes for the same image."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.formats._nifti1 import DATATYPE_CODES, VOX_OFFSET, nifti1_header
from convert.formats.nifti import NIFTI, NIFTI_PAIR
from convert.volume import Meta, Volume

_DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64"]
_finite = st.floats(min_value=-500, max_value=500, allow_nan=False, allow_infinity=False)


def _nibabel_header(volume: Volume, pair: bool = False) -> nib.Nifti1Header:
    """The oracle: nibabel's header set up as the NIfTI writer documents it."""
    header = nib.Nifti1Header() if not pair else nib.nifti1.Nifti1PairHeader()
    header.set_data_dtype(volume.dtype)
    header.set_data_shape(volume.shape)
    header.set_sform(volume.affine, code=1)
    header.set_qform(volume.affine, code=1)
    header.set_xyzt_units("mm", "sec")
    if len(volume.shape) == 4:
        pixdim = header["pixdim"]
        pixdim[4] = volume.meta.time_step or 0.0
        header["pixdim"] = pixdim
    scaled = volume.is_scaled and not volume.is_rgb
    header["scl_slope"] = volume.slope if scaled else np.nan
    header["scl_inter"] = volume.intercept if scaled else np.nan
    header["descrip"] = b"medconvert"
    header["vox_offset"] = 0 if pair else 352
    return header


def _nibabel_bytes(volume: Volume, pair: bool = False) -> bytes:
    buffer = io.BytesIO()
    _nibabel_header(volume, pair).write_to(buffer)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(matrix=st.lists(_finite, min_size=9, max_size=9), origin=st.lists(_finite, min_size=3, max_size=3),
       shape=st.lists(st.integers(1, 600), min_size=3, max_size=4), dtype=st.sampled_from(_DTYPES),
       slope=st.sampled_from([1.0, 2.5, 0.001]), intercept=st.sampled_from([0.0, -1024.0, 3.3]),
       step=st.sampled_from([None, 2.0, 0.125]))
def test_header_equals_nibabels(matrix: list[float], origin: list[float], shape: list[int], dtype: str,
                                slope: float, intercept: float, step: float | None) -> None:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(matrix).reshape(3, 3)
    affine[:3, 3] = origin
    if abs(np.linalg.det(affine[:3, :3])) < 1e-3 or np.any(np.linalg.norm(affine[:3, :3], axis=0) < 1e-2):
        affine[:3, :3] += np.diag([1.5, -0.75, 2.0])  # keep it invertible (a Volume refuses singular affines)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-3:
        return
    volume = Volume(array=np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape)), affine=affine,
                    slope=slope, intercept=intercept, meta=Meta(time_step=step))
    mine = nifti1_header(volume.shape, volume.dtype, volume.affine, slope=volume.slope, intercept=volume.intercept,
                         scaled=volume.is_scaled, time_step=volume.meta.time_step)
    assert mine == _nibabel_bytes(volume)
    assert NIFTI.header_bytes(volume) == mine  # what the writer writes
    pair = nifti1_header(volume.shape, volume.dtype, volume.affine, slope=volume.slope, intercept=volume.intercept,
                         scaled=volume.is_scaled, time_step=volume.meta.time_step, pair=True)
    assert pair == _nibabel_bytes(volume, pair=True) == NIFTI_PAIR.header_bytes(volume)


def test_colour_header_equals_nibabels() -> None:
    from convert.volume import RGB_DTYPE

    volume = Volume(array=np.zeros((3, 4, 5), dtype=RGB_DTYPE), affine=np.diag([0.5, 0.75, 2.0, 1.0]))
    assert NIFTI.header_bytes(volume) == _nibabel_bytes(volume)
    assert NIFTI_PAIR.header_bytes(volume) == _nibabel_bytes(volume, pair=True)


def test_header_reads_back_with_nibabel_as_the_image_it_describes(tmp_path) -> None:
    affine = np.array([[-0.7, 0.1, 0.0, 120.0], [0.0, 0.69, 0.2, -80.0], [0.05, 0.0, 1.0, 33.0], [0, 0, 0, 1]])
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "x.nii"
    path.write_bytes(nifti1_header(data.shape, data.dtype, affine, slope=1.0, intercept=-1024.0, scaled=True)
                     + data.tobytes(order="F"))
    img = nib.load(path)
    assert img.dataobj.offset == VOX_OFFSET and int(img.header["datatype"]) == DATATYPE_CODES["int16"]
    assert np.allclose(img.affine, affine, atol=1e-5) and img.header.get_xyzt_units() == ("mm", "sec")
    assert np.array_equal(np.asanyarray(img.dataobj), data * 1.0 - 1024.0)
    assert img.header["descrip"].item() == b"medconvert"
