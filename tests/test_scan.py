"""convert.dicom.scan: header-only discovery of DICOM files in messy folder trees."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fixtures.dicom_series import make_non_dicom_files, make_philips_dwi, make_series, make_split_series  # noqa: E402

from convert.dicom.scan import index_file, scan  # noqa: E402
from convert.errors import InputNotFoundError  # noqa: E402


def test_indexes_every_slice_with_geometry(tmp_path: Path) -> None:
    paths, spec = make_series(tmp_path / "s", "oblique")
    result = scan(tmp_path)
    assert len(result.instances) == len(paths) == spec.slices
    inst = result.instances[0]
    assert inst.rows == spec.rows and inst.columns == spec.columns
    assert inst.pixel_spacing == spec.pixel_spacing
    assert inst.orientation is not None and len(inst.orientation) == 6
    assert inst.position is not None and inst.modality == "CT"
    assert inst.rescale_intercept == -1024.0 and inst.bits_stored == 16 and inst.pixel_representation == 1
    assert inst.transfer_syntax == "1.2.840.10008.1.2.1"
    header = inst.load_header()
    assert header is not None and "PixelData" not in header  # headers only


def test_readme_and_junk_files_are_skipped_and_counted(tmp_path: Path) -> None:
    make_series(tmp_path / "s", slices=3)
    junk = make_non_dicom_files(tmp_path / "s")
    result = scan(tmp_path)
    assert len(result.instances) == 3
    assert {p for p, _ in result.skipped} == set(junk)
    assert result.files_seen == 3 + len(junk)


def test_files_without_extension_and_gzipped_files_are_found(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path / "s", slices=3, shuffle_names=True)
    assert all(p.suffix == "" for p in paths)
    with open(paths[0], "rb") as src, gzip.open(str(paths[0]) + ".dcm.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    paths[0].unlink()
    result = scan(tmp_path)
    assert len(result.instances) == 3
    assert any(i.path.name.endswith(".dcm.gz") for i in result.instances)


def test_dicomdir_is_skipped_as_an_index(tmp_path: Path) -> None:
    make_series(tmp_path / "s", slices=2)
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    result = scan(tmp_path)
    assert len(result.instances) == 2
    assert any("DICOMDIR" in reason for _, reason in result.skipped)


def test_many_files_use_the_thread_pool_and_keep_path_order(tmp_path: Path) -> None:
    make_series(tmp_path / "s", slices=40)
    calls: list[tuple[int, int]] = []
    result = scan(tmp_path, workers=4, progress=lambda done, total: calls.append((done, total)))
    assert [i.path for i in result.instances] == sorted(i.path for i in result.instances)
    assert calls[-1] == (40, 40)


def test_missing_root_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="nope"):
        scan(tmp_path / "nope")


def test_truncated_header_is_skipped_not_fatal(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path / "s", slices=2)
    paths[0].write_bytes(paths[0].read_bytes()[:140])
    outcome = index_file(paths[0])
    assert isinstance(outcome, str)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_indexer(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.dcm"
    path.write_bytes(data)
    outcome = index_file(path)
    assert isinstance(outcome, str) or outcome.rows > 0


def test_fast_field_extraction_equals_pydicom_conversion(tmp_path: Path) -> None:
    import dataclasses

    import pydicom

    from convert.dicom.header import Header, read
    from convert.dicom.scan import instance_from_header

    paths, _ = make_series(tmp_path / "s", "oblique", slices=2, times=2, modality="MR",
                           extra={"SpecificCharacterSet": "ISO_IR 192", "SeriesDescription": "Tête axiale – ß",
                                  "EchoNumbers": 2, "TriggerTime": 12.5})
    for path in paths:
        view = read(path)
        assert isinstance(view, Header)
        fast = instance_from_header(path, view)  # the header view (pydicom only for the non-ASCII description)
        slow = instance_from_header(path, pydicom.dcmread(path, stop_before_pixels=True))
        for f in dataclasses.fields(fast):
            if f.name != "header":
                assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    assert fast.series_description == "Tête axiale – ß" and fast.echo_number == 2 and fast.trigger_time == 12.5


def test_split_fields_agree_on_all_three_header_paths(tmp_path: Path) -> None:
    """Byte-level fast parse, the header view and pydicom's Dataset see the same split fields."""
    import pydicom

    from convert.dicom.header import read
    from convert.dicom.scan import _fast_index, instance_from_header

    paths, order = make_philips_dwi(tmp_path, "isotropic")
    flags = []
    for path in paths:
        fast = _fast_index(path)
        assert fast is not None, "private FL/CS diffusion tags must not push the file off the fast path"
        raw = instance_from_header(path, read(path))
        slow = instance_from_header(path, pydicom.dcmread(path, stop_before_pixels=True))
        assert fast.philips_isotropic == raw.philips_isotropic == slow.philips_isotropic
        assert fast.echo_time == raw.echo_time == slow.echo_time == 30.0
        flags.append((slow.temporal_position, slow.philips_isotropic))
    assert {t for t, iso in flags if iso} == {order.index(3) + 1}  # only the derived volume's files
    ge_parts = sorted(make_split_series(tmp_path / "ge", "ge-private-parts"))
    for path in ge_parts:
        fast = _fast_index(path)
        assert fast is not None
        raw = instance_from_header(path, read(path))
        slow = instance_from_header(path, pydicom.dcmread(path, stop_before_pixels=True))
        assert fast.ge_image_type == raw.ge_image_type == slow.ge_image_type == int(path.parent.name[1:])


