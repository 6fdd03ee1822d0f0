"""The contract every verb keeps (docs/cli.md): one ``--fail-on``, exit statuses 0 / 1 / 2 / 3, the line that
says where ``-o FILE`` went, ``--debug`` before or after the verb, and the headline of a report whose command
failed. One test per cell of the table in docs/cli.md that can occur.

In process with click's CliRunner. The verbs that run a command (dump, shadow, profile) start a real
subprocess only where the command's own failure is the point; elsewhere ``launch.run`` is replaced by a
function that runs the tool in this process, as the launched process would."""

import contextlib
import json
import os
import sys

import pytest
import torch
from click.testing import CliRunner

from ascend_tools import launch
from ascend_tools.cli import main
from ascend_tools.commands.common import FAIL_ON
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.profiling import synthetic

JUDGING = ("check-ops", "compare", "loss-compare", "shadow", "selfcheck", "analyze")
NOT_JUDGING = ("env", "demo", "dump", "patch-status", "profile")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def wrote_line(result, path, fmt):
    """The one stderr line of ``-o FILE``, with the file's real size."""
    size = os.path.getsize(path)
    shown = f"{size} B" if size < 1024 else f"{size / 1024:.1f} KB"
    return f"ascend-doctor: wrote {path} ({fmt}, {shown})" in result.stderr.splitlines()


def test_every_verb_is_covered_and_judges_with_one_fail_on():
    assert sorted(main.commands) == sorted(JUDGING + NOT_JUDGING)
    for name, cmd in main.commands.items():
        params = {p.name: p for p in cmd.params}
        assert "debug" in params, name  # --debug after the verb
        if name in JUDGING:
            fail_on = params["fail_on"]
            assert tuple(fail_on.type.choices) == FAIL_ON and fail_on.default == "error", name
        else:
            assert "fail_on" not in params, name


# --- check-ops (--scan-only: no model process) -----------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    texts = {
        "clean": "import torch\n\nx = torch.ones(2)\n",
        "warning": "import torch\n\nx = torch.ones(2).double()\n",  # float64: a warning
        "error": "import torch\nfrom flash_attn import flash_attn_func\n",  # unguarded flash-attn: an error
    }
    for name, text in texts.items():
        (d / f"{name}.py").write_text(text, encoding="utf-8")
    return {name: d / f"{name}.py" for name in texts}


@pytest.mark.parametrize(
    ("source", "fail_on", "status"),
    [
        ("clean", "error", 0),
        ("clean", "warning", 0),
        ("warning", "error", 0),
        ("warning", "warning", 1),
        ("warning", "never", 0),
        ("error", "error", 1),
        ("error", "warning", 1),
        ("error", "never", 0),
    ],
)
def test_check_ops_exit_0_or_1_by_fail_on(sources, source, fail_on, status):
    result = invoke("check-ops", sources[source], "--scan-only", "-f", "json", "--fail-on", fail_on)
    assert result.exit_code == status, result.output
    assert result.stderr == ""


def test_check_ops_default_is_fail_on_error(sources):
    assert invoke("check-ops", sources["warning"], "--scan-only").exit_code == 0
    assert invoke("check-ops", sources["error"], "--scan-only").exit_code == 1


def test_check_ops_findings_name_the_ops_of_each_status():
    from ascend_tools.opcheck import checkops
    from ascend_tools.report import Severity

    row = {"count": 1, "dtypes": ["float32"], "modules": ["m"], "phases": ["forward"], "reason": "r"}
    payload = {
        "description": "m",
        "kind": "python",
        "trace": {"error": None, "device": "meta"},
        "ops": [
            dict(row, op="aten::a", status="unsupported", site="m.py:1", dtype_risks=[], risk_site=None),
            dict(
                row,
                op="aten::b",
                status="cpu_fallback",
                site="m.py:2",
                dtype_risks=["float64"],
                risk_site="m.py:2",
            ),
            dict(row, op="aten::c", status="npu", site="m.py:3", dtype_risks=[], risk_site=None),
        ],
        "patterns": [],
    }
    report = checkops.build_report(checkops.Options(target="m.py"), payload, [])
    found = {f.rule: f for f in report.findings()}
    assert found["unsupported-op"].severity == Severity.ERROR and "aten::a" in found["unsupported-op"].message
    assert found["cpu-fallback"].severity == Severity.WARNING and found["cpu-fallback"].location == "m.py:2"
    assert found["dtype-risk"].severity == Severity.WARNING
    assert report.data["summary"]["worst_severity"] == "error"


