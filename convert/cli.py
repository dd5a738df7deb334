"""The ``medconvert`` command line: thin wrappers that parse, call the API, render.

Every :class:`~convert.errors.ConvertError` becomes one red line on stderr and
exit code 1; usage errors exit 2 (typer/click). Set ``MEDCONVERT_DEBUG=1`` to
see the traceback of an unexpected error.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import typer
from rich.console import Console

from convert.errors import ConvertError

app = typer.Typer(
    name="medconvert",
    help="Convert medical images between formats (DICOM, NIfTI, NRRD, MINC2, Analyze) and strip PHI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from convert import __version__

        console.print(f"medconvert {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the medconvert version and exit."),
) -> None:
    """Convert medical images between formats (DICOM, NIfTI, NRRD, MINC2, Analyze) and strip PHI."""

F = TypeVar("F", bound=Callable[..., Any])


class PhilipsScaling(str, enum.Enum):
    """``--philips-scaling`` values (the API's ``philips_scaling``)."""

    precise = "precise"
    display = "display"


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one red line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn ConvertError (and unexpected errors) into one red line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from convert.errors import cli_spelling

        with cli_spelling():  # messages name options by their CLI flags (--overwrite)
            return _run_reporting_errors(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _run_reporting_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                return fn(*args, **kwargs)
            finally:
                for warning in caught:  # one yellow line each, no source line
                    err_console.print(f"[yellow]warning:[/] {_escape(str(warning.message))}", highlight=False,
                                      soft_wrap=True)
    except ConvertError as exc:
        raise fail(_escape(str(exc))) from None
    except KeyboardInterrupt:
        raise fail("interrupted; no partial output was left behind (run the same command again to resume)",
                   130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: still one line, traceback on request
        if os.environ.get("MEDCONVERT_DEBUG"):
            raise
        raise fail(
            _escape(f"unexpected {type(exc).__name__}: {exc} (set MEDCONVERT_DEBUG=1 for details; please report)")
        ) from None


def _escape(text: str) -> str:
    """``text`` safe to print: rich markup escaped, control characters shown as escapes
    (:func:`convert.errors.printable`: a crafted file name cannot drive the terminal)."""
    from rich.markup import escape

    from convert.errors import printable

    return escape(printable(text))


@app.command("convert")
@handle_errors
def convert_cmd(
    src: Path = typer.Argument(..., help="Input file (any readable format) or DICOM folder."),
    dst: Path = typer.Argument(..., help="Output file (its extension picks the format unless --to is given), or "
                               "an output FOLDER for a DICOM folder: one file per series."),
    to: Optional[str] = typer.Option(None, "--to", help="Output format name (see 'medconvert formats')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    name: Optional[str] = typer.Option(None, "--name",
                             help="DICOM folder -> folder: output name template over SeriesNumber, "
                             "SeriesDescription, ProtocolName, Modality, EchoNumber, AcquisitionNumber, ImageType, "
                             "SequenceName, BodyPartExamined, Manufacturer, Split, Index, Pseudonym (--anonymize "
                             "only). Default '{SeriesNumber}_{SeriesDescription}', or "
                             "'{Pseudonym}_{SeriesNumber}_{Modality}' with --anonymize."),
    tilt_correct: bool = typer.Option(False, "--tilt-correct", help="Resample gantry-tilted CT onto an orthogonal "
                                      "grid (default: keep the tilt as a sheared affine)."),
    allow_gaps: bool = typer.Option(False, "--allow-gaps", help="Convert series with missing slices by resampling "
                                    "across the gap (default: refuse them)."),
    stack_uneven: bool = typer.Option(False, "--stack-uneven", help="Stack unevenly spaced slices as stored "
                                      "(the slices between the first and last are then misplaced; the warning "
                                      "says by how many mm). Default: resample them onto an even grid."),
    resample_uneven: bool = typer.Option(False, "--resample-uneven", hidden=True,
                                         help="The default (kept for old scripts): resample uneven slices."),
    philips_scaling: Optional[PhilipsScaling] = typer.Option(
        None, "--philips-scaling", help="Philips MR (classic and enhanced): 'precise' floating-point values from "
        "the private scale slope, as dcm2niix writes them (default), or 'display' values (RescaleSlope/Intercept "
        "only, as the console shows them). The sidecar records the choice and the scale factors."),
    philips_precise: bool = typer.Option(False, "--philips-precise", hidden=True,
                                         help="Same as --philips-scaling precise (the default); kept for old scripts."),
    sidecar: bool = typer.Option(True, "--sidecar/--no-sidecar", help="Write a BIDS-style JSON sidecar beside "
                                 "NIfTI outputs of DICOM input (diffusion series get .bval/.bvec either way)."),
    sidecar_phi: bool = typer.Option(False, "--sidecar-phi", help="Include patient-identifying fields (names, IDs, "
                                     "dates, UIDs) in the sidecar. Off by default."),
    anonymize: bool = typer.Option(False, "--anonymize", help="De-identify DICOM headers (PS3.15 Basic Profile) "
                                   "before anything reaches an output: names, sidecars and messages come from "
                                   "pseudonyms and cleaned headers only."),
    key: Optional[Path] = typer.Option(None, "--key", help="With --anonymize: file holding the secret pseudonym key "
                                       "(else $MEDCONVERT_KEY / $MEDCONVERT_KEY_FILE, else a random key)."),
    keep: list[str] = typer.Option([], "--keep", help="With --anonymize: PS3.15 option to apply (repeatable), e.g. "
                                   "uids, full-dates, modified-dates, clean-descriptors (see 'anonymize --help')."),
    allow_burned_in: bool = typer.Option(False, "--allow-burned-in", help="With --anonymize: convert series that may "
                                         "carry burned-in text (refused by default)."),
    hu: bool = typer.Option(False, "--hu", rich_help_panel="Processing", help="CT: values in Hounsfield units "
                            "(padding below -2000 HU set to air, -1024)."),
    crop_foreground: bool = typer.Option(False, "--crop-foreground", rich_help_panel="Processing",
                                         help="Crop to the body (CT: body mask, table and markers left out; "
                                         "else the largest bright object)."),
    crop_margin: float = typer.Option(0.0, "--crop-margin", rich_help_panel="Processing", help="Margin (mm) "
                                      "kept around the foreground with --crop-foreground."),
    reorient: Optional[str] = typer.Option(None, "--reorient", rich_help_panel="Processing", help="Permute/flip "
                                           "voxels to a 3-letter axis code (RAS, LPS, LAS...); exact, no interpolation."),
    resample: Optional[str] = typer.Option(None, "--resample", rich_help_panel="Processing", help="Resample to "
                                           "this spacing in mm: 'X,Y,Z' or one number (same extent, same axes)."),
    interpolation: Optional[str] = typer.Option(None, "--interpolation", rich_help_panel="Processing",
                                                help="With --resample: linear (default), nearest, bspline, lanczos."),
    labels: bool = typer.Option(False, "--labels", rich_help_panel="Processing", help="With --resample: the "
                                "image is a label map: integer labels kept, nearest neighbour (or label-aware "
                                "one-hot with --interpolation linear)."),
    pad: Optional[str] = typer.Option(None, "--pad", rich_help_panel="Processing", help="Pad, centred, to this "
                                      "shape in voxels 'NI,NJ,NK' (air for CT, else 0)."),
    window: Optional[str] = typer.Option(None, "--window", rich_help_panel="Processing", help="Display window: a "
                                         "preset (brain, subdural, stroke, bone, soft-tissue, lungs, mediastinum, "
                                         "abdomen, liver, spine-soft, spine-bone), 'dicom' or CENTER,WIDTH."),
    window_output: str = typer.Option("hu", "--window-output", rich_help_panel="Processing", help="With --window: "
                                      "'hu' (clipped values), 'unit' (float 0..1) or 'uint8' (0..255)."),
    normalize: Optional[str] = typer.Option(None, "--normalize", rich_help_panel="Processing", help="zscore, "
                                            "minmax or percentile (0.5-99.5); statistics go in the sidecar."),
    modality: Optional[str] = typer.Option(None, "--modality", rich_help_panel="DICOM output", help="With --to dicom: CT (CT Image, HU), MR (MR "
                                           "Image) or OT (Secondary Capture). Default: the input's modality if CT "
                                           "or MR, else OT."),
    template: Optional[Path] = typer.Option(None, "--template", rich_help_panel="DICOM output", help="With --to dicom: reference DICOM series whose "
                                            "patient/study identifiers and Frame of Reference the output takes "
                                            "(it joins that study)."),
    enhanced: bool = typer.Option(False, "--enhanced", rich_help_panel="DICOM output", help="With --to dicom: one multi-frame Legacy Converted "
                                  "Enhanced CT/MR file instead of one file per slice."),
    reference: Optional[Path] = typer.Option(None, "--reference", rich_help_panel="DICOM output", help="With --to dicom-seg: the DICOM series the "
                                             "label map was drawn on (the SEG references its images)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, rich_help_panel="Archives",
                                       help="DICOM folder -> folder: series converted at once, each in its own "
                                       "process (default: all cores; 1: one process)."),
    dry_run: bool = typer.Option(False, "--dry-run", rich_help_panel="Archives", help="DICOM folder -> folder: "
                                 "print the plan (one job per series, output names, what an earlier run already "
                                 "did) and write nothing."),
    include: list[str] = typer.Option([], "--include", rich_help_panel="Archives", help="Convert only series "
                                      "whose index field matches (repeatable, all must match): FIELD=VALUE with "
                                      "wildcards (modality=CT, series_description=*t1*), or FIELD<N, <=, >, >= "
                                      "(slices>=20); 'medconvert scan' shows the fields."),
    exclude: list[str] = typer.Option([], "--exclude", rich_help_panel="Archives", help="Leave out series that "
                                      "match (repeatable, any may match); same syntax as --include."),
    reports: bool = typer.Option(True, "--report/--no-report", rich_help_panel="Archives", help="DICOM folder -> "
                                 "folder: write report.json and report.html (every series: status, outputs, "
                                 "warnings or error, a thumbnail; totals and timings) into the output folder."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", rich_help_panel="Archives", help="Run the series "
                                            "on a Dask distributed cluster at this address (tcp://HOST:PORT) "
                                            "instead of local processes; its workers must see SRC and DST at the "
                                            "same paths (pip install 'medconvert[dask]')."),
) -> None:
    """Convert SRC to DST. SRC is never modified; outputs are written atomically.

    With --to dicom, DST is a folder: the DICOM series (one file per slice) is
    written into it; a DICOM folder gets one sub-folder per series.

    A DICOM folder converts to an output folder (every series) or, when it holds
    exactly one series, to a single file. Processing flags are applied in this
    fixed order, whatever their order on the line: --hu, --crop-foreground,
    --reorient, --resample, --pad, --window, --normalize (docs/processing.md).
    """
    from convert.api import convert, dicom_tree_job

    if (key is not None or keep or allow_burned_in) and not anonymize:
        raise fail("--key, --keep and --allow-burned-in only apply with --anonymize", 2)
    if anonymize and sidecar_phi:
        raise fail("--sidecar-phi cannot be combined with --anonymize", 2)
    if philips_precise and philips_scaling == PhilipsScaling.display:
        raise fail("--philips-precise contradicts --philips-scaling display; give one of them", 2)
    deidentify = _deidentifier(key, keep, allow_burned_in) if anonymize else None
    if stack_uneven and resample_uneven:
        raise fail("--stack-uneven and --resample-uneven contradict each other; resampling is the default", 2)
    from convert.process.pipeline import from_options

    process = from_options(hu=hu, window=window, window_output=window_output, reorient=reorient,
                           resample=_numbers(resample, "--resample"), interpolation=interpolation, labels=labels,
                           crop_foreground=crop_foreground, crop_margin_mm=crop_margin,
                           pad=_numbers(pad, "--pad"), normalize=normalize)
    dicom_options = {k: v for k, v in (("modality", modality), ("template", template), ("enhanced", enhanced)) if v}
    if dicom_options and (to or "").lower() not in ("dicom", "dcm"):
        raise fail("--modality, --template and --enhanced only apply with --to dicom", 2)
    if (reference is not None) != ((to or "").lower() == "dicom-seg"):
        raise fail("--to dicom-seg needs --reference DICOM_DIR (and --reference applies only to it)", 2)
    if reference is not None:
        dicom_options["reference"] = reference
    options: dict[str, Any] = {**dicom_options, "to": to, "overwrite": overwrite, "name": name, "sidecar": sidecar,
                               "sidecar_phi": sidecar_phi, "deidentify": deidentify, "tilt_correct": tilt_correct,
                               "allow_gaps": allow_gaps, "stack_uneven": stack_uneven,
                               "philips_scaling": (philips_scaling or PhilipsScaling.precise).value,
                               "process": process}
    archive = {"jobs": jobs, "include": include, "exclude": exclude, "reports": reports}
    if dicom_tree_job(src, dst):  # the API decides the same way; here only to draw a progress bar
        if dry_run:
            _print_plan(convert(src, dst, dry_run=True, **options, **archive))
            return
        with _dask_client(scheduler) as client:
            _render_report(_convert_with_progress(convert, src, dst, {**options, **archive, "client": client}))
        return
    if dry_run or jobs or include or exclude or scheduler or not reports:
        raise fail("--jobs, --dry-run, --include, --exclude, --no-report and --scheduler apply to a DICOM folder "
                   "converted into an output folder", 2)
    written = convert(src, dst, **options)  # DICOM-only options do not apply to other sources
    for warning in written.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(warning)}", highlight=False, soft_wrap=True)
    for line in wrote_lines(written):
        console.print(line, highlight=False)
    if written.duplicates:
        console.print(duplicates_line(len(written.duplicates)), highlight=False)


def _numbers(text: Optional[str], flag: str) -> Optional[list[float]]:
    """``"1,1,1"`` (or ``"1"``, or ``"1x1x1"``) as a list of numbers; None stays None."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise fail(f"{flag} takes numbers separated by commas (e.g. 1,1,1), not '{_escape(text)}'", 2) from None


def _deidentifier(key: Optional[Path], keep: list[str], allow_burned_in: bool) -> Callable[[Any], Any]:
    """A function returning a de-identified copy of a pydicom Dataset (one Scrubber, one key)."""
    from convert.anonymize.deidentifier import Deidentifier
    from convert.anonymize.pseudonym import load_key

    key_bytes, source = load_key(key)
    if source == "random":
        err_console.print("[yellow]note:[/] no key given: pseudonyms are random and cannot be reproduced in a "
                          "later run (use --key FILE)", highlight=False, soft_wrap=True)
    return Deidentifier(key_bytes, keep, allow_burned_in)


def _convert_with_progress(convert: Callable[..., Any], src: Path, dst: Path, options: dict[str, Any]) -> Any:
    """``convert(src, dst, **options)`` for a folder job, with a transient progress bar on a terminal:
    files scanned, then series done/total, failures so far, input files/s and the time left."""
    if not console.is_terminal:
        return convert(src, dst, **options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("converting", total=None)

        def progress(done: int, total: int, label: str) -> None:
            text = label if label in ("scanning files", "done") else f"series {label}"
            bar.update(task, completed=done, total=total, description=_escape(text))

        return convert(src, dst, progress=progress, **options)


@contextlib.contextmanager
def _dask_client(address: Optional[str]) -> Iterator[Any]:
    """A Dask distributed client connected to ``address`` (None: no client, local processes)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise fail("--scheduler needs Dask: pip install 'medconvert[dask]'", 2) from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise fail(_escape(f"cannot reach the Dask scheduler at {address}: {exc}"), 1) from None
    try:
        yield client
    finally:
        client.close()


def _print_plan(report: Any) -> None:
    """``--dry-run``: the plan as a table (job, series, files, modality, output name, status); nothing written."""
    from rich.table import Table

    table = Table(title=f"plan: {len(report.outcomes)} series", title_justify="left")
    for column in ("job", "series", "files", "modality", "output", "status"):
        table.add_column(column, overflow="fold")
    for n, outcome in enumerate(report.outcomes, 1):
        stem = outcome.info.get("output") or ""
        state = outcome.status if outcome.error is None else f"{outcome.status}: {outcome.error}"
        table.add_row(str(n), _escape(outcome.label), str(len(outcome.files)),
                      _escape(str(outcome.info.get("modality") or "")), _escape(stem + "*" if stem else "-"),
                      _escape(state))
    console.print(table)
    status = [o.status for o in report.outcomes]
    console.print(f"{status.count('convert')} to convert, {status.count('done')} done by an earlier run, "
                  f"{status.count('excluded')} excluded; {len(report.skipped)} non-DICOM file(s) skipped; "
                  "nothing was written (--dry-run)", highlight=False)


def wrote_lines(paths: list[Path]) -> list[str]:
    """``wrote PATH`` per file; a DICOM series (many ``.dcm`` files in one folder) as one line."""
    dicom = [p for p in paths if p.suffix.lower() == ".dcm"]
    folders = {p.parent for p in dicom}
    if len(dicom) > 1 and len(folders) == 1:
        return ([f"wrote {p}" for p in paths if p not in dicom]
                + [f"wrote {len(dicom)} DICOM files to {next(iter(folders))}"])
    return [f"wrote {p}" for p in paths]


def duplicates_line(n: int) -> str:
    """The summary line for ``n`` files skipped as copies of another (same SOPInstanceUID and bytes)."""
    return f"skipped {n} duplicate file(s) (same SOPInstanceUID and content as another file)"


def _render_report(report: Any) -> None:
    """Per series: its warnings (one line each), the files written or the error; exit 1 if any failed."""
    for outcome in report.outcomes:
        if outcome.status in ("done", "excluded"):
            continue  # counted below
        for warning in outcome.warnings:
            err_console.print(f"[yellow]warning:[/] series {_escape(outcome.label)}: {_escape(warning)}",
                              highlight=False, soft_wrap=True)
        if outcome.ok:
            for line in wrote_lines(outcome.written):
                console.print(line, highlight=False)
        else:
            err_console.print(f"[bold red]error:[/] series {_escape(outcome.label)} failed: {_escape(outcome.error or '')}",
                              highlight=False, soft_wrap=True)
    if report.skipped:
        console.print(f"skipped {len(report.skipped)} non-DICOM file(s)", highlight=False)
    if report.duplicates:
        console.print(duplicates_line(len(report.duplicates)), highlight=False)
    done = sum(o.status == "done" for o in report.outcomes)
    excluded = sum(o.status == "excluded" for o in report.outcomes)
    if done:
        console.print(f"{done} series already converted by an earlier run into this folder (kept)", highlight=False)
    if excluded:
        console.print(f"{excluded} series left out by --include/--exclude", highlight=False)
    html = report.out_dir / "report.html" if report.out_dir is not None else None
    if html is not None and html.exists():
        console.print(f"report: {html}", highlight=False)
    if report.failed:
        from convert.errors import EXIT_COMPLETED_WITH_FAILURES

        converted = sum(o.status == "converted" for o in report.outcomes)
        code = EXIT_COMPLETED_WITH_FAILURES if converted + done else 1
        raise fail(f"{len(report.failed)} of {len(report.outcomes) - excluded} series failed"
                   + ("; the others were written (completed with failures)" if code != 1 else ""), code)


@app.command("preview")
@handle_errors
def preview_cmd(
    src: Path = typer.Argument(..., help="Image file (any readable format) or one-series DICOM folder."),
    out: Path = typer.Option(..., "-o", "--output", help="PNG file to write."),
    window: Optional[str] = typer.Option(None, "--window", help="Preset, 'dicom' or CENTER,WIDTH (default: the "
                                         "series' DICOM window, else the 1st-99th percentile)."),
    slice_index: Optional[str] = typer.Option(None, "--slice", help="Voxel i,j,k (as stored, from 0) the three "
                                              "planes go through (default: the centre)."),
    neurological: bool = typer.Option(False, "--neurological", help="Patient left on image left (default: "
                                      "radiological, patient right on image left)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG."),
) -> None:
    """Write axial, coronal and sagittal slices of SRC side by side to a PNG, in true physical proportions,
    with orientation letters and the display convention written on the picture."""
    from convert.api import load
    from convert.process.preview import save_preview

    index = _numbers(slice_index, "--slice")
    if index is not None and (len(index) != 3 or any(not float(v).is_integer() for v in index)):
        raise fail("--slice takes three whole numbers i,j,k (e.g. 100,120,40)", 2)
    volume = load(src)
    path = save_preview(volume, out, overwrite=overwrite, window=window,
                        slice_index=None if index is None else [int(v) for v in index],
                        convention="neurological" if neurological else "radiological")
    console.print(f"wrote {path}", highlight=False)


@app.command("slices")
@handle_errors
def slices_cmd(
    src: Path = typer.Argument(..., help="Image file (any readable format) or one-series DICOM folder."),
    out_dir: Path = typer.Argument(..., help="Folder to create: one PNG per slice plus slices.json."),
    axis: str = typer.Option("k", "--axis", help="Voxel axis to slice across: i, j or k (as stored)."),
    bits: int = typer.Option(8, "--bits", help="PNG depth: 8 or 16."),
    window: Optional[str] = typer.Option(None, "--window", help="Preset, 'dicom' or CENTER,WIDTH mapped onto the "
                                         "PNG range (values outside clipped)."),
    value_range: Optional[str] = typer.Option(None, "--range", help="LOW,HIGH mapped onto the PNG range (default: "
                                              "integers that fit as they are, else the volume's min..max)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
) -> None:
    """Write a folder of greyscale PNG slices (8 or 16 bit, scaled explicitly, never truncated)."""
    from convert.api import load
    from convert.process.export import write_png_slices

    if axis not in ("i", "j", "k"):
        raise fail(f"--axis takes i, j or k, not '{_escape(axis)}'", 2)
    bounds = _numbers(value_range, "--range")
    if bounds is not None and len(bounds) != 2:
        raise fail("--range takes two numbers LOW,HIGH", 2)
    written = write_png_slices(load(src), out_dir, axis="ijk".index(axis), bits=bits, window=window,
                               value_range=None if bounds is None else (bounds[0], bounds[1]),
                               overwrite=overwrite)
    console.print(f"wrote {len(written) - 1} PNG slice(s) and slices.json to {out_dir}", highlight=False)


@app.command("info")
@handle_errors
def info_cmd(
    path: Path = typer.Argument(..., help="Image file or DICOM folder."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print format, shape, dtype, spacing (mm), orientation, affine and value range.

    For a DICOM folder: list every series found with its geometry and warnings
    (missing slices, gantry tilt, uneven spacing), without decoding pixels.
    """
    from convert.api import describe
    from convert.formats import detect

    if path.is_dir():
        from convert.dicom.reader import DICOM

        if DICOM.sniff(path):
            _info_dicom_folder(path, as_json)
            return
    fmt = detect(path)
    volume = fmt.read(path)
    summary = describe(volume, fmt.name)
    summary["path"] = str(path)
    if as_json:
        sys.stdout.write(json_text(summary) + "\n")
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_row("path", str(path))
    table.add_row("format", fmt.name)
    table.add_row("shape", " x ".join(str(n) for n in summary["shape"]))
    table.add_row("dtype", summary["dtype"])
    table.add_row("spacing (mm)", " x ".join(f"{s:g}" for s in summary["spacing_mm"]))
    table.add_row("orientation", summary["orientation"])
    table.add_row("affine (RAS+)", "\n".join("  ".join(f"{v:10.4f}" for v in row) for row in summary["affine_ras"]))
    if volume.is_scaled:
        table.add_row("scaling", f"slope {volume.slope:g}, intercept {volume.intercept:g}")
    lo, hi = summary["value_range"]
    table.add_row("value range", f"{lo:g} .. {hi:g}" + (" (R, G, B channels)" if volume.is_rgb else ""))
    if summary["time_step_s"]:
        table.add_row("time step (s)", f"{summary['time_step_s']:g}")
    console.print(table)


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity: not JSON) replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """Strict JSON of ``value`` for ``info --json``: always valid (unknown numbers are ``null``)."""
    return json.dumps(json_ready(value), indent=2, allow_nan=False)


def _info_dicom_folder(path: Path, as_json: bool) -> None:
    from convert.batch.index import summarize_series
    from convert.dicom.scan import scan
    from convert.dicom.series import assemble
    from convert.errors import NoDicomError

    result = scan(path)
    if not result.instances:
        raise NoDicomError(path, len(result.skipped), result.skipped[0][1] if result.skipped else None)
    all_series = assemble(result.instances)
    summaries = [summarize_series(s) for s in all_series]
    if as_json:
        out = {"path": str(path), "format": "dicom", "files_skipped": len(result.skipped),
               "duplicates_skipped": sum(len(s.duplicates) for s in all_series), "series": summaries}
        sys.stdout.write(json_text(out) + "\n")
        return
    from rich.table import Table

    table = Table("#", "description", "kind", "files", "shape", "spacing (mm)", "orient.", "flags")
    for s in summaries:
        flags = [f for f, on in (("ERROR", bool(s["problem"])), (f"{s['missing_slices']} missing",
                                  bool(s["missing_slices"])), ("uneven", s["uneven_spacing"]),
                                 (f"tilt {s['tilt_deg']:g} deg", s["tilt_deg"] > 0.1),
                                 (f"colour {s.get('colour')}", bool(s.get("colour")))) if on]
        desc = s["description"] + (f" ({s['split']})" if s["split"] else "")
        spacing = " x ".join(f"{v:g}" for v in s["spacing_mm"]) if s["spacing_mm"] else "-"
        table.add_row(str(s["number"] if s["number"] is not None else "?"), _escape(desc), s["kind"], str(s["files"]),
                      "x".join(str(n) for n in s["shape"]), spacing, s["orientation"] or "-", ", ".join(flags))
    duplicates = sum(len(s.duplicates) for s in all_series)
    console.print(f"{path}: {len(summaries)} series, {len(result.instances)} image file(s), "
                  f"{len(result.skipped)} other file(s) skipped"
                  + (f", {duplicates} duplicate(s) of other files" if duplicates else ""), highlight=False)
    console.print(table)
    for s in summaries:
        label = f"series {s['number']} '{s['description']}'" + (f" ({s['split']})" if s["split"] else "")
        if s["problem"]:
            err_console.print(f"[bold red]problem:[/] {_escape(label)}: {_escape(s['problem'])}", highlight=False,
                              soft_wrap=True)
        for warning in s["warnings"]:
            console.print(f"[yellow]warning:[/] {_escape(label)}: {_escape(warning)}", highlight=False, soft_wrap=True)


@app.command("scan")
@handle_errors
def scan_cmd(
    archive: Path = typer.Argument(..., help="DICOM folder, file, or .zip / .tar / .tar.gz / .tgz archive "
                                   "(archives inside are read too)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Index file to write: .csv, .parquet or "
                                       ".jsonl (by extension). Without it: a table on stdout."),
    instances: bool = typer.Option(False, "--instances", help="One row per image file instead of one per series."),
    phi: bool = typer.Option(False, "--phi", help="Add patient-identifying columns (patient ID, name, birth "
                             "date, study/series dates, accession number, study description, institution). "
                             "Off by default: they are not even read."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index file."),
) -> None:
    """Index ARCHIVE from its headers only (nothing decoded): one row per series with modality, body part,
    description, protocol, scanner, matrix, spacing, orientation, transfer syntax, files and warnings."""
    from convert.batch.index import build_index, index_format, to_frame, write_index

    if out is not None:
        try:
            index_format(out)
        except ConvertError as exc:
            raise fail(_escape(str(exc)), 2) from None
        from convert.atomic import check_writable

        check_writable([out], overwrite)  # before reading any header
    index = _scan_with_progress(build_index, archive, instances=instances, phi=phi)
    if not index.images:
        from convert.errors import NoDicomError

        raise NoDicomError(archive, len(index.skipped), index.skipped[0][1] if index.skipped else None)
    summary = (f"{archive}: {index.series} series, {index.images} image file(s), "
               f"{len(index.skipped)} other file(s) skipped")
    if out is not None:
        write_index(to_frame(index), out, overwrite=overwrite)
        err_console.print(_escape(f"{summary}; wrote {len(index.rows)} row(s) to {out}"), highlight=False,
                          soft_wrap=True)
        return
    err_console.print(_escape(summary), highlight=False, soft_wrap=True)
    from rich.table import Table

    if instances:
        table = Table("path", "#", "instance", "modality", "position (LPS mm)")
        for row in index.rows:
            position = [row[f"position_{a}_lps_mm"] for a in "xyz"]
            table.add_row(_escape(row["path"]), _cell(row["series_number"]), _cell(row["instance_number"]),
                          _escape(row["modality"]), "-" if None in position else " ".join(f"{v:g}" for v in position))
    else:
        table = Table("#", "modality", "description", "shape", "files", "warnings")
        for row in index.rows:
            shape = "x".join(str(row[k]) for k in ("columns", "rows", "slices")) + (
                f"x{row['volumes']}" if row["volumes"] > 1 else "")
            notes = "; ".join(n for n in (row["problem"], row["warnings"]) if n)
            table.add_row(_cell(row["series_number"]), _escape(row["modality"]), _escape(row["series_description"]),
                          shape, str(row["files"]), _escape(notes))
    console.print(table)


def _cell(value: Any) -> str:
    return "?" if value is None else str(value)


def _scan_with_progress(build: Callable[..., Any], path: Path, **options: Any) -> Any:
    """``build(path, **options)`` with a transient progress bar (files read) on a terminal."""
    if not err_console.is_terminal:
        return build(path, **options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("reading headers", total=None)
        return build(path, progress=lambda done, total: bar.update(task, completed=done, total=total), **options)


@app.command("sample")
@handle_errors
def sample_cmd(
    out_dir: Path = typer.Argument(..., help="Folder to create; the DICOM series goes to OUT_DIR/dicom."),
    oblique: bool = typer.Option(False, "--oblique", help="Write an oblique (tilted-plane) series instead of axial."),
) -> None:
    """Write a small synthetic CT series (64x64x40 head phantom, no real patient) to try medconvert on."""
    from convert.sample import write_sample

    dicom_dir = out_dir / "dicom"
    if dicom_dir.exists() and any(dicom_dir.iterdir()):
        from convert.errors import OutputExistsError

        raise OutputExistsError("sample folder already holds files; choose another folder", dicom_dir)
    written = write_sample(out_dir, oblique=oblique)
    console.print(f"wrote a 64x64x40 CT phantom series to {written['dicom']}", highlight=False)
    console.print(f"next: medconvert convert {written['dicom']} {out_dir / 'out'}", highlight=False)


@app.command("formats")
@handle_errors
def formats_cmd() -> None:
    """List the formats medconvert can read and write."""
    from rich.table import Table

    from convert.formats import all_formats

    table = Table("name", "extensions", "read", "write", "description")
    for fmt in all_formats():
        table.add_row(fmt.name, " ".join(fmt.extensions) or "(folder)", "yes" if fmt.can_read else "no",
                      "yes" if fmt.can_write else "no", fmt.description)
    console.print(table)


@app.command("anonymize")
@handle_errors
def anonymize_cmd(
    src: Path = typer.Argument(..., help="DICOM file or folder tree (non-DICOM files are skipped)."),
    dst: Path = typer.Argument(..., help="Output folder (or .dcm file for a single input); must not be inside SRC."),
    key: Optional[Path] = typer.Option(None, "--key", help="Key file for keyed pseudonyms (else env "
                                       "MEDCONVERT_KEY / MEDCONVERT_KEY_FILE, else a random key)."),
    keep: list[str] = typer.Option([], "--keep", help="PS3.15 option to apply (repeatable): safe-private, uids, "
                                   "device, institution, patient-characteristics, full-dates, modified-dates, "
                                   "clean-descriptors, clean-structured-content, clean-graphics."),
    audit: Optional[Path] = typer.Option(None, "--audit", help="Write an audit JSON (mode 0600): original -> "
                                         "pseudonym mapping and per-file action counts."),
    allow_burned_in: bool = typer.Option(False, "--allow-burned-in", help="Write objects that may show burned-in "
                                         "text (flagged BurnedInAnnotation YES) instead of refusing them."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs and audit file (a rerun "
                                   "without it only writes what is missing)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Processes to use (default: all cores; "
                                       "1: one process)."),
    reports: bool = typer.Option(True, "--report/--no-report", help="Write report.json and report.html (every "
                                 "DICOM file as 'input file N': status, output, reason; totals and timings; no "
                                 "input path, no header value) into the DST folder."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, hidden=True, help="Deprecated: --jobs."),
) -> None:
    """De-identify DICOM (PS3.15 Annex E) from SRC into DST. SRC is never modified.

    An interrupted run is completed by running the same command again (same key and
    options): outputs already in place are checked and reported as done. Another key or
    other options into a DST holding outputs is refused. Exit code 0: every DICOM file
    de-identified; 3: some failed or were refused, the others were written; 1: nothing written.
    Input files are named by number (input file N), never by path: the --audit file lists them.
    """
    if workers is not None:
        if jobs is not None and jobs != workers:
            raise fail("--workers is the old name of --jobs: give only --jobs", 2)
        err_console.print("[yellow]warning:[/] --workers is deprecated: use --jobs", highlight=False)
        jobs = workers
    # This process only de-identifies (pixel data is copied, never decoded): pydicom's optional
    # decoder back-ends (gdcm, requests for test data) are not imported (~85 ms of start-up).
    blocked = [] if "pydicom" in sys.modules else [n for n in ("gdcm", "requests") if n not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        from convert.anonymize.run import anonymize_path
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]

    report = anonymize_path(src, dst, key=key, keep=keep, allow_burned_in=allow_burned_in, audit=audit,
                            overwrite=overwrite, jobs=jobs, progress=sys.stderr.isatty(), reports=reports)
    if report.key_source == "random":
        err_console.print("[yellow]warning:[/] no key given: a random key was used, so pseudonyms cannot be "
                          "reproduced in a later run (use --key FILE)", highlight=False, soft_wrap=True)
    # input files by number, never by path (names may carry PHI); outcome errors name no input path
    for kind, outcomes in (("refused", report.refused), ("failed", report.failed)):
        for outcome in outcomes:
            err_console.print(f"[bold red]{kind}:[/] {_escape(outcome.label)}: {_escape(outcome.error or kind)}",
                              highlight=False, soft_wrap=True)
    if (report.refused or report.failed) and report.audit is None:
        err_console.print("[yellow]note:[/] input files are numbered in the order they were read; --audit FILE "
                          "records which file each number is", highlight=False, soft_wrap=True)
    for path in report.flagged:
        err_console.print(f"[yellow]flagged (burned-in text possible):[/] {_escape(str(path))}", highlight=False,
                          soft_wrap=True)
    from convert.report import REPORT_HTML

    html = dst / REPORT_HTML if reports and report.out_dir is not None else None
    where = "".join((f"; audit: {report.audit}" if report.audit else "",
                     f"; report: {html}" if html is not None and html.exists() else ""))
    if report.nothing_written:  # every file failed, was refused or skipped: one red line, exit 1
        raise fail(_escape(f"{report.summary()}: nothing was written to {dst}{where}"))
    console.print(_escape(f"{report.summary()} -> {dst}{where}"), highlight=False, soft_wrap=True)
    if not report.ok:  # some files failed or were refused, the others were written
        from convert.errors import EXIT_COMPLETED_WITH_FAILURES

        raise typer.Exit(EXIT_COMPLETED_WITH_FAILURES)


def main() -> None:
    """Run the CLI on ``sys.argv`` in this process (raises ``SystemExit`` as typer does); the
    ``medconvert`` command itself is :func:`console_main`."""
    app()


def console_main() -> None:
    """The ``medconvert`` console script and ``python -m convert``: :func:`main`, then the process
    ends without tearing the interpreter down.

    Every output is written, closed and renamed into place before the command returns; what
    is left is freeing every module and object one by one, 30 to 70 ms a run (a tenth of
    converting a small series). So the exit handlers run (:mod:`atexit`: logging, worker
    pools, Dask clients), stdout and stderr are flushed, and the process exits with the
    command's status (120 when the flush fails, as the interpreter reports it).
    """
    import atexit

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    atexit._run_exitfuncs()  # noqa: SLF001 (what the interpreter's own exit runs first)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (medconvert ... | head)
            code = code or 120
    os._exit(code)


def _exit_status(code: object) -> int:
    """The process status of ``SystemExit(code)``, as the interpreter gives it (a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    main()
