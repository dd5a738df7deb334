"""Synthetic but realistic DICOM series: a head-like CT phantom with proper geometry, no real PHI.

Used by ``medconvert sample OUT_DIR`` (so a newcomer can try the tool without
data of their own) and by the test suite to generate series with known
geometry: oblique/sagittal/coronal orientations, descending slice order,
shuffled file names, 4D time series, gaps, tilt.

Geometry conventions (DICOM, LPS+ mm): ``row_cosine`` is the direction of
increasing column index (our ``i``), ``column_cosine`` of increasing row index
(``j``); ``pixel_spacing`` is stored as DICOM PixelSpacing ``(row spacing =
along j, column spacing = along i)``. :func:`expected_affine_ras` gives the
voxel->RAS+ affine a correct reader must produce for the generated files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.geometry import lps_to_ras

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: UID root for generated objects (a "2.25" UUID-derived root; no real institution).
_UID_PREFIX = "2.25."


@dataclass
class SeriesSpec:
    """What to generate. Lengths in mm, cosines in DICOM LPS+.

    Attributes:
        rows, columns, slices: matrix (rows = number of pixel rows = size along j).
        times: time points (>1 makes a 4D series: every position repeated).
        pixel_spacing: DICOM PixelSpacing (row spacing along j, column spacing along i).
        slice_spacing: distance between slice centres along the normal.
        row_cosine, column_cosine: ImageOrientationPatient halves.
        origin: ImagePositionPatient of the first slice (LPS+ mm).
        slice_offsets: explicit positions along the normal (overrides slices/slice_spacing).
        tilt_deg: gantry tilt: each slice also shifts along the column cosine by
            ``tan(tilt) * distance`` (a sheared stack, like a tilted CT gantry).
        modality: "CT" (HU, intercept -1024) or "MR".
        series_number, description, series_uid, study_uid: identity (UIDs random if None).
        descending: write files in descending position order (InstanceNumber follows the files).
        shuffle_names: file names carry no order (random hex names).
        rescale_slope, rescale_intercept: per-file rescale (sequence = per slice).
        bits_stored, signed: pixel storage (16 allocated).
        data: optional stored values ``[i, j, k]`` or ``[i, j, k, t]`` (default: phantom).
        seed: random seed for UIDs/noise/names.
        extra: additional header keywords -> values on every file.
        skip: slice indices not to write (to make a gap).
    """

    rows: int = 64
    columns: int = 64
    slices: int = 40
    times: int = 1
    pixel_spacing: tuple[float, float] = (3.5, 3.5)
    slice_spacing: float = 4.0
    row_cosine: tuple[float, float, float] = (1.0, 0.0, 0.0)
    column_cosine: tuple[float, float, float] = (0.0, 1.0, 0.0)
    origin: tuple[float, float, float] = (-110.25, -120.75, -60.0)
    slice_offsets: Sequence[float] | None = None
    tilt_deg: float = 0.0
    modality: str = "CT"
    series_number: int = 1
    description: str = "Synthetic head phantom"
    series_uid: str | None = None
    study_uid: str | None = None
    descending: bool = False
    shuffle_names: bool = False
    rescale_slope: float | Sequence[float] = 1.0
    rescale_intercept: float | Sequence[float] = -1024.0
    bits_stored: int = 16
    signed: bool = True
    data: np.ndarray | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    skip: Sequence[int] = ()


def oblique_cosines(ax: float = 0.3, ay: float = -0.2, az: float = 0.45) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Row and column cosines of a rotation by angles (radians) about x, then y, then z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    r = rz @ ry @ rx
    return tuple(float(v) for v in r[:, 0]), tuple(float(v) for v in r[:, 1])


ORIENTATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "oblique": oblique_cosines(),
}


def head_phantom(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """A head-like CT phantom in HU, ``[i, j, k]``: air, skull ring, brain, ventricles, a lesion.

    ``spacing`` is the voxel size along i, j, k (mm); the head is an ellipsoid
    filling ~80 % of the field of view, so orientation mistakes show.
    """
    ni, nj, nk = shape
    i, j, k = np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij")
    x = (i - (ni - 1) / 2) * spacing[0]
    y = (j - (nj - 1) / 2) * spacing[1]
    z = (k - (nk - 1) / 2) * spacing[2]
    a, b, c = 0.40 * ni * spacing[0], 0.45 * nj * spacing[1], 0.45 * max(nk * spacing[2], 1.0)
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    hu = np.full(shape, -1000.0)
    hu[r < 1.0] = 1200.0  # skull
    hu[r < 0.9] = 35.0  # brain
    vent = np.sqrt(((x + 0.1 * a) / (0.15 * a)) ** 2 + (y / (0.3 * b)) ** 2 + (z / (0.3 * c)) ** 2) < 1
    hu[vent] = 5.0
    lesion = np.sqrt(((x - 0.35 * a) / (0.12 * a)) ** 2 + ((y + 0.3 * b) / (0.12 * b)) ** 2
                     + (z / (0.2 * c)) ** 2) < 1  # off-centre: breaks left/right and front/back symmetry
    hu[lesion] = 70.0
    nose = (np.abs(x) < 0.08 * a) & (y < -0.85 * b) & (y > -1.05 * b) & (np.abs(z) < 0.3 * c)
    hu[nose] = 20.0  # anterior marker
    return hu


def _uid(rng: random.Random) -> str:
    return _UID_PREFIX + str(rng.getrandbits(120))


def slice_positions(spec: SeriesSpec) -> list[tuple[int, np.ndarray]]:
    """``(k, IPP)`` for every slice written (LPS+ mm), in spatial order k = 0, 1, ..."""
    row, col = np.asarray(spec.row_cosine, float), np.asarray(spec.column_cosine, float)
    normal = np.cross(row, col)
    offsets = list(spec.slice_offsets) if spec.slice_offsets is not None else [
        k * spec.slice_spacing for k in range(spec.slices)]
    shear = np.tan(np.radians(spec.tilt_deg))
    out = []
    for k, d in enumerate(offsets):
        if k in spec.skip:
            continue
        out.append((k, np.asarray(spec.origin, float) + d * normal + d * shear * col))
    return out


def expected_affine_ras(spec: SeriesSpec) -> np.ndarray:
    """The voxel->RAS+ affine a correct reader gives for ``spec`` (k ascending along the normal)."""
    row, col = np.asarray(spec.row_cosine, float), np.asarray(spec.column_cosine, float)
    normal = np.cross(row, col)
    offsets = list(spec.slice_offsets) if spec.slice_offsets is not None else [
        k * spec.slice_spacing for k in range(spec.slices)]
    step = (offsets[-1] - offsets[0]) / max(1, len(offsets) - 1) if len(offsets) > 1 else spec.slice_spacing
    shear = np.tan(np.radians(spec.tilt_deg))
    affine = np.eye(4)
    affine[:3, 0] = row * spec.pixel_spacing[1]
    affine[:3, 1] = col * spec.pixel_spacing[0]
    affine[:3, 2] = (normal + shear * col) * step
    affine[:3, 3] = np.asarray(spec.origin, float) + offsets[0] * (normal + shear * col)
    return lps_to_ras(affine)


def stored_data(spec: SeriesSpec) -> np.ndarray:
    """Stored values ``[i, j, k, t]`` (int) the files will hold (phantom when ``spec.data`` is None)."""
    if spec.data is not None:
        data = np.asarray(spec.data)
        return data if data.ndim == 4 else data[..., np.newaxis]
    nk = len(spec.slice_offsets) if spec.slice_offsets is not None else spec.slices
    hu = head_phantom((spec.columns, spec.rows, nk), (spec.pixel_spacing[1], spec.pixel_spacing[0],
                                                      spec.slice_spacing))
    rng = np.random.default_rng(spec.seed)
    out = np.empty(hu.shape + (spec.times,), dtype=np.int32)
    slope = spec.rescale_slope if np.isscalar(spec.rescale_slope) else 1.0
    inter = spec.rescale_intercept if np.isscalar(spec.rescale_intercept) else -1024.0
    for t in range(spec.times):
        values = hu + rng.normal(0, 4.0, hu.shape) + 10.0 * t
        if spec.modality != "CT":
            values = np.clip(values + 1000.0, 0, None) / 2.0
            out[..., t] = np.round(values)
        else:
            out[..., t] = np.round((values - float(inter)) / float(slope))  # type: ignore[arg-type]
    lo = -(1 << (spec.bits_stored - 1)) if spec.signed else 0
    hi = (1 << (spec.bits_stored - 1)) - 1 if spec.signed else (1 << spec.bits_stored) - 1
    return np.clip(out, lo, hi)


def write_series(out_dir: str | Path, spec: SeriesSpec | None = None,
                 mutate: Callable[[Any, int, int], None] | None = None) -> list[Path]:
    """Write ``spec`` as one DICOM file per slice (per time point) into ``out_dir``; return the paths.

    ``mutate(ds, k, t)`` may edit each dataset before it is saved (tests use it
    to break files). Files are explicit VR little endian with a proper preamble.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    spec = spec or SeriesSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    study_uid = spec.study_uid or _uid(rng)
    series_uid = spec.series_uid or _uid(rng)
    frame_uid = _uid(rng)
    data = stored_data(spec)
    positions = slice_positions(spec)
    order = list(reversed(positions)) if spec.descending else positions
    sop_class = CT_IMAGE_STORAGE if spec.modality == "CT" else MR_IMAGE_STORAGE
    paths: list[Path] = []
    instance = 0
    for t in range(spec.times):
        for k, ipp in order:
            instance += 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = _uid(rng)
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            name = f"{rng.getrandbits(48):012x}" if spec.shuffle_names else f"IM{instance:05d}.dcm"
            path = out_dir / name
            ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.Modality = spec.modality
            ds.Manufacturer = "medconvert synthetic"
            ds.PatientName = "Phantom^Head"
            ds.PatientID = "PHANTOM-0001"
            ds.PatientSex = "O"
            ds.StudyDate = "20000101"
            ds.StudyTime = "120000"
            ds.SeriesNumber = spec.series_number
            ds.SeriesDescription = spec.description
            ds.ProtocolName = spec.description
            ds.InstanceNumber = instance
            ds.AcquisitionNumber = 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.AcquisitionTime = f"{120000 + t * 2:06d}.000000"
            if spec.times > 1:
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = spec.times
            if spec.modality == "MR":
                ds.RepetitionTime = 2000.0
                ds.EchoTime = 30.0
                ds.MagneticFieldStrength = 3.0
            else:
                ds.KVP = 120
                ds.RescaleType = "HU"
            ds.ImagePositionPatient = [float(f"{v:.6f}") for v in ipp]
            ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in spec.row_cosine + spec.column_cosine]
            ds.PixelSpacing = [float(v) for v in spec.pixel_spacing]
            ds.SliceThickness = float(spec.slice_spacing)
            ds.Rows, ds.Columns = spec.rows, spec.columns
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = spec.bits_stored
            ds.HighBit = spec.bits_stored - 1
            ds.PixelRepresentation = 1 if spec.signed else 0
            slope = spec.rescale_slope if np.isscalar(spec.rescale_slope) else spec.rescale_slope[k]  # type: ignore[index]
            inter = spec.rescale_intercept if np.isscalar(spec.rescale_intercept) else spec.rescale_intercept[k]  # type: ignore[index]
            ds.RescaleSlope = f"{float(slope):g}"  # type: ignore[arg-type]
            ds.RescaleIntercept = f"{float(inter):g}"  # type: ignore[arg-type]
            if spec.modality == "CT":
                ds.WindowCenter = 40
                ds.WindowWidth = 80
            for key, value in spec.extra.items():
                setattr(ds, key, value)
            frame = data[:, :, k, min(t, data.shape[3] - 1)].T  # [row, col]
            ds.PixelData = np.ascontiguousarray(frame.astype("<i2" if spec.signed else "<u2")).tobytes()
            if mutate is not None:
                mutate(ds, k, t)
            ds.save_as(str(path), enforce_file_format=True)
            paths.append(path)
    return paths


