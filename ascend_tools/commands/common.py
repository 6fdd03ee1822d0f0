"""What every verb shares: the contract of docs/cli.md, defined once.

Exit statuses: 0 ran, nothing at or above ``--fail-on``; 1 a finding at or above it; 2 bad input (one
line naming it); 3 an internal error (one line, the traceback with ``--debug``). Also the ``--fail-on``,
``--format``/``--output`` and ``--debug`` options, and the one line that says where ``-o FILE`` went.
"""

import functools
import logging
import os
import sys
import traceback
from typing import Any, Callable, NoReturn, Optional, Tuple

import click

from ..errors import InputError
from ..report import Report, Severity, write_report, write_text

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

FAIL_ON = ("error", "warning", "never")
DEBUG_HELP = "Show tracebacks, debug messages and the traced model's own output (before or after the verb)."

F = Callable[..., Any]


def configure_logging(debug: bool) -> None:
    """Log lines as ``ascend-doctor: ...`` on stderr: warnings, and this package's debug messages under
    ``--debug`` (not every library's)."""
    logging.basicConfig(level=logging.WARNING, format="ascend-doctor: %(message)s")
    logging.getLogger("ascend_tools").setLevel(logging.DEBUG if debug else logging.NOTSET)


def debug_enabled() -> bool:
    """Whether ``--debug`` was given, before the verb or after it."""
    return bool(click.get_current_context().find_root().params.get("debug"))


def _debug_after_verb(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().params["debug"] = True
        configure_logging(True)


def handle_errors(fn: F) -> F:
    """The exit statuses 2 and 3 of a verb, and its ``--debug`` (accepted after the verb too, as
    ``ascend-doctor --debug VERB`` is): bad input is one line and status 2, anything else that escapes
    the verb is a bug in ascend-doctor, one line and status 3. ``--debug`` adds the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            _fail(f"error: {exc}", EXIT_INPUT)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            hint = "" if debug_enabled() else "; rerun with --debug for the traceback"
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (a bug in ascend-doctor{hint}, please report it)",
                EXIT_INTERNAL,
            )

    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_debug_after_verb,
        help=DEBUG_HELP,
    )(wrapper)


def _fail(line: str, status: int) -> NoReturn:
    """The traceback first under --debug (the line stays last, where a reader looks), then the line."""
    if debug_enabled():
        click.echo(traceback.format_exc().rstrip("\n"), err=True)
    click.echo(f"ascend-doctor: {line}", err=True)
    sys.exit(status)


def fail_on_option(fn: F) -> F:
    """``--fail-on error|warning|never`` of every verb that judges, with one default."""
    return click.option(
        "--fail-on",
        type=click.Choice(FAIL_ON),
        default="error",
        show_default=True,
        help="Exit with status 1 when the report has a finding at or above this severity (never: exit 0).",
    )(fn)


def exit_code(report: Report, fail_on: str) -> int:
    """1 when ``report`` has a finding at or above ``fail_on`` (one of :data:`FAIL_ON`), else 0."""
    worst = report.worst()
    if fail_on == "never" or worst is None:
        return EXIT_OK
    return EXIT_FINDINGS if worst >= Severity.parse(fail_on) else EXIT_OK


REPORT_FORMATS = ("table", "markdown", "json", "html")


def report_output(
    extra_formats: Tuple[str, ...] = (), format_help: str = "Report format."
) -> Callable[[F], F]:
    """The ``--format/-f`` and ``--output/-o`` options; a verb with a format of its own (compare's csv)
    names it in ``extra_formats``."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--output",
            "-o",
            "output",
            type=click.Path(dir_okay=False),
            default=None,
            help="Write the report to FILE instead of stdout.",
        )(fn)
        return click.option(
            "--format",
            "-f",
            "fmt",
            type=click.Choice(REPORT_FORMATS + extra_formats),
            default="table",
            show_default=True,
            help=format_help,
        )(fn)

    return decorate


output_options = report_output()

#: ``--all``: every row of every table in the terminal (by default each shows its headline rows)
all_rows_option = click.option(
    "--all",
    "all_rows",
    is_flag=True,
    default=False,
    help="Print every row of every table (the terminal shows the first rows of each by default).",
)


def emit(
    report: Report, fmt: str, output: Optional[str], text: Optional[str] = None, all_rows: bool = False
) -> None:
    """Write ``report`` in ``fmt`` (or ``text``, already rendered in ``fmt``) to stdout, or to the file
    ``output`` and say so in one line on stderr, so that a log shows where the report went. ``all_rows``:
    every table row in the terminal format (``--all``)."""
    if text is None:
        write_report(report, fmt, output, all_rows=all_rows)
    else:
        write_text(text, output)
    if output is not None and output != "-":
        size = os.path.getsize(os.path.expanduser(output))
        click.echo(f"ascend-doctor: wrote {output} ({fmt}, {_size(size)})", err=True)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.1f} MB"


def command_failed(rc: int, before: str) -> str:
    """The headline of a verb whose wrapped command failed: ``the command failed (exit 2) before ...``;
    ``before`` is empty when it got as far as writing something."""
    return f"the command failed (exit {rc})" + (f" {before}" if before else "")
