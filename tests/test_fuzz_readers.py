"""Every reader of a file that comes from elsewhere (issue 11, finding 9): fuzzed records yield records or
an InputError with one line naming the file, never another exception; the hostile corpus
(tests/data/hostile/make_corpus.py) through every CLI verb that reads files exits 0, 1 or 2, never 3."""

import importlib.util
import json
import os
import warnings

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascend_tools.cli import main
from ascend_tools.errors import InputError
from ascend_tools.precision import losscurve
from ascend_tools.precision.dumps import open_dump
from ascend_tools.precision.msprobe_reader import MsprobeDump
from ascend_tools.profiling.analyze.reader import read_profile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "make_corpus", os.path.join(HERE, "data", "hostile", "make_corpus.py")
)
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
record_keys = st.sampled_from(
    ["id", "name", "inputs", "outputs", "stats", "dtype", "shape", "call", "k", "t0", "gid"]
)


def mutated(base: bytes):
    """``base`` with a few bytes replaced, inserted or cut."""
    return st.tuples(st.integers(0, max(0, len(base) - 1)), st.binary(max_size=4), st.integers(0, 3)).map(
        lambda t: base[: t[0]] + t[1] + base[t[0] + t[2] :]
    )


def lines_of(base: dict):
    fields = st.dictionaries(record_keys, json_values, max_size=4).map(
        lambda d: json.dumps(dict(base, **d)).encode()
    )
    return st.lists(
        fields | mutated(json.dumps(base).encode()) | st.binary(max_size=30), min_size=1, max_size=4
    )


def _one_line_naming(exc: InputError, path) -> None:
    text = str(exc)
    assert "\n" not in text and str(path) in text, text


@FUZZ
@given(lines=lines_of(make_corpus.RECORD))
def test_our_dump_reader(tmp_path_factory, lines):
    root = make_corpus._dump(str(tmp_path_factory.mktemp("dump")), lines)
    try:
        dump = open_dump(root)
        records = list(dump.records(0))
    except InputError as exc:
        _one_line_naming(exc, root)
        return
    assert len(records) + int(bool(dump.problems)) >= 1 or lines[-1] == b""
    for problem in dump.problems:
        assert "records.jsonl" in problem and "\n" not in problem


MSPROBE_ENTRY = {
    "input_args": [{"type": "torch.Tensor", "dtype": "torch.float32", "shape": [2], "Max": 1.0}],
    "output": [],
}


@FUZZ
@given(
    doc=st.one_of(
        st.dictionaries(st.sampled_from(["Functional.add.0.forward", "x"]), json_values, max_size=2).map(
            lambda d: json.dumps({"task": "statistics", "data": d}).encode()
        ),
        mutated(
            json.dumps({"task": "statistics", "data": {"Functional.add.0.forward": MSPROBE_ENTRY}}).encode()
        ),
    )
)
def test_msprobe_reader(tmp_path_factory, doc):
    root = str(tmp_path_factory.mktemp("ms"))
    make_corpus._write(os.path.join(root, "dump.json"), doc)
    try:
        dump = MsprobeDump.find(root)
        assert dump is not None
        for step in dump.steps():
            list(dump.records(step))
    except InputError as exc:
        _one_line_naming(exc, root)


LOG = b'step 1 loss=2.5\nstep 2 loss 2.25\n{"step": 3, "loss": 2.0}\nstep,loss\n4,1.5\n'


@FUZZ
@given(data=mutated(LOG) | st.binary(max_size=80) | lines_of({"step": 1, "loss": 1.0}).map(b"\n".join))
def test_loss_reader(tmp_path_factory, data):
    path = make_corpus._write(os.path.join(str(tmp_path_factory.mktemp("loss")), "run.log"), data)
    try:
        curve = losscurve.read_curve(path)
    except InputError as exc:
        _one_line_naming(exc, path)
        return
    assert curve.losses


COLL = {"k": "coll", "gid": "0", "seq": 0, "op": "all_reduce", "t0": 1.0, "t1": 1.1}


@FUZZ
@given(lines=lines_of(COLL))
def test_profile_reader(tmp_path_factory, lines):
    root = make_corpus._profile(
        str(tmp_path_factory.mktemp("prof")), events=b"".join(x + b"\n" for x in lines)
    )
    try:
        profile = read_profile(root)
    except InputError as exc:
        _one_line_naming(exc, root)
        return
    assert set(profile.ranks) == {0, 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus.make_corpus(str(tmp_path_factory.mktemp("hostile")))


def test_hostile_corpus_through_every_reading_verb(corpus):
    assert {verb for verb, _ in corpus.values()} == {"compare", "loss-compare", "analyze"}
    for case, (verb, args) in corpus.items():
        result = CliRunner().invoke(main, [verb, *args, "-f", "json"])
        out = result.output
        assert result.exit_code in (0, 1, 2), (case, result.exit_code, out[-2000:])
        assert "Traceback" not in out, (case, out[-2000:])
        if result.exit_code == 2:
            err = out.strip().splitlines()
            assert len(err) == 1 and any(os.path.basename(a) in err[0] for a in args), (case, out)


def test_specific_verdicts(corpus):
    def run(case):
        verb, args = corpus[case]
        return CliRunner().invoke(main, [verb, *args, "-f", "json"])

    absent = run("absent_rank")
    assert absent.exit_code == 2 and "has no rank 7 (ranks: 0)" in absent.output
    for case in (
        "deep_record",
        "stats_as_list",
        "bad_utf8",
        "record_is_list",
        "id_str",
        "phase_list",
        "stats_str",
        "file_int",
    ):
        result = run(case)
        assert result.exit_code in (0, 1), (case, result.output)
        report = json.loads(result.output)
        assert report["summary"]["problems"] >= 1 and "records.jsonl" in report["unreadable"][0], case
    npy = run("corrupt_npy")
    assert npy.exit_code in (0, 1), npy.output
    assert "t.npy" in json.dumps(json.loads(npy.output)["pairs"]), npy.output
    for case in ("profile_huge_rank", "profile_rank_50M", "profile_rank_past_world"):
        report = json.loads(run(case).output)
        text = json.dumps(report)
        assert "directory skipped" in text, case
        assert text.count("missing: no directory") == 0, case
    group = run("profile_group_past_world")
    assert group.exit_code in (0, 1) and "ranks [0, 131071] outside the world size 2" in group.output
    entry = run("msprobe_bad_entry")  # its only entry skipped: no records left, one line naming dump.json
    assert entry.exit_code == 2 and "dump.json" in entry.output, entry.output
    deep = json.loads(run("profile_deep_line").output)
    assert "1 corrupt line(s) skipped" in json.dumps(deep)


def test_loss_compare_of_overflowing_losses_warns_nothing(tmp_path):
    """Inf/NaN/±1e308 losses are handled on purpose (Inf error, diverged): no numpy RuntimeWarning leaks."""
    a = make_corpus._write(
        str(tmp_path / "a.log"), b"step 1 loss=inf\nstep 2 loss=nan\nstep 3 loss=1e308\nstep 4 loss=0\n"
    )
    b = make_corpus._write(
        str(tmp_path / "b.log"), b"step 1 loss=-inf\nstep 2 loss=1\nstep 3 loss=-1e308\nstep 4 loss=0\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = losscurve.loss_compare(a, b)
    rows = [row for table in (t for s in report.sections for t in s.tables) for row in table.rows]
    assert any(row[0] == 3 and row[3] == float("inf") for row in rows), rows
