"""Batch inputs: a folder, a ``.zip`` or a ``.tar`` (``.tar.gz``, ``.tgz``...) archive, archives inside expanded.

The one way the archive index (:mod:`convert.batch.index`, ``medconvert scan``) and
the whole-archive conversion open what the user named::

    with open_source("exam.zip") as source:   # extracted into a temporary folder
        for root in source.roots:             # local files: the extraction, then each nested archive's
            result = scan(root, listing=source.listings.get(root))  # the folder walked once
        source.display(path)                  # 'exam.zip!CT/IM0001': how messages name a file

A folder is read in place (never written to). An archive is extracted into a
:class:`tempfile.TemporaryDirectory`, removed when the ``with`` block ends. Archives
found inside (a ``.zip`` in the folder or in the archive) are expanded as well, up
to :data:`NESTED_LEVELS` levels, each into the temporary folder. Nothing is ever
written outside it: a member whose path escapes (absolute, ``..``, a drive letter),
a link pointing outside, a device file or a FIFO is refused with an
:class:`ArchiveError` naming the member (tar archives also go through
:func:`tarfile.data_filter`). :data:`MAX_MEMBERS` and :data:`MAX_BYTES` bound what
one source may extract.

An archive the user named that cannot be read safely raises; one found *inside* is
left out and reported in :attr:`Source.problems`, and the rest is read.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from convert.dicom.scan import Listing, list_files
from convert.errors import ConvertError, InputNotFoundError

#: File names read as archives (lower case).
ARCHIVE_SUFFIXES: tuple[str, ...] = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
#: Archives inside archives expanded (1: a zip in the folder or archive; 2: a zip in that zip).
NESTED_LEVELS = 2
#: Members one source may extract (all its archives together).
MAX_MEMBERS = 1_000_000
#: Uncompressed bytes one source may extract (all its archives together): 512 GiB.
MAX_BYTES = 512 << 30

_DRIVE = re.compile(r"\A[A-Za-z]:")


class ArchiveError(ConvertError):
    """An archive that cannot be read safely: unreadable, a member escaping its folder, a link
    pointing outside, a device file, or more members/bytes than the limits allow."""


def is_archive(path: Path) -> bool:
    """True when ``path``'s name is one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass
class Source:
    """What :func:`open_source` opened.

    Attributes:
        origin: the path the user gave.
        roots: local folders (or one file) holding the files to read: the input itself
            (a folder or a file), or its extraction, then each nested archive's extraction.
        expanded: local paths of the archive files whose content is in ``roots`` (a walk
            of ``roots`` meets them: they are not files to index).
        problems: ``(name, reason)`` of every nested archive left out (unreadable or unsafe),
            ``name`` as :meth:`display` spells it.
        listings: each folder of ``roots`` as the search for archives walked it
            (:func:`convert.dicom.scan.list_files`): give ``listings.get(root)`` to
            :func:`convert.dicom.scan.scan` so that it does not walk the folder again.
    """

    origin: Path
    roots: list[Path]
    expanded: set[Path] = field(default_factory=set)
    problems: list[tuple[str, str]] = field(default_factory=list)
    listings: dict[Path, Listing] = field(default_factory=dict, repr=False)
    _labels: list[tuple[Path, str]] = field(default_factory=list, repr=False)

    @property
    def root(self) -> Path:
        """The first root: the folder (or file) the user gave, or its extraction."""
        return self.roots[0]

    @property
    def is_archive(self) -> bool:
        """True when the input itself is an archive (its files live in a temporary folder)."""
        return self.roots[0] != self.origin

    def relabel(self, text: str) -> str:
        """``text`` (a message) with every temporary extraction path replaced by its archive name:
        ``/tmp/medconvert-source-x/0/CT/IM1: truncated`` -> ``exam.zip!CT/IM1: truncated``."""
        for folder, label in sorted(self._labels, key=lambda fl: len(str(fl[0])), reverse=True):
            text = text.replace(f"{folder}{os.sep}", label).replace(str(folder), label.rstrip("!"))
        return text

    def name(self, path: Path) -> str:
        """A stable name of input ``path`` across runs: relative to the input folder, or the archive
        member's name (:meth:`display`) for a file of an archive."""
        text, prefix = str(path), str(self.origin).rstrip(os.sep) + os.sep
        if not self.is_archive and text.startswith(prefix):  # a prefix test: called for every file of a plan
            return text[len(prefix):].replace(os.sep, "/")
        return self.display(path)

    def display(self, path: Path | str) -> str:
        """How a message names ``path``: ``exam.zip!CT/IM0001`` for an archive member
        (``exam.zip!inner.zip!IM0001`` nested), the path itself for a file of a folder."""
        path = Path(path)
        for folder, label in self._labels:  # sibling folders of one temporary folder: at most one holds it
            try:
                relative = path.relative_to(folder)
            except ValueError:
                continue
            return label + relative.as_posix() if relative.parts else label.rstrip("!")
        return str(path)


