"""Atomic output: write to temporary names in the target folder, rename when complete.

A crash, an exception or Ctrl-C inside the ``with`` block removes the
temporaries and leaves no file under a final name. Multi-file outputs
(``.hdr``/``.img``, ``.nhdr`` + data) are renamed in the order given, so put
the file that makes the set "visible" (the header) last.

A process killed outright (SIGKILL, power loss) cannot remove its
temporaries. Their names say whose they are
(``.<name>.<pid>-<host><random>.partial<ext>``: the writing process and a tag of
the machine), so a later run can prove one stale (written on this machine by a
process that no longer exists) and :func:`remove_stale_temporaries` deletes
exactly those, never another file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import socket
import stat
from pathlib import Path
from typing import Iterator, Sequence

from convert.errors import OutputExistsError, OutputWriteError


#: A temporary name of :func:`temporary_name`: ``.<target name>.<pid>-<host tag><8 random hex>.partial<ext>``.
TEMPORARY_NAME = re.compile(r"\A\.(?P<target>.+)\.(?P<pid>[1-9][0-9]{0,9})-(?P<host>[0-9a-f]{6})[0-9a-f]{8}"
                            r"\.partial(?P<ext>(\.[^./]+){0,2})\Z", re.DOTALL)


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    """Six hex digits naming this machine (host name and machine id), in every temporary name.

    A process id proves a temporary stale only on the machine that wrote it (an
    output folder may be shared over the network): another machine's temporaries
    are never removed.
    """
    machine = b""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            machine = Path(path).read_bytes().strip()
            break
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace") + b"\0" + machine).hexdigest()[:6]


def temporary_name(target: Path) -> Path:
    """A hidden, unique name beside ``target`` that keeps its extension(s) and names its writer.

    Keeping the extension matters: libraries such as nibabel pick compression
    from it (``.nii.gz``). The name holds this process's id and :func:`host_tag`
    (see :data:`TEMPORARY_NAME`), so :func:`remove_stale_temporaries` can tell a
    leftover of a killed run from a file being written right now.
    """
    suffix = "".join(target.suffixes[-2:]) if target.name.count(".") >= 2 else target.suffix
    return target.with_name(f".{target.name}.{os.getpid()}-{host_tag()}{secrets.token_hex(4)}.partial{suffix}")


def process_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine and is not a zombie (an exited
    process its parent has not reaped yet, e.g. a killed run's pool worker)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return True  # cannot tell: keep its files
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists
    return state not in (b"Z", b"X")


def stale_temporary(path: Path) -> bool:
    """True when ``path`` is a temporary of :func:`temporary_name` whose writer is provably gone:
    written on this machine (:func:`host_tag`) by a process that no longer exists."""
    match = TEMPORARY_NAME.match(path.name)
    if match is None or match["host"] != host_tag() or not match["target"].endswith(match["ext"]):
        return False
    return not process_alive(int(match["pid"]))


def remove_stale_temporaries(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete the temporaries of killed runs in ``folder`` (and below it when ``recursive``); return them.

    Only regular files named by :func:`temporary_name` on this machine whose
    writing process no longer exists are removed (:func:`stale_temporary`), and
    the temporary folders of :func:`atomic_folder` (a DICOM series being written)
    by the same rule, with what they hold; anything else, including the
    temporaries of a run still going and of another machine, is left alone.
    Symbolic links are neither removed nor followed. A missing ``folder`` gives
    ``[]``; a file that cannot be removed is skipped.
    """
    import shutil

    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    try:
        walk = os.walk(folder) if recursive else iter([(str(folder), [], os.listdir(folder))])
    except OSError:
        return removed
    for root, dirs, names in walk:
        for name in list(names) + list(dirs):
            if ".partial" not in name:
                continue
            path = Path(root, name)
            with contextlib.suppress(OSError):
                if path.is_symlink() or not stale_temporary(path):
                    continue
                if path.is_file():
                    path.unlink()
                elif path.is_dir() and TEMPORARY_NAME.match(name)["ext"] == "":  # type: ignore[index]
                    shutil.rmtree(path)
                    if name in dirs:
                        dirs.remove(name)  # not walked into: it is gone
                else:
                    continue
                removed.append(path)
    return sorted(removed)


