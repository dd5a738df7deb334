"""Atomic output (convert/atomic.py): no half-written file under a final name, ever."""

from __future__ import annotations

import os
import stat

import pytest

from convert.atomic import atomic_file, atomic_paths, temporary_name, write_bytes_atomic
from convert.errors import OutputExistsError, OutputWriteError


def test_temporary_name_keeps_double_extension(tmp_path):
    tmp = temporary_name(tmp_path / "brain.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.startswith(".brain.nii.gz.") and tmp.name.endswith(".nii.gz")


def test_success_renames_in_order(tmp_path):
    targets = [tmp_path / "a.img", tmp_path / "a.hdr"]
    with atomic_paths(targets) as temps:
        for t in temps:
            t.write_text("x")
        assert not any(p.exists() for p in targets)  # nothing visible before completion
    assert all(p.read_text() == "x" for p in targets)
    assert sorted(os.listdir(tmp_path)) == ["a.hdr", "a.img"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_nothing(tmp_path, error):
    target = tmp_path / "out.nii"
    with pytest.raises(type(error)):
        with atomic_file(target) as temp:
            temp.write_bytes(b"half")
            raise error
    assert os.listdir(tmp_path) == []


def test_existing_output_refused_unless_overwrite(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="out.bin"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    write_bytes_atomic(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"


def test_missing_folder(tmp_path):
    with pytest.raises(OutputWriteError, match="does not exist"):
        write_bytes_atomic(tmp_path / "nope" / "x.bin", b"1")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputWriteError, match="permission"):
            write_bytes_atomic(folder / "x.bin", b"1")
    finally:
        folder.chmod(0o755)


def test_mode_applied(tmp_path):
    write_bytes_atomic(tmp_path / "secret.json", b"{}", mode=0o600)
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_writer_that_produced_nothing(tmp_path):
    with pytest.raises(OutputWriteError, match="did not produce"):
        with atomic_file(tmp_path / "x.nii"):
            pass
    assert os.listdir(tmp_path) == []


def test_unwritable_folder_reported_even_as_root(tmp_path, monkeypatch):
    # CI runs as root, where permission bits do not stop writes: simulate the OS's answer.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(tmp_path) else real_access(p, m))
    with pytest.raises(OutputWriteError, match="no permission"):
        write_bytes_atomic(tmp_path / "x.bin", b"1")
    assert os.listdir(tmp_path) == []


def test_os_error_during_write_becomes_output_write_error(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputWriteError, match="Permission denied"):
        write_bytes_atomic(tmp_path / "x.bin", b"1")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- stale temporaries (issue 17)
def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _as_written_by(temp, pid: int, host: str | None = None):
    from convert.atomic import host_tag

    name = temp.name.replace(f".{os.getpid()}-{host_tag()}", f".{pid}-{host or host_tag()}")
    return temp.with_name(name)


def test_temporary_name_names_its_writer(tmp_path):
    from convert.atomic import TEMPORARY_NAME, host_tag

    temp = temporary_name(tmp_path / "scan 1.nii.gz")
    match = TEMPORARY_NAME.match(temp.name)
    assert match and match["target"] == "scan 1.nii.gz" and match["ext"] == ".nii.gz"
    assert int(match["pid"]) == os.getpid() and match["host"] == host_tag()
    assert temporary_name(tmp_path / "scan 1.nii.gz") != temp  # unique per call


def test_only_provably_stale_temporaries_are_removed(tmp_path):
    from convert.atomic import remove_stale_temporaries, stale_temporary

    dead = _dead_pid()
    (tmp_path / "sub").mkdir()
    stale = _as_written_by(temporary_name(tmp_path / "a.nii.gz"), dead)
    deep = _as_written_by(temporary_name(tmp_path / "sub" / "b.dcm"), dead)
    live = temporary_name(tmp_path / "c.nii")  # this process: still writing
    other_host = _as_written_by(temporary_name(tmp_path / "d.nii"), dead, host="000000")
    wrong_ext = tmp_path / stale.name.replace(".partial.nii.gz", ".partial.nrrd")  # not a name we make
    keep = [live, other_host, wrong_ext, tmp_path / ".a.nii.gz.partial.nii.gz", tmp_path / "a.nii.gz",
            tmp_path / f".x.{dead}-abcdef12345678.partial"]  # a user's files, an old random name
    for path in [stale, deep] + keep:
        path.write_bytes(b"x")
    link = _as_written_by(temporary_name(tmp_path / "e.nii"), dead)
    link.symlink_to(tmp_path / "a.nii.gz")  # a link is never removed (nor followed)
    assert stale_temporary(stale) and not stale_temporary(live) and not stale_temporary(other_host)
    assert remove_stale_temporaries(tmp_path) == [stale]  # not recursive by default
    assert remove_stale_temporaries(tmp_path, recursive=True) == [deep]
    assert all(p.exists() for p in keep) and link.is_symlink()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_a_killed_writers_temporary_series_folder_is_removed_too(tmp_path):
    """atomic_folder's temporary (a DICOM series being written) left by a killed run: removed with its files;
    a live writer's, another machine's and a user's look-alike folder stay."""
    from convert.atomic import remove_stale_temporaries

    dead = _dead_pid()
    stale = _as_written_by(temporary_name(tmp_path / "series"), dead)
    live = temporary_name(tmp_path / "other")
    other_host = _as_written_by(temporary_name(tmp_path / "third"), dead, host="000000")
    for folder in (stale, live, other_host, tmp_path / "user.partial"):
        folder.mkdir()
        (folder / "IM0001.dcm").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale] and not stale.exists()
    assert live.is_dir() and other_host.is_dir() and (tmp_path / "user.partial").is_dir()
    nested = _as_written_by(temporary_name(tmp_path / "out" / "2_CT"), dead)
    nested.mkdir(parents=True)
    (nested / "IM0001.dcm").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, recursive=True) == [nested]


def test_atomic_folder_leaves_nothing_on_failure_and_replaces_only_with_overwrite(tmp_path):
    from convert.atomic import atomic_folder

    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "series") as temp:
            (temp / "IM0001.dcm").write_bytes(b"1")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(tmp_path / "series") as temp:
        (temp / "IM0001.dcm").write_bytes(b"1")
    with pytest.raises(OutputExistsError):
        with atomic_folder(tmp_path / "series"):
            pass
    with atomic_folder(tmp_path / "series", overwrite=True) as temp:
        (temp / "IM0002.dcm").write_bytes(b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    assert [p.name for p in (tmp_path / "series").iterdir()] == ["IM0002.dcm"]


def test_a_zombie_counts_as_gone():
    import subprocess
    import sys
    import time

    from convert.atomic import process_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not yet reaped: a zombie
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
        except OSError:
            pytest.skip("no /proc on this system")
        time.sleep(0.01)
    assert not process_alive(proc.pid)
    proc.wait()
    assert not process_alive(proc.pid) and process_alive(os.getpid())


def test_a_folder_removed_after_an_earlier_write_is_reported_precisely(tmp_path):
    """Folders are checked once per process; one removed later is still named, not a bare OSError."""
    import shutil

    folder = tmp_path / "out"
    folder.mkdir()
    write_bytes_atomic(folder / "a.bin", b"1")
    shutil.rmtree(folder)
    with pytest.raises(OutputWriteError, match="does not exist; create it first"):
        write_bytes_atomic(folder / "b.bin", b"2")
    folder.mkdir()
    write_bytes_atomic(folder / "b.bin", b"2")  # and written again once it is back
    assert (folder / "b.bin").read_bytes() == b"2"


def test_a_folder_that_became_unwritable_is_reported_precisely(tmp_path, monkeypatch):
    write_bytes_atomic(tmp_path / "a.bin", b"1")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(tmp_path) else real_access(p, m))
    with pytest.raises(OutputWriteError, match="no permission"):
        with atomic_file(tmp_path / "b.bin") as temp:
            raise PermissionError(13, "Permission denied", str(temp))
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]
