"""Regenerate the msprobe test dumps in this folder (see README.md). Needs mindstudio-probe 26.2.0.

    pip install mindstudio-probe==26.2.0 transformers
    python tests/data/msprobe/make_dump.py            # writes tests/data/msprobe/{fp32,bf16}_{tensor,stats}
                                                      # and msprobe_compare_result.csv

A 1-layer tiny Llama (random init from a config, no download) runs one train step (forward + backward of
the LM loss) under msprobe's ``PrecisionDebugger`` on CPU, once in float32 and once in bfloat16 from the
same initial weights and tokens:

* ``<variant>_tensor``: task "tensor", level "L1" (every torch API call, forward and backward, with full
  tensors in ``dump_tensor_data/``), 1 step;
* ``<variant>_stats``: task "statistics", level "mix" (APIs + nn.Module calls, ``construct.json`` filled),
  1 step (the reader's multi-step and multi-rank handling is tested on copies of it).

Then msprobe's own compare (bf16 as target, fp32 as golden, tensor dumps) writes its result table, from
which ``msprobe_compare_result.csv`` keeps the columns our metric agreement test needs. Wall times of the
dumps and of the compare are printed (for the benchmark notes).
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 1234
VOCAB, HIDDEN, SEQ = 16, 8, 4


def build_model(dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(dtype)
    model.train()
    return model


def batch():
    gen = torch.Generator().manual_seed(SEED + 1)
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=gen)
    return ids


def run(variant, dtype, task, level, steps):
    from msprobe.pytorch import PrecisionDebugger

    out = os.path.join(HERE, f"{variant}_{'tensor' if task == 'tensor' else 'stats'}")
    shutil.rmtree(out, ignore_errors=True)
    cfg = {
        "task": task,
        "dump_path": out,
        "rank": [],
        "step": [],
        "level": level,
        "async_dump": False,
        task: {"scope": [], "list": [], "data_mode": ["all"]},
    }
    if task == "statistics":
        cfg[task]["summary_mode"] = "statistics"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        cfg_path = f.name
    model = build_model(dtype)
    ids = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # PrecisionDebugger is a process-wide singleton: reset it so each run gets its own config.
    PrecisionDebugger._instance = None
    debugger = PrecisionDebugger(config_path=cfg_path)
    t0 = time.perf_counter()
    for _ in range(steps):
        debugger.start(model)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        debugger.stop()
        opt.step()
        opt.zero_grad()
        debugger.step()
    wall = time.perf_counter() - t0
    os.unlink(cfg_path)
    print(f"{variant} {task} {level}: {steps} step(s), {wall:.3f} s under msprobe, loss {loss.item():.6f}")
    return out, wall


def bare_step_time(dtype, repeat=20):
    model = build_model(dtype)
    ids = batch()
    t0 = time.perf_counter()
    for _ in range(repeat):
        model(input_ids=ids, labels=ids).loss.backward()
    return (time.perf_counter() - t0) / repeat


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dirs = {}
    for variant, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        dirs[variant], _ = run(variant, dtype, "tensor", "L1", 1)
        run(variant, dtype, "statistics", "mix", 1)
        print(f"{variant} bare step: {bare_step_time(dtype) * 1000:.2f} ms")
    compare(dirs["bf16"], dirs["fp32"])


COLUMNS = {  # ours: msprobe's column header
    "name": "NPU Name",
    "golden_name": "Bench Name",
    "target_dtype": "NPU Dtype",
    "golden_dtype": "Bench Dtype",
    "shape": "NPU Tensor Shape",
    "cosine": "Cosine",
    "euclidean": "EucDist",
    "max_abs_err": "MaxAbsErr",
    "max_rel_err": "MaxRelativeErr",
    "one_thousandth": "One Thousandth Err Ratio",
    "five_thousandths": "Five Thousandths Err Ratio",
    "result": "Result",
    "err_message": "Err_message",
}


def compare(target_step_root, golden_step_root):
    target = os.path.join(target_step_root, "step0")  # msprobe wants the step dir (it finds proc*/rank*)
    golden = os.path.join(golden_step_root, "step0")
    out = tempfile.mkdtemp()
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["msprobe", "compare", "-tp", target, "-gp", golden, "-o", out],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    tables = glob.glob(os.path.join(out, "**", "*.csv"), recursive=True) + glob.glob(
        os.path.join(out, "**", "*.xlsx"), recursive=True
    )
    if proc.returncode != 0 or not tables:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit("msprobe compare failed")
    print(f"msprobe compare (bf16 vs fp32 tensor dumps): {wall:.3f} s wall -> {tables}")
    rows = read_table(tables[0])
    dest = os.path.join(HERE, "msprobe_compare_result.csv")
    with open(dest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({ours: row.get(theirs, "") for ours, theirs in COLUMNS.items()})
    shutil.rmtree(out)
    print(f"wrote {dest}: {len(rows)} rows")


def read_table(path):
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    import openpyxl

    sheet = openpyxl.load_workbook(path, read_only=True).active
    it = sheet.iter_rows(values_only=True)
    header = [str(h) for h in next(it)]
    return [dict(zip(header, ("" if v is None else v for v in row))) for row in it]


if __name__ == "__main__":
    main()
