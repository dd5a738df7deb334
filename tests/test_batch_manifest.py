"""convert.batch.manifest: the record of finished jobs that a rerun resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from convert.batch.manifest import MANIFEST_NAME, STATE_DIR, Manifest, hashed_key
from convert.errors import ConvertError


def _done(out: Path, key: str = "k", digest: str = "d") -> dict:
    (out / "a.nii.gz").write_bytes(b"x" * 7)
    return {"job": key, "state": "done", "digest": digest, "outputs": [["a.nii.gz", 7]]}


def test_records_survive_a_torn_last_line_and_compaction(tmp_path: Path) -> None:
    manifest = Manifest.read(tmp_path)
    manifest.open()
    manifest.append({"job": "k", "state": "begun"})
    manifest.append(_done(tmp_path))
    manifest.close()
    path = tmp_path / STATE_DIR / MANIFEST_NAME
    with open(path, "ab") as fh:
        fh.write(b'{"job": "other", "state": "do')  # a run killed mid-write
    again = Manifest.read(tmp_path)
    assert set(again.records) == {"k"} and again.is_done("k", "d", tmp_path)
    again.open()
    again.close()
    assert len(path.read_text().splitlines()) == 2  # head + the last record of each job


def test_a_job_is_done_only_with_the_same_digest_and_its_outputs_in_place(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / STATE_DIR / MANIFEST_NAME)
    manifest.append(_done(tmp_path))
    assert manifest.is_done("k", "d", tmp_path)
    assert not manifest.is_done("k", "changed", tmp_path)
    assert not manifest.is_done("unknown", "d", tmp_path)
    (tmp_path / "a.nii.gz").write_bytes(b"x" * 3)  # cut short by someone else
    assert not manifest.is_done("k", "d", tmp_path)
    (tmp_path / "a.nii.gz").unlink()
    assert not manifest.is_done("k", "d", tmp_path)
    assert manifest.owns("k") and not manifest.owns("unknown")


def test_an_unreadable_record_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    (tmp_path / STATE_DIR / MANIFEST_NAME).write_text("not json\n")
    with pytest.raises(ConvertError, match="delete it"):
        Manifest.read(tmp_path)


def test_hashed_keys_hide_the_uid_and_depend_on_the_salt() -> None:
    uid = "1.2.840.113619.2.55.3.604688119"
    assert uid not in hashed_key(uid, "s") and hashed_key(uid, "s") != hashed_key(uid, "t")
    assert hashed_key(uid, "s") == hashed_key(uid, "s")


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    first = Manifest.read(tmp_path)
    first.open()
    second = Manifest.read(tmp_path)
    with pytest.raises(ConvertError, match="another medconvert run is converting into this folder"):
        second.open()
    first.close()
    second.open()  # free again once the first run ends
    second.close()
