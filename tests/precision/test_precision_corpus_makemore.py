"""``dump``/``compare``/``shadow`` on karpathy/makemore's ``makemore.py``, byte for byte
(tests/data/precision_corpus/makemore, PROVENANCE.md there), unmodified through the CLI on the CPU with its own
``names.txt``: the GRU model, batches from 4 ``DataLoader`` worker processes.

The main process rebuilds each worker's batch from shared memory (``aten::empty``, ``aten::set_``) when it arrives,
which is a matter of timing: two clean runs of the same command record different numbers of these ops in a step
(1,424 against 1,428, 1,357 against 1,349 in one pair of runs). Their compare must pair the rest and list nothing.

The fault is the corpus' faulty CPU kernel (``corpus_fault/sitecustomize.py``) on forward ``addmm`` call 5, as the
kernel counts it. The known answer read from the script: its ``GRUCell.forward`` runs three gates per time step in
the order ``xh_to_r``, ``xh_to_hbar``, ``xh_to_z`` (``nn.Linear`` on a 2-D input: ``addmm``), so call 5 is the
second time step's ``xh_to_z``, line 298."""

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import pytest
from test_precision_corpus import cli, fired, report, stub_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
#: its stand-in for tensorboard, apart from corpus_stubs: the real one must win for every other script
STUBS = os.path.join(HERE, "stubs_makemore")
SCRIPT = os.path.join(ROOT, "tests", "data", "precision_corpus", "makemore")
ARGS = ["--max-steps", "3", "--type", "gru", "--work-dir", "out"]  # 4 DataLoader workers: its default
FAULT = {"FAULT_OP": "addmm", "FAULT_CALL": "5"}
WANT = {"call": "aten::addmm#forward#5", "module": "cell.xh_to_z", "site": "makemore.py:298 in forward"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict[str, Any]:
    base = str(tmp_path_factory.mktemp("makemore"))

    def workdir(run: str) -> str:
        cwd = os.path.join(base, f"{run}.src")
        shutil.copytree(SCRIPT, cwd)
        return cwd

    def dump(run: str) -> List[str]:
        cwd = workdir(run)
        command = ["--steps", "0-1", "--", sys.executable, "makemore.py", *ARGS]
        proc = cli(
            cwd,
            stub_env(FAULT if run == "fault" else None, STUBS),
            "dump",
            "-o",
            os.path.join(base, run),
            *command,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return fired(cwd)

    def shadow() -> Dict[str, Any]:
        cwd = workdir("shadow")
        command = ["--steps", "0", "--", sys.executable, "makemore.py", *ARGS]
        out = report(cwd, stub_env(FAULT, STUBS), os.path.join(base, "shadow.json"), "shadow", *command)
        out["fired"] = fired(cwd)
        return out

    with ThreadPoolExecutor(2) as pool:
        dumps = {run: pool.submit(dump, run) for run in ("ref", "clean", "fault")}
        out: Dict[str, Any] = {"shadow": pool.submit(shadow).result()}
        out["fired"] = {run: f.result() for run, f in dumps.items()}

    def compare(target: str, step: int) -> Dict[str, Any]:
        out_file = os.path.join(base, f"{target}-{step}.json")
        dirs = [os.path.join(base, target), os.path.join(base, "ref")]
        return report(base, {}, out_file, "compare", *dirs, "--step", str(step))

    for step in (0, 1):
        out[f"clean{step}"] = compare("clean", step)
    out["fault"] = compare("fault", 0)
    return out


def test_two_clean_runs_list_nothing_in_any_step(runs):
    for step in (0, 1):
        summary = runs[f"clean{step}"]["summary"]
        assert (summary["culprits"], summary["suspects"], runs[f"clean{step}"]["culprits"]) == (0, 0, [])
        assert summary["pairs"] > 1000 and summary["pairs"] >= 0.98 * (
            summary["pairs"] + summary["unmatched_target"]
        )


def test_the_batches_are_rebuilt_from_the_workers_shared_memory(runs):
    # the premise: the main process's batch ops are recorded (aten::set_ on a storage a worker filled)
    names = {p["name"].split("#")[0] for p in runs["clean0"]["pairs"]}
    assert "aten::set_.source_Storage_storage_offset" in names


def test_compare_and_shadow_name_the_faulty_gate(runs):
    once = ["addmm forward 5"]  # the kernel's own count
    assert runs["fired"] == {"ref": [], "clean": [], "fault": once} and runs["shadow"]["fired"] == once
    first = runs["fault"]["culprits"][0]
    assert (first["name"], first["module"]) == (WANT["call"], WANT["module"])
    culprits = runs["shadow"]["culprits"]
    assert [(c["name"], c["module"], c["site"]) for c in culprits] == [
        (WANT["call"], WANT["module"], WANT["site"])
    ]
