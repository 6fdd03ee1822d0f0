"""``dump``/``compare``/``shadow`` on pytorch/examples' ``gat/main.py``, byte for byte
(tests/data/precision_corpus/gat, PROVENANCE.md there), unmodified through the CLI on the CPU with a small synthetic
Cora dataset in the format it reads.

The script prepares its data with a sparse matrix product before it builds the model. Shadow counted that product
as forward ``mm`` call 0, so a faulty ``mm`` in the model's second layer was ``aten::mm#forward#2`` in shadow's
report and ``aten::mm#forward#1`` in compare's (whose capture has an ``init`` phase): the two tools named one op
two ways. The fault is the corpus' faulty CPU kernel (``corpus_fault/sitecustomize.py``): forward ``mm`` call 1
outside the data preparation, ``gat2``'s ``torch.mm(h, self.W)`` (line 107), as the kernel counts it itself."""

import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

import numpy as np
import pytest
from test_precision_corpus import cli, fired, report, stub_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
#: its stand-in for requests, apart from corpus_stubs: the real one must win for every other script
STUBS = os.path.join(HERE, "stubs_gat")
SCRIPT = os.path.join(ROOT, "tests", "data", "precision_corpus", "gat")
#: one training step; one head of 4 features keeps each node-by-node tensor at 11 MB
ARGS = ["--dry-run", "--num-heads", "1", "--hidden-dim", "4"]
COMMAND = ["--steps", "0", "--", sys.executable, "main.py", *ARGS]
FAULT = {"FAULT_OP": "mm", "FAULT_CALL": "1"}
WANT = {"call": "aten::mm#forward#1", "module": "gat2", "site": "main.py:107 in forward"}


def cora(path: str) -> None:
    """Cora's two files, small: 1,650 papers (the script trains on those after its first 1,600), 20 binary word
    features each, 7 classes, 3,000 citations."""
    rng = np.random.default_rng(0)
    papers, words, classes, cites = 1650, 20, 7, 3000
    ids = rng.choice(10**6, papers, replace=False)
    os.makedirs(path)
    with open(os.path.join(path, "cora.content"), "w") as f:
        for i in range(papers):
            feats = (rng.random(words) < 0.15).astype(int)
            feats[rng.integers(words)] = 1  # no paper without a word (the script divides by the count)
            f.write("\t".join([str(ids[i]), *map(str, feats), f"class{rng.integers(classes)}"]) + "\n")
    edges = set()
    with open(os.path.join(path, "cora.cites"), "w") as f:
        while len(edges) < cites:
            a, b = (int(x) for x in rng.integers(papers, size=2))
            if a != b and (a, b) not in edges:
                edges.add((a, b))
                f.write(f"{ids[a]}\t{ids[b]}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict[str, Any]:
    base = str(tmp_path_factory.mktemp("gat"))

    def workdir(run: str) -> str:
        cwd = os.path.join(base, f"{run}.src")
        shutil.copytree(SCRIPT, cwd)
        cora(os.path.join(cwd, "cora"))
        return cwd

    def dump(run: str) -> str:
        cwd = workdir(run)
        proc = cli(
            cwd,
            stub_env(FAULT if run == "fault" else None, STUBS),
            "dump",
            "-o",
            os.path.join(base, run),
            *COMMAND,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return cwd

    def shadow(run: str) -> Dict[str, Any]:
        cwd = workdir(f"shadow-{run}")
        out = report(
            cwd,
            stub_env(FAULT if run == "fault" else None, STUBS),
            os.path.join(base, f"shadow-{run}.json"),
            "shadow",
            *COMMAND,
        )
        out["fired"] = fired(cwd)
        return out

    with ThreadPoolExecutor(2) as pool:
        dumps = {run: pool.submit(dump, run) for run in ("ref", "fault")}
        shadows = {run: pool.submit(shadow, run) for run in ("clean", "fault")}
        faults = fired(dumps["fault"].result())
        out: Dict[str, Any] = {f"shadow-{k}": v.result() for k, v in shadows.items()}
    dirs = {run: os.path.join(base, run) for run in ("ref", "fault")}
    out["fired"] = faults
    out["compare"] = report(
        base, {}, os.path.join(base, "compare.json"), "compare", dirs["fault"], dirs["ref"]
    )
    out["self"] = report(base, {}, os.path.join(base, "self.json"), "compare", dirs["ref"], dirs["ref"])
    with open(os.path.join(dirs["ref"], "rank0", "step0", "records.jsonl")) as f:
        out["records"] = [json.loads(line) for line in f]
    return out


def test_compare_and_shadow_name_the_faulty_mm_alike(runs):
    assert runs["fired"] == runs["shadow-fault"]["fired"] == ["mm forward 1"]  # the kernel's own count
    (first,) = runs["compare"]["culprits"][:1]
    assert (first["name"], first["module"]) == (WANT["call"], WANT["module"])
    culprits = runs["shadow-fault"]["culprits"]
    assert [(c["name"], c["module"], c["site"]) for c in culprits] == [
        (WANT["call"], WANT["module"], WANT["site"])
    ]


def test_the_data_preparation_is_init_in_both(runs):
    init = [r for r in runs["records"] if r["phase"] == "init"]
    assert any(r["name"] == "aten::mm" for r in init)  # the sparse feature scaling
    assert runs["records"].index(init[-1]) < min(
        i for i, r in enumerate(runs["records"]) if r["phase"] != "init"
    )
    checked = runs["shadow-clean"]["records"]
    assert "init" in {r["phase"] for r in checked}
    # every op shadow checked is the capture's record of the same call, in the same module
    recorded = {f"{r['name']}#{r['phase']}#{r['call']}": r["module"] for r in runs["records"]}
    assert checked and all(recorded.get(r["name"]) == r["module"] for r in checked)


def test_the_clean_runs_list_nothing(runs):
    assert (
        runs["shadow-clean"]["culprits"] == [] and runs["shadow-clean"]["summary"]["verdicts"]["error"] == 0
    )
    assert runs["self"]["culprits"] == [] and runs["self"]["summary"]["culprits"] == 0
