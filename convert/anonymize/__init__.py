"""DICOM de-identification: PS3.15 Annex E Basic Profile and options, keyed pseudonyms, audit.

>>> import convert
>>> clean = convert.anonymize(dataset, key=b"secret")                 # doctest: +SKIP
>>> report = convert.anonymize("in_dir", "out_dir", key="key.bin")    # doctest: +SKIP

``convert.anonymize`` is this package *and* callable: calling it is
:func:`anonymize`. ``from convert.anonymize import anonymize`` works too.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Iterable

from pydicom.dataset import Dataset

from convert.anonymize.audit import FileLog, Report
from convert.anonymize.profile import OPTIONS
from convert.anonymize.pseudonym import Pseudonymizer, load_key, process_key
from convert.anonymize.scrubber import BURNED_IN_RULES, SAFE_PRIVATE, Scrubber, ScrubResult

__all__ = ["OPTIONS", "BURNED_IN_RULES", "SAFE_PRIVATE", "FileLog", "Pseudonymizer", "Report", "ScrubResult",
           "Scrubber", "anonymize", "anonymize_dataset"]


def anonymize_dataset(ds: Dataset, *, key: bytes | None = None, keep: Iterable[str] = (),
                      allow_burned_in: bool = False) -> Dataset:
    """Return a NEW de-identified copy of ``ds`` (``ds`` is untouched), file_meta included.

    The copy has the PS3.15 Basic Profile applied (plus the options in
    ``keep``, see :data:`OPTIONS`), UIDs/PatientID/PatientName replaced by keyed
    pseudonyms, ``MediaStorageSOPInstanceUID`` equal to the new
    ``SOPInstanceUID``, and PatientIdentityRemoved / DeidentificationMethod /
    DeidentificationMethodCodeSequence set. Pixel data is copied bit for bit.

    Args:
        ds: the dataset to de-identify.
        key: HMAC key (bytes); None -> a random per-process key (pseudonyms
            then differ between processes; the key is never printed or logged).
        keep: option names from :data:`OPTIONS`.
        allow_burned_in: let objects that may carry burned-in text through,
            flagged with BurnedInAnnotation YES, instead of raising.

    Raises:
        convert.errors.AnonymizationError: burned-in text suspected (see
            :data:`BURNED_IN_RULES`) and not ``allow_burned_in``; bad options.
    """
    key_bytes = process_key() if key is None else load_key(key)[0]
    return Scrubber(key_bytes, keep, allow_burned_in).scrub(ds).dataset


def anonymize(src: str | Path | Dataset, dst: str | Path | None = None, *,
              key: bytes | str | Path | None = None, keep: Iterable[str] = (), allow_burned_in: bool = False,
              audit: str | Path | None = None, overwrite: bool = False, jobs: int | None = None,
              progress: bool = False, reports: bool = False, workers: int | None = None) -> Dataset | Report:
    """De-identify a Dataset (returns a new Dataset) or a file/folder tree (writes ``dst``, returns a Report).

    The :class:`~convert.report.Report` is the run report of conversions too (``kind="anonymize"``):
    ``report.outcomes`` has one outcome per DICOM input file, ``report.ok``, ``report.written``,
    ``report.done``, ``report.failed`` / ``report.refused`` (outcomes: ``label``, ``source``,
    ``error``), ``report.flagged``, ``report.summary()``.

    Args:
        src: a pydicom Dataset, a DICOM file, or a folder tree (non-DICOM files
            in it are skipped and counted).
        dst: output file or folder (required for a path). Files are written as
            ``dst/<pseudo PatientID>/<pseudo StudyUID>/<pseudo SeriesUID>/<pseudo SOPInstanceUID>.dcm``;
            a single input file may also go to an explicit ``*.dcm`` path.
        key: raw bytes, a path to a key file, or None (then env ``MEDCONVERT_KEY``
            (the key itself) or ``MEDCONVERT_KEY_FILE``, else a random key).
        keep: PS3.15 options (:data:`OPTIONS`), e.g. ``("modified-dates",)``.
        allow_burned_in: write suspected burned-in objects, flagged, instead of refusing them.
        audit: path of an audit JSON (0600) with original -> pseudonym mapping
            and per-file action counts (see :mod:`convert.anonymize.audit`).
        overwrite: replace existing outputs / audit file.
        jobs: processes for large trees (default: all cores; 1 = serial).
        progress: show a progress bar on stderr.
        reports: also write ``report.json`` and ``report.html`` (no PHI) into a ``dst`` folder,
            as ``medconvert anonymize`` does (:func:`convert.anonymize.run.anonymize_path`).
        workers: the older name of ``jobs``.

    Raises:
        ConvertError: before anything is written when ``src`` is missing,
            ``dst`` is inside ``src``, or ``dst`` (or ``audit``) exists without ``overwrite``.
        AnonymizationError: (Dataset input) refused burned-in object; bad options or key.
    """
    from convert.dicom.header import Header

    if isinstance(src, Header):
        src = src.dataset()
    if isinstance(src, Dataset):
        key_bytes, _ = load_key(key)
        out = Scrubber(key_bytes, keep, allow_burned_in).scrub(src).dataset
        if dst is not None:
            from convert.atomic import atomic_file

            from convert.anonymize.run import save_dataset

            with atomic_file(Path(dst), overwrite=overwrite) as tmp:
                save_dataset(out, tmp)
        return out
    if dst is None:
        from convert.errors import ConvertError

        raise ConvertError("an output file or folder (dst) is required to anonymize a path", src)
    from convert.anonymize.run import anonymize_path

    return anonymize_path(src, dst, key=key, keep=keep, allow_burned_in=allow_burned_in, audit=audit,
                          overwrite=overwrite, jobs=jobs if jobs is not None else workers, progress=progress,
                          reports=reports)


class _CallableModule(types.ModuleType):
    """Lets ``convert.anonymize(...)`` call :func:`anonymize` while staying a package."""

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return anonymize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
