"""The issue-11 tally: replay the hostile-input corpus (``tests/data/hostile/make_corpus.py``) through the CLI,
run the fault suite, and print one markdown table row per case and the totals (docs/security.md, "Tally").

    python tools/hostile_tally.py [--timeout 120] [--no-faults]

A corpus case is run as ``python -m ascend_tools.cli VERB ARGS`` and classified from what it did: a hang (still
running after ``--timeout`` s), a traceback (``Traceback`` printed), an internal error (exit 3 or ``internal
error``), handled with one clear line (exit 2 with exactly one ``ascend-doctor: error:`` line, or exit 0/1: the
report names the problem), else unclear. A fault case is a test of ``tests/test_fault_suite.py`` (plus the kill
tests it references), each asserting nothing lost or mixed and the one-line refusal: passed is handled, failed
is counted as data lost, skipped keeps its reason (a tmpfs needs root).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_TESTS = [
    "tests/test_fault_suite.py",
    "tests/test_killed_before_first_step.py",
    "tests/precision/test_capture.py::test_killed_writer_leaves_readable_prefix",
    "tests/test_outputdir_symlinks.py",
]
# the lines that name a problem, most specific first (the first found is shown)
_SAYS = [
    re.compile(r"unreadable|bad line|skipped|not read|cannot|outside the world", re.I),
    re.compile(r"problem|refused|warning|error", re.I),
]
KINDS = ("handled", "unclear", "internal error", "traceback", "hang", "data lost", "skipped")


def corpus_rows(timeout: float) -> List[Tuple[str, str, str, str]]:
    sys.path.insert(0, os.path.join(ROOT, "tests", "data", "hostile"))
    from make_corpus import make_corpus

    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as root:
        for case, (verb, args) in sorted(make_corpus(root).items()):
            cmd = [sys.executable, "-m", "ascend_tools.cli", verb, *args]
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append((case, "hang", f"{verb}", f"still running after {timeout:.0f} s"))
                continue
            took = time.monotonic() - t0
            kind, line = classify(proc.returncode, proc.stdout, proc.stderr)
            observed = f"exit {proc.returncode}, {took:.1f} s: {line.replace(root + os.sep, '')}"
            rows.append((case, kind, verb, observed))
    return rows


def classify(rc: int, out: str, err: str) -> Tuple[str, str]:
    """(kind, the line that says what happened) of one CLI run."""
    lines = [x for x in err.splitlines() if x.strip()]
    text = [x.strip() for x in (out + "\n" + err).splitlines() if x.strip()]
    said = [x for pattern in _SAYS for x in text if pattern.search(x) and len(x.split()) > 2]
    first = lines[0] if rc == 2 and lines else (said or lines or text or [""])[0]
    if "Traceback (most recent call last)" in out + err:
        return "traceback", first
    if rc == 3 or "internal error" in err:
        return "internal error", first
    if rc == 2:
        one = len(lines) == 1 and lines[0].startswith("ascend-doctor: error: ")
        return ("handled" if one else "unclear"), first
    return ("handled" if rc in (0, 1) else "unclear"), first


def fault_rows() -> List[Tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        xml = os.path.join(tmp, "faults.xml")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={xml}",
                *FAULT_TESTS,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        rows = []
        for tc in ET.parse(xml).getroot().iter("testcase"):
            name = f"{tc.get('classname', '').rsplit('.', 1)[-1]}::{tc.get('name')}"
            took = f"{float(tc.get('time', 0)):.1f} s"
            failed = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
            skipped = tc.find("skipped")
            if failed is not None:
                rows.append(
                    (name, "data lost", "fault", f"FAILED ({took}): {failed.get('message', '')[:120]}")
                )
            elif skipped is not None:
                rows.append((name, "skipped", "fault", f"skipped: {skipped.get('message', '')[:120]}"))
            else:
                rows.append((name, "handled", "fault", f"passed ({took})"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a corpus case is a hang")
    parser.add_argument(
        "--no-faults", action="store_true", help="the corpus only (the fault suite takes minutes)"
    )
    args = parser.parse_args()
    rows = corpus_rows(args.timeout) + ([] if args.no_faults else fault_rows())
    print("| case | verb | kind | observed |")
    print("|---|---|---|---|")
    for case, kind, verb, observed in rows:
        print(f"| {case} | {verb} | {kind} | {observed.replace('|', '/')} |")
    counts: Dict[str, int] = {k: 0 for k in KINDS}
    for _, kind, _, _ in rows:
        counts[kind] += 1
    print()
    print(
        f"cases tried {len(rows)} / handled with one clear line {counts['handled']} / unclear {counts['unclear']}"
        f" / internal errors {counts['internal error']} / tracebacks {counts['traceback']} / hangs"
        f" {counts['hang']} / data lost {counts['data lost']} / skipped {counts['skipped']}"
    )
    bad = sum(counts[k] for k in ("unclear", "internal error", "traceback", "hang", "data lost"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
