"""``dump``/``compare``/``shadow`` on public training scripts none of the tests were written for: karpathy/nanoGPT's
``train.py`` and karpathy/minGPT's ``projects/chargpt/chargpt.py``, byte for byte from the corpus
(tests/data/checkops_corpus, PROVENANCE.md there), and pytorch/examples' ``word_language_model/main.py``
(tests/data/precision_corpus/word_language_model: a manual SGD update and the model saved and loaded back), run
unmodified through the zero-code-change CLI on the CPU with tiny local inputs. The commands are the corpus truth's,
with flags only (nanoGPT: ``--device=cpu --compile=False --dtype=float32``, which its configurator reads from
``sys.argv``).

Scenario ``nanogpt-other-data`` runs the same command on another copy of nanoGPT's dataset: ``compare`` must name
the data (the first op that reads a batch, in ``get_batch``) as the cause.

Each fault is a faulty CPU kernel (``corpus_fault/sitecustomize.py``, the user's own sitecustomize on
``PYTHONPATH``) wrong on one call of ``mm``/``addmm``, as a device kernel would be. The known answer is the call
the kernel faulted, counted by the kernel itself, and the module the script calls it from (read from the script):
``compare`` (tensor dumps) and ``shadow`` must name it first; the clean runs (a second run of the same script
compared with the first, and shadow without the fault) list nothing. The table in docs/precision.md is this file's
output (``python tests/precision/test_precision_corpus.py``).
"""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
from suite_runs import matches, print_table, top

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(ROOT, "tests", "data", "checkops_corpus")
WLM = os.path.join(ROOT, "tests", "data", "precision_corpus", "word_language_model")
FAULT_SITE = os.path.join(HERE, "corpus_fault")
STUBS = os.path.join(HERE, "corpus_stubs")  # stand-ins for packages CI lacks (matplotlib, openai)
NANOGPT_FLAGS = ["--device=cpu", "--compile=False", "--dtype=float32"]


def truth(script: str) -> Dict[str, Any]:
    """The check-ops corpus truth of ``script`` (its command and fixtures)."""
    with open(os.path.join(CORPUS, "truth", f"{script}.json")) as f:
        return json.load(f)


#: script -> (its directory, command run in a copy of it)
SCRIPTS: Dict[str, Tuple[str, List[str]]] = {
    # the truth's command, on the CPU in float32 (step 0 = estimate_loss's two no-grad forwards, then a train step)
    "nanogpt": (
        os.path.join(CORPUS, "nanogpt"),
        ["train.py", *truth("nanogpt")["command"][2:], *NANOGPT_FLAGS],
    ),
    # the truth's command (gpt-nano, one iteration; step 1 is the callback's 500-token sample, not recorded)
    "mingpt": (os.path.join(CORPUS, "mingpt"), truth("mingpt")["command"][1:]),
    # a small Transformer, one training batch (--dry-run), then the evaluations of the model and of its saved copy
    "word_language_model": (
        WLM,
        [
            "main.py",
            "--model",
            "Transformer",
            "--emsize",
            "64",
            "--nhid",
            "64",
            "--epochs",
            "1",
            "--dry-run",
            "--bptt",
            "10",
            "--batch_size",
            "5",
        ],
    ),
}