@dataclass
class _Budget:
    members: int
    bytes: int

    def take(self, archive: str, members: int, size: int) -> None:
        self.members -= members
        self.bytes -= size
        if self.members < 0:
            raise ArchiveError(f"more than {MAX_MEMBERS:,} members in this input; split the archive", archive)
        if self.bytes < 0:
            raise ArchiveError(f"more than {MAX_BYTES:,} bytes ({MAX_BYTES / 2**30:.3g} GiB) uncompressed in this "
                               "input; split the archive", archive)


@contextlib.contextmanager
def open_source(path: str | Path) -> Iterator[Source]:
    """Open ``path`` (a folder, a file, or an archive) for reading; see the module docstring.

    Yields:
        A :class:`Source`; its temporary folder (if any) is removed when the block ends.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ArchiveError: ``path`` is an archive that cannot be read safely (names the member).
    """
    origin = Path(path)
    if not origin.exists():
        raise InputNotFoundError("no such file or folder; check the path", origin)
    source = Source(origin=origin, roots=[origin])
    if origin.is_file() and not is_archive(origin):
        yield source
        return
    budget = _Budget(MAX_MEMBERS, MAX_BYTES)
    with tempfile.TemporaryDirectory(prefix="medconvert-source-") as temp:
        work = Path(temp)
        if origin.is_dir():
            nested = _archives_under(source, origin)
        else:
            top = work / "0"
            _extract(origin, top, str(origin), budget)
            source.roots = [top]
            source._labels.append((top, f"{origin}!"))
            nested = _archives_under(source, top)
        _expand_nested(source, nested, work, budget, level=1)
        yield source