def write_sample(out_dir: str | Path, *, oblique: bool = False) -> dict[str, Path]:
    """Write the ``medconvert sample`` demo: a 64x64x40 head-like CT series (and a README).

    Returns ``{"dicom": <folder of DICOM files>, "readme": <README.txt>}``. The
    series is axial by default (or oblique), 3.5 x 3.5 mm pixels, 4 mm slices,
    RescaleIntercept -1024 (stored values + -1024 = HU). The patient is a
    phantom: the only "identifiers" are obviously fake (``Phantom^Head``).
    """
    out_dir = Path(out_dir)
    dicom_dir = out_dir / "dicom"
    row, col = ORIENTATIONS["oblique" if oblique else "axial"]
    spec = SeriesSpec(row_cosine=row, column_cosine=col, series_number=2,  # type: ignore[arg-type]
                      description="Head phantom " + ("oblique" if oblique else "axial"))
    paths = write_series(dicom_dir, spec)
    readme = out_dir / "README.txt"
    readme.write_text(
        "medconvert sample data: a synthetic head-like CT phantom (no real patient).\n"
        f"{len(paths)} DICOM slices in dicom/ (64 x 64 pixels of 3.5 mm, 4 mm apart).\n\n"
        "Try:\n"
        f"  medconvert info {dicom_dir}\n"
        f"  medconvert convert {dicom_dir} {out_dir / 'out'}\n",
        encoding="utf-8",
    )
    return {"dicom": dicom_dir, "readme": readme}