def test_pixel_offset_points_at_the_pixel_data_element(tmp_path: Path) -> None:
    paths, _ = make_series(tmp_path, slices=1)
    (inst,) = scan(tmp_path).instances
    with open(paths[0], "rb") as fh:
        fh.seek(inst.pixel_offset)
        assert fh.read(4) == b"\xe0\x7f\x10\x00"


def test_unreadable_subfolder_is_reported_not_fatal(tmp_path: Path) -> None:
    import os

    make_series(tmp_path / "ok", slices=2)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.dcm").write_bytes(b"")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        result = scan(tmp_path)
        assert len(result.instances) == 2
        assert any("unreadable folder" in reason for _, reason in result.skipped)
    finally:
        locked.chmod(0o755)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2000))
def test_corrupted_real_headers_never_crash_the_indexer(tmp_path_factory: pytest.TempPathFactory, noise: bytes,
                                                        at: int) -> None:
    folder = tmp_path_factory.mktemp("corrupt")
    if not hasattr(test_corrupted_real_headers_never_crash_the_indexer, "template"):
        paths, _ = make_series(tmp_path_factory.mktemp("template"), slices=1)
        test_corrupted_real_headers_never_crash_the_indexer.template = paths[0].read_bytes()  # type: ignore[attr-defined]
    data = bytearray(test_corrupted_real_headers_never_crash_the_indexer.template)  # type: ignore[attr-defined]
    at = 132 + at % max(1, len(data) - 132)
    data[at:at + len(noise)] = noise  # overwrite part of a real header (after the DICM marker)
    path = folder / "x.dcm"
    path.write_bytes(bytes(data))
    outcome = index_file(path)
    assert isinstance(outcome, str) or outcome.rows >= 0


def test_scanning_corrupt_files_emits_no_library_warnings(tmp_path: Path) -> None:
    import warnings

    paths, _ = make_series(tmp_path, slices=2)
    data = bytearray(paths[0].read_bytes())
    data[140:150] = b"\x01\x02garbage!"
    paths[0].write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan(tmp_path)


def _same_fields(a, b) -> list[str]:
    """Names of the fields that differ; two NaNs (an unusable value both parsers kept as stored) agree."""
    import dataclasses
    import math

    def same(x, y) -> bool:
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))

    return [f.name for f in dataclasses.fields(a) if f.name != "header" and not same(getattr(a, f.name), getattr(b, f.name))]


