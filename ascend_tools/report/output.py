"""Render a :class:`Report` in one of :data:`FORMATS` and write it to stdout or a file.

Files are written atomically (a temporary file in the target directory, then :func:`os.replace`), so a
failure never leaves a half-written report behind; an unwritable path raises
:class:`~ascend_tools.errors.InputError` naming it.
"""

import os
import sys
from typing import Optional

import click

from ..atomic import open_atomic
from ..errors import InputError
from .model import Report

FORMATS = ("table", "markdown", "json", "html")


def render(report: Report, fmt: str, color: bool = False, all_rows: bool = False) -> str:
    """The report as text in ``fmt`` (one of :data:`FORMATS`); ``color`` and ``all_rows`` (every row of
    every table, not the headline rows) only affect ``table``. (Each renderer is imported when used: the
    HTML one alone is a third of the CLI's start-up, and of every process a compare starts.)"""
    if fmt == "table":
        from .render_text import render_text

        return render_text(report, color=color, all_rows=all_rows)
    if fmt == "markdown":
        from .render_markdown import render_markdown

        return render_markdown(report)
    if fmt == "json":
        from .render_json import render_json

        return render_json(report)
    if fmt == "html":
        from .render_html import render_html

        return render_html(report)
    raise InputError(f"--format {fmt}: unknown format (choose from {', '.join(FORMATS)})")


def stdout_color() -> bool:
    """Colour on stdout only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def write_report(report: Report, fmt: str, output: Optional[str], all_rows: bool = False) -> None:
    """Write the rendered report to stdout (``output`` None or ``"-"``) or, atomically, to ``output``."""
    if output is None or output == "-":
        color = fmt == "table" and stdout_color()
        click.echo(render(report, fmt, color=color, all_rows=all_rows), nl=False)
        return
    write_text(render(report, fmt, all_rows=all_rows), output)


def write_text(text: str, output: Optional[str]) -> None:
    """``text`` to stdout (``output`` None or ``"-"``) or atomically to the file ``output``: a temp file in
    the same directory, then ``os.replace``; a failure raises InputError and leaves nothing behind."""
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    path = os.path.expanduser(os.fspath(output))
    if os.path.isdir(path):
        raise InputError(f"--output {output}: is a directory")
    try:
        with open_atomic(path, fsync=True) as f:
            f.write(text)
    except OSError as exc:
        raise InputError(f"--output {output}: {_reason(exc)}") from exc
