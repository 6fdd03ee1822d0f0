"""Which ops compare replays (``--replay auto|all|none``), and the replay processes the command runs them in
(precision/replay_pool.py): the report they give is the in-process one, a dump's refused request comes back from
them as a problem, and a process that dies costs its replays, not the compare."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision import capture, diagnose, pairpool, replay_pool
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.replay_job import ReplayJob, TensorFile


@pytest.fixture(scope="module")
def fault_pair(tmp_path_factory):
    """``relu(mm(x, w))`` twice on the same inputs; the target's mm output is 1.5x (a kernel fault), and so is
    the relu after it, which only carries that error on (its input is the mm's output file)."""
    base = tmp_path_factory.mktemp("gate")
    x, w = torch.randn(16, 16), torch.randn(16, 16)
    for side in ("target", "reference"):
        with torch.no_grad(), capture(str(base / side), mode="tensor"):
            torch.relu(torch.mm(x, w))
    step = base / "target" / "rank0" / "step0"
    for line in (step / "records.jsonl").read_text().splitlines():
        out = step / json.loads(line)["outputs"][0]["file"]
        np.save(out, np.load(out) * 1.5)
    return str(base / "target"), str(base / "reference")


def _rows(report):
    """The report's rows by op (each op runs once, before any forward: phase "init")."""
    return {row["name"].split("#")[0]: row for row in report.data["pairs"]}


def test_auto_replays_the_op_that_made_the_error_not_the_one_that_carried_it(fault_pair):
    auto, every = (_rows(compare_dumps(*fault_pair, replay=mode)) for mode in ("auto", "all"))
    assert auto["aten::mm"]["method"] == "replay"
    assert auto["aten::mm"]["introduced_verdict"] == "error"
    # relu's output is off by exactly its input's error: amplification 1 < REPLAY_AMPLIFICATION
    assert auto["aten::relu"]["introduced"] == pytest.approx(1.0, rel=1e-6)
    assert diagnose.REPLAY_AMPLIFICATION > 1.0
    assert auto["aten::relu"]["method"] == "amplification"
    # --replay all replays it too, and its replay passes: the kernel is right, its input was not
    assert every["aten::relu"]["method"] == "replay"
    assert every["aten::relu"]["introduced_verdict"] == "pass"
    for mode in ("auto", "all"):
        culprits = compare_dumps(*fault_pair, replay=mode).data["culprits"]
        assert [c["op"] for c in culprits] == ["aten::mm"]


def test_an_unknown_replay_mode_is_refused(fault_pair):
    with pytest.raises(ValueError, match="replay="):
        compare_dumps(*fault_pair, replay="some")


def _cli_json(*args):
    result = CliRunner().invoke(main, ["compare", *args, "-f", "json", "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("mode", ["auto", "all"])
def test_the_commands_replay_processes_give_the_in_process_report(fault_pair, mode):
    cli = _cli_json(*fault_pair, "--replay", mode)
    here = json.loads(json.dumps(compare_dumps(*fault_pair, replay=mode).data))
    assert any(p["method"] == "replay" for p in cli["pairs"])
    for key in ("pairs", "culprits", "summary"):
        assert cli[key] == here[key], key


def test_no_replay_is_replay_none(fault_pair):
    assert (
        _cli_json(*fault_pair, "--no-replay")["pairs"] == _cli_json(*fault_pair, "--replay", "none")["pairs"]
    )
    assert all(p["method"] != "replay" for p in _cli_json(*fault_pair, "--no-replay")["pairs"])


def _mm_job(fault_pair, name="aten::mm"):
    step = os.path.join(fault_pair[0], "rank0", "step0", "tensors")
    files = [TensorFile(os.path.join(step, f), "float32") for f in ("0.in0.npy", "0.in1.npy", "0.out0.npy")]
    args = {"args": [{"tensor": 0}, {"tensor": 1}]}
    return ReplayJob(name, args, tuple(files[:2]), (files[2],), 16)


def test_a_refused_request_comes_back_from_the_process_as_a_problem(fault_pair, tmp_path):
    planted = tmp_path / "planted.bin"
    evil = ReplayJob("aten::from_file", {"args": [str(planted), True, 1000]}, (), (None,), None)
    with replay_pool.ReplayProcesses(1) as processes:
        assert processes.available
        refused, replayed = processes.run([evil, _mm_job(fault_pair)])
    assert not planted.exists()
    assert refused.replay is None and refused.problem.startswith("not replayed: 'aten::from_file'")
    assert replayed.problem == "" and replayed.replay is not None and replayed.replay.is_error


def test_a_process_that_dies_costs_its_replays_not_the_compare(fault_pair):
    with replay_pool.ReplayProcesses(1) as processes:
        assert processes.run([_mm_job(fault_pair)])[0].replay is not None  # the process is up
        (child,) = processes._pool._processes.values()  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        outcomes = processes.run([_mm_job(fault_pair)] * 3)
    assert [o.problem for o in outcomes] == [replay_pool.DIED] * 3
    assert all(o.replay is None for o in outcomes)


def _exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_close_ends_the_processes(fault_pair):
    processes = replay_pool.ReplayProcesses(2)
    processes.run([_mm_job(fault_pair)] * 4)
    children = list(processes._pool._processes.values())  # type: ignore[union-attr]
    assert children and all(c.is_alive() for c in children)
    processes.close()
    # gone from the process table (reaped): is_alive() can read True when the pool's own thread reaped a child
    # between our join's wait and its poll (waitpid then fails with ECHILD and multiprocessing says "alive")
    assert not any(_exists(c.pid) for c in children)
    assert processes.run([_mm_job(fault_pair)]) is None  # closed: the caller replays in-process


def test_zero_processes_start_none_and_leave_the_replays_to_the_caller(fault_pair):
    with replay_pool.ReplayProcesses(0) as processes:
        assert not processes.available
        assert processes.run([_mm_job(fault_pair)]) is None


def test_the_command_starts_a_replay_process_for_our_dumps_only(fault_pair, monkeypatch):
    """msprobe's tensors are read in the compare's own process (torch.load): replays of them run there."""
    started = []
    init = replay_pool.ReplayProcesses.__init__
    monkeypatch.setattr(
        replay_pool.ReplayProcesses, "__init__", lambda self, n=1, **kw: started.append(n) or init(self, 0)
    )
    _cli_json(*fault_pair)
    assert started == [1]
    msprobe = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "msprobe")
    _cli_json(os.path.join(msprobe, "bf16_tensor"), os.path.join(msprobe, "fp32_tensor"))
    _cli_json(*fault_pair, "--stats-only")
    _cli_json(*fault_pair, "--no-replay")
    assert started == [1]
    _cli_json(*fault_pair, "--replay", "all")
    assert len(started) == 2 and 1 <= started[1] <= 4


def test_a_process_that_never_starts_leaves_the_replays_to_the_caller(fault_pair):
    """A process that dies before its first job (here: at its start) is no dump's doing: the compare then
    replays in its own process instead of reporting every replay lost."""
    with replay_pool.ReplayProcesses(1, prepare=os.abort) as processes:
        assert processes.run([_mm_job(fault_pair)]) is None
        assert not processes.available


def test_a_process_not_started_at_once_starts_at_the_first_job_and_for_none_sooner(fault_pair):
    with replay_pool.ReplayProcesses(1, start=False) as processes:
        assert not processes.available
        assert processes.run([]) == []
        assert not processes.available
        (outcome,) = processes.run([_mm_job(fault_pair)])
        assert processes.available
    assert outcome.problem == "" and outcome.replay is not None and outcome.replay.is_error


@pytest.fixture
def pools(monkeypatch):
    """The replay process pools the command starts, each with what its target's compare had done by then."""
    started = []
    measured = [False]
    real = replay_pool.ProcessPoolExecutor
    run = diagnose.Diagnoser.run

    def recorded(*args, **kwargs):
        started.append(measured[0])
        return real(*args, **kwargs)

    def measuring(self, pairs, progress=None):
        measured[0] = True
        return run(self, pairs, progress)

    monkeypatch.setattr(replay_pool, "ProcessPoolExecutor", recorded)
    monkeypatch.setattr(diagnose.Diagnoser, "run", measuring)
    return started, measured


def test_a_small_dump_starts_its_replay_process_only_when_an_op_needs_a_replay(fault_pair, pools):
    started, measured = pools
    target, reference = fault_pair
    assert _cli_json(reference, reference)["summary"]["culprits"] == 0  # nothing to replay
    assert started == []
    measured[0] = False
    culprits = _cli_json(target, reference)["culprits"]
    assert [c["op"] for c in culprits] == ["aten::mm"]
    assert started == [True]  # after the pairs were measured


def test_a_large_dump_starts_its_replay_process_before_measuring(fault_pair, pools, monkeypatch):
    from ascend_tools.commands import compare as command

    started, _ = pools
    monkeypatch.setattr(command, "EAGER_REPLAY_BYTES", 1024)  # the fault pair's tensors: 3 KB
    _cli_json(fault_pair[1], fault_pair[1])
    assert started == [False]


def test_the_processes_share_out_this_process_cpus_for_their_kernels():
    """The compare sends its jobs once its own threads are done: one process gets every CPU the compare may use,
    n processes a share each (at least one)."""
    cpus = min(len(os.sched_getaffinity(0)), pairpool.MAX_WORKERS)
    for n in (1, 2):
        with replay_pool.ReplayProcesses(n) as processes:
            assert processes.available
            threads = processes._pool.submit(torch.get_num_threads).result(60)  # type: ignore[union-attr]
        assert threads == max(1, cpus // n)
