"""Errors raised by medconvert.

Every error a user can cause is a subclass of :class:`ConvertError`. Messages
name the file involved and say what to do; the CLI prints ``str(error)`` as a
single line and exits with code 1.
"""

from __future__ import annotations

from pathlib import Path


class ConvertError(Exception):
    """Base class of every error medconvert raises on purpose.

    Args:
        message: what went wrong and what the user can do about it.
        path: the file or folder the error is about, if any; it is prefixed to
            the message so every error names its file.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


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


class OutputWriteError(ConvertError):
    """The output could not be written (permissions, disk full, bad folder)."""


class GeometryError(ConvertError):
    """The geometry is inconsistent or cannot be represented (singular affine...)."""


class DicomError(ConvertError):
    """A DICOM-specific problem (series assembly, pixel decoding...)."""


class AnonymizationError(ConvertError):
    """De-identification refused or failed for an input (e.g. burned-in text)."""
