"""The scrubber: recursion, file meta, wildcards, private tags, pixels, geometry, IOD types, codes."""

from __future__ import annotations

import copy
import glob
import io
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from convert.anonymize import OPTIONS, anonymize_dataset
from convert.anonymize.profile import CID_7050
from convert.anonymize.run import fast_bytes, save_dataset
from convert.anonymize.scrubber import SAFE_PRIVATE, Scrubber, burned_in_reason
from convert.errors import AnonymizationError
from tests.conftest import conformance_dir

KEY = b"scrubber-test-key"
MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
            "SpacingBetweenSlices", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
            "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "RescaleSlope",
            "RescaleIntercept", "WindowCenter", "WindowWidth", "EchoTime", "RepetitionTime", "FlipAngle",
            "MagneticFieldStrength", "Modality", "SOPClassUID", "ImageType")


def mr_image(sop_class: str = MR) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.100"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5.6.100"
    ds.StudyInstanceUID = "1.2.3.4.5.6.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.2"
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.3"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "MRN0042"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "M"
    ds.PatientAge = "064Y"
    ds.StudyDate = "20240425"
    ds.StudyTime = "101011"
    ds.ContentDate = "20240425"
    ds.ContentTime = "101500"
    ds.AccessionNumber = "ACC777"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.StationName = "MRSCAN01"
    ds.DeviceSerialNumber = "SN-12345"
    ds.SeriesDescription = "T1 MPRAGE Muller 20240425"
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ImagePositionPatient = [-120.5, 33.25, 80.0]
    ds.ImageOrientationPatient = [0.99, 0.1, 0.0, -0.1, 0.99, 0.05]
    ds.PixelSpacing = [0.9375, 0.9375]
    ds.SliceThickness = 1.2
    ds.SpacingBetweenSlices = 1.2
    ds.EchoTime = 2.83
    ds.RepetitionTime = 6.96
    ds.FlipAngle = 11
    ds.MagneticFieldStrength = 3
    ds.Rows, ds.Columns = 4, 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = bytes(range(32))
    return ds


def codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def test_input_is_untouched_and_output_is_a_new_dataset() -> None:
    ds = mr_image()
    before = copy.deepcopy(ds)
    out = anonymize_dataset(ds, key=KEY)
    assert ds == before and ds.file_meta == before.file_meta
    assert out is not ds and out.PatientName != ds.PatientName


def test_basic_profile_on_a_typical_image() -> None:
    out = anonymize_dataset(mr_image(), key=KEY)
    assert out.PatientID.startswith("ANON") and out.PatientName == out.PatientID
    assert out.PatientBirthDate in (None, "") and out.StudyDate in (None, "") and out.AccessionNumber in (None, "")
    for gone in ("InstitutionName", "StationName", "DeviceSerialNumber", "SeriesDescription", "PatientAge"):
        assert gone not in out
    assert out.PatientIdentityRemoved == "YES"
    assert "medconvert" in out.DeidentificationMethod
    assert all(len(v) <= 64 for v in out.DeidentificationMethod)
    assert codes(out) == ["113100"]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_geometry_and_pixel_description_unchanged() -> None:
    ds = mr_image()
    out = anonymize_dataset(ds, key=KEY)
    for keyword in GEOMETRY:
        assert out[keyword].value == ds[keyword].value, keyword
    assert out.PixelData == ds.PixelData


def test_file_meta_follows_the_new_sop_instance_uid() -> None:
    out = anonymize_dataset(mr_image(), key=KEY)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != "1.2.3.4.5.6.100"
    assert out.file_meta.MediaStorageSOPClassUID == MR
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert "SourceApplicationEntityTitle" not in out.file_meta


def test_file_meta_is_created_for_an_input_without_one() -> None:
    ds = mr_image()
    del ds.file_meta
    ds.set_original_encoding(True, True, "iso8859")
    out = anonymize_dataset(ds, key=KEY)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian


