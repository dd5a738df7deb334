"""The per-element decision of the de-identification: a pure function of (context, element).

:func:`decide` says what becomes of one element of a data set (the top level or a sequence
item): removed (None), written as it is (the raw element: its bytes), replaced (a new element,
encoded by the writer) or, for a kept sequence, :class:`Recurse` (each item decided by the same
rules). Its inputs are the element, the data set holding it (for private elements, its private
creators), the per-object :class:`Context` (the compiled PS3.15 E.1-1 plan of
:mod:`convert.anonymize.profile` for the object's SOP class and options, the keyed
pseudonymizer, the patient's date offset, this object's identifying tokens) and whether
unlisted text is cleaned (``clean``); it adds what it did to ``ctx.counts`` and nothing else.
Equal inputs give equal outputs (pseudonyms are keyed hashes, never random), which is what
lets the byte serializer cache outcomes by (context, element bytes).
:func:`finish_level` adds the data-set-level rules (codes of local schemes, the creators of
kept private blocks) once every element of a data set was decided.

Both writers call these two functions and nothing else decides: the byte serializer
(:mod:`convert.anonymize.serialize`) over the element layer (:mod:`convert.dicom.elements`)
and :meth:`convert.anonymize.scrubber.Scrubber.scrub` over a pydicom Dataset.

Allow-list thinking: an element survives only when

* Table E.1-1 says keep (``K``) for it under the chosen options, or
* it is a standard attribute *not* in the table whose value cannot carry
  free text about a person: numbers (US, SS, UL, SL, FL, FD, DS, IS, AT),
  coded strings (CS), binary data (OB, OW, OF, OD, OL, OV: pixel data, LUTs),
  sequences (whose items are scrubbed by the same rules), or one of the
  curated safe text attributes in :data:`SAFE_TEXT_KEYWORDS` (manufacturer,
  coil, kernel, code meanings...).

Everything else goes: unlisted person names (PN), free text (LO, SH, LT, ST,
UT, UC, UR, AE, AS), unknown tags, private tags (unless the Retain Safe
Private option keeps one of :data:`SAFE_PRIVATE`), curves (50xx) and overlays
(60xx; kept only under Clean Graphics). Unlisted dates and times (DA, DT,
TM) are removed, kept (Full Dates) or shifted (Modified Dates). Unlisted
UIDs are kept when they are well-known DICOM UIDs (SOP classes, transfer
syntaxes) or class UIDs, and replaced by keyed pseudonyms otherwise, so no
original instance UID survives.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from pydicom.datadict import dictionary_keyword, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary

from convert.anonymize.profile import Plan
from convert.anonymize.pseudonym import Pseudonymizer, shift_da, shift_dt

#: Standard text attributes not in Table E.1-1 that describe the device or the
#: acquisition, never the patient: kept although their VR is free text.
SAFE_TEXT_KEYWORDS: frozenset[str] = frozenset({
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "BodyPartExamined", "SequenceName",
    "ReceiveCoilName", "TransmitCoilName", "ImagedNucleus", "ConvolutionKernel", "FilterType",
    "ContrastBolusRoute", "PulseSequenceName", "RescaleType", "WindowCenterWidthExplanation", "LUTExplanation",
    "ReconstructionMethod", "Radiopharmaceutical", "LossyImageCompressionMethod", "CodeValue",
    "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue", "URNCodeValue",
    "ContextIdentifier", "MappingResource", "MappingResourceName", "ContextGroupExtensionFlag",
    "CodingSchemeName", "CodingSchemeResponsibleOrganization", "DetectorType", "Units", "CollimatorType",
    "ExposureControlMode", "ExposureControlModeDescription", "FilterMaterial", "AnodeTargetMaterial",
    "CoilString", "DeidentificationMethod", "PixelSpacingCalibrationDescription", "CorrectedImage",
    "DecayCorrection", "CountsSource", "RandomsCorrectionMethod", "AttenuationCorrectionMethod",
    "ScatterCorrectionMethod", "DecayCorrected", "DimensionDescriptionLabel", "SegmentLabel",
    "SegmentAlgorithmName", "ContentLabel", "ImplementationVersionName", "EnergyWeightingFactor",
    "MRAcquisitionType", "ScanningSequence", "ScanOptions", "SequenceVariant", "ValueType", "RelationshipType",
    "MeasurementUnitsCodeSequence", "StudyComponentStatusID", "RTImageLabel", "ProtocolContextSequence",
    "PixelDataProviderURL", "ChannelLabel", "WaveformOriginality", "SpecificCharacterSet",
})

#: Text kept but always cleaned (identifying tokens of the object blanked): code meanings may be
#: typed by people even in standard coding schemes.
CLEANED_TEXT_KEYWORDS: frozenset[str] = frozenset({"CodeMeaning"})

#: Dates/times that version code sets, not events about the patient: always kept.
SAFE_TEMPORAL_KEYWORDS: frozenset[str] = frozenset({
    "ContextGroupVersion", "ContextGroupLocalVersion",
})

#: UID attributes that name classes (SOP classes, transfer syntaxes, coding
#: schemes), never instances: kept as they are, even when private.
CLASS_UID_KEYWORDS: frozenset[str] = frozenset({
    "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile",
    "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile", "AffectedSOPClassUID", "RequestedSOPClassUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "CodingSchemeUID", "ContextUID",
    "MappingResourceUID", "ImplementationClassUID", "SOPClassesInStudy",
    "PrivateInformationCreatorUID", "EncryptedContentTransferSyntaxUID",
})

#: Private elements the Retain Safe Private option keeps: (creator, group,
#: element low byte) -> meaning. Numbers about the acquisition only (diffusion
#: b-values and directions, scaling, mosaic layout, slice timing); never CSA
#: headers, which can hold free text.
SAFE_PRIVATE: dict[tuple[str, int, int], str] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0A): "NumberOfImagesInMosaic",
    ("SIEMENS MR HEADER", 0x0019, 0x0B): "SliceMeasurementDuration",
    ("SIEMENS MR HEADER", 0x0019, 0x0C): "B_value",
    ("SIEMENS MR HEADER", 0x0019, 0x0D): "DiffusionDirectionality",
    ("SIEMENS MR HEADER", 0x0019, 0x0E): "DiffusionGradientDirection",
    ("SIEMENS MR HEADER", 0x0019, 0x27): "B_matrix",
    ("SIEMENS MR HEADER", 0x0019, 0x28): "BandwidthPerPixelPhaseEncode",
    ("SIEMENS MR HEADER", 0x0019, 0x29): "MosaicRefAcqTimes",
    ("GEMS_ACQU_01", 0x0019, 0xBB): "diffusion direction x (user data 20)",
    ("GEMS_ACQU_01", 0x0019, 0xBC): "diffusion direction y (user data 21)",
    ("GEMS_ACQU_01", 0x0019, 0xBD): "diffusion direction z (user data 22)",
    ("GEMS_PARM_01", 0x0043, 0x39): "b-value (slop_int_6..9)",
    ("GEMS_PARM_01", 0x0043, 0x2C): "effective echo spacing",
    ("GEMS_PARM_01", 0x0043, 0x83): "ASSET R factors",
    ("Philips MR Imaging DD 001", 0x2005, 0x0D): "scale intercept",
    ("Philips MR Imaging DD 001", 0x2005, 0x0E): "scale slope",
    ("Philips MR Imaging DD 001", 0x2005, 0xB0): "diffusion direction RL",
    ("Philips MR Imaging DD 001", 0x2005, 0xB1): "diffusion direction AP",
    ("Philips MR Imaging DD 001", 0x2005, 0xB2): "diffusion direction FH",
    ("Philips Imaging DD 001", 0x2001, 0x03): "diffusion b-factor",
}

#: Coding schemes whose code meanings are standard vocabulary (PS3.16 Table 8-1 designators).
#: Items of any other scheme (local "99..." or "L..." codes, site names as designators) carry
#: site-written text: their CodeMeaning and designator are replaced and the code value pseudonymised.
STANDARD_CODING_SCHEMES: frozenset[str] = frozenset({
    "DCM", "SCT", "SRT", "SNM3", "LN", "UCUM", "RADLEX", "RADELEMENT", "NCIt", "NCIT", "FMA", "MSH", "UMLS",
    "I10", "I9C", "I10P", "I9", "ICD10", "ICD11", "ACR", "NEU", "MDC", "BARI", "C4", "C5", "RXNORM", "ITIS_TSN",
    "NCBI", "PUBCHEM_CID", "DCMUID", "HL7", "ISO3166_1", "ISO639_1", "ISO639_2", "ATC", "IBSI", "NDC", "NYUMCCG",
    "UMLS", "MAYONRDS", "PATH", "CAPSNOMED", "POS", "WHOATC", "ISBT128", "CD2", "CPT4",
})
_CODE_VALUE, _SCHEME, _MEANING, _LONG_CODE, _URN_CODE = 0x00080100, 0x00080102, 0x00080104, 0x00080119, 0x00080120

#: Groups whose free text describes the person (Patient, Visit): removed even where an option says clean.
_PERSONAL_GROUPS = frozenset({0x0010, 0x0038})
#: VRs whose values are plain ASCII (a dummy can be written as bytes in any character set).
_ASCII_VRS = frozenset({"DA", "TM", "DT", "AS", "DS", "IS", "CS", "AE"})
_TEXT_VRS = frozenset({"AE", "AS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
_DUMMY: dict[str, Any] = {
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS", "LO": "ANONYMIZED",
    "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED",
    "CS": "ANONYMIZED", "AE": "ANONYMOUS", "AS": "000Y", "DS": "0", "IS": "0", "US": 0, "SS": 0, "UL": 0,
    "SL": 0, "FL": 0.0, "FD": 0.0, "UV": 0, "SV": 0, "OB": b"\0\0", "OW": b"\0\0", "UN": b"\0\0", "UR": "",
}
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_SOP_INSTANCE_UID = 0x00080018
_SPECIFIC_CHARSET = 0x00080005
_BURNED_IN = 0x00280301
_DATE_LIKE = re.compile(r"\b(?:\d{8}|\d{1,4}[./-]\d{1,2}[./-]\d{1,4})\b")
_LONG_NUMBER = re.compile(r"(?<![A-Za-z])\d{4,}")  # IDs, phone numbers, years; not b1000
_WORD_RE = re.compile(r"[^\W_]+")
#: Defined terms a CS with action C may keep (anything else is removed).
_CLEAN_CS_TERMS: dict[int, frozenset[str]] = {
    0x04000565: frozenset({"COERCE", "CORRECT"}),  # Reason for the Attribute Modification
}
_CONNECTING_WORDS = frozenset("a an and as at by for from in of on or the to with without w wo o no non not "
                              "only plus per via vs".split())
_TECHNICAL_TOKEN = re.compile(r"^(\d{1,3}(mm|cm|ml|ms|s|t|kv|kvp|kev|mas|deg|d|x)?|[tb]\d{1,4}[wa-z]?|p\d|[234]d|mp2rage|t2star)$")

#: Words a cleaned description may keep (lower case): imaging technique, anatomy, contrast, views and
#: connecting words. Any other word of 2+ letters without a digit (a name, a place, a relative) becomes
#: "*". Words with digits (T1, 3D, b1000, p2, 5mm) and single letters are kept; long digit runs
#: and dates were blanked before.
CLEAN_VOCABULARY: frozenset[str] = frozenset("""
a an and as at by for from in of on or the to with without w wo o no non not only plus per via vs
mr mri ct pet spect nm us xr cr dx mg rf xa ot sr pt cta ctp mra mrv mrs angio angiography
t1 t2 pd flair mprage spgr fspgr bravo space cube tse fse gre se ir epi dwi dti adc trace swi swan qsm
tof pc fiesta ssfp truefisp fisp haste vibe lava dixon fat sat fs water opp phase out ideal
ax axial sag sagittal cor coronal obl oblique tra transverse iso mpr mip minip vr recon reformat reformats
thin thick slice slices mm cm ml mg kg sec ms s kev kvp mas
head brain neck spine cervical thoracic lumbar sacral chest thorax lung lungs abdomen abd pelvis liver
kidney kidneys renal cardiac heart knee shoulder hip ankle wrist hand foot elbow breast prostate orbit
orbits sinus sinuses iac pituitary face facial whole body wb extremity upper lower left right lt rt
bilateral bil neuro skull temporal frontal occipital parietal cerebellum stem hippocampus ventricles
pancreas spleen bowel colon rectum bladder uterus ovary ovaries adrenal aorta carotid carotids circle
willis coronary coronaries pulmonary vessel vessels vascular arterial artery arteries venous vein veins
portal bone bones joint joints soft tissue muscle tendon cartilage femur tibia humerus pelvic
contrast post pre gd gad gado gadolinium iv oral rectal native nativ km enhanced unenhanced delayed
early late dynamic perfusion perf dce dsc asl bold fmri rest resting state task
localizer localiser loc scout survey topogram calibration cal ref reference field map maps fieldmap b0
b1 shim test bolus tracking helical spiral axial standard std sharp smooth kernel dose dlp ctdi
report screen save series study protocol routine exam scan image images fused fusion attenuation
corrected correction ac nac suv cine flow velocity quantitative quant diffusion weighted tensor
tractography fa md spectroscopy svs csi short long te tr ti echo echoes multi single shot fast turbo
gradient spin inversion recovery stir propeller blade motion moco nd dis2d dis3d norm normalized
normalised filtered filter original primary secondary derived other average avg sub subtraction volume
vol hr hires high resolution low res fov small large full half partial grappa sense asset arc caipi
accelerated acc prep prepared mag magnitude real imaginary star multiecho me vwi wall black blood bb
white matter gray grey csf tissue mono energy dual iodine calcium score scoring pa ap lat lateral view
views supine prone decubitus upright standing inspiration expiration insp exp breath hold free
breathing nav navigator triggered trig gated ecg resp respiratory
bh fb mid full
""".split())


def _vocabulary_only(text: str) -> str:
    """Keep only words of :data:`CLEAN_VOCABULARY` and technical tokens (``T1``, ``b1000``, ``3D``,
    ``5mm``, numbers of up to 3 digits); every other word becomes ``*``. A value with no vocabulary
    word left becomes ``*`` as a whole (random IDs, codes, phone numbers)."""
    found_word = False

    def keep(match: re.Match[str]) -> str:
        nonlocal found_word
        word = match.group(0)
        lower = word.lower()
        if lower in CLEAN_VOCABULARY:
            found_word = found_word or lower not in _CONNECTING_WORDS
            return word
        if _TECHNICAL_TOKEN.match(lower):
            return word
        return "*"

    cleaned = _WORD_RE.sub(keep, text)
    return cleaned if found_word else ("*" if text.strip() else text)


# tag -> fallback action for standard tags not in the table (see module docstring):
# K keep, X remove, S scrub a sequence, T temporal, V unlisted UID.
_FALLBACK: dict[int, str] = {}


def _fallback_action(tag: int) -> str:
    action = _FALLBACK.get(tag)
    if action is not None:
        return action
    try:
        vr = dictionary_VR(tag)
        keyword = dictionary_keyword(tag)
    except KeyError:
        vr, keyword = "", ""
    if not vr:
        action = "X"
    elif vr == "SQ":
        action = "S"
    elif vr == "UI":
        action = "K" if keyword in CLASS_UID_KEYWORDS else "V"
    elif vr in _TEMPORAL_VRS:
        action = "K" if keyword in SAFE_TEMPORAL_KEYWORDS else "T"
    elif vr in _TEXT_VRS:
        action = "C" if keyword in CLEANED_TEXT_KEYWORDS else "K" if keyword in SAFE_TEXT_KEYWORDS else "X"
    else:
        action = "K"  # numbers, CS, AT, binary (pixel data, LUTs), ambiguous "US or SS"
    _FALLBACK[tag] = action
    return action


@dataclass
class Counts:
    """How many elements (at any depth) were removed, replaced, emptied, cleaned, kept."""

    removed: int = 0
    replaced: int = 0
    emptied: int = 0
    cleaned: int = 0
    kept: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"removed": self.removed, "replaced": self.replaced, "emptied": self.emptied,
                "cleaned": self.cleaned, "kept": self.kept}


#: ``value_tell`` of a raw sequence element whose items the byte serializer walks itself
#: (:func:`decide` returns :class:`Recurse` for it without decoding it).
SEQUENCE_MARK = -1


class Recurse(NamedTuple):
    """The decision for a kept sequence: scrub each item by the same rules.

    Attributes:
        clean: inside the items, unlisted free text is cleaned rather than removed.
        items: the decoded items (pydicom route); None when the caller walks them (byte serializer).
    """

    clean: bool
    items: Any


@dataclass
class Level:
    """Per-data-set state of the decisions: the private creators (read on first need) and
    the private blocks with a kept element (their creators are written back)."""

    creators: dict[tuple[int, int], str] | None = None
    kept_blocks: set[tuple[int, int]] = field(default_factory=set)


class Context:
    """Per-object state: the plan, the pseudonymizer, the patient's date offset, PHI tokens."""

    def __init__(self, pseudo: Pseudonymizer, plan: Plan, top: Dataset) -> None:
        self.plan = plan
        self.pseudo = pseudo
        self.options = plan.options
        self.counts = Counts()
        self.top = top
        self.patient_id = text_of(top, _PATIENT_ID)
        self._days: int | None = None
        self._tokens: re.Pattern[str] | None = None

    @property
    def days(self) -> int:
        if self._days is None:
            self._days = self.pseudo.day_offset(self.patient_id)
        return self._days

    @property
    def tokens(self) -> re.Pattern[str] | None:
        """A regex of identifying strings found in the top-level dataset (for cleaning text)."""
        if self._tokens is None:
            # cache key from the stored (raw) values: files of one patient/study skip decoding
            stored = self.top._dict
            key = (str(self.top._character_set),) + tuple(
                (t, getattr(stored.get(t), "value", None) if isinstance(stored.get(t), RawDataElement)
                 else repr(getattr(stored.get(t), "value", None))) for t in TOKEN_TAGS)
            cached = _TOKENS_BY_RAW.get(key)
            if cached is not None:
                self._tokens = cached
                return cached
            values: list[str] = []
            for tag in TOKEN_TAGS:
                try:
                    elem = peek(self.top, tag)
                except Exception:
                    continue
                value = None if elem is None else elem.value
                if value is None:
                    continue
                values.extend(str(v) for v in (value if isinstance(value, (list, MultiValue)) else [value]))
            self._tokens = _token_pattern(tuple(values))
            if len(_TOKENS_BY_RAW) > 1024:
                _TOKENS_BY_RAW.clear()
            _TOKENS_BY_RAW[key] = self._tokens
        return self._tokens


