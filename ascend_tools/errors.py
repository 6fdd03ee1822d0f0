"""Errors that mean "could not run": the CLI prints their one line and exits with status 2."""


class InputError(Exception):
    """Bad input named by the message, e.g. ``model.py: no such file``.

    Raised by library code; ``cli.py`` turns it into one line on stderr and exit status 2.
    """