#: Folders this process found writable (checked once: a run writes thousands of files into a few
#: folders). A folder that goes away later makes the write itself fail, as an OutputWriteError.
_WRITABLE: set[str] = set()


def _check_parent(target: Path) -> None:
    """Raise unless ``target``'s folder exists and this process may create files in it."""
    parent = os.path.dirname(target) or "."
    if parent in _WRITABLE:
        return
    if not os.path.isdir(parent):
        raise OutputWriteError(f"output folder {Path(parent)} does not exist; create it first", target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(f"no permission to write in folder {Path(parent)}", target)
    if len(_WRITABLE) > 4096:
        _WRITABLE.clear()
    _WRITABLE.add(parent)


def check_writable(targets: Sequence[Path], overwrite: bool) -> None:
    """Raise if any target exists (unless ``overwrite``) or its folder is missing/unwritable."""
    for target in targets:
        try:
            info = os.stat(target)
        except OSError:
            info = None  # absent (or its folder is: said below)
        if info is not None:
            if not overwrite:
                raise OutputExistsError("output already exists; pass --overwrite to replace it", target)
            if stat.S_ISDIR(info.st_mode):
                raise OutputWriteError("output is a folder, not a file", target)
        _check_parent(target)


@contextlib.contextmanager
def atomic_paths(targets: Sequence[Path], overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths for ``targets``; on success rename each into place, in order.

    Raises:
        OutputExistsError: a target exists and ``overwrite`` is False.
        OutputWriteError: the folder is missing/unwritable or the write failed.
    """
    targets = [Path(t) for t in targets]
    check_writable(targets, overwrite)
    temps = [temporary_name(t) for t in targets]
    try:
        yield temps
        if len(temps) > 1:  # every file of a set in place before the first is renamed
            for temp in temps:
                if not os.path.lexists(temp):
                    raise OutputWriteError("writer did not produce this file", temp)
        for temp, target in zip(temps, targets):
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                if os.path.lexists(temp):
                    raise
                raise OutputWriteError("writer did not produce this file", temp) from None
    except BaseException as exc:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, (OutputExistsError, OutputWriteError)):
            for target in targets:  # a folder checked earlier may have gone since: say so precisely
                _WRITABLE.discard(os.path.dirname(target) or ".")
                _check_parent(target)
        if isinstance(exc, OSError):
            raise OutputWriteError(f"could not write output: {exc.strerror or exc}", targets[0]) from exc
        raise


@contextlib.contextmanager
def atomic_file(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Single-file form of :func:`atomic_paths`."""
    with atomic_paths([target], overwrite=overwrite) as temps:
        yield temps[0]


def write_bytes_atomic(target: Path, data: bytes, overwrite: bool = False, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` atomically; ``mode`` sets permissions before the rename."""
    with atomic_file(target, overwrite=overwrite) as temp:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode if mode is not None else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(temp, mode)


@contextlib.contextmanager
def atomic_folder(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``target``; on success it becomes ``target``.

    For outputs that are a folder of files (a DICOM series): every file is
    written into the temporary folder, which is renamed into place only when the
    ``with`` block completes, so a failure, an exception or Ctrl-C never leaves a
    partial series under the final name. ``target`` may already exist as an
    *empty* folder; a non-empty one is replaced only with ``overwrite`` (the old
    folder is moved aside, the new one renamed in, then the old one deleted).

    Raises:
        OutputExistsError: ``target`` is a non-empty folder and ``overwrite`` is False.
        OutputWriteError: ``target`` is a file, its parent folder is missing or
            unwritable, or the write failed.
    """
    import shutil

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputWriteError("output must be a folder (one file per image) but this is a file; "
                               "give a folder name", target)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise OutputExistsError("output folder already holds files; pass --overwrite to replace it", target)
    _check_parent(target)
    temp = temporary_name(target)  # names its writer, as every temporary of ours
    try:
        temp.mkdir()
        yield temp
        if target.is_dir() and any(target.iterdir()):
            old = temporary_name(target.with_name(target.name + ".old"))
            os.replace(target, old)
            os.replace(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.is_dir():
                target.rmdir()
            os.replace(temp, target)
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputWriteError(f"could not write output: {exc.strerror or exc}", target) from exc
        raise
