"""Reports: one model (:class:`Report`) that every verb fills, rendered to terminal text, markdown,
JSON or self-contained HTML by :func:`render`, and written by :func:`write_report`."""

from ..severity import Severity
from .model import Bars, Chart, Finding, Heatmap, Report, Scatter, Section, Series, Table
from .output import FORMATS, render, write_report, write_text

__all__ = [
    "FORMATS",
    "Bars",
    "Chart",
    "Finding",
    "Heatmap",
    "Report",
    "Scatter",
    "Section",
    "Series",
    "Severity",
    "Table",
    "render",
    "write_report",
    "write_text",
]
