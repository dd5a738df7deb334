"""Generate a synthetic but realistic 512x512 int16 axial CT series for the benchmark.

The series is written once and cached under ``benchmarks/data/`` (git-ignored):

* CT Image Storage, explicit VR little endian, one slice per file;
* 512 x 512 signed 16-bit pixels, ``RescaleIntercept`` -1024, ``RescaleSlope`` 1
  (stored value = HU + 1024);
* axial ``ImageOrientationPatient`` (1,0,0,0,1,0), ``PixelSpacing`` 0.7 mm,
  ``SliceThickness`` 1.0 mm, slices 1.0 mm apart; instance 1 is the most
  superior slice (z decreasing with instance number, as most CT scanners do),
  so readers must sort by position, not by name;
* pixel content: a smooth body phantom (soft tissue, lungs, spine, table) that
  changes slowly along z, plus Gaussian noise (sigma 12 HU) inside the
  reconstruction circle and constant air outside it, so gzip compresses it
  about as well as real CT (not an all-zero toy);
* shuffled, meaningless file names (``<16 hex digits>.dcm``).

Everything is deterministic (seeded), so two machines benchmark the same bytes.

Usage::

    python benchmarks/make_ct_series.py --slices 300          # prints the folder
    python benchmarks/make_ct_series.py --slices 1000 --force
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
ROWS = COLUMNS = 512
PIXEL_SPACING_MM = 0.7
SLICE_SPACING_MM = 1.0
INTERCEPT = -1024.0
DATA_DIR = Path(__file__).resolve().parent / "data"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "2.25."  # UUID-derived UIDs (PS3.5 B.2): no organisation root needed


def make_uid(*parts: object) -> str:
    """A deterministic ``2.25.<decimal>`` UID from ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return UID_ROOT + str(int.from_bytes(digest, "big"))


def series_dir(n_slices: int, data_dir: Path = DATA_DIR) -> Path:
    """The cache folder of the ``n_slices`` series."""
    return data_dir / f"ct_512x512x{n_slices}"


def _marker(folder: Path) -> Path:
    return folder.with_name(folder.name + ".json")


def slice_z_mm(n_slices: int) -> np.ndarray:
    """z (LPS, mm) of each instance: instance 1 is the most superior (largest z)."""
    return -100.0 - SLICE_SPACING_MM * np.arange(n_slices, dtype=np.float64)


class Phantom:
    """A smooth torso phantom in HU, sampled on the 512x512 grid, varying slowly along z."""

    def __init__(self, n_slices: int, seed: int = 0):
        self.n_slices = n_slices
        self.rng = np.random.default_rng(seed)
        half = (ROWS - 1) / 2.0
        yy, xx = np.mgrid[0:ROWS, 0:COLUMNS].astype(np.float32)
        self.x = (xx - half) * PIXEL_SPACING_MM  # mm from the centre, along a row (LPS x)
        self.y = (yy - half) * PIXEL_SPACING_MM  # mm from the centre, down the columns (LPS y)
        self.fov = (self.x**2 + self.y**2) <= (half * PIXEL_SPACING_MM) ** 2
        # a fixed low-frequency texture for soft tissue (smooth, not noise)
        self.texture = (
            8.0 * np.sin(self.x / 23.0) * np.cos(self.y / 31.0) + 5.0 * np.sin((self.x + self.y) / 17.0)
        ).astype(np.float32)

    def hu(self, k: int) -> np.ndarray:
        """The noise-free HU image of slice ``k`` (0 = first instance), float32 ``[row, col]``."""
        t = k / max(self.n_slices - 1, 1)  # 0..1 from top to bottom
        x, y = self.x, self.y
        img = np.full((ROWS, COLUMNS), -1000.0, dtype=np.float32)  # air
        # patient table (below the body)
        img[(y > 125) & (y < 135) & (np.abs(x) < 160)] = 300.0
        # body: an ellipse whose size breathes slowly along z
        a = 150.0 + 15.0 * np.sin(2.5 * t)
        b = 105.0 + 10.0 * np.cos(3.0 * t)
        body = (x / a) ** 2 + ((y - 5.0) / b) ** 2 <= 1.0
        fat = (x / a) ** 2 + ((y - 5.0) / b) ** 2 > 0.85
        img[body] = 40.0 + self.texture[body]
        img[body & fat] = -100.0
        # lungs in the upper half of the series
        if 0.1 < t < 0.6:
            s = np.sin(np.pi * (t - 0.1) / 0.5)
            for cx in (-60.0, 60.0):
                lung = ((x - cx) / (45.0 * s + 5.0)) ** 2 + ((y + 5.0) / (65.0 * s + 5.0)) ** 2 <= 1.0
                img[lung & body] = -850.0 + 0.5 * self.texture[lung & body]
        # spine (cortical ring + cancellous core) and a contrast-filled aorta
        r_spine = np.hypot(x, y - 70.0)
        img[body & (r_spine < 18.0)] = 700.0
        img[body & (r_spine < 13.0)] = 250.0
        img[body & (np.hypot(x + 20.0, y - 40.0) < 12.0)] = 180.0
        return img

    def stored(self, k: int) -> np.ndarray:
        """Stored int16 values of slice ``k``: HU + noise, minus the intercept, air outside the FOV."""
        img = self.hu(k)
        img += self.rng.normal(0.0, 12.0, size=img.shape).astype(np.float32)
        img[~self.fov] = -1024.0  # outside the reconstruction circle: constant air (stored 0)
        return np.clip(np.rint(img - INTERCEPT), -32768, 32767).astype(np.int16)


