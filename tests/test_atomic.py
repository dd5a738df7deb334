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
