"""convert/batch/sources.py: folders and archives (zip, tar, nested) opened safely for the scan and the conversion."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert.batch import sources
from convert.batch.sources import ArchiveError, link_inside, member_parts, open_source
from convert.errors import InputNotFoundError


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _tar_special(path: Path, info: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(info)
    return path


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders of this test go under tmp_path/t (to prove nothing is left or written beside them)."""
    temp = tmp_path / "t"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_a_folder_is_read_in_place(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(b"x")
    with open_source(tmp_path) as source:
        assert source.roots == [tmp_path] and not source.is_archive and not source.expanded
        assert source.display(tmp_path / "a" / "x.dcm") == str(tmp_path / "a" / "x.dcm")


def test_a_single_file_is_its_own_root(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(b"x")
    with open_source(path) as source:
        assert source.roots == [path]


def test_missing_input_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="nope"):
        with open_source(tmp_path / "nope.zip"):
            pass


@pytest.mark.parametrize("suffix,mode", [(".zip", None), (".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_an_archive_with_a_zip_inside_is_extracted_into_a_temporary_folder(tmp_path: Path, private_temp: Path,
                                                                           suffix: str, mode: str | None) -> None:
    inner = _zip(tmp_path / "inner.zip", {"deep/y.dcm": b"y"}).read_bytes()
    members = {"CT/x.dcm": b"x", "README.txt": b"r", "more/inner.zip": inner}
    archive = tmp_path / f"exam{suffix}"
    _zip(archive, members) if mode is None else _tar(archive, members, mode)
    before = archive.read_bytes()
    with open_source(archive) as source:
        assert source.is_archive and len(source.roots) == 2
        assert _files(source.roots[0]) == {"CT/x.dcm", "README.txt", "more/inner.zip"}
        assert _files(source.roots[1]) == {"deep/y.dcm"}
        assert all(str(r).startswith(str(private_temp)) for r in source.roots)
        assert source.display(source.roots[0] / "CT" / "x.dcm") == f"{archive}!CT/x.dcm"
        assert source.display(source.roots[1] / "deep" / "y.dcm") == f"{archive}!more/inner.zip!deep/y.dcm"
        assert source.expanded == {source.roots[0] / "more" / "inner.zip"}
    assert not any(private_temp.iterdir()), "the temporary folder is removed"
    assert archive.read_bytes() == before


def test_a_zip_inside_a_folder_is_expanded_without_touching_the_folder(tmp_path: Path, private_temp: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"a")
    _zip(folder / "sub.zip", {"b.dcm": b"b"})
    listing = sorted(os.listdir(folder))
    with open_source(folder) as source:
        assert source.roots[0] == folder and len(source.roots) == 2
        assert source.expanded == {folder / "sub.zip"}
        assert source.display(source.roots[1] / "b.dcm") == f"{folder / 'sub.zip'}!b.dcm"
    assert sorted(os.listdir(folder)) == listing and not any(private_temp.iterdir())


def test_archives_nested_too_deep_are_reported_not_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "NESTED_LEVELS", 1)
    level2 = _zip(tmp_path / "l2.zip", {"z.dcm": b"z"}).read_bytes()
    level1 = _zip(tmp_path / "l1.zip", {"l2.zip": level2}).read_bytes()
    archive = _zip(tmp_path / "top.zip", {"l1.zip": level1})
    with open_source(archive) as source:
        assert len(source.roots) == 2
        assert source.problems == [(f"{archive}!l1.zip!l2.zip", "archive nested more than 1 levels deep: not expanded")]


def test_a_corrupt_archive_named_by_the_user_raises_one_inside_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArchiveError, match="bad.zip: not a readable archive"):
        with open_source(bad):
            pass
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "bad.tar.gz").write_bytes(b"\x1f\x8b garbage")
    (folder / "ok.dcm").write_bytes(b"ok")
    with open_source(folder) as source:
        assert source.roots == [folder]
        ((name, reason),) = source.problems
        assert name == str(folder / "bad.tar.gz") and "not a readable archive" in reason


