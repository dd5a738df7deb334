"""GE private headers (convert/dicom/ge.py): phase-encoding polarity and slice timing.

Real data: the four NIH GE EPI series against dcm2niix. Synthetic data: every
rejection rule (a missing or implausible input gives no SliceTiming / no sign).
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from convert.dicom.ge import (
    ge_phase_positive,
    ge_prescription_timing,
    ge_protocol_block,
    ge_software_release,
)
from convert.dicom.sidecar import SIDECAR_KEYS, build_sidecar, phase_encoding_direction
from convert.geometry import lps_to_ras
from convert.volume import Volume
from tests.conftest import conformance_dir

#: dcm2niix prints 6 significant digits (2.66667); ours keep 1 microsecond.
TIMING_TOLERANCE_S = 1e-4

GE_SERIES = [("mr_0004", 4), ("mr_0005", 5), ("mr_0006", 6), ("mr_0007", 7)]


def phase_vector(direction: str, affine: np.ndarray) -> np.ndarray:
    axis = "ijk".index(direction[0])
    vector = (-1.0 if direction.endswith("-") else 1.0) * np.asarray(affine)[:3, axis]
    return vector / np.linalg.norm(vector)


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def ge_converted(tmp_path_factory):
    from convert.batch import convert_dicom_tree

    nih = conformance_dir("dcm_qa_nih")
    out = tmp_path_factory.mktemp("ge")
    report = convert_dicom_tree(nih / "In" / "20180918GE", out)
    assert all(o.error is None for o in report.outcomes)
    return nih, out


@pytest.mark.conformance
@pytest.mark.parametrize("series, number", GE_SERIES)
def test_ge_epi_slice_timing_and_phase_direction_match_dcm2niix(ge_converted, series, number):
    import nibabel as nib

    nih, out = ge_converted
    (ours_json,) = out.glob(f"{number}_*.json")
    ours = json.loads(ours_json.read_text())
    ref_stem = nih / "ref-dcm2niix" / f"In_DCM2NIIX_regression_test_{number}"
    ref = json.loads(ref_stem.with_suffix(".json").read_text())
    ours_affine = nib.load(ours_json.with_suffix(".nii.gz")).affine
    ref_affine = nib.load(ref_stem.with_suffix(".nii.gz")).affine
    # SliceTiming follows k; compare slice by slice in the world (both volumes run I -> S here)
    ours_z = [(ours_affine @ [0, 0, k, 1])[2] for k in range(len(ours["SliceTiming"]))]
    ref_z = [(ref_affine @ [0, 0, k, 1])[2] for k in range(len(ref["SliceTiming"]))]
    ours_by_z = dict(zip(np.round(ours_z, 2), ours["SliceTiming"]))
    ref_by_z = dict(zip(np.round(ref_z, 2), ref["SliceTiming"]))
    assert ours_by_z.keys() == ref_by_z.keys()
    for z in ref_by_z:
        assert ours_by_z[z] == pytest.approx(ref_by_z[z], abs=TIMING_TOLERANCE_S)
    # phase encoding: the same world direction (dcm2niix flips rows, so letters differ)
    np.testing.assert_allclose(phase_vector(ours["PhaseEncodingDirection"], ours_affine),
                               phase_vector(ref["PhaseEncodingDirection"], ref_affine), atol=1e-6)
    assert "PhaseEncodingAxis" not in ours
    assert set(ours) <= SIDECAR_KEYS


@pytest.mark.conformance
def test_ge_slice_timing_uses_the_scans_positions_and_trigger_times(tmp_path, monkeypatch):
    """Slice timing of a GE EPI run needs no header per slice: the scan kept positions and TriggerTime."""
    import sys

    from convert.batch import convert_dicom_tree

    nih = conformance_dir("dcm_qa_nih")
    series_dir = nih / "In" / "20180918GE" / GE_SERIES[0][0]
    header_module = sys.modules["convert.dicom.header"]
    reads: list[str] = []
    real_read = header_module.read
    monkeypatch.setattr(header_module, "read", lambda path: reads.append(str(path)) or real_read(path))
    report = convert_dicom_tree(series_dir, tmp_path)
    assert report.ok
    (sidecar,) = (p for p in tmp_path.glob("*.json") if p.name != "report.json")
    assert len(json.loads(sidecar.read_text())["SliceTiming"]) > 1
    import nibabel as nib

    nk, volumes = nib.load(sidecar.with_suffix(".nii.gz")).shape[2:4]
    # one header per k (SliceLocation, when the protocol block times the slices) and one per volume (the
    # diffusion check), never one per slice of the run (it was 3 per k before)
    assert len(set(reads)) <= nk + volumes < nk * volumes, (len(set(reads)), nk, volumes)


@pytest.mark.conformance
def test_ge_phase_polarity_from_the_raw_header_block():
    nih = conformance_dir("dcm_qa_nih")
    for series, _ in GE_SERIES:
        ds = pydicom.dcmread(sorted((nih / "In" / "20180918GE" / series).glob("*.dcm"))[0],
                             stop_before_pixels=True)
        assert ge_phase_positive(ds) == 1  # "Unflipped", ky top-down
        assert phase_encoding_direction(ds) == ("j", "j")
        # the same header without the block: the axis only
        del ds[ds.private_block(0x0043, "GEMS_PARM_01").get_tag(0x2A)]
        assert phase_encoding_direction(ds) == (None, "j")


@pytest.mark.conformance
def test_ge_protocol_block_and_release_parse_real_headers():
    nih = conformance_dir("dcm_qa_nih")
    ds = pydicom.dcmread(sorted((nih / "In" / "20180918GE" / "mr_0004").glob("*.dcm"))[0], stop_before_pixels=True)
    block = ge_protocol_block(ds)
    assert block is not None and block["SLICEORDER"] == "1" and block["NOSLC"] == "15"
    assert ge_software_release(ds) == (26, 0, 1)


@pytest.mark.conformance
def test_philips_enhanced_derives_no_timing_or_polarity_like_dcm2niix():
    """dcm_qa_enh Philips: neither we nor dcm2niix find SliceTiming or a phase-encoding sign."""
    from convert.dicom.multiframe import read_enhanced

    enh = conformance_dir("dcm_qa_enh")
    for volume in read_enhanced(enh / "In" / "Philips" / "IM_0027_fMAP.dcm"):
        ours = build_sidecar([volume.source], volume)
        assert "SliceTiming" not in ours and "PhaseEncodingDirection" not in ours
    for ref in (enh / "ref-dcm2niix").glob("In_WIP_B0_NS_801*.json"):
        data = json.loads(ref.read_text())
        assert "SliceTiming" not in data and "PhaseEncodingDirection" not in data


# --------------------------------------------------------------------------- synthetic GE series
def _rdb_block(*, epi: bool = True, flipped: bool = False, kydir: int = 0, version: float = 26.002) -> bytes:
    offset = 64
    block = bytearray(offset + 0x4C + 0x400)
    struct.pack_into("<H", block, 24, offset)
    struct.pack_into("<f", block, offset, version)
    base, ky = (offset + 0x4C, 0x394 - 0x8C) if version >= 25.002 else (offset, 0x394)
    struct.pack_into("<H", block, base + 0x3A, 0x800 if epi else 0)
    struct.pack_into("<H", block, base + 0x30, 8 | (4 if flipped else 0))
    struct.pack_into("<H", block, base + ky, kydir)
    return bytes(block)


def _protocol(**keys: str) -> bytes:
    text = "".join(f'{k} "{v}"\n' for k, v in keys.items()).encode()
    packed = gzip.compress(text)
    return struct.pack("<I", len(packed)) + packed


DEFAULT_KEYS = {"IOPT": "EPI, FMRI", "SLICEORDER": "1", "NOSLC": "6", "SEDESC": "Doe^Jane fMRI"}


def ge_series(n: int = 6, volumes: int = 2, *, tr_ms: float = 3000.0, keys: dict | None = None,
              group_delay: float | None = 0.0, multiband: str | None = None, first_at_top: bool = False,
              triggers: list[float] | None = None, software: str = "27\\LX\\MR Software release:DV26.0_R01_1725.a",
              rdb: bytes | None = None) -> tuple[list[Dataset], Volume]:
    """A GE 2D EPI series (t-major headers) with its volume; slices 4 mm apart along +z."""
    keys = DEFAULT_KEYS | {"NOSLC": str(n)} | (keys or {})
    locations = [-10.0 + 4.0 * k for k in range(n)]
    first, last = (locations[-1], locations[0]) if first_at_top else (locations[0], locations[-1])
    datasets = []
    for t in range(volumes):
        for k in range(n):
            ds = Dataset()
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            ds.Modality = "MR"
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = tr_ms
            ds.SoftwareVersions = software.split("\\")
            ds.ScanningSequence = ["EP", "GR"]
            ds.InPlanePhaseEncodingDirection = "COL"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-100.0, -100.0, locations[k]]
            ds.SliceLocation = locations[k]
            if triggers is not None:
                ds.TriggerTime = triggers[k]
            acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            acq.add_new(0x19, "DS", str(first))
            acq.add_new(0x1B, "DS", str(last))
            ds.private_block(0x0025, "GEMS_SERS_01", create=True).add_new(0x1B, "OB", _protocol(**keys))
            parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            if group_delay is not None:
                parm.add_new(0x7C, "FL", group_delay)
            if multiband is not None:
                parm.add_new(0xB6, "LO", [multiband, "4", "19"])
            parm.add_new(0x2A, "OB", rdb if rdb is not None else _rdb_block())
            datasets.append(ds)
    affine = lps_to_ras(np.array([[2, 0, 0, -100.0], [0, 2, 0, -100.0], [0, 0, 4, -10.0], [0, 0, 0, 1]]))
    return datasets, Volume(np.zeros((4, 4, n, volumes), np.int16), affine)


def timing_of(datasets: list[Dataset], volume: Volume) -> list[float] | None:
    return build_sidecar(datasets, volume).get("SliceTiming")


def test_prescription_timing_patterns():
    assert ge_prescription_timing(4, 2.0, interleaved=False) == pytest.approx([0, 0.5, 1.0, 1.5])
    # interleaved: prescription slices 0, 2, 4 first, then 1, 3
    assert ge_prescription_timing(5, 5.0, interleaved=True) == pytest.approx([0, 3, 1, 4, 2])
    assert ge_prescription_timing(4, 4.0, interleaved=True) == pytest.approx([0, 2, 1, 3])
    # group delay: excitations fill TR - delay
    assert ge_prescription_timing(4, 2.4, interleaved=False, group_delay=0.4) == pytest.approx([0, 0.5, 1.0, 1.5])
    # multiband 2, 6 slices: 3 excitations, slices p and p + 3 together
    assert ge_prescription_timing(6, 3.0, interleaved=False, multiband=2) == pytest.approx([0, 1, 2, 0, 1, 2])
    # 8 slices MB 2 (4 excitations, even): R03+ swaps the last and third-from-last excitation ...
    assert ge_prescription_timing(8, 4.0, interleaved=True, multiband=2) == \
        pytest.approx([0, 3, 1, 2, 0, 3, 1, 2])
    # ... older releases add an empty fifth excitation instead
    assert ge_prescription_timing(8, 5.0, interleaved=True, multiband=2, r03_or_later=False) == \
        pytest.approx([0, 3, 1, 4, 2, 0, 3, 1])
    with pytest.raises(ValueError):
        ge_prescription_timing(4, 2.0, interleaved=False, group_delay=2.0)


def test_protocol_block_timing_follows_our_slice_order():
    datasets, volume = ge_series(6, tr_ms=3000.0)
    assert timing_of(datasets, volume) == pytest.approx([0, 1.5, 0.5, 2.0, 1.0, 2.5])
    # prescribed from the top: time 0 is the last k, whatever the header order
    datasets, volume = ge_series(6, tr_ms=3000.0, first_at_top=True)
    assert timing_of(list(reversed(datasets)), volume) == pytest.approx([2.5, 1.0, 2.0, 0.5, 1.5, 0])
    datasets, volume = ge_series(6, tr_ms=3000.0, keys={"SLICEORDER": "0", "IOPT": "EPI, MPH"})
    assert timing_of(datasets, volume) == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_multiband_timing_needs_the_software_release():
    datasets, volume = ge_series(6, tr_ms=3000.0, multiband="2", keys={"SLICEORDER": "0"},
                                 software="28\\LX\\MR29.1_EA_2039.g")
    assert timing_of(datasets, volume) == pytest.approx([0, 1, 2, 0, 1, 2])
    datasets, volume = ge_series(6, tr_ms=3000.0, multiband="2", software="unknown")
    assert timing_of(datasets, volume) is None


@pytest.mark.parametrize("change", [
    {"keys": {"SLICEORDER": ""}},             # order not recorded
    {"keys": {"SLICEORDER": "2"}},            # unknown order code
    {"keys": {"IOPT": "EPI, DIFF"}},          # diffusion EPI: another pattern
    {"keys": {"NOSLC": "12"}},                # interpolated slices: not the acquired ones
    {"group_delay": None},                     # continuity unknown
    {"group_delay": -1.0},                     # variable delays
    {"group_delay": 3.5},                      # delay longer than TR
    {"multiband": "x"},                        # unreadable multiband factor
    {"tr_ms": 0.0},                            # no repetition time
])
def test_no_slice_timing_when_a_protocol_input_is_missing_or_implausible(change):
    datasets, volume = ge_series(6, **change)
    assert timing_of(datasets, volume) is None


def test_no_slice_timing_without_protocol_block_or_scan_locations():
    datasets, volume = ge_series(6)
    for ds in datasets:
        del ds[ds.private_block(0x0025, "GEMS_SERS_01").get_tag(0x1B)]
    assert timing_of(datasets, volume) is None
    datasets, volume = ge_series(6)
    for ds in datasets:
        ds.private_block(0x0019, "GEMS_ACQU_01")[0x19].value = "3.0"  # not an end slice
    assert timing_of(datasets, volume) is None
    datasets, volume = ge_series(6)
    for ds in datasets:
        ds.Manufacturer = "SIEMENS"
    assert timing_of(datasets, volume) is None
    datasets, volume = ge_series(6)
    for ds in datasets:
        ds.MRAcquisitionType = "3D"
    assert timing_of(datasets, volume) is None


def test_trigger_times_win_and_are_checked():
    triggers = [0.0, 1000.0, 200.0, 1200.0, 400.0, 1400.0]
    datasets, volume = ge_series(6, tr_ms=3000.0, triggers=triggers, keys={"SLICEORDER": "0"})
    assert timing_of(datasets, volume) == pytest.approx([t / 1000 for t in triggers])
    # spread reaching TR, all equal, or one missing: fall back to the protocol block (sequential here)
    sequential = [0, 0.5, 1.0, 1.5, 2.0, 2.5]
    for bad in ([0.0, 3000.0, 0, 0, 0, 0], [50.0] * 6):
        datasets, volume = ge_series(6, tr_ms=3000.0, triggers=bad, keys={"SLICEORDER": "0"})
        assert timing_of(datasets, volume) == pytest.approx(sequential)
    datasets, volume = ge_series(6, tr_ms=3000.0, triggers=triggers, keys={"SLICEORDER": "0"})
    del datasets[3].TriggerTime
    assert timing_of(datasets, volume) == pytest.approx(sequential)
    # multiband: GE writes single-band trigger times; never used
    datasets, volume = ge_series(6, tr_ms=3000.0, triggers=triggers, multiband="2",
                                 keys={"SLICEORDER": "0"}, software="28\\LX\\MR29.1_EA_2039.g")
    assert timing_of(datasets, volume) == pytest.approx([0, 1, 2, 0, 1, 2])
    # not EPI: a trigger time is a cardiac delay, not a slice time
    datasets, volume = ge_series(6, tr_ms=3000.0, triggers=triggers, keys={"SLICEORDER": ""})
    assert timing_of(datasets, volume) == pytest.approx([t / 1000 for t in triggers])
    for ds in datasets:
        ds.ScanningSequence = "GR"
    assert timing_of(datasets, volume) is None
    # nothing else available: no timing at all
    datasets, volume = ge_series(6, tr_ms=3000.0, triggers=[50.0] * 6, keys={"SLICEORDER": ""})
    assert timing_of(datasets, volume) is None


def test_protocol_block_text_never_reaches_the_sidecar():
    datasets, volume = ge_series(6)
    text = json.dumps(build_sidecar(datasets, volume))
    assert "Doe" not in text and "SEDESC" not in text
    assert set(build_sidecar(datasets, volume)) <= SIDECAR_KEYS


# --------------------------------------------------------------------------- polarity (synthetic)
@pytest.mark.parametrize("flipped, kydir, expected", [(False, 0, 1), (True, 0, 0), (False, 2, 0), (True, 2, 1)])
def test_polarity_bits(flipped, kydir, expected):
    datasets, _ = ge_series(2, rdb=_rdb_block(flipped=flipped, kydir=kydir))
    assert ge_phase_positive(datasets[0]) == expected
    assert phase_encoding_direction(datasets[0])[0] == ("j" if expected else "j-")


def test_polarity_for_older_header_layout():
    datasets, _ = ge_series(2, rdb=_rdb_block(version=20.0, flipped=True))
    assert ge_phase_positive(datasets[0]) == 0


@pytest.mark.parametrize("rdb", [
    _rdb_block(epi=False),            # not EPI
    _rdb_block(kydir=1),              # unknown ky traversal code
    _rdb_block(version=99.0),         # implausible header version
    _rdb_block()[:200],               # truncated
    b"",
])
def test_no_polarity_from_an_unusable_block(rdb):
    datasets, _ = ge_series(2, rdb=rdb)
    assert ge_phase_positive(datasets[0]) is None
    assert phase_encoding_direction(datasets[0]) == (None, "j")


def test_no_polarity_for_other_vendors():
    datasets, _ = ge_series(2)
    datasets[0].Manufacturer = "Philips Medical Systems"
    assert ge_phase_positive(datasets[0]) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=st.binary(max_size=2000), protocol=st.binary(max_size=300))
def test_garbage_private_blocks_never_raise(block, protocol):
    ds = Dataset()
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2A, "OB", block)
    ds.private_block(0x0025, "GEMS_SERS_01", create=True).add_new(0x1B, "OB", protocol)
    assert ge_phase_positive(ds) in (None, 0, 1)
    parsed = ge_protocol_block(ds)
    assert parsed is None or isinstance(parsed, dict)
