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