@pytest.mark.parametrize("name", ["../evil.dcm", "/etc/evil", "a/../../evil", "..\\..\\evil", "C:/evil", "C:\\x"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_members_escaping_the_folder_are_refused_naming_the_member(tmp_path: Path, private_temp: Path, name: str,
                                                                   kind: str) -> None:
    members = {"ok.dcm": b"ok", name: b"evil"}
    archive = _zip(tmp_path / "x.zip", members) if kind == "zip" else _tar(tmp_path / "x.tar", members, "w")
    with pytest.raises(ArchiveError) as caught:
        with open_source(archive):
            pass
    assert repr(name) in str(caught.value) and str(archive) in str(caught.value)
    assert not (tmp_path / "evil.dcm").exists() and not any(private_temp.iterdir())


@pytest.mark.parametrize("case", ["symlink-out", "symlink-abs", "hardlink-out", "chardev", "fifo"])
def test_tar_links_out_and_special_files_are_refused(tmp_path: Path, private_temp: Path, case: str) -> None:
    info = tarfile.TarInfo("sub/member")
    if case == "symlink-out":
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    elif case == "symlink-abs":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif case == "hardlink-out":
        info.type, info.linkname = tarfile.LNKTYPE, "../outside"
    elif case == "chardev":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    else:
        info.type = tarfile.FIFOTYPE
    archive = _tar_special(tmp_path / "x.tar", info)
    with pytest.raises(ArchiveError, match="'sub/member'"):
        with open_source(archive):
            pass
    assert not any(private_temp.iterdir())


def test_a_tar_link_inside_the_archive_is_kept(tmp_path: Path) -> None:
    info = tarfile.TarInfo("sub/link.dcm")
    info.type, info.linkname = tarfile.SYMTYPE, "../ok.txt"
    with open_source(_tar_special(tmp_path / "x.tar", info)) as source:
        assert (source.root / "sub" / "link.dcm").read_bytes() == b"ok"


def test_a_zip_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "../../etc/passwd")
    with pytest.raises(ArchiveError, match="'link' is a link pointing outside"):
        with open_source(archive):
            pass


def test_member_count_limit_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_MEMBERS", 3)
    archive = _zip(tmp_path / "many.zip", {f"{n}.dcm": b"x" for n in range(5)})
    with pytest.raises(ArchiveError, match="more than 3 members"):
        with open_source(archive):
            pass


def test_size_limit_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_BYTES", 1 << 30)
    archive = _tar(tmp_path / "big.tar", {"a.dcm": b"x" * 100}, "w")
    monkeypatch.setattr(sources, "MAX_BYTES", 50)
    with pytest.raises(ArchiveError, match="uncompressed"):
        with open_source(archive):
            pass


def test_member_name_rules() -> None:
    assert member_parts("a/./b//c.dcm") == ("a", "b", "c.dcm")
    assert member_parts("a\\b") == ("a", "b")
    for bad in ("../a", "/a", "\\a", "a/../../b", "C:a", "a\x00b"):
        assert member_parts(bad) is None, bad
    assert link_inside("a/b/link", "../c") and link_inside("a/link", "c/../d")
    assert not link_inside("a/link", "../../c") and not link_inside("link", "/etc") and not link_inside("l", "..")


_NAME_PARTS = st.sampled_from(["..", ".", "", "a", "b.dcm", "C:", "~", "é", " ", "..."])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_NAME_PARTS, min_size=1, max_size=5), seps=st.lists(st.sampled_from(["/", "\\"]), min_size=5,
       max_size=5), lead=st.sampled_from(["", "/", "\\"]), kind=st.sampled_from(["zip", "tar"]))
