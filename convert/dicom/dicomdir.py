"""DICOMDIR (PS3.10 media directory) as an index of the files it references.

A DICOMDIR's directory records name files by ``ReferencedFileID`` (0004,1500):
a list of path components relative to the folder holding the DICOMDIR. On
media written by the standard (ISO 9660) the components are upper case, at
most 8 characters and without extensions; the same media mounted elsewhere
may show them in lower case, with a trailing ``.`` or an ISO version suffix
(``;1``). :func:`read_dicomdir` resolves each reference against the folder as it
is on disk, component by component: exact name first, then a case-insensitive
match ignoring those decorations.

:func:`add_dicomdir_references` is the hook :func:`convert.dicom.scan.scan` calls: it
adds the files a DICOMDIR lists but a plain walk does not reach (hidden
folders, names the walk skips by extension), never a file twice, and reports
every listed file that is missing (or ambiguous) so the user learns the media
is incomplete. A listed file that is present but unreadable goes through the
normal indexing and is skipped with the reason why.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = ["DicomdirIndex", "is_dicomdir_name", "read_dicomdir", "add_dicomdir_references"]

_VERSION_SUFFIX = re.compile(r";\d*$")


@dataclass
class DicomdirIndex:
    """The files one DICOMDIR references.

    Attributes:
        path: the DICOMDIR file.
        files: referenced files found on disk (paths built from the on-disk names), in record order.
        problems: ``(path or reference, reason)`` for references that are missing, ambiguous or invalid,
            or for a DICOMDIR that cannot be read at all.
    """

    path: Path
    files: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def is_dicomdir_name(path: Path) -> bool:
    """True for a file named ``DICOMDIR`` (any case, optionally ``DICOMDIR.`` / ``DICOMDIR;1``)."""
    return _media_name(path.name) == "DICOMDIR"


def _media_name(name: str) -> str:
    """A file name as ISO 9660 media would spell it: upper case, no version suffix, no trailing dot."""
    return _VERSION_SUFFIX.sub("", name).rstrip(".").upper()


class _Listing:
    """Cached directory listings for case-insensitive lookups."""

    def __init__(self) -> None:
        self._cache: dict[str, list[str] | None] = {}

    def names(self, folder: Path) -> list[str] | None:
        key = str(folder)
        if key not in self._cache:
            try:
                self._cache[key] = sorted(os.listdir(folder))
            except OSError:
                self._cache[key] = None
        return self._cache[key]

    def resolve(self, base: Path, components: list[str]) -> tuple[Path | None, str | None]:
        """On-disk path of ``components`` under ``base``, or (None, reason)."""
        current = base
        for n, component in enumerate(components):
            names = self.names(current)
            if names is None:
                return None, f"folder {current} cannot be listed"
            last = n == len(components) - 1
            if component in names:
                current = current / component
            else:
                wanted = _media_name(component)
                matches = [name for name in names if _media_name(name) == wanted]
                if not matches:
                    return None, "listed in the DICOMDIR but missing on disk"
                if len(matches) > 1:
                    return None, f"listed in the DICOMDIR but ambiguous on disk ({', '.join(matches)})"
                current = current / matches[0]
            if not last and not current.is_dir():
                return None, "listed in the DICOMDIR but a path component is not a folder"
        if not current.is_file():
            return None, "listed in the DICOMDIR but not a regular file"
        return current, None


def _components(value: object) -> list[str] | None:
    """ReferencedFileID as path components, or None when it cannot name a file inside the media."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    parts: list[str] = []
    for item in items:
        text = str(item).strip()
        for part in text.replace("/", "\\").split("\\"):  # some writers put the whole path in one value
            if part:
                parts.append(part)
    if not parts or any(p in (".", "..") or ":" in p for p in parts):
        return None
    return parts


def read_dicomdir(path: Path, listing: _Listing | None = None) -> DicomdirIndex:
    """Parse DICOMDIR ``path`` and resolve its ``ReferencedFileID`` entries on disk.

    Never raises for bad content: an unreadable DICOMDIR gives an index with one problem.
    """
    import pydicom

    from convert.dicom.validity import install

    install()

    index = DicomdirIndex(path=path)
    try:
        ds = pydicom.dcmread(str(path), force=True)
        records = ds.get("DirectoryRecordSequence")
    except Exception as exc:  # pydicom raises many kinds of errors on corrupt files
        index.problems.append((path, f"DICOMDIR unreadable ({type(exc).__name__}: {exc}); "
                                     "its files are still found by walking the folder"))
        return index
    if records is None:
        index.problems.append((path, "DICOMDIR has no directory records; its files are found by walking"))
        return index
    listing = listing or _Listing()
    base = path.parent
    seen: set[str] = set()
    for record in records:
        if "ReferencedFileID" not in record:
            continue
        raw = record.get("ReferencedFileID")
        parts = _components(raw)
        shown = "\\".join(str(v) for v in ([raw] if isinstance(raw, str) else (raw or [])))
        if parts is None:
            index.problems.append((base / shown, "invalid ReferencedFileID in the DICOMDIR"))
            continue
        found, reason = listing.resolve(base, parts)
        if found is None:
            index.problems.append((base.joinpath(*parts), str(reason)))
            continue
        if str(found) not in seen:
            seen.add(str(found))
            index.files.append(found)
    return index


def add_dicomdir_references(files: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]], set[str]]:
    """Extend a walked file list with what its DICOMDIRs reference.

    Args:
        files: the files a folder walk found (any DICOMDIR among them is read).

    Returns:
        ``(files, problems, listed)``: the walked files plus referenced files the
        walk missed (appended, each once), the problems (missing/ambiguous
        references, unreadable DICOMDIRs) as ``(path, reason)``, and the paths
        (as strings) that some DICOMDIR lists, so a caller can say so when one
        of them turns out unreadable.
    """
    out = list(files)
    known = {str(p) for p in out}
    problems: list[tuple[Path, str]] = []
    listed: set[str] = set()
    listing = _Listing()
    for path in [p for p in out if is_dicomdir_name(p)]:
        index = read_dicomdir(path, listing)
        problems.extend(index.problems)
        for found in index.files:
            listed.add(str(found))
            if str(found) not in known:
                known.add(str(found))
                out.append(found)
    return out, problems, listed
