"""``ascend-doctor dump|shadow|profile -- CMD`` (ascend_tools/launch.py, ascend_tools/_site/sitecustomize.py):
the user's ``PYTHONPATH`` and ``sitecustomize`` keep their place, a descendant that is no rank starts
without our code, and signals sent to ``ascend-doctor`` reach the command (issue 11, findings 7 and 9).

The CLI runs from this checkout through ``python -c`` with the checkout on ``sys.path`` only, so that the
``PYTHONPATH`` the command sees is exactly the test's."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from polling import wait_for

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = f"import sys; sys.path.insert(0, {ROOT!r}); from ascend_tools.cli import main; main()"


def cli(tmp_path, *args, pythonpath=None, popen=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASCEND_DOCTOR")}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env["TMPDIR"] = str(tmp_path / "tmp")  # where a temporary directory of the launcher would go
    os.makedirs(env["TMPDIR"], exist_ok=True)
    cmd = [sys.executable, "-c", CLI, *args]
    if popen:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)


def ranks(out):
    return sorted(n for n in os.listdir(out) if n.startswith("rank"))


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(scope="module")
def user_env_run(tmp_path_factory):
    """One ``dump`` run of a script whose user ``PYTHONPATH`` dir holds ``setup.py`` and a
    ``sitecustomize.py`` that records what it saw: (tmp dir, the CLI's result, what the script printed)."""
    tmp = tmp_path_factory.mktemp("userenv")
    user = tmp / "user"
    user.mkdir()
    write(user / "setup.py", "WHO = 'user'\n")
    write(
        user / "sitecustomize.py",
        f"""
        import json, os, sys
        with open({str(tmp / "sitecustomize.json")!r}, "w") as f:
            json.dump({{"pid": os.getpid(), "active": os.environ.get("ASCEND_DOCTOR_ACTIVE"),
                       "ours": sorted(m for m in sys.modules if m.startswith("ascend_tools")),
                       "torch": "torch" in sys.modules,
                       "hooks": [type(f).__name__ for f in sys.meta_path]}}, f)
        """,
    )
    script = write(
        tmp / "train.py",
        """
        import json, os, sys
        try:
            import setup
            who = getattr(setup, "WHO", setup.__file__)
        except BaseException as exc:  # the checkout's setup.py runs setuptools.setup()
            who = repr(exc)
        before = os.environ.get("ASCEND_DOCTOR_ACTIVE")
        import torch
        m = torch.nn.Linear(4, 2)
        m(torch.randn(3, 4)).sum().backward()
        print(json.dumps({"pid": os.getpid(), "setup": who, "path": [os.path.abspath(p or ".") for p in sys.path],
                          "active_before_torch": before,
                          "capture": "ascend_tools.precision.capture_session" in sys.modules}))
        """,
    )
    proc = cli(tmp, "dump", "-o", str(tmp / "dump"), "--", sys.executable, script, pythonpath=str(user))
    assert proc.returncode == 0, proc.stderr
    return tmp, proc, json.loads(proc.stdout.strip().splitlines()[-1])


def test_user_pythonpath_modules_win_and_no_package_root_on_the_path(user_env_run):
    tmp, proc, seen = user_env_run
    assert seen["setup"] == "user"  # not the checkout's setup.py
    assert ROOT not in seen["path"]
    assert os.path.join(ROOT, "ascend_tools", "_site") not in seen["path"]
    assert str(tmp / "user") in seen["path"]
    assert seen["capture"]  # the tool still ran
    assert "rank 0:" in proc.stderr


def test_user_sitecustomize_runs_first(user_env_run):
    tmp, _, seen = user_env_run
    with open(tmp / "sitecustomize.json", encoding="utf-8") as f:
        site = json.load(f)
    assert site["pid"] == seen["pid"]  # it ran in the launched process ...
    assert site["active"] is None and site["ours"] == [] and not site["torch"]  # ... before anything of ours
    assert "_TorchHook" not in site["hooks"]
    assert seen["active_before_torch"] is None  # the role is claimed once torch is imported
    assert seen["capture"]  # and then the capture started


def test_descendant_that_is_no_rank_gets_nothing_of_ours(tmp_path):
    """A ``python -c`` started by the profiled script imports neither torch nor our package and writes no
    profile; the script itself is profiled."""
    script = write(
        tmp_path / "train.py",
        """
        import subprocess, sys
        import torch
        code = ("import sys, json; print(json.dumps(sorted(m for m in sys.modules "
                "if m.split('.')[0] in ('torch', 'ascend_tools'))))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        print("GRANDCHILD", out.strip())
        m = torch.nn.Linear(4, 2)
        m(torch.randn(3, 4)).sum().backward()
        print("TOP", "ascend_tools.profiling.profiler" in sys.modules)
        """,
    )
    out = tmp_path / "prof"
    proc = cli(tmp_path, "profile", "-o", str(out), "--", sys.executable, script)
    assert proc.returncode == 0, proc.stderr
    lines = dict(
        line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("GRANDCHILD", "TOP"))
    )
    assert json.loads(lines["GRANDCHILD"]) == []
    assert lines["TOP"] == "True"
    assert ranks(out) == ["rank0"]
    assert os.listdir(tmp_path / "tmp") == []  # no temporary directory


