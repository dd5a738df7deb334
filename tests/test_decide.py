"""The per-element decision (convert/anonymize/decide.py): one pure function both writers call.

Purity is what lets the byte serializer cache outcomes by (context, element bytes): the same
element in the same context gives the same outcome and the same counts, whatever was decided
before, and deciding reads the data set without changing it. Both routes (the byte serializer
and the pydicom route) call this module's ``decide`` and ``finish_level``; no other module
decides (the byte-for-byte equality of the two routes is tested in tests/test_serialize.py).
"""

from __future__ import annotations

import copy
import io
import sys
import warnings
from pathlib import Path

import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import convert.anonymize.decide as decide_module  # noqa: E402
import convert.anonymize.scrubber as scrubber_module  # noqa: E402
import convert.anonymize.serialize as serialize_module  # noqa: E402
from convert.anonymize.decide import (Counts, Level, Recurse, decide, finish_level, kept_as_stored,  # noqa: E402
                                      removed_by_tag, syntax_ok)
from convert.anonymize.profile import OPTIONS  # noqa: E402
from convert.anonymize.scrubber import Scrubber, quiet_pydicom  # noqa: E402
from tests.test_anonymize_property import phi_dataset  # noqa: E402

KEY = b"decision purity test key........"


def _outcome(new):  # type: ignore[no-untyped-def]
    """A comparable form of a decision's result."""
    if new is None:
        return None
    if isinstance(new, Recurse):
        return ("recurse", new.clean)
    if isinstance(new, RawDataElement):
        return ("raw", int(new.tag), new.VR, bytes(new.value or b""))
    value = new.value
    return ("new", int(new.tag), new.VR, repr(list(value) if isinstance(value, list) else value))


def _decide_all(scrubber: Scrubber, ds: Dataset, order: list) -> tuple[dict, tuple[int, ...]]:  # type: ignore[type-arg]
    ctx = scrubber.context(ds)
    level = Level()
    out = {int(tag): _outcome(decide(ds, tag, ctx, False, level)) for tag in order}
    finished = {t: _outcome(e) for t, e in finish_level(ds, [t for t, o in out.items() if o], ctx, level).items()}
    out.update({("finish", t): o for t, o in finished.items()})
    c = ctx.counts
    return out, (c.removed, c.replaced, c.emptied, c.cleaned, c.kept)


def test_both_writers_call_the_one_decision() -> None:
    assert scrubber_module.decide is decide_module.decide is serialize_module.decide
    assert scrubber_module.finish_level is decide_module.finish_level is serialize_module.finish_level
    assert not hasattr(Scrubber, "decide") and not hasattr(Scrubber, "_apply")  # no second copy on the class


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(phi_dataset(), st.sets(st.sampled_from(OPTIONS), max_size=3), st.randoms(use_true_random=False),
       st.booleans())
def test_the_decision_is_a_pure_function_of_context_and_element(drawn, keep, rng, raw) -> None:  # type: ignore[no-untyped-def]
    """Same inputs, same outcomes and counts, in any order and with any scrubber of the same key
    and options; the input data set is not changed. ``raw``: the data set as read from a file
    (raw elements, what the byte serializer decides on), else as built in memory."""
    if {"full-dates", "modified-dates"} <= keep:
        keep.discard("full-dates")
    ds, _ = drawn
    if raw:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            ds = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
        assert any(isinstance(e, RawDataElement) for e in ds._dict.values())
    before = copy.deepcopy(ds)
    tags = list(ds._dict)
    shuffled = tags[:]
    rng.shuffle(shuffled)
    with quiet_pydicom(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, counts = _decide_all(Scrubber(KEY, keep), ds, tags)
        again, counts_again = _decide_all(Scrubber(KEY, keep), ds, shuffled)
    assert first == again
    assert counts == counts_again
    assert ds == before


def test_named_outcomes_of_the_basic_profile() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "MRN7734291"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.Manufacturer = "ACME"
    ds.InstitutionName = "St Elsewhere"
    ds.add(DataElement(0x00291010, "OB", b"\x01\x02"))
    ds.add(DataElement(0x00290010, "LO", "SIEMENS CSA HEADER"))
    scrubber = Scrubber(KEY)
    ctx = scrubber.context(ds)
    level = Level()
    with quiet_pydicom():
        name = decide(ds, 0x00100010, ctx, False, level)
        sop_class = decide(ds, 0x00080016, ctx, False, level)
        sop = decide(ds, 0x00080018, ctx, False, level)
        assert decide(ds, 0x00291010, ctx, False, level) is None  # private: removed by default
        assert decide(ds, 0x00080080, ctx, False, level) is None  # institution: removed (X)
        maker = decide(ds, 0x00080070, ctx, False, level)
    assert name is not None and "Doe" not in str(name.value)
    assert sop_class is not None and sop_class.value == "1.2.840.10008.5.1.4.1.1.2"
    assert sop is not None and str(sop.value) != "1.2.3.4.5.6.7" and str(sop.value).startswith("2.25.")
    assert maker is not None and maker.value == "ACME"
    assert isinstance(ctx.counts, Counts) and ctx.counts.removed == 2


_TAGS = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([0x00100010, 0x00100020, 0x00080080, 0x00081030, 0x00200010, 0x00080050, 0x00321032,
                     0x50000010, 0x50003000, 0x60003000, 0x60004000, 0x60000010, 0x00090010, 0x00091001,
                     0x00190010, 0x0019100C, 0x00290010, 0x00291010, 0x00080000, 0x00041220, 0x00000100]))
