"""BIDS-style sidecars: fields and units against dcm2niix, and proof that no PHI leaks."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from convert.dicom import csa as csa_module
from convert.dicom.multiframe import mosaic_affine_lps, read_enhanced, stack_volumes
from convert.dicom.sidecar import (
    PHI_KEYS,
    SIDECAR_FIELDS,
    SIDECAR_KEYS,
    build_sidecar,
    diffusion_table,
    fsl_bvecs,
    meta_from_dataset,
    phase_encoding_direction,
    sidecar_for_affine,
    write_bval_bvec,
    write_sidecar,
)
from convert.errors import OutputExistsError, OutputWriteError
from convert.geometry import lps_to_ras
from convert.volume import Volume
from tests.conftest import CONFORMANCE, SHARED, conformance_dir

#: Keywords whose values the sidecar may copy (the allow-list's sources).
ALLOWED_SOURCES = {kw for _, keywords, _ in SIDECAR_FIELDS for kw in keywords}
#: Descriptors PS3.15 lists (clean-descriptors option) that the contract keeps in the sidecar.
KEPT_DESCRIPTORS = {"SeriesDescription", "ProtocolName"}


def load_reference(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_common_fields_agree(ours: dict, ref: dict) -> list[str]:
    """Every field both have must agree (numbers within 0.1 %); returns the compared keys."""
    compared = []
    numeric = ["EchoTime", "RepetitionTime", "FlipAngle", "SliceThickness", "SpacingBetweenSlices",
               "MagneticFieldStrength", "ImagingFrequency", "PixelBandwidth", "InversionTime",
               "PercentPhaseFOV", "PercentSampling", "KVP", "XRayTubeCurrent", "ExposureTime",
               "BandwidthPerPixelPhaseEncode", "EffectiveEchoSpacing", "TotalReadoutTime", "ReconMatrixPE"]
    for key in numeric:
        if key in ours and key in ref:
            assert ours[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-6), key
            compared.append(key)
    for key in ["SeriesNumber", "AcquisitionNumber", "EchoNumber", "EchoTrainLength", "Modality",
                "ManufacturersModelName", "SeriesDescription", "ProtocolName", "MRAcquisitionType",
                "ScanningSequence", "SequenceVariant", "ScanOptions", "SequenceName", "BodyPart",
                "PatientPosition", "ConvolutionKernel", "InPlanePhaseEncodingDirectionDICOM", "SoftwareVersions"]:
        if key in ours and key in ref:
            assert ours[key] == ref[key], key
            compared.append(key)
    if "ImageOrientationPatientDICOM" in ours and "ImageOrientationPatientDICOM" in ref:
        np.testing.assert_allclose(ours["ImageOrientationPatientDICOM"], ref["ImageOrientationPatientDICOM"],
                                   atol=1e-5)
        compared.append("ImageOrientationPatientDICOM")
    if "ImageType" in ours and "ImageType" in ref:
        assert ref["ImageType"][: len(ours["ImageType"]) - 1] == ours["ImageType"][:-1] or \
            ours["ImageType"][:2] == ref["ImageType"][:2]
        compared.append("ImageType")
    if "SliceTiming" in ours and "SliceTiming" in ref:
        # Siemens quantises MosaicRefAcqTimes to 2.5 ms and volumes differ by one step
        assert ours["SliceTiming"] == pytest.approx(ref["SliceTiming"], abs=2.6e-3)
        compared.append("SliceTiming")
    return compared


def phase_vector(direction: str, affine: np.ndarray) -> np.ndarray:
    """World (RAS) unit vector of a BIDS phase-encoding direction on the given voxel axes."""
    axis = "ijk".index(direction[0])
    sign = -1.0 if direction.endswith("-") else 1.0
    vector = sign * np.asarray(affine)[:3, axis]
    return vector / np.linalg.norm(vector)


# --------------------------------------------------------------------------- against dcm2niix
MOSAIC_SERIES = [("mr_0003", "AP_3"), ("mr_0004", "PA_4"), ("mr_0005", "RL_5"), ("mr_0006", "LR_6")]


@pytest.mark.conformance
@pytest.mark.parametrize("series, name", MOSAIC_SERIES)
def test_siemens_mosaic_sidecar_matches_dcm2niix(series, name):
    import nibabel as nib

    nih = conformance_dir("dcm_qa_nih")
    files = sorted((nih / "In" / "20180918Si" / series).glob("*.dcm"))
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    affine = lps_to_ras(mosaic_affine_lps(datasets[0]))
    volume = Volume(np.zeros((72, 72, 5, 2), np.int16), affine, meta=meta_from_dataset(datasets[0]))
    ours = build_sidecar(datasets, volume)
    ref = load_reference(nih / "ref-dcm2niix" / f"In_EPI_PE={name}.json")
    compared = assert_common_fields_agree(ours, ref)
    assert {"EchoTime", "RepetitionTime", "FlipAngle", "SliceTiming", "SliceThickness",
            "EffectiveEchoSpacing", "TotalReadoutTime", "ReconMatrixPE"} <= set(compared)
    assert ours["EchoTime"] == pytest.approx(0.05)  # DICOM 50 ms -> BIDS seconds
    # Phase encoding: same direction in world space (dcm2niix flips rows, so compare vectors, not letters)
    ref_affine = nib.load(nih / "ref-dcm2niix" / f"In_EPI_PE={name}.nii.gz").affine
    np.testing.assert_allclose(phase_vector(ours["PhaseEncodingDirection"], affine),
                               phase_vector(ref["PhaseEncodingDirection"], ref_affine), atol=1e-6)
    assert ours["ConversionSoftware"] == "medconvert"


def test_phase_encoding_letters_on_our_axes():
    """ROW -> i, COL -> j; the sign from PhaseEncodingDirectionPositive (dcm2niix's j sign is flipped)."""
    nih = conformance_dir("dcm_qa_nih")
    expected = {"mr_0003": "j", "mr_0004": "j-", "mr_0005": "i", "mr_0006": "i-"}  # AP, PA, RL, LR
    for series, letters in expected.items():
        ds = pydicom.dcmread(next((nih / "In" / "20180918Si" / series).glob("*.dcm")), stop_before_pixels=True)
        assert phase_encoding_direction(ds) == (letters, letters[0])


@pytest.mark.conformance
def test_siemens_xa_enhanced_sidecar_matches_dcm2niix():
    import nibabel as nib

    enh = conformance_dir("dcm_qa_enh")
    files = sorted((enh / "In" / "Siemens" / "XA10").glob("*.dcm"))
    volume = stack_volumes([read_enhanced(f)[0] for f in files])
    ds = volume.source
    ours = build_sidecar([ds], volume)
    ref = load_reference(enh / "ref-dcm2niix" / "In_REST1_w_SMS_PF7-8_6.json")
    compared = assert_common_fields_agree(ours, ref)
    assert {"EchoTime", "RepetitionTime", "FlipAngle", "SliceTiming", "PixelBandwidth",
            "EffectiveEchoSpacing", "TotalReadoutTime"} <= set(compared)
    ref_affine = nib.load(enh / "ref-dcm2niix" / "In_REST1_w_SMS_PF7-8_6.nii.gz").affine
    np.testing.assert_allclose(phase_vector(ours["PhaseEncodingDirection"], volume.affine),
                               phase_vector(ref["PhaseEncodingDirection"], ref_affine), atol=1e-5)


@pytest.mark.conformance
def test_philips_enhanced_sidecars_per_volume_match_dcm2niix():
    enh = conformance_dir("dcm_qa_enh")
    magnitude, fieldmap = read_enhanced(enh / "In" / "Philips" / "IM_0027_fMAP.dcm")
    ours = build_sidecar([magnitude.source], magnitude)
    ref = load_reference(enh / "ref-dcm2niix" / "In_WIP_B0_NS_801_e1.json")
    compared = assert_common_fields_agree(ours, ref)
    assert {"EchoTime", "RepetitionTime", "FlipAngle", "PixelBandwidth", "SpacingBetweenSlices"} <= set(compared)
    # Philips stores no phase-encoding polarity: the axis only, no guessed sign
    assert "PhaseEncodingDirection" not in ours and ours["PhaseEncodingAxis"] == "i"
    field = build_sidecar([fieldmap.source], fieldmap)
    assert "EchoTime" not in field  # the field map frames' EffectiveEchoTime is 0: not applicable
    assert field["Units"] == "Hz" and "Units" not in ours
    assert "FIELD_MAP" in field["ImageType"]


@pytest.mark.conformance
@pytest.mark.parametrize("series, number", [("mr_0004", 4), ("mr_0005", 5), ("mr_0006", 6), ("mr_0007", 7)])
def test_ge_classic_sidecar_matches_dcm2niix(series, number):
    nih = conformance_dir("dcm_qa_nih")
    first = sorted((nih / "In" / "20180918GE" / series).glob("*.dcm"))[0]
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    ours = build_sidecar([ds])
    ref = load_reference(nih / "ref-dcm2niix" / f"In_DCM2NIIX_regression_test_{number}.json")
    compared = assert_common_fields_agree(ours, ref)
    assert {"EchoTime", "RepetitionTime", "FlipAngle", "SliceThickness", "MagneticFieldStrength",
            "EffectiveEchoSpacing", "TotalReadoutTime"} <= set(compared)
    # polarity from GE's raw header block (tests/test_ge.py compares the world direction with dcm2niix)
    assert ours["PhaseEncodingDirection"] == "j" and "PhaseEncodingAxis" not in ours


@pytest.mark.conformance
def test_ct_sidecar_and_meta_match_dcm2niix():
    ct = conformance_dir("dcm_qa_ct")
    ds = pydicom.dcmread(ct / "In" / "GE" / "01.dcm", stop_before_pixels=True)
    ours = build_sidecar([ds])
    ref = load_reference(ct / "ref-dcm2niix" / "In_2.json")
    compared = assert_common_fields_agree(ours, ref)
    assert {"ExposureTime", "XRayTubeCurrent", "ConvolutionKernel", "SliceThickness"} <= set(compared)
    meta = meta_from_dataset(ds)
    assert meta.units == "HU" and meta.modality == "CT"
    assert meta.window == ((35.0, 100.0),)
    assert meta.acquisition["GantryDetectorTilt"] == 18.5


def _classic_4d(times_by_k_t: list[list[str]], step: float = 3.0) -> tuple[list[Dataset], Volume]:
    datasets = []
    for k, per_t in enumerate(times_by_k_t):
        for t, time in enumerate(per_t):
            ds = Dataset()
            ds.Modality = "MR"
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = 2000
            ds.AcquisitionTime = time
            ds.ImagePositionPatient = [10.0, 20.0, 5.0 + step * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            datasets.append(ds)
    affine = lps_to_ras(np.array([[1, 0, 0, 10], [0, 1, 0, 20], [0, 0, step, 5.0], [0, 0, 0, 1]], float))
    volume = Volume(np.zeros((2, 2, len(times_by_k_t), len(times_by_k_t[0])), np.int16), affine)
    return datasets, volume


def test_slice_timing_from_per_slice_acquisition_times_any_header_order():
    # interleaved: k0 at 0 s, k1 at 1 s, k2 at 0.5 s, k3 at 1.5 s; second volume 2 s later
    times = [["120000.000", "120002.000"], ["120001.000", "120003.000"],
             ["120000.500", "120002.500"], ["120001.500", "120003.500"]]
    datasets, volume = _classic_4d(times)
    expected = [0, 1.0, 0.5, 1.5]
    assert build_sidecar(datasets, volume)["SliceTiming"] == pytest.approx(expected)  # k-major (series order)
    t_major = datasets[0::2] + datasets[1::2]
    assert build_sidecar(t_major, volume)["SliceTiming"] == pytest.approx(expected)
    assert build_sidecar(list(reversed(datasets)), volume)["SliceTiming"] == pytest.approx(expected)


def test_no_slice_timing_when_times_are_equal_or_not_mr():
    datasets, volume = _classic_4d([["120000"], ["120000"], ["120000"]])
    assert "SliceTiming" not in build_sidecar(datasets, volume)
    datasets, volume = _classic_4d([["120000"], ["120001"], ["120002"]])
    for ds in datasets:
        ds.Modality = "CT"  # helical CT slice "times" are not slice timing
    assert "SliceTiming" not in build_sidecar(datasets, volume)


def test_no_slice_timing_when_headers_do_not_sit_on_the_volume():
    datasets, volume = _classic_4d([["120000"], ["120001"], ["120002"]])
    datasets[1].ImagePositionPatient = [10.0, 20.0, 6.5]  # half-way between slices
    assert "SliceTiming" not in build_sidecar(datasets, volume)


# --------------------------------------------------------------------------- PHI
def _phi_profile() -> list[tuple[int, str, str]]:
    """(tag, keyword, VR) of every PS3.15 Annex E attribute with a fixed tag in the data dictionary."""
    path = SHARED / "standard" / "confidentiality_profile_attributes.json"
    if not path.exists():
        pytest.skip("DICOM standard tables not available (../shared/standard)")
    out = []
    for row in json.loads(path.read_text()):
        text = row["tag"].strip("()").replace(",", "")
        try:
            tag = int(text, 16)
        except ValueError:
            continue  # wildcard rows such as (50XX,XXXX)
        keyword = keyword_for_tag(tag)
        if not keyword or keyword in KEPT_DESCRIPTORS:
            continue
        out.append((tag, keyword, dictionary_VR(tag)))
    return out


_TEXT_VRS = {"LO", "SH", "PN", "LT", "ST", "UT", "UC", "CS", "AE", "UR"}


def _marker_value(n: int, vr: str) -> tuple[object, str] | None:
    """A value for VR that is unmistakable in JSON, and the substring to look for."""
    vr = vr.split(" or ")[0]
    if vr in _TEXT_VRS:
        marker = f"PHIMARK{n:04d}"
        return (f"PHIMARK{n:04d}^X" if vr == "PN" else marker), marker
    if vr == "DA":
        return f"1899{n % 12 + 1:02d}{n % 28 + 1:02d}", f"1899{n % 12 + 1:02d}{n % 28 + 1:02d}"
    if vr == "TM":
        return f"23{n % 60:02d}59.{n:06d}", f"59.{n:06d}"
    if vr == "DT":
        return f"1899010123{n % 60:02d}59.{n:06d}", f"59.{n:06d}"
    if vr == "UI":
        return f"1.2.826.0.1.99999.{n}", f"99999.{n}"
    if vr in {"DS", "IS"}:
        return f"97{n:04d}", f"97{n:04d}"
    if vr == "AS":
        return "077Y", "077Y"
    return None


def _plant_everything(ds: Dataset) -> list[str]:
    """Fill every Annex E attribute (top level and in a nested sequence) with a marker; return markers."""
    markers = []
    nested = Dataset()
    for n, (tag, keyword, vr) in enumerate(_phi_profile()):
        planted = _marker_value(n, vr)
        if planted is None:
            if vr == "SQ":
                item = Dataset()
                item.PatientName = f"PHISEQ{n:04d}^Y"
                setattr(ds, keyword, Sequence([item]))
                markers.append(f"PHISEQ{n:04d}")
            continue
        value, marker = planted
        ds.add_new(tag, vr.split(" or ")[0], value)
        nested.add_new(tag, vr.split(" or ")[0], value)
        markers.append(marker)
    # the same identifiers inside functional groups, where enhanced lookups search
    if "SharedFunctionalGroupsSequence" in ds:
        ds.SharedFunctionalGroupsSequence[0].FrameContentSequence = Sequence([nested])
    else:
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
        ds.SharedFunctionalGroupsSequence[0].FrameContentSequence = Sequence([nested])
    return markers


def _base_dataset() -> Dataset:
    """A realistic header: a Siemens mosaic (CSA header) when real data exists, else a synthetic MR."""
    candidates = list((CONFORMANCE / "dcm_qa_nih" / "In" / "20180918Si" / "mr_0003").glob("*.dcm"))
    if candidates:
        return pydicom.dcmread(candidates[0], stop_before_pixels=True)
    ds = Dataset()
    ds.Modality, ds.Manufacturer, ds.EchoTime, ds.RepetitionTime = "MR", "SIEMENS", 30, 2000
    ds.InPlanePhaseEncodingDirection = "COL"
    return ds


def test_sidecar_without_phi_contains_no_planted_identifier():
    ds = _base_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        markers = _plant_everything(ds)
    assert len(markers) > 250  # the whole profile, not a token sample
    sidecar = build_sidecar([ds, copy.deepcopy(ds)])
    text = json.dumps(sidecar)
    leaked = [m for m in markers if m in text]
    assert leaked == []
    assert set(sidecar) <= SIDECAR_KEYS
    meta_text = repr(meta_from_dataset(ds))
    assert [m for m in markers if m in meta_text] == []
    # the real acquisition fields are still there
    assert sidecar["EchoTime"] > 0 and sidecar["SeriesDescription"]


def test_sidecar_with_phi_includes_identifiers():
    ds = _base_dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-12345"
    ds.StudyDate = "20200102"
    ds.AcquisitionDateTime = "20200102101010.5"
    ds.InstitutionName = "General Hospital"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.DeviceSerialNumber = "SN-998"
    sidecar = build_sidecar([ds], include_phi=True)
    assert sidecar["PatientName"] == "Doe^Jane"
    assert sidecar["PatientID"] == "MRN-12345"
    assert sidecar["StudyDate"] == "20200102"
    assert sidecar["AcquisitionDateTime"] == "20200102101010.5"
    assert sidecar["InstitutionName"] == "General Hospital"
    assert sidecar["SeriesInstanceUID"] == "1.2.3.4.5"
    assert sidecar["DeviceSerialNumber"] == "SN-998"
    assert set(sidecar) <= SIDECAR_KEYS | PHI_KEYS
    without = build_sidecar([ds])
    assert not (set(without) & PHI_KEYS)
    assert "Doe" not in json.dumps(without) and "MRN-12345" not in json.dumps(without)


_STRING_TAGS = sorted(
    tag for tag, entry in DicomDictionary.items()
    if entry[0] in {"LO", "SH", "PN", "LT", "ST", "UT", "DA", "TM", "DT", "UI", "CS", "AE"}
    and entry[4] and entry[1] == "1" and entry[3] == ""  # single-valued, keyword, not retired
    and entry[4] not in ALLOWED_SOURCES
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # planted strings are invalid for UI/DA/TM VRs
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    planted=st.lists(
        st.tuples(st.sampled_from(_STRING_TAGS),
                  st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=10, max_size=16),
                  st.booleans()),
        min_size=1, max_size=25, unique_by=lambda p: p[0]),
    include_sequence=st.booleans(),
)
def test_random_identifiers_in_random_elements_never_reach_the_sidecar(planted, include_sequence):
    ds = Dataset()
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.EchoTime = 30
    ds.SeriesDescription = "t1"
    nested = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tag, text, in_nested in planted:
            target = nested if (in_nested and include_sequence) else ds
            target.add_new(tag, DicomDictionary[tag][0], text)
    if include_sequence:
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
        ds.SharedFunctionalGroupsSequence[0].FrameContentSequence = Sequence([nested])
        ds.PerFrameFunctionalGroupsSequence = Sequence([copy.deepcopy(ds.SharedFunctionalGroupsSequence[0])])
    sidecar = build_sidecar([ds])
    text = json.dumps(sidecar)
    assert set(sidecar) <= SIDECAR_KEYS
    for _, value, _ in planted:
        assert value not in text
    assert sidecar["EchoTime"] == pytest.approx(0.03)


# --------------------------------------------------------------------------- writing
def test_write_sidecar_sorted_indented_atomic(tmp_path):
    path = tmp_path / "sub-01_bold.json"
    written = write_sidecar(path, {"RepetitionTime": 2.0, "EchoTime": 0.03, "SliceTiming": [0.0, 1.0]})
    assert written == path
    text = path.read_text()
    assert json.loads(text) == {"EchoTime": 0.03, "RepetitionTime": 2.0, "SliceTiming": [0.0, 1.0]}
    assert text.index("EchoTime") < text.index("RepetitionTime")
    assert '\n  "EchoTime"' in text
    assert [p.name for p in tmp_path.iterdir()] == ["sub-01_bold.json"]  # no temporaries left
    with pytest.raises(OutputExistsError):
        write_sidecar(path, {"EchoTime": 1.0})
    write_sidecar(path, {"EchoTime": 1.0}, overwrite=True)
    assert json.loads(path.read_text()) == {"EchoTime": 1.0}
    with pytest.raises(OutputWriteError):
        write_sidecar(tmp_path / "missing" / "x.json", {})


def test_mosaic_slice_timing_takes_the_most_frequent_value_per_slice(monkeypatch):
    """Siemens volumes differ by one 2.5 ms step; the sidecar keeps a value the scanner wrote."""
    import convert.dicom.sidecar as sc

    times = iter([[0.0, 1000.0, 500.0], [0.0, 1002.5, 500.0], [0.0, 1002.5, 497.5]])
    monkeypatch.setattr(sc, "csa_image_header",
                        lambda ds: {"MosaicRefAcqTimes": next(times), "NumberOfImagesInMosaic": 3})
    datasets = [Dataset() for _ in range(3)]
    assert sc._mosaic_timing_of_series(datasets) == [0.0, 1.0025, 0.5]


# --------------------------------------------------------------------------- the shared PHI attack corpus
@pytest.fixture(scope="module")
def phi_corpus(tmp_path_factory):
    corpus = pytest.importorskip("fixtures.phi_corpus", reason="PHI attack corpus generator not available")
    return corpus.make_corpus(tmp_path_factory.mktemp("phi_corpus"))


def _found(tokens: set[str], text: str) -> set[str]:
    low = text.lower()
    return {t for t in tokens if t.lower() in low}


def test_phi_corpus_sidecars_leak_nothing_without_descriptions(phi_corpus):
    """Every file of the attack corpus (names in 4 charsets, nested/private/overlay PHI, enhanced MF...)."""
    tokens = phi_corpus.tokens()
    for f in phi_corpus.files:
        ds = pydicom.dcmread(phi_corpus.root / f.path, stop_before_pixels=True)
        sidecar = build_sidecar([ds], descriptions=False)
        assert _found(tokens, json.dumps(sidecar, ensure_ascii=False)) == set(), f.path
        assert "SeriesDescription" not in sidecar and "ProtocolName" not in sidecar


def test_phi_corpus_default_sidecar_leaks_only_through_kept_descriptors(phi_corpus):
    """By default SeriesDescription/ProtocolName are kept (BIDS); nothing else may carry a token."""
    tokens = phi_corpus.tokens()
    for f in phi_corpus.files:
        ds = pydicom.dcmread(phi_corpus.root / f.path, stop_before_pixels=True)
        sidecar = build_sidecar([ds])
        rest = {k: v for k, v in sidecar.items() if k not in {"SeriesDescription", "ProtocolName"}}
        assert _found(tokens, json.dumps(rest, ensure_ascii=False)) == set(), f.path


def test_phi_corpus_enhanced_file_volume_meta_is_clean(phi_corpus):
    tokens = phi_corpus.tokens()
    enhanced = [f for f in phi_corpus.files if f.multiframe]
    assert enhanced
    for f in enhanced:
        volumes = read_enhanced(phi_corpus.root / f.path)
        for volume in volumes:
            meta = volume.meta.replace(series_description=None, acquisition={
                k: v for k, v in volume.meta.acquisition.items() if k != "ProtocolName"})
            assert _found(tokens, repr(meta)) == set()
            assert "SliceTiming" not in volume.meta.acquisition  # CT frame times are not slice timing


@pytest.mark.conformance
def test_readout_timing_is_not_guessed():
    """GE with ASSET acceleration, or a mosaic without its unpacked volume: no echo spacing is written."""
    nih = conformance_dir("dcm_qa_nih")
    ge = pydicom.dcmread(sorted((nih / "In" / "20180918GE" / "mr_0004").glob("*.dcm"))[0], stop_before_pixels=True)
    ge.private_block(0x0043, "GEMS_PARM_01")[0x83].value = [2, 1]
    assert "EffectiveEchoSpacing" not in build_sidecar([ge])
    mosaic = pydicom.dcmread(next((nih / "In" / "20180918Si" / "mr_0003").glob("*.dcm")), stop_before_pixels=True)
    sidecar = build_sidecar([mosaic])  # no volume: the tile size along PE is unknown here
    assert "EffectiveEchoSpacing" not in sidecar and "TotalReadoutTime" not in sidecar


# --------------------------------------------------------------------------- reoriented outputs
def _slice_world(affine: np.ndarray, k: int, axis: int = 2) -> np.ndarray:
    index = np.zeros(3)
    index[axis] = k
    return (np.asarray(affine) @ np.append(index, 1.0))[:3]


@pytest.mark.parametrize("ornt_case", ["canonical", "permute", "flip_k"])
def test_sidecar_follows_a_reorientation(ornt_case):
    from nibabel.orientations import apply_orientation, inv_ornt_aff

    from tests.conftest import oblique_affine

    source = oblique_affine()
    shape = (6, 5, 4)
    ornt = {"canonical": np.array([[1, -1], [0, 1], [2, 1]]),
            "permute": np.array([[2, 1], [0, 1], [1, -1]]),
            "flip_k": np.array([[0, 1], [1, 1], [2, -1]])}[ornt_case]
    target = source @ inv_ornt_aff(ornt, shape)
    sidecar = {"PhaseEncodingDirection": "j-", "PhaseEncodingAxis": "j", "SliceTiming": [0.0, 0.5, 0.25, 0.75]}
    moved = sidecar_for_affine(sidecar, source, target)
    # same phase-encoding direction in the world
    np.testing.assert_allclose(phase_vector(moved["PhaseEncodingDirection"], target),
                               phase_vector("j-", source), atol=1e-9)
    # each slice time still belongs to the same world slice
    new_shape = apply_orientation(np.zeros(shape), ornt).shape
    slice_dir = moved.get("SliceEncodingDirection", "k")
    axis = "ijk".index(slice_dir[0])
    times = moved["SliceTiming"]
    for k_old, t in enumerate(sidecar["SliceTiming"]):
        world = _slice_world(source, k_old)
        # find the target slice index along the slice axis that contains this world plane
        voxel = np.linalg.inv(target) @ np.append(world, 1.0)
        k_new = int(round(voxel[axis]))
        position = k_new if not slice_dir.endswith("-") else new_shape[axis] - 1 - k_new
        assert times[position] == t


def test_sidecar_fields_dropped_after_oblique_resampling():
    from tests.conftest import oblique_affine

    moved = sidecar_for_affine({"PhaseEncodingDirection": "j", "SliceTiming": [0, 1], "EchoTime": 0.03},
                               oblique_affine(), np.eye(4))
    assert moved == {"EchoTime": 0.03}


# --------------------------------------------------------------------------- diffusion tables
def _world_from_fsl(bvec: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of the FSL convention: bvec (voxel axes, radiological) -> RAS+ world direction."""
    b = np.array(bvec, dtype=float)
    if np.linalg.det(affine[:3, :3]) > 0:
        b[0] *= -1
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return axes @ b


def _make_dwi(tmp_path: Path, bvals: list[float], gradients: np.ndarray) -> Path:
    """An enhanced DWI whose every frame carries its b-value (the diffusion tests' generator)."""
    from tests.test_diffusion import _enhanced_dwi

    return _enhanced_dwi(tmp_path / "in", "Synthetic", bvals, gradients, b0_without_value=False)


def test_enhanced_dwi_bvecs_point_where_the_dicom_gradients_point(tmp_path):
    rng = np.random.default_rng(3)
    gradients = rng.normal(size=(5, 3))
    gradients /= np.linalg.norm(gradients, axis=1)[:, None]
    bvals = [0.0, 1000.0, 1000.0, 2000.0, 3000.0]
    (volume,) = read_enhanced(_make_dwi(tmp_path, bvals, gradients))
    table = diffusion_table(volume)
    assert table is not None
    got_b, got_g = table
    assert got_b == bvals
    bvecs = fsl_bvecs(got_g, volume.affine)
    assert bvecs.shape == (3, 5)
    np.testing.assert_array_equal(bvecs[:, 0], 0.0)
    for t in range(1, 5):
        np.testing.assert_allclose(_world_from_fsl(bvecs[:, t], volume.affine), gradients[t] * [-1, -1, 1],
                                   atol=1e-9)


def test_enhanced_dwi_bvecs_match_dcm2niix(tmp_path):
    import subprocess

    import nibabel as nib

    from tests.conftest import require_tool

    exe = require_tool("dcm2niix")
    rng = np.random.default_rng(5)
    gradients = rng.normal(size=(4, 3))
    gradients /= np.linalg.norm(gradients, axis=1)[:, None]
    bvals = [0.0, 1000.0, 1000.0, 2000.0]
    path = _make_dwi(tmp_path, bvals, gradients)
    (tmp_path / "out").mkdir()
    subprocess.run([exe, "-z", "y", "-f", "%s", "-o", str(tmp_path / "out"), str(path.parent)], check=True,
                   capture_output=True)
    ref_affine = nib.load(next((tmp_path / "out").glob("*.nii.gz"))).affine
    ref_bvecs = np.loadtxt(next((tmp_path / "out").glob("*.bvec")))
    ref_bvals = np.loadtxt(next((tmp_path / "out").glob("*.bval")))
    (volume,) = read_enhanced(path)
    got_b, got_g = diffusion_table(volume)
    ours = fsl_bvecs(got_g, volume.affine)
    np.testing.assert_allclose(got_b, ref_bvals)
    for t in range(4):  # same direction in the world, each relative to its own image grid
        np.testing.assert_allclose(_world_from_fsl(ours[:, t], volume.affine),
                                   _world_from_fsl(ref_bvecs[:, t], ref_affine), atol=1e-3)


def test_fsl_bvecs_do_not_depend_on_left_right_storage():
    """FSL convention: a gradient towards the patient's left is +i whether i runs R->L or L->R."""
    radiological = np.diag([-2.0, 2.0, 2.0, 1.0])  # i towards left (LAS): det < 0
    neurological = np.diag([2.0, 2.0, 2.0, 1.0])  # i towards right (RAS): det > 0
    left = [[1.0, 0.0, 0.0]]  # LPS +x = left
    np.testing.assert_allclose(fsl_bvecs(left, radiological)[:, 0], [1, 0, 0])
    np.testing.assert_allclose(fsl_bvecs(left, neurological)[:, 0], [1, 0, 0])
    anterior = [[0.0, -1.0, 0.0]]  # LPS -y = anterior
    np.testing.assert_allclose(fsl_bvecs(anterior, neurological)[:, 0], [0, 1, 0])


def test_diffusion_table_from_classic_headers_and_siemens_csa(monkeypatch):
    import convert.dicom.sidecar as sc

    headers = []
    for b, g in [(0, None), (1000, [0.0, 0.0, 2.0]), (1000, [0.6, 0.8, 0.0])]:
        ds = Dataset()
        ds.DiffusionBValue = b
        if g is not None:
            ds.DiffusionGradientOrientation = g
        headers.append(ds)
    volume = Volume(np.zeros((2, 2, 2, 3), np.int16), np.eye(4))
    assert diffusion_table(volume, headers) == ([0.0, 1000.0, 1000.0],
                                                [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]])
    # Siemens mosaics: b-value and gradient in the CSA header
    first, second = Dataset(), Dataset()
    csa = {id(first): {"B_value": 0}, id(second): {"B_value": 700, "DiffusionGradientDirection": [0.0, 1.0, 0.0]}}
    monkeypatch.setattr(csa_module, "image_header", lambda ds: csa.get(id(ds)))
    volume2 = Volume(np.zeros((2, 2, 2, 2), np.int16), np.eye(4))
    assert diffusion_table(volume2, [first, second]) == ([0.0, 700.0], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert diffusion_table(volume2, [Dataset()]) is None  # one header per time point is required


def test_not_a_dwi_series_has_no_table():
    volume = Volume(np.zeros((2, 2, 2, 2), np.int16), np.eye(4))
    ds = Dataset()
    ds.EchoTime = 30
    assert diffusion_table(volume, [ds, ds]) is None


def test_write_bval_bvec_fsl_format(tmp_path):
    bvecs = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    written = write_bval_bvec(tmp_path / "dwi", [0.0, 1000.0], bvecs)
    assert [p.name for p in written] == ["dwi.bval", "dwi.bvec"]
    assert (tmp_path / "dwi.bval").read_text() == "0 1000\n"
    np.testing.assert_allclose(np.loadtxt(tmp_path / "dwi.bvec"), bvecs)
    with pytest.raises(OutputExistsError):
        write_bval_bvec(tmp_path / "dwi", [0.0, 1000.0], bvecs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dwi.bval", "dwi.bvec"]


_GARBAGE = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "NaN", "inf", "-inf", "1e400", "12\\34", "abc", "0", "-0", "3.5.6", "\x00"]),
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=80, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(ALLOWED_SOURCES)), _GARBAGE, min_size=1, max_size=12),
       phase=st.sampled_from(["ROW", "COL", "COLUMN", "", "junk"]))
