"""MkDocs hook: generate the CLI reference from the typer app, so it never drifts from the code."""

from __future__ import annotations

import click
import typer.main


def _plain_help(command: click.Command, ctx: click.Context) -> str:
    """Click's plain-text help (typer's rich renderer prints to a terminal instead of returning text)."""
    formatter = ctx.make_formatter()
    base = click.Group if isinstance(command, click.Group) else click.Command
    base.format_help(command, ctx, formatter)
    return formatter.getvalue().rstrip()


def _command_help(group: click.Group) -> str:
    ctx = click.Context(group, info_name="medconvert", terminal_width=90, max_content_width=90)
    parts = ["## medconvert\n\n```text\n" + _plain_help(group, ctx) + "\n```\n"]
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx, terminal_width=90,
                            max_content_width=90)
        parts.append(f"## medconvert {name}\n\n```text\n{_plain_help(command, sub)}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - mkdocs hook signature
    if "<!-- cli-reference -->" not in markdown:
        return markdown
    from convert.cli import app

    group = typer.main.get_command(app)
    return markdown.replace("<!-- cli-reference -->", _command_help(group))
