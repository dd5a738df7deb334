"""DICOMDIR as an index (convert/dicom/dicomdir.py and its hook in scan.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.dicom.dicomdir import _components, _Listing, add_dicomdir_references, is_dicomdir_name, read_dicomdir
from convert.dicom.scan import scan
from convert.dicom.series import assemble
from fixtures.dicom_series import make_series, truncate_file
from fixtures.dicomdir_media import make_media, referenced_files


def _lower_case_tree(root: Path) -> None:
    """Rename every file and folder under ``root`` to lower case (media copied by a case-folding tool)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            if name != name.lower():
                os.rename(Path(dirpath) / name, Path(dirpath) / name.lower())


def _instance_paths(result) -> list[str]:
    return sorted(str(i.path) for i in result.instances)


def test_generated_media_converts_from_the_dicomdir_alone(tmp_path):
    files = make_media(tmp_path / "cd", series=2, slices=4)
    assert len(files) == 8 and all(f.exists() for f in files)
    result = scan(tmp_path / "cd" / "DICOMDIR")  # the index only: no walking
    assert _instance_paths(result) == sorted(str(f) for f in files)
    assert sorted(s.shape for s in assemble(result.instances)) == [(6, 8, 4), (6, 8, 4)]


def test_upper_case_references_resolve_on_lower_case_media(tmp_path):
    make_media(tmp_path / "cd")
    _lower_case_tree(tmp_path / "cd")
    dicomdir = tmp_path / "cd" / "dicomdir"
    assert is_dicomdir_name(dicomdir)
    index = read_dicomdir(dicomdir)
    assert index.problems == [] and len(index.files) == 8
    assert all(f.exists() and f.name == f.name.lower() for f in index.files)
    assert len(scan(dicomdir).instances) == 8


def test_iso_version_suffix_and_trailing_dot_are_matched(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=2)
    files[0].rename(files[0].with_name(files[0].name + ";1"))
    files[1].rename(files[1].with_name(files[1].name + "."))
    index = read_dicomdir(tmp_path / "cd" / "DICOMDIR")
    assert index.problems == []
    assert sorted(p.name for p in index.files) == sorted([files[0].name + ";1", files[1].name + "."])


def test_missing_listed_file_is_reported_and_the_rest_convert(tmp_path):
    files = make_media(tmp_path / "cd", series=2, slices=4)
    files[2].unlink()
    result = scan(tmp_path / "cd")
    assert len(result.instances) == 7
    reasons = {path: why for path, why in result.skipped}
    assert "missing" in reasons[files[2]] and "DICOMDIR" in reasons[files[2]]


def test_unreadable_listed_file_is_reported_as_listed(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=3)
    truncate_file(files[1], 100)
    result = scan(tmp_path / "cd" / "DICOMDIR")
    reasons = {path: why for path, why in result.skipped}
    assert reasons[files[1]].startswith("listed in a DICOMDIR but not usable")
    assert len(result.instances) == 2


def test_unlisted_files_are_still_found_and_nothing_is_counted_twice(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=3)
    extra, _ = make_series(tmp_path / "cd" / "EXTRA", slices=2, rows=8, columns=6)
    result = scan(tmp_path / "cd")
    paths = _instance_paths(result)
    assert len(paths) == len(set(paths)) == len(files) + len(extra)
    assert set(paths) == {str(p) for p in files + extra}


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_files_in_a_folder_the_walk_skips_are_found_through_the_dicomdir(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=2)
    hidden = tmp_path / "cd" / ".hidden"
    shutil.move(str(files[0].parent), hidden)  # a non-conforming writer's hidden folder
    ds = pydicom.dcmread(tmp_path / "cd" / "DICOMDIR")
    for record in ds.DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            record.ReferencedFileID = [".hidden", list(record.ReferencedFileID)[-1]]
    ds.save_as(tmp_path / "cd" / "DICOMDIR")
    assert len(scan(tmp_path / "cd").instances) == 2  # walking alone finds none of them


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_references_cannot_escape_the_media(tmp_path):
    make_media(tmp_path / "cd", series=1, slices=2)
    outside, _ = make_series(tmp_path / "outside", slices=1, rows=8, columns=6)
    ds = pydicom.dcmread(tmp_path / "cd" / "DICOMDIR")
    record = next(r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r)
    record.ReferencedFileID = ["..", "outside", outside[0].name]
    ds.save_as(tmp_path / "cd" / "DICOMDIR")
    index = read_dicomdir(tmp_path / "cd" / "DICOMDIR")
    assert any("invalid ReferencedFileID" in why for _, why in index.problems)
    assert all(tmp_path / "cd" in f.parents for f in index.files)


def test_corrupt_dicomdir_is_reported_and_the_walk_still_works(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=2)
    (tmp_path / "cd" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    result = scan(tmp_path / "cd")
    assert _instance_paths(result) == sorted(str(f) for f in files)
    assert any(path.name == "DICOMDIR" and "DICOMDIR" in why for path, why in result.skipped)


def test_add_references_keeps_walk_order_and_appends_once(tmp_path):
    files = make_media(tmp_path / "cd", series=1, slices=2)
    walked = [tmp_path / "cd" / "DICOMDIR", files[0]]
    out, problems, listed = add_dicomdir_references(walked)
    assert out == walked + [files[1]] and problems == []
    assert listed == {str(f) for f in files}


def test_pydicom_shipped_dicomdir(tmp_path):
    from pydicom.data import get_testdata_file

    source = get_testdata_file("DICOMDIR", download=False)
    if source is None:
        pytest.skip("pydicom's DICOMDIR test files are not installed")
    media = tmp_path / "media"
    shutil.copytree(Path(source).parent, media)
    expected = [p for p in referenced_files(media / "DICOMDIR")]
    assert expected and all(p.exists() for p in expected)
    index = read_dicomdir(media / "DICOMDIR")
    assert index.problems == [] and sorted(index.files) == sorted(expected)
    result = scan(media / "DICOMDIR")
    listed_images = {str(i.path) for i in result.instances}
    assert listed_images <= {str(p) for p in expected}
    assert len(listed_images) + sum(1 for p, _ in result.skipped if p in expected) == len(expected)


def test_cli_converts_a_dicomdir_path(tmp_path):
    from typer.testing import CliRunner

    from convert.cli import app

    make_media(tmp_path / "cd", series=2, slices=3)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "cd" / "DICOMDIR"), str(out) + "/"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.nii.gz"))) == 2


_PART = st.one_of(st.sampled_from(["..", ".", "", "A", "a", "IM000001", "IM000001;1", "x:y", "C:", "/", "\\",
                                   "../A", "A/../../B", "SUB"]),
                  st.text(min_size=0, max_size=12))


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(_PART, st.lists(_PART, max_size=5)))
def test_referenced_file_ids_never_resolve_outside_the_media(value):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media"
        (media / "SUB").mkdir(parents=True)
        (media / "SUB" / "IM000001").write_bytes(b"x")
        (media / "a").write_bytes(b"x")
        (Path(tmp) / "B").write_bytes(b"x")  # outside the media
        parts = _components(value)
        if parts is None:
            return
        assert all(p not in ("..", ".") and ":" not in p for p in parts)
        found, reason = _Listing().resolve(media, parts)
        assert (found is None) != (reason is None)
        if found is not None:
            assert media in found.parents and found.is_file()
