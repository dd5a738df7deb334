"""The body of ``medconvert anonymize``, importable without typer.

:func:`convert.cli.anonymize_cmd` (typer) and the start-up shortcut in
:mod:`convert._fastcli` both call :func:`run`, so the two print the same lines
and return the same exit codes; the shortcut only saves typer's import time
(~0.1 s, which matters when a whole archive is copied in about a second).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional


def run(src: Path, dst: Path, *, key: Optional[Path], keep: list[str], audit: Optional[Path],
        allow_burned_in: bool, overwrite: bool, workers: Optional[int], console: Any, err_console: Any) -> int:
    """De-identify ``src`` into ``dst`` and print the report; the exit code (0 ok, 1 some file failed).

    ``console``/``err_console`` are rich consoles for stdout/stderr. ConvertError
    propagates to the caller, which prints it as one red line.
    """
    from rich.markup import escape

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
                            overwrite=overwrite, workers=workers, progress=sys.stderr.isatty())
    if report.key_source == "random":
        err_console.print("[yellow]warning:[/] no key given: a random key was used, so pseudonyms cannot be "
                          "reproduced in a later run (use --key FILE)", highlight=False, soft_wrap=True)
    for path, reason in report.refused:
        err_console.print(f"[bold red]refused:[/] {escape(str(path))}: {escape(reason)}", highlight=False,
                          soft_wrap=True)
    for path, reason in report.failed:
        err_console.print(f"[bold red]failed:[/] {escape(str(path))}: {escape(reason)}", highlight=False,
                          soft_wrap=True)
    for path in report.flagged:
        err_console.print(f"[yellow]flagged (burned-in text possible):[/] {escape(str(path))}", highlight=False,
                          soft_wrap=True)
    console.print(f"{report.summary()} -> {dst}" + (f"; audit: {report.audit}" if report.audit else ""),
                  highlight=False, soft_wrap=True)
    return 0 if report.ok else 1
