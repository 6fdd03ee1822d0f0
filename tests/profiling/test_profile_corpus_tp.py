"""``profile``/``analyze`` on pytorch/examples' tensor-parallel script (``tests/data/profiling/pytorch_examples_tp``,
byte for byte; PROVENANCE.md there): ``parallelize_module`` with ``ColwiseParallel`` on ``in_proj`` and
``RowwiseParallel`` on ``out_proj`` of a toy MLP, AdamW, 10 iterations, two real gloo ranks on the CPU, through the
zero-code-change CLI, with the two lines the CPU needs changed (see PROVENANCE.md).

Tensor parallel talks only through DTensor's functional collectives: each forward ends in the all-reduce of the
row-parallel layer's partial output. Known answers, none taken from the profiler: the script's 10 iterations, its
batch of 20 and ``out_proj``'s 5 outputs (float32: 20 x 5 x 4 = 400 B an all-reduce), from its own text. Before
``funcol.py`` the profiler saw none of them: only the start-up scatter and broadcast of the parameters.
"""

import collections
import json
import os
import subprocess
import sys

import pytest
from test_profile_corpus_fsdp2 import TORCHRUN, workdir

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.path.dirname(HERE), "data", "profiling", "pytorch_examples_tp")
SCRIPT = "tensor_parallel_example.py"
CPU_EDITS = (
    ("    sys.exit()\n", "    pass\n"),
    (
        "device_type = torch.accelerator.current_accelerator().type",
        'device_type = getattr(torch.accelerator.current_accelerator(), "type", "cpu")',
    ),
)
#: what the script's text says (checked before the run)
SCRIPT_LINES = (
    "num_iters = 10",
    "inp = torch.rand(20, 10, device=device_type)",
    "self.out_proj = nn.Linear(32, 5)",
)
ITERATIONS, BATCH, OUT = 10, 20, 5


def test_every_row_parallel_all_reduce_is_seen_on_both_ranks(tmp_path):
    cwd = workdir(tmp_path, "tp", SOURCE, SCRIPT, CPU_EDITS)
    text = (cwd / SCRIPT).read_text()
    for line in SCRIPT_LINES:
        assert line in text, line
    out = str(tmp_path / "tp.prof")
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", "profile", "-o", out, "--", *TORCHRUN, SCRIPT],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    per_rank = []
    for rank in (0, 1):
        with open(os.path.join(out, f"rank{rank}", "events.jsonl"), encoding="utf-8") as f:
            colls = [r for r in map(json.loads, f) if r["k"] == "coll"]
        reduces = [r for r in colls if r["op"] == "all_reduce"]
        assert [(r["step"], r["bytes"], r["via"]) for r in reduces] == [
            (step, BATCH * OUT * 4, "dtensor") for step in range(ITERATIONS)
        ]
        per_rank.append(collections.Counter((r["seq"], r["op"], r["bytes"]) for r in colls))
    assert per_rank[0] == per_rank[1]  # one seq order on both ranks
