"""What every verb shares: turning errors into one line + exit 2, and the report output options."""

import functools
import sys
from typing import Any, Callable

import click

from ..errors import InputError


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input → one line on stderr and exit status 2; a bug → one line too, unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            if debug:
                raise
            click.echo(f"ascend-doctor: error: {exc}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"ascend-doctor: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                err=True,
            )
            sys.exit(2)

    return wrapper


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--output",
        "-o",
        "output",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the report to FILE instead of stdout.",
    )(fn)
    fn = click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(["table", "markdown", "json", "html"]),
        default="table",
        show_default=True,
        help="Report format.",
    )(fn)
    return fn