def test_recursion_three_levels_deep() -> None:
    ds = mr_image()
    level3 = Dataset()
    level3.PatientName = "Deep^Person"
    level3.ReferencedSOPInstanceUID = "1.2.3.4.5.6.100"
    level3.ReferencedSOPClassUID = MR
    level3.InstitutionName = "Deep Hospital"
    level3.SliceThickness = 2.5
    level2 = Dataset()
    level2.ReferencedInstanceSequence = Sequence([level3])
    level2.SeriesInstanceUID = "1.2.3.4.5.6.2"
    level2.StudyDate = "20240101"
    level1 = Dataset()
    level1.ReferencedSeriesSequence = Sequence([level2])
    level1.StudyInstanceUID = "1.2.3.4.5.6.1"
    ds.ReferencedStudySequence = Sequence([level1])  # X/Z in MR (type 3: removed) -> use an unlisted sequence:
    ds.StudiesContainingOtherReferencedInstancesSequence = Sequence([level1])
    out = anonymize_dataset(ds, key=KEY)
    assert "ReferencedStudySequence" not in out
    l1 = out.StudiesContainingOtherReferencedInstancesSequence[0]
    assert l1.StudyInstanceUID == out.StudyInstanceUID
    l2 = l1.ReferencedSeriesSequence[0]
    assert l2.SeriesInstanceUID == out.SeriesInstanceUID and "StudyDate" not in l2 or not l2.StudyDate
    l3 = l2.ReferencedInstanceSequence[0]
    assert l3.ReferencedSOPInstanceUID == out.SOPInstanceUID
    assert l3.ReferencedSOPClassUID == MR
    assert l3.PatientName != "Deep^Person" and "InstitutionName" not in l3
    assert l3.SliceThickness == 2.5


def test_curves_and_overlays_removed_even_under_clean_graphics() -> None:
    ds = mr_image()
    ds.add_new(0x50000010, "US", 4)               # curve dimensions
    ds.add_new(0x50003000, "OB", b"\x01\x02")     # curve data
    ds.add_new(0x50020022, "LO", "curve of Muller")
    ds.add_new(0x60000010, "US", 4)               # overlay rows
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60003000, "OW", b"\xff\x00")     # overlay data
    ds.add_new(0x60004000, "LT", "Overlay comment: Muller MRN0042")
    ds.add_new(0x60020022, "LO", "Patient Muller")  # overlay description, group 6002
    for keep in ((), ("clean-graphics",)):
        out = anonymize_dataset(ds, key=KEY, keep=keep)
        assert not [e for e in out if 0x5000 <= e.tag.group <= 0x60FF]


def test_graphic_annotations_cleaned_under_clean_graphics() -> None:
    ds = mr_image()
    text = Dataset()
    text.UnformattedTextValue = "Müller MRN0042 lesion 12 mm"
    text.BoundingBoxAnnotationUnits = "PIXEL"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    basic = anonymize_dataset(ds, key=KEY)  # D: the sequence stays (type 1), its free text goes
    assert "UnformattedTextValue" not in basic.GraphicAnnotationSequence[0].TextObjectSequence[0]
    out = anonymize_dataset(ds, key=KEY, keep=["clean-graphics"])
    item = out.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert item.BoundingBoxAnnotationUnits == "PIXEL"
    assert "Müller" not in str(item.get("UnformattedTextValue", "")) and "MRN0042" not in str(
        item.get("UnformattedTextValue", ""))
    assert "113103" in codes(out)


def test_code_meanings_are_cleaned_and_local_codes_replaced() -> None:
    ds = mr_image()
    standard, local = Dataset(), Dataset()
    standard.CodeValue, standard.CodingSchemeDesignator = "P5-0080", "SRT"
    standard.CodeMeaning = "Protocol for Jürgen Müller"
    local.CodeValue, local.CodingSchemeDesignator, local.CodeMeaning = "HD1", "99STELSEWHERE", "CT head urgent"
    ds.ProcedureCodeSequence = Sequence([standard, local])
    out = anonymize_dataset(ds, key=KEY)
    first, second = out.ProcedureCodeSequence
    assert first.CodeValue == "P5-0080" and first.CodingSchemeDesignator == "SRT"
    assert "Müller" not in first.CodeMeaning and "Jürgen" not in first.CodeMeaning
    assert second.CodingSchemeDesignator == "99ANON" and second.CodeMeaning == "ANONYMIZED"
    assert second.CodeValue != "HD1"


def test_cjk_names_are_blanked_in_cleaned_text() -> None:
    ds = mr_image()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.SeriesDescription = "MR head 山田太郎 Tarou Yamada"
    out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"])
    for word in ("山田", "太郎", "Yamada", "Tarou"):
        assert word not in out.SeriesDescription
    assert out.SeriesDescription.startswith("MR head")