def test_mp_spawn_ranks_are_still_profiled(tmp_path):
    """Ranks started by ``torch.multiprocessing.spawn`` descend from the top process; ``profile`` still
    writes one directory per rank once they initialise their process group."""
    script = write(
        tmp_path / "train.py",
        """
        import os, socket, torch, torch.distributed as dist, torch.multiprocessing as mp

        def rank(r, n, port):
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            dist.init_process_group("gloo", rank=r, world_size=n)
            for _ in range(3):
                t = torch.ones(4)
                dist.all_reduce(t)
            dist.barrier()
            dist.destroy_process_group()

        if __name__ == "__main__":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.spawn(rank, args=(2, port), nprocs=2, join=True)
        """,
    )
    out = tmp_path / "prof"
    proc = cli(tmp_path, "profile", "-o", str(out), "--", sys.executable, script)
    assert proc.returncode == 0, proc.stderr
    assert ranks(out) == ["rank0", "rank1"]


SLEEPER = """
import os, signal, sys, time
out = sys.argv[1]

def term(signum, frame):
    with open(os.path.join(out, "got"), "w") as f:
        f.write(str(signum))
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

signal.signal(signal.SIGTERM, term)
with open(os.path.join(out, "pid.tmp"), "w") as f:
    f.write(str(os.getpid()))
os.replace(os.path.join(out, "pid.tmp"), os.path.join(out, "pid"))
time.sleep(120)
"""


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet
    except OSError:
        return True