#: Top-level attributes whose words are blanked wherever text is cleaned.
_TOKEN_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
                   "PatientMotherBirthName", "AccessionNumber", "PatientBirthDate", "ReferringPhysicianName",
                   "PerformingPhysicianName", "OperatorsName", "InstitutionName", "InstitutionAddress",
                   "PatientAddress", "StudyID", "IssuerOfPatientID", "StationName", "PhysiciansOfRecord",
                   "NameOfPhysiciansReadingStudy", "RequestingPhysician")


TOKEN_TAGS = tuple(tag_for_keyword(k) for k in _TOKEN_KEYWORDS)
_TOKENS_BY_RAW: dict[tuple, re.Pattern[str]] = {}


@functools.lru_cache(maxsize=256)
def _token_pattern(values: tuple[str, ...]) -> re.Pattern[str]:
    """Regex of identifying words (and their other spellings) in ``values`` (cached: files of one
    patient/study share it)."""
    words: set[str] = set()
    for v in values:
        for group in v.split("="):  # PN: alphabetic=ideographic=phonetic
            parts = [x.strip() for x in group.split("^") if x.strip()]
            if len(parts) >= 2:  # "Yamada Tarou", "Tarou Yamada", "山田太郎"
                for joined in (parts[0] + parts[1], f"{parts[0]} {parts[1]}", f"{parts[1]} {parts[0]}"):
                    words.update(re.escape(w) for w in _spellings(joined))
        for word in re.split(r"[\^\s,=]+", v):
            if len(word) >= 3 or (len(word) >= 2 and not word.isascii()):
                words.update(re.escape(w) for w in _spellings(word))
        for digits in re.findall(r"\d{4,}", v):  # the number inside an ID ("MRN7734291" -> 7734291)
            words.add(r"(?<!\d)" + digits + r"(?!\d)")
    pattern = "|".join(sorted(words, key=len, reverse=True)) or r"(?!x)x"
    return re.compile(pattern, re.IGNORECASE)


