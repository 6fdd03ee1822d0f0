"""``dump``/``compare``/``shadow`` on pytorch/examples' ``time_sequence_prediction/train.py``, byte for byte
(tests/data/precision_corpus/time_sequence_prediction, PROVENANCE.md there), unmodified through the CLI on the CPU
with a small ``traindata.pt`` of the kind its ``generate_sine_wave.py`` writes.

Two things no other corpus script has: a float64 model (a float64 op has no wider dtype to be replayed in: on a
larger copy of the data, 39 time steps, shadow listed a correct backward ``mm`` of this script as a near miss, 1.26
tolerances off its float64 replay, before float64 against float64 got twice the tolerance; that rule is tested in
test_standards.py, this data being too small to show it), and ``torch.optim.LBFGS``, whose ``step(closure)`` runs
the forward and backward many times inside one ``optimizer.step()``: those are forward and backward ops, not the
optimizer's. (A second clean dump is not compared: float64 on the CPU repeats itself bit for bit.)"""

import json
import os
import shutil
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from test_precision_corpus import cli, report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(ROOT, "tests", "data", "precision_corpus", "time_sequence_prediction")
STUBS = os.path.join(HERE, "corpus_stubs")  # matplotlib
COMMAND = ["--steps", "0", "--", sys.executable, "train.py", "--steps", "1"]


def sine_waves(path: str) -> None:
    """generate_sine_wave.py's data, smaller: 5 waves (3 for its test split) of 5 points, float64."""
    rng = np.random.RandomState(2)
    t, length, n = 20, 5, 5
    x = np.array(range(length)) + rng.randint(-4 * t, 4 * t, n).reshape(n, 1)
    torch.save(np.sin(x / 1.0 / t).astype("float64"), path)


#: the script's environment: the matplotlib stand-in, and its ``torch.load`` of a numpy array on torch >= 2.6
ENV = {"PYTHONPATH": STUBS, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("lbfgs")

    def workdir(run):
        cwd = str(base / f"{run}.src")
        shutil.copytree(SCRIPT, cwd)
        sine_waves(os.path.join(cwd, "traindata.pt"))
        return cwd

    dump = cli(workdir("ref"), ENV, "dump", "-o", str(base / "ref"), *COMMAND)
    assert dump.returncode == 0, dump.stderr[-3000:]
    with open(base / "ref" / "rank0" / "step0" / "records.jsonl") as f:
        records = [json.loads(line) for line in f]
    shadow = report(workdir("shadow"), ENV, str(base / "shadow.json"), "shadow", *COMMAND)
    return {"ref": dump, "records": records, "shadow.json": shadow}


def test_the_closures_ops_are_forward_and_backward_not_the_optimizers(runs):
    # the script prints "loss: ..." in its closure, once per forward: as many MSE losses in forward, none elsewhere
    closures = sum(1 for line in runs["ref"].stdout.splitlines() if line.startswith("loss:"))
    phases = Counter(r["phase"] for r in runs["records"] if r["name"] == "aten::mse_loss")
    assert closures > 1 and phases == {"forward": closures}
    grads = Counter(r["phase"] for r in runs["records"] if r["name"] == "aten::mse_loss_backward")
    assert grads == {"backward": closures}
    # LBFGS's own arithmetic (its direction, the parameters' updates) is the optimizer's
    assert any(r["phase"] == "optimizer" for r in runs["records"])


def test_shadow_of_the_float64_lbfgs_run_lists_nothing(runs):
    shadow = runs["shadow.json"]
    assert shadow["culprits"] == [] and shadow["near_misses"] == []
    assert shadow["summary"]["compared"] > 1000
