"""``profile``/``analyze`` on pytorch/examples' FSDP2 training script, none of it written for the profiler
(``tests/data/profiling/pytorch_examples_fsdp2``, byte for byte; PROVENANCE.md there): ``fully_shard`` on each of
10 transformer blocks and on the model, ``clip_grad_norm_`` over DTensor gradients, Adam, 10 steps, then a full
state dict of the model and the optimizer gathered for the checkpoint. Two real gloo ranks on the CPU, through
the zero-code-change CLI, with the two lines the CPU needs changed (see PROVENANCE.md).

Known answers, none taken from the profiler: the parameter shapes of the script's own model (its ``model.py``,
built with the arguments ``main()`` passes) give the bytes of every FSDP all-gather and reduce-scatter (a block's
or the root's parameters, float32), of each step's DTensor all-reduce in ``clip_grad_norm_`` (torch reduces the
stacked per-parameter norms: one float32 per parameter tensor) and of each gather of the checkpoint (one per
parameter for the model, two per parameter for Adam's state); the loop gives 10 steps. DTensor's all-reduce and
gathers are functional collectives: before ``funcol.py`` the profiler did not see them.

The fault: rank 1 skips the 4th ``clip_grad_norm_`` (``corpus_skip/sitecustomize.py``), as code that clips only where
a rank-local condition holds. Rank 0 waits in the norm's all-reduce; rank 1 goes on into the next step's first
all-gather, the same seq of the same group. Before, rank 0's all-reduce was unseen: analyze named rank 0 as the
*missing* rank of rank 1's all-gather (the wrong rank); now the group is out of step at that seq, rank 1 the
mismatched one, each rank's stack at its own line of the script.
"""

import collections
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SOURCE = os.path.join(ROOT, "tests", "data", "profiling", "pytorch_examples_fsdp2")
SKIP_SITE = os.path.join(HERE, "corpus_skip")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
#: the two lines the CPU needs (PROVENANCE.md): the accelerator-count gate's exit, and device_id=cpu
CPU_EDITS = (
    ("        exit()\n", "        pass\n"),
    (
        "init_process_group(backend=backend, device_id=device)",
        'init_process_group(backend=backend, device_id=None if device.type == "cpu" else device)',
    ),
)
#: what example.py's main() builds, and the lines of its text that say so (checked in the fixture)
MODEL_ARGS = {"n_layers": 10, "n_heads": 4, "vocab_size": 1024, "max_seq_len": 64, "dropout_p": 0}
MODEL_LINES = (
    "vocab_size = 1024",
    "seq_len = 64",
    "n_layers=10,",
    "n_heads=4,",
    "vocab_size=vocab_size,",
    "max_seq_len=seq_len,",
    "dropout_p=0,",
)
STEPS = 10
SKIP_AT = 3  # rank 1 skips the clip of step 3 (from 0)


def workdir(base, name, source=SOURCE, script="example.py", edits=CPU_EDITS):
    """A copy of ``source`` at ``base/name`` with ``edits`` made to ``script`` (each must match once)."""
    cwd = base / name
    shutil.copytree(source, cwd)
    path = cwd / script
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    return cwd


