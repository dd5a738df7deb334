"""Errors raised by medconvert.

Every error a user can cause is a subclass of :class:`ConvertError`. Messages
name the file involved and say what to do; the CLI prints ``str(error)`` as a
single line and exits with code 1.

Exit codes of ``medconvert`` (docs/errors.md): 0 everything done; 1 an error, nothing (or
nothing more) done; 2 a usage error (bad flags); :data:`EXIT_COMPLETED_WITH_FAILURES` (3) a
folder or archive run that wrote its other outputs but failed some series or files;
130 interrupted (Ctrl-C; rerun the same command to resume).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

#: Exit code of a folder/archive run that completed with failures: some series (or files) failed,
#: the others were written; the report says which and why.
EXIT_COMPLETED_WITH_FAILURES = 3

#: How a message names an option, per context: messages are written with the CLI
#: flag (``--overwrite``); outside the command line :func:`spell` renders each
#: flag listed here as the API keyword (``overwrite=True``). Flags not listed are
#: CLI-only and stay as written.
API_SPELLINGS: dict[str, str] = {
    "--overwrite": "overwrite=True",
    "--allow-gaps": "allow_gaps=True",
    "--stack-uneven": "stack_uneven=True",
    "--tilt-correct": "tilt_correct=True",
    "--allow-burned-in": "allow_burned_in=True",
    "--sidecar-phi": "sidecar_phi=True",
    "--to": "to='<format>'",
}

_CONTEXT: contextvars.ContextVar[str] = contextvars.ContextVar("medconvert_spelling", default="api")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w-])")


def spell(text: str) -> str:
    """``text`` with its option names spelled for the current context.

    Messages are written with CLI flags; in the API context (the default) each
    flag of :data:`API_SPELLINGS` becomes its keyword spelling, so Python users
    read ``overwrite=True`` and command-line users ``--overwrite``.
    """
    if _CONTEXT.get() == "cli":
        return text
    if "--to " in text:  # "--to nifti" -> "to='nifti'" (format names only: "--to with ..." is prose)
        text = re.sub(r"(?<![\w-])--to ([a-z][a-z0-9-]*)",
                      lambda m: f"to='{m.group(1)}'" if m.group(1) in _format_names() else m.group(0), text)
    return _FLAG.sub(lambda m: API_SPELLINGS.get(m.group(0), m.group(0)), text)


#: Where :func:`spell` learns the format names (``--to nifti`` -> ``to='nifti'``): set by the format
#: registry (:mod:`convert.formats` calls :func:`register_format_names` on import; this module
#: imports nothing of the package). Until then no word after ``--to`` is a format name.
_FORMAT_NAMES: list[Callable[[], Iterable[str]]] = []


def register_format_names(names: Callable[[], Iterable[str]]) -> None:
    """Tell :func:`spell` which words after ``--to`` are format names: ``names()`` is called when a
    message names one (so the registry imports its adapters only then). The last one registered wins."""
    _FORMAT_NAMES[:] = [names]


def _format_names() -> set[str]:
    """The registered format names (empty before :mod:`convert.formats` is imported)."""
    return set(_FORMAT_NAMES[0]()) if _FORMAT_NAMES else set()


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block (the ``medconvert`` command line), messages name options by their CLI flags."""
    token = _CONTEXT.set("cli")
    try:
        yield
    finally:
        _CONTEXT.reset(token)


#: C0 controls (ESC, BEL, CR, LF, TAB...), DEL and C1 controls (CSI 0x9b...): never sent raw to a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``...).

    File names and header values reach messages and ``info`` tables; a crafted one
    must not rewrite the user's terminal (title, colours, cursor) or break a
    one-line message. The CLI passes everything it prints from a file through this.
    """
    return _CONTROL.sub(lambda m: _NAMED_CONTROLS.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class ConvertError(Exception):
    """Base class of every error medconvert raises on purpose.

    Args:
        message: what went wrong and what the user can do about it. Options are
            named by their CLI flag (``--overwrite``); ``str(error)`` spells them
            for the context (:func:`spell`: ``overwrite=True`` in Python).
        path: the file or folder the error is about, if any; it is prefixed to
            the message so every error names its file.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)

    def __str__(self) -> str:
        return spell(super().__str__())


class InputNotFoundError(ConvertError):
    """The input path does not exist or cannot be read."""


class UnsupportedFormatError(ConvertError):
    """The file type or requested output format is not one medconvert handles."""


class CorruptFileError(ConvertError):
    """The file claims a format but its content is broken (truncated, bad header...)."""


class UnsupportedDataError(ConvertError):
    """The data is valid but cannot be represented (e.g. a dtype a format cannot hold)."""


class OutputExistsError(ConvertError):
    """The output exists and overwriting was not requested."""


class OutputMismatchError(OutputExistsError):
    """The output folder holds the output of an earlier run with another key or other options:
    writing into it would mix two de-identifications."""


class OutputWriteError(ConvertError):
    """The output could not be written (permissions, disk full, bad folder)."""


class GeometryError(ConvertError):
    """The geometry is inconsistent or cannot be represented (singular affine...)."""


class DicomError(ConvertError):
    """A DICOM-specific problem (series assembly, pixel decoding...)."""


class NoDicomError(DicomError):
    """A folder holds no DICOM image at all (empty, or only other files).

    Args:
        path: the folder.
        looked_at: how many files were looked at (0: the folder is empty).
        example: why one of them is not DICOM, if known.
    """

    def __init__(self, path: str | Path, looked_at: int = 0, example: str | None = None) -> None:
        if looked_at:
            detail = f"{looked_at} file(s) looked at, none is a DICOM image" + (f" ({example})" if example else "")
        else:
            detail = "the folder is empty"
        super().__init__(f"no DICOM images found in {path}: {detail}; check the path")
        self.path = Path(path)


class MissingDependencyError(ConvertError):
    """An optional dependency a feature needs is not installed (the message says what to install)."""


class AnonymizationError(ConvertError):
    """De-identification refused or failed for an input (e.g. burned-in text)."""


@contextlib.contextmanager
def reading(path: str | Path, what: str, corrupt: str,
            broken: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Name ``path`` in every error raised while a format adapter reads it.

    A :class:`ConvertError` without a path (e.g. a :class:`GeometryError` from
    :class:`convert.volume.Volume`) is raised again as ``"invalid geometry or data in
    {what}: ..."`` with the path; the library errors in ``broken`` (a truncated or
    corrupt file) become :class:`CorruptFileError` ``"{corrupt}: {error}"``.
    """
    try:
        yield
    except ConvertError as exc:
        if exc.path is None:
            raise type(exc)(f"invalid geometry or data in {what}: {exc.message}", path) from exc
        raise
    except broken as exc:
        raise CorruptFileError(f"{corrupt}: {exc}", path) from exc