def test_garbage_in_allow_listed_elements_never_breaks_the_sidecar(values, phase):
    """Real headers hold junk ("NaN", empty, multi-valued where single is expected): no crash, strict JSON."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    ds = Dataset()
    ds.Modality = "MR"
    for keyword, text in values.items():
        tag = tag_for_keyword(keyword)
        vr = dictionary_VR(tag)
        if vr in {"SQ", "US", "SS", "UL", "SL", "FL", "FD", "OB", "OW", "UN", "AT"}:
            continue
        try:
            ds.add_new(tag, vr, text)
        except Exception:
            continue  # pydicom itself refuses the value
    ds.InPlanePhaseEncodingDirection = phase
    volume = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    sidecar = build_sidecar([ds, ds], volume)
    json.dumps(sidecar, allow_nan=False)  # strict JSON: no NaN/inf
    assert set(sidecar) <= SIDECAR_KEYS
    meta = meta_from_dataset(ds)
    json.dumps(dict(meta.acquisition), allow_nan=False)


def test_slice_timing_of_a_long_4d_run_comes_from_the_scan_not_from_every_header(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The sidecar's per-slice timing uses what the scan kept (position, AcquisitionTime, TriggerTime):
    a 4D run's headers are not re-read file by file (that was most of a real archive's sidecar time)."""
    import sys

    from convert.batch import convert_dicom_tree
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    nk, nt = 4, 6
    order = [0, 2, 1, 3]  # interleaved acquisition

    def timed(ds, k: int, t: int) -> None:
        seconds = 2.0 * t + 0.5 * order.index(k)
        ds.AcquisitionTime = f"1200{int(seconds):02d}.{int(round((seconds % 1) * 1e6)):06d}"
        ds.RepetitionTime = 2000
        ds.MRAcquisitionType = "2D"

    write_series(tmp_path / "in", small_spec(slices=nk, times=nt, modality="MR", rows=8, columns=8), mutate=timed)
    header_module = sys.modules["convert.dicom.header"]
    reads: list[Path] = []
    real_read = header_module.read

    def counting(path, **kwargs):
        reads.append(Path(path))
        return real_read(path, **kwargs)

    monkeypatch.setattr(header_module, "read", counting)
    report = convert_dicom_tree(tmp_path / "in", tmp_path / "out")
    assert report.ok
    (sidecar_path,) = (p for p in (tmp_path / "out").glob("*.json") if p.name != "report.json")
    timing = json.loads(sidecar_path.read_text())["SliceTiming"]
    assert timing == pytest.approx([0.5 * order.index(k) for k in range(nk)])
    # At most one header per volume (the diffusion check looks at each volume's first file), never one per slice.
    assert len(set(reads)) <= nt, f"{len(set(reads))} of {nk * nt} headers re-read"


