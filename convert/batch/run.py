"""Convert a DICOM tree (every series) or one series into output files: the conversion jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from convert.atomic import check_writable
from convert.batch.naming import (DEFAULT_NAME, NAME_FIELDS, output_suffixes, render_name, sanitize_name,
                                  series_name_fields, unique_stem)
from convert.batch.report import Report, SeriesOutcome, deidentified_label, redact_series_paths
from convert.dicom.pixels import check_philips_scaling
from convert.dicom.reader import (deidentified_volume, output_stem, read_series_volumes, read_single,
                                  volume_warnings, write_series_outputs, writes_gradient_files)
from convert.dicom.scan import ScanResult, scan
from convert.dicom.series import assemble
from convert.errors import ConvertError, NoDicomError, spell
from convert.volume import Volume


def _output_extension(fmt: Any) -> str:
    """What a series' output name ends with: the format's first extension ("" for a folder: DICOM)."""
    return fmt.extensions[0] if fmt.extensions and not getattr(fmt, "writes_folder", False) else ""


def convert_dicom_tree(src_dir: str | Path, out_dir: str | Path, *, to: str = "nifti-gz",
                       name: str = DEFAULT_NAME, overwrite: bool = False, sidecar: bool = True,
                       sidecar_phi: bool = False, tilt_correct: bool = False, allow_gaps: bool = False,
                       stack_uneven: bool = False, philips_scaling: str = "precise",
                       progress: Callable[[int, int, str], None] | None = None,
                       deidentify: Callable[[Any], Any] | None = None,
                       process: Callable[[Volume], Volume] | None = None,
                       write_options: dict[str, Any] | None = None) -> Report:
    """Convert every series under ``src_dir`` into ``out_dir`` (one file per volume).

    With ``deidentify`` (a function returning a de-identified copy of a pydicom
    Dataset, e.g. a bound :class:`convert.anonymize.Scrubber`), output names,
    sidecars, metadata, series labels, warnings and error messages are all
    derived from de-identified headers, with input file paths redacted; a
    series the de-identifier refuses (burned-in text) fails with its message.

    Each series is isolated: a failure is recorded in the report and the others
    still convert. Diffusion series also get FSL ``.bval``/``.bvec`` files
    (with NIfTI output). An output that already exists fails its series
    (:class:`~convert.errors.OutputExistsError`) unless ``overwrite``. NIfTI outputs get a BIDS-style JSON sidecar (no PHI unless
    ``sidecar_phi``). Output names come from ``name`` (fields from
    :data:`NAME_FIELDS`), sanitised; collisions get ``_2``, ``_3``... suffixes.
    ``philips_scaling`` (``"precise"``, the default, or ``"display"``) picks the
    values of Philips MR series, see :class:`ReadOptions`; the sidecar records it.
    ``process`` (a :class:`convert.process.Pipeline`) is applied to each volume before
    it is written; the sidecar records its steps.
    ``write_options`` go to the format's writer (DICOM output: ``modality``, ``template``, ``enhanced``).

    Raises:
        InputNotFoundError: ``src_dir`` does not exist.
        DicomError: no DICOM image at all under ``src_dir``.
        ConvertError: bad output format or name template, or ``out_dir`` is not a folder.
    """
    from convert.formats import get_format

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    fmt = get_format(to)
    if not fmt.can_write:
        raise ConvertError(f"format '{fmt.name}' can be read but not written")
    render_name(name, {k: "x" for k in NAME_FIELDS})  # validate the template before any work
    check_philips_scaling(philips_scaling)
    if deidentify is not None and sidecar_phi:
        raise ConvertError("a de-identified conversion cannot write patient fields to sidecars: "
                           "drop --sidecar-phi or --anonymize")
    if deidentify is None and "{Pseudonym}" in name:
        raise ConvertError("the name field {Pseudonym} exists only with --anonymize")
    scan_progress = (lambda done, total: progress(done, total, "scanning files")) if progress else None
    result: ScanResult = scan(src_dir, progress=scan_progress)
    report = Report(source=src_dir, skipped=list(result.skipped))
    if not result.instances:
        raise NoDicomError(src_dir, len(result.skipped), result.skipped[0][1] if result.skipped else None)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConvertError("output must be a folder when converting a DICOM tree", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_series = assemble(result.instances)
    report.duplicates = [p for s in all_series for p in s.duplicates]
    claimed: set[str] = set()
    ext = _output_extension(fmt)
    writes_json = sidecar and writes_gradient_files(fmt)
    for n, series in enumerate(all_series):
        label = series.label if deidentify is None else deidentified_label(series)
        outcome = SeriesOutcome(label=label, files=series.paths)
        report.outcomes.append(outcome)
        if progress:
            progress(n, len(all_series), label)
        try:
            volumes = read_series_volumes(series, tilt_correct=tilt_correct, allow_gaps=allow_gaps,
                                          stack_uneven=stack_uneven, philips_scaling=philips_scaling)
            outcome.warnings = list(dict.fromkeys([spell(w) for w in series.warnings]
                                                  + [w for v in volumes for w in volume_warnings(v)]))
            suffixes = output_suffixes(series, volumes, indexed="{Index}" in name)
            for v_index, volume in enumerate(volumes):
                fields = series_name_fields(series, v_index, len(volumes), deidentify)
                if deidentify is not None:
                    volume = deidentified_volume(volume, series, deidentify)
                if process is not None:
                    volume = process(volume)
                stem = render_name(name, fields)
                if suffixes[v_index]:
                    stem = sanitize_name(f"{stem}_{suffixes[v_index]}")
                stem = unique_stem(stem, claimed)
                target = out_dir / f"{stem}{ext}"
                outcome.written.extend(write_series_outputs(
                    series, volume, fmt, target, overwrite=overwrite, sidecar=writes_json,
                    sidecar_phi=sidecar_phi, deidentify=deidentify, warnings=outcome.warnings,
                    write_options=write_options))
        except ConvertError as exc:
            outcome.error = str(exc)
        except MemoryError:
            outcome.error = f"{series.first.path}: not enough memory to read series {series.label}"
        except Exception as exc:  # a bug in one series must not stop the others
            outcome.error = f"{series.first.path}: unexpected {type(exc).__name__}: {exc}"
        if deidentify is not None:
            outcome.error = redact_series_paths(outcome.error, series, src_dir) if outcome.error else outcome.error
            outcome.warnings = [redact_series_paths(w, series, src_dir) for w in outcome.warnings]
    if progress:
        progress(len(all_series), len(all_series), "done")
    return report


def convert_dicom_file(src: str | Path, dst: str | Path, *, to: str | None = None, overwrite: bool = False,
                       sidecar: bool = True, sidecar_phi: bool = False,
                       deidentify: Callable[[Any], Any] | None = None, tilt_correct: bool = False,
                       allow_gaps: bool = False, stack_uneven: bool = False,
                       philips_scaling: str = "precise",
                       process: Callable[[Volume], Volume] | None = None,
                       write_options: dict[str, Any] | None = None) -> tuple[SeriesOutcome, list[Path]]:
    """Convert the one series of a DICOM file or folder to the single file ``dst``.

    Writes what a series gets in :func:`convert_dicom_tree`, beside ``dst``: the
    image, a BIDS-style JSON sidecar (NIfTI outputs, unless ``sidecar=False``; no
    PHI unless ``sidecar_phi``) and FSL ``.bval``/``.bvec`` for a diffusion series
    (``dwi.nii.gz`` -> ``dwi.json``, ``dwi.bval``, ``dwi.bvec``). Every output is
    checked before the series is read.

    Returns:
        The :class:`SeriesOutcome` (files written, image first, and warnings: tilt,
        gaps, uneven spacing, a diffusion series without a usable table...) and the
        input files skipped as duplicates (same SOPInstanceUID and bytes as another).

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False.
        DicomError: no DICOM image, several series or volumes (give an output folder), ...
    """
    from convert.formats import format_for_output

    src, dst = Path(src), Path(dst)
    fmt = format_for_output(dst, to)
    if deidentify is not None and sidecar_phi:
        raise ConvertError("a de-identified conversion cannot write patient fields to sidecars: "
                           "drop sidecar_phi or deidentify")
    stem = output_stem(dst, fmt)
    nifti = writes_gradient_files(fmt)
    early = ([stem.with_name(stem.name + ".json")] if sidecar and nifti else [])
    check_writable(list(fmt.output_paths(dst)) + early, overwrite)  # fail fast, before reading
    volume, series = read_single(src, tilt_correct=tilt_correct, allow_gaps=allow_gaps,
                                 stack_uneven=stack_uneven, philips_scaling=philips_scaling)
    if deidentify is not None:
        volume = deidentified_volume(volume, series, deidentify)  # also refuses burned-in text
    if process is not None:
        volume = process(volume)  # convert.process steps; the sidecar records them
    outcome = SeriesOutcome(label=series.label if deidentify is None else deidentified_label(series),
                            files=series.paths, warnings=volume_warnings(volume))
    outcome.written = write_series_outputs(series, volume, fmt, dst, overwrite=overwrite, sidecar=sidecar,
                                            sidecar_phi=sidecar_phi, deidentify=deidentify,
                                            warnings=outcome.warnings, write_options=write_options)
    return outcome, list(series.duplicates)
