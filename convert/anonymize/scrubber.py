"""The pydicom route of the de-identification: the decisions applied to a pydicom Dataset, recursively.

:meth:`Scrubber.scrub` walks a Dataset and its sequence items and applies the one per-element
decision (:func:`convert.anonymize.decide.decide`, with :func:`~convert.anonymize.decide.finish_level`
for the data-set-level rules) to every element; it adds the de-identification stamps and a new
file meta, and refuses objects that may carry burned-in text (:data:`BURNED_IN_RULES`). The byte
serializer (:mod:`convert.anonymize.serialize`) applies the same decision to the bytes of a file.

Pixel data and every other kept element is copied as the raw bytes read from
the file: nothing is decoded or re-encoded, and the output keeps the input's
transfer syntax and Specific Character Set.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from convert.anonymize.decide import (SAFE_PRIVATE, Context, Counts, Level, Recurse, decide, finish_level, peek,
                                      text_of)
from convert.anonymize.profile import CID_7050, compile_plan, normalize_options
from convert.anonymize.pseudonym import Pseudonymizer
from convert.dicom.header import as_dataset
from convert.dicom.validity import install as _install_hooks
from convert.errors import AnonymizationError

_install_hooks()  # an unknown VR is a CorruptFileError naming the file, not a bare NotImplementedError

__all__ = ["BURNED_IN_RULES", "SAFE_PRIVATE", "MAPPED_TAGS", "Scrubber", "ScrubResult", "burned_in_reason",
           "refusal_message", "quiet_pydicom"]

_PATIENT_ID = 0x00100020
_SOP_INSTANCE_UID = 0x00080018


#: When is a file refused as probably carrying burned-in text (PHI in the pixels)?
#: ``BurnedInAnnotation == "YES"`` always; when BurnedInAnnotation is absent or
#: empty, these modalities / SOP classes (a UID or a UID prefix ending in a
#: component) / ImageType values; encapsulated documents always.
BURNED_IN_RULES: dict[str, tuple[str, ...]] = {
    "modalities": ("US", "ES", "XC", "OT", "DOC", "GM", "SM", "OP"),
    "sop_classes": (
        "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture and the multi-frame SC classes (7.x)
        "1.2.840.10008.5.1.4.1.1.6",      # Ultrasound (6.1, 6.2)
        "1.2.840.10008.5.1.4.1.1.3.1",    # Ultrasound multi-frame
        "1.2.840.10008.5.1.4.1.1.77.1",   # Visible light: endoscopy, photographs, video, microscopy
    ),
    "image_types": ("SCREEN SNAPSHOT", "SCREENSHOT", "LABEL", "OVERVIEW"),
    "always": (
        "1.2.840.10008.5.1.4.1.1.104",    # Encapsulated PDF, CDA, STL, OBJ, MTL: content cannot be scrubbed
    ),
}


@dataclass
class ScrubResult:
    """The de-identified dataset and what was done.

    Attributes:
        dataset: the new dataset (file_meta included when the input had one).
        counts: element counts (see :class:`Counts`).
        burned_in: True when the input was let through although it may carry
            burned-in text (``allow_burned_in``); BurnedInAnnotation is YES.
        burned_in_reason: why the burned-in rule fired ("" when it did not).
        mapping: original -> pseudonym for PatientID, StudyInstanceUID and
            SeriesInstanceUID (for the audit file only; never print it).
    """

    dataset: Dataset
    counts: Counts
    burned_in: bool = False
    burned_in_reason: str = ""
    mapping: dict[str, tuple[str, str]] = field(default_factory=dict)


def burned_in_reason(ds: Dataset) -> str:
    """Why ``ds`` may carry burned-in text per :data:`BURNED_IN_RULES` ("" when it should not)."""
    def text(keyword: str) -> str:
        try:
            elem = peek(ds, tag_for_keyword(keyword))
        except Exception:
            return ""
        value = None if elem is None else elem.value
        if value is None:
            return ""
        if isinstance(value, (list, MultiValue)):
            return "\\".join(str(v) for v in value)
        return str(value)

    sop = text("SOPClassUID").strip()
    for prefix in BURNED_IN_RULES["always"]:
        if sop == prefix or sop.startswith(prefix + "."):
            return f"SOP class {sop} is an encapsulated document whose content cannot be scrubbed"
    flag = text("BurnedInAnnotation").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    if flag:
        return ""
    modality = text("Modality").strip().upper()
    if modality in BURNED_IN_RULES["modalities"]:
        return f"modality {modality} often has burned-in text and BurnedInAnnotation is absent"
    for prefix in BURNED_IN_RULES["sop_classes"]:
        if sop == prefix or sop.startswith(prefix + "."):
            return f"SOP class {sop} often has burned-in text and BurnedInAnnotation is absent"
    image_type = {v.strip().upper() for v in text("ImageType").split("\\")}
    hits = image_type & set(BURNED_IN_RULES["image_types"])
    if hits:
        return f"ImageType {sorted(hits)[0]} often has burned-in text and BurnedInAnnotation is absent"
    return ""


def refusal_message(reason: str) -> str:
    """The message of the :class:`AnonymizationError` for an object refused for burned-in text."""
    return (f"refused: {reason}; pixel data may show patient details (use --allow-burned-in to let "
            "it through, flagged)")


#: Attributes whose original -> pseudonym pairs go to the audit file.
MAPPED_TAGS = (("PatientID", _PATIENT_ID), ("StudyInstanceUID", 0x0020000D), ("SeriesInstanceUID", 0x0020000E))


_QUIET = [0]  # depth of nested quiet_pydicom blocks


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they may quote PHI values) within the block.

    Nested blocks cost nothing: the outermost one silences (a worker wraps its whole chunk)."""
    if _QUIET[0]:
        yield
        return
    logger = logging.getLogger("pydicom")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL + 1)
    _QUIET[0] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _QUIET[0] -= 1
        logger.setLevel(level)
        logger.propagate = propagate


