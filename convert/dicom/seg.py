"""Label maps as DICOM Segmentation (SEG) objects over a reference series (highdicom's constructor).

A label volume (NIfTI, NRRD... integer labels, 0 = background) becomes one SEG file that
references every image of the reference series, so viewers overlay it on those images:

* The label map must lie on the reference series' voxel grid, in any axis order or direction
  (a NIfTI made from that series by dcm2niix or by us has its rows flipped, for example): the
  map is reordered onto the reference's voxels through the two affines, never resampled. A map
  on any other grid is refused (resample it onto the reference first).
* Frame ``k`` of the SEG is the label slice on reference image ``k`` (sorted along the slice
  normal), with that image's own ImagePositionPatient and orientation (highdicom copies the
  plane geometry from the source images), and the frame's pixel ``(row, column)`` is the
  image's: that is what keeps viewers from showing a SEG flipped (OHIF #3420,
  QuantitativeReporting #273).
* Each distinct non-zero label value becomes one segment (numbered 1, 2... in ascending value
  order, labelled ``"label <value>"``), type BINARY by default or LABELMAP.
* Patient, study and Frame of Reference come from the reference images (same study in a PACS);
  the SEG's own UIDs are new 2.25 UIDs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_folder
from convert.dicom.writer import file_meta_for, new_uid, own_dimension_organization, reference_series_of, save_dataset
from convert.errors import ConvertError, DicomError, GeometryError, UnsupportedDataError
from convert.geometry import lps_to_ras, slice_affine_lps
from convert.volume import Volume

#: Type 2 patient/study attributes highdicom copies from the reference images (filled with "" when absent).
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: Voxel-index tolerance when matching a label map's grid to the reference's.
GRID_TOLERANCE = 1e-3


def reference_series(reference: str | Path) -> Any:
    """The one classic image series under ``reference`` (a :class:`~convert.dicom.series.Series`)."""
    reference = Path(reference)
    series = [s for s in reference_series_of(reference, "reference DICOM series") if s.problem is None]
    if len(series) != 1:
        raise DicomError(f"the reference must hold exactly one image series, found {len(series)}; give the "
                         "folder of the series the labels were drawn on", reference)
    chosen = series[0]
    if chosen.kind != "slices" or chosen.n_times != 1:
        raise DicomError("the reference must be a 3D series of single-frame images (one file per slice)",
                         chosen.first.path)
    if chosen.uneven or chosen.missing:
        raise DicomError("the reference series has unevenly spaced or missing slices, so no regular label grid "
                         "lies on its images; segment a series with even slice spacing", chosen.first.path)
    return chosen


def reference_affine(series: Any) -> np.ndarray:
    """Voxel -> RAS+ affine of the reference ``series`` (``i`` along rows, ``k`` along the sorted slices)."""
    first, last = series.grid[0][0], series.grid[-1][0]
    return lps_to_ras(slice_affine_lps(first, last, series.n_slices))


def labels_on_reference(labels: Volume, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``labels``' array reordered onto the reference grid (``affine``, ``shape``): axes permuted and
    flipped, never resampled. Raises :class:`GeometryError` when the label map lies on another grid."""
    transform = np.linalg.inv(affine) @ labels.affine  # label index -> reference index
    rotation, offset = transform[:3, :3], transform[:3, 3]
    permutation = np.round(rotation)
    if (not np.allclose(rotation, permutation, atol=GRID_TOLERANCE)
            or not np.allclose(np.abs(permutation).sum(axis=0), 1) or not np.allclose(np.abs(permutation).sum(axis=1), 1)
            or not np.allclose(offset, np.round(offset), atol=GRID_TOLERANCE)):
        raise GeometryError("the label map is not on the reference series' voxel grid (different spacing, "
                            "orientation or position); resample it onto the reference first")
    offset = np.round(offset).astype(int)
    array = np.asarray(labels.voxels())
    order = [int(np.argmax(np.abs(permutation[a]))) for a in range(3)]  # label axis of each reference axis
    moved = np.transpose(array, order)
    index = []
    for a in range(3):
        sign = int(permutation[a, order[a]])
        idx = sign * (np.arange(shape[a]) - offset[a])
        if idx.min() < 0 or idx.max() >= moved.shape[a]:
            raise GeometryError(f"the label map ({labels.shape[:3]} voxels) does not cover the reference series "
                                f"({shape} voxels) on the same grid; pad or crop it to the reference first")
        index.append(idx)
    if tuple(moved.shape) != tuple(shape):
        raise GeometryError(f"the label map has {labels.shape[:3]} voxels, the reference series {shape}: they "
                            "must cover the same grid")
    return moved[np.ix_(*index)]