# --- loss-compare ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    d = tmp_path_factory.mktemp("curves")

    def log(name, losses, steps=True):
        lines = [f"step={i} loss={v}" if steps else f"loss={v}" for i, v in enumerate(losses, 1)]
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return d / name

    ref = [2.0 - 0.1 * i for i in range(10)]
    return {
        "ref": log("ref.log", ref),
        "same": log("same.log", ref),
        "diverged": log("diverged.log", [v * (1.2 if i > 5 else 1.0) for i, v in enumerate(ref)]),
        "no_steps": log("no_steps.log", ref, steps=False),  # a warning: the n-th loss line is step n
    }


@pytest.mark.parametrize(
    ("run", "fail_on", "status"),
    [
        ("same", "error", 0),
        ("diverged", "error", 1),
        ("diverged", "never", 0),
        ("no_steps", "error", 0),
        ("no_steps", "warning", 1),
    ],
)
def test_loss_compare_exit_0_or_1_by_fail_on(curves, run, fail_on, status):
    result = invoke("loss-compare", curves[run], curves["ref"], "--fail-on", fail_on, "-f", "json")
    assert result.exit_code == status, result.output


# --- analyze ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    out = {}
    for name, kw in {
        "balanced": {},
        "slow": {"straggler": 1, "delay": 0.01},  # a slow rank: a warning
        "hung": {"hang_at": 50, "hang_rank": 1},  # a hang: an error
    }.items():
        path = str(tmp_path_factory.mktemp(name))
        synthetic.write_profile(path, ranks=2, collectives=60, per_step=6, **kw)
        out[name] = path
    return out


@pytest.mark.parametrize(
    ("profile", "fail_on", "status"),
    [
        ("balanced", "warning", 0),
        ("slow", "error", 0),
        ("slow", "warning", 1),
        ("hung", "error", 1),
        ("hung", "never", 0),
    ],
)
def test_analyze_exit_0_or_1_by_fail_on(profiles, profile, fail_on, status):
    result = invoke("analyze", profiles[profile], "--fail-on", fail_on, "-f", "json")
    assert result.exit_code == status, result.output


# --- compare (two small dumps made here) --------------------------------------------------------------------


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SiLU(), torch.nn.Linear(16, 4))


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    from ascend_tools.precision import capture

    d = tmp_path_factory.mktemp("dumps")
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    out = {}
    for name, fault in (("ref", None), ("faulty", Fault("aten::addmm", call=1))):
        model = _mlp()
        with (
            FaultInjector(fault) if fault else contextlib.nullcontext(),
            capture(str(d / name), mode="tensor", model=model, stack=False),
        ):
            model(x).sum()
        out[name] = d / name
    return out


@pytest.mark.parametrize(
    ("target", "fail_on", "status"), [("ref", "error", 0), ("faulty", "error", 1), ("faulty", "never", 0)]
)
def test_compare_exit_0_or_1_by_fail_on(dumps, target, fail_on, status):
    result = invoke("compare", dumps[target], dumps["ref"], "--fail-on", fail_on, "-f", "json")
    assert result.exit_code == status, result.output


def test_compare_default_is_fail_on_error(dumps, tmp_path):
    out = tmp_path / "pairs.csv"
    result = invoke("compare", dumps["faulty"], dumps["ref"], "-f", "csv", "-o", out)
    assert result.exit_code == 1 and result.stdout == ""
    assert wrote_line(result, out, "csv")


# --- shadow (the tool in this process instead of a launched one) ----------------------------------------------