def test_hostile_member_names_never_write_outside_the_temporary_folder(tmp_path_factory: pytest.TempPathFactory,
                                                                       parts: list[str], seps: list[str], lead: str,
                                                                       kind: str) -> None:
    name = lead + "".join(p + s for p, s in zip(parts, seps))[:-1]
    if not name.strip("/\\"):
        return
    base = tmp_path_factory.mktemp("hostile")
    temp = base / "deep" / "er" / "t"
    temp.mkdir(parents=True)
    members = {"ok.dcm": b"ok", name: b"evil"}
    archive = _zip(base / "x.zip", members) if kind == "zip" else _tar(base / "x.tar", members, "w")
    old = tempfile.tempdir
    tempfile.tempdir = str(temp)
    try:
        with open_source(archive) as source:
            extracted = [p for p in temp.rglob("*") if p.is_file()]
            assert all(any(str(p).startswith(str(r) + os.sep) for r in source.roots) for p in extracted)
    except ArchiveError as exc:
        shown = {repr(name), repr(name.rstrip("/"))}  # tarfile drops a trailing "/" from member names
        assert any(s in str(exc) for s in shown) or "not a readable archive" in str(exc)
    finally:
        tempfile.tempdir = old
    assert sorted(p.name for p in base.rglob("*") if p.is_file()) == [archive.name], "nothing written outside"
    assert not any(temp.iterdir())


def _messy_folder(root: Path) -> Path:
    """Two series, one of them in a zip, with hidden files and folders and text files beside them."""
    from fixtures.dicom_series import make_non_dicom_files, make_series

    paths, _ = make_series(root / "exam" / "ct", slices=3)
    zipped, _ = make_series(root / "staging", "sagittal", slices=2)
    _zip(root / "exam" / "more.zip", {f"sag/{p.name}": p.read_bytes() for p in zipped})
    for p in zipped:
        p.unlink()
    (root / "staging").rmdir()
    (root / "exam" / ".hidden").mkdir()
    (root / "exam" / ".hidden" / "copy.dcm").write_bytes(paths[0].read_bytes())
    (root / "exam" / "ct" / ".copy.dcm").write_bytes(paths[0].read_bytes())
    _zip(root / "exam" / ".hidden.zip", {"x.dcm": paths[0].read_bytes()})
    make_non_dicom_files(root / "exam" / "docs")
    return root / "exam"


def test_a_folder_is_walked_once_for_its_archives_and_its_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_source walks the folder to find archives; the scan takes that walk's listing instead of walking
    again (each folder of the input and of every extraction is listed once)."""
    from convert.batch.run import plan_dicom_tree

    src = _messy_folder(tmp_path / "in")
    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(str(path)) or real_scandir(path))
    plan = plan_dicom_tree(src)
    monkeypatch.undo()
    assert len(plan.jobs) == 2
    listed = [p for p in listed if os.path.isabs(p)]  # not the removal of the extraction (by file descriptor)
    assert len(listed) == 5  # exam, exam/ct, exam/docs, the zip's extraction and its sag folder
    assert len(listed) == len(set(listed)), sorted(listed)  # no folder listed twice
    assert {Path(p).name for p in listed if Path(p).is_relative_to(src)} == {"exam", "ct", "docs"}  # not .hidden


def test_the_scan_of_a_listing_is_the_scan_of_a_walk_hidden_files_included(tmp_path: Path) -> None:
    """The listing open_source keeps follows iter_files' rules (names starting with "." left out, FIFOs
    and unreadable folders reported): scanning it finds what scanning the folder finds."""
    from convert.dicom.scan import list_files, scan

    src = _messy_folder(tmp_path / "in")
    os.mkfifo(src / "docs" / "pipe")
    with open_source(src) as source:
        assert list(source.listings) == source.roots and len(source.roots) == 2  # the folder and the zip
        for root in source.roots:
            listing = source.listings[root]
            assert listing == list_files(root)
            assert not any(part.startswith(".") for p in listing.files for part in p.relative_to(root).parts)
            walked, given = scan(root), scan(root, listing=listing)
            assert [i.path for i in given.instances] == [i.path for i in walked.instances]
            assert given.skipped == walked.skipped
        assert (src / "docs" / "pipe") in {p for p, _ in source.listings[src].errors}
        with pytest.raises(ValueError):
            scan(source.roots[1], listing=source.listings[src])