def has_archives(folder: Path, limit: int = 256) -> bool:
    """True when ``folder`` holds a ``.zip``/``.tar`` archive among its first ``limit`` files (a cheap
    check: a folder of DICOM files is recognised by its files, one of archives by this)."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_archive(Path(name)):
                return True
            seen += 1
            if seen >= limit:
                return False
    return False


def _archives_under(source: Source, folder: Path) -> list[Path]:
    """The archives in ``folder``, from the one walk of it (kept in ``source.listings`` for the scan)."""
    listing = source.listings[folder] = list_files(folder)
    return [p for p in listing.files if is_archive(p)]


def _expand_nested(source: Source, archives: list[Path], work: Path, budget: _Budget, level: int) -> None:
    """Extract each of ``archives`` into a new folder of ``work``; recurse into what they hold."""
    for archive in archives:
        name = source.display(archive)
        if level > NESTED_LEVELS:
            source.problems.append((name, f"archive nested more than {NESTED_LEVELS} levels deep: not expanded"))
            continue
        dest = work / str(len(source.roots))
        try:
            _extract(archive, dest, name, budget)
        except ArchiveError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            source.problems.append((name, exc.message))
            continue
        source.roots.append(dest)
        source.expanded.add(archive)
        source._labels.append((dest, f"{name}!"))
        _expand_nested(source, _archives_under(source, dest), work, budget, level + 1)


def member_parts(name: str) -> tuple[str, ...] | None:
    """The path components of an archive member name, or None when the name escapes its folder.

    ``\\`` counts as a separator (zip files made on Windows); ``.`` and empty components are
    dropped. None for an absolute name, a drive letter, a ``..`` component or a NUL byte.
    """
    if "\x00" in name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        return None
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    if ".." in parts:
        return None
    return parts


def link_inside(member: str, link: str) -> bool:
    """True when a link member named ``member`` whose target is ``link`` stays inside the archive's
    folder (a relative target, resolved from the member's folder, that never climbs above the top)."""
    parts = member_parts(member)
    if parts is None or "\x00" in link or link.startswith(("/", "\\")) or _DRIVE.match(link):
        return False
    depth = len(parts) - 1
    for part in re.split(r"[/\\]", link):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def _inside(dest: Path, parts: tuple[str, ...], label: str, name: str) -> Path:
    """``dest / parts``, proven inside ``dest`` once links already written are resolved."""
    target = dest.joinpath(*parts)
    real, base = os.path.realpath(target), os.path.realpath(dest)
    if os.path.commonpath([real, base]) != base:
        raise ArchiveError(f"member {name!r} would be written outside the archive's folder (through a link); "
                           "the archive was not read", label)
    return target


def _extract(archive: Path, dest: Path, label: str, budget: _Budget) -> None:
    """Extract ``archive`` into the new folder ``dest``; ``label`` names it in messages."""
    dest.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest, label, budget)
        else:
            _extract_tar(archive, dest, label, budget)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise ArchiveError(f"not a readable archive ({detail}); check the file or unpack it yourself",
                           label) from exc


def _refuse(label: str, name: str, why: str) -> ArchiveError:
    return ArchiveError(f"member {name!r} {why}; the archive was not read (remove that member or unpack the "
                        "archive yourself)", label)


def _extract_zip(archive: Path, dest: Path, label: str, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        budget.take(label, len(infos), sum(i.file_size for i in infos))
        for info in infos:
            parts = member_parts(info.filename)
            if parts is None:
                raise _refuse(label, info.filename, "has an absolute path or '..' (it would land outside the "
                              "archive's folder)")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "replace")
                if not link_inside(info.filename, link):
                    raise _refuse(label, info.filename, f"is a link pointing outside the archive ({link!r})")
                continue  # a link inside the archive: its target is extracted as itself
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _refuse(label, info.filename, "is a device file, FIFO or socket")
            if not parts:
                continue
            target = _inside(dest, parts, label, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise _refuse(label, info.filename, "appears twice") from None
            with zf.open(info) as src, os.fdopen(out, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
            stamp = calendar.timegm((*info.date_time, 0, 0, 0))  # the member's time, as tar keeps its own:
            os.utime(target, (stamp, stamp))  # a rerun sees the same files (resume compares size and time)


def _extract_tar(archive: Path, dest: Path, label: str, budget: _Budget) -> None:
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:  # pragma: no cover - Python < 3.10.12 / 3.11.4
        raise ArchiveError("reading tar archives safely needs Python 3.10.12, 3.11.4 or later (tarfile "
                           "filters); unpack the archive yourself", label)
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:  # one pass: a compressed stream is read once
            budget.take(label, 1, max(member.size, 0))
            if member_parts(member.name) is None:
                raise _refuse(label, member.name, "has an absolute path or '..' (it would land outside the "
                              "archive's folder)")
            if member.issym() or member.islnk():
                if member.issym() and not link_inside(member.name, member.linkname):
                    raise _refuse(label, member.name, f"is a link pointing outside the archive ({member.linkname!r})")
            elif not (member.isreg() or member.isdir()):
                raise _refuse(label, member.name, "is a device file, FIFO or socket")
            try:
                checked = data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                raise _refuse(label, member.name, f"is refused by the tar data filter ({exc})") from None
            if checked is None:
                continue
            _inside(dest, member_parts(member.name) or (), label, member.name)
            tf.extract(checked, dest, filter="data")
