"""GE MR private headers: phase-encoding polarity and 2D EPI slice timing.

GE writes neither a signed phase-encoding direction nor per-slice acquisition
times in standard attributes. What the headers do record, and what this module
derives from it (never filling a gap with an assumption):

* **Phase-encoding polarity** — the binary "User Defined Data" block
  (0043,xx2A, creator ``GEMS_PARM_01``) is GE's raw-data header: a little-endian
  structure whose offset is stored at byte 24, starting with its format
  version (float32, a release number between 5 and 40). From release 25.002 on,
  the fields move 0x4C bytes further and the ky-direction field 0x8C bytes
  nearer. Three fields are used: the EPI flag (bit 0x800 of the word at
  +0x3A; without it nothing is derived), the acquisition-control word at
  +0x30 whose bit 0x4 means "phase encoding flipped", and the ky traversal
  word at +0x394 (0 = top-down, 2 = bottom-up; bottom-up reverses the
  polarity). The result is "positive" (phase encoding runs towards increasing
  row/column index, Siemens' ``PhaseEncodingDirectionPositive = 1``) or
  "negative". Any other value, a short block or a version outside the range:
  unknown.
* **Slice timing** (seconds from the start of the volume, per slice), tried in order:

  1. **Trigger Time** (0018,1060) per slice, as the GE "epi" multiphase sequence
     writes it: used for EPI (ScanningSequence contains ``EP``; elsewhere it is
     a cardiac trigger delay) when every slice of the first volumes has one, the values
     vary, and their spread is below the repetition time; rejected for
     multiband (HyperBand) acquisitions, where the scanner writes single-band
     times.
  2. **Protocol Data Block** (0025,xx1B, creator ``GEMS_SERS_01``; a 4-byte
     length and a gzip stream of ``KEY "value"`` lines): ``SLICEORDER`` (0 =
     sequential, 1 = interleaved) of the GE gradient-echo EPI fMRI sequences
     (``IOPT`` contains ``FMRI`` (epiRT / BrainWave) or ``MPH`` (multiphase)).
     Those sequences play their excitations evenly over the repetition time
     minus the group delay (0043,xx7C, seconds; a negative value means
     variable delays: not derivable); with a multiband factor ``mb``
     (0043,xxB6, first value) ``ceil(n / mb)`` excitations each acquire the
     slices ``p, p + n_exc, ...`` of the prescription; before software 27.0 R03
     an even excitation count got one extra (empty) excitation, from R03 on
     an interleaved even count swaps the last and third-from-last
     excitation. Interleaved means prescription slices 0, 2, 4, ... first,
     then 1, 3, 5, ... The prescription runs from GE's "first scan location"
     (0019,xx19) to "last scan location" (0019,xx1B), which are matched to the
     slices' SliceLocation to find which end of the volume was acquired first.
     Every input must be present and consistent (slice count, locations);
     otherwise no timing is given. Diffusion (spin-echo EPI) is not covered.

  The RTIA timer (0021,105E) is **not** used: its unit depends on the software
  release (seconds on DV24, 1/10000 s on 14.0), many releases write 0, and
  its first-volume values are known to be wrong; dcm2niix likewise only
  compares it in a debugging mode.

Derivations follow the GE notes collected by the dcm2niix project
(``GE/README.md``, the dcm_qa_ge ``slicetime`` description and issues #311,
#336, #635, #723), re-derived here and checked against dcm2niix's output for
the NIH GE test series.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from typing import Any, Sequence

import numpy as np

__all__ = [
    "is_ge",
    "ge_phase_positive",
    "ge_protocol_block",
    "ge_slice_timing",
    "ge_prescription_timing",
    "ge_software_release",
]

_PARM = "GEMS_PARM_01"
_ACQU = "GEMS_ACQU_01"
_SERS = "GEMS_SERS_01"


# --------------------------------------------------------------------------- small helpers
def is_ge(ds: Any) -> bool:
    """True when ``ds`` was written by a GE scanner (Manufacturer starts with "GE")."""
    text = str(ds.get("Manufacturer", "") or "").strip().upper()
    return text.startswith("GE")


def _private(ds: Any, group: int, creator: str, element: int) -> Any:
    """Value of private element (group, creator, element low byte) or None."""
    try:
        return ds.private_block(group, creator)[element].value
    except (KeyError, ValueError, AttributeError, TypeError):
        return None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        items = list(value)
        if not items:
            return None
        value = items[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- polarity
def _rdb_words(block: bytes) -> tuple[int, int, int] | None:
    """(EPI flag word, acquisition-control word, ky-direction word) of a GE raw header, or None."""
    if len(block) < 26:
        return None
    (offset,) = struct.unpack_from("<H", block, 24)
    if len(block) < offset + 4:
        return None
    (version,) = struct.unpack_from("<f", block, offset)
    if not (math.isfinite(version) and 5.0 <= version <= 40.0):
        return None
    base, ky = offset, 0x394
    if version >= 25.002:
        base, ky = base + 0x4C, ky - 0x8C
    if len(block) < base + max(ky, 0x3A) + 2:
        return None
    epi, control, kydir = (struct.unpack_from("<H", block, base + at)[0] for at in (0x3A, 0x30, ky))
    return epi, control, kydir


def ge_phase_positive(ds: Any) -> int | None:
    """GE phase-encoding polarity: 1 (towards increasing index), 0 (decreasing), or None.

    Read from the raw-data header in (0043,xx2A) (see the module docstring);
    None for non-GE data, non-EPI data, or any unexpected value.
    """
    if not is_ge(ds):
        return None
    block = _private(ds, 0x0043, _PARM, 0x2A)
    if not isinstance(block, (bytes, bytearray)):
        return None
    words = _rdb_words(bytes(block))
    if words is None:
        return None
    epi, control, kydir = words
    if not epi & 0x800:
        return None
    if kydir not in (0, 2):
        return None
    flipped = bool(control & 0x4) != (kydir == 2)
    return 0 if flipped else 1


# --------------------------------------------------------------------------- protocol block
_KEY_LINE = re.compile(r'^([A-Z0-9_]+)\s+"(.*)"\s*$')


def ge_protocol_block(ds: Any) -> dict[str, str] | None:
    """The GE Protocol Data Block (0025,xx1B) as ``{KEY: value}``, or None.

    The element holds a 4-byte little-endian length and a gzip stream of
    ``KEY "value"`` text lines. None when absent, not gzip, or not text lines
    (some releases store XML, which is not interpreted).
    """
    raw = _private(ds, 0x0025, _SERS, 0x1B)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 24:
        return None
    raw = bytes(raw)
    stream = raw[4:] if raw[4:6] == b"\x1f\x8b" else raw if raw[:2] == b"\x1f\x8b" else None
    if stream is None:
        return None
    try:
        text = gzip.decompress(stream)[: 1 << 20].decode("latin-1")
    except (OSError, EOFError, zlib.error):
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line.strip())
        if match:
            out.setdefault(match.group(1), match.group(2))
    return out or None


def ge_software_release(ds: Any) -> tuple[int, int, int] | None:
    """(major, minor, release) of a GE SoftwareVersions such as ``...MR Software release:DV26.0_R01_1725.a``.

    ``EA`` (early access) counts as release 0. None when the text has no such token.
    """
    value = ds.get("SoftwareVersions")
    text = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or (
        value is not None and not isinstance(value, str) and hasattr(value, "__iter__")) else str(value or "")
    match = re.search(r"[A-Z]{2}(\d+)\.(\d+)_(?:R(\d+)|(EA))", text.upper())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


# --------------------------------------------------------------------------- slice timing
def ge_prescription_timing(n_slices: int, tr: float, *, interleaved: bool, multiband: int = 1,
                           group_delay: float = 0.0, r03_or_later: bool = True) -> list[float]:
    """Acquisition time (s) of each prescription slice of a GE gradient-echo EPI volume.

    Args:
        n_slices: slices per volume, in prescription order (first scan location first).
        tr: repetition time (s).
        interleaved: slices 0, 2, 4, ... then 1, 3, 5, ... (else 0, 1, 2, ...).
        multiband: HyperBand factor (slices excited together).
        group_delay: pause (s) at the end of each TR; excitations fill ``tr - group_delay``.
        r03_or_later: software 27.0 R03 or later (multiband excitation order changed there).

    Returns:
        ``n_slices`` times in seconds, index = prescription slice.

    Raises:
        ValueError: on non-positive counts/TR, or a group delay outside [0, TR).
    """
    if n_slices < 1 or multiband < 1 or not tr > 0 or not 0 <= group_delay < tr:
        raise ValueError("invalid GE slice timing parameters")
    excitations = -(-n_slices // multiband)
    if multiband > 1 and not r03_or_later and excitations % 2 == 0:
        excitations += 1  # older releases add an empty excitation to keep the count odd
    step = (tr - group_delay) / excitations
    if interleaved:
        first_half = (excitations + 1) // 2  # excitations 0, 2, 4, ... come first
        slot = [e // 2 if e % 2 == 0 else first_half + e // 2 for e in range(excitations)]
        if multiband > 1 and r03_or_later and excitations > 2 and excitations % 2 == 0:
            slot[-1], slot[-3] = slot[-3], slot[-1]
    else:
        slot = list(range(excitations))
    return [slot[p % excitations] * step for p in range(n_slices)]


def _multiband_factor(ds: Any) -> int | None:
    """HyperBand factor from (0043,xxB6) (1 when absent or 0), None when unreadable."""
    value = _private(ds, 0x0043, _PARM, 0xB6)
    if value is None:
        return 1
    number = _number(value)
    if number is None or number != int(number) or number < 0:
        return None
    return max(1, int(number))


def _slice_index(position: Any, inverse: np.ndarray, nk: int) -> int | None:
    """k of an ImagePositionPatient (LPS mm) on the volume with ``inverse`` = inv(affine), or None when off-grid."""
    try:
        x, y, z = (float(v) for v in position)
    except (TypeError, ValueError):
        return None
    k_float = float((inverse @ np.array([-x, -y, z, 1.0]))[2])
    k = int(round(k_float))
    if abs(k_float - k) > 0.1 or not 0 <= k < nk:
        return None
    return k


def _indices_by_k(positions: Sequence[Any], affine: np.ndarray, nk: int, volumes: int) -> list[list[int]] | None:
    """Indices of the first ``volumes`` volumes' slices grouped by slice k (t-major input), or None if one is off-grid."""
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    grouped: list[list[int]] = [[] for _ in range(nk)]
    for index, position in enumerate(positions[: nk * volumes]):
        k = _slice_index(position, inverse, nk)
        if k is None:
            return None
        grouped[k].append(index)
    return grouped if all(grouped) else None