def _spellings(word: str) -> set[str]:
    """``word`` plus its accent-free and German-transliterated spellings (Müller, Muller, Mueller)."""
    import unicodedata

    folded = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    german = word
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"), ("ß", "ss")):
        german = german.replace(a, b)
    return {word, folded, german}


def peek(ds: Dataset, tag: int) -> DataElement | None:
    """The element ``tag`` of ``ds`` decoded, *without* caching the decoded form in ``ds``.

    Reading a value through ``ds[tag]`` replaces the raw element in the dataset
    by a decoded one; a raw element can be copied to the output as bytes, a
    decoded one must be re-encoded. Looking values up with ``peek`` keeps the
    raw bytes.
    """
    elem = ds._dict.get(tag)
    if elem is None or not isinstance(elem, RawDataElement):
        return elem
    from pydicom.dataelem import convert_raw_data_element

    return convert_raw_data_element(elem, encoding=ds._character_set, ds=ds)


def ui_text(raw: bytes) -> str | None:
    """A raw UI value as pydicom decodes it (convert_UI: trailing NUL/space removed, values
    stripped, joined by backslashes), without building a DataElement; None when not ASCII."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return "\\".join(v.strip() for v in text.rstrip("\0 ").rstrip(" \0").split("\\"))


def text_of(ds: Dataset, tag: int) -> str:
    stored = ds._dict.get(tag)
    if isinstance(stored, RawDataElement) and isinstance(stored.value, bytes) \
            and (stored.VR or _dictionary_vr(int(tag))) == "UI":  # read with or without its VR
        text = ui_text(stored.value)
        if text is not None:
            return text
    try:
        elem = peek(ds, tag)
    except Exception:
        return ""
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def removed_by_tag(plan: Plan, tag: int) -> bool:
    """True when :func:`decide` removes element ``tag`` under ``plan`` whatever its VR, value and
    data set: private elements when the plan removes them, private creators (written back only
    by :func:`finish_level`, for a kept element of their block), group lengths, the command and
    DICOMDIR groups, the curves and overlays the plan removes, and the table's ``X`` entries.
    :func:`decide` starts with this rule; the byte serializer caches it per (context, tag), so
    such elements (70% of a GE header: its private blocks) are not looked up by their bytes.
    """
    group = tag >> 16
    if group & 1:
        return plan.private == "X" or (tag & 0xFFFF) < 0x1000
    if (tag & 0xFFFF) == 0 or group == 0 or group == 4:
        return True
    if 0x5000 <= group <= 0x50FF:
        return plan.curves == "X"
    if 0x6000 <= group <= 0x60FF:
        element = tag & 0xFFFF
        if element == 0x4000:
            return plan.overlay_comments == "X"
        return plan.overlay_data == "X"  # the overlay data, and every other overlay element with it
    return plan.actions.get(tag) == "X"


def resolve_action(plan: Plan, tag: int, elem: Any, clean: bool = False) -> str:
    """The action for a non-private element: the table's, or the fallback for unlisted tags, refined.

    ``elem`` needs ``VR`` (as stored; "" or None when read without one) and
    ``value`` (raw bytes or decoded). Returns one of ``X`` (remove; also for
    group lengths, command and DICOMDIR groups), ``K`` (keep as stored),
    ``KT`` (kept date/time, checked), ``KC`` (kept unlisted text, checked for
    this object's identifiers), or the table's ``D Z C U`` and the fallback
    ``S T V``. Called by :func:`decide`, the one decision of both
    writers (byte serializer and pydicom route).
    """
    action = _table_action(plan, tag, elem.VR, clean)
    if action == "K":
        dvr = _dictionary_vr(tag)
        if dvr in _SYNTAX and not _syntax_ok(elem, dvr):
            action = "X"  # not a valid value of its VR: could be anything (a name in the wrong field)
        else:
            action = _refined_keep(plan, tag, dvr)
    return action


def _table_action(plan: Plan, tag: int, vr: str | None, clean: bool) -> str:
    """:func:`resolve_action` before its value check: what the plan says for ``tag`` stored with
    ``vr`` (None or "" when read without one)."""
    group = tag >> 16
    if (tag & 0xFFFF) == 0 or group == 0 or group == 4:  # group lengths, command, DICOMDIR records
        return "X"
    actions = plan.actions
    if 0x5000 <= group <= 0x50FF:
        action = plan.curves
    elif 0x6000 <= group <= 0x60FF:
        element = tag & 0xFFFF
        if element == 0x3000:
            action = plan.overlay_data
        elif element == 0x4000:
            action = plan.overlay_comments
        elif plan.overlay_data == "X":
            action = "X"
        else:
            action = _fallback_action(0x60000000 | element)
            action = "C" if action == "X" else action  # overlay labels/descriptions: cleaned text
    else:
        action = actions.get(tag)
        if action is None:
            action = _fallback_action(tag)
            if action != "X" and not _vr_matches(vr, tag):
                action = "X"  # a VR other than the dictionary's: we cannot vouch for the value
            elif action == "X" and clean and _vr_matches(vr, tag) and _dictionary_vr(tag) in _TEXT_VRS:
                action = "C"
    return action


def _refined_keep(plan: Plan, tag: int, dvr: str) -> str:
    """A kept element's action once its value passed the syntax check: dates and times are
    checked (``KT``), unlisted text is checked for identifiers (``KC``), the rest is ``K``."""
    if dvr in _TEMPORAL_VRS:
        return "KT"
    if dvr in _TEXT_VRS and tag not in plan.actions:
        return "KC"
    return "K"


def kept_as_stored(plan: Plan, tag: int, vr: str | None) -> str | None:
    """For the byte serializer's cache of decisions by tag: ``""`` when :func:`decide` keeps a
    top-level, non-private, non-sequence element ``tag`` stored with ``vr`` (None: implicit VR)
    as its bytes whatever its value; a VR name when it keeps it so only if :func:`syntax_ok`
    says the value is valid for that VR (and removes it otherwise); None when the decision
    needs the value or the data set (call :func:`decide`). Depends on ``plan``, ``tag`` and
    ``vr`` only, so it may be cached per (context, tag, VR)."""
    if (tag >> 16) & 1 or removed_by_tag(plan, tag):
        return None
    dvr = _dictionary_vr(tag)
    if dvr == "SQ" or vr == "SQ" or _table_action(plan, tag, vr, False) != "K":
        return None
    if _refined_keep(plan, tag, dvr) != "K":
        return None
    return dvr if dvr in _SYNTAX else ""


def syntax_ok(value: bytes, vr: str) -> bool:
    """True when every value of the raw bytes ``value`` is empty or valid for ``vr`` (see
    :func:`kept_as_stored`; the check :func:`resolve_action` makes)."""
    return _syntax_ok(_RawValue(value), vr)


class _RawValue:
    """The ``value`` attribute :func:`_syntax_ok` reads."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


def decide(src: Dataset, tag: int, ctx: Context, clean: bool, level: Level
           ) -> DataElement | RawDataElement | Recurse | None:
    """What becomes of element ``tag`` of data set ``src`` (the top level or a sequence item).

    The one decision of the de-identification, shared by the byte serializer
    (:mod:`convert.anonymize.serialize`) and the pydicom route
    (:meth:`convert.anonymize.scrubber.Scrubber.scrub`): it reads the
    element, the per-object context ``ctx`` (plan, pseudonyms, identifying tokens; counts are
    added to ``ctx.counts``) and, for private elements, the private creators of ``src``
    (``level`` keeps them and the blocks kept). Returns None (removed), the element to write
    (a raw element is written as its bytes, a new one is encoded), or :class:`Recurse` for a
    sequence whose items are kept, each scrubbed by the same rules (``sequence``: the caller
    knows the element is a sequence, so it is not decoded here).

    Equal inputs give equal outputs and equal counts: the serializer caches the outcome of a
    top-level element by (context, element bytes).
    """
    itag = int(tag)
    counts = ctx.counts
    elem = src._dict[tag]
    if removed_by_tag(ctx.plan, itag):
        counts.removed += 1
        return None
    if (itag >> 16) & 1:  # ---------------------------------------------- private (the plan keeps some)
        creators = level.creators
        if creators is None:
            creators = level.creators = {}
            for t in src._dict:
                g, e = t >> 16, t & 0xFFFF
                if g & 1 and 0x10 <= e <= 0xFF:
                    creators[(g, e)] = text_of(src, t).strip()
        block = (itag >> 16, (itag & 0xFF00) >> 8)
        creator = creators.get(block)
        if creator and (creator, itag >> 16, itag & 0xFF) in SAFE_PRIVATE and _private_value_ok(src, tag, ctx):
            level.kept_blocks.add(block)
            counts.kept += 1
            return _copy(elem)
        counts.removed += 1
        return None
    action = resolve_action(ctx.plan, itag, elem, clean)
    if action == "X":
        counts.removed += 1
        return None
    if action == "K" and not isinstance(elem, RawDataElement) and elem.VR != "SQ":
        counts.kept += 1
        return _copy(elem)
    if action == "K" and isinstance(elem, RawDataElement) and _raw_vr(elem, itag) != "SQ":
        # raw bytes are copied as read, unless they were encoded differently from what the
        # dataset declares (e.g. implicit VR inside an "explicit" file): then decode them
        # (or deferred: read with defer_size, the value is loaded from the source file now)
        counts.kept += 1
        raw_ok = elem.is_implicit_VR == src.original_encoding[0] and (elem.value is not None or not elem.length)
        return elem if raw_ok else _copy(src[tag])  # src[tag] also resolves "OB or OW"
    return _apply(src, tag, action, ctx, clean)


def finish_level(src: Dataset, present: Iterable[int], ctx: Context, level: Level
                 ) -> dict[int, DataElement | RawDataElement | None]:
    """The data-set-level rules, applied after every element of ``src`` was decided
    (``present``: the tags written): a code of a local scheme is replaced (designator,
    value, meaning; long/URN codes removed), and the private creators of kept private
    elements are written back. Returns tag -> new element (None: remove it)."""
    changes: dict[int, DataElement | RawDataElement | None] = {}
    present = set(present)
    if _SCHEME in present and text_of(src, _SCHEME).strip() not in STANDARD_CODING_SCHEMES:
        token = ctx.pseudo.short_token("code", text_of(src, _SCHEME) + "\\" + text_of(src, _CODE_VALUE), 14)
        changes[_SCHEME] = DataElement(_SCHEME, "SH", "99ANON")
        if _CODE_VALUE in present:
            changes[_CODE_VALUE] = DataElement(_CODE_VALUE, "SH", "C" + token)
        for tag in (_LONG_CODE, _URN_CODE):
            if tag in present:
                changes[tag] = None
        if _MEANING in present:
            changes[_MEANING] = DataElement(_MEANING, "LO", "ANONYMIZED")
        ctx.counts.replaced += 1
    for block in level.kept_blocks:
        ctag = (block[0] << 16) | block[1]
        stored = src._dict[BaseTag(ctag)]
        changes[ctag] = _copy(stored) if isinstance(stored, DataElement) else stored
    return changes


def _apply(src: Dataset, tag: BaseTag, action: str, ctx: Context,
           clean: bool = False) -> DataElement | RawDataElement | None:
    """Apply ``action`` (not X) to element ``tag`` of ``src``; None means drop."""
    counts = ctx.counts
    if action == "X":
        counts.removed += 1
        return None
    # Outcomes that need the VR only, not the decoded value
    stored = src._dict[tag]
    fast_vr = stored.VR or _dictionary_vr(int(tag))
    if fast_vr and " " not in fast_vr and fast_vr not in ("SQ", "UI") \
            and int(tag) not in (_PATIENT_ID, _PATIENT_NAME):
        raw_ok = isinstance(stored, RawDataElement) and stored.is_little_endian \
            and stored.is_implicit_VR == src.original_encoding[0]
        if action == "Z":
            counts.emptied += 1
            if raw_ok:  # written as bytes, like every unchanged element
                return RawDataElement(tag, stored.VR, 0, b"", 0, stored.is_implicit_VR, True)
            return DataElement(tag, fast_vr, None)
        if action == "D" and fast_vr in _DUMMY:
            counts.replaced += 1
            dummy = _DUMMY[fast_vr]
            if raw_ok and isinstance(dummy, str) and fast_vr in _ASCII_VRS:
                data = dummy.encode("ascii")
                data += b" " if len(data) % 2 else b""
                return RawDataElement(tag, stored.VR, len(data), data, 0, stored.is_implicit_VR, True)
            return DataElement(tag, fast_vr, dummy)
        if action == "T" and not ({"full-dates", "modified-dates"} & ctx.options):
            counts.removed += 1
            return None
    if fast_vr == "UI" and action in ("U", "D", "V") and "uids" not in ctx.options \
            and isinstance(stored, RawDataElement) and stored.is_little_endian \
            and stored.is_implicit_VR == src.original_encoding[0]:
        # an instance UID replaced without building a DataElement (as _map_uid does it)
        text = text_of(src, int(tag))
        seq = text.split("\\") if text else []
        if seq and not (action == "V" and all(v.strip("\0 ") in UID_dictionary for v in seq)):
            counts.replaced += 1
            data = "\\".join(ctx.pseudo.uid(v) for v in seq).encode("ascii")
            data += b"\0" if len(data) % 2 else b""
            return RawDataElement(tag, stored.VR, len(data), data, 0, stored.is_implicit_VR, True)
    if isinstance(stored, RawDataElement) and stored.value_tell == SEQUENCE_MARK:
        return _sequence(tag, action, ctx, clean, None)  # the byte serializer walks its items
    try:
        elem = peek(src, tag)
        _ = elem.value
    except Exception:  # undecodable value: never keep what we cannot inspect
        counts.removed += 1
        return None
    vr = elem.VR
    if vr == "SQ":
        return _sequence(tag, action, ctx, clean, elem.value)
    if int(tag) in (_PATIENT_ID, _PATIENT_NAME) and action in ("Z", "D", "C", "U"):
        counts.replaced += 1
        pid = text_of(src, _PATIENT_ID)
        if tag == _PATIENT_ID:
            return DataElement(tag, vr, ctx.pseudo.patient_id(pid))
        return DataElement(tag, vr, ctx.pseudo.patient_name(pid, text_of(src, _PATIENT_NAME)))
    if action == "Z":
        counts.emptied += 1
        return DataElement(tag, vr, None)
    if action == "U" or (action in ("D", "V") and vr == "UI"):
        return _map_uid(elem, ctx, keep_known=(action == "V"), raw_source=stored,
                             raw_implicit=src.original_encoding[0])
    if action == "D":
        counts.replaced += 1
        return DataElement(tag, vr, _DUMMY.get(vr, "ANONYMIZED" if vr in _TEXT_VRS else b"\0\0"))
    if action == "KC":
        tokens = ctx.tokens
        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        texts = ["" if v is None else str(v) for v in values]
        if tokens is None or not any(tokens.search(t) for t in texts):
            counts.kept += 1
            if isinstance(stored, RawDataElement) and stored.is_implicit_VR == src.original_encoding[0]:
                return stored  # unchanged: keep the bytes as read
            return _copy(elem)
        counts.cleaned += 1
        new_texts = [tokens.sub("*", t) for t in texts]
        return DataElement(elem.tag, elem.VR, new_texts if len(new_texts) > 1 else new_texts[0])
    if action == "KT" or (action == "T" and "full-dates" in ctx.options):
        if _valid_temporal(elem):
            counts.kept += 1
            return _copy(elem)
        counts.removed += 1  # not a date: could be anything (a name typed in the wrong field)
        return None
    if action == "T":  # an unlisted date/time
        if "modified-dates" in ctx.options:
            return _shift(elem, ctx)
        counts.removed += 1
        return None
    if action == "C":
        return _clean(elem, ctx)
    if action == "S":  # a sequence tag holding a non-sequence value: cannot vouch for it
        counts.removed += 1
        return None
    counts.kept += 1  # K on a non-sequence value decoded above
    return _copy(elem)


def _sequence(tag: BaseTag, action: str, ctx: Context, clean: bool, items: Any) -> DataElement | Recurse:
    """A sequence: emptied (Z), else its items kept, each scrubbed by the same rules."""
    if action == "Z":
        ctx.counts.emptied += 1
        return DataElement(tag, "SQ", Sequence())
    ctx.counts.kept += 1  # K, D, U, C, S
    return Recurse(clean or action == "C", items)


def _map_uid(elem: DataElement, ctx: Context, keep_known: bool,
             raw_source: DataElement | RawDataElement | None = None,
             raw_implicit: bool | None = None) -> DataElement | RawDataElement:
    values = elem.value
    many = isinstance(values, (list, MultiValue))
    seq = list(values) if many else ([values] if values not in (None, "") else [])
    if keep_known and all(str(v).strip("\0 ") in UID_dictionary for v in seq):
        ctx.counts.kept += 1
        return _copy(elem)
    if "uids" in ctx.options:
        ctx.counts.kept += 1
        return _copy(elem)
    new = [ctx.pseudo.uid(str(v)) for v in seq]
    ctx.counts.replaced += 1
    stored = raw_source
    if new and isinstance(stored, RawDataElement) and stored.is_little_endian \
            and stored.is_implicit_VR == raw_implicit:
        data = "\\".join(new).encode("ascii")
        data += b"\0" if len(data) % 2 else b""
        return RawDataElement(elem.tag, stored.VR, len(data), data, 0, stored.is_implicit_VR, True)
    if not new:
        return DataElement(elem.tag, "UI", None)
    return DataElement(elem.tag, "UI", new if many else new[0])


def _shift(elem: DataElement, ctx: Context) -> DataElement | None:
    vr = elem.VR
    if vr == "TM" or elem.value in (None, ""):
        if not _valid_temporal(elem):
            ctx.counts.removed += 1
            return None
        ctx.counts.kept += 1
        return _copy(elem)
    shift = shift_da if vr == "DA" else shift_dt if vr == "DT" else None
    if shift is None:  # a C on a non-temporal value under a date option: keep it
        ctx.counts.kept += 1
        return _copy(elem)
    values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
    out = []
    for v in values:
        shifted = shift(str(v), ctx.days)
        if shifted is None:  # unparseable date: never keep the original
            ctx.counts.removed += 1
            return None
        out.append(shifted)
    ctx.counts.replaced += 1
    return DataElement(elem.tag, vr, out if len(out) > 1 else out[0])


def _clean(elem: DataElement, ctx: Context) -> DataElement | None:
    vr = elem.VR
    if vr in _TEMPORAL_VRS:
        if "modified-dates" in ctx.options:
            return _shift(elem, ctx)
        ctx.counts.kept += 1
        return _copy(elem)
    if vr == "UI":
        return _map_uid(elem, ctx, keep_known=True)
    if vr == "AE":
        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        ctx.counts.cleaned += 1
        new = ["AE" + ctx.pseudo.short_token("ae", str(v), 14) for v in values if v]
        return DataElement(elem.tag, vr, (new if len(new) > 1 else new[0]) if new else None)
    if vr == "PN" or (vr in _TEXT_VRS and (elem.tag >> 16) in _PERSONAL_GROUPS):
        # names, and free text about the person (occupation, history, comments, allergies...):
        # what identifies there is not something we can recognise, so it goes
        ctx.counts.removed += 1
        return None
    if vr in _TEXT_VRS:
        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        tokens = ctx.tokens
        new = []
        for v in values:
            text = "" if v is None else str(v)
            if tokens is not None:
                text = tokens.sub("*", text)
            text = _LONG_NUMBER.sub("*", _DATE_LIKE.sub("*", text))
            if elem.tag != _MEANING:
                text = _vocabulary_only(text)
            new.append(text)
        ctx.counts.cleaned += 1
        return DataElement(elem.tag, vr, new if len(new) > 1 else (new[0] if new else None))
    if vr == "CS":
        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        allowed = _CLEAN_CS_TERMS.get(int(elem.tag), frozenset())
        if all(v in (None, "") or str(v).strip() in allowed for v in values):
            ctx.counts.kept += 1
            return _copy(elem)
    # binary (maker notes, timestamps) or a code outside its defined terms: we cannot clean it
    ctx.counts.removed += 1
    return None


_TEMPORAL_SYNTAX = {
    "DA": re.compile(r"^\d{8}$|^\d{4}\.\d{2}\.\d{2}$"),
    "TM": re.compile(r"^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$"),
    "DT": re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$"),
}


def _valid_temporal(elem: DataElement) -> bool:
    """True when every value of a DA/DT/TM element matches its VR's syntax (ranges ``A-B`` allowed)."""
    syntax = _TEMPORAL_SYNTAX.get(elem.VR)
    if syntax is None:
        return False
    value = elem.value
    if value is None or value == "":
        return True
    values = value if isinstance(value, (list, MultiValue)) else [value]
    for v in values:
        text = str(v).strip()
        if not text:
            continue
        parts = [text] if elem.VR == "DT" and text.count("-") == 1 and len(text) > 5 and text[-5] == "-" \
            else text.split("-") if "-" in text else [text]
        if not all(p == "" or syntax.match(p.strip()) for p in parts) or all(p == "" for p in parts):
            return False
    return True


_SYNTAX: dict[str, re.Pattern[str]] = {
    "DS": re.compile(r"^ *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *$"),
    "IS": re.compile(r"^ *[+-]?\d+ *$"),
    "AS": re.compile(r"^\d{3}[DWMY]$"),
    "CS": re.compile(r"^[A-Z0-9 _]*$"),
    "UI": re.compile(r"^[0-9.]*$"),
    "DA": re.compile(r"^(\d{8}|\d{4}\.\d{2}\.\d{2})?(-(\d{8})?)?$"),
    "TM": re.compile(r"^(\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?)?(-(\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?)?)?$"),
    "DT": re.compile(r"^[0-9.+-]*$"),
}


def _syntax_ok(elem: DataElement | RawDataElement, vr: str) -> bool:
    """True when every value of ``elem`` is empty or valid for ``vr`` (numbers, codes, ages, dates, UIDs)."""
    value = elem.value
    if value is None:
        return True
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return False
        values = text.split("\\")
    elif isinstance(value, (list, MultiValue)):
        values = [str(v) for v in value]
    else:
        values = [str(value)]
    pattern = _SYNTAX[vr]
    for v in values:
        v = v.strip("\0 ") if vr != "DS" and vr != "IS" else v.strip("\0")
        if v and not pattern.match(v):
            return False
    return True


_DICT_VR: dict[int, str] = {}


_NUMERIC_BINARY_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "OF", "OD"})
_NUMBERS = re.compile(r"^[ \d.eE+\-\\]*$")