def start_sleeper(tmp_path):
    script = write(tmp_path / "sleeper.py", SLEEPER)
    wrapper = cli(
        tmp_path, "dump", "-o", str(tmp_path / "d"), "--", sys.executable, script, str(tmp_path), popen=True
    )
    assert wait_for(lambda: (tmp_path / "pid").exists() or wrapper.poll() is not None, 60)
    assert wrapper.poll() is None, wrapper.communicate()
    return wrapper, int((tmp_path / "pid").read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_sigterm_to_the_wrapper_reaches_the_command(tmp_path):
    wrapper, pid = start_sleeper(tmp_path)
    try:
        wrapper.send_signal(signal.SIGTERM)
        _, err = wrapper.communicate(timeout=60)
        assert wrapper.returncode == 128 + signal.SIGTERM, err  # the command's status: 143
        assert (tmp_path / "got").read_text() == str(int(signal.SIGTERM))
        assert gone(pid)
        assert b"the command failed (exit 143)" in err
        assert os.listdir(tmp_path / "tmp") == []
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
        if wrapper.poll() is None:
            wrapper.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_sigkill_of_the_wrapper_takes_the_command_with_it(tmp_path):
    wrapper, pid = start_sleeper(tmp_path)
    try:
        wrapper.kill()
        wrapper.wait(timeout=30)
        assert wait_for(lambda: gone(pid), 30)
        assert not (tmp_path / "got").exists()  # SIGKILL, not a forwarded SIGTERM
        assert os.listdir(tmp_path / "tmp") == []
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


TRAIN = """
import os, sys, torch
m = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(m.parameters(), lr=0.1)
m(torch.randn(3, 4)).sum().backward()
opt.step()
print("TRAINED", os.environ.get("RANK", "-"), "ascend_tools" in sys.modules, flush=True)
"""

# a launcher that never imports torch: it runs argv[1:] (a first word "torchrun": -m torch.distributed.run) and
# says whether torch or our package got loaded
LAUNCHER = """
import subprocess, sys
args = sys.argv[1:]
if args[0] == "torchrun":
    args[:1] = ["-m", "torch.distributed.run"]
rc = subprocess.run([sys.executable, *args]).returncode
print("LAUNCHER", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ascend_tools")), flush=True)
sys.exit(rc)
"""


ACCELERATE_TRAIN = """
import os, sys, torch
from accelerate import Accelerator
acc = Accelerator(cpu=True)
m, opt = acc.prepare(torch.nn.Linear(4, 2), torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1))
acc.backward(m(torch.randn(3, 4)).sum())
print("TRAINED", os.environ.get("RANK", "-"), "ascend_tools" in sys.modules, flush=True)
"""


@pytest.mark.parametrize("processes", [1, 2])
def test_accelerate_launch_instruments_the_processes_that_train(tmp_path, processes):
    """``accelerate launch`` imports torch and trains nothing: before, it took the top role and the ``python
    train.py`` it starts (one without RANK, or one worker per rank through torchrun) got no dump: "no records"."""
    pytest.importorskip("accelerate")
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        pytest.skip("no accelerate console script beside this python")
    train = write(tmp_path / "train.py", ACCELERATE_TRAIN)
    out = tmp_path / "out"
    how = ["--cpu"] if processes == 1 else ["--multi_gpu"]  # on a machine without GPUs: gloo processes
    launch = [accelerate, "launch", *how, "--num_processes", str(processes), "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", train]  # fmt: skip
    proc = cli(tmp_path, "dump", "-o", str(out), "--", *launch)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("TRAINED") == processes and "False" not in proc.stdout
    assert ranks(out) == [f"rank{r}" for r in range(processes)]
    for r in range(processes):
        with open(out / f"rank{r}" / "step0" / "records.jsonl", encoding="utf-8") as f:
            assert "aten::addmm" in {json.loads(line)["name"] for line in f}


# a CLI like ``llamafactory-cli train``: it imports torch (to count the devices) and trains in-process on one
# device, or (``FORCE_TORCHRUN=1``, several devices) runs torchrun on its own training entry point and trains nothing
TORCH_CLI = """
import os, subprocess, sys, time, torch
if os.environ.get("FORCE_TORCHRUN"):
    time.sleep(2.5)  # its own start-up (imports, config): long enough for profile's provisional rank0
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "0", sys.argv[1]]
    sys.exit(subprocess.run(run).returncode)
exec(open(sys.argv[1]).read())
"""


@pytest.mark.parametrize("tool, torchrun", [("dump", False), ("dump", True), ("profile", True)])
def test_a_cli_that_imports_torch_and_starts_torchrun_has_its_workers_instrumented(tmp_path, tool, torchrun):
    """Before: the CLI took the top role and rank0, the workers its torchrun started got nothing (dump: "no
    records") or rank 0's was refused (profile: "another run is writing there"): LLaMA-Factory's multi-device
    launch. On one device it trains itself and is rank0, as before."""
    train = write(tmp_path / "train.py", TRAIN)
    cli_script = write(tmp_path / "cli.py", TORCH_CLI)
    out = tmp_path / "out"
    env_cmd = ["env", "FORCE_TORCHRUN=1"] if torchrun else []
    proc = cli(tmp_path, tool, "-o", str(out), "--", *env_cmd, sys.executable, cli_script, train)
    assert proc.returncode == 0, proc.stderr
    assert "another run is writing there" not in proc.stderr
    want = ["rank0", "rank1"] if torchrun else ["rank0"]
    assert ranks(out) == want
    for r, name in enumerate(want):
        if tool == "dump":
            with open(out / name / "step0" / "records.jsonl", encoding="utf-8") as f:
                assert "aten::addmm" in {json.loads(line)["name"] for line in f}
        else:  # each worker's own training step, under its own rank
            with open(out / name / "meta.json", encoding="utf-8") as f:
                meta = json.load(f)
            assert (meta["rank"], meta["steps"]) == (r, 1)


# what a script runs before its own ``import torch``: an availability check that imports nothing (datasets' and
# transformers' import-time ``importlib.util.find_spec("torch")``), or transformers itself
CHECKS_FIRST = {
    "find_spec": "import importlib.util\nassert importlib.util.find_spec('torch') is not None\n",
    "transformers": "import transformers\n",
}


@pytest.mark.parametrize(
    "tool, first", [("dump", "find_spec"), ("profile", "find_spec"), ("dump", "transformers")]
)
def test_a_script_that_looks_for_torch_before_importing_it_is_instrumented(tmp_path, tool, first):
    """Before: the finder that waits for ``import torch`` left ``sys.meta_path`` when torch was first looked
    up, not imported: every script importing datasets or transformers before torch (isort's order:
    ``import datasets`` sorts before ``import torch``; TRL's ``dpo.py``) ran without the tool, and ``dump``
    said "no records"."""
    if first == "transformers":
        pytest.importorskip("transformers")
    train = write(tmp_path / "train.py", CHECKS_FIRST[first] + TRAIN)
    out = tmp_path / "out"
    proc = cli(tmp_path, tool, "-o", str(out), "--", sys.executable, train)
    assert proc.returncode == 0, proc.stderr
    assert "TRAINED - True" in proc.stdout  # our package was loaded in the script's process
    assert ranks(out) == ["rank0"]
    if tool == "dump":
        with open(out / "rank0" / "step0" / "records.jsonl", encoding="utf-8") as f:
            assert "aten::addmm" in {json.loads(line)["name"] for line in f}


@pytest.mark.parametrize("tool", ["dump", "profile"])
def test_the_process_a_python_launcher_starts_is_the_one_instrumented(tmp_path, tool):
    """``python launcher.py`` (never imports torch) runs ``python train.py``: train.py gets the tool (before,
    the launcher took the top role at interpreter start and train.py got no dump: no rank directory)."""
    train = write(tmp_path / "train.py", TRAIN)
    launcher = write(tmp_path / "launcher.py", LAUNCHER)
    out = tmp_path / "out"
    proc = cli(tmp_path, tool, "-o", str(out), "--", sys.executable, launcher, train)
    assert proc.returncode == 0, proc.stderr
    assert "LAUNCHER []" in proc.stdout  # the launcher loaded neither torch nor our package
    assert "TRAINED - True" in proc.stdout
    assert ranks(out) == ["rank0"]
    if tool == "dump":
        with open(out / "rank0" / "step0" / "records.jsonl", encoding="utf-8") as f:
            assert "aten::addmm" in {json.loads(line)["name"] for line in f}
    else:
        with open(out / "rank0" / "meta.json", encoding="utf-8") as f:
            assert json.load(f)["steps"] == 1


def test_shadow_through_a_python_launcher_compares_the_training(tmp_path):
    train = write(tmp_path / "train.py", TRAIN)
    launcher = write(tmp_path / "launcher.py", LAUNCHER)
    proc = cli(tmp_path, "shadow", "-f", "json", "--", sys.executable, launcher, train)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert report["summary"]["compared"] >= 1, report["summary"]


def test_torchrun_started_by_a_python_launcher_instruments_its_workers(tmp_path):
    """``python launcher.py`` runs ``python -m torch.distributed.run`` (its agent imports torch but trains
    nothing): each worker writes rank{RANK}, the agent nothing (before: the launcher was top, so no worker
    got the dump)."""
    train = write(tmp_path / "train.py", TRAIN)
    launcher = write(tmp_path / "launcher.py", LAUNCHER)
    out = tmp_path / "out"
    torchrun = ["torchrun", "--nproc-per-node", "2", "--master-port", "0", train]
    proc = cli(tmp_path, "dump", "-o", str(out), "--", sys.executable, launcher, *torchrun)
    assert proc.returncode == 0, proc.stderr
    assert ranks(out) == ["rank0", "rank1"]
    for r in (0, 1):
        with open(out / f"rank{r}" / "meta.json", encoding="utf-8") as f:
            assert json.load(f)["rank"] == r
        with open(out / f"rank{r}" / "step0" / "records.jsonl", encoding="utf-8") as f:
            assert "aten::addmm" in {json.loads(line)["name"] for line in f}


@pytest.mark.parametrize(
    "cmd, expected",
    [
        (["torchrun", "--nproc-per-node", "2", "t.py"], True),
        (["python", "-m", "torch.distributed.run", "t.py"], True),
        (["python", "-u", "-m", "torch.distributed.launch", "t.py"], True),
        (["python", "launcher.py", "-m", "torch.distributed.run"], False),  # the script's own arguments
        (["python", "-m", "mypkg.train", "torchrun"], False),
    ],
)
def test_is_torchrun_reads_only_pythons_own_arguments(cmd, expected):
    from ascend_tools.launch import is_torchrun

    assert is_torchrun(cmd) is expected


def test_the_launcher_lists_of_the_site_hook_and_the_package_agree():
    """``_site/sitecustomize.py`` runs at interpreter start and imports nothing of ours: it keeps its own copies of
    the launcher lists, which must stay those of ``launch.py`` (what the profiler's subprocess hook reads)."""
    import ast

    from ascend_tools import launch

    with open(os.path.join(ROOT, "ascend_tools", "_site", "sitecustomize.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("TORCHRUN", "LAUNCHER_SCRIPTS", "CHILD_TOOLS"):
                values[name] = ast.literal_eval(node.value)
    assert values == {
        "TORCHRUN": launch.TORCHRUN,
        "LAUNCHER_SCRIPTS": launch.LAUNCHER_SCRIPTS,
        "CHILD_TOOLS": launch.CHILD_TOOLS,
    }
    site_modules = next(
        n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "LAUNCHER_MODULES"
    )
    listed = [ast.literal_eval(e) for e in site_modules.value.elts if not isinstance(e, ast.Starred)]
    assert (*launch.TORCHRUN[1:], *listed) == launch.LAUNCHER_MODULES


def test_a_popen_the_profiler_cannot_read_is_said_once_and_judged_by_popen(caplog):
    """The profiler's Popen hook (it gives up rank0 when the top process starts a launcher) reads each command;
    one it cannot read is Popen's to reject, and the hook says so once, not per call."""
    import logging

    from ascend_tools.profiling.profiler import _hook_launcher_popen

    called = []
    unhook = _hook_launcher_popen(lambda: called.append(1))
    try:
        with caplog.at_level(logging.WARNING, logger="ascend_tools"):
            for _ in range(3):
                with pytest.raises(TypeError):
                    subprocess.Popen([sys.executable, object()])  # Popen rejects it itself
            subprocess.run([sys.executable, "-c", "pass"], check=True)  # a readable one: no launcher
    finally:
        unhook()
    said = [r for r in caplog.records if "could not tell whether" in r.getMessage()]
    assert len(said) == 1
    assert called == []
