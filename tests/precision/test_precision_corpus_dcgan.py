"""``dump``/``compare``/``shadow`` on pytorch/examples' ``dcgan/main.py``, byte for byte
(tests/data/precision_corpus/dcgan, PROVENANCE.md there), unmodified through the CLI on the CPU with
``--dataset fake`` and a torchvision stand-in (``stubs_dcgan``).

A GAN's iteration is two training steps: the discriminator's (forward on real images, the generator's forward, the
discriminator on the generated batch detached, two backwards, ``optimizerD.step()``), then the generator's (the
discriminator on the generated batch attached, a backward through both models, ``optimizerG.step()``). The fault
is the corpus' faulty CPU kernel (``corpus_fault/sitecustomize.py``) on forward ``convolution`` call 7 as the
kernel counts it: the discriminator's five convolutions on the real batch are calls 0-4, the generator's five
transposed ones 5-9, so call 7 is the generator's third (``netG.main.6``, the Sequential's seventh layer, line 158:
``self.main(input)``). Its error reaches the discriminator's gradients through the generated batch, so only
``optimizerD`` steps on faulty values in step 0: at the start of step 1 the discriminator's parameters differ and
the generator's do not."""

import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

import pytest
from test_precision_corpus import cli, fired, report, stub_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STUBS = os.path.join(HERE, "stubs_dcgan")  # torchvision: a stand-in apart from corpus_stubs
SCRIPT = os.path.join(ROOT, "tests", "data", "precision_corpus", "dcgan")
#: one iteration of a small GAN (64x64 images, the script's architecture; 8 filters, batch 4), seeded
ARGS = ["--dataset", "fake", "--dry-run", "--batchSize", "4", "--ngf", "8", "--ndf", "8", "--nz", "16"]
ARGS += ["--workers", "0", "--manualSeed", "1", "--outf", "out"]
COMMAND = ["--", sys.executable, "main.py", *ARGS]
FAULT = {"FAULT_OP": "convolution", "FAULT_CALL": "7"}
WANT = {"call": "aten::convolution#forward#7", "module": "netG.main.6", "site": "main.py:158 in forward"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Dict[str, Any]:
    base = str(tmp_path_factory.mktemp("dcgan"))

    def workdir(run: str) -> str:
        cwd = os.path.join(base, f"{run}.src")
        shutil.copytree(SCRIPT, cwd)
        return cwd

    def dump(run: str) -> str:
        cwd = workdir(run)
        mode = ["--mode", "tensor"] if run.endswith("-t") else []
        env = stub_env(FAULT if run.startswith("fault") else None, STUBS)
        proc = cli(cwd, env, "dump", *mode, "-o", os.path.join(base, run), *COMMAND)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return cwd

    def shadow(run: str) -> Dict[str, Any]:
        cwd = workdir(f"shadow-{run}")
        env = stub_env(FAULT if run == "fault" else None, STUBS)
        out = report(cwd, env, os.path.join(base, f"shadow-{run}.json"), "shadow", *COMMAND)
        out["fired"] = fired(cwd)
        return out

    with ThreadPoolExecutor(2) as pool:
        dumps = {run: pool.submit(dump, run) for run in ("ref", "fault", "ref-t", "fault-t")}
        shadows = {run: pool.submit(shadow, run) for run in ("clean", "fault")}
        out: Dict[str, Any] = {f"shadow-{k}": v.result() for k, v in shadows.items()}
        out["fired"] = {run: fired(d.result()) for run, d in dumps.items()}
    dirs = {run: os.path.join(base, run) for run in dumps}

    def compare(name: str, target: str, reference: str, *options: str) -> None:
        out[name] = report(
            base, {}, os.path.join(base, f"{name}.json"), "compare", dirs[target], dirs[reference], *options
        )

    compare("compare", "fault", "ref")
    compare("compare-t", "fault-t", "ref-t")
    compare("compare-step1", "fault", "ref", "--step", "1")
    compare("self", "ref", "ref")
    out["records"] = {}
    for step in (0, 1):
        with open(os.path.join(dirs["ref"], "rank0", f"step{step}", "records.jsonl")) as f:
            out["records"][step] = [json.loads(line) for line in f]
    return out


def test_compare_and_shadow_name_the_faulty_convolution(runs):
    assert runs["fired"] == {
        "ref": [],
        "fault": ["convolution forward 7"],
        "ref-t": [],
        "fault-t": ["convolution forward 7"],
    }
    assert runs["shadow-fault"]["fired"] == ["convolution forward 7"]
    for name in ("compare", "compare-t"):
        first = runs[name]["culprits"][0]
        assert (first["name"], first["module"]) == (WANT["call"], WANT["module"]), name
    proven = runs["compare-t"]["first_culprit"]
    assert (proven["kind"], proven["method"], proven["verdict"]) == ("kernel", "replay", "error")
    culprits = runs["shadow-fault"]["culprits"]
    assert [(c["name"], c["module"], c["site"]) for c in culprits] == [
        (WANT["call"], WANT["module"], WANT["site"])
    ]


def test_each_optimizer_steps_its_own_model_in_a_step_of_its_own(runs):
    def stepped(step):  # the models whose parameters the step's optimizer ops read, by their first path part
        return {
            t["name"].split(".")[0]
            for r in runs["records"][step]
            if r["phase"] == "optimizer"
            for t in r["inputs"]
            if t.get("name")
        }

    # the discriminator ran first, so it is the root (its paths have no prefix); the generator is the second
    # model, named as the script holds it
    assert stepped(0) == {"main"} and stepped(1) == {"netG"}
    step1 = runs["compare-step1"]["summary"]
    assert step1["culprits"] == step1["suspects"] == 0
    # what the faulty step changed is the discriminator's parameters, carried into step 1
    assert "drift carried from earlier steps" in step1["cause"]
    assert "(largest: main." in step1["cause"]


def test_the_clean_runs_list_nothing(runs):
    clean = runs["shadow-clean"]
    assert clean["culprits"] == [] and clean["summary"]["verdicts"]["error"] == 0
    assert runs["self"]["culprits"] == [] and runs["self"]["summary"]["culprits"] == 0
