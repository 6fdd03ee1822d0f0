"""``ascend-doctor check-ops`` end to end: bad inputs, JSON schema, --fail-on, options, the shipped example.

The CLI runs in-process (click's CliRunner); the model is traced in the child process the CLI starts."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data", "torch_npu")
OP_PLUGIN = os.path.join(SHARED, "op_plugin_functions.yaml")
TRAIN_CUDA = os.path.join(REPO, "ascend_tools", "examples", "train_cuda.py")
SCHEMA = "ascend-doctor/check-ops/1"

# A small model that has a float64 op (a dtype risk: a warning), a ReLU (threshold_backward only in the
# backward pass) and bitwise_left_shift.Tensor, whose out= kernel op_plugin gates at [v2.7, newest].
RISKY = """
import torch


class Risky(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x, n, s):
        h = torch.relu(self.lin(x))
        scale = h.sum().to(torch.float64).sqrt().to(h.dtype)
        return h * scale * torch.bitwise_left_shift(n, s).to(h.dtype)


def build_model():
    return Risky()


def example_inputs():
    return (torch.randn(2, 8), torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
"""


def invoke(*args):
    return CliRunner().invoke(main, ["check-ops", *map(str, args)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("targets")

    def write(name, text):
        path = d / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    inputs = "def example_inputs():\n    return (torch.randn(1, 2),)\n"
    paths = {
        "risky": write("risky.py", RISKY),
        "syntax": write("syntax.py", "import torch\n\n\ndef build_model(:\n    pass\n"),
        "raises": write("raises.py", "import torch\n\nX = 1\nraise RuntimeError('boom at import')\n"),
        "nonmodule": write(
            "nonmodule.py", "import torch\n\n\ndef build_model():\n    return 42\n\n\n" + inputs
        ),
        "nomodel": write("nomodel.py", "import torch\n\nX = 3\n"),
        "several": write(
            "several.py",
            "import torch\n\na = torch.nn.Linear(2, 2)\nb = torch.nn.Linear(2, 2)\n\n\n" + inputs,
        ),
        "noinputs": write(
            "noinputs.py", "import torch\n\n\ndef build_model():\n    return torch.nn.Linear(2, 2)\n"
        ),
        "hang": write(
            "hang.py",
            "import time\n\nimport torch\n\n\ndef build_model():\n    time.sleep(60)\n"
            "    return torch.nn.Linear(2, 2)\n\n\n" + inputs,
        ),
        "dies": write(
            "dies.py", "import os\n\nimport torch\n\n\ndef build_model():\n    os._exit(9)\n\n\n" + inputs
        ),
        "cuda_script": write(
            "cuda_script.py",
            """
            import torch
            import flash_attn_not_installed_here
            from flash_attn import flash_attn_func

            scaler = torch.cuda.amp.GradScaler()
            """,
        ),
    }
    (d / "emptydir").mkdir()
    paths["emptydir"] = d / "emptydir"
    (d / "nomodeltype").mkdir()
    (d / "nomodeltype" / "config.json").write_text('{"hidden_size": 8}', encoding="utf-8")
    paths["nomodeltype"] = d / "nomodeltype"
    paths["missing"] = d / "missing.py"
    paths["dir"] = d
    return paths


# --- bad input: exit 2, one line on stderr naming the input and the problem, no output file ------------

BAD = [
    ("missing", [], [r"no such file"]),
    ("emptydir", [], [r"config\.json"]),
    ("syntax", [], [r"syntax\.py:4\b", r"syntax error"]),
    ("raises", [], [r"raises\.py:4: RuntimeError: boom at import"]),
    ("nonmodule", [], [r"build_model", r"int", r"not an nn\.Module"]),
    ("nomodel", [], [r"no model found", r"build_model", r"nn\.Module instance", r"--entry"]),
    ("several", [], [r"\ba\b.*\bb\b", r"--entry"]),
    ("several", ["--entry", "nope"], [r"--entry nope", r"no such name"]),
    ("noinputs", [], [r"no example inputs", r"example_inputs\(\)"]),
    ("hang", ["--timeout", "2"], [r"timed out after 2 s", r"--timeout"]),
    ("dies", [], [r"died", r"exit 9"]),
    ("risky", ["--torch-npu-version", "1.9"], [r"--torch-npu-version 1\.9", r"unknown"]),
    ("nomodeltype", [], [r"model_type"]),
]


@pytest.mark.parametrize(
    ("name", "extra", "patterns"), BAD, ids=[f"{b[0]}{'-' + b[1][0] if b[1] else ''}" for b in BAD]
)
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, name, extra, patterns):
    out = tmp_path / "report.json"
    target = files[name]
    result = invoke(target, *extra, "-f", "json", "-o", out)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("ascend-doctor: error: ")
    if name != "risky":  # the version message names the option instead of the file
        assert str(target) in line or os.path.basename(str(target)) in line
    for pat in patterns:
        assert re.search(pat, line), (pat, line)
    assert "Traceback" not in line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temporary file left behind either


# --- a model that runs: JSON schema, --fail-on, options ---------------------------------------------


def _yaml_gate(func):
    """The op_api/acl_op gates of ``func`` in op_plugin_functions.yaml, read line by line."""
    if not os.path.exists(OP_PLUGIN):
        pytest.skip(f"{OP_PLUGIN} absent: CI keeps ../shared beside the clone")
    with open(OP_PLUGIN, encoding="utf-8") as f:
        text = f.read()
    m = re.search(rf"^[ \t]*- func: {re.escape(func)}\(.*\n((?:[ \t]+\S.*\n)*)", text, re.M)
    if m is None:
        return None
    return re.findall(r"^[ \t]+(?:acl_op|op_api):[ \t]*(.+?)[ \t]*$", m.group(1), re.M)


@pytest.fixture(scope="module")
def risky_json(files):
    result = invoke(files["risky"], "-f", "json")
    assert result.exit_code == 0, result.stderr  # --fail-on error: no error expected in this model
    return json.loads(result.stdout)


def _ops(doc):
    return {r["op"]: r for r in doc["ops"]}


def test_json_schema(risky_json):
    doc = risky_json
    assert doc["schema"] == SCHEMA
    assert doc["target"].endswith("risky.py")
    assert doc["torch_npu_version"] == "2.14" or re.fullmatch(r"\d+\.\d+", doc["torch_npu_version"])
    assert doc["trace"]["complete"] is True
    assert doc["ops"]
    for row in doc["ops"]:
        assert {"op", "count", "dtypes", "status", "modules"} <= set(row)
        assert row["status"] in ("npu", "cpu_fallback", "unsupported", "composite", "host")
        assert isinstance(row["count"], int) and row["count"] >= 1
    assert doc["source_findings"]  # risky.py uses torch.float64
    for f in doc["source_findings"]:
        assert {"file", "line", "col", "rule", "severity", "message", "suggestion"} <= set(f)
    assert isinstance(doc["patterns"], list)
    assert {"ops", "calls", "status", "worst_severity"} <= set(doc["summary"])
    # the float64 source finding sits on the line that says torch.float64
    lines = RISKY.lstrip().splitlines()
    f64_line = next(i for i, t in enumerate(lines, 1) if "torch.float64" in t)
    assert any(f["rule"] == "float64" and f["line"] == f64_line for f in doc["source_findings"])


def test_ops_of_the_risky_model(risky_json):
    ops = _ops(risky_json)
    assert ops["aten::addmm"]["status"] == "npu"
    assert ops["aten::addmm"]["modules"] == ["lin"]
    assert ops["aten::threshold_backward"]["phases"] == ["backward"]
    # float64 sqrt is no dtype risk: torch_npu's docs list float64 for torch.sqrt (restrictions.py)
    assert "float64" in ops["aten::sqrt"]["dtypes"] and ops["aten::sqrt"]["dtype_risks"] == []
    assert ops["aten::bitwise_left_shift.Tensor"]["dtypes"] == ["int64"]


def test_fail_on(files, risky_json):
    # the model has warnings (float64) and no error: error → 0 (risky_json), never → 0 here,
    # warning → 1 (test_html_output_file and test_console_entry_point_runs)
    assert not any(r["status"] == "unsupported" for r in risky_json["ops"])
    assert not any(f["severity"] == "error" for f in risky_json["source_findings"])
    never = invoke(files["risky"], "--fail-on", "never", "--no-backward", "--dtype", "bf16", "-f", "json")
    assert never.exit_code == 0
    doc = json.loads(never.stdout)
    # --no-backward: no backward op, no backward phase
    ops = _ops(doc)
    assert "aten::threshold_backward" not in ops
    assert all(r["phases"] == ["forward"] for r in doc["ops"])
    assert doc["trace"]["backward"] is False
    # --dtype bf16: the linear runs in bfloat16, its float32 example input cast too
    assert ops["aten::addmm"]["dtypes"] == ["bfloat16"]
    assert "float64" in ops["aten::sqrt"]["dtypes"]  # an explicit cast in the model stays
    assert doc["trace"]["dtype"] == "bf16"


def test_html_output_file(files, tmp_path):
    out = tmp_path / "x.html"
    result = invoke(files["risky"], "-f", "html", "-o", out, "--fail-on", "warning", "--no-backward")
    assert result.exit_code == 1  # the report is written even when findings fail the run
    assert result.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert "<svg" in text or "<table" in text
    assert "aten::addmm" in text


def test_torch_npu_version_gates_an_op(files, risky_json):
    # op_plugin registers bitwise_left_shift.Tensor_out only from v2.7; the functional variant is not listed
    # itself and runs on the NPU through torch's structured wrapper of that out= kernel
    assert _yaml_gate("bitwise_left_shift.Tensor") is None
    assert _yaml_gate("bitwise_left_shift.Tensor_out") == ["[v2.7, newest]"]
    assert torch._C._dispatch_has_kernel_for_dispatch_key(
        "aten::bitwise_left_shift.Tensor", "CompositeExplicitAutogradNonFunctional"
    )
    old = invoke(files["risky"], "--torch-npu-version", "2.1", "-f", "json", "--fail-on", "never")
    assert old.exit_code == 0, old.stderr
    doc = json.loads(old.stdout)
    assert doc["torch_npu_version"] == "2.1"
    assert _ops(doc)["aten::bitwise_left_shift.Tensor"]["status"] == "cpu_fallback"
    assert _ops(risky_json)["aten::bitwise_left_shift.Tensor"]["status"] == "npu"


def test_scan_only_on_a_file_that_cannot_be_imported(files):
    target = files["cuda_script"]
    result = invoke(target, "--scan-only", "-f", "json", "--fail-on", "never")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["trace"] is None and doc["ops"] == []
    rules = {(f["rule"], f["line"]) for f in doc["source_findings"]}
    assert ("lib-flash-attn", 3) in rules
    assert ("cuda-amp", 5) in rules
    worst = invoke(target, "--scan-only", "-f", "json", "--fail-on", "warning")
    assert worst.exit_code == 1
    assert json.loads(worst.stdout)["source_findings"] == doc["source_findings"]
    # without --scan-only the import fails: exit 2 naming the missing module
    traced = invoke(target)
    assert traced.exit_code == 2
    assert "flash_attn_not_installed_here" in traced.stderr


# --- the shipped example ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_cuda():
    result = CliRunner().invoke(main, ["check-ops", TRAIN_CUDA, "-f", "json"])
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def _line_of(text, needle):
    lines = [i for i, t in enumerate(text.splitlines(), 1) if needle in t]
    assert lines, needle
    return lines


def test_train_cuda_eigh_falls_back_to_cpu(train_cuda):
    if os.path.exists(OP_PLUGIN):
        with open(OP_PLUGIN, encoding="utf-8") as f:
            yaml_text = f.read()
        assert not re.search(r"- func: _?linalg_eigh[.(]", yaml_text)
    assert torch._C._dispatch_has_kernel_for_dispatch_key("aten::_linalg_eigh", "CPU")
    ops = _ops(train_cuda)
    eigh = ops["aten::_linalg_eigh"]
    assert eigh["status"] == "cpu_fallback"
    assert eigh["dtypes"] == ["float64"] and eigh["dtype_risks"]
    assert eigh["modules"] == ["<root>"]  # TinyLM.spectral_weight runs in the root's forward
    assert train_cuda["trace"]["complete"] is True
    assert train_cuda["summary"]["status"]["cpu_fallback"] >= 1


def test_train_cuda_source_findings(train_cuda):
    with open(TRAIN_CUDA, encoding="utf-8") as f:
        text = f.read()
    found = {(f["rule"], f["line"]) for f in train_cuda["source_findings"]}
    for line in _line_of(text, "from flash_attn import"):
        assert ("lib-flash-attn", line) in found
    for line in _line_of(text, "torch.cuda.amp."):
        assert ("cuda-amp", line) in found
    for line in _line_of(text, 'init_process_group("nccl")'):
        assert ("nccl-backend", line) in found
    for f in train_cuda["source_findings"]:
        assert f["file"].endswith("train_cuda.py")


# --- the installed entry point ------------------------------------------------------------------------


def test_console_entry_point_runs(files):
    exe = shutil.which("ascend-doctor")
    cmd = [exe] if exe else [sys.executable, "-m", "ascend_tools.cli"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [*cmd, "check-ops", str(files["risky"]), "-f", "json", "--fail-on", "warning", "--no-backward"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == SCHEMA
    assert "aten::addmm" in _ops(doc)


def test_data_dependent_values_are_assumed_and_reported(tmp_path):
    model = tmp_path / "gate.py"
    model.write_text(
        textwrap.dedent(
            """
            import torch


            class Gate(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lin = torch.nn.Linear(4, 4)

                def forward(self, x):
                    if torch.all(x > 0):
                        return self.lin(x).relu()
                    return self.lin(x)


            def build_model():
                return Gate()


            def example_inputs():
                return (torch.randn(2, 4),)
            """
        )
    )
    result = CliRunner().invoke(main, ["check-ops", str(model), "-f", "json", "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output)["trace"]
    assert trace["complete"]
    assert list(trace["assumed"]) == ["aten::_local_scalar_dense"]
    assert trace["assumed"]["aten::_local_scalar_dense"].endswith("gate.py:11 in forward")
    ops = [row["op"] for row in json.loads(result.output)["ops"]]
    assert "aten::relu" in ops  # the branch taken under the assumption (1 = True)
    text = CliRunner().invoke(main, ["check-ops", str(model), "--fail-on", "never"]).output
    assert "Data-dependent values assumed" in text


def test_scan_only_summary_says_the_ops_were_not_traced(files):
    """The terminal summary under --scan-only: the verdicts line names why it has no counts."""
    result = invoke(files["cuda_script"], "--scan-only", "--fail-on", "never")
    assert result.exit_code == 0, result.stderr
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if ":" in line
    }
    assert lines["verdicts"] == "none (ops not traced)"
    assert lines["traced"] == "not traced (--scan-only)"