# --------------------------------------------------------------------------- find_value's search order
def _reference_search(item: Dataset, keyword: str, depth: int) -> object:
    """find_value's rule written out recursively: this item, then its standard sequences' first items."""
    if keyword in item and item[keyword].value not in (None, ""):
        return item[keyword].value
    if depth <= 0:
        return None
    for element in item:
        if element.VR == "SQ" and not element.tag.is_private and element.value:
            found = _reference_search(element.value[0], keyword, depth - 1)
            if found is not None:
                return found
    return None


_SEARCHED = ("EchoTime", "RepetitionTime", "FlipAngle", "SliceThickness")
_NESTS = ("MRTimingAndRelatedParametersSequence", "PixelMeasuresSequence", "MREchoSequence", "FrameContentSequence")


@st.composite
def _functional_item(draw: st.DrawFn, depth: int) -> Dataset:
    item = Dataset()
    for keyword in draw(st.lists(st.sampled_from(_SEARCHED), max_size=3, unique=True)):
        setattr(item, keyword, draw(st.sampled_from(["", "1.5", "30", "0"])))
    if depth > 0:
        for nest in draw(st.lists(st.sampled_from(_NESTS), max_size=2, unique=True)):
            setattr(item, nest, Sequence([draw(_functional_item(depth - 1))]))
        if draw(st.booleans()):  # a private sequence holding the keyword: never searched
            block = item.private_block(0x0021, "SIEMENS MR SDI 02", create=True)
            inner = Dataset()
            inner.EchoTime = "99"
            block.add_new(0x10, "SQ", Sequence([inner]))
    return item


