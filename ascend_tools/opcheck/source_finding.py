"""One finding of the static scan, and its form in the report model."""

from dataclasses import dataclass

from ascend_tools.report.model import Finding
from ascend_tools.severity import Severity

# ``file`` of a finding on the script's arguments (``line`` = N of sys.argv[N]) or on the launcher's
# own options (``line`` = 1-based position among them).
COMMAND_LINE = "command line"
LAUNCHER = "launcher"


@dataclass(frozen=True)
class SourceFinding:
    file: str
    line: int  # for COMMAND_LINE / LAUNCHER: the argument's position
    col: int  # 1-based, like flake8/ruff
    rule: str
    severity: str  # error | warning | info
    message: str
    suggestion: str

    @property
    def location(self) -> str:
        """``file:line:col``, or ``command line:argN`` for a flag of the launch command."""
        if self.file in (COMMAND_LINE, LAUNCHER):
            return f"{self.file}:arg{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


def as_report_finding(f: SourceFinding) -> Finding:
    """The report model's Finding for one source finding."""
    return Finding(
        severity=Severity.parse(f.severity),
        rule=f.rule,
        message=f.message,
        location=f.location,
        suggestion=f.suggestion,
    )