def _trigger_timing(by_k: list[list[int]], triggers: Sequence[Any], tr_s: float | None) -> list[float] | None:
    """Per-slice TriggerTime (s) — most frequent value per slice; None when implausible."""
    times: list[float] = []
    for indices in by_k:
        values = [_number(triggers[i]) for i in indices]
        if any(v is None for v in values):
            return None
        values_ms = [round(float(v), 3) for v in values]  # type: ignore[arg-type]
        times.append(max(values_ms, key=lambda v: (values_ms.count(v), -values_ms.index(v))) / 1000.0)
    start = min(times)
    rel = [round(t - start, 6) for t in times]
    if max(rel) <= 0 or tr_s is None or max(rel) >= tr_s:
        return None
    return rel


def _first_end(locations: Sequence[Any], first: float, last: float) -> int | None:
    """0 when the first-scanned location is at k = 0, nk-1 when at the far end, None if unclear.

    ``locations``: SliceLocation of one header per k."""
    numbers = [_number(v) for v in locations]
    if any(v is None for v in numbers):
        return None
    lo, hi = float(numbers[0]), float(numbers[-1])  # type: ignore[arg-type]
    spacing = abs(hi - lo) / max(len(numbers) - 1, 1)
    if spacing <= 0:
        return None
    tolerance = 0.25 * spacing
    if abs(first - lo) < tolerance and abs(last - hi) < tolerance:
        return 0
    if abs(first - hi) < tolerance and abs(last - lo) < tolerance:
        return len(numbers) - 1
    return None