_VRS = st.sampled_from(["LO", "SH", "PN", "DA", "CS", "UI", "DS", "US", "OB", "UN", "LT", "SQ"])


@settings(max_examples=300, deadline=None)
@given(_TAGS, _VRS, st.binary(max_size=24), st.sets(st.sampled_from(OPTIONS), max_size=4), st.booleans())
def test_removed_by_tag_means_decide_removes_it_whatever_the_value(tag: int, vr: str, value: bytes,
                                                                   keep: set[str], clean: bool) -> None:
    """The tag-only rule the byte serializer caches per (context, tag) is decide's own first rule:
    where it says removed, decide removes the element for any VR and value, in any data set."""
    if {"full-dates", "modified-dates"} <= keep:
        keep.discard("full-dates")
    if (tag >> 16) == 0xFFFE or (tag & 0xFFFF0000) == 0x00020000:
        return  # item tags and the file meta never reach the decision
    scrubber = Scrubber(KEY, keep)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
    ctx = scrubber.context(ds)
    if not removed_by_tag(ctx.plan, tag):
        return
    with quiet_pydicom(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert decide(ds, BaseTag(tag), ctx, clean, Level()) is None
    assert ctx.counts.removed == 1


_KEPT_TAGS = st.one_of(
    _TAGS,
    st.sampled_from([0x00200013, 0x00200032, 0x00281050, 0x00281051, 0x00201041, 0x00280107, 0x00180081,
                     0x00180086, 0x00280010, 0x00080008, 0x00080060, 0x00180015, 0x00180050, 0x00080020,
                     0x00209057, 0x00080016, 0x00080018, 0x00200037, 0x00081030, 0x00189087]))
_KEPT_VRS = st.sampled_from([None, "IS", "DS", "US", "SS", "UL", "CS", "UI", "DA", "LO", "UN", "FD", "OB", "SQ"])
_NUMBER_TEXT = st.from_regex(r"\A[ +-]?[0-9.eE]{0,8}( *\\[ +-]?[0-9.]{0,6}){0,2} ?\Z").map(str.encode)


@settings(max_examples=400, deadline=None)
@given(_KEPT_TAGS, _KEPT_VRS, st.one_of(st.binary(max_size=16), _NUMBER_TEXT),
       st.sets(st.sampled_from(OPTIONS), max_size=4), st.booleans())
def test_kept_as_stored_means_decide_keeps_the_bytes(tag: int, vr: str | None, value: bytes, keep: set[str],
                                                     implicit: bool) -> None:
    """The keep rule the byte serializer caches per (context, tag, VR) is decide's own: where it
    says kept whatever the value, decide returns the stored element for any value; where it names
    a VR, decide keeps the stored element when ``syntax_ok`` and removes it otherwise."""
    if {"full-dates", "modified-dates"} <= keep:
        keep.discard("full-dates")
    if (tag >> 16) == 0xFFFE or (tag & 0xFFFF0000) == 0x00020000:
        return  # item tags and the file meta never reach the decision
    if implicit:
        vr = None  # read without a VR
    elif vr is None:
        vr = "UN"
    value = value + b" " * (len(value) % 2)
    scrubber = Scrubber(KEY, keep)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.set_original_encoding(implicit, True, None)
    raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, implicit, True)
    ds._dict[BaseTag(tag)] = raw
    ctx = scrubber.context(ds)
    rule = kept_as_stored(ctx.plan, tag, vr)
    if rule is None:
        return
    with quiet_pydicom(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = decide(ds, BaseTag(tag), ctx, False, Level())
    if rule == "" or syntax_ok(value, rule):
        assert new is raw and ctx.counts.kept == 1
    else:
        assert new is None and ctx.counts.removed == 1


def test_kept_as_stored_names_the_per_slice_values() -> None:
    """The values that change from slice to slice are kept by the tag rule (numbers checked by
    their VR's syntax); identifiers, dates, sequences and private elements are decided."""
    plan = Scrubber(KEY).context(Dataset()).plan
    assert kept_as_stored(plan, 0x00200013, "IS") == "IS"  # InstanceNumber
    assert kept_as_stored(plan, 0x00200032, None) == "DS"  # ImagePositionPatient, implicit VR
    assert kept_as_stored(plan, 0x00280107, "US") == ""  # LargestImagePixelValue
    assert kept_as_stored(plan, 0x00080018, "UI") is None  # SOPInstanceUID: replaced
    assert kept_as_stored(plan, 0x00080020, "DA") is None  # StudyDate
    assert kept_as_stored(plan, 0x00100010, "PN") is None  # PatientName
    assert kept_as_stored(plan, 0x00082112, "SQ") is None  # SourceImageSequence
    assert kept_as_stored(plan, 0x00291010, "OB") is None  # private
    assert not syntax_ok(b"Doe^John", "DS") and syntax_ok(b"-1.5\\2e3 ", "DS")


def test_removed_by_tag_covers_private_blocks_and_table_removals() -> None:
    plan = Scrubber(KEY).context(Dataset()).plan
    assert removed_by_tag(plan, 0x00291010) and removed_by_tag(plan, 0x00290010)  # private data and creator
    assert removed_by_tag(plan, 0x00080000) and removed_by_tag(plan, 0x50003000)  # group length, curve
    assert not removed_by_tag(plan, 0x00100010)  # PatientName is replaced, not removed
    assert not removed_by_tag(plan, 0x00180050)  # SliceThickness: unlisted, decided by its value
    kept = Scrubber(KEY, ["safe-private"]).context(Dataset()).plan
    assert not removed_by_tag(kept, 0x0019100C) and removed_by_tag(kept, 0x00190010)  # creators: by the block