def test_fast_parser_equals_pydicom_on_synthetic_files_with_sequences(tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from convert.dicom.scan import _fast_index, instance_from_header
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    def add_sequences(ds, k: int, t: int) -> None:
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = "2.25.1"
        nested = Dataset()
        nested.CodeValue = "X"
        item.PurposeOfReferenceCodeSequence = Sequence([nested])
        ds.ReferencedImageSequence = Sequence([item, item])
        ds.add_new(0x00291010, "OB", b"\x01\x02" * 50)  # a private blob before the pixels

    paths = write_series(tmp_path, small_spec("oblique", slices=3, times=2, modality="MR",
                                             extra={"EchoNumbers": 2, "TriggerTime": 33.0}), mutate=add_sequences)
    for path in paths:
        fast = _fast_index(path)
        assert fast is not None, "the common case must take the fast path"
        slow = instance_from_header(path, pydicom.dcmread(path, stop_before_pixels=True))
        slow_offset = scan(path).instances[0].pixel_offset
        assert _same_fields(fast, slow) == ["pixel_offset"] or fast.pixel_offset == slow_offset
        assert fast.pixel_offset == slow_offset


@pytest.mark.parametrize("block", [0x10, 0x12])
def test_fast_parser_reads_the_philips_scale_slope_like_pydicom(tmp_path: Path, block: int) -> None:
    import pydicom

    from convert.dicom.scan import _fast_index, instance_from_header
    from fixtures.dicom_series import make_philips_series

    paths, _ = make_philips_series(tmp_path, scale_slope=[0.25, 0.5, 0.75], slices=3, block=block)
    for path, expected in zip(paths, [0.25, 0.5, 0.75]):
        fast = _fast_index(path)
        assert fast is not None
        slow = instance_from_header(path, pydicom.dcmread(path, stop_before_pixels=True))
        assert fast.philips_scale_slope == slow.philips_scale_slope == expected
        assert _same_fields(fast, slow) in ([], ["pixel_offset"])


def test_philips_scale_slope_only_for_philips_files(tmp_path: Path) -> None:
    from fixtures.dicom_series import make_philips_series

    make_philips_series(tmp_path / "s", manufacturer="SIEMENS")
    make_philips_series(tmp_path / "z", scale_slope=0.0)  # 0 is "absent": a division by zero otherwise
    assert all(i.philips_scale_slope is None for i in scan(tmp_path).instances)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
def test_fast_parser_takes_implicit_and_explicit_vr_alike(tmp_path: Path, syntax: str) -> None:
    """Implicit VR little endian (most real archives) is indexed from bytes too, equal to pydicom's reading."""
    import pydicom

    from convert.dicom.scan import _fast_index, instance_from_header
    from convert.sample import write_series
    from fixtures.dicom_series import small_spec

    paths = write_series(tmp_path / "src", small_spec("oblique", slices=3, modality="MR"))
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        out = tmp_path / f"{n}.dcm"
        ds.save_as(out, implicit_vr=syntax == "1.2.840.10008.1.2", little_endian=True, enforce_file_format=True)
        fast = _fast_index(out)
        assert fast is not None, "the common case must take the fast path"
        with open(out, "rb") as fh:
            header = pydicom.dcmread(fh, stop_before_pixels=True)
            offset = fh.tell()
        assert _same_fields(fast, instance_from_header(out, header, offset)) == []
        assert fast.transfer_syntax == syntax


def test_fast_parser_equals_pydicom_on_real_scanner_files() -> None:
    import pydicom

    from conftest import CONFORMANCE
    from convert.dicom.scan import _fast_index, instance_from_header, iter_files

    if not CONFORMANCE.is_dir():
        pytest.skip("conformance data not available")
    checked = 0
    for path in iter_files(CONFORMANCE):
        if path.suffix != ".dcm":
            continue
        fast = _fast_index(path)
        if fast is None:
            continue
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            offset = fh.tell()
        slow = instance_from_header(path, ds, offset)
        assert _same_fields(fast, slow) == [], path
        checked += 1
    assert checked > 500


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=2000)
@given(st.binary(min_size=1, max_size=32), st.integers(0, 3000))
@example(b"\\", 493)  # SliceThickness "2.5 " becomes "2\\5 ": two values, both readers take the first
def test_fast_parser_on_corrupt_bytes_is_quick_and_never_disagrees(tmp_path_factory: pytest.TempPathFactory,
                                                                   noise: bytes, at: int) -> None:
    import pydicom

    from convert.dicom.scan import _fast_index, instance_from_header

    base = tmp_path_factory.getbasetemp() / "fast_template"
    if not base.exists():
        make_series(base, slices=1)
    template = next(base.iterdir()).read_bytes()
    data = bytearray(template)
    at = 128 + at % (len(data) - 128)
    data[at:at + len(noise)] = noise
    path = tmp_path_factory.mktemp("fastfuzz") / "x.dcm"
    path.write_bytes(bytes(data))
    fast = _fast_index(path)  # must return quickly (deadline) and never raise
    if fast is None:
        return
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            offset = fh.tell()
        slow = instance_from_header(path, ds, offset)
    except Exception:
        return  # pydicom cannot read it; the fast path was lenient, and pixel reading will check the tag
    assert _same_fields(fast, slow) == []


