"""Start-up shortcut for ``medconvert convert DICOM_DIR out.nii[.gz]``: no typer, pydicom or nibabel.

:func:`main` (``python -m convert`` and the console script) first offers the
command line to :func:`try_fast`. It recognises only the plain form
``convert SRC DST`` with ``--to``, ``--name``, ``--overwrite``,
``--sidecar/--no-sidecar``, where SRC is a DICOM folder and DST a single NIfTI
file (handed to :func:`convert.dicom.fastpath.convert_single_fast`) or an
output folder (:func:`convert.dicom.fastpath.convert_tree_fast`: every series). When that declines, or for
any other command line, the full typer CLI (:mod:`convert.cli`) runs as before.
Output lines (``wrote ...``, warnings, errors) are the full CLI's, printed with
rich only when a line needs it (markup, wrapping), so the common case does not
import rich either.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from convert.errors import printable

_FLAGS = {"--overwrite": ("overwrite", True), "--sidecar": ("sidecar", True), "--no-sidecar": ("sidecar", False)}


def parse_convert_args(argv: Sequence[str]) -> dict[str, object] | None:
    """Options of a plain ``convert SRC DST [--to X] [--name T] [--overwrite] [--[no-]sidecar]`` line, else None."""
    if len(argv) < 3 or argv[0] != "convert":
        return None
    options: dict[str, object] = {"to": None, "name": None, "overwrite": False, "sidecar": True}
    positional: list[str] = []
    tokens = list(argv[1:])
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _FLAGS:
            key, value = _FLAGS[token]
            options[key] = value
        elif token == "--to" and i + 1 < len(tokens) and tokens[i + 1] and not tokens[i + 1].startswith("-"):
            options["to"] = tokens[i + 1]
            i += 1
        elif token.startswith("--to=") and len(token) > 5:
            options["to"] = token[5:]
        elif token == "--name" and i + 1 < len(tokens) and tokens[i + 1] and not tokens[i + 1].startswith("-"):
            options["name"] = tokens[i + 1]
            i += 1
        elif token.startswith("--name=") and len(token) > 7:
            options["name"] = token[7:]
        elif token.startswith("-") or not token:
            return None  # any other option (or "--", "-h"): the full CLI parses it
        else:
            positional.append(token)
        i += 1
    if len(positional) != 2:
        return None
    options["src"], options["dst"] = positional
    return options


def _is_folder_target(dst: Path) -> bool:
    """As :func:`convert.api.is_folder_target`: an existing folder, a trailing separator, no extension."""
    from convert.formats import extension_of

    if dst.is_dir() or str(dst).endswith(("/", os.sep)):
        return True
    return not dst.exists() and "." not in dst.name and not extension_of(dst).strip(".")


def _console_width() -> int:
    """A width no larger than the one rich would wrap stdout at (terminal size, else 80)."""
    for fd in (0, 1, 2):
        try:
            return min(80, os.get_terminal_size(fd).columns)
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _plain(line: str) -> bool:
    """True when rich would print ``line`` unchanged on one line: printable ASCII, no markup/emoji, fits."""
    return (line.isascii() and line.isprintable() and not any(c in line for c in "[]:\\")
            and "COLUMNS" not in os.environ and len(line) < _console_width())


def _say(line: str) -> None:
    """``console.print(line, highlight=False)`` of the full CLI (stdout)."""
    if _plain(line):
        sys.stdout.write(line + "\n")
        return
    from rich.console import Console

    Console().print(line, highlight=False)


def _warn(text: str, soft_wrap: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape as _rich_escape

    def escape(text: str) -> str:  # as convert.cli._escape
        return _rich_escape(printable(text))

    Console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=soft_wrap)


def _error(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape as _rich_escape

    def escape(text: str) -> str:  # as convert.cli._escape
        return _rich_escape(printable(text))

    Console(stderr=True).print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True, soft_wrap=True)


def try_fast(argv: Sequence[str]) -> int | None:
    """Run a plain DICOM-folder -> NIfTI conversion on the streaming path; its exit code, or None.

    None means nothing was done (not that form of command line, or the fast path
    declined before writing anything): run the full CLI.
    """
    options = parse_convert_args(argv)
    if options is None:
        return None
    src, dst = Path(str(options["src"])), Path(str(options["dst"]))
    if not src.is_dir():
        return None
    from convert.dicom.reader import DICOM

    if not DICOM.sniff(src):
        return None
    if _is_folder_target(dst):
        return _try_fast_tree(src, dst, options)
    if options["name"] is not None:
        return None  # --name with a file output: left to the full CLI
    import warnings

    from convert.dicom.fastpath import convert_single_fast
    from convert.errors import ConvertError

    series_warnings: list[str] = []
    failure: str | None = None
    written: list[Path] | None = []
    with warnings.catch_warnings(record=True) as caught:  # as cli.handle_errors: one line per warning
        warnings.simplefilter("always", UserWarning)
        try:
            written = convert_single_fast(src, dst, to=options["to"], overwrite=bool(options["overwrite"]),  # type: ignore[arg-type]
                                          sidecar=bool(options["sidecar"]), on_warning=series_warnings.append)
        except ConvertError as exc:  # only after the NIfTI is in place (e.g. the sidecar failed)
            failure = str(exc)
        except KeyboardInterrupt:
            failure = "interrupted; no partial output was left behind"
        except Exception as exc:  # a bug: one line, as cli.handle_errors words it
            if os.environ.get("MEDCONVERT_DEBUG"):
                raise
            failure = (f"unexpected {type(exc).__name__}: {exc} (set MEDCONVERT_DEBUG=1 for details; "
                       "please report)")
        if written is None:
            return None  # declined: the full CLI starts from scratch (and reports any warning itself)
    # the full CLI's order: series warnings (before writing), "wrote" lines, Python warnings, the error
    for text in series_warnings:
        _warn(text, soft_wrap=True)  # one line each, as the full CLI prints them
    for path in (written or []) if failure is None else []:
        _say(f"wrote {path}")
    for warning in caught:
        _warn(str(warning.message))
    if failure is not None:
        _error(failure)
        return 130 if failure.startswith("interrupted;") else 1
    return 0


def _try_fast_tree(src: Path, dst: Path, options: dict[str, object]) -> int | None:
    """``convert DICOM_DIR OUT_DIR`` on the streaming path: as ``cli._render_report`` prints it; or None."""
    import warnings

    from convert.dicom.fastpath import convert_tree_fast

    with warnings.catch_warnings(record=True) as caught:  # as cli.handle_errors: one line per warning
        warnings.simplefilter("always", UserWarning)
        try:
            with _progress_bar() as progress:
                result = convert_tree_fast(src, dst, to=str(options["to"] or "nifti-gz"),
                                           name=options["name"],  # type: ignore[arg-type]
                                           overwrite=bool(options["overwrite"]), sidecar=bool(options["sidecar"]),
                                           progress=progress)
        except KeyboardInterrupt:  # nothing was renamed into place
            _error("interrupted; no partial output was left behind")
            return 130
        if result is None:
            return None  # declined: the full CLI starts from scratch (and reports any warning itself)
    for outcome in result.outcomes:  # the full CLI's order: per series its warnings, then its files
        for text in outcome.warnings:
            _warn_series(outcome.label, text)
        for path in outcome.written:
            _say(f"wrote {path}")
    if result.skipped:
        _say(f"skipped {len(result.skipped)} non-DICOM file(s)")
    for warning in caught:
        _warn(str(warning.message), soft_wrap=True)
    return 0


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, str], None] | None]:
    """A transient rich progress bar on a terminal (as ``cli._convert_with_progress``); None otherwise."""
    if not sys.stdout.isatty():
        yield None
        return
    from rich.console import Console
    from rich.markup import escape as _rich_escape

    def escape(text: str) -> str:  # as convert.cli._escape
        return _rich_escape(printable(text))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(), transient=True) as bar:
        task = bar.add_task("converting", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(f"series {label}"))

        yield progress


def _warn_series(label: str, text: str) -> None:
    """``warning: series LABEL: TEXT`` as ``cli._render_report`` prints it (stderr)."""
    from rich.console import Console
    from rich.markup import escape as _rich_escape

    def escape(text: str) -> str:  # as convert.cli._escape
        return _rich_escape(printable(text))

    Console(stderr=True).print(f"[yellow]warning:[/] series {escape(label)}: {escape(text)}", highlight=False,
                               soft_wrap=True)


_ANON_VALUES = {"--key": "key", "--audit": "audit", "--workers": "workers"}
_ANON_FLAGS = {"--allow-burned-in": "allow_burned_in", "--overwrite": "overwrite"}


def parse_anonymize_args(argv: Sequence[str]) -> dict[str, Any] | None:
    """Options of a plain ``anonymize SRC DST [--key F] [--keep X]... [--audit F] [--allow-burned-in]
    [--overwrite] [--workers N]`` command line, else None (the typer CLI parses anything else)."""
    if len(argv) < 3 or argv[0] != "anonymize":
        return None
    options: dict[str, Any] = {"key": None, "keep": [], "audit": None, "allow_burned_in": False,
                               "overwrite": False, "workers": None}
    positional: list[str] = []
    tokens = list(argv[1:])
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _ANON_FLAGS:
            options[_ANON_FLAGS[token]] = True
        elif token in _ANON_VALUES or token == "--keep":
            if i + 1 >= len(tokens) or not tokens[i + 1] or tokens[i + 1].startswith("-"):
                return None
            value = tokens[i + 1]
            i += 1
            if token == "--keep":
                options["keep"].append(value)
            elif token == "--workers":
                if not value.isdigit() or int(value) < 1:
                    return None  # typer words the usage error
                options["workers"] = int(value)
            else:
                options[_ANON_VALUES[token]] = Path(value)
        elif token.startswith("-") or not token:
            return None
        else:
            positional.append(token)
        i += 1
    if len(positional) != 2:
        return None
    options["src"], options["dst"] = (Path(p) for p in positional)
    return options


def try_anonymize(argv: Sequence[str]) -> int | None:
    """``medconvert anonymize ...`` without importing typer (same body and messages: :mod:`convert._anoncli`)."""
    options = parse_anonymize_args(argv)
    if options is None:
        return None
    import warnings

    from rich.console import Console
    from rich.markup import escape as _rich_escape

    def escape(text: str) -> str:  # as convert.cli._escape
        return _rich_escape(printable(text))

    from convert._anoncli import run
    from convert.errors import ConvertError

    console, err_console = Console(), Console(stderr=True)

    def error(message: str) -> None:  # as cli.fail
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)

    try:
        with warnings.catch_warnings(record=True) as caught:  # as cli.handle_errors
            warnings.simplefilter("always", UserWarning)
            try:
                src, dst = options.pop("src"), options.pop("dst")
                return run(src, dst, console=console, err_console=err_console, **options)
            finally:
                for warning in caught:
                    err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False,
                                      soft_wrap=True)
    except ConvertError as exc:
        error(escape(str(exc)))
        return 1
    except KeyboardInterrupt:
        error("interrupted; no partial output was left behind")
        return 130
    except Exception as exc:  # a bug: still one line, traceback on request
        if os.environ.get("MEDCONVERT_DEBUG"):
            raise
        error(escape(f"unexpected {type(exc).__name__}: {exc} (set MEDCONVERT_DEBUG=1 for details; please report)"))
        return 1


def main() -> None:
    """Console-script entry point: the streaming shortcut when it applies, else the typer CLI."""
    from convert.errors import cli_spelling

    with cli_spelling():  # messages name options by their CLI flags
        code = try_fast(sys.argv[1:])
        if code is None:
            code = try_anonymize(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        raise SystemExit(code)
    from convert.cli import main as full_main

    full_main()
