"""Acceptance of issue 15 on the demo's precision run: ``compare`` and ``shadow`` print at most 60 lines in
a 100-column terminal by default, every line within the width; ``--all`` prints every row."""

import json
import os
import subprocess
import sys

import pytest

from ascend_tools.report.text_cells import text_width

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDTH = 100
MAX_LINES = 60
# the demo's tiny Llama, one bf16 training step with the demo's injected fault (see precision/demo_run.py)
SHADOW_SCRIPT = """
import torch
from ascend_tools.precision.demo_run import FAULT, tiny_llama
from ascend_tools.precision.faults import FaultInjector

model_cls, config, state = tiny_llama()
model = model_cls(config)
model.load_state_dict(state)
model.to(torch.bfloat16)
ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
with FaultInjector(FAULT):
    model(input_ids=ids, labels=ids).loss.backward()
"""

pytestmark = pytest.mark.slow


def cli(*args):
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    env.pop("NO_COLOR", None)
    cmd = [sys.executable, "-m", "ascend_tools.cli", *[str(a) for a in args]]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    from ascend_tools.precision import demo_run

    out = tmp_path_factory.mktemp("demo")
    demo_run.run(str(out))
    return str(out / "target-bf16"), str(out / "reference-fp32")


def check_fits(stdout):
    lines = stdout.splitlines()
    assert len(lines) <= MAX_LINES, stdout
    assert all(text_width(line) <= WIDTH for line in lines), max(lines, key=text_width)
    return lines


def test_compare_prints_at_most_60_lines_and_all_prints_every_pair(dumps):
    default = cli("compare", *dumps)
    assert default.returncode in (0, 1), default.stderr
    check_fits(default.stdout)
    assert "more rows" in default.stdout and "--all" in default.stdout

    pairs = json.loads(cli("compare", *dumps, "-f", "json").stdout)["pairs"]
    every = cli("compare", *dumps, "--all").stdout
    assert "more rows" not in every
    for p in pairs:  # every pair's row, by its order number at the start of a line
        assert any(line.split()[:1] == [str(p["order"])] for line in every.splitlines()), p["order"]
    assert len(every.splitlines()) > len(pairs)


def test_shadow_prints_at_most_60_lines_and_all_prints_every_op(tmp_path):
    from ascend_tools.precision.shadow_session import build_report, read_results
    from ascend_tools.report import render

    script = tmp_path / "train.py"
    script.write_text(SHADOW_SCRIPT)
    records_dir = tmp_path / "records"
    proc = cli("shadow", "--records", records_dir, "--", sys.executable, script)
    assert proc.returncode in (0, 1), proc.stderr
    check_fits(proc.stdout)

    records, metas = read_results(str(records_dir))
    report = build_report(records, metas, top=10, command=[sys.executable, str(script)], exit_status=0)
    every = render(report, "table", all_rows=True)
    table = next(t for s in report.sections for t in s.tables if len(t.rows) == len(records))
    assert len(table.rows) > MAX_LINES
    assert "more rows" not in every
    ops = [
        line
        for line in every.splitlines()
        if any(p in line for p in ("#init#", "#fwd#", "#bwd#", "#forward#"))
    ]
    assert len(ops) >= len(records)
