#!/usr/bin/env python
"""``check-ops -- python train.py`` on a Llama-2-7B fine-tuning script, beside the bare meta trace of the model.

    python bench/bench_check_ops_script.py [--repeat 3]

* **script**: ``python -m ascend_tools.cli check-ops -f json -o TMP -- python TMP/train.py --model TMP/llama2-7b``:
  a plain bf16 fine-tuning loop (``AutoModelForCausalLM.from_pretrained`` of a directory holding only
  Llama-2-7B's config.json, ``.cuda()``, AdamW(fused=True), batch 1 x 512 tokens), run unchanged on the fake
  node, one step (forward, loss, backward, optimizer.step) traced;
* **bare**: ``bench_check_ops.BARE`` on ``ascend_tools/examples/llama_7b.py``: torch + transformers, the same
  model built under ``torch.device("meta")``, forward and backward, no optimizer, no ascend_tools.

Interleaved runs, fresh processes, wall time and the kernel's peak RSS of the process tree's largest process
(``bench_check_ops.measure``); the ratio is script / bare of the medians. Targets (issue 12): ≤ 10 s, ≤ 1 GB.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_check_ops as base

from ascend_tools.examples.llama_7b import LLAMA2_7B

TRAIN = """
import argparse
import torch
from transformers import AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
args = parser.parse_args()
model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16).cuda()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
ids = torch.randint(0, 32000, (1, 512)).cuda()
for _ in range(10):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
"""


def write_script(tmp: str) -> List[str]:
    model_dir = os.path.join(tmp, "llama2-7b")
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(dict(LLAMA2_7B, model_type="llama", architectures=["LlamaForCausalLM"]), f)
    with open(os.path.join(tmp, "train.py"), "w") as f:
        f.write(TRAIN)
    report = os.path.join(tmp, "report.json")
    cli = [sys.executable, "-m", "ascend_tools.cli", "check-ops", "-f", "json", "-o", report]
    return [*cli, "--", "python", os.path.join(tmp, "train.py"), "--model", model_dir]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    runs: Dict[str, List[Any]] = {"script": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bench-check-ops-script-") as tmp:
        cmd = write_script(tmp)
        for _ in range(args.repeat):
            runs["bare"].append(base.run_bare("ascend_tools/examples/llama_7b.py", args.interval)["run"])
            run = base.measure(cmd, args.interval)
            if run.code not in (0, 1):
                base._fail("check-ops -- python train.py", run)
            with open(os.path.join(tmp, "report.json")) as f:
                trace = json.load(f)["trace"]
            if not trace["complete"]:
                sys.exit(f"bench: the step was not traced: {trace['stopped']}")
            runs["script"].append(run)
    wall = {k: statistics.median(r.wall for r in v) for k, v in runs.items()}
    rss = {k: statistics.median(r.max1 for r in v) for k, v in runs.items()}
    print(f"{'':8} {'wall s (median)':>16} {'peak RSS MB (median)':>22}")
    for k in ("script", "bare"):
        print(f"{k:8} {wall[k]:16.2f} {rss[k]:22.0f}")
    print(f"ratio    {wall['script'] / wall['bare']:16.2f} {rss['script'] / rss['bare']:22.2f}")
    print(
        f"targets: <= 10 s {'met' if wall['script'] <= 10 else 'MISSED'}, <= 1 GB {'met' if rss['script'] <= 1024 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