def test_philips_scale_slope_in_implicit_vr_files(tmp_path: Path) -> None:
    """Implicit VR: the private FL value may reach us as raw bytes (no VR in the file)."""
    import pydicom

    from fixtures.dicom_series import make_philips_series

    paths, _ = make_philips_series(tmp_path, scale_slope=[0.25, 0.5, 0.75], slices=3)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    assert [i.philips_scale_slope for i in scan(tmp_path).instances] == [0.25, 0.5, 0.75]


def test_large_scans_parse_in_worker_processes_with_the_same_result(tmp_path: Path, monkeypatch) -> None:
    """From PROCESS_POOL_MIN_FILES files on, forked workers parse the headers (threads add no core);
    the instances, skipped files and progress calls equal a serial scan's."""
    import dataclasses

    import convert.dicom.scan as scan_module  # the module (no longer shadowed by its scan function)
    make_series(tmp_path / "a", slices=12)
    make_series(tmp_path / "b", orientation="sagittal", slices=9)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    serial = scan(tmp_path, workers=1)
    monkeypatch.setattr(scan_module, "PROCESS_POOL_MIN_FILES", 4)
    monkeypatch.setattr(scan_module, "_CHUNK", 5)
    calls: list[tuple[int, int]] = []
    pooled = scan(tmp_path, workers=2, progress=lambda done, total: calls.append((done, total)))

    def fields(inst):
        return {f.name: getattr(inst, f.name) for f in dataclasses.fields(inst) if f.name != "header"}

    assert [fields(i) for i in pooled.instances] == [fields(i) for i in serial.instances]
    assert pooled.skipped == serial.skipped and len(serial.instances) == 21
    assert calls[-1] == (23, 23) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_fifo_named_dcm_is_listed_never_opened(tmp_path: Path) -> None:
    """The quirk: a FIFO named ``*.dcm`` in a folder blocked ``info`` and ``convert`` forever (reading waits
    for a writer). The walk reports it and never opens it; folder symlink loops are not followed."""
    import os
    import subprocess
    import sys

    make_series(tmp_path / "in", slices=3)
    os.mkfifo(tmp_path / "in" / "pipe.dcm")
    os.symlink(tmp_path / "in", tmp_path / "in" / "loop")  # a folder symlink back to its parent
    os.symlink(tmp_path / "in" / "self.dcm", tmp_path / "in" / "self.dcm")  # a looping file symlink
    result = scan(tmp_path / "in")
    assert len(result.instances) == 3
    reasons = {p.name: r for p, r in result.skipped}
    assert "not a regular file" in reasons["pipe.dcm"] and "not a regular file" in reasons["self.dcm"]
    proc = subprocess.run([sys.executable, "-m", "convert", "info", str(tmp_path / "in")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_walk_order_and_hidden_rule(tmp_path: Path) -> None:
    from convert.anonymize.run import iter_files as anonymize_files
    from convert.dicom.scan import iter_files

    for rel in ("b/2", "b/1", "a/z/9", "a/x", ".hidden/h", "c", ".dot"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    names = [str(p.relative_to(tmp_path)) for p in iter_files(tmp_path)]
    assert names == ["c", "a/x", "a/z/9", "b/1", "b/2"]  # os.walk's order: files, then sorted sub-folders
    with_hidden = [str(p.relative_to(tmp_path)) for p in anonymize_files(tmp_path)]
    assert with_hidden == [".dot", "c", ".hidden/h", "a/x", "a/z/9", "b/1", "b/2"]


def test_the_scan_module_is_not_shadowed_by_its_function() -> None:
    import importlib
    import types

    import convert.dicom
    import convert.dicom.scan as scan_module

    assert isinstance(convert.dicom.scan, types.ModuleType) and convert.dicom.scan is scan_module
    assert importlib.import_module("convert.dicom.scan") is scan_module and callable(scan_module.scan)


@pytest.mark.parametrize("protocol", ["Thorax 1mm", "Part A\\Part B", "Tête 1mm"])
def test_index_fields_agree_on_all_three_header_paths(tmp_path: Path, protocol: str) -> None:
    """Body part, protocol, manufacturer, model and field strength: the byte-level index (when it takes
    the file), the header view and pydicom's Dataset give the same values."""
    import pydicom

    from convert.dicom.header import read
    from convert.dicom.scan import _fast_index, instance_from_header

    extra = {"BodyPartExamined": "CHEST", "ProtocolName": protocol, "Manufacturer": "ACME Medical ",
             "ManufacturerModelName": "Scanomat 9000", "MagneticFieldStrength": "1.5"}
    if not protocol.isascii():
        extra["SpecificCharacterSet"] = "ISO_IR 192"
    paths, _ = make_series(tmp_path, slices=1, modality="MR", extra=extra)
    fast = _fast_index(paths[0])
    assert (fast is None) == ("\\" in protocol or not protocol.isascii()), "several values / non-ASCII: declined"
    views = [instance_from_header(paths[0], read(paths[0])),
             instance_from_header(paths[0], pydicom.dcmread(paths[0], stop_before_pixels=True))]
    for inst in views + ([fast] if fast is not None else []):
        assert (inst.body_part, inst.protocol, inst.manufacturer, inst.model, inst.field_strength) == (
            "CHEST", protocol, "ACME Medical", "Scanomat 9000", 1.5)
    (scanned,) = scan(tmp_path).instances
    assert scanned.protocol == protocol


def test_repeated_text_fields_are_shared_across_a_series(tmp_path: Path, monkeypatch) -> None:
    import convert.dicom.scan as scan_module

    make_series(tmp_path, slices=4, extra={"Manufacturer": "ACME", "BodyPartExamined": "HEAD"})
    for pool in (False, True):  # one process, and forked workers (results unpickled per chunk)
        if pool:
            monkeypatch.setattr(scan_module, "PROCESS_POOL_MIN_FILES", 2)
            monkeypatch.setattr(scan_module, "_MIN_CHUNK", 1)
            monkeypatch.setattr(scan_module, "_CHUNK", 1)
        a, b, *_ = scan(tmp_path, workers=2).instances
        for name in ("series_uid", "study_uid", "modality", "manufacturer", "body_part", "transfer_syntax"):
            assert getattr(a, name) is getattr(b, name), (pool, name)


def test_an_enhanced_file_keeps_its_header_view_and_a_worker_sends_it_without_its_layout(tmp_path: Path) -> None:
    """Enhanced files are the one kind the scan keeps a header view of (the reader asks it for every
    frame); a scan worker pickles it back as the header bytes and element positions only."""
    import pickle

    from convert.dicom.header import Header
    from tests.test_multiframe import make_enhanced

    path, _ = make_enhanced(tmp_path / "enh.dcm")
    classic, _ = make_series(tmp_path / "s", slices=1)
    enhanced = index_file(path)
    assert not isinstance(enhanced, str) and enhanced.enhanced and isinstance(enhanced.header, Header)
    assert enhanced.load_header() is enhanced.header
    plain = index_file(classic[0])
    assert not isinstance(plain, str) and plain.header is None  # re-read on demand
    sent = pickle.dumps(enhanced)
    assert "layout" in enhanced.header.part10.__dict__  # computed by the scan (elements.reparse of the next file)
    with_layout = len(pickle.dumps(enhanced.header.part10.__dict__))
    assert len(sent) < with_layout - len(enhanced.header.part10.data) // 2  # not sent: arrays as big as the header
    back = pickle.loads(sent)
    assert back.header.part10.elements == enhanced.header.part10.elements
    assert back.header.NumberOfFrames == enhanced.header.NumberOfFrames


def test_enhanced_files_keep_their_views_when_a_large_scan_keeps_one_header_per_series(tmp_path: Path) -> None:
    from tests.test_multiframe import make_enhanced

    first, _ = make_enhanced(tmp_path / "a.dcm")
    second, _ = make_enhanced(tmp_path / "b.dcm")  # the same (empty) series UIDs: one series
    make_series(tmp_path / "s", slices=3)
    result = scan(tmp_path, keep_headers=False)
    enhanced = [i for i in result.instances if i.enhanced]
    assert len(enhanced) == 2 and all(i.header is not None for i in enhanced)
    assert sum(i.header is not None for i in result.instances if not i.enhanced) <= 1


def test_the_enhanced_views_a_large_scan_keeps_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond KEPT_ENHANCED_BYTES of enhanced headers the scan keeps no more views (memory bounded, not
    by the archive); a file whose view was not kept reads the same header again when asked."""
    from convert.dicom import scan as scan_module
    from tests.test_multiframe import make_enhanced

    paths = [make_enhanced(tmp_path / f"e{n}.dcm")[0] for n in range(5)]
    size = len(index_file(paths[0]).header.part10.data)
    monkeypatch.setattr(scan_module, "KEPT_ENHANCED_BYTES", 2 * size)
    result = scan(tmp_path, keep_headers=False)
    enhanced = sorted((i for i in result.instances if i.enhanced), key=lambda i: str(i.path))
    assert [i.header is not None for i in enhanced] == [True, True, False, False, False]
    again = enhanced[-1].load_header()
    assert again.NumberOfFrames == enhanced[0].header.NumberOfFrames
    assert again.part10.elements == index_file(enhanced[-1].path).header.part10.elements
    assert all(i.header is not None for i in scan(tmp_path, keep_headers=True).instances)  # small archives: all


def test_a_series_instances_share_their_repeated_tuples_and_keep_no_dict(tmp_path: Path) -> None:
    """Memory per file of a large archive (issue 13): no per-instance __dict__; the orientation, pixel
    spacing and image type a series repeats are one object; -0.0 is not merged with 0.0."""
    from dataclasses import replace

    from convert.dicom.scan import Instance

    make_series(tmp_path / "s", slices=4)
    instances = scan(tmp_path / "s").instances
    assert len(instances) == 4 and not hasattr(instances[0], "__dict__")
    for name in ("orientation", "pixel_spacing", "image_type"):
        assert len({id(getattr(i, name)) for i in instances}) == 1, name
    plus = replace(instances[0], orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    minus = replace(instances[0], orientation=(1.0, -0.0, 0.0, 0.0, 1.0, 0.0))
    assert isinstance(minus, Instance) and str(minus.orientation[1]) == "-0.0" and str(plus.orientation[1]) == "0.0"


def test_a_pooled_scan_keeps_the_listing_paths_and_freezes_what_its_workers_inherit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked header readers: each instance's path is the listing's own Path object (not a second one
    unpickled from the worker), and the collector is as it was afterwards (workers.shared_heap)."""
    import gc

    from convert.dicom import scan as scan_module
    from convert.dicom.scan import list_files

    make_series(tmp_path / "a", "axial", slices=12, rows=8, columns=8)
    make_series(tmp_path / "b", "sagittal", slices=12, rows=8, columns=8, series_uid="1.2.3.4.5.6")
    monkeypatch.setattr(scan_module, "PROCESS_POOL_MIN_FILES", 8)
    monkeypatch.setattr(scan_module, "_MIN_CHUNK", 4)
    listing = list_files(tmp_path)
    frozen = gc.get_freeze_count()
    result = scan(tmp_path, workers=2, listing=listing)
    assert gc.get_freeze_count() == frozen
    assert len(result.instances) == 24 == len(listing.files)
    assert all(inst.path is path for inst, path in zip(result.instances, listing.files))
