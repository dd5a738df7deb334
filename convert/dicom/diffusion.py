"""Diffusion gradient tables: b-values and directions per volume, per vendor encoding; FSL bval/bvec.

One place decides what a DWI series' table is (:func:`series_table`), for the
tree conversion, the single-file conversion and the Python API alike.

Per volume (one header per time point, :func:`volume_gradient`), in this order:

* **standard** (every vendor, PS3.3 C.8.13.5.9): (0018,9087) DiffusionBValue and
  (0018,9089) DiffusionGradientOrientation, at the top level or inside an
  MRDiffusionSequence (0018,9117) item; (0018,9075) DiffusionDirectionality
  ``ISOTROPIC``/``NONE`` means no direction. Enhanced (multi-frame) files carry
  the per-frame values of their functional groups in ``volume.meta`` (read by
  :mod:`convert.dicom.multiframe`).
* **Siemens** classic: the CSA image header ``B_value`` /
  ``DiffusionGradientDirection``, else the private SIEMENS MR HEADER elements
  (0019,xx0C) B_value and (0019,xx0E) DiffusionGradientDirection.
* **GE**: (0043,xx39) (GEMS_PARM_01) first value is the b-value, with GE's
  large offset removed as dcm2niix does (``b mod 10^9``: 1000001000 -> 1000);
  the direction is (0019,xxBB/BC/BD) (GEMS_ACQU_01), given in GE's **logical**
  frame, not the patient frame (see :func:`logical_gradient_lps`). A direction
  shorter than 1 (0.03..0.97) scales the b-value by its squared length and is
  normalised (dcm2niix issue 163).
* **Canon** (Manufacturer ``CANON...``): standard elements, but dcm2niix (since
  its Canon fix of 2026) reads (0018,9089) in the image's logical frame like
  GE's; Toshiba (``TOSHIBA...``) tables are standard LPS.
* **Philips** classic: (2001,xx03) b-factor (Philips Imaging DD 001) and
  (2005,xxB0/B1/B2) direction RL, AP, FH (Philips MR Imaging DD 001) in the
  patient LPS frame; (2001,xx04) ``I`` flags the isotropic (trace) image:
  b > 0 and no direction.

Series rules (:func:`series_table`):

* a volume without any b-value element in a diffusion series (one where some
  volume has b > 0) is a b = 0 volume (Toshiba/Canon store nothing for b0;
  dcm2niix does the same);
* b = 0 and non-directional volumes get the zero vector;
* a series that looks like diffusion (b-values present, ``DIFFUSION`` in
  ImageType, a sequence name ``*ep_b...``, GE's b-value element) but whose table
  is unusable gets no files and a **warning** saying why, never silence;
* b = 0 in every volume is not a table and not worth a warning (Siemens XA
  fMRI carries b = 0 in every frame; dcm2niix writes nothing either).

Directions are kept as unit vectors in the patient **LPS** frame and written by
:func:`fsl_bvecs` in the voxel frame of the output image: ``bvec = R^-1 g_ras``
with ``R`` the unit axes of the output affine, then the ``i`` component negated
when ``det(affine) > 0`` (FSL's radiological convention, which dcm2niix, FSL
and MRtrix share). Our NIfTI keeps the DICOM row order (dcm2niix flips rows),
so the numbers differ from dcm2niix's file while pointing the same way in the
world; the sign of a whole vector is arbitrary (a gradient and its opposite
weight the signal identically) and dcm2niix's sign is not the same for every
vendor, so compare up to that sign.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert.dicom import csa as csa_module
from convert.dicom.header import is_multi
from convert.geometry import geometry_from_affine, lps_to_ras_point
from convert.volume import Volume

__all__ = ["DiffusionTable", "VolumeGradient", "volume_gradient", "series_table", "logical_gradient_lps",
           "looks_like_diffusion", "fsl_bvecs", "write_bval_bvec", "diffusion_table", "vendor_of"]

#: GE's b-value offset in (0043,xx39): values are stored as 10^9 * k + b.
GE_BVALUE_MODULUS = 1_000_000_000


@dataclass(frozen=True)
class VolumeGradient:
    """What one volume's header says about diffusion.

    Attributes:
        bvalue: s/mm^2, or None when no b-value element is present.
        vector: direction as stored (unit or not), or None when absent.
        frame: ``"lps"`` (patient frame) or ``"logical"`` (the image's frame, as GE and Canon store
            it: see :func:`logical_gradient_lps`).
        isotropic: a trace/isotropic/non-directional image (b may be > 0, no direction).
        source: which encoding supplied the values ("standard", "siemens-csa", "siemens", "ge", "philips").
    """

    bvalue: float | None
    vector: tuple[float, float, float] | None
    frame: str = "lps"
    isotropic: bool = False
    source: str = ""


@dataclass(frozen=True)
class DiffusionTable:
    """A usable gradient table: one b-value (s/mm^2) and one unit LPS direction (or zeros) per volume."""

    bvals: list[float]
    gradients_lps: list[list[float]]
    source: str = ""


# --------------------------------------------------------------------------- value helpers
def _numbers(value: Any, vr: str = "") -> list[float] | None:
    """Finite floats of an element value (strings, numbers, lists, or raw bytes of an ``UN`` element)."""
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if vr in ("FL", "FD") and raw and len(raw) % (4 if vr == "FL" else 8) == 0:
            value = list(struct.unpack("<" + ("f" if vr == "FL" else "d") * (len(raw) // (4 if vr == "FL" else 8)),
                                       raw))
        else:
            value = raw.decode("ascii", "replace").strip("\x00 ").split("\\")
    values = value if is_multi(value) else [value]
    out: list[float] = []
    for v in values:
        try:
            number = float(str(v).strip()) if isinstance(v, (str, bytes)) else float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        out.append(number)
    return out or None


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    if is_multi(value):
        return "\\".join(str(v) for v in value).strip().upper()
    return str(value or "").strip().strip("\x00").upper()


def _get(ds: Any, keyword: str) -> Any:
    """``ds.get(keyword)``: pydicom Datasets and header views alike."""
    return ds.get(keyword)


def _private(ds: Any, group: int, creator: str, offset: int) -> Any:
    """Value of private element (group, creator, offset), or None.

    Without any private creator in the group (some exports drop them) the usual
    block 0x10 is read, as dcm2niix reads these fixed tags; a block reserved by
    another creator is never read.
    """
    try:
        return ds.private_block(group, creator)[offset].value
    except (KeyError, ValueError):
        pass
    tag = (group, 0x1000 | offset)
    if (group, 0x0010) not in ds and tag in ds:
        try:
            return ds[tag].value
        except (KeyError, ValueError):
            return None
    return None


def vendor_of(ds: Any) -> str:
    """``"siemens"``, ``"ge"``, ``"philips"``, ``"canon"``, ``"toshiba"``, ``"uih"`` or ``""`` from (0008,0070)."""
    text = _text(_get(ds, "Manufacturer"))
    for prefix, name in (("SIEMENS", "siemens"), ("GE", "ge"), ("PHILIPS", "philips"), ("TOSHIBA", "toshiba"),
                         ("CANON", "canon"), ("UIH", "uih"), ("UNITED IMAGING", "uih")):
        if text.startswith(prefix):
            return name
    return ""


def _unit(vector: Sequence[float]) -> tuple[float, float, float] | None:
    """A 3-vector as a float tuple (not normalised: lengths matter for GE), None when not three values."""
    if len(vector) != 3:
        return None
    return (float(vector[0]), float(vector[1]), float(vector[2]))


# --------------------------------------------------------------------------- one volume
_MR_DIFFUSION_SEQUENCE = (0x0018, 0x9117)
_GRADIENT_DIRECTION_SEQUENCE = (0x0018, 0x9076)
_DIRECTIONALITY = (0x0018, 0x9075)


def _standard(ds: Any) -> VolumeGradient | None:
    """(0018,9087)/(0018,9089)/(0018,9075) at the top level or in an MRDiffusionSequence item."""
    # presence is tested by tag number first: header stand-ins that mirror few keywords then only
    # see keyword lookups for elements that exist
    items = [ds]
    if _MR_DIFFUSION_SEQUENCE in ds:
        seq = ds.get("MRDiffusionSequence")
        if seq:
            items.append(seq[0])
    bvalue = vector = None
    directionality = ""
    for item in items:
        if bvalue is None:
            found = _numbers(item.get("DiffusionBValue"), "FD")
            bvalue = found[0] if found else None
        if vector is None:
            found = _numbers(item.get("DiffusionGradientOrientation"), "FD")
            if found is None and item is not ds and _GRADIENT_DIRECTION_SEQUENCE in item:
                inner = item.get("DiffusionGradientDirectionSequence")
                found = _numbers(inner[0].get("DiffusionGradientOrientation"), "FD") if inner else None
            vector = _unit(found) if found else None
        if not directionality and _DIRECTIONALITY in item:
            directionality = _text(item.get("DiffusionDirectionality"))
    if bvalue is None and vector is None:
        return None
    return VolumeGradient(bvalue, vector, "lps", directionality in ("ISOTROPIC", "NONE"), "standard")


def _siemens(ds: Any) -> VolumeGradient | None:
    csa = csa_module.image_header(ds)
    if csa:
        b = _numbers(csa.get("B_value"))
        g = _numbers(csa.get("DiffusionGradientDirection"))
        if b is not None:
            return VolumeGradient(b[0], _unit(g) if g else None, "lps", False, "siemens-csa")
    b = _numbers(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0C), "IS")
    g = _numbers(_private(ds, 0x0019, "SIEMENS MR HEADER", 0x0E), "FD")
    if b is None:
        return None
    return VolumeGradient(b[0], _unit(g) if g else None, "lps", False, "siemens")


def _ge(ds: Any) -> VolumeGradient | None:
    b = _numbers(_private(ds, 0x0043, "GEMS_PARM_01", 0x39), "IS")
    if b is None:
        return None
    bvalue = float(int(round(b[0])) % GE_BVALUE_MODULUS)
    parts = [_numbers(_private(ds, 0x0019, "GEMS_ACQU_01", offset), "DS") for offset in (0xBB, 0xBC, 0xBD)]
    vector = _unit([p[0] for p in parts]) if all(parts) else None  # type: ignore[index]
    return VolumeGradient(bvalue, vector, "logical", False, "ge")


def _philips(ds: Any) -> VolumeGradient | None:
    b = _numbers(_private(ds, 0x2001, "Philips Imaging DD 001", 0x03), "FL")
    if b is None:
        return None
    flag = _text(_private(ds, 0x2001, "Philips Imaging DD 001", 0x04))
    parts = [_numbers(_private(ds, 0x2005, "Philips MR Imaging DD 001", offset), "FL")
             for offset in (0xB0, 0xB1, 0xB2)]
    vector = _unit([p[0] for p in parts]) if all(parts) else None  # type: ignore[index]
    return VolumeGradient(b[0], vector, "lps", flag.startswith("I"), "philips")


def volume_gradient(ds: Any) -> VolumeGradient:
    """The diffusion values one header holds (see the module doc for the encodings).

    GE: its private pair, when present, wins (GE 27+ also writes (0018,9087) but
    keeps the direction in its logical frame, and omits the standard b-value for
    b = 0). Otherwise the standard elements win when they hold a b-value, with the
    vendor's private direction filling a missing one and Philips' ``I`` flag
    marking the trace image; otherwise the vendor's private elements (by
    Manufacturer; an unknown vendor may still carry a Siemens CSA header).
    Returns a :class:`VolumeGradient` with ``bvalue`` None when there is no b-value.
    """
    vendor = vendor_of(ds)
    if vendor == "ge":
        ge = _ge(ds)
        if ge is not None:
            return ge
    reader = {"siemens": _siemens, "philips": _philips, "": _siemens}.get(vendor)
    standard = _standard(ds)
    if standard is not None and vendor == "canon":  # Canon: (0018,9089) is in the image's frame
        standard = VolumeGradient(standard.bvalue, standard.vector, "logical", standard.isotropic, "canon")
    if standard is not None and standard.bvalue is not None:
        private = reader(ds) if reader is not None and (vendor == "philips" or standard.vector is None) else None
        if private is not None and private.isotropic:  # Philips (2001,xx04) "I": trace, whatever 9089 says
            return VolumeGradient(standard.bvalue, None, "lps", True, standard.source)
        if (standard.vector is None and not standard.isotropic and standard.bvalue > 0 and private is not None
                and private.vector is not None):
            return VolumeGradient(standard.bvalue, private.vector, private.frame, private.isotropic,
                                  private.source)
        return standard
    private = reader(ds) if reader is not None else None
    if private is not None:
        return private
    return standard or VolumeGradient(None, None)


_SEQUENCE_DWI = re.compile(r"(^|[^a-z])(re)?ep_?b\d", re.IGNORECASE)


def looks_like_diffusion(ds: Any) -> str | None:
    """Why a header looks like a diffusion acquisition (a short phrase), or None.

    Signs: a b-value element (standard, Siemens, GE, Philips), ``DIFFUSION`` in ImageType,
    a Siemens-style sequence name ``ep_b<value>`` / ``*ep_b...``.
    """
    if volume_gradient(ds).bvalue is not None:
        return "b-values present"
    image_type = [str(v).upper() for v in (_get(ds, "ImageType") or [])] if is_multi(_get(ds, "ImageType")) else \
        _text(_get(ds, "ImageType")).split("\\")
    if "DIFFUSION" in image_type:
        return "DIFFUSION in ImageType"
    if _SEQUENCE_DWI.search(_text(_get(ds, "SequenceName")).lower()):
        return f"sequence name {_text(_get(ds, 'SequenceName')).lower()}"
    return None


# --------------------------------------------------------------------------- GE logical frame
#: Components of a logical-frame (x, y, z) that dcm2niix negates per slice plane for GE and Canon
#: tables (geCorrectBvecs, after Xiangrui Li's dicm2nii; validated there on real head-first supine data).
LOGICAL_PLANE_FLIPS: dict[str, tuple[bool, bool, bool]] = {"sagittal": (True, True, False),
                                                            "coronal": (False, True, True),
                                                            "axial": (False, False, True)}


def logical_gradient_lps(vector: Sequence[float], orientation: Sequence[float], phase_axis: str) -> np.ndarray:
    """A direction in the image's logical frame (GE, Canon) -> LPS patient direction (unit, or zeros).

    GE (0019,xxBB/BC/BD) and Canon (0018,9089, despite the standard) store the
    diffusion direction relative to the image, not the patient. With
    ImageOrientationPatient ``(row, col)`` and normal ``n = row x col``, the slice
    plane is named by the largest component of ``n`` (x: sagittal, y: coronal,
    z: axial). dcm2niix's rule, in its own voxel frame (i = row, j = -col, k = n),
    is: negate the components :data:`LOGICAL_PLANE_FLIPS` lists for the plane;
    with ROW phase encoding swap the in-plane pair, ``(a, b) -> (b, -a)``; negate
    ``j`` (its row flip), then the whole vector. The result is mapped back to the
    patient through that voxel frame: ``g = b_i*row - b_j*col + b_k*n``. Only
    valid for head-first supine scans (the caller checks); the overall sign of a
    gradient is immaterial.
    """
    v = [float(c) for c in vector]
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    plane = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
    v = [-c if flip else c for c, flip in zip(v, LOGICAL_PLANE_FLIPS[plane])]
    if phase_axis == "ROW":
        v = [v[1], -v[0], v[2]]
    v[1] = -v[1]
    v = [-c for c in v]
    out = v[0] * row - v[1] * col + v[2] * normal
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 1e-9 else np.zeros(3)


# --------------------------------------------------------------------------- the series table
def _phase_axis(ds: Any) -> str:
    text = _text(_get(ds, "InPlanePhaseEncodingDirection"))
    return "ROW" if text.startswith("ROW") else ("COL" if text.startswith("COL") else "")


def series_table(gradients: Sequence[VolumeGradient], header: Any = None) -> tuple[DiffusionTable | None,
                                                                                   str | None]:
    """The gradient table of a series from its per-volume values, or why there is none.

    Args:
        gradients: one :class:`VolumeGradient` per volume, in ``t`` order.
        header: the first header (orientation, phase axis and patient position for GE's frame).

    Returns:
        ``(table, None)`` for a usable table; ``(None, reason)`` when the values exist but
        cannot make one (the caller warns); ``(None, None)`` when there are no b-values at all.
    """
    if not gradients or all(g.bvalue is None for g in gradients):
        return None, None
    present = [g.bvalue for g in gradients if g.bvalue is not None]
    if not any(b > 0 for b in present):  # e.g. Siemens XA fMRI: b = 0 in every frame; not a DWI table
        return None, None
    if len(gradients) < 2:
        return None, "a single volume is not a gradient table"
    bvals: list[float] = []
    vectors: list[list[float]] = []
    sources = sorted({g.source for g in gradients if g.source})
    for t, g in enumerate(gradients):
        b = 0.0 if g.bvalue is None else float(g.bvalue)  # no b-value in a diffusion series: b = 0 (Canon)
        if b <= 0 or g.isotropic:
            bvals.append(max(b, 0.0))
            vectors.append([0.0, 0.0, 0.0])
            continue
        if g.vector is None:
            return None, f"volume {t + 1} has b = {b:g} s/mm^2 but no gradient direction"
        v = np.asarray(g.vector, dtype=np.float64)
        length = float(np.linalg.norm(v))
        if length <= 1e-6:  # b > 0 with a zero vector: a trace/derived image
            bvals.append(b)
            vectors.append([0.0, 0.0, 0.0])
            continue
        if g.frame == "logical":
            vendor = "GE" if g.source == "ge" else "Canon"
            if g.source == "ge" and 0.03 < length < 0.97:  # GE scales b by |g|^2 (dcm2niix issue 163)
                b = b * length * length
            position = _text(_get(header, "PatientPosition")) if header is not None else ""
            if position and position != "HFS":
                return None, (f"{vendor} gradient directions are defined for head-first supine scans only "
                              f"(PatientPosition {position})")
            orientation = _numbers(_get(header, "ImageOrientationPatient")) if header is not None else None
            if not orientation or len(orientation) != 6:
                return None, f"{vendor} gradient directions need ImageOrientationPatient"
            axis = _phase_axis(header)
            if not axis:
                return None, f"{vendor} gradient directions need InPlanePhaseEncodingDirection (ROW or COL)"
            v = logical_gradient_lps(v, orientation, axis)
        else:
            v = v / length
        bvals.append(round(b, 6))
        vectors.append([float(c) for c in v])
    return DiffusionTable(bvals, vectors, "+".join(sources)), None


def diffusion_table(
    volume: Volume, time_datasets: Sequence[Any] | None = None
) -> tuple[list[float], list[list[float]]] | None:
    """b-values (s/mm^2) and unit gradient directions (LPS+ world) per volume of a DWI series, or None.

    Enhanced volumes carry them in ``meta.acquisition`` (from MRDiffusionSequence);
    otherwise ``time_datasets`` gives one header per time point in ``t`` order (e.g.
    ``series.grid[0]``). See :func:`series_table` for the rules; None when there is
    no usable table (:func:`table_for_volume` also says why).
    """
    table, _ = table_for_volume(volume, time_datasets)
    return None if table is None else (table.bvals, table.gradients_lps)


def table_for_volume(volume: Volume, time_datasets: Sequence[Any] | None = None) -> tuple[DiffusionTable | None,
                                                                                           str | None]:
    """:func:`series_table` for a read volume: ``(table, None)``, ``(None, reason)`` or ``(None, None)``.

    A reason is also given when the series looks like diffusion (see
    :func:`looks_like_diffusion`) but carries no b-values at all.
    """
    nt = volume.shape[3] if len(volume.shape) == 4 else 1
    acq = volume.meta.acquisition
    bvals = acq.get("DiffusionBValue")
    if isinstance(bvals, list) and len(bvals) == nt:
        grads = acq.get("DiffusionGradientOrientation")
        grads = grads if isinstance(grads, list) and len(grads) == nt else [None] * nt
        per_volume = [VolumeGradient(None if b is None else float(b), None if g is None else _unit(g), "lps",
                                     g is not None and not any(g), "standard") for b, g in zip(bvals, grads)]
        return series_table(per_volume)
    if not time_datasets or len(time_datasets) != nt:
        first = time_datasets[0] if time_datasets else volume.source
        if first is not None and nt > 1:
            reason = _safe_looks_like(first)
            if reason:
                return None, f"looks like diffusion ({reason}) but the volumes cannot be matched to headers"
        return None, None
    per_volume = [volume_gradient(ds) for ds in time_datasets]
    table, reason = series_table(per_volume, time_datasets[0])
    if table is None and reason is None and nt > 1 and all(g.bvalue is None for g in per_volume):
        why = _safe_looks_like(time_datasets[0])
        if why:
            reason = f"looks like diffusion ({why}) but no volume carries a b-value"
    return table, reason


def _safe_looks_like(ds: Any) -> str | None:
    try:
        return looks_like_diffusion(ds)
    except (AttributeError, TypeError):
        return None


# --------------------------------------------------------------------------- FSL files
def fsl_bvecs(gradients_lps: Sequence[Sequence[float]], affine: np.ndarray) -> np.ndarray:
    """Gradient directions (LPS+ world) as FSL ``bvecs`` for an image with ``affine`` (voxel -> RAS+).

    FSL expects directions in voxel axes of the image as if it were stored
    radiologically: ``bvec = R^-1 g_ras`` with ``R`` the affine's unit axes,
    then the ``i`` component negated when ``det(affine) > 0`` (the convention
    FSL, dcm2niix and MRtrix share). Returns a ``(3, n)`` array.
    """
    g = np.asarray(gradients_lps, dtype=np.float64).reshape(-1, 3)
    g_ras = lps_to_ras_point(g)  # a direction flips like a point
    _, _, axes = geometry_from_affine(affine)  # the affine's unit axes
    vox = np.linalg.solve(axes, g_ras.T)  # (3, n)
    if np.linalg.det(np.asarray(affine)[:3, :3]) > 0:
        vox[0] *= -1.0
    norms = np.linalg.norm(vox, axis=0)
    nonzero = norms > 1e-9
    vox[:, nonzero] /= norms[nonzero]
    vox[np.abs(vox) < 5e-7] = 0.0  # no "-0.000000"
    return vox


def write_bval_bvec(stem: Path, bvals: Sequence[float], bvecs: np.ndarray, *,
                    overwrite: bool = False) -> list[Path]:
    """Write ``<stem>.bval`` (one line) and ``<stem>.bvec`` (three lines), FSL format, atomically."""
    from convert.atomic import atomic_paths

    stem = Path(stem)
    targets = [stem.with_name(stem.name + ".bval"), stem.with_name(stem.name + ".bvec")]
    bvec_array = np.asarray(bvecs, dtype=np.float64).reshape(3, -1)
    with atomic_paths(targets, overwrite=overwrite) as temps:
        temps[0].write_text(" ".join(f"{b:g}" for b in bvals) + "\n", encoding="ascii")
        temps[1].write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvec_array) + "\n",
                            encoding="ascii")
    return targets


def gradient_paths(stem: Path) -> list[Path]:
    """The ``.bval`` and ``.bvec`` paths written beside ``stem`` (a path without extension)."""
    stem = Path(stem)
    return [stem.with_name(stem.name + ".bval"), stem.with_name(stem.name + ".bvec")]
