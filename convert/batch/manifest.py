"""The record of an output folder's conversion jobs, so that a rerun resumes instead of redoing.

``OUT_DIR/.medconvert/manifest.jsonl`` holds one JSON object per line:

* ``{"medconvert": "convert output", "format": 1}``: the first line.
* ``{"job": KEY, "state": "begun"}``: a job was handed to a worker; its outputs may exist
  (complete files, each written atomically) without the job being finished.
* ``{"job": KEY, "state": "done", "digest": D, "outputs": [[NAME, SIZE], ...], ...}``: the job
  finished and wrote these files (names relative to OUT_DIR), plus what the report shows
  (label, warnings, thumbnail, index row, seconds).
* ``{"job": KEY, "state": "failed", "digest": D, "error": TEXT}``.

Only the process that runs the plan writes it (workers report back; on a cluster too), one
line per event, appended with a single ``write``: a run killed at any point leaves a readable
record, at worst with a torn last line, which is ignored. A rerun rewrites it compacted (the
last record of each job) atomically before appending.

A job counts as **done** on a rerun when its record says so with the same digest (same inputs,
same options, same medconvert) and every recorded output is in place with its recorded size;
it is skipped. Any other job is (re)done, and may replace the files a job of the same key
wrote before (``begun``/``done``/``failed`` record), but no other existing file.

One run at a time writes into an output folder: :meth:`Manifest.open` takes an exclusive lock
(``flock`` on ``.medconvert/lock``, released by the kernel when the process ends, even killed);
a second concurrent run into the same folder is refused at once instead of racing on the
same files (heudiconv #516).

When the run de-identifies, job keys are hashed (:func:`hashed_key`): the manifest then holds
no UID, path or header text of the input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert.atomic import write_bytes_atomic
from convert.errors import ConvertError, OutputWriteError

#: The folder of medconvert's bookkeeping inside an output folder.
STATE_DIR = ".medconvert"
MANIFEST_NAME = "manifest.jsonl"
MANIFEST_FORMAT = 1
_HEAD = {"medconvert": "convert output", "format": MANIFEST_FORMAT}


def hashed_key(key: str, salt: str) -> str:
    """``key`` as a SHA-256 under ``salt`` (the options fingerprint): no UID reaches the manifest."""
    return hashlib.sha256(f"{salt}\0{key}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass
class Manifest:
    """The job records of one output folder (see the module docstring).

    Attributes:
        path: ``OUT_DIR/.medconvert/manifest.jsonl``.
        records: the last record of each job key found when opened.
    """

    path: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    _fh: Any = field(default=None, repr=False)
    _lock: Any = field(default=None, repr=False)

    @classmethod
    def read(cls, out_dir: Path) -> "Manifest":
        """The manifest of ``out_dir`` (empty when there is none); nothing is written.

        Raises:
            ConvertError: the file exists but is not a manifest this medconvert can read.
        """
        path = out_dir / STATE_DIR / MANIFEST_NAME
        records: dict[str, dict[str, Any]] = {}
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise ConvertError(f"cannot read the record of the earlier run ({exc.strerror}); delete it to "
                               "start afresh", path) from None
        lines = data.split(b"\n")
        try:
            head = json.loads(lines[0])
        except ValueError:
            head = None
        if not isinstance(head, dict) or head.get("medconvert") != _HEAD["medconvert"] \
                or head.get("format") != MANIFEST_FORMAT:
            raise ConvertError("not a conversion record this medconvert can read: delete it (or the folder "
                               f"{STATE_DIR}) to start the output folder afresh", path)
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:  # a torn last line of a killed run
                continue
            if isinstance(record, dict) and isinstance(record.get("job"), str):
                records[record["job"]] = record
        return cls(path, records)

    def is_done(self, key: str, digest: str, out_dir: Path) -> bool:
        """True when job ``key`` finished with ``digest`` and all its outputs are in place, with their sizes."""
        record = self.records.get(key)
        if not record or record.get("state") != "done" or record.get("digest") != digest:
            return False
        for name, size in record.get("outputs") or []:
            try:
                if os.stat(out_dir / name).st_size != size:
                    return False
            except OSError:
                return False
        return bool(record.get("outputs"))

    def owns(self, key: str) -> bool:
        """True when an earlier run handed job ``key`` to a worker: its files may be replaced."""
        return key in self.records

    def open(self) -> None:
        """Lock the output folder for this run, rewrite the manifest compacted (atomically), then keep
        it open for appending.

        Raises:
            ConvertError: another run is writing into the same output folder right now.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_folder(self.path.parent)
            lines = [json.dumps(_HEAD)] + [json.dumps(r, sort_keys=True) for r in self.records.values()]
            write_bytes_atomic(self.path, ("\n".join(lines) + "\n").encode("utf-8"), overwrite=True)
            self._fh = open(self.path, "ab", buffering=0)
        except OSError as exc:
            self.close()
            raise OutputWriteError(f"cannot write the record of this run ({exc.strerror}): the output folder "
                                   "must be writable", self.path.parent) from None

    def append(self, record: dict[str, Any]) -> None:
        """Record one event (one ``write`` of one line) and remember it."""
        self.records[record["job"]] = record
        if self._fh is not None:
            self._fh.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._fh is not None:
            try:
                os.fsync(self._fh.fileno())
            except OSError:
                pass
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _lock_folder(folder: Path) -> Any:
    """An open file holding an exclusive ``flock`` on ``folder/lock`` (None where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return None
    fh = open(folder / "lock", "ab")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ConvertError("another medconvert run is converting into this folder right now: wait for it to "
                           "finish (a rerun then resumes it) or choose another output folder", folder.parent) \
            from None
    return fh
