"""The Python API: ``load``, ``save``, ``convert``, ``describe``.

>>> import convert
>>> vol = convert.load("brain.nii.gz")          # doctest: +SKIP
>>> convert.save(vol, "brain.nrrd")             # doctest: +SKIP
>>> convert.convert("brain.mnc", "brain.nii.gz")  # doctest: +SKIP
>>> report = convert.convert("dicom_dir", "out_dir")  # every series, as the CLI  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from convert.formats import detect, format_for_output
from convert.volume import Volume

PathLike = str | Path


def load(path: PathLike) -> Volume:
    """Read any supported image file (or a DICOM series folder) into a :class:`Volume`.

    The format is chosen by extension and confirmed by magic bytes. Raises a
    :class:`convert.errors.ConvertError` subclass naming the file when the input
    is missing, empty, truncated or not an image.
    """
    path = Path(path)
    fmt = detect(path)
    return fmt.read(path)


def save(volume: Volume, path: PathLike, *, to: str | None = None, overwrite: bool = False,
         format: str | None = None, **options: Any) -> list[Path]:
    """Write ``volume`` to ``path`` atomically; returns every file written.

    Args:
        volume: the volume to write.
        path: output file; its extension picks the format unless ``to`` is given.
            For ``to="dicom"`` it is the output FOLDER (one file per slice).
        to: format name (see ``medconvert formats``), e.g. ``"nifti-gz"`` or ``"dicom"``.
        overwrite: replace existing outputs (default: refuse with OutputExistsError).
        format: the same as ``to`` (either spelling; not both).
        **options: format-specific options (e.g. ``compresslevel``; DICOM: ``modality``,
            ``template``, ``enhanced``, see :func:`convert.dicom.writer.write_series`).
    """
    if format is not None and to is not None and format != to:
        raise TypeError(f"save() got to={to!r} and format={format!r}; give one of them")
    fmt = format_for_output(path, to or format)
    return fmt.write(volume, Path(path), overwrite=overwrite, **options)


class Written(list):  # type: ignore[type-arg]
    """What :func:`convert` wrote for a single output: the files (a ``list`` of Paths, image first,
    then JSON sidecar and ``.bval``/``.bvec`` when there are any) and ``warnings`` (one line each)."""

    def __init__(self, paths: Any = (), warnings: Any = (), duplicates: Any = ()) -> None:
        super().__init__(paths)
        self.warnings: list[str] = list(warnings)
        #: input files skipped as copies of another (same SOPInstanceUID and bytes), e.g. a DICOMDIR media copy
        self.duplicates: list[Path] = list(duplicates)


def _dicom_folder_like(src: Path) -> bool:
    """A folder holding DICOM files (or archives of them), a media DICOMDIR file (it converts the files
    it indexes), or a ``.zip``/``.tar`` archive (:mod:`convert.batch.sources`)."""
    from convert.batch.sources import has_archives, is_archive
    from convert.dicom.dicomdir import is_dicomdir_name
    from convert.dicom.reader import DICOM

    if src.is_file():
        return is_dicomdir_name(src) or is_archive(src)
    return src.is_dir() and (DICOM.sniff(src) or has_archives(src))


def is_dicom_source(src: PathLike) -> bool:
    """A DICOM file, a folder holding DICOM files, or a media DICOMDIR file."""
    from convert.dicom.reader import DICOM

    src = Path(src)
    return _dicom_folder_like(src) or (src.is_file() and DICOM.sniff(src))


def is_folder_target(dst: PathLike) -> bool:
    """An output FOLDER: an existing folder, a name ending in a separator, or a new name without extension."""
    import os

    from convert.formats import extension_of

    dst_text = str(dst)
    dst = Path(dst)
    if dst.is_dir() or dst_text.endswith(("/", os.sep)):
        return True
    return not dst.exists() and "." not in dst.name and not extension_of(dst).strip(".")


def dicom_tree_job(src: PathLike, dst: PathLike) -> bool:
    """True when :func:`convert` converts every series of ``src`` into the folder ``dst``:
    ``src`` is a DICOM folder (or DICOMDIR file) and ``dst`` :func:`is_folder_target`."""
    return _dicom_folder_like(Path(src)) and is_folder_target(dst)


def convert(src: PathLike, dst: PathLike, *, to: str | None = None, overwrite: bool = False,
            name: str | None = None, sidecar: bool = True, sidecar_phi: bool = False,
            tilt_correct: bool = False, allow_gaps: bool = False, stack_uneven: bool = False,
            philips_scaling: str = "precise", deidentify: Callable[[Any], Any] | None = None,
            progress: Callable[[int, int, str], None] | None = None, process: Any = None,
            jobs: int | None = None, client: Any = None, include: Sequence[str] = (),
            exclude: Sequence[str] = (), reports: bool = True, dry_run: bool = False, **options: Any) -> Any:
    """Read ``src`` and write it to ``dst``; ``src`` is never modified. ``medconvert convert`` calls this.

    Three jobs, chosen from the arguments:

    * **DICOM folder -> output folder** (``dst`` an existing folder, or a new name
      without extension, or ending in ``/``): every series is converted into the
      folder exactly as ``medconvert convert DICOM_DIR OUT_DIR`` does (same
      names, ``name`` template, JSON sidecars, ``.bval``/``.bvec`` for diffusion
      series; one failing series does not stop the others). Returns the
      :class:`~convert.batch.Report`: ``report.outcomes`` (per series:
      ``label``, ``written``, ``warnings``, ``error``), ``report.written``,
      ``report.failed``, ``report.ok``, ``report.skipped``.
    * **DICOM file or one-series folder -> one file**: the image plus, for NIfTI,
      its JSON sidecar and, for a diffusion series, FSL ``.bval``/``.bvec`` beside
      it (``dwi.nii.gz`` -> ``dwi.json``, ``dwi.bval``, ``dwi.bvec``).
    * **any other image file -> one file** (format from ``dst``'s extension or ``to``).

    Temporary files that a killed earlier run left in the output folder (``dst``, or the
    folder of a ``dst`` file) are removed first, with a warning: only those of our naming
    whose writing process no longer exists (:func:`convert.atomic.remove_stale_temporaries`).

    The single-output jobs return a :class:`Written`: the list of files written
    plus ``.warnings`` and ``.duplicates`` (e.g. a diffusion series whose gradient table is unusable:
    no ``.bval``/``.bvec``, and a warning that says why).

    Args:
        to: output format name (see ``medconvert formats``); folder jobs default to ``"nifti-gz"``.
        overwrite: replace existing outputs (default: refuse with OutputExistsError).
        name: folder jobs: output name template (:data:`convert.batch.naming.NAME_FIELDS`).
        sidecar: write JSON sidecars beside NIfTI outputs of DICOM input (default True).
        sidecar_phi: include patient-identifying fields in sidecars (default False).
        tilt_correct: DICOM: resample gantry-tilted CT onto an orthogonal grid.
        allow_gaps: DICOM: convert series with missing slices by resampling across the gap.
        stack_uneven: DICOM: stack unevenly spaced slices as stored (default: resample
            them onto an even grid).
        philips_scaling: DICOM: Philips MR values, ``"precise"`` (default, as dcm2niix) or
            ``"display"`` (see :func:`convert.dicom.reader.read_series`).
        deidentify: a function returning a de-identified copy of a pydicom Dataset (e.g. a
            bound :class:`convert.anonymize.Scrubber`); names, sidecars and messages then come
            from de-identified headers.
        progress: folder jobs: ``progress(done, total, label)`` callback.
        jobs: folder jobs: worker processes (default: every core; 1: this process only).
        client: folder jobs: a Dask ``distributed.Client``; the series are converted on its
            workers (which must see ``src`` and ``dst`` at the same paths), with the same
            names, manifest and report as locally.
        include: folder jobs: convert only series matching every filter over index fields, e.g.
            ``["modality=CT"]`` (:func:`convert.batch.plan.parse_filter`).
        exclude: folder jobs: leave out series matching any of these filters.
        reports: folder jobs: write ``report.json`` and ``report.html`` (with a thumbnail per
            series) into ``dst`` (default True).
        dry_run: folder jobs: plan only, write nothing; the report's outcomes carry the planned
            status and output name (:func:`convert.batch.run.convert_dicom_tree`).
        process: processing steps applied to every volume after reading, before writing: a
            :class:`convert.process.Pipeline`, a list of steps (``Volume -> Volume`` functions,
            applied in the order given) or one such function. The steps are recorded in
            ``Volume.history`` and in the JSON sidecar (see ``docs/processing.md``).
        **options: format-specific writer options for non-DICOM sources (e.g. ``compresslevel``); with
            ``to="dicom"`` the DICOM writer's options for any source (``modality``, ``template``, ``enhanced``).
    """
    from convert.batch import naming, run
    from convert.process.pipeline import as_pipeline

    pipeline = as_pipeline(process)
    tree = dicom_tree_job(src, dst)  # before Path() drops a trailing separator
    src, dst = Path(src), Path(dst)
    if tree and not dry_run:  # the output folder and the run's record in it (convert.batch.manifest.STATE_DIR)
        from convert.batch.manifest import STATE_DIR

        _remove_stale_temporaries(dst, dst / STATE_DIR)
    elif not tree:
        _remove_stale_temporaries(dst.parent)
    read_options = {"tilt_correct": tilt_correct, "allow_gaps": allow_gaps, "stack_uneven": stack_uneven,
                    "philips_scaling": philips_scaling}
    if tree or is_dicom_source(src):
        write_options = _dicom_write_options(to, options, deidentify)
        if options and write_options is None:
            raise TypeError(f"convert() got options that do not apply to DICOM input: {', '.join(options)}")
        if tree:
            default = naming.DEFAULT_ANONYMIZED_NAME if deidentify is not None else naming.DEFAULT_NAME
            return run.convert_dicom_tree(src, dst, to=to or "nifti-gz", name=name or default,
                                             overwrite=overwrite, sidecar=sidecar, sidecar_phi=sidecar_phi,
                                             progress=progress, deidentify=deidentify, process=pipeline,
                                             write_options=write_options, jobs=jobs, client=client,
                                             include=include, exclude=exclude, reports=reports, dry_run=dry_run,
                                             **read_options)
        outcome, duplicates = run.convert_dicom_file(src, dst, to=to, overwrite=overwrite, sidecar=sidecar,
                                                        sidecar_phi=sidecar_phi, deidentify=deidentify,
                                                        process=pipeline, write_options=write_options,
                                                        **read_options)
        return Written(outcome.written, outcome.warnings, duplicates)
    if src.is_dir():
        detect(src)  # a folder without DICOM: "no DICOM images found in SRC" (not a complaint about DST)
    fmt = format_for_output(dst, to)  # fail on a bad output name before reading anything
    volume = load(src)
    options = _dicom_write_options(to, options, deidentify) or options
    if pipeline is None:
        return Written(fmt.write(volume, dst, overwrite=overwrite, **options))
    volume = pipeline(volume)
    return Written(_write_processed(volume, fmt, dst, overwrite=overwrite, sidecar=sidecar, **options))


def _write_processed(volume: Volume, fmt: Any, dst: Path, *, overwrite: bool, sidecar: bool,
                     **options: Any) -> list[Path]:
    """Write a processed non-DICOM volume, plus ``NAME.json`` recording its steps (``sidecar``) when the
    format has no place for them (every format but .npz/.npy, which carry the history)."""
    from convert.atomic import check_writable
    from convert.dicom.sidecar import write_sidecar
    from convert.process.pipeline import sidecar_with_history

    from convert.formats import extension_of

    json_path = None
    if sidecar and fmt.name not in ("npz", "npy"):
        ext = extension_of(dst)
        json_path = dst.with_name((dst.name[: -len(ext)] if ext else dst.name) + ".json")
    check_writable(list(fmt.output_paths(dst)) + ([json_path] if json_path else []), overwrite)
    written = list(fmt.write(volume, dst, overwrite=overwrite, **options))
    if json_path is not None:
        data, _ = sidecar_with_history({}, volume.history)
        written.append(write_sidecar(json_path, data, overwrite=overwrite))
    return written


def _remove_stale_temporaries(folder: Path, *others: Path) -> None:
    """Remove what killed runs left in the output folder and ``others`` (only temporaries of ours whose
    writer is gone: :func:`convert.atomic.remove_stale_temporaries`) and say so with one warning."""
    from convert.atomic import remove_stale_temporaries

    removed = [p for f in (folder, *others) for p in remove_stale_temporaries(f)]
    if removed:
        import warnings

        warnings.warn(f"removed {len(removed)} stale temporary file(s) that an interrupted run left in {folder}",
                      UserWarning, stacklevel=3)


def _dicom_write_options(to: str | None, options: dict[str, Any], deidentify: Any) -> dict[str, Any] | None:
    """The DICOM writer's options when the output is DICOM (``to="dicom"`` or ``"dicom-seg"``), else None.

    ``deidentify`` then also cleans what a ``template`` series lends (patient and study identifiers).
    """
    if (to or "").lower() not in ("dicom", "dcm", "dicom-seg"):
        return None
    out = dict(options)
    if deidentify is not None and out.get("template") is not None:
        out["deidentify"] = deidentify
    return out


def describe(volume: Volume, format_name: str | None = None) -> dict[str, Any]:
    """A JSON-ready summary: format, shape, dtype, spacing (mm), orientation, affine, value range.

    A colour volume has dtype ``"RGB24 (uint8 R, G, B)"``, ``colour`` ``"RGB"`` and a
    value range over its three channels; scalar volumes have ``colour`` None.
    """
    lo, hi = volume.value_range()
    return {
        "format": format_name,
        "shape": list(volume.shape),
        "dtype": "RGB24 (uint8 R, G, B)" if volume.is_rgb else str(volume.dtype),
        "colour": "RGB" if volume.is_rgb else None,
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "orientation": volume.orientation,
        "origin_ras_mm": [round(float(o), 6) for o in volume.origin],
        "affine_ras": np.round(volume.affine, 6).tolist(),
        "scaling": {"slope": volume.slope, "intercept": volume.intercept},
        "value_range": [lo, hi],
        "time_step_s": volume.meta.time_step,
        "modality": volume.meta.modality,
        "units": volume.meta.units,
    }