@pytest.fixture
def shadow_here(monkeypatch):
    """``launch.run`` replaced: shadow runs the small model here, with a fault when asked, and writes its
    records where the verb reads them; ``ran`` False: the command ran no PyTorch op."""

    def use(fault=None, ran=True, rc=0):
        def run(tool, cmd, out_dir, options):
            from ascend_tools.precision import shadow

            assert tool == "shadow"
            if ran:
                model = _mlp()
                with FaultInjector(fault) if fault else contextlib.nullcontext(), shadow(out=out_dir):
                    model(torch.randn(4, 8)).sum()
            return rc

        monkeypatch.setattr(launch, "run", run)

    return use


@pytest.mark.parametrize(
    ("fault", "fail_on", "status"),
    [
        (None, "error", 0),
        (Fault("aten::addmm", call=1), "error", 1),
        (Fault("aten::addmm", call=1), "never", 0),
    ],
)
def test_shadow_exit_0_or_1_by_fail_on(shadow_here, fault, fail_on, status):
    shadow_here(fault)
    result = invoke("shadow", "--fail-on", fail_on, "-f", "json", "--", "python", "train.py")
    assert result.exit_code == status, result.output
    assert json.loads(result.stdout)["command_exit_status"] == 0


def test_shadow_that_compared_nothing_says_so_first_and_warns(shadow_here, tmp_path):
    shadow_here(ran=False)
    out = tmp_path / "r.html"
    result = invoke("shadow", "-o", out, "-f", "html", "--", "python", "train.py")
    assert result.exit_code == 0  # a warning: not at --fail-on error
    first = "ascend-doctor shadow: no op was compared (did the command run PyTorch?) — no verdict"
    assert result.stderr.splitlines()[0] == first
    assert wrote_line(result, out, "html")
    assert invoke("shadow", "--fail-on", "warning", "--", "python", "train.py").exit_code == 1


def test_shadow_of_a_command_that_failed_after_some_ops(shadow_here):
    shadow_here(rc=1)
    result = invoke("shadow", "--", "python", "train.py")
    assert result.exit_code == 1  # the command's own status
    assert result.stderr.splitlines()[0].startswith(
        "ascend-doctor shadow: the command failed (exit 1) after "
    )
    assert "the verdict covers those only" in result.stdout.splitlines()[3]


# --- selfcheck ------------------------------------------------------------------------------------------------


@pytest.fixture
def selfcheck_rms_norm(monkeypatch):
    from ascend_tools.ops import selfcheck

    monkeypatch.setattr(selfcheck, "OP_MODULES", ("rms_norm",))
    return selfcheck


def test_selfcheck_exit_0_or_1_by_fail_on(selfcheck_rms_norm, monkeypatch):
    assert invoke("selfcheck", "-f", "json").exit_code == 0
    real = selfcheck_rms_norm.run

    def one_tier_fails(device):
        data = real(device)
        data["results"][0].update(verdict="fail", failures=["case0: off by 1%"])
        data["failed"] = 1
        return data

    monkeypatch.setattr(selfcheck_rms_norm, "run", one_tier_fails)
    assert invoke("selfcheck", "-f", "json").exit_code == 1
    assert invoke("selfcheck", "-f", "json", "--fail-on", "never").exit_code == 0


# --- the verbs that do not judge: 0 when they ran -----------------------------------------------------------


@pytest.fixture
def patch_module():
    import ascend_tools.patch as patch

    patch.revert()  # importing it patched transformers: leave the rest of the session unpatched
    yield patch
    patch.revert()


