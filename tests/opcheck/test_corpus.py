"""check-ops on the real-script corpus (issue 12): every script yields a report, and the scan and the trace
meet the acceptance thresholds against the hand-written truth. Scoring rules: corpus_score's docstring."""

import importlib.metadata

import corpus_fixtures
import corpus_score
import pytest
from corpus_score import CORPUS, Finding, Run, Truth
from packaging.requirements import Requirement

# Floors at what the corpus reaches (2026-12-04, 39 scripts, 33 projects: blockers 177/179, all lines 350/352,
# precision 383/390), above the acceptance of issue 12 (0.90, 0.85, 0.95), so a rule change that loses a line fails.
# Every script is now seen by the rules; what an unseen script scores is measured on each new blind batch before any
# rule learns from it (docs/check-ops.md: 86%, 67%, 62%, 100%, 71%, 0% and 100% of the error/warning lines on blind
# batches 1-7, 58 of 79), not by this test.
RECALL_BLOCKERS = 0.98
RECALL_ALL = 0.98
PRECISION = 0.97
TRACE_COMPLETE = 0.90
TRACE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def scan_scores():
    return corpus_score.score_corpus(with_trace=False)


def _share(pair):
    num, den = pair
    return num / den if den else 1.0


def test_corpus_is_complete_and_its_truth_points_at_real_lines():
    truths = corpus_score.load_truths()
    assert len(truths) >= 12
    assert len({t.project for t in truths}) >= 8
    for t in truths:
        root = CORPUS / t.root
        assert (root / "PROVENANCE.md").is_file() and (root / "LICENSE").is_file(), t.root
        assert (root / t.script).is_file(), t.id
        for entry in t.lines + t.ignore:
            assert entry.get("severity", "error") in ("error", "warning", "info"), entry
            if "arg" in entry:
                assert entry["arg"] in t.command, (t.id, entry)
                continue
            lines = (root / entry["file"]).read_text().splitlines()
            assert 1 <= entry["line"] <= entry.get("end", entry["line"]) <= len(lines), (t.id, entry)


def test_fixtures_are_what_the_scripts_read(tmp_path):
    path = corpus_fixtures.make(tmp_path, {"kind": "llmc_tokens", "path": "t.bin", "tokens": 10})
    header = path.read_bytes()[: 3 * 4]
    assert [int.from_bytes(header[i : i + 4], "little") for i in (0, 4, 8)] == [20240520, 1, 10]
    assert path.stat().st_size == 256 * 4 + 10 * 2
    model = corpus_fixtures.make(tmp_path, {"kind": "hf_llama", "path": "m"})
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(model).num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(model)
    assert tok.decode(tok("hello world")["input_ids"]) == "hello world"
    png = corpus_fixtures.make(tmp_path, {"kind": "image_folder", "path": "img"}) / "class_a" / "0.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_llama_fixture_has_the_vocabulary_size_asked(tmp_path):
    """Chinese-LLaMA refuses a model/tokenizer pair unless both have 32000 (or 49953/49954) entries."""
    from transformers import AutoConfig, AutoTokenizer

    model = corpus_fixtures.make(tmp_path, {"kind": "hf_llama", "path": "m", "vocab_size": 32000})
    assert AutoConfig.from_pretrained(model).vocab_size == 32000 == len(AutoTokenizer.from_pretrained(model))
    if (model / "tokenizer.model").exists():  # where sentencepiece is installed
        import sentencepiece

        assert (
            sentencepiece.SentencePieceProcessor(model_file=str(model / "tokenizer.model")).vocab_size()
            == 32000
        )


def _truth(lines, ignore=()):
    return Truth(
        "t", "p", "r", "s.py", ["python", "s.py", "--tf32", "True"], {}, [], True, list(lines), list(ignore)
    )


