"""CSV cells a spreadsheet shows as text, never runs: a module or op name from a dump (hostile, issue 11) such
as ``=HYPERLINK("http://x","y")`` would otherwise be a formula in Excel, LibreOffice or Sheets. Every CSV
writer passes its cells through :func:`safe_cell`."""

from typing import Any

# OWASP "CSV Injection": a cell starting with one of these is a formula (tab and CR: some spreadsheets strip
# them and then read the rest)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` as it goes into a CSV row: a string starting with a formula character gets a ``'`` in front
    (the spreadsheet shows the text as is); numbers and everything else pass unchanged, so ``-0.5`` written
    as a float stays ``-0.5``."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