#: scenario -> (script, fault environment, what the first culprit must be)
SCENARIOS: Dict[str, Tuple[str, Optional[Dict[str, str]], Dict[str, Any]]] = {
    # mm calls of a nanoGPT forward (bias=False): per block c_attn, attn.c_proj, c_fc, mlp.c_proj, then lm_head:
    # 9; estimate_loss's two forwards are calls 0-17, the train forward's block 1 c_attn call 18 + 4
    "nanogpt-mm-forward": (
        "nanogpt",
        {"FAULT_OP": "mm", "FAULT_CALL": "22"},
        {"name": "aten::mm#forward#22", "module": "transformer.h.1.attn.c_attn"},
    ),
    # a forward of estimate_loss (under torch.no_grad, model.eval()): the val split's lm_head
    "nanogpt-mm-eval": (
        "nanogpt",
        {"FAULT_OP": "mm", "FAULT_CALL": "17"},
        {"name": "aten::mm#forward#17", "module": "lm_head"},
    ),
    "nanogpt-mm-backward": (
        "nanogpt",
        {"FAULT_OP": "mm", "FAULT_CALL": "5", "FAULT_PHASE": "backward"},
        # backward from lm_head (its input and weight gradients: calls 0, 1), block 1's mlp.c_proj (2, 3), c_fc
        {"name": "aten::mm#backward#5", "module": "transformer.h.1.mlp.c_fc"},
    ),
    # addmm calls of a minGPT forward (Linear with bias; lm_head has none): per block c_attn, attn.c_proj,
    # mlp.c_fc, mlp.c_proj (a ModuleDict called through a lambda): block 1's c_fc is call 4 + 2
    "mingpt-addmm-forward": (
        "mingpt",
        {"FAULT_OP": "addmm", "FAULT_CALL": "6"},
        {"name": "aten::addmm#forward#6", "module": "transformer.h.1.mlp.c_fc"},
    ),
    # backward: a Linear's input and weight gradients are mm calls (addmm is forward only)
    "mingpt-mm-backward": (
        "mingpt",
        {"FAULT_OP": "mm", "FAULT_CALL": "2", "FAULT_PHASE": "backward"},
        # lm_head's two gradients are calls 0 and 1, then the last block's mlp.c_proj
        {"name": "aten::mm#backward#2", "module": "transformer.h.2.mlp.c_proj"},
    ),
    # addmm calls of the forward of a torch.nn.TransformerEncoderLayer: self_attn's packed in_proj and out_proj,
    # linear1, linear2; the weights the faulty gradients then update by hand are read again by the evaluations
    "wlm-addmm-forward": (
        "word_language_model",
        {"FAULT_OP": "addmm", "FAULT_CALL": "3"},
        {"name": "aten::addmm#forward#3", "module": "encoder.layers.0.linear2"},
    ),
    # no fault: the target's copy of the dataset differs (data/tiny/*.bin drawn with another seed); the first op
    # that reads a batch is in get_batch (train.py: torch.from_numpy of the memmapped tokens)
    "nanogpt-other-data": ("nanogpt", None, {"kind": "data", "where": "in get_batch"}),
}
#: scenarios whose target runs on another copy of the data, not under a faulty kernel (compare only: shadow checks
#: each op of one run against itself, it cannot see what another run was given)
OTHER_DATA = {"nanogpt-other-data"}

#: chargpt samples from the context "O God, O God!" at its first iteration: every character of it must be in the
#: vocabulary the script builds from input.txt (the check-ops truth's text lacks "O", "G" and "!")
CHARGPT_TEXT = "O God, O God! " + "hello world, this is a tiny character corpus for chargpt. " * 8 + "\n"


def fixtures(script: str, cwd: Path) -> None:
    if script == "word_language_model":
        return wikitext(cwd / "data" / "wikitext-2")
    sys.path.insert(0, os.path.join(ROOT, "tests", "opcheck"))
    try:
        import corpus_fixtures
    finally:
        sys.path.pop(0)
    for spec in truth(script)["fixtures"]:
        if script == "mingpt" and spec["path"] == "input.txt":
            spec = dict(spec, content=CHARGPT_TEXT)
        corpus_fixtures.make(cwd, spec)


def wikitext(where: Path) -> None:
    """A stand-in for wikitext-2: lines of 12 words drawn from 200, the same in every run."""
    rng = np.random.default_rng(0)
    where.mkdir(parents=True)
    for split, lines in (("train", 300), ("valid", 60), ("test", 60)):
        words = rng.integers(0, 200, size=(lines, 12))
        (where / f"{split}.txt").write_text("".join(" ".join(f"w{w}" for w in row) + "\n" for row in words))


def cli(cwd: str, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", **env)
    if "PYTHONPATH" not in env:
        full.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=full,
    )