@pytest.mark.parametrize("verb", ["env", "patch-status"])
def test_report_verbs_exit_0_and_say_where_the_report_went(verb, tmp_path, patch_module):
    out = tmp_path / "report.md"
    result = invoke(verb, "-f", "markdown", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr.splitlines() == [result.stderr.strip()]
    assert wrote_line(result, out, "markdown")


def test_judging_verbs_say_where_the_report_went(sources, profiles, curves, tmp_path):
    for args, fmt in (
        (["check-ops", sources["clean"], "--scan-only"], "json"),
        (["analyze", profiles["balanced"]], "html"),
        (["loss-compare", curves["same"], curves["ref"]], "table"),
    ):
        out = tmp_path / f"r.{fmt}"
        result = invoke(*args, "-f", fmt, "-o", out)
        assert result.exit_code == 0 and result.stdout == "", result.output
        assert wrote_line(result, out, fmt)


def test_dump_exits_0_when_the_command_did(tmp_path, monkeypatch):
    from ascend_tools.precision import capture

    def run(tool, cmd, out_dir, options):
        with capture(out_dir, stack=False):
            torch.nn.Linear(4, 2)(torch.randn(3, 4)).sum()
        return 0

    monkeypatch.setattr(launch, "run", run)
    result = invoke("dump", "-o", tmp_path / "d", "--", "python", "train.py")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("ascend-doctor dump: rank 0: ")


def _fake_profile(rc):
    def run(tool, cmd, out_dir, options):
        os.makedirs(os.path.join(out_dir, "rank0"))
        with open(os.path.join(out_dir, "rank0", "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"closed_at": 1.0, "records": 5, "steps": 2} if rc == 0 else {}, f)  # {}: cut short
        return rc

    return run


def test_profile_exits_0_and_points_to_analyze(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "run", _fake_profile(0))
    result = invoke("profile", "-o", tmp_path / "p", "--", "python", "train.py")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "ascend-doctor profile: rank0: 5 records, 2 steps",
        f"ascend-doctor profile: next: ascend-doctor analyze {tmp_path / 'p'}",
    ]


# --- a command that failed: its status, and the headline says so first (real subprocesses) ---------------


def test_shadow_of_a_command_that_failed_before_any_op(tmp_path):
    result = invoke("shadow", "--", sys.executable, tmp_path / "nosuch.py")
    assert result.exit_code == 2  # python's own status for a missing script
    assert result.stderr.splitlines()[0] == (
        "ascend-doctor shadow: the command failed (exit 2) before any op ran — no verdict"
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("shadow: ") and lines[3] == (
        "the command failed (exit 2) before any op ran — no verdict"
    )
    assert "No op introduced an error" not in result.stdout


def test_dump_of_a_command_that_failed(tmp_path):
    result = invoke("dump", "-o", tmp_path / "d", "--", sys.executable, tmp_path / "nosuch.py")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "ascend-doctor dump: the command failed (exit 2) before any op was recorded"
    ]


def test_profile_of_a_command_that_failed(tmp_path, monkeypatch):
    result = invoke("profile", "-o", tmp_path / "p", "--", sys.executable, tmp_path / "nosuch.py")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [  # python failed before importing torch: no profiler started
        "ascend-doctor profile: the command failed (exit 2) before any rank wrote a profile"
    ]
    monkeypatch.setattr(launch, "run", lambda *args: 2)  # failed before the profiler started
    result = invoke("profile", "-o", tmp_path / "none", "--", "python", "train.py")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "ascend-doctor profile: the command failed (exit 2) before any rank wrote a profile"
    ]
    monkeypatch.setattr(launch, "run", _fake_profile(1))  # failed while rank 0 was running
    result = invoke("profile", "-o", tmp_path / "q", "--", "python", "train.py")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "ascend-doctor profile: the command failed (exit 1); what the ranks wrote before that:",
        "ascend-doctor profile: rank0: cut short",
        f"ascend-doctor profile: where each rank stopped: ascend-doctor analyze {tmp_path / 'q'}",
    ]


# --- exit 2: bad input, one line naming it --------------------------------------------------------------------

# verb arguments -> what the one line names. {missing} is a path that does not exist.
BAD_INPUT = {
    "check-ops": (["{missing}"], "{missing}: no such file"),
    "compare": (["{missing}", "{missing}"], "{missing}: no such file"),
    "loss-compare": (["{missing}", "{missing}"], "{missing}"),
    "analyze": (["{missing}"], "{missing}"),
    "shadow": ([], "no command to run"),
    "dump": (["-o", "{tmp}/d", "--steps", "a-b", "--", "python", "x.py"], "--steps"),
    "profile": (["-o", "{tmp}/p", "--hang-timeout", "-1", "--", "python", "x.py"], "--hang-timeout"),
}
# the verbs whose only inputs are options: a click usage error names the option
USAGE_ERROR = {
    "env": ["-f", "pdf"],
    "patch-status": ["-f", "pdf"],
    "selfcheck": ["-f", "pdf"],
    "demo": ["--output-dir", "{file}"],
}


