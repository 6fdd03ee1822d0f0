"""``dump`` and ``shadow`` on pytorch/examples' FSDP2 script (``tests/data/profiling/pytorch_examples_fsdp2``, byte for
byte, two CPU lines changed: PROVENANCE.md there), two real gloo ranks, through the zero-code-change CLI.

The script builds its model on the meta device, shards it with ``fully_shard`` (DTensor parameters) and
materializes it with ``model.to_empty(device=...)``, which swaps every parameter with a new tensor: under ``dump``
torch refused the swap (``Cannot swap t2 because it has weakref associated with it``: the capture's) and the
training died before its first step (swap_guard.py). Under ``shadow`` every in-place op on a DTensor (FSDP2's Adam
updates) was an internal error (1,262 in one step of the two ranks): the DTensor has no storage of its own to note a
write to, and the op on its local tensor is checked on its own.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "profiling"))
from test_profile_corpus_fsdp2 import TORCHRUN, workdir  # noqa: E402

pytestmark = pytest.mark.slow


def _cli(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", *args, "--", *TORCHRUN, "example.py"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dump_runs_the_script_through_and_names_its_parameters(tmp_path):
    cwd = workdir(tmp_path, "dump")
    proc = _cli(cwd, "dump", "-o", "dump", "--steps", "0-1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        with open(cwd / "dump" / f"rank{rank}" / "meta.json", encoding="utf-8") as f:
            meta = json.load(f)
        assert meta["internal_errors"] == 0 and sorted(meta["steps_recorded"]) == ["0", "1"]
        with open(cwd / "dump" / f"rank{rank}" / "step1" / "records.jsonl", encoding="utf-8") as f:
            names = {t["name"] for r in map(json.loads, f) for t in r["inputs"] if "name" in t}
        # the gathered parameters of a block FSDP2 hands to the forward, by their paths in the script's model
        assert {"layers.0.attention.wq.weight", "layers.9.feed_forward.w2.bias", "output.weight"} <= names


def test_shadow_checks_the_script_without_internal_errors(tmp_path):
    cwd = workdir(tmp_path, "shadow")
    proc = _cli(cwd, "shadow", "-f", "json", "-o", "shadow.json", "--steps", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(cwd / "shadow.json", encoding="utf-8") as f:
        report = json.load(f)
    assert report["summary"]["internal_errors"] == 0
    assert report["summary"]["compared"] > 0 and report["summary"]["ranks"] == [0, 1]