def stub_env(fault: Optional[Dict[str, str]], stubs: str = STUBS) -> Dict[str, str]:
    """A script's environment with stand-ins for packages CI lacks on its path (``stubs``: ``corpus_stubs``, or a
    directory of one script's own where a stand-in would shadow a package other scripts import for real, as
    ``requests`` under huggingface_hub), and ``fault``'s faulty kernel (``corpus_fault``) before them where one is
    given."""
    paths = [FAULT_SITE, stubs] if fault else [stubs]
    return {"PYTHONPATH": os.pathsep.join(paths), **(fault or {})}


def run_env(script: str, fault: Optional[Dict[str, str]]) -> Dict[str, str]:
    """The script's environment: its own (minGPT's package is found from the working directory) and the
    faulty kernel's sitecustomize."""
    paths = ["."] if script == "mingpt" else []
    if fault:
        paths.insert(0, FAULT_SITE)
    env = dict(fault or {})
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def workdir(base: str, script: str, run: str) -> str:
    """A copy of the script's corpus directory with its fixtures, for one run (the scripts write into their
    working directory: minGPT its model and config, so two runs never share one)."""
    cwd = Path(base) / script / f"{run}.src"
    shutil.copytree(SCRIPTS[script][0], cwd)
    fixtures(script, cwd)
    return str(cwd)


def fired(cwd: str) -> List[str]:
    """The faults the kernel applied in a run in ``cwd`` (one line each)."""
    path = os.path.join(cwd, "fault-fired")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def other_data(cwd: str) -> None:
    """nanoGPT's dataset drawn again with another seed: the same script and command on other tokens."""
    rng = np.random.default_rng(7)
    for split in ("train", "val"):
        rng.integers(0, 50257, size=4096, dtype=np.uint16).tofile(
            os.path.join(cwd, "data", "tiny", f"{split}.bin")
        )


def dump(base: str, script: str, run: str, fault: Optional[Dict[str, str]]) -> None:
    out = os.path.join(base, script, run)
    cwd = workdir(base, script, run)
    if run in OTHER_DATA:
        other_data(cwd)
    proc = cli(
        cwd,
        run_env(script, fault),
        "dump", "-o", out, "--mode", "tensor", "--steps", "0", "--", sys.executable, *SCRIPTS[script][1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(fired(cwd)) == (1 if fault else 0)  # the known answer exists (a fault on a call that ran)


def report(cwd: str, env: Dict[str, str], out: str, verb: str, *args: str) -> Dict[str, Any]:
    proc = cli(cwd, env, verb, "-f", "json", "-o", out, *args)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


def judge(base: str, name: str) -> Dict[str, Any]:
    """A scenario's compare (its faulty dump against the reference) and shadow (of the faulty run); a script's
    clean runs: its second dump and the reference itself against the reference, and shadow without a fault."""
    script, fault, _want = SCENARIOS.get(name, (name, None, {}))
    out = os.path.join(base, script)
    env = run_env(script, fault)
    cwd = workdir(base, script, f"{name}-shadow")
    command = ("--steps", "0", "--", sys.executable, *SCRIPTS[script][1])
    if name in SCRIPTS:
        return {
            "clean": report(cwd, env, f"{out}/clean.json", "compare", f"{out}/clean", f"{out}/ref"),
            "self": report(cwd, env, f"{out}/self.json", "compare", f"{out}/ref", f"{out}/ref"),
            "shadow": report(cwd, env, f"{out}/shadow.json", "shadow", *command),
        }
    result = {"compare": report(cwd, env, f"{out}/{name}.json", "compare", f"{out}/{name}", f"{out}/ref")}
    if name not in OTHER_DATA:
        result["shadow"] = report(cwd, env, f"{out}/{name}-shadow.json", "shadow", *command)
        assert len(fired(cwd)) == 1
    return result


def run_corpus(base: str) -> Dict[str, Dict[str, Any]]:
    """Per script a reference dump and a second clean dump, per scenario a faulty dump; then the compares and
    shadows. Two at a time (2 CPU cores)."""
    jobs = [(script, run, None) for run in ("ref", "clean") for script in SCRIPTS]
    jobs += [(script, name, fault) for name, (script, fault, _want) in SCENARIOS.items()]
    names = list(SCRIPTS) + list(SCENARIOS)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda j: dump(base, *j), jobs))
        return dict(zip(names, pool.map(lambda name: judge(base, name), names)))


