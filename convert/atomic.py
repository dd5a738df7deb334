"""Atomic output: write to temporary names in the target folder, rename when complete.

A crash, an exception or Ctrl-C inside the ``with`` block removes the
temporaries and leaves no file under a final name. Multi-file outputs
(``.hdr``/``.img``, ``.nhdr`` + data) are renamed in the order given, so put
the file that makes the set "visible" (the header) last.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator, Sequence

from convert.errors import OutputExistsError, OutputWriteError


def temporary_name(target: Path) -> Path:
    """A hidden, unique name beside ``target`` that keeps its extension(s).

    Keeping the extension matters: libraries such as nibabel pick compression
    from it (``.nii.gz``).
    """
    suffix = "".join(target.suffixes[-2:]) if target.name.count(".") >= 2 else target.suffix
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial{suffix}")


def check_writable(targets: Sequence[Path], overwrite: bool) -> None:
    """Raise if any target exists (unless ``overwrite``) or its folder is missing/unwritable."""
    for target in targets:
        if target.exists() and not overwrite:
            raise OutputExistsError("output already exists; pass --overwrite to replace it", target)
        if target.exists() and target.is_dir():
            raise OutputWriteError("output is a folder, not a file", target)
        parent = target.parent
        if not parent.is_dir():
            raise OutputWriteError(f"output folder {parent} does not exist; create it first", target)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputWriteError(f"no permission to write in folder {parent}", target)


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
        for temp in temps:
            if not temp.exists():
                raise OutputWriteError("writer did not produce this file", temp)
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    except BaseException as exc:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
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
    parent = target.parent
    if not parent.is_dir():
        raise OutputWriteError(f"output folder {parent} does not exist; create it first", target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(f"no permission to write in folder {parent}", target)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        temp.mkdir()
        yield temp
        if target.is_dir() and any(target.iterdir()):
            old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
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