def test_matching_rule(tmp_path):
    (tmp_path / "s.py").write_text("x\n" * 30)
    truth = _truth(
        [
            {"file": "s.py", "line": 10, "end": 12, "severity": "error"},
            {"file": "s.py", "line": 20, "severity": "warning"},
            {"file": "s.py", "line": 25, "severity": "info"},
            {"file": "<command>", "arg": "--tf32", "severity": "error"},
        ],
        ignore=[{"file": "s.py", "line": 30}],
    )
    report = {
        "source_findings": [
            {"file": "s.py", "line": 13, "severity": "error", "message": "a"},  # end + 1: found
            {
                "file": str(tmp_path / "s.py"),
                "line": 21,
                "severity": "info",
                "message": "b",
            },  # blocker as info
            {"file": "s.py", "line": 27, "severity": "info", "message": "c"},  # 2 away: wrong
            {"file": "s.py", "line": 29, "severity": "info", "message": "d"},  # ignored line
            {"file": "<command line>", "line": 0, "severity": "error", "message": "--tf32 True needs CUDA"},
        ]
    }
    s = corpus_score.score(truth, Run(1, report, ""), tmp_path)
    assert (s.found_blockers, s.blockers) == (2, 3)  # 10-12 and --tf32; line 20 only as info
    assert (s.found_all, s.total) == (3, 4)  # line 25 missed
    assert s.true_pos == 3
    assert s.false_pos == [Finding("s.py", 27, "info", "c", True)]


def test_every_script_yields_a_scan_report(scan_scores):
    bad = {
        s.truth.id: (s.scan.exit_code, s.scan.message) for s in scan_scores if s.scan.exit_code not in (0, 1)
    }
    assert not bad, bad
    assert all(s.scan.report is not None for s in scan_scores)


def test_scan_precision_and_recall(scan_scores):
    t = corpus_score.totals(scan_scores)
    summary = f"\n{corpus_score.table(scan_scores)}"
    assert _share(t["precision"]) >= PRECISION, summary
    assert _share(t["all"]) >= RECALL_ALL, summary
    assert _share(t["blockers"]) >= RECALL_BLOCKERS, summary


def missing_here(s):
    """The first of the script's ordinary dependencies (its truth's ``requires``: torchvision, deepspeed,
    trl, lightning, ...: what the user has, not the CUDA-only packages check-ops stands in for) that is not
    installed here at a version its requirement accepts, else None. A script with a venv of its own is
    judged where that venv is given (CHECKOPS_CORPUS_VENVS), which its make script fills from ``requires``."""
    if s.truth.venv:
        return None if s.truth.venv in corpus_score.VENVS else f"its venv {s.truth.venv!r}"
    for req in map(Requirement, s.truth.requires):
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            return str(req)
        if have not in req.specifier:
            return f"{req} (have {have})"
    return None


@pytest.mark.slow
def test_trace_runs_one_step_on_the_corpus():
    """Every script yields a report; of the scripts that must complete and whose ordinary dependencies are
    installed here (their truth's ``requires``), at least TRACE_COMPLETE trace one training step; a script
    that completes counts even where a dependency is missing, and a script with a venv of its own is judged
    where that venv is given (CHECKOPS_CORPUS_VENVS). (2026-12-05: in the project's venv two of the 23
    must-complete scripts have every dependency, nanoGPT and the torchrun DDP example; run with the corpus
    venv's python (make_corpus_venv.sh) and the diffusers and torchtune venvs given, all 23 have them:
    docs/check-ops.md, "Traces".)"""
    assert corpus_score.command_form_available(), (
        "check-ops does not take a launch command (`-- python ...`) yet"
    )
    scores = corpus_score.score_corpus(with_trace=True, trace_timeout=TRACE_TIMEOUT_S)
    summary = f"\n{corpus_score.table(scores)}"
    bad = {
        s.truth.id: (s.trace.exit_code, s.trace.message) for s in scores if s.trace.exit_code not in (0, 1)
    }
    assert not bad, summary
    judged = [s for s in scores if s.truth.trace_must_complete and (s.trace_complete or not missing_here(s))]
    assert len(judged) >= 2, summary
    assert sum(bool(s.trace_complete) for s in judged) >= TRACE_COMPLETE * len(judged), summary