def _protocol_timing(first_ds: Any, datasets: Sequence[Any], by_k: list[list[int]], tr_s: float) -> list[float] | None:
    """Slice times (s, per k) from the Protocol Data Block, or None when anything is missing."""
    block = ge_protocol_block(first_ds)
    if not block:
        return None
    options = block.get("IOPT", "").upper()
    if "FMRI" not in options and "MPH" not in options:
        return None  # only the gradient-echo EPI fMRI sequences follow this pattern
    order = block.get("SLICEORDER", "").strip()
    if order not in ("0", "1"):
        return None
    nk = len(by_k)
    declared = [_number(block.get("NOSLC")), _number(_private(first_ds, 0x0021, "GEMS_RELA_01", 0x4F))]
    if any(d is not None and int(d) != nk for d in declared):
        return None  # interpolated or partial volume: the slices are not the acquired ones
    delay = _number(_private(first_ds, 0x0043, _PARM, 0x7C))
    if delay is None or delay < 0 or delay >= tr_s:
        return None
    multiband = _multiband_factor(first_ds)
    if multiband is None:
        return None
    r03 = True
    if multiband > 1:
        release = ge_software_release(first_ds)
        if release is None or release[0] < 26:
            return None
        major, minor, rel = release
        r03 = (major, minor) > (27, 0) or (major == 27 and rel >= 3)
    first = _number(_private(first_ds, 0x0019, _ACQU, 0x19))
    last = _number(_private(first_ds, 0x0019, _ACQU, 0x1B))
    if first is None or last is None:
        return None
    start_k = _first_end([datasets[indices[0]].get("SliceLocation") for indices in by_k], first, last)
    if start_k is None:
        return None
    times = ge_prescription_timing(nk, tr_s, interleaved=order == "1", multiband=multiband,
                                   group_delay=delay, r03_or_later=r03)
    per_k = times if start_k == 0 else list(reversed(times))
    return [round(t, 6) for t in per_k]