def _segment_values(array: np.ndarray) -> list[int]:
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise UnsupportedDataError("a label map holds whole numbers (0 = background); this one has fractions")
    values = [int(v) for v in np.unique(array) if v != 0]
    if any(v < 0 for v in values):
        raise UnsupportedDataError("label values must be 0 (background) or positive")
    if not values:
        raise UnsupportedDataError("the label map is empty (every voxel is 0): nothing to segment")
    if len(values) > 65535:
        raise UnsupportedDataError(f"{len(values)} labels: a SEG holds at most 65535 segments")
    return values


def write_seg(labels: Volume, out_dir: str | Path, *, reference: str | Path | None = None,
              segmentation_type: str = "BINARY", overwrite: bool = False,
              series_description: str | None = None, series_number: int = 1) -> list[Path]:
    """Write the label map ``labels`` as one DICOM SEG file into the folder ``out_dir``.

    Args:
        labels: 3D integer label volume (0 = background), on the reference's voxel grid
            in any axis order (RAS+ affine, mm).
        out_dir: output folder (new, or empty; a non-empty one only with ``overwrite``).
        reference: folder of the DICOM series the labels belong to (required).
        segmentation_type: ``"BINARY"`` (one bit plane per segment) or ``"LABELMAP"``.
        series_description: of the new SEG series (default "medconvert segmentation").
        series_number: of the new SEG series (default 1).

    Returns:
        The one file written (``out_dir/SEG0001.dcm``).

    Raises:
        ConvertError: no ``reference`` given. DicomError: the reference is not one 3D series.
        GeometryError: the label map is not on the reference grid.
        UnsupportedDataError: 4D, colour, fractional, negative or empty labels.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from convert import __version__

    if reference is None:
        raise ConvertError("a SEG needs the DICOM series the labels were drawn on: give --reference DICOM_DIR",
                           out_dir)
    labels.require_scalar("writing a DICOM SEG")
    if len(labels.shape) != 3:
        raise UnsupportedDataError(f"a label map for a SEG is 3D, got shape {labels.shape}")
    kind = segmentation_type.upper()
    if kind not in ("BINARY", "LABELMAP"):
        raise ConvertError(f"segmentation type '{segmentation_type}' is not one of BINARY, LABELMAP")
    series = reference_series(reference)
    first = series.first
    shape = (int(first.columns), int(first.rows), series.n_slices)
    on_grid = labels_on_reference(labels, reference_affine(series), shape)
    values = _segment_values(on_grid)
    numbers = np.zeros(on_grid.shape, dtype=np.uint16)
    for number, value in enumerate(values, start=1):
        numbers[on_grid == value] = number
    pixel_array = np.ascontiguousarray(numbers.transpose(2, 1, 0))  # (frame = k, row = j, column = i)
    if len(values) < 256:
        pixel_array = pixel_array.astype(np.uint8)
    sources = [pydicom.dcmread(column[0].path) for column in series.grid]
    for source in sources:  # in memory only: type 2 patient/study attributes the SEG must carry, empty if absent
        for keyword in _TYPE2_COPIED:
            if keyword not in source:
                setattr(source, keyword, "")
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=f"label {value}",
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for number, value in enumerate(values, start=1)]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel_array, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=new_uid(), series_number=int(series_number),
        sop_instance_uid=new_uid(), instance_number=1, manufacturer="medconvert",
        manufacturer_model_name="medconvert", software_versions=__version__, device_serial_number="0",
        omit_empty_frames=False, series_description=series_description or "medconvert segmentation")
    own_dimension_organization(seg)
    seg.file_meta = file_meta_for(seg.SOPClassUID, seg.SOPInstanceUID)
    out_dir = Path(out_dir)
    with atomic_folder(out_dir, overwrite=overwrite) as temp:
        save_dataset(temp / "SEG0001.dcm", seg)
    return [out_dir / "SEG0001.dcm"]


class DicomSegFormat:
    """DICOM SEG adapter (write only): a label map over a reference series, ``--to dicom-seg --reference DIR``."""

    name = "dicom-seg"
    extensions: tuple[str, ...] = ()
    description = "DICOM Segmentation of a label map over a reference series (write: --to dicom-seg --reference DIR)"
    can_read = False
    can_write = True
    #: A write goes into a folder (one SEG file), not to a file with an extension.
    writes_folder = True

    def __repr__(self) -> str:
        return "<Format dicom-seg>"

    def sniff(self, path: Path) -> bool:
        return False

    def read(self, path: Path) -> Volume:
        raise ConvertError("reading DICOM SEG is not supported; read the SEG with highdicom", path)

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write ``volume`` (labels) as a SEG into the folder ``path``; options: :func:`write_seg`'s."""
        return write_seg(volume, path, overwrite=overwrite, **options)

    def output_paths(self, path: Path) -> list[Path]:
        return []  # a folder: checked by convert.atomic.atomic_folder when written


DICOM_SEG = DicomSegFormat()