@pytest.mark.parametrize("verb", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(verb, tmp_path):
    args, named = BAD_INPUT[verb]
    fill = {"missing": tmp_path / "missing", "tmp": tmp_path}
    result = invoke(verb, *[a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("ascend-doctor: error: ") and named.format(**fill) in line


@pytest.mark.parametrize("verb", sorted(USAGE_ERROR))
def test_a_bad_option_is_a_usage_error_and_exit_2(verb, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("")
    result = invoke(verb, *[a.format(file=file) for a in USAGE_ERROR[verb]])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("Error: Invalid value for ")


# --- exit 3: an internal error, one line; the traceback with --debug before or after the verb ---------------

# verb -> (a library function it calls, made to raise, and arguments that reach it)
INTERNAL = {
    "check-ops": ("ascend_tools.opcheck.checkops.scan_only", ["{clean}", "--scan-only"]),
    "env": ("ascend_tools.env.collect", []),
    "demo": ("ascend_tools.demo.run", ["--output-dir", "{tmp}/demo"]),
    "compare": ("ascend_tools.precision.compare.compare_dumps", ["a", "b"]),
    "dump": ("ascend_tools.launch.run", ["-o", "{tmp}/d", "--", "python", "x.py"]),
    "loss-compare": ("ascend_tools.precision.losscurve.loss_compare", ["a", "b"]),
    "shadow": ("ascend_tools.launch.run", ["--", "python", "x.py"]),
    "selfcheck": ("ascend_tools.ops.selfcheck.run", []),
    "patch-status": ("ascend_tools.patch.status", []),
    "analyze": ("ascend_tools.profiling.analyze.analyze", ["some-dir"]),
    "profile": ("ascend_tools.launch.run", ["-o", "{tmp}/p", "--", "python", "x.py"]),
}


def _broken(*args, **kwargs):
    raise RuntimeError("forced for the test")


@pytest.mark.parametrize("verb", sorted(INTERNAL))
def test_internal_error_is_one_line_and_exit_3(verb, tmp_path, monkeypatch, sources, patch_module):
    target, args = INTERNAL[verb]
    monkeypatch.setattr(target, _broken)
    args = [a.format(clean=sources["clean"], tmp=tmp_path) for a in args]

    plain = invoke(verb, *args)
    assert plain.exit_code == 3, plain.output
    (line,) = plain.stderr.splitlines()
    assert line.startswith("ascend-doctor: internal error: RuntimeError: forced for the test (a bug in ")
    assert "rerun with --debug" in line and "Traceback" not in plain.output

    for debug in ([verb, "--debug", *args], ["--debug", verb, *args]):
        result = invoke(*debug)
        assert result.exit_code == 3, result.output
        *trace, line = result.stderr.splitlines()
        assert "Traceback (most recent call last):" in trace and "RuntimeError: forced for the test" in trace
        assert line.startswith("ascend-doctor: internal error: RuntimeError: forced")
        assert "rerun with --debug" not in line


def test_debug_after_the_verb_shows_the_models_traceback_from_the_child(tmp_path, capfd):
    model = tmp_path / "model.py"
    model.write_text(
        "import torch\n\n\ndef helper():\n    raise ValueError('bad width')\n\n\n"
        "def build_model():\n    return helper()\n",
        encoding="utf-8",
    )
    plain = invoke("check-ops", model)
    assert plain.exit_code == 2
    assert plain.stderr == f"ascend-doctor: error: {model}:5: ValueError: bad width\n"
    assert "Traceback" not in capfd.readouterr().err

    debug = invoke("check-ops", model, "--debug")
    assert debug.exit_code == 2
    child = capfd.readouterr().err  # the model process writes to this process's stderr
    assert "Traceback (most recent call last):" in child and "in build_model" in child
    assert "ValueError: bad width" in child
    assert debug.stderr.splitlines()[-1] == f"ascend-doctor: error: {model}:5: ValueError: bad width"


# demo exits 0 when it ran: tests/test_wheel.py runs it (40 s) from an installed wheel.