def _base_dataset(n_slices: int):  # type: ignore[no-untyped-def]
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    study = make_uid("study", n_slices)
    series = make_uid("series", n_slices)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
    meta.ImplementationClassUID = UID(make_uid("medconvert-benchmark"))
    meta.ImplementationVersionName = "MEDCONVBENCH1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AcquisitionTime = ds.ContentTime = "101512.250000"
    ds.AccessionNumber = "BENCH0001"
    ds.Modality = "CT"
    ds.Manufacturer = "MEDCONVERT-SYNTHETIC"
    ds.InstitutionName = "Benchmark Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT CHEST ABDOMEN (synthetic benchmark)"
    ds.SeriesDescription = f"Synthetic 1.0 mm axial, {n_slices} slices"
    ds.ManufacturerModelName = "Phantom 512"
    ds.PatientName = "Bench^Phantom"
    ds.PatientID = "BENCH-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.PatientAge = "054Y"
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = f"{SLICE_SPACING_MM:.1f}"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{ROWS * PIXEL_SPACING_MM:.1f}"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = "3"
    ds.AcquisitionNumber = "1"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = make_uid("for", n_slices)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.PixelSpacing = [f"{PIXEL_SPACING_MM:.1f}", f"{PIXEL_SPACING_MM:.1f}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.RescaleIntercept = f"{INTERCEPT:g}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def generate(n_slices: int, data_dir: Path = DATA_DIR, force: bool = False, seed: int = 0,
             quiet: bool = False) -> Path:
    """Write (or reuse) the cached ``n_slices`` series; returns its folder.

    The folder is built under a temporary name and renamed when complete; a JSON
    marker next to it (``ct_512x512x<N>.json``) records the parameters, so a stale
    or half-written cache is regenerated.
    """
    from pydicom.uid import UID

    folder = series_dir(n_slices, data_dir)
    marker = _marker(folder)
    params = {"generator_version": GENERATOR_VERSION, "slices": n_slices, "rows": ROWS, "columns": COLUMNS,
              "pixel_spacing_mm": PIXEL_SPACING_MM, "slice_spacing_mm": SLICE_SPACING_MM, "seed": seed}
    if not force and folder.is_dir() and marker.is_file():
        try:
            if json.loads(marker.read_text()).get("params") == params:
                return folder
        except (OSError, ValueError):
            pass
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    phantom = Phantom(n_slices, seed)
    ds = _base_dataset(n_slices)
    z = slice_z_mm(n_slices)
    x0 = y0 = -(ROWS - 1) / 2.0 * PIXEL_SPACING_MM  # centre of the grid at x = y = 0 (LPS)
    order = np.random.default_rng(seed + 1).permutation(n_slices)  # shuffled name order
    names = [hashlib.sha1(f"{seed}/{n_slices}/{i}".encode()).hexdigest()[:16] + ".dcm" for i in range(n_slices)]
    raw_bytes = 0
    for k in range(n_slices):
        sop = make_uid("sop", n_slices, k)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = str(k + 1)
        ds.ImagePositionPatient = [f"{x0:.2f}", f"{y0:.2f}", f"{z[k]:.2f}"]
        ds.SliceLocation = f"{z[k]:.2f}"
        pixels = phantom.stored(k)
        ds.PixelData = pixels.tobytes()
        raw_bytes += pixels.nbytes
        ds.save_as(tmp / names[order[k]], enforce_file_format=True)
        if not quiet and (k + 1) % 100 == 0:
            print(f"  {folder.name}: {k + 1}/{n_slices} slices", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    tmp.rename(folder)
    marker.write_text(json.dumps({"params": params, "pixel_bytes": raw_bytes}, indent=2) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[300], help="series lengths (default 300)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="cache folder (default benchmarks/data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    for n in args.slices:
        print(generate(n, args.data_dir, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
