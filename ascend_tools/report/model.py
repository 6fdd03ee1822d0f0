"""One report model that every verb fills and every renderer reads.

A verb builds a :class:`Report` (human-facing sections plus the machine payload ``data``);
``ascend_tools.report.render`` turns it into terminal text, markdown, JSON or self-contained HTML.
The JSON output is ``{"schema": report.schema, **report.data}``: the payload is the contract,
the sections are presentation.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..severity import Severity, worst


@dataclass
class Table:
    """Rows of cells under named columns, ordered by what matters (culprits, errors, lateness first).
    ``status_column`` names a column whose values (``error``/``warning``/``info``/``npu``/
    ``cpu_fallback``/...) renderers may colour. ``kinds`` declares a column's kind (``id``, ``path``,
    ``number``, ``text``: see ``report/columns.py``; inferred from the values when not declared).
    ``headline``: how many of the first rows the terminal shows without ``--all`` (None: the renderer's
    default)."""

    title: str
    columns: List[str]
    rows: List[List[Any]]
    note: str = ""
    status_column: Optional[str] = None
    kinds: Dict[str, str] = field(default_factory=dict)
    headline: Optional[int] = None


@dataclass
class Finding:
    """One actionable finding: what, where, how bad, what to do instead. A verb's judgement (its exit
    status under ``--fail-on``) is the worst severity among its report's findings."""

    severity: Severity
    rule: str
    message: str
    location: str = ""
    suggestion: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.severity, Severity):  # a word from a caller mypy does not check yet
            raise TypeError(f"Finding.severity: a Severity, not {self.severity!r}")


@dataclass
class Series:
    """Data for one line plot: ``lines`` maps a legend label to (x, y) points.
    ``marks`` are vertical markers (x, label), e.g. the forward/backward boundary; ``points`` are single
    points drawn as markers with their label (x, y, label), e.g. the culprits on a drift plot."""

    title: str
    x_label: str
    y_label: str
    lines: Dict[str, List[Tuple[float, float]]]
    marks: List[Tuple[float, str]] = field(default_factory=list)
    log_y: bool = False
    points: List[Tuple[float, float, str]] = field(default_factory=list)


@dataclass
class Bars:
    """A bar chart: one bar per category. ``stacks`` maps a legend label (e.g. compute, exposed comm,
    wait) to one value per category; several labels stack in the given order. ``highlight`` names the
    categories the finding is about (e.g. the slow rank), drawn emphasised."""

    title: str
    x_label: str
    y_label: str
    categories: List[str]
    stacks: Dict[str, List[float]]
    highlight: List[str] = field(default_factory=list)


@dataclass
class Heatmap:
    """A matrix of values, ``values[row][col]`` (None: no data), e.g. lateness per rank × step."""

    title: str
    x_label: str
    y_label: str
    x_ticks: List[str]
    y_ticks: List[str]
    values: List[List[Optional[float]]]
    value_label: str = ""


@dataclass
class Scatter:
    """Points per legend label (e.g. busbw vs message size, one label per collective kind), with
    optional log axes; ``labels`` annotate single points (x, y, text), e.g. the culprit op."""

    title: str
    x_label: str
    y_label: str
    points: Dict[str, List[Tuple[float, float]]]
    log_x: bool = False
    log_y: bool = False
    labels: List[Tuple[float, float, str]] = field(default_factory=list)


Chart = Union[Bars, Heatmap, Scatter]


@dataclass
class Section:
    title: str
    text: List[str] = field(default_factory=list)
    tables: List[Table] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    series: List[Series] = field(default_factory=list)
    charts: List[Chart] = field(default_factory=list)


@dataclass
class Report:
    """``headline``: one sentence shown first, under the title, when the report cannot be read at face
    value (e.g. "the command failed (exit 2) before any op ran — no verdict")."""

    schema: str
    title: str
    summary: List[Tuple[str, Any]] = field(default_factory=list)
    sections: List[Section] = field(default_factory=list)
    data: Dict[str, Any] = field(default_factory=dict)
    headline: str = ""

    def section(self, title: str, text: Sequence[str] = ()) -> Section:
        """Append a new section and return it for filling."""
        sec = Section(title=title, text=list(text))
        self.sections.append(sec)
        return sec

    def findings(self) -> Iterator[Finding]:
        """Every finding, section by section."""
        for sec in self.sections:
            yield from sec.findings

    def worst(self) -> Optional[Severity]:
        """The highest severity among the findings; None when there is none."""
        return worst(f.severity for f in self.findings())
