"""The ``medconvert`` command line: thin wrappers that parse, call the API, render.

Every :class:`~convert.errors.ConvertError` becomes one red line on stderr and
exit code 1; usage errors exit 2 (typer/click). Set ``MEDCONVERT_DEBUG=1`` to
see the traceback of an unexpected error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

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

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one red line on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn ConvertError (and unexpected errors) into one red line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConvertError as exc:
            raise fail(_escape(str(exc))) from None
        except KeyboardInterrupt:
            raise fail("interrupted; no partial output was left behind", 130) from None
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: still one line, traceback on request
            if os.environ.get("MEDCONVERT_DEBUG"):
                raise
            raise fail(
                _escape(f"unexpected {type(exc).__name__}: {exc} (set MEDCONVERT_DEBUG=1 for details; please report)")
            ) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("convert")
@handle_errors
def convert_cmd(
    src: Path = typer.Argument(..., help="Input file (any readable format) or DICOM folder."),
    dst: Path = typer.Argument(..., help="Output file; its extension picks the format unless --to is given."),
    to: Optional[str] = typer.Option(None, "--to", help="Output format name (see 'medconvert formats')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Convert SRC to DST. SRC is never modified; DST is written atomically."""
    from convert.api import convert

    written = convert(src, dst, to=to, overwrite=overwrite)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command("info")
@handle_errors
def info_cmd(
    path: Path = typer.Argument(..., help="Image file or DICOM folder."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Print format, shape, dtype, spacing (mm), orientation, affine and value range."""
    from convert.api import describe
    from convert.formats import detect

    fmt = detect(path)
    volume = fmt.read(path)
    summary = describe(volume, fmt.name)
    summary["path"] = str(path)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
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
    table.add_row("value range", f"{lo:g} .. {hi:g}")
    if summary["time_step_s"]:
        table.add_row("time step (s)", f"{summary['time_step_s']:g}")
    console.print(table)


@app.command("formats")
@handle_errors
def formats_cmd() -> None:
    """List the formats medconvert can read and write."""
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs and audit file."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes to use (default: all cores)."),
) -> None:
    """De-identify DICOM (PS3.15 Annex E) from SRC into DST. SRC is never modified."""
    from convert.anonymize.run import anonymize_path

    report = anonymize_path(src, dst, key=key, keep=keep, allow_burned_in=allow_burned_in, audit=audit,
                            overwrite=overwrite, workers=workers, progress=sys.stderr.isatty())
    if report.key_source == "random":
        err_console.print("[yellow]warning:[/] no key given: a random key was used, so pseudonyms cannot be "
                          "reproduced in a later run (use --key FILE)", highlight=False)
    for path, reason in report.refused:
        err_console.print(f"[bold red]refused:[/] {_escape(str(path))}: {_escape(reason)}", highlight=False)
    for path, reason in report.failed:
        err_console.print(f"[bold red]failed:[/] {_escape(str(path))}: {_escape(reason)}", highlight=False)
    for path in report.flagged:
        err_console.print(f"[yellow]flagged (burned-in text possible):[/] {_escape(str(path))}", highlight=False)
    console.print(f"{report.summary()} -> {dst}" + (f"; audit: {report.audit}" if report.audit else ""),
                  highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