def _private_value_ok(src: Dataset, tag: BaseTag, ctx: "Context") -> bool:
    """A safe-listed private value is kept only if it holds numbers and none of this object's
    identifying words or ID digits (an MRN typed into a b-value)."""
    elem = src._dict[tag]
    if not _numeric_value(elem):
        return False
    try:
        value = peek(src, tag).value
    except Exception:
        return False
    if isinstance(value, (bytes, bytearray)):
        return True  # binary numbers (implicit VR): no digits to match
    text = " ".join(str(v) for v in value) if isinstance(value, (list, MultiValue)) else str(value)
    tokens = ctx.tokens
    return not (tokens is not None and tokens.search(text))


def _numeric_value(elem: DataElement | RawDataElement) -> bool:
    """True when a (private) value can only hold numbers: a binary numeric VR, or ASCII digits/signs/dots."""
    if elem.VR in _NUMERIC_BINARY_VRS:
        return True
    value = elem.value
    if value is None:
        return True
    if isinstance(value, (bytes, bytearray)):
        if elem.VR in (None, "UN", "OB") and len(value) % 4 == 0 and not bytes(value).strip(b"\0").isascii():
            return True  # binary numbers read without a VR (implicit little endian)
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return False
    elif isinstance(value, (list, MultiValue)):
        return all(isinstance(v, (int, float)) or _NUMBERS.match(str(v)) for v in value)
    elif isinstance(value, (int, float)):
        return True
    else:
        text = str(value)
    return bool(_NUMBERS.match(text.strip("\0 ")))


def _dictionary_vr(tag: int) -> str:
    vr = _DICT_VR.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = ""
        _DICT_VR[tag] = vr
    return vr


def _vr_matches(vr: str | None, tag: int) -> bool:
    """True when an element's own VR is absent (implicit), the dictionary's, or UN for a non-text VR."""
    if not vr:
        return True
    try:
        expected = _dictionary_vr(tag) or dictionary_VR(tag)
    except KeyError:
        return False
    if vr == expected or vr in expected.split(" or "):
        return True
    return vr == "UN" and expected not in _TEXT_VRS and expected != "SQ"


def _raw_vr(elem: RawDataElement, tag: int) -> str:
    if elem.VR:
        return str(elem.VR)
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _copy(elem: DataElement | RawDataElement) -> DataElement | RawDataElement:
    """A copy that shares no mutable value with the source (raw elements are immutable)."""
    if isinstance(elem, RawDataElement):
        return elem
    value = elem.value
    if isinstance(value, (list, MultiValue)):
        value = list(value)
    new = DataElement(elem.tag, elem.VR, value, is_undefined_length=elem.is_undefined_length)
    return new