def _run(cwd, out, env=None, options=()):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "profile",
            "-o",
            out,
            *options,
            "--",
            *TORCHRUN,
            "example.py",
        ],
        cwd=cwd,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _analyze(out):
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", "analyze", out, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _colls(out, rank):
    with open(os.path.join(out, f"rank{rank}", "events.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["k"] == "coll"]


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    """Bytes of float32 parameters, from the script's own model: (one block's, the root's own, each parameter's)."""
    with open(os.path.join(SOURCE, "example.py"), encoding="utf-8") as f:
        text = f.read()
    for line in MODEL_LINES:
        assert line in text, line
    sys.path.insert(0, SOURCE)
    try:
        import model as public_model
    finally:
        sys.path.remove(SOURCE)
    sys.modules.pop("model", None)
    m = public_model.Transformer(public_model.ModelArgs(**MODEL_ARGS))
    block = 4 * sum(p.numel() for p in m.layers[0].parameters())
    root = 4 * sum(p.numel() for p in m.parameters()) - MODEL_ARGS["n_layers"] * block
    return block, root, [4 * p.numel() for p in m.parameters()]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("fsdp2-profile")
    cwd = workdir(base, "clean")
    out = str(base / "clean.prof")
    proc = _run(cwd, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("rank", [0, 1])
def test_every_fsdp_collective_of_each_step_has_its_bytes(clean, model_bytes, rank):
    block, root, _ = model_bytes
    layers = MODEL_ARGS["n_layers"]
    got = collections.Counter((r["op"], r["bytes"]) for r in _colls(clean, rank) if r["via"] == "fsdp")
    # forward: the root's and each block's parameters; backward: each block's again (the root stays gathered)
    # and one reduce-scatter of the gradients per FSDP module
    assert got == {
        ("all_gather", root): STEPS,
        ("all_gather", block): STEPS * 2 * layers,
        ("reduce_scatter", root): STEPS,
        ("reduce_scatter", block): STEPS * layers,
    }


@pytest.mark.parametrize("rank", [0, 1])
def test_the_dtensor_collectives_of_the_clip_and_the_checkpoint_are_seen(clean, model_bytes, rank):
    _, _, params = model_bytes
    colls = [r for r in _colls(clean, rank) if r["via"] == "dtensor"]
    clips = [r for r in colls if r["op"] == "all_reduce"]
    assert [r["step"] for r in clips] == list(range(STEPS))
    assert {r["bytes"] for r in clips} == {4 * len(params)}  # one float32 norm per parameter tensor
    assert all(r["api"] == "_c10d_functional.all_reduce" and r["t1"] >= r["t0"] for r in clips)
    gathers = [r["bytes"] for r in colls if r["op"] == "all_gather"]
    # the checkpoint's full state dicts: every parameter, then Adam's exp_avg and exp_avg_sq of each
    assert collections.Counter(gathers) == collections.Counter(params * 3)


def test_every_collective_is_in_one_seq_order_on_both_ranks(clean):
    """The functional collectives share the group's seq counter with the torch.distributed ones: both ranks
    list the same op and bytes at every seq of the group."""
    per_rank = [{r["seq"]: (r["op"], r["bytes"]) for r in _colls(clean, rank)} for rank in (0, 1)]
    assert per_rank[0] == per_rank[1]
    assert sorted(per_rank[0]) == list(range(len(per_rank[0])))


def test_a_rank_that_skips_the_clip_is_the_mismatched_one(tmp_path, model_bytes):
    cwd = workdir(tmp_path, "skip")
    out = str(tmp_path / "skip.prof")
    path = os.pathsep.join(p for p in (SKIP_SITE, os.environ.get("PYTHONPATH")) if p)
    env = {"SKIP_RANK": "1", "SKIP_AT": str(SKIP_AT), "PYTHONPATH": path}
    proc = _run(cwd, out, env, options=("--hang-timeout", "3", "--kill-on-hang"))
    assert proc.returncode != 0
    assert (cwd / "skip-fired").read_text() == f"rank 1 call {SKIP_AT}\n"
    report = _analyze(out)
    (hang,) = report["hangs"]
    per_step = (
        1 + 2 * MODEL_ARGS["n_layers"] + (1 + MODEL_ARGS["n_layers"]) + 1
    )  # gathers, scatters, the clip
    assert hang["seq"] == SKIP_AT * per_step + per_step - 1  # the skipped step's last collective: its clip
    assert hang["op"] == "all_reduce" and hang["step"] == SKIP_AT
    assert hang["waiting_ranks"] == [0, 1] and hang["mismatched_ranks"] == [1] and hang["missing_ranks"] == []
    # rank 1 went on to the next step's first all-gather: the root's parameters
    (call,) = hang["mismatched_calls"]
    assert (call["rank"], call["op"], call["bytes"]) == (1, "all_gather", model_bytes[1])
    lines = (cwd / "example.py").read_text().splitlines()
    clip = next(i for i, line in enumerate(lines, 1) if "clip_grad_norm_(" in line)
    forward = next(i for i, line in enumerate(lines, 1) if "loss = model(x).sum()" in line)
    stack_top = {r["rank"]: r["stack_top"] for r in report["ranks"]}
    assert stack_top == {0: f"example.py:{clip} in main", 1: f"example.py:{forward} in main"}