def test_private_tags_removed_with_and_without_creators() -> None:
    ds = mr_image()
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", 1000)                      # B_value: on the safe list
    block.add_new(0x20, "LO", "patient Muller")          # not on the list
    ds.add_new(0x00291010, "OB", b"CSA header with Muller")  # no creator at all
    ds.add_new(0x00111010, "LO", "orphan Muller")
    out = anonymize_dataset(ds, key=KEY)
    assert not [e for e in out if e.tag.is_private]
    safe = anonymize_dataset(ds, key=KEY, keep=["safe-private"])
    private = {e.tag: e.value for e in safe if e.tag.is_private}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: 1000}
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in SAFE_PRIVATE
    assert "113111" in codes(safe)


def test_combined_codes_resolved_per_iod_type() -> None:
    classic = anonymize_dataset(mr_image(MR), key=KEY)
    enhanced = anonymize_dataset(mr_image(ENHANCED_MR), key=KEY)
    # Device Serial Number X/Z/D: type 3 in General Equipment, type 1 in Enhanced General Equipment
    assert "DeviceSerialNumber" not in classic
    assert enhanced.DeviceSerialNumber and enhanced.DeviceSerialNumber != "SN-12345"
    # Content Date/Time Z/D: type 2 in General Image -> empty; type 1 in functional groups -> dummy
    assert classic.ContentDate in (None, "") and classic.ContentTime in (None, "")
    assert enhanced.ContentDate == "19000101" and enhanced.ContentTime


@pytest.mark.parametrize("option", OPTIONS)
def test_deidentification_code_sequence_lists_each_option(option: str) -> None:
    out = anonymize_dataset(mr_image(), key=KEY, keep=[option])
    assert codes(out) == ["113100", CID_7050[option][0]]
    item = out.DeidentificationMethodCodeSequence[1]
    assert item.CodingSchemeDesignator == "DCM" and item.CodeMeaning == CID_7050[option][1]
    assert f"option {option}" in out.DeidentificationMethod


def test_option_effects_on_a_dataset() -> None:
    ds = mr_image()
    assert anonymize_dataset(ds, key=KEY, keep=["device"]).DeviceSerialNumber == "SN-12345"
    assert anonymize_dataset(ds, key=KEY, keep=["institution"]).InstitutionName == "St Elsewhere Hospital"
    assert anonymize_dataset(ds, key=KEY, keep=["patient-characteristics"]).PatientAge == "064Y"
    uids = anonymize_dataset(ds, key=KEY, keep=["uids"])
    assert uids.SOPInstanceUID == ds.SOPInstanceUID and uids.StudyInstanceUID == ds.StudyInstanceUID
    cleaned = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"]).SeriesDescription
    assert "T1 MPRAGE" in cleaned and "Muller" not in cleaned and "20240425" not in cleaned


def test_unlisted_text_removed_and_unlisted_uids_replaced() -> None:
    ds = mr_image()
    ds.ContrastBolusRoute = "IV"                     # unlisted, on the safe text list: kept
    ds.ReceiveCoilName = "HeadCoil"                  # unlisted, safe text: kept
    ds.OperatorsName = "Tech^Tom"                    # X/Z/D, type 3: removed
    ds.ReferringPhysicianName = "Dr^Who"             # Z
    ds.PerformingPhysicianName = "Dr^House"          # X
    ds.PerformedProcedureStepDescription = "PPS of Muller"  # X
    ds.FrameLaterality = "R"                         # unlisted CS: kept
    ds.add_new(0x00091001, "LO", "private")          # private without creator: removed
    ds.add_new(0x00080401 + 0x10, "LT", "??")       # not in the data dictionary: removed
    ds.MultiFrameSourceSOPInstanceUID = "1.2.3.4.5.6.100"  # unlisted instance UID: replaced (consistently)
    ds.StoredInstanceTransferSyntaxUID = "1.2.840.10008.1.2.1"  # unlisted, a well-known UID: kept
    out = anonymize_dataset(ds, key=KEY)
    assert out.ContrastBolusRoute == "IV" and out.ReceiveCoilName == "HeadCoil" and out.FrameLaterality == "R"
    assert "OperatorsName" not in out and "PerformingPhysicianName" not in out
    assert "PerformedProcedureStepDescription" not in out
    assert out.ReferringPhysicianName in ("", None)
    assert 0x00091001 not in out and 0x00080411 not in out
    assert out.MultiFrameSourceSOPInstanceUID == out.SOPInstanceUID
    assert out.StoredInstanceTransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_burned_in_annotation_refused_by_default_and_flagged_when_allowed() -> None:
    ds = mr_image()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(AnonymizationError, match="BurnedInAnnotation is YES"):
        anonymize_dataset(ds, key=KEY)
    out = anonymize_dataset(ds, key=KEY, allow_burned_in=True)
    assert out.BurnedInAnnotation == "YES"


