"""MkDocs hook: generate the CLI reference from the typer app, so it never drifts from the code.

Only typer's public API is used: typer >= 0.29 bundles its own copy of click, so
importing ``click`` here would pick up a different (or missing) package.
"""

from __future__ import annotations

from typing import Any

import typer
import typer.main

_WIDTH = 90


def _plain_help(command: Any, ctx: typer.Context) -> str:
    """Plain-text help for one command (typer's rich renderer prints to a terminal instead)."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None  # typer then formats with its plain click formatter
    return command.get_help(ctx).rstrip()


def _command_help(group: Any) -> str:
    ctx = typer.Context(group, info_name="medconvert", terminal_width=_WIDTH, max_content_width=_WIDTH)
    parts = ["## medconvert\n\n```text\n" + _plain_help(group, ctx) + "\n```\n"]
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        sub = typer.Context(command, info_name=name, parent=ctx, terminal_width=_WIDTH,
                            max_content_width=_WIDTH)
        parts.append(f"## medconvert {name}\n\n```text\n{_plain_help(command, sub)}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - mkdocs hook signature
    if "<!-- cli-reference -->" not in markdown:
        return markdown
    from convert.cli import app

    group = typer.main.get_command(app)
    return markdown.replace("<!-- cli-reference -->", _command_help(group))