@given(top=_functional_item(0), frames=st.lists(_functional_item(3), max_size=3),
       shared=st.one_of(st.none(), _functional_item(3)), frame=st.one_of(st.none(), st.integers(-1, 3)))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_find_value_looks_where_its_rule_says(top: Dataset, frames: list, shared: Dataset | None,
                                             frame: int | None) -> None:
    from convert.dicom.sidecar import find_value

    ds = top
    if frames:
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    if shared is not None:
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
    for keyword in _SEARCHED:
        expected = ds[keyword].value if keyword in ds and ds[keyword].value not in (None, "") else None
        if expected is None and frames:
            index = frame if frame is not None and 0 <= frame < len(frames) else 0
            expected = _reference_search(frames[index], keyword, 2)
        if expected is None and shared is not None:
            expected = _reference_search(shared, keyword, 2)
        assert find_value(ds, keyword, frame) == expected, keyword
        assert find_value(ds, keyword, frame) != 99  # private sequences are not searched


def test_find_value_in_threads_answers_each_header_for_itself() -> None:
    """Threads building sidecars at once (a Dask worker's) never get another header's answer."""
    import threading

    from convert.dicom.sidecar import find_value

    def header(echo: str) -> Dataset:
        ds = Dataset()
        frame = Dataset()
        frame.MREchoSequence = Sequence([Dataset()])
        frame.MREchoSequence[0].EffectiveEchoTime = echo
        ds.PerFrameFunctionalGroupsSequence = Sequence([frame])
        return ds

    headers = [header(str(10 + n)) for n in range(4)]
    wrong: list[tuple[int, object]] = []

    def ask(n: int) -> None:
        for _ in range(300):
            for m in (n, (n + 1) % 4):
                value = find_value(headers[m], "EffectiveEchoTime")
                if str(value) != str(10 + m):
                    wrong.append((m, value))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