@pytest.fixture(scope="module")
def corpus_base(tmp_path_factory):
    return str(tmp_path_factory.mktemp("precision_corpus"))


@pytest.fixture(scope="module")
def corpus(corpus_base):
    return run_corpus(corpus_base)


def named(row: Optional[Dict[str, Any]], want: Dict[str, Any]) -> bool:
    """``row`` has ``want``'s fields; ``where``: a line of its stack holds that text."""
    fields = {k: v for k, v in want.items() if k != "where"}
    return matches(row, fields) and (
        "where" not in want or any(want["where"] in line for line in row["stack"])
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, verb",
    [(n, v) for n in SCENARIOS for v in ("compare", "shadow") if not (v == "shadow" and n in OTHER_DATA)],
)
def test_the_cause_is_named_first(corpus, name, verb):
    want = SCENARIOS[name][2]
    assert named(top(corpus[name][verb]), want), (top(corpus[name][verb]), want)


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_clean_runs_list_nothing(corpus, script):
    r = corpus[script]
    listed = {which: [c["name"] for c in r[which]["culprits"][:3]] for which in r if r[which]["culprits"]}
    assert listed == {}
    assert r["shadow"]["summary"]["compared"] > 100  # the shadow did run on the script's ops


@pytest.mark.slow
def test_nanogpts_gradient_clipping_is_the_optimizers(corpus, corpus_base):
    """``train.py`` clips (``grad_clip = 1.0``: ``scaler.unscale_``, ``clip_grad_norm_``) between its last
    backward and ``scaler.step(optimizer)``, outside every module: those ops are phase ``optimizer``, the first of
    them right after the last backward op."""
    with open(os.path.join(corpus_base, "nanogpt", "ref", "rank0", "step0", "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    last = max(i for i, r in enumerate(records) if r["phase"] == "backward")
    after = records[last + 1 :]
    norms = [r for r in after if "norm" in r["name"]]
    assert norms and after[0]["name"] in {r["name"] for r in norms}, [r["name"] for r in after[:5]]
    assert {r["phase"] for r in after} == {"optimizer"}, {(r["name"], r["phase"]) for r in after}
    assert {r["module"] for r in after} == {""}


def cell(rep: Dict[str, Any], want: Dict[str, Any]) -> str:
    row = top(rep)
    if row is None:
        return "nothing"
    where = (
        f"in `{row['module']}`" if row.get("module") else f"at {row['stack'][-1]}" if row.get("stack") else ""
    )
    kind = f"{row['kind']} " if row.get("kind") else ""  # (shadow's rows have none)
    return f"{'**first**' if named(row, want) else 'not first'}: {kind}`{row['name']}` {where}"


def table(results: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| scenario | cause | compare (tensor dumps) | shadow |", "|---|---|---|---|"]
    for name, (_script, fault, want) in SCENARIOS.items():
        r = results[name]
        if fault is None:
            what, shadow = "another copy of the dataset", "n/a (one run)"
        else:
            what = f"{fault['FAULT_OP']} call {fault['FAULT_CALL']} ({fault.get('FAULT_PHASE', 'forward')})"
            shadow = cell(r["shadow"], want)
        lines.append(f"| {name} | {what} | {cell(r['compare'], want)} | {shadow} |")
    lines += [
        "",
        "| script | clean vs reference: listed | reference vs itself: listed | shadow, clean: listed |",
    ]
    lines.append("|---|---|---|---|")
    for script in SCRIPTS:
        r = results[script]
        lines.append(
            f"| {script} | {len(r['clean']['culprits'])} | {len(r['self']['culprits'])} "
            f"| {len(r['shadow']['culprits'])} of {r['shadow']['summary']['compared']} ops |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print_table(run_corpus, table)
