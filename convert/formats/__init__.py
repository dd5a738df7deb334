"""Format registry: name -> adapter; detection by extension, confirmed by magic bytes.

Every adapter module exposes one object satisfying :class:`Format`. Adding a
format is one module, one line in :data:`_ADAPTERS`, and one row in the
round-trip test matrix.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from convert.errors import (CorruptFileError, InputNotFoundError, NoDicomError, UnsupportedFormatError,
                            register_format_names)
from convert.volume import Volume


@runtime_checkable
class Format(Protocol):
    """What every format adapter provides."""

    name: str
    """Short name used by ``--to`` (``"nifti"``)."""
    extensions: tuple[str, ...]
    """Lower-case file extensions, with the dot (``(".nii",)``)."""
    description: str
    """One line for ``medconvert formats``."""
    can_read: bool
    can_write: bool

    def sniff(self, path: Path) -> bool:
        """True when the file's magic bytes say it is this format (cheap, reads a few bytes)."""

    def read(self, path: Path) -> Volume:
        """Read ``path`` into a Volume (RAS+ affine); raise a ConvertError if broken."""

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, **options: Any) -> list[Path]:
        """Write atomically; return every file written (e.g. ``.hdr`` and ``.img``)."""

    def output_paths(self, path: Path) -> list[Path]:
        """Every file a write to ``path`` creates (for overwrite checks)."""


# Order matters: first match wins for writing an ambiguous extension (".hdr" -> NIfTI pair).
_ADAPTERS: tuple[tuple[str, str], ...] = (
    ("convert.formats.nifti", "NIFTI"),
    ("convert.formats.nifti", "NIFTI_GZ"),
    ("convert.formats.nifti", "NIFTI_PAIR"),
    ("convert.formats.nrrd", "NRRD"),
    ("convert.formats.nrrd", "NHDR"),
    ("convert.formats.minc", "MINC2"),
    ("convert.formats.analyze", "ANALYZE"),
    ("convert.formats.legacy", "MINC1"),
    ("convert.formats.legacy", "PARREC"),
    ("convert.formats.npz", "NPZ"),
    ("convert.formats.npz", "NPY"),
    ("convert.dicom.reader", "DICOM"),
    ("convert.dicom.seg", "DICOM_SEG"),
)

_ALIASES = {"nii": "nifti", "nii.gz": "nifti-gz", "niigz": "nifti-gz", "minc": "minc2", "mnc": "minc2",
            "hdr": "nifti-pair", "dcm": "dicom", "par": "parrec"}


def all_formats() -> list[Format]:
    """Every registered adapter, in registry order (skips adapters whose module is absent)."""
    formats = []
    for module_name, attr in _ADAPTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an adapter not built yet
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        formats.append(getattr(module, attr))
    return formats


register_format_names(lambda: (f.name for f in all_formats()))  # error messages spell "--to <format>"


def get_format(name: str) -> Format:
    """Adapter by name (or alias such as ``"nii.gz"``); raises :class:`UnsupportedFormatError`."""
    key = name.lower().lstrip(".")
    key = _ALIASES.get(key, key)
    for fmt in all_formats():
        if fmt.name == key:
            return fmt
    names = ", ".join(f.name for f in all_formats())
    raise UnsupportedFormatError(f"unknown format '{name}'; choose one of: {names}")


def extension_of(path: Path) -> str:
    """The longest registered extension ``path`` ends with (lower-case), or its last suffix."""
    name = path.name.lower()
    best = ""
    for fmt in all_formats():
        for ext in fmt.extensions:
            if name.endswith(ext) and len(ext) > len(best):
                best = ext
    return best or path.suffix.lower()


def _files_under(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under ``folder`` (for messages: how many were looked at)."""
    import os

    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def _by_extension(path: Path) -> list[Format]:
    ext = extension_of(path)
    return [f for f in all_formats() if ext and ext in f.extensions]


def detect(path: str | Path) -> Format:
    """Which adapter reads ``path``: by extension, confirmed by magic bytes.

    Raises:
        InputNotFoundError: the path does not exist.
        CorruptFileError: the file is empty, or its content does not match its extension.
        UnsupportedFormatError: nothing recognises it.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file or folder; check the path", path)
    readable = [f for f in all_formats() if f.can_read]
    if path.is_dir():
        for fmt in readable:
            if fmt.sniff(path):
                return fmt
        raise NoDicomError(path, sum(1 for _ in _files_under(path)))
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputNotFoundError(f"cannot open file: {exc.strerror}", path) from exc
    if size == 0:
        raise CorruptFileError("file is empty", path)
    candidates = [f for f in _by_extension(path) if f.can_read]
    for fmt in candidates:
        if fmt.sniff(path):
            return fmt
    others = [f for f in readable if f not in candidates]
    for fmt in others:
        if fmt.sniff(path):
            return fmt
    if candidates:
        names = " or ".join(sorted({f.name for f in candidates}))
        raise CorruptFileError(
            f"extension says {names} but the content does not match (bad magic bytes or header); "
            "the file may be truncated, corrupt or mis-named",
            path,
        )
    raise UnsupportedFormatError(
        "unrecognised file type; run 'medconvert formats' to see what can be read", path
    )


#: Why a ``.dcm`` output name is refused: a DICOM series is a folder of files.
DICOM_OUTPUT_IS_A_FOLDER = ("DICOM output is a folder of files (one per slice), not one .dcm file; give a folder "
                            "name and --to dicom (medconvert convert SRC OUT_DIR --to dicom)")


def format_for_output(path: str | Path, to: str | None = None) -> Format:
    """Adapter that writes ``path``: ``to`` if given, else chosen by extension."""
    if to:
        fmt = get_format(to)
    else:
        candidates = [f for f in _by_extension(Path(path)) if f.can_write and not getattr(f, "writes_folder", False)]
        if not candidates and any(f.name == "dicom" for f in _by_extension(Path(path))):
            raise UnsupportedFormatError(DICOM_OUTPUT_IS_A_FOLDER, path)
        if not candidates:
            writable = ", ".join(f.name for f in all_formats() if f.can_write)
            raise UnsupportedFormatError(
                f"cannot tell the output format from the name; use an extension such as .nii.gz "
                f"or pass --to with one of: {writable}",
                path,
            )
        fmt = candidates[0]
    if not fmt.can_write:
        raise UnsupportedFormatError(f"format '{fmt.name}' can be read but not written", path)
    return fmt


def read_magic(path: Path, size: int, offset: int = 0) -> bytes:
    """Read ``size`` bytes at ``offset`` (gzip-transparent for ``.gz``); b"" if unreadable (corrupt gzip too)."""
    import gzip
    import zlib

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            if offset:
                fh.read(offset)
            return fh.read(size)
    except (OSError, EOFError, zlib.error):
        return b""