@pytest.mark.parametrize("modality,sop,expected", [
    ("US", "1.2.840.10008.5.1.4.1.1.6.1", True),
    ("OT", "1.2.840.10008.5.1.4.1.1.7", True),
    ("MR", "1.2.840.10008.5.1.4.1.1.7.4", True),     # multi-frame true colour SC
    ("ES", "1.2.840.10008.5.1.4.1.1.77.1.1.1", True),  # video endoscopic
    ("MR", MR, False),
    ("CT", "1.2.840.10008.5.1.4.1.1.2", False),
])
def test_burned_in_rule_by_modality_and_sop_class(modality: str, sop: str, expected: bool) -> None:
    ds = Dataset()
    ds.Modality = modality
    ds.SOPClassUID = sop
    assert bool(burned_in_reason(ds)) is expected
    ds.BurnedInAnnotation = "NO"  # an explicit statement is trusted
    assert burned_in_reason(ds) == ""


def test_encapsulated_pdf_always_refused() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.BurnedInAnnotation = "NO"
    assert "encapsulated document" in burned_in_reason(ds)


def test_encapsulated_pixel_data_copied_bit_for_bit() -> None:
    from pydicom.data import get_testdata_file

    for name in ("JPEG2000.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        out = anonymize_dataset(ds, key=KEY, allow_burned_in=True)
        buf = io.BytesIO()
        save_dataset(out, buf)
        back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
        assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert back.PixelData == ds.PixelData, name


def _read_or_skip(path: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            ds.get("SOPClassUID")
            if len(ds) == 0:
                raise ValueError("empty dataset")
        except Exception as exc:
            pytest.skip(f"pydicom cannot read {Path(path).name}: {type(exc).__name__}")
    return ds


def _public_files() -> list[str]:
    from pydicom.data import get_charset_files, get_testdata_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = sorted(get_testdata_files()) + sorted(get_charset_files())
    try:
        import deid_data

        root = os.path.dirname(deid_data.__file__)
        files += sorted(f for f in glob.glob(root + "/**/*", recursive=True)
                        if os.path.isfile(f) and not f.endswith((".py", ".pyc")))
    except ImportError:  # pragma: no cover
        pass
    return [f for f in files if os.path.isfile(f) and not f.endswith((".json", ".txt", ".dump", ".gz", ".icc", ".py"))]


@pytest.mark.parametrize("path", _public_files(), ids=lambda p: Path(p).name)
def test_public_test_files_anonymize_and_round_trip(path: str) -> None:
    ds = _read_or_skip(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = anonymize_dataset(ds, key=KEY, allow_burned_in=True, keep=["clean-descriptors"])
        buf = io.BytesIO()
        save_dataset(out, buf)
        back = pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)
        for elem in back.iterall():  # every value decodes with the output's character set
            _ = elem.value
        fast = fast_bytes(out)  # our raw-copy writer, when it applies, must equal pydicom's bytes
        if fast is not None:
            reference = io.BytesIO()
            out.save_as(reference, enforce_file_format=True)
            assert fast == reference.getvalue()
    if "PixelData" in ds:
        assert back.PixelData == ds.PixelData
    if ds.get("SpecificCharacterSet"):
        assert back.SpecificCharacterSet == ds.SpecificCharacterSet
    assert back.PatientIdentityRemoved == "YES"
    if ds.get("PatientName"):
        assert str(back.PatientName) != str(ds.PatientName)


def test_multibyte_character_sets_stay_consistent() -> None:
    from pydicom.data import get_charset_files

    for name in ("chrH31.dcm", "chrX1.dcm", "chrSQEncoding.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm"):
        path = [f for f in get_charset_files() if f.endswith(name)][0]
        ds = pydicom.dcmread(path)
        out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"], allow_burned_in=True)
        buf = io.BytesIO()
        save_dataset(out, buf)
        back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
        assert back.SpecificCharacterSet == ds.SpecificCharacterSet
        for elem in back.iterall():
            _ = elem.value
        original_names = {str(e.value) for e in ds.iterall() if e.VR == "PN" and e.value}
        assert not original_names & {str(e.value) for e in back.iterall() if e.VR == "PN"}


def test_dcm_qa_deident_gets_our_deidentification_method_code_sequence() -> None:
    folder = conformance_dir("dcm_qa_deident")
    path = sorted((folder / "In").glob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    assert "113102" in codes(ds)  # the original's own (mri_reface) codes
    out = anonymize_dataset(ds, key=KEY, keep=["modified-dates", "safe-private"])
    assert codes(out) == ["113100", "113107", "113111"]
    assert all(item.CodingSchemeDesignator == "DCM" for item in out.DeidentificationMethodCodeSequence)
    assert out.PixelData == ds.PixelData
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
        assert out[keyword].value == ds[keyword].value
    assert out.StudyDate != ds.StudyDate and len(out.StudyDate) == 8


def test_counts_account_for_what_was_done() -> None:
    result = Scrubber(KEY).scrub(mr_image())
    counts = result.counts
    assert counts.removed >= 5 and counts.replaced >= 5 and counts.emptied >= 3 and counts.kept >= 20
    assert set(result.mapping) == {"PatientID", "StudyInstanceUID", "SeriesInstanceUID"}
    assert result.mapping["PatientID"][0] == "MRN0042"


def test_new_uids_do_not_collide_with_generate_uid_style_inputs() -> None:
    uids = {anonymize_dataset(_with_uid(generate_uid()), key=KEY).SOPInstanceUID for _ in range(50)}
    assert len(uids) == 50


def _with_uid(uid: str) -> Dataset:
    ds = mr_image()
    ds.SOPInstanceUID = uid
    return ds


def test_cleaned_descriptions_keep_only_technical_vocabulary() -> None:
    ds = mr_image()
    ds.SeriesDescription = "AX FLAIR post Gd 5mm reported by wife Marjorie"
    ds.StudyDescription = "t1_mprage_sag_p2_iso"
    out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"])
    assert out.SeriesDescription == "AX FLAIR post Gd 5mm * by * *"
    assert out.StudyDescription == "t1_mprage_sag_p2_iso"


def test_personal_free_text_removed_even_when_cleaning() -> None:
    ds = mr_image()
    ds.Occupation = "Philosopher"
    ds.AdditionalPatientHistory = "Raucher seit 1970, Bruder Günther verstorben"
    ds.PatientComments = "call daughter Keiko"
    out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors", "patient-characteristics"])
    for keyword in ("Occupation", "AdditionalPatientHistory", "PatientComments"):
        assert keyword not in out


@pytest.mark.parametrize("keyword,vr,bad,option", [
    ("StudyDate", "DA", "Doe John", "full-dates"),
    ("StudyTime", "TM", "Johnny", "modified-dates"),
    ("PatientAge", "AS", "Doe 47", "patient-characteristics"),
    ("PatientWeight", "DS", "Doe 91kg", "patient-characteristics"),
    ("SliceLocation", "DS", "Doe", None),
    ("Laterality", "CS", "Mr Doe", None),
])
def test_kept_values_must_match_their_vr_syntax(keyword: str, vr: str, bad: str, option: str | None) -> None:
    ds = mr_image()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydicom.dataelem import RawDataElement
        from pydicom.datadict import tag_for_keyword

        tag = tag_for_keyword(keyword)
        # as a file would carry it: raw bytes that pydicom never validated
        ds._dict[tag] = RawDataElement(Tag(tag), vr, len(bad), bad.encode(), 0, False, True)
        ds.set_original_encoding(False, True, "iso8859")
        out = anonymize_dataset(ds, key=KEY, keep=[option] if option else [])
    assert keyword not in out or out[keyword].value in (None, "")


def test_dicomdir_records_removed() -> None:
    ds = mr_image()
    ds.FileSetID = "DOE_JOHN_CD"
    record = Dataset()
    record.ReferencedFileID = ["DOE_JOHN", "IM0001"]
    record.DirectoryRecordType = "IMAGE"
    ds.DirectoryRecordSequence = Sequence([record])
    out = anonymize_dataset(ds, key=KEY)
    assert not [e for e in out if e.tag.group == 4]


def test_safe_private_list_keeps_numbers_only() -> None:
    ds = mr_image()
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x39, "IS", [0, 1000, 0, 0])      # b-value: kept
    block.add_new(0x2C, "SS", 388)                  # echo spacing (binary): kept
    block.add_new(0x83, "LO", "Doe John")          # on the list, but text: removed
    out = anonymize_dataset(ds, key=KEY, keep=["safe-private"])
    private = {int(e.tag): e.value for e in out if e.tag.is_private}
    assert private[0x00431039] == [0, 1000, 0, 0] and private[0x0043102C] == 388
    assert 0x00431083 not in private and private[0x00430010] == "GEMS_PARM_01"


def test_safe_private_on_real_siemens_and_ge_files() -> None:
    folder = conformance_dir("dcm_qa_nih") / "In"
    siemens = pydicom.dcmread(sorted((folder / "20180918Si").rglob("*.dcm"))[0])
    out = anonymize_dataset(siemens, key=KEY, keep=["safe-private"])
    kept = {e.name.strip("[]") for e in out if e.tag.is_private}
    assert "MosaicRefAcqTimes" in kept or "NumberOfImagesInMosaic" in kept or kept == {"Private Creator"}
    assert not any("CSA" in name for name in kept)
    ge = pydicom.dcmread(sorted((folder / "20180918GE").rglob("*.dcm"))[0])
    kept = {int(e.tag) for e in anonymize_dataset(ge, key=KEY, keep=["safe-private"]) if e.tag.is_private}
    assert 0x00431039 in kept and 0x00090010 not in kept  # b-value kept, GEMS_IDEN_01 block gone


def test_clean_actions_on_binary_and_coded_values() -> None:
    ds = mr_image()
    ds.ReasonForTheAttributeModification = "COERCE"
    out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"])
    assert out.ReasonForTheAttributeModification == "COERCE"
    ds.ReasonForTheAttributeModification = "000000"
    out = anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"])
    assert "ReasonForTheAttributeModification" not in out
    ds.MakerNote = b"Canon EOS, owner: John Doe"  # C under clean-descriptors, but binary: removed
    assert "MakerNote" not in anonymize_dataset(ds, key=KEY, keep=["clean-descriptors"])


def test_dataset_read_with_deferred_pixel_data() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    deferred = pydicom.dcmread(path, defer_size=1024)
    out = anonymize_dataset(deferred, key=KEY)
    buf = io.BytesIO()
    save_dataset(out, buf)
    assert pydicom.dcmread(io.BytesIO(buf.getvalue())).PixelData == pydicom.dcmread(path).PixelData


def test_reference_sequences_kept_with_uids_mapped_and_items_scrubbed() -> None:
    """Referenced/Source Image Sequence (X/Z/U*, type 3 in MR) are kept: references between objects
    stay consistent (same keyed pseudonyms as the referenced object), the rest of each item follows
    the normal allow-list rules."""
    first, second = mr_image(), mr_image()
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.101"
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        item = Dataset()
        item.ReferencedSOPClassUID = MR
        item.ReferencedSOPInstanceUID = first.SOPInstanceUID
        item.ReferencedFrameNumber = 1
        item.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        item.PatientName = "Müller^Jürgen"             # a name inside an item: removed as anywhere
        item.ReferringPhysicianName = "Dr^Nick"
        item.StudyComments = "for Jürgen Müller"
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = "121311", "DCM", "Localizer"
        item.PurposeOfReferenceCodeSequence = Sequence([purpose])
        setattr(second, keyword, Sequence([item]))
    a = anonymize_dataset(first, key=KEY)
    b = anonymize_dataset(second, key=KEY)
    for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
        assert keyword in b, f"{keyword} removed"
        out = b[keyword][0]
        assert out.ReferencedSOPInstanceUID == a.SOPInstanceUID != first.SOPInstanceUID
        assert out.ReferencedSOPClassUID == MR  # a standard SOP class: kept
        assert out.ReferencedFrameOfReferenceUID == a.FrameOfReferenceUID != first.FrameOfReferenceUID
        assert out.ReferencedFrameNumber == 1
        assert out.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Localizer"
        assert "StudyComments" not in out
        assert "Müller" not in str(out.get("PatientName", "") or "")  # emptied or a pseudonym, as anywhere
        assert not str(out.get("ReferringPhysicianName", "") or "")
    assert "Müller" not in str(b) and "Jürgen" not in str(b) and "Nick" not in str(b)
    originals = {"1.2.3.4.5.6.100", "1.2.3.4.5.6.101", "1.2.3.4.5.6.3"}
    assert not [e for e in b.iterall() if e.VR == "UI" and str(e.value) in originals]
    # keep=uids keeps them verbatim; the sequence is still there
    kept = anonymize_dataset(second, key=KEY, keep=["uids"])
    assert kept.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