def ge_slice_timing(datasets: Sequence[Any], affine: np.ndarray, nk: int, tr_s: float | None,
                    slice_times: Sequence[tuple[Any, Any, Any]] | None = None) -> list[float] | None:
    """SliceTiming (s, one per k of the volume) of a GE 2D MR series, or None when not derivable.

    Args:
        datasets: the series' headers, t-major (all slices of volume 0 first); read lazily:
            the first, and one per k only when the protocol block is used.
        affine: the volume's voxel -> RAS+ affine (places each slice at its k).
        nk: slices per volume.
        tr_s: RepetitionTime in seconds.
        slice_times: per header ``(ImagePositionPatient, AcquisitionTime, TriggerTime)``
            as the scan kept them (:data:`convert.dicom.sidecar.SliceTime`); None: read
            them from ``datasets``.

    See the module docstring for the sources and the rejection rules.
    """
    if nk < 2 or not datasets or not is_ge(datasets[0]) or tr_s is None or not tr_s > 0:
        return None
    first = datasets[0]
    if str(first.get("Modality", "")).upper() != "MR" or str(first.get("MRAcquisitionType", "")).upper() == "3D":
        return None
    volumes = max(1, min(3, len(datasets) // nk))
    if slice_times is None:
        slice_times = [(ds.get("ImagePositionPatient"), None, ds.get("TriggerTime"))
                       for ds in list(datasets[: nk * volumes])]
    by_k = _indices_by_k([position for position, _, _ in slice_times], affine, nk, volumes)
    if by_k is None:
        return None
    multiband = _multiband_factor(first)
    scanning = str(first.get("ScanningSequence", "") or "").upper()
    if multiband == 1 and "EP" in scanning:  # TriggerTime means slice time only for EPI (else cardiac delay)
        timing = _trigger_timing(by_k, [trigger for _, _, trigger in slice_times], tr_s)
        if timing is not None:
            return timing
    return _protocol_timing(first, datasets, by_k, tr_s)