class Scrubber:
    """De-identifies datasets under one key and one set of options.

    Args:
        key: HMAC key for pseudonyms (bytes).
        keep: option names (see :data:`convert.anonymize.profile.OPTIONS`).
        allow_burned_in: let objects that may carry burned-in text through
            (flagged) instead of raising :class:`AnonymizationError`.
    """

    def __init__(self, key: bytes, keep: Iterable[str] = (), allow_burned_in: bool = False) -> None:
        self.options = normalize_options(keep)
        self.pseudo = Pseudonymizer(key)
        self.allow_burned_in = allow_burned_in
        self.method_text = "medconvert: DICOM PS3.15 E.1 Basic Profile" + (
            " + " + ", ".join(sorted(self.options)) if self.options else "")

    # ------------------------------------------------------------------ public
    def scrub(self, ds: Dataset, source: str | None = None) -> ScrubResult:
        """Return a new de-identified copy of ``ds`` (``ds`` is not modified).

        ``ds`` is a pydicom Dataset or a :class:`convert.dicom.header.Header` view (its Dataset is used).

        pydicom's warnings and log messages are silenced meanwhile: they quote
        values ("Invalid value for VR DA: 'Doe John'"), which must never reach a console.

        Raises:
            AnonymizationError: the object may carry burned-in text and
                ``allow_burned_in`` is False (``source`` names it in the message).
        """
        with quiet_pydicom():
            return self._scrub(as_dataset(ds), source)

    def _scrub(self, ds: Dataset, source: str | None = None) -> ScrubResult:
        reason = burned_in_reason(ds)
        if reason and not self.allow_burned_in:
            raise AnonymizationError(refusal_message(reason), source)
        ctx = self.context(ds)
        out = self._scrub_dataset(ds, ctx)
        self.stamp(out, ctx, flagged=bool(reason))
        out.file_meta = self._scrub_meta(getattr(ds, "file_meta", None), ds, out, ctx)
        mapping = {}
        for keyword, tag in MAPPED_TAGS:
            if tag in ds:
                orig, new = text_of(ds, tag), text_of(out, tag)
                if orig != new:
                    mapping[keyword] = (orig, new)
        return ScrubResult(out, ctx.counts, burned_in=bool(reason), burned_in_reason=reason, mapping=mapping)

    def context(self, top: Dataset) -> Context:
        """The per-object context of the decisions (plan for the object's SOP class, pseudonyms,
        date offset, identifying tokens), from the top-level data set ``top``."""
        sop_class = text_of(top, 0x00080016).strip() or None
        return Context(self.pseudo, compile_plan(self.options, sop_class), top)

    # ------------------------------------------------------------------ internals
    def new_like(self, src: Dataset) -> Dataset:
        """An empty data set encoded like ``src`` (its encoding, character set, parent encoding)."""
        out = Dataset()
        out._parent_encoding = getattr(src, "_parent_encoding", "iso8859")
        implicit, little = src.original_encoding
        if implicit is not None and little is not None:
            out.set_original_encoding(implicit, little, src.original_character_set)
        return out

    def _scrub_dataset(self, src: Dataset, ctx: Context, clean: bool = False) -> Dataset:
        """Scrub one dataset or sequence item (the pydicom route; see :meth:`decide`). ``clean``:
        inside a sequence whose action is C (Clean Structured Content / Graphics / Descriptors),
        unlisted free text is cleaned, not removed."""
        out = self.new_like(src)
        dst = out._dict
        level = Level()
        for tag in list(src._dict):
            new = decide(src, tag, ctx, clean, level)
            if new is None:
                continue
            if isinstance(new, Recurse):
                items = [self._scrub_dataset(item, ctx, clean=new.clean) for item in (new.items or [])]
                new = DataElement(tag, "SQ", Sequence(items))
            dst[tag] = new
        for ctag, new in finish_level(src, dst, ctx, level).items():
            if new is None:
                dst.pop(BaseTag(ctag), None)
            else:
                dst[BaseTag(ctag)] = new
        return out

    def stamp(self, out: Dataset, ctx: Context, flagged: bool) -> None:
        """Add PatientIdentityRemoved, DeidentificationMethod(+CodeSequence), temporal flag."""
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = ["medconvert", "DICOM PS3.15 E.1-1 Basic Profile (2024e)"] + [
            f"option {o}" for o in sorted(ctx.options)]
        codes = Sequence()
        for name in ["basic"] + [o for o in CID_7050 if o in ctx.options]:
            value, meaning = CID_7050[name]
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            codes.append(item)
        out.DeidentificationMethodCodeSequence = codes
        if "full-dates" in ctx.options:
            out.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif "modified-dates" in ctx.options:
            out.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            out.LongitudinalTemporalInformationModified = "REMOVED"
        if flagged:
            out.BurnedInAnnotation = "YES"

    def _scrub_meta(self, meta: Dataset | None, src: Dataset, out: Dataset, ctx: Context) -> FileMetaDataset:
        """New file meta: version, SOP class, transfer syntax (from the input, or from how it was
        encoded when it had no meta), MediaStorageSOPInstanceUID = the new SOPInstanceUID."""
        from pydicom.uid import (PYDICOM_IMPLEMENTATION_UID, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                                 ImplicitVRLittleEndian)

        meta = meta if meta is not None else Dataset()
        new = FileMetaDataset()
        new.FileMetaInformationVersion = b"\x00\x01"
        sop_class = meta.get("MediaStorageSOPClassUID") or out.get("SOPClassUID")
        if sop_class:
            new.MediaStorageSOPClassUID = sop_class
        if _SOP_INSTANCE_UID in out and out[_SOP_INSTANCE_UID].value:
            new.MediaStorageSOPInstanceUID = out[_SOP_INSTANCE_UID].value
        elif meta.get("MediaStorageSOPInstanceUID"):
            new.MediaStorageSOPInstanceUID = ctx.pseudo.uid(str(meta.MediaStorageSOPInstanceUID))
        ts = meta.get("TransferSyntaxUID")
        if not ts:
            implicit, little = src.original_encoding
            ts = ImplicitVRLittleEndian if implicit in (True, None) else (
                ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian)
        new.TransferSyntaxUID = ts
        new.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ctx.counts.replaced += 1
        return new
